"""Suggestions: recompute, accept as one action, debounce through a real worker."""

import time

import pytest
from django.core.cache import cache

from core.errors import ValidationFailed
from embeddings.models import ImageEmbedding
from embeddings.services.suggestions import (
    suggestions_recompute,
    suggestions_recompute_if_stale,
    suggestions_schedule_recompute,
)
from labeling.models import Annotation, AnnotationHistory, AnnotationSource, LabelAction
from labeling.services.annotations import annotations_apply_bulk, label_action_undo
from labeling.services.suggestions import suggestions_accept
from tests.factories import build_map


@pytest.fixture
def mapped(make_user, make_dataset):
    admin = make_user("admin")
    dataset = make_dataset(admin=admin)
    run, classes, blobs = build_map(dataset)
    return dataset, admin, run, classes, blobs


def label_two_of_each_and_recompute(dataset, admin, classes, blobs):
    """Two labeled images per blob (its class), then fresh suggestions for the rest."""
    for label_class, blob in zip(classes, blobs):
        annotations_apply_bulk(dataset=dataset, user=admin, label_class=label_class, image_ids=blob[:2])
    return suggestions_recompute(dataset=dataset)


def suggestion_of(run, image_id):
    return (
        ImageEmbedding.objects.filter(run=run, image_id=image_id)
        .values_list("suggested_class_id", "suggestion_confidence")
        .get()
    )


def test_recompute_propagates_classes_to_each_blob(mapped):
    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    stats = label_two_of_each_and_recompute(dataset, admin, (cat, dog), (blob_a, blob_b))
    assert stats["images"] == 40 and stats["labeled"] == 4 and stats["suggested"] == 40
    for image_id in blob_a[2:]:
        cls, conf = suggestion_of(run, image_id)
        assert cls == cat.pk and 0.5 < conf <= 1.0
    for image_id in blob_b[2:]:
        assert suggestion_of(run, image_id)[0] == dog.pk
    # Labeled images get what their neighbors say, too.
    assert suggestion_of(run, blob_a[0])[0] == cat.pk
    dataset.refresh_from_db()
    assert dataset.suggestions_computed_at is not None


def test_recompute_without_labels_clears_suggestions(mapped):
    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=blob_a[:1])
    suggestions_recompute(dataset=dataset)
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=None, image_ids=blob_a[:1])
    suggestions_recompute(dataset=dataset)
    assert not ImageEmbedding.objects.filter(run=run, suggested_class__isnull=False).exists()


def test_accepting_a_cluster_is_one_action(mapped):
    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    label_two_of_each_and_recompute(dataset, admin, (cat, dog), (blob_a, blob_b))
    before = LabelAction.objects.count()
    action = suggestions_accept(dataset=dataset, user=admin, cluster=0)
    assert LabelAction.objects.count() == before + 1
    assert action.source == AnnotationSource.SUGGESTION and action.image_count == 18
    assert set(Annotation.objects.filter(image_id__in=blob_a).values_list("label_class_id", flat=True)) == {cat.pk}
    assert not Annotation.objects.filter(image_id__in=blob_b[2:], label_class__isnull=False).exists()
    assert AnnotationHistory.objects.filter(action=action).count() == 18
    # ... and one undo restores it.
    result = label_action_undo(dataset=dataset, user=admin, action_id=action.pk)
    assert result["restored"] == 18 and result["conflicts"] == []
    assert Annotation.objects.filter(image_id__in=blob_a, label_class__isnull=False).count() == 2


def test_accept_everything_spans_classes_in_one_action(mapped):
    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=blob_a[:1])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=blob_b[:1])
    suggestions_recompute(dataset=dataset)
    action = suggestions_accept(dataset=dataset, user=admin)
    assert action.image_count == 38 and action.label_class_id is None
    labels = dict(Annotation.objects.values_list("image_id", "label_class_id"))
    assert all(labels[i] == cat.pk for i in blob_a) and all(labels[i] == dog.pk for i in blob_b)


def test_accept_respects_min_confidence_and_leaves_labels_alone(mapped):
    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=blob_a[:2])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=[blob_a[2]])  # a mistake
    suggestions_recompute(dataset=dataset)
    ImageEmbedding.objects.filter(run=run, image_id=blob_a[3]).update(suggestion_confidence=0.1)
    suggestions_accept(dataset=dataset, user=admin, image_ids=blob_a, min_confidence=0.5)
    labels = dict(Annotation.objects.values_list("image_id", "label_class_id"))
    assert labels[blob_a[2]] == dog.pk  # labeled images keep their class by default
    assert labels.get(blob_a[3]) is None  # below min_confidence
    assert labels[blob_a[4]] == cat.pk
    suggestions_accept(dataset=dataset, user=admin, image_ids=[blob_a[2]], include_labeled=True)
    assert Annotation.objects.get(image_id=blob_a[2]).label_class_id == cat.pk


def test_accept_refuses_foreign_images_and_changes_nothing(mapped, make_dataset):
    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    other = make_dataset(name="Other", admin=admin)
    _, _, (other_a, _) = build_map(other, seed=1)
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=blob_a[:2])
    suggestions_recompute(dataset=dataset)
    with pytest.raises(ValidationFailed):
        suggestions_accept(dataset=dataset, user=admin, image_ids=[blob_a[5], other_a[0]])
    with pytest.raises(ValidationFailed):
        suggestions_accept(dataset=dataset, user=admin, cluster=99)
    with pytest.raises(ValidationFailed):
        suggestions_accept(dataset=dataset, user=admin, min_confidence=2)
    assert Annotation.objects.filter(label_class__isnull=False).count() == 2


def test_a_finished_recompute_covers_earlier_requests(mapped):
    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=blob_a[:2])
    from django.utils import timezone

    requested = timezone.now()
    assert suggestions_recompute_if_stale(dataset_id=dataset.pk, requested_at=requested.isoformat()) == "computed"
    assert suggestions_recompute_if_stale(dataset_id=dataset.pk, requested_at=requested.isoformat()) == "skipped"
    later = timezone.now()
    assert suggestions_recompute_if_stale(dataset_id=dataset.pk, requested_at=later.isoformat()) == "computed"
    assert suggestions_recompute_if_stale(dataset_id=123456, requested_at=None) == "missing"


def test_schedule_is_debounced_per_dataset(mapped, settings):
    from project.celery import app

    settings.SIMLABEL_SUGGESTIONS_SCHEDULE_WINDOW = 60  # a slow machine must not let the window lapse mid-test
    dataset = mapped[0]
    suggestions_recompute(dataset=dataset)  # warm imports: the eager runs below must take well under the window
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True  # run inline: nothing is left on the broker
    try:
        results = [suggestions_schedule_recompute(dataset_id=dataset.pk) for _ in range(5)]
    finally:
        app.conf.task_always_eager = eager
    assert results == [True, False, False, False, False]
    dataset.refresh_from_db()
    assert dataset.suggestions_computed_at is not None


def test_recompute_for_10000_images_takes_seconds(make_user, make_dataset):
    admin = make_user("admin")
    dataset = make_dataset(admin=admin)
    run, (cat, dog), blobs = build_map(dataset, blob_sizes=(5000, 5000), spread=1.0)
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=blobs[0][:50])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=blobs[1][:50])
    started = time.perf_counter()
    stats = suggestions_recompute(dataset=dataset)
    elapsed = time.perf_counter() - started
    assert stats["suggested"] == 10_000
    print(f"recomputed suggestions for 10,000 images in {elapsed:.2f} s")  # speed: bench, not a test
    wrong = ImageEmbedding.objects.filter(run=run, image_id__in=blobs[0]).exclude(suggested_class=cat).count()
    assert wrong == 0


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_label_changes_yields_one_recompute(celery_worker_process, make_user, make_dataset):
    admin = make_user("admin")
    dataset = make_dataset(admin=admin)
    run, (cat, dog), (blob_a, blob_b) = build_map(dataset)
    # Ten label changes in a burst; each write schedules a recompute after commit.
    cache.clear()
    for image_id in blob_a[:5] + blob_b[:5]:
        annotations_apply_bulk(
            dataset=dataset, user=admin, label_class=cat if image_id in blob_a else dog, image_ids=[image_id]
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dataset.refresh_from_db()
        if dataset.suggestions_computed_at is not None:
            break
        time.sleep(0.3)
    assert dataset.suggestions_computed_at is not None, celery_worker_process.output()[-3000:]
    celery_worker_process.wait_for("succeeded", timeout=30)
    time.sleep(1.0)
    log = celery_worker_process.output()
    assert log.count("embeddings.tasks.recompute_suggestions[") >= 1
    assert log.count("'computed'") == 1, log[-3000:]
    # Every image of the burst was taken into account.
    assert all(suggestion_of(run, i)[0] == cat.pk for i in blob_a)
    assert all(suggestion_of(run, i)[0] == dog.pk for i in blob_b)


def test_accept_through_the_api_passes_min_confidence(mapped):
    from rest_framework.test import APIClient

    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    label_two_of_each_and_recompute(dataset, admin, (cat, dog), (blob_a, blob_b))
    unsure = blob_a[5]
    ImageEmbedding.objects.filter(run=run, image_id=unsure).update(suggestion_confidence=0.3)
    client = APIClient()
    client.force_authenticate(admin)
    url = f"/api/datasets/{dataset.pk}/suggestions/accept/"
    for bad in (1.5, -0.1, "lots", "NaN"):
        response = client.post(url, {"cluster": 0, "min_confidence": bad}, format="json")
        assert response.status_code == 400, (bad, response.content)
    assert Annotation.objects.filter(label_class__isnull=False).count() == 4
    response = client.post(url, {"cluster": 0, "min_confidence": 0.5}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["updated"] == 17  # 20 in the blob, 2 labeled, 1 below 0.5
    labels = dict(Annotation.objects.values_list("image_id", "label_class_id"))
    assert labels.get(unsure) is None and labels[blob_a[6]] == cat.pk
    # Without it the default floor applies (tests/labeling/test_accept_preview.py); 0 takes every suggestion.
    response = client.post(url, {"image_ids": [unsure]}, format="json")
    assert response.status_code == 200 and response.json()["updated"] == 0
    response = client.post(url, {"image_ids": [unsure], "min_confidence": 0}, format="json")
    assert response.status_code == 200 and response.json()["updated"] == 1
    assert Annotation.objects.get(image_id=unsure).label_class_id == cat.pk


def test_schema_documents_min_confidence():
    from rest_framework.test import APIClient

    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()["components"]["schemas"]["SuggestionsAcceptRequest"]["properties"]["min_confidence"]
    assert schema["minimum"] == 0 and schema["maximum"] == 1 and schema["type"] == "number"


def test_accepting_one_class_is_one_action_with_that_class(mapped):
    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    label_two_of_each_and_recompute(dataset, admin, (cat, dog), (blob_a, blob_b))
    before = LabelAction.objects.count()
    action = suggestions_accept(dataset=dataset, user=admin, label_class=dog)
    assert LabelAction.objects.count() == before + 1
    assert action.image_count == 18 and action.label_class_id == dog.pk
    labels = dict(Annotation.objects.values_list("image_id", "label_class_id"))
    assert all(labels[i] == dog.pk for i in blob_b)
    assert all(labels.get(i) is None for i in blob_a[2:])  # the cat suggestions wait
    # Narrowing a cluster by class: the cat cluster has no dog suggestions, so nothing changes.
    assert suggestions_accept(dataset=dataset, user=admin, cluster=0, label_class=dog).image_count == 0
    assert all(labels.get(i) is None for i in blob_a[2:])


def test_accepting_a_class_of_another_dataset_is_refused(mapped, make_dataset):
    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    other = make_dataset(name="Other", admin=admin)
    _, (other_cat, _), _ = build_map(other, seed=1)
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=blob_a[:2])
    suggestions_recompute(dataset=dataset)
    with pytest.raises(ValidationFailed):
        suggestions_accept(dataset=dataset, user=admin, label_class=other_cat)
    assert Annotation.objects.filter(label_class__isnull=False).count() == 2


def test_accept_by_class_through_the_api(mapped, make_dataset):
    from rest_framework.test import APIClient

    dataset, admin, run, (cat, dog), (blob_a, blob_b) = mapped
    other = make_dataset(name="Other", admin=admin)
    _, (other_cat, _), _ = build_map(other, seed=1)
    label_two_of_each_and_recompute(dataset, admin, (cat, dog), (blob_a, blob_b))
    client = APIClient()
    client.force_authenticate(admin)
    url = f"/api/datasets/{dataset.pk}/suggestions/accept/"
    for bad in (
        {},
        {"min_confidence": 0.2},
        {"class": other_cat.pk},
        {"class": "cat"},
        {"image_ids": blob_a[:3], "cluster": 0, "class": cat.pk},
    ):
        response = client.post(url, bad, format="json")
        assert response.status_code == 400, (bad, response.content)
    assert Annotation.objects.filter(label_class__isnull=False).count() == 4
    # Two labels per blob leave every confidence under the default floor: take them all.
    response = client.post(url, {"class": cat.pk, "min_confidence": 0}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["updated"] == 18
    assert LabelAction.objects.get(pk=response.json()["action_id"]).label_class_id == cat.pk
    assert not Annotation.objects.filter(image_id__in=blob_b[2:], label_class__isnull=False).exists()
