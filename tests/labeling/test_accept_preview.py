"""Accepting suggestions: the dry run (what would change, per class), the default floor, and an
accept of exactly the previewed plan that refuses (409) when labels changed in between."""

import pytest
from django.conf import settings as project_settings

from embeddings.models import ImageEmbedding
from labeling.models import Annotation, AnnotationHistory, LabelAction, Role
from labeling.services.annotations import annotations_apply_bulk
from labeling.services.suggestions import suggestions_accept_preview
from tests.factories import build_map


@pytest.fixture
def scene(make_user, make_dataset, client_for):
    """Two blobs of 20 (cluster 0: cat, cluster 1: dog) with set suggestions:

    blob_a: a[0], a[1] labeled cat; every image suggested cat at 0.99.
    blob_b: b[0] labeled dog; suggested dog at 0.99, except b[1..3] at 0.5 (below the
    default floor) and b[4] suggested cat at 0.95.
    Unlabeled above 0.9: cat 18 + 1, dog 15.
    """
    admin = make_user("admin")
    annotator = make_user("annotator")
    outsider = make_user("outsider")
    dataset = make_dataset(admin=admin, members={annotator: Role.ANNOTATOR})
    run, (cat, dog), (a, b) = build_map(dataset)
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=a[:2])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=b[:1])
    rows = ImageEmbedding.objects.filter(run=run)
    rows.filter(image_id__in=a).update(suggested_class=cat, suggestion_confidence=0.99)
    rows.filter(image_id__in=b).update(suggested_class=dog, suggestion_confidence=0.99)
    rows.filter(image_id__in=b[1:4]).update(suggestion_confidence=0.5)
    rows.filter(image_id=b[4]).update(suggested_class=cat, suggestion_confidence=0.95)
    return {
        "dataset": dataset,
        "admin": admin,
        "annotator": annotator,
        "outsider": outsider,
        "run": run,
        "cat": cat,
        "dog": dog,
        "a": a,
        "b": b,
        "client": client_for(admin),
        "url": f"/api/datasets/{dataset.pk}/suggestions/accept/",
    }


def written_state():
    return (
        LabelAction.objects.count(),
        AnnotationHistory.objects.count(),
        sorted(Annotation.objects.values_list("image_id", "label_class_id", "version")),
    )


def test_dry_run_counts_per_class_with_the_default_floor_and_writes_nothing(scene):
    cat, dog, a, b = scene["cat"], scene["dog"], scene["a"], scene["b"]
    before = written_state()
    response = scene["client"].post(scene["url"], {"image_ids": a + b, "dry_run": True}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["dry_run"] is True
    assert body["min_confidence"] == body["default_min_confidence"] == project_settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE
    assert body["classes"] == [
        {"id": cat.pk, "name": "cat", "count": 19},
        {"id": dog.pk, "name": "dog", "count": 15},
    ]
    assert (body["total"], body["unlabeled"], body["relabeled"]) == (34, 34, 0)
    planned = set(a[2:]) | {b[4]} | set(b[5:])
    assert {int(i) for i in body["expected"]} == planned
    assert set(body["expected"].values()) == {0}  # none has an annotation row yet
    assert written_state() == before  # not even annotation rows were created

    # A floor given is the floor used: 0 takes the three unsure dog suggestions too.
    body = (
        scene["client"]
        .post(scene["url"], {"image_ids": a + b, "min_confidence": 0, "dry_run": True}, format="json")
        .json()
    )
    assert body["min_confidence"] == 0 and body["total"] == 37
    assert {c["name"]: c["count"] for c in body["classes"]} == {"cat": 19, "dog": 18}
    assert written_state() == before


def test_dry_run_scopes_and_relabel_counts(scene):
    dataset, cat, dog, a, b, run = (scene[k] for k in ("dataset", "cat", "dog", "a", "b", "run"))
    client, url = scene["client"], scene["url"]
    body = client.post(url, {"cluster": 1, "dry_run": True}, format="json").json()
    assert body["total"] == 16 and {c["name"]: c["count"] for c in body["classes"]} == {"cat": 1, "dog": 15}
    body = client.post(url, {"class": dog.pk, "dry_run": True}, format="json").json()
    assert body["classes"] == [{"id": dog.pk, "name": "dog", "count": 15}]
    # A labeled image whose neighbors say another class is relabeled only with include_labeled.
    ImageEmbedding.objects.filter(run=run, image_id=a[0]).update(suggested_class=dog, suggestion_confidence=0.97)
    body = client.post(url, {"cluster": 0, "dry_run": True}, format="json").json()
    assert (body["total"], body["unlabeled"], body["relabeled"]) == (18, 18, 0)
    body = client.post(url, {"cluster": 0, "include_labeled": True, "dry_run": True}, format="json").json()
    assert (body["total"], body["unlabeled"], body["relabeled"]) == (19, 18, 1)
    assert {c["name"]: c["count"] for c in body["classes"]} == {"cat": 18, "dog": 1}
    # a[1] is labeled cat and suggested cat: nothing to change, so it is not counted.
    assert str(a[1]) not in body["expected"] and body["expected"][str(a[0])] == 1
    # The service answers the same as the API.
    preview = suggestions_accept_preview(dataset=dataset, cluster=0, include_labeled=True, min_confidence=0.9)
    assert preview.total == 19 and preview.counts == [(cat.pk, "cat", 18), (dog.pk, "dog", 1)]
    # Nothing above the floor: an empty plan, not an error.
    body = client.post(url, {"image_ids": b[1:4], "dry_run": True}, format="json").json()
    assert (body["total"], body["classes"], body["expected"]) == (0, [], {})


def test_accepting_the_previewed_plan_changes_exactly_it(scene):
    client, url, a, b, run = scene["client"], scene["url"], scene["a"], scene["b"], scene["run"]
    preview = client.post(url, {"cluster": 1, "dry_run": True}, format="json").json()
    # Meanwhile an unsure suggestion becomes sure: it was not in the preview, so it is not accepted.
    ImageEmbedding.objects.filter(run=run, image_id=b[1]).update(suggestion_confidence=0.99)
    response = client.post(url, {"cluster": 1, "expected": preview["expected"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["updated"] == preview["total"] == 16
    labels = dict(Annotation.objects.filter(label_class__isnull=False).values_list("image_id", "label_class__name"))
    assert labels[b[4]] == "cat" and all(labels[i] == "dog" for i in b[5:])
    assert b[1] not in labels and not any(i in labels for i in a[2:])


def test_accept_after_preview_refuses_when_labels_changed(scene):
    client, url, admin, dataset, dog, a = (scene[k] for k in ("client", "url", "admin", "dataset", "dog", "a"))
    preview = client.post(url, {"cluster": 0, "dry_run": True}, format="json").json()
    assert preview["total"] == 18
    # Someone labels one of the previewed images another class after the preview was read.
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=[a[5]])
    before = written_state()
    response = client.post(url, {"cluster": 0, "expected": preview["expected"]}, format="json")
    assert response.status_code == 409, response.content
    assert [c["image"] for c in response.json()["conflicts"]] == [a[5]]
    assert written_state() == before
    assert Annotation.objects.get(image_id=a[5]).label_class_id == dog.pk


def test_accept_without_a_floor_uses_the_default(scene, settings):
    client, url, b = scene["client"], scene["url"], scene["b"]
    response = client.post(url, {"image_ids": b[1:6]}, format="json")
    assert response.status_code == 200 and response.json()["updated"] == 2  # b[4] (cat 0.95), b[5]
    assert not Annotation.objects.filter(image_id__in=b[1:4], label_class__isnull=False).exists()
    # The default is declared once, in settings; lowering it takes the unsure ones too.
    settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE = 0.4
    body = client.post(url, {"image_ids": b[1:6], "dry_run": True}, format="json").json()
    assert body["min_confidence"] == 0.4 and body["total"] == 3
    assert client.post(url, {"image_ids": b[1:6]}, format="json").json()["updated"] == 3


def test_dry_run_checks_input_and_role(scene, client_for):
    url, a = scene["url"], scene["a"]
    before = written_state()
    for bad in (
        {"cluster": 0, "dry_run": "maybe"},
        {"dry_run": True},
        {"cluster": 0, "dry_run": True, "min_confidence": 2},
        {"cluster": 0, "include_labeled": "sometimes"},
        {"cluster": 99, "dry_run": True},
    ):
        response = scene["client"].post(url, bad, format="json")
        assert response.status_code == 400, (bad, response.content)
    # Annotators may accept, so they may preview; someone outside the dataset may not see it exist.
    response = client_for(scene["annotator"]).post(url, {"image_ids": a, "dry_run": True}, format="json")
    assert response.status_code == 200 and response.json()["total"] == 18
    response = client_for(scene["outsider"]).post(url, {"image_ids": a, "dry_run": True}, format="json")
    assert response.status_code == 404
    assert client_for(None).post(url, {"image_ids": a, "dry_run": True}, format="json").status_code in (401, 403)
    assert written_state() == before


def test_schema_documents_dry_run_and_the_default_floor():
    from rest_framework.test import APIClient

    schema = APIClient().get("/api/schema/?format=json").json()
    request = schema["components"]["schemas"]["SuggestionsAcceptRequest"]["properties"]
    assert request["dry_run"]["type"] == "boolean" and "default" not in request["min_confidence"]
    assert str(project_settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE) in request["min_confidence"]["description"]
    preview = schema["components"]["schemas"]["SuggestionsAcceptPreview"]["properties"]
    assert {"total", "unlabeled", "relabeled", "classes", "min_confidence", "expected"} <= preview.keys()
