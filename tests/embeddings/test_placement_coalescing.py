"""Placements of new images are coalesced per run: a burst of uploads into a mapped dataset queues one
placement on the real broker (filesystem or Redis), and that one places every missing image once."""

import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import transaction

from bench.placement import take_queued
from embeddings import storage
from embeddings.models import ImageEmbedding, TrainingRun
from embeddings.services import (
    images_place_execute,
    images_place_on_current_map,
    run_params_validate,
    training_run_execute,
)
from embeddings.services.placement import placement_schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import FAST_PARAMS, add_kind_images  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

PLACE = "embeddings.tasks.place_images"


def upload_request(dataset, seed: int) -> list[int]:
    """What an upload request does: commit new images, then ask for their placement (after commit)."""
    with transaction.atomic():
        ids = list(add_kind_images(dataset, per_kind=1, start_seed=seed))
        images_place_on_current_map(dataset=dataset, image_ids=ids)
    return ids


@pytest.fixture
def mapped(make_user, make_dataset):
    cache.clear()
    dataset = make_dataset("Kinds", admin=make_user())
    add_kind_images(dataset, per_kind=10)
    run = TrainingRun.objects.create(
        dataset=dataset, params=run_params_validate({**FAST_PARAMS, "tsne_iterations": 60})
    )
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    take_queued(PLACE)  # whatever the run queued
    return dataset, TrainingRun.objects.get(pk=run.pk)


def test_ten_uploads_queue_one_placement_that_places_every_image_once(mapped, monkeypatch):
    dataset, run = mapped
    requests = [upload_request(dataset, seed=1000 + 10 * r) for r in range(10)]
    queued = take_queued(PLACE)
    assert queued == [[run.pk, None]]  # one task for the whole burst, not one per request

    # An old per-request message (queued before placements were coalesced) places every missing
    # image, not only its own: the others then find nothing.
    assert images_place_execute(run_id=run.pk, image_ids=requests[0]) == 30
    new = [i for ids in requests for i in ids]
    assert ImageEmbedding.objects.filter(run=run, image_id__in=new, placed_after_run=True).count() == 30
    run.refresh_from_db()
    assert run.placed_count == 30

    reads = []
    read_array = storage.read_array
    monkeypatch.setattr(storage, "read_array", lambda *a, **k: reads.append(a) or read_array(*a, **k))
    for ids in requests[1:]:
        assert images_place_execute(run_id=run.pk, image_ids=ids) == 0
    assert images_place_execute(run_id=run.pk, image_ids=None) == 0
    assert reads == []  # nothing to place: answered without reading the map
    run.refresh_from_db()
    assert run.placed_count == 30
    assert ImageEmbedding.objects.filter(run=run).count() == 30 + 30


def test_uploads_during_a_placement_queue_exactly_one_more(mapped):
    dataset, run = mapped
    first = upload_request(dataset, seed=2000)
    second = upload_request(dataset, seed=2010)  # the first placement is still pending: coalesced
    assert take_queued(PLACE) == [[run.pk, None]]
    assert images_place_execute(run_id=run.pk, image_ids=None) == 6  # the worker takes it
    # Uploads after the placement started (it drops the pending mark first) queue one more, once.
    third = upload_request(dataset, seed=2020)
    fourth = upload_request(dataset, seed=2030)
    assert take_queued(PLACE) == [[run.pk, None]]
    assert images_place_execute(run_id=run.pk, image_ids=None) == 6
    placed = set(ImageEmbedding.objects.filter(run=run, placed_after_run=True).values_list("image_id", flat=True))
    assert placed == set(first + second + third + fourth)


def test_a_lost_publish_does_not_block_the_next(mapped, monkeypatch):
    from embeddings import tasks

    dataset, run = mapped

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.place_images, "apply_async", broker_down)
    assert placement_schedule(run=run) is False
    monkeypatch.undo()
    assert placement_schedule(run=run) is True  # the failed publish left no pending mark
    assert take_queued(PLACE) == [[run.pk, None]]
