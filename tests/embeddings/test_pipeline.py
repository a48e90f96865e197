"""The pipeline executed in this process: stages, rows, artifacts, failure, placement, chunking."""

import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from embeddings import selectors, storage
from embeddings.models import ImageEmbedding, RunStage, RunStatus, TrainingRun
from embeddings.services import (
    embedding_chunk_execute,
    images_place_execute,
    run_params_validate,
    training_run_execute,
)
from embeddings.services.pipeline import chunk_bounds, embed_in_chunks, read_helper_chunk
from embeddings.services.preview import run_reconstruction_preview

# The factories sit beside the tests; importable whether or not tests/ is a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import FAST_PARAMS, add_kind_images  # noqa: E402

# The run's heartbeat thread writes through its own connection: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

PARAMS = {**FAST_PARAMS, "tsne_iterations": 60}


def queued_run(dataset, **params):
    return TrainingRun.objects.create(dataset=dataset, params=run_params_validate({**PARAMS, **params}))


@pytest.fixture
def dataset(make_user, make_dataset):
    ds = make_dataset("Kinds", admin=make_user())
    add_kind_images(ds, per_kind=10)
    return ds


def test_a_run_embeds_lays_out_and_clusters_every_image(dataset):
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.stage == RunStage.DONE and run.progress == 1.0
    assert run.error == "" and run.attempts == 1 and run.finished_at >= run.started_at
    assert (run.input_size, run.channels) == (16, 1)
    assert run.metrics["n_images"] == 30 and run.metrics["n_clusters"] == run.cluster_count == 3
    assert run.metrics["code_size"] == 4 and run.metrics["final_loss"] > 0
    assert len(run.metrics["epoch_losses"]) == 3
    # Gray images: "auto" keeps the reconstruction objective, and the run says which ran and why.
    assert run.metrics["objective"] == "reconstruction"
    assert run.metrics["objective_reason"].startswith("auto")
    assert run.metrics["patch_features"] is False
    assert set(run.stage_timings) >= {"preparing", "training", "embedding", "layout", "clustering"}
    assert run.loss_curve and all("loss" in p for p in run.loss_curve)

    rows = ImageEmbedding.objects.filter(run=run)
    assert rows.count() == 30 and not rows.filter(placed_after_run=True).exists()
    first = rows.order_by("image_id").first()
    code = np.frombuffer(bytes(first.code), dtype=np.float32)
    assert code.shape == (4,) and np.isfinite(code).all()
    codes = storage.read_array(run, storage.CODES)
    assert np.array_equal(codes[0], code)
    assert storage.read_array(run, storage.LAYOUT).shape == (30, 2)
    model = storage.read_model(run)  # loads with weights_only=True
    assert model.code_size == 4
    assert selectors.current_run(dataset) == run

    # a redelivered message for a finished run does nothing
    assert training_run_execute(run_id=run.pk, worker_name="again") == "skipped"
    assert ImageEmbedding.objects.filter(run=run).count() == 30

    preview = run_reconstruction_preview(run=run, n=4)
    assert len(preview) == 4 and preview[0]["original"].startswith("data:image/png;base64,")
    errors = [p["reconstruction_error"] for p in preview]
    assert errors == sorted(errors)


def test_new_images_are_placed_on_the_current_map_once(dataset):
    run = queued_run(dataset)
    training_run_execute(run_id=run.pk, worker_name="test")
    new = add_kind_images(dataset, per_kind=2, start_seed=500)
    assert images_place_execute(run_id=run.pk, image_ids=list(new)) == 6
    assert images_place_execute(run_id=run.pk, image_ids=list(new)) == 0  # idempotent
    run.refresh_from_db()
    assert run.placed_count == 6
    placed = ImageEmbedding.objects.filter(run=run, placed_after_run=True)
    assert set(placed.values_list("image_id", flat=True)) == set(new)
    xy = storage.read_array(run, storage.LAYOUT)
    for row in placed:
        assert xy[:, 0].min() - 1 <= row.x <= xy[:, 0].max() + 1 and 0 <= row.cluster < 3
    assert selectors.dataset_map_points(dataset)["count"] == 36


def test_a_photo_run_puts_patch_features_beside_the_code_and_places_new_images_with_them(make_user, make_dataset):
    ds = make_dataset("Tinted", admin=make_user())
    kind_of = add_kind_images(ds, per_kind=10, color=True)
    run = queued_run(ds)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    run.refresh_from_db()
    assert run.channels == 3 and run.metrics["objective"] == "contrastive"
    assert run.metrics["patch_features"] is True
    assert run.metrics["patch_features_reason"] == "auto: contrastive codes of 3-channel photos"
    model = storage.read_model(run)
    assert model.patch_dims > 0 and run.metrics["code_size"] == 4 + model.patch_dims
    codes = storage.read_array(run, storage.CODES)
    assert codes.shape == (30, 4 + model.patch_dims)
    # The patch part tells the kinds apart (stripes one way or the other, blobs) whatever their tint.
    kinds = np.array([kind_of[i] for i in storage.read_array(run, storage.IMAGE_IDS).tolist()])
    patches = codes[:, 4:]
    distance = ((patches[:, None] - patches[None]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    assert (kinds[distance.argmin(1)] == kinds).mean() >= 0.9
    # An image added later is embedded by the stored model, patch features included.
    new = add_kind_images(ds, per_kind=1, start_seed=700, color=True)
    assert images_place_execute(run_id=run.pk, image_ids=list(new)) == 3
    placed = ImageEmbedding.objects.filter(run=run, placed_after_run=True)
    assert placed.count() == 3
    for row in placed:
        code = np.frombuffer(bytes(row.code), dtype=np.float32)
        assert code.shape == (4 + model.patch_dims,) and np.isfinite(code).all()
        assert np.linalg.norm(code[4:]) == pytest.approx(1.0, abs=1e-4)

    off = queued_run(ds, patch_features="off")
    assert training_run_execute(run_id=off.pk, worker_name="test") == "succeeded"
    off.refresh_from_db()
    assert (off.metrics["patch_features"], off.metrics["patch_features_reason"]) == (False, "chosen")
    assert storage.read_array(off, storage.CODES).shape == (33, 4)


def test_unreadable_images_fail_the_run_with_the_reason(make_user, make_dataset):
    ds = make_dataset("Broken", admin=make_user())
    add_kind_images(ds, per_kind=4)
    for image in ds.images.all():
        default_storage.delete(image.file.name)
        default_storage.save(image.file.name, ContentFile(b"<html>not a png</html>"))
    run = queued_run(ds)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at
    assert "12 of 12 images could not be read" in run.error
    assert not ImageEmbedding.objects.filter(run=run).exists()


def test_a_few_unreadable_images_are_skipped_and_reported(make_user, make_dataset):
    ds = make_dataset("Mostly fine", admin=make_user())
    add_kind_images(ds, per_kind=10)
    broken = ds.images.order_by("id").first()
    default_storage.delete(broken.file.name)
    run = queued_run(ds)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    run.refresh_from_db()
    assert run.metrics["n_unreadable"] == 1 and run.metrics["unreadable"][0]["id"] == broken.pk
    assert ImageEmbedding.objects.filter(run=run).count() == 29


def test_chunked_embedding_equals_single_process_embedding():
    import torch

    from embeddings.ml.autoencoder import ConvAutoencoder
    from embeddings.ml.inference import embed_images

    torch.manual_seed(0)
    model = ConvAutoencoder(in_channels=1, input_size=16, code_size=5, depth=2, base_channels=8).eval()
    images = np.random.default_rng(0).random((103, 1, 16, 16), dtype=np.float32)
    single_codes, single_errors = embed_images(model, images, batch_size=16)
    assert chunk_bounds(103, 40, 16) == [(0, 32), (32, 64), (64, 96), (96, 103)]
    codes, errors, helped = embed_in_chunks(model, images, chunk_size=40, batch_size=16)
    assert helped == 0
    assert np.array_equal(codes, single_codes) and np.array_equal(errors, single_errors)

    # chunks computed elsewhere (a helper) are taken as they are
    def helper(index):
        start, stop = chunk_bounds(103, 40, 16)[index]
        return embed_images(model, images[start:stop], batch_size=16) if index % 2 == 0 else None

    codes, errors, helped = embed_in_chunks(model, images, chunk_size=40, batch_size=16, done_elsewhere=helper)
    assert helped == 2 and np.array_equal(codes, single_codes) and np.array_equal(errors, single_errors)


def test_a_helper_chunk_matches_the_coordinators(dataset, settings):
    settings.SIMLABEL_EMBED_CHUNK_SIZE = 8
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    # replay the embedding stage: a helper embeds chunk 1 from the stored model and ids
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, stage=RunStage.EMBEDDING)
    assert embedding_chunk_execute(run_id=run.pk, index=1) == "done"
    assert embedding_chunk_execute(run_id=run.pk, index=1) == "skipped"
    codes, errors = read_helper_chunk(run, 1)
    stored = storage.read_array(run, storage.CODES)
    assert np.array_equal(codes, stored[8:16])
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, stage=RunStage.DONE)
    assert embedding_chunk_execute(run_id=run.pk, index=2) == "skipped"  # late helper: nothing to do


# --- after a run: near-duplicate pairs stored, map cache warm; after placement: both updated, suggestions queued


def _shared_cache_has_map(run) -> bool:
    from django.core.cache import cache

    run.refresh_from_db()
    key = f"{selectors.CACHE_PREFIX}:{selectors.run_cache_key(run)}"
    return all(
        cache.get(f"{key}:{part}") is not None
        for part in ("positions", "static-map", "codes", "errors", "near-duplicates")
    )


def _near_copy(png: bytes) -> bytes:
    """The same picture with one pixel nudged: another file, (almost) the same code."""
    import io

    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(png)) as img:
        arr = np.array(img)
    arr[0, 0] = arr[0, 0] + 1 if arr[0, 0] < 255 else 254
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_a_run_stores_its_near_duplicates_and_warms_the_map_cache(dataset):
    from django.core.cache import cache
    from pipeline_factories import kind_png

    from embeddings.selectors import NEAR_DUPLICATES
    from tests.factories import ImageFactory

    original = ImageFactory(dataset=dataset, data=kind_png("blob", 7), original_name="blob-7.png")
    copy = ImageFactory(dataset=dataset, data=_near_copy(kind_png("blob", 7)), original_name="blob-7-copy.png")
    cache.clear()
    selectors.clear_run_cache()
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    run.refresh_from_db()
    pairs = storage.read_array(run, NEAR_DUPLICATES)
    assert (original.pk, copy.pk) in set(zip(pairs["a"].tolist(), pairs["b"].tolist()))
    assert run.metrics["near_duplicate_pairs"] == len(pairs) and run.metrics["near_duplicate_threshold"] > 0
    codes = dict(zip(storage.read_array(run, storage.IMAGE_IDS).tolist(), storage.read_array(run, storage.CODES)))
    for a, b, distance in pairs.tolist():
        assert a < b and abs(float(np.linalg.norm(codes[a] - codes[b])) - distance) < 1e-4
        assert distance <= run.metrics["near_duplicate_threshold"]
    # The first visitor finds the map, codes and pairs cached already.
    assert _shared_cache_has_map(run)


def test_placing_images_adds_their_pairs_warms_the_cache_and_queues_suggestions(dataset):
    from django.core.cache import cache
    from pipeline_factories import kind_png

    from embeddings.selectors import NEAR_DUPLICATES, run_near_duplicates
    from embeddings.services.suggestions import _schedule_key
    from tests.factories import ImageFactory

    original = ImageFactory(dataset=dataset, data=kind_png("vertical", 3), original_name="vertical-3.png")
    run = queued_run(dataset)
    training_run_execute(run_id=run.pk, worker_name="test")
    before = len(storage.read_array(run, NEAR_DUPLICATES))
    copy = ImageFactory(dataset=dataset, data=_near_copy(kind_png("vertical", 3)), original_name="vertical-3-copy.png")
    cache.clear()
    selectors.clear_run_cache()
    assert images_place_execute(run_id=run.pk, image_ids=[copy.pk]) == 1
    pairs = storage.read_array(run, NEAR_DUPLICATES)
    assert len(pairs) > before
    assert (original.pk, copy.pk) in set(zip(pairs["a"].tolist(), pairs["b"].tolist()))
    assert _shared_cache_has_map(run)  # the map's new version (placed_count 1)
    assert (original.pk, copy.pk) in set(zip(*(run_near_duplicates(run)[k].tolist() for k in ("a", "b"))))
    # New images get suggestions without waiting for a label change: a recompute is queued.
    assert cache.get(_schedule_key(dataset.pk)) is not None


@pytest.mark.postgres
def test_a_runs_rows_are_stored_with_statistics_that_know_the_run(dataset):
    """Without them the planner took a new run id for a handful of rows and probed the run's rows by run_id
    alone, image_id as a filter: the check after a run, "is any image missing from it", then took hours at
    100,000 images (README, scale benchmark)."""
    from django.db import connection

    runs = []
    for _ in range(2):  # one active run per dataset: the second is queued when the first is done
        runs.append(queued_run(dataset))
        assert training_run_execute(run_id=runs[-1].pk, worker_name="test") == "succeeded"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT most_common_vals::text FROM pg_stats WHERE tablename = %s AND attname = 'run_id'",
            [ImageEmbedding._meta.db_table],
        )
        row = cursor.fetchone()
    assert row is not None, "the embeddings table has no statistics on run_id"
    assert {run.pk for run in runs} <= {int(v) for v in row[0].strip("{}").split(",")}


@pytest.mark.postgres
def test_a_large_placement_refreshes_the_statistics(dataset, monkeypatch):
    """A run that receives many more images than it was stored with is not planned as small (the same
    stale-statistics trap as above); the threshold is lowered so that 6 images count as many."""
    from django.db import connection

    from embeddings.services import placement

    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"

    def rows_in_statistics():
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [ImageEmbedding._meta.db_table])
            return cursor.fetchone()[0]

    assert rows_in_statistics() == 30
    few = add_kind_images(dataset, per_kind=1, start_seed=500)
    assert images_place_execute(run_id=run.pk, image_ids=list(few)) == 3
    assert rows_in_statistics() == 30  # under the threshold: left to autovacuum
    monkeypatch.setattr(placement, "PLACEMENT_ANALYZE_MIN_IMAGES", 3)
    more = add_kind_images(dataset, per_kind=1, start_seed=600)
    assert images_place_execute(run_id=run.pk, image_ids=list(more)) == 3
    assert rows_in_statistics() == 36
