"""A run learns from people's labels: by default once there are enough, never with use_labels off."""

import sys
from pathlib import Path

import pytest

from embeddings.ml.config import LABELS_MIN_PER_CLASS, LABELS_MIN_TOTAL
from embeddings.models import RunStatus, TrainingRun
from embeddings.services import run_params_validate, training_run_execute
from embeddings.services.pipeline import image_classes
from labeling.models import Annotation, LabelClass

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import FAST_PARAMS, KINDS, add_kind_images  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

PER_KIND = 20
ENOUGH_PER_KIND = max(LABELS_MIN_PER_CLASS, -(-LABELS_MIN_TOTAL // len(KINDS)))


@pytest.fixture
def dataset(make_user, make_dataset):
    ds = make_dataset("Kinds", admin=make_user())
    ds.kinds = add_kind_images(ds, per_kind=PER_KIND)
    return ds


def label(dataset, per_kind: int) -> int:
    """Labels the first per_kind images of each kind with their kind; returns how many were labeled."""
    classes = {kind: LabelClass.objects.create(dataset=dataset, name=kind) for kind in KINDS}
    seen = dict.fromkeys(KINDS, 0)
    for image_id, kind in sorted(dataset.kinds.items()):
        if seen[kind] < per_kind:
            Annotation.objects.create(dataset=dataset, image_id=image_id, label_class=classes[kind])
            seen[kind] += 1
    return sum(seen.values())


def run_with(dataset, **params):
    run = TrainingRun.objects.create(
        dataset=dataset, params=run_params_validate({**FAST_PARAMS, "tsne_iterations": 60, **params})
    )
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    return run


def test_a_default_run_learns_from_enough_labels_and_an_off_run_does_not(dataset):
    assert ENOUGH_PER_KIND <= PER_KIND
    labeled = label(dataset, ENOUGH_PER_KIND)
    run = run_with(dataset)
    assert run.params["use_labels"] == "auto"
    assert run.metrics["labels_used"] == labeled > 0
    assert run.metrics["labels_reason"].startswith(f"auto: {labeled} labeled images in {len(KINDS)} classes")

    off = run_with(dataset, use_labels="off")
    assert off.metrics["labels_used"] == 0 and "off" in off.metrics["labels_reason"]


def test_too_few_labels_are_not_learned_from(dataset):
    labeled = label(dataset, LABELS_MIN_PER_CLASS - 1)
    run = run_with(dataset)
    assert run.metrics["labels_used"] == 0
    assert run.metrics["labels_reason"].startswith(f"auto: {labeled} labeled images, 0 in 0 classes; needs")


def test_a_run_without_labels_says_so(dataset):
    run = run_with(dataset)
    assert run.metrics["labels_used"] == 0 and run.metrics["labels_reason"] == "auto: no labeled images"


def test_image_classes_are_indices_in_image_order_and_minus_one_when_unlabeled(dataset):
    import numpy as np

    label(dataset, 2)
    ids = np.array(sorted(dataset.kinds), dtype=np.int64)
    classes = image_classes(dataset.pk, ids)
    assert (classes >= 0).sum() == 2 * len(KINDS) and set(classes[classes >= 0]) == {0, 1, 2}
    kinds = [dataset.kinds[i] for i in ids]
    for kind in KINDS:  # one index per kind
        assert len({int(c) for c, k in zip(classes, kinds, strict=True) if k == kind and c >= 0}) == 1


def test_a_run_resumed_after_its_worker_died_learns_from_the_labels_given_before_it_restarted(dataset, settings):
    from datetime import timedelta

    from django.utils import timezone

    from embeddings.services.runs import run_claim

    settings.SIMLABEL_RUN_HEARTBEAT_TIMEOUT = 60
    labeled = label(dataset, ENOUGH_PER_KIND)
    run = TrainingRun.objects.create(
        dataset=dataset, params=run_params_validate({**FAST_PARAMS, "tsne_iterations": 60})
    )
    assert run_claim(run_id=run.pk, worker_name="died") is not None
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    # labeled while the dead worker held the run: the retry reads the labels afresh
    unlabeled = sorted(set(dataset.kinds) - set(Annotation.objects.values_list("image_id", flat=True)))
    first_class = LabelClass.objects.filter(dataset=dataset, name=dataset.kinds[unlabeled[0]]).get()
    Annotation.objects.create(dataset=dataset, image_id=unlabeled[0], label_class=first_class)

    assert training_run_execute(run_id=run.pk, worker_name="retry") == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.attempts == 2 and run.worker == "retry"
    assert run.metrics["labels_used"] == labeled + 1
    latest = Annotation.objects.filter(dataset=dataset).order_by("-updated_at").first()
    assert latest.updated_at <= run.started_at  # started_at marks which labels the run saw
