"""Model predictions as suggestions: upload, replace, delete, validation, accept, review queue, image page."""

import math

import numpy as np
import pytest
from django.core.cache import cache
from django.urls import reverse

from embeddings.ml.review_ranking import rank_review_items
from embeddings.services.suggestions import suggestions_recompute
from labeling.models import Annotation, AnnotationSource, LabelAction, LabelClass, Prediction
from labeling.selectors.review import review_queue_for_dataset
from labeling.services.annotations import annotations_apply_bulk, label_action_undo
from tests.factories import build_map


@pytest.fixture(autouse=True)
def _fresh_cache(fresh_media):
    # fresh_media: run artifacts are this test's own, whatever ids the runs get; the map cache is per run id.
    cache.clear()
    from embeddings.selectors import clear_run_cache

    clear_run_cache()
    yield
    clear_run_cache()
    cache.clear()


@pytest.fixture
def lab(make_user, make_dataset):
    """A mapped dataset (two blobs of 20, classes cat and dog), one member per role, and another dataset."""
    admin, reviewer, annotator, outsider = (make_user(n) for n in ("admin", "rita", "anna", "oscar"))
    dataset = make_dataset(admin=admin, members={reviewer: "reviewer", annotator: "annotator"})
    run, (cat, dog), (blob_a, blob_b) = build_map(dataset)
    other = make_dataset("Other", admin=outsider)
    _, _, (other_images, _) = build_map(other, blob_sizes=(3, 1))
    return dict(
        dataset=dataset,
        admin=admin,
        reviewer=reviewer,
        annotator=annotator,
        outsider=outsider,
        run=run,
        cat=cat,
        dog=dog,
        blobs=(blob_a, blob_b),
        other=other,
        other_images=other_images,
        users={"admin": admin, "reviewer": reviewer, "annotator": annotator, "outsider": outsider},
    )


def url(dataset, model=None):
    if model is None:
        return reverse("prediction-list", kwargs={"dataset_id": dataset.pk})
    return reverse("prediction-detail", kwargs={"dataset_id": dataset.pk, "model": model})


def items_for(image_ids, name="cat", confidence=0.9):
    return [{"image_id": i, "class": name, "confidence": confidence} for i in image_ids]


def stored(dataset):
    return sorted(
        Prediction.objects.filter(dataset=dataset).values_list("model", "image_id", "label_class__name", "confidence")
    )


# --- upload, list, read, replace, delete -------------------------------------------------------------------


def test_upload_lists_reads_replaces_and_deletes(lab, client_for):
    dataset, (blob_a, blob_b) = lab["dataset"], lab["blobs"]
    client = client_for(lab["annotator"])
    body = {"model": "resnet-50", "items": items_for(blob_a[:5], "cat", 0.9) + items_for(blob_b[:3], "Dog", 0.75)}
    response = client.post(url(dataset), body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {"model": "resnet-50", "stored": 8, "replaced": 0, "created_classes": []}
    # "Dog" matches the class dog (case-insensitively, as label imports match).
    assert [row[2] for row in stored(dataset)].count("dog") == 3

    listed = client.get(url(dataset)).json()["models"]
    assert [(m["model"], m["count"]) for m in listed] == [("resnet-50", 8)] and listed[0]["uploaded"]
    columns = client.get(url(dataset, "resnet-50")).json()
    assert columns["image_ids"] == sorted(blob_a[:5] + blob_b[:3])
    assert columns["class"] == [lab["cat"].pk] * 5 + [lab["dog"].pk] * 3
    assert columns["confidence"] == [0.9] * 5 + [0.75] * 3

    # Re-posting the model replaces all of its rows; another model's stay.
    client.post(url(dataset), {"model": "vit", "items": items_for(blob_b[:2], "dog", 0.6)}, format="json")
    response = client.post(
        url(dataset), {"model": "resnet-50", "items": items_for(blob_a[10:12], "dog", 0.55)}, format="json"
    )
    assert response.json()["replaced"] == 8 and response.json()["stored"] == 2
    assert stored(dataset) == sorted(
        [("resnet-50", i, "dog", 0.55) for i in blob_a[10:12]] + [("vit", i, "dog", 0.6) for i in blob_b[:2]]
    )
    assert [m["model"] for m in client.get(url(dataset)).json()["models"]] == ["resnet-50", "vit"]

    assert client.delete(url(dataset, "resnet-50")).status_code == 204
    assert {row[0] for row in stored(dataset)} == {"vit"}
    assert client.delete(url(dataset, "resnet-50")).status_code == 404
    assert client.get(url(dataset, "resnet-50")).status_code == 404


def test_create_classes_makes_the_missing_ones_for_admins_only(lab, client_for):
    dataset, (blob_a, _) = lab["dataset"], lab["blobs"]
    body = {
        "model": "m",
        "items": items_for(blob_a[:2], "bird") + items_for(blob_a[2:3], "cat"),
        "create_classes": True,
    }
    refused = client_for(lab["annotator"]).post(url(dataset), body, format="json")
    assert refused.status_code == 403 and not LabelClass.objects.filter(dataset=dataset, name="bird").exists()
    response = client_for(lab["admin"]).post(url(dataset), body, format="json")
    assert response.status_code == 200 and response.json()["created_classes"] == ["bird"]
    assert [row[2] for row in stored(dataset)] == ["bird", "bird", "cat"]


def _bad_bodies(lab):
    (blob_a, _), other = lab["blobs"], lab["other_images"]
    ok = items_for(blob_a[:3])
    return {
        "unknown class": ({"model": "m", "items": ok + items_for(blob_a[3:4], "zebra")}, "zebra"),
        "image of another dataset": ({"model": "m", "items": ok + items_for(other[:1])}, str(other[0])),
        "image that does not exist": ({"model": "m", "items": ok + items_for([10**12])}, str(10**12)),
        "image listed twice": ({"model": "m", "items": ok + items_for(blob_a[:1], "dog")}, str(blob_a[0])),
        "confidence above 1": ({"model": "m", "items": ok + items_for(blob_a[3:4], confidence=1.5)}, "item 3 is"),
        "confidence below 0": ({"model": "m", "items": ok + items_for(blob_a[3:4], confidence=-0.1)}, "item 3 is"),
        "confidence a string": ({"model": "m", "items": ok + items_for(blob_a[3:4], confidence="0.5")}, "item 3 is"),
        "confidence a boolean": ({"model": "m", "items": ok + items_for(blob_a[3:4], confidence=True)}, "item 3 is"),
        "image_id a string": ({"model": "m", "items": ok + items_for(["7"])}, "item 3 has none"),
        "missing key": ({"model": "m", "items": ok + [{"image_id": blob_a[3], "class": "cat"}]}, "item 3 is"),
        "extra key": ({"model": "m", "items": ok + [{**items_for(blob_a[3:4])[0], "x": 1}]}, "item 3 is"),
        "empty class": ({"model": "m", "items": ok + items_for(blob_a[3:4], " ")}, "item 3 has none"),
        "two bad confidences": (
            {"model": "m", "items": ok + items_for(blob_a[3:5], confidence=2)},
            "items 3, 4 are not",
        ),
        "no items": ({"model": "m", "items": []}, "non-empty"),
        "items not a list": ({"model": "m", "items": {"a": 1}}, "list"),
        "bad model name": ({"model": "has space", "items": ok}, "model"),
        "model name too long": ({"model": "m" * 101, "items": ok}, "model"),
        "unknown field": ({"model": "m", "items": ok, "colour": "red"}, "colour"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown class",
        "image of another dataset",
        "image that does not exist",
        "image listed twice",
        "confidence above 1",
        "confidence below 0",
        "confidence a string",
        "confidence a boolean",
        "image_id a string",
        "two bad confidences",
        "missing key",
        "extra key",
        "empty class",
        "no items",
        "items not a list",
        "bad model name",
        "model name too long",
        "unknown field",
    ],
)
def test_each_bad_upload_is_a_400_that_stores_nothing(case, lab, client_for):
    dataset, (blob_a, _) = lab["dataset"], lab["blobs"]
    client = client_for(lab["admin"])
    # The model has predictions already: a bad re-post must not replace (or delete) them either.
    client.post(url(dataset), {"model": "m", "items": items_for(blob_a[5:7], "dog", 0.5)}, format="json")
    before, classes = stored(dataset), LabelClass.objects.count()
    body, mentioned = _bad_bodies(lab)[case]
    response = client.post(url(dataset), body, format="json")
    assert response.status_code == 400, response.json()
    assert mentioned in str(response.json()), response.json()
    assert stored(dataset) == before and LabelClass.objects.count() == classes


def test_unknown_classes_are_listed(lab, client_for):
    dataset, (blob_a, _) = lab["dataset"], lab["blobs"]
    body = {"model": "m", "items": items_for(blob_a[:1], "zebra") + items_for(blob_a[1:2], "gnu")}
    answer = client_for(lab["annotator"]).post(url(dataset), body, format="json").json()
    assert answer["code"] == "unknown_classes" and answer["unknown_classes"] == ["gnu", "zebra"]


def test_non_finite_confidence_is_refused_by_the_parser(lab, client_for):
    dataset, (blob_a, _) = lab["dataset"], lab["blobs"]
    for constant in ("NaN", "Infinity"):
        item = f'{{"image_id": {blob_a[0]}, "class": "cat", "confidence": {constant}}}'
        body = f'{{"model": "m", "items": [{item}]}}'
        response = client_for(lab["admin"]).generic("POST", url(dataset), body, content_type="application/json")
        assert response.status_code == 400 and not stored(dataset)


def test_item_and_byte_limits(lab, client_for, settings):
    dataset, (blob_a, _) = lab["dataset"], lab["blobs"]
    settings.SIMLABEL_MAX_PREDICTION_ITEMS = 3
    response = client_for(lab["admin"]).post(
        url(dataset), {"model": "m", "items": items_for(blob_a[:4])}, format="json"
    )
    assert response.status_code == 400 and "SIMLABEL_MAX_PREDICTION_ITEMS" in response.json()["detail"]
    settings.SIMLABEL_MAX_PREDICTION_ITEMS = 100
    settings.SIMLABEL_MAX_PREDICTION_BYTES = 200
    response = client_for(lab["admin"]).post(
        url(dataset), {"model": "m", "items": items_for(blob_a[:4])}, format="json"
    )
    assert response.status_code == 413
    assert not stored(dataset)


def test_wrong_dataset_id_is_404_and_stores_nothing(lab, client_for):
    (blob_a, _), other = lab["blobs"], lab["other"]
    client = client_for(lab["admin"])  # not a member of `other`
    response = client.post(url(other), {"model": "m", "items": items_for(lab["other_images"][:1])}, format="json")
    assert response.status_code == 404
    # The dataset's own images posted to a dataset id that does not exist: 404 too.
    missing = type(other)(pk=10**9)
    assert client.post(url(missing), {"model": "m", "items": items_for(blob_a[:1])}, format="json").status_code == 404
    assert not Prediction.objects.exists()


@pytest.mark.parametrize("role", ["admin", "reviewer", "annotator", "outsider", "anonymous"])
def test_who_may_upload_read_and_delete(role, lab, client_for):
    dataset, (blob_a, _) = lab["dataset"], lab["blobs"]
    client = client_for(lab["users"].get(role))
    member = role in ("admin", "reviewer", "annotator")  # every role may bulk-label, so every member may upload
    expected_write = 200 if member else (404 if role == "outsider" else 401)
    response = client.post(url(dataset), {"model": "m", "items": items_for(blob_a[:2])}, format="json")
    assert response.status_code == expected_write
    assert bool(stored(dataset)) == member
    expected_read = 200 if member else expected_write
    assert client.get(url(dataset)).status_code == expected_read
    if member:
        assert client.get(url(dataset, "m")).status_code == 200
        assert client.delete(url(dataset, "m")).status_code == 204 and not stored(dataset)
    else:
        from labeling.services.predictions import predictions_upload

        predictions_upload(dataset=dataset, model="m", items=items_for(blob_a[:2]))
        assert client.get(url(dataset, "m")).status_code == expected_read
        assert client.delete(url(dataset, "m")).status_code == expected_write
        assert len(stored(dataset)) == 2


# --- accepting a model's predictions ----------------------------------------------------------------------------


def test_accept_from_a_model_source_is_one_undoable_action(lab, client_for):
    dataset, (blob_a, blob_b), cat, dog = lab["dataset"], lab["blobs"], lab["cat"], lab["dog"]
    client = client_for(lab["annotator"])
    items = items_for(blob_a[:6], "cat", 0.9) + items_for(blob_a[6:8], "cat", 0.3) + items_for(blob_b[:4], "dog", 0.8)
    client.post(url(dataset), {"model": "resnet", "items": items}, format="json")
    annotations_apply_bulk(dataset=dataset, user=lab["admin"], label_class=dog, image_ids=[blob_a[0]])
    accept = reverse("suggestions-accept", kwargs={"dataset_id": dataset.pk})

    response = client.post(accept, {"class": cat.pk, "min_confidence": 0.5, "source": "model:resnet"}, format="json")
    assert response.status_code == 200, response.json()
    # The labeled image keeps its class; the ones below the floor, and the dog predictions, stay unlabeled.
    assert response.json()["updated"] == 5
    labeled = dict(Annotation.objects.filter(dataset=dataset, label_class=cat).values_list("image_id", "source"))
    assert labeled == {i: AnnotationSource.PREDICTION for i in blob_a[1:6]}
    action = LabelAction.objects.get(pk=response.json()["action_id"])
    assert action.source == AnnotationSource.PREDICTION and action.image_count == 5

    label_action_undo(dataset=dataset, user=lab["annotator"], action_id=action.pk)
    assert not Annotation.objects.filter(dataset=dataset, label_class=cat).exists()

    # Narrowed to a cluster of the map, and to listed images.
    response = client.post(accept, {"cluster": 1, "source": "model:resnet", "min_confidence": 0}, format="json")
    assert response.json()["updated"] == 4
    assert set(
        Annotation.objects.filter(label_class=dog, source="prediction").values_list("image_id", flat=True)
    ) == set(blob_b[:4])
    response = client.post(
        accept, {"image_ids": blob_a[6:8], "source": "model:resnet", "min_confidence": 0}, format="json"
    )
    assert response.json()["updated"] == 2


def test_accept_refuses_an_unknown_source(lab, client_for):
    dataset = lab["dataset"]
    accept = reverse("suggestions-accept", kwargs={"dataset_id": dataset.pk})
    client = client_for(lab["annotator"])
    before = Annotation.objects.filter(label_class__isnull=False).count()
    for source in ("model:nobody", "model:", "neighbours", "model:has space"):
        response = client.post(accept, {"class": lab["cat"].pk, "source": source}, format="json")
        assert response.status_code == 400 and "source" in str(response.json()), (source, response.json())
    assert Annotation.objects.filter(label_class__isnull=False).count() == before


def test_accept_with_the_default_source_still_takes_the_neighbors_suggestions(lab, client_for):
    dataset, (blob_a, blob_b), cat, dog = lab["dataset"], lab["blobs"], lab["cat"], lab["dog"]
    for label_class, blob in ((cat, blob_a), (dog, blob_b)):
        annotations_apply_bulk(dataset=dataset, user=lab["admin"], label_class=label_class, image_ids=blob[:2])
    suggestions_recompute(dataset=dataset)
    client = client_for(lab["annotator"])
    client.post(url(dataset), {"model": "wrong", "items": items_for(blob_a[2:], "dog", 0.99)}, format="json")
    accept = reverse("suggestions-accept", kwargs={"dataset_id": dataset.pk})
    response = client.post(accept, {"cluster": 0, "min_confidence": 0}, format="json")
    assert response.status_code == 200 and response.json()["updated"] == 18
    assert set(Annotation.objects.filter(image_id__in=blob_a).values_list("label_class", "source")) == {
        (cat.pk, AnnotationSource.BULK),
        (cat.pk, AnnotationSource.SUGGESTION),
    }


# --- the review queue -------------------------------------------------------------------------------------------


def test_review_queue_says_what_the_model_says(lab, client_for):
    dataset, (blob_a, blob_b), cat, dog = lab["dataset"], lab["blobs"], lab["cat"], lab["dog"]
    annotations_apply_bulk(dataset=dataset, user=lab["admin"], label_class=cat, image_ids=blob_a)
    annotations_apply_bulk(dataset=dataset, user=lab["admin"], label_class=dog, image_ids=blob_b[:10])
    suggestions_recompute(dataset=dataset)
    disputed, open_image = blob_a[3], blob_b[15]
    items = [
        {"image_id": disputed, "class": "dog", "confidence": 0.97},  # says dog where the label is cat
        {"image_id": open_image, "class": "cat", "confidence": 0.9},  # says cat where the neighbors say dog
        {"image_id": blob_a[4], "class": "cat", "confidence": 0.99},  # agrees: no item
        {"image_id": blob_a[5], "class": "dog", "confidence": 0.2},  # too unsure to question a label: no item
    ]
    client_for(lab["admin"]).post(url(dataset), {"model": "resnet", "items": items}, format="json")
    queue = {item["id"]: item for item in review_queue_for_dataset(dataset, limit=500) if item["kind"] == "image"}
    assert "model resnet says 'dog' (97 %), labeled 'cat'" in queue[disputed]["reasons"]
    assert "model_disagrees_with_label" in queue[disputed]["codes"]
    assert queue[disputed]["score"] == pytest.approx(0.97)
    reason = next(r for r in queue[open_image]["reasons"] if r.startswith("model resnet says 'cat' (90 %)"))
    assert "neighbors suggest 'dog'" in reason and "model_disagrees_with_neighbors" in queue[open_image]["codes"]
    assert blob_a[4] not in queue and blob_a[5] not in queue
    # Through the API too, ranked by its confidence above the plain low-confidence items.
    answer = client_for(lab["reviewer"]).get(reverse("review-queue", kwargs={"dataset_id": dataset.pk})).json()
    rows = answer["results"] if isinstance(answer, dict) else answer
    assert rows[0]["id"] == disputed and rows[0]["reason"].startswith("model resnet says 'dog'")


def test_ranking_scores_model_disagreements_by_confidence():
    labels = np.array([0, 0, -1, -1, 1])
    suggestions = np.array([0, 0, 1, 1, 1])
    confidence = np.array([0.9, 0.9, 0.8, 0.4, 0.9])
    predicted = np.array([1, 1, 0, 0, -1])
    predicted_confidence = np.array([0.9, 0.6, 0.7, 0.95, 0.0])
    items = rank_review_items(
        clusters=np.zeros(5, dtype=int),
        labels=labels,
        suggestions=suggestions,
        confidence=confidence,
        reviewed=np.array([False, True, False, False, False]),
        class_names=["cat", "dog"],
        predictions=[("m", predicted, predicted_confidence)],
    )
    by_image = {it.key: it for it in items if it.kind == "image"}
    assert by_image[0].score == pytest.approx(0.9) and "model m says 'dog' (90 %), labeled 'cat'" in by_image[0].reasons
    assert 1 not in by_image  # reviewed: a person checked it
    assert by_image[2].score == pytest.approx(0.7)  # the lower of the two confidences
    assert any(r.startswith("model m says 'cat' (95 %), neighbors suggest 'dog' (40 %)") for r in by_image[3].reasons)
    assert all(math.isfinite(it.score) for it in items)


# --- the image page -------------------------------------------------------------------------------------------


def test_image_page_lists_each_models_prediction(lab, client, client_for):
    dataset, (blob_a, _) = lab["dataset"], lab["blobs"]
    api = client_for(lab["admin"])
    api.post(url(dataset), {"model": "resnet", "items": items_for(blob_a[:1], "dog", 0.83)}, format="json")
    api.post(url(dataset), {"model": "vit", "items": items_for(blob_a[:1], "cat", 0.4)}, format="json")
    client.force_login(lab["annotator"])
    html = client.get(reverse("labeling:image-detail", args=[blob_a[0]])).content.decode()
    assert 'id="predictions"' in html
    section = html[html.index('id="predictions"') :]
    section = section[: section.index("</section>")]
    assert 'data-model="resnet"' in section and "dog" in section and "83 %" in section
    assert 'data-model="vit"' in section and "cat" in section and "40 %" in section
    assert section.index("resnet") < section.index("vit")
    other = client.get(reverse("labeling:image-detail", args=[blob_a[1]])).content.decode()
    assert 'id="predictions"' not in other
