"""Bulk writes that carry the versions the client saw, and accepting suggestions
while someone labels by hand: nobody's label is overwritten unseen."""

from django.urls import reverse

from labeling.models import Annotation, LabelAction
from labeling.services import annotations as annotation_services


def _state(dataset):
    return dict(Annotation.objects.filter(dataset=dataset).values_list("image_id", "label_class_id"))


def test_bulk_with_a_stale_expected_version_is_409_and_changes_nothing(team, client_for):
    a, b, c, _ = team.images
    client = client_for(team.annotator)
    url = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    # Someone else labels b after the page loaded (it saw version 0 everywhere).
    annotation_services.annotation_set(image=b, label_class=team.dog, user=team.reviewer)
    before, actions = _state(team.dataset), LabelAction.objects.count()
    response = client.post(
        url,
        {"class": team.cat.pk, "image_ids": [a.pk, b.pk, c.pk], "expected": {str(a.pk): 0, str(b.pk): 0, str(c.pk): 0}},
        format="json",
    )
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "stale_versions" and body["conflict_count"] == 1
    assert body["conflicts"] == [{"image": b.pk, "class": team.dog.pk, "version": 1}]
    assert _state(team.dataset) == before and LabelAction.objects.count() == actions
    # With the version it now knows, the same write goes through and reports the new versions.
    ok = client.post(
        url,
        {"class": team.cat.pk, "image_ids": [a.pk, b.pk, c.pk], "expected": {str(a.pk): 0, str(b.pk): 1, str(c.pk): 0}},
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["versions"] == {str(a.pk): 1, str(b.pk): 2, str(c.pk): 1}
    # Without `expected` the old contract holds.
    assert client.post(url, {"class": team.dog.pk, "image_ids": [a.pk]}, format="json").status_code == 200


def test_bad_expected_is_400(team, client_for):
    url = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    for expected in ({"abc": 1}, {"-1": 0}, {str(team.images[0].pk): -1}, [1, 2]):
        response = client_for(team.annotator).post(
            url, {"class": team.cat.pk, "image_ids": [team.images[0].pk], "expected": expected}, format="json"
        )
        assert response.status_code == 400, (expected, response.content)


def test_accept_leaves_an_image_labeled_between_read_and_write_alone(team, map_of, monkeypatch):
    from labeling.services.suggestions import suggestions_accept

    a, b, c, d = team.images
    map_of(
        team.dataset,
        {a: (0, 0, 0), b: (1, 0, 0), c: (2, 0, 0), d: (3, 0, 0)},
        suggestions={a: (team.cat, 0.9), b: (team.cat, 0.9), c: (team.cat, 0.9)},
    )
    real_apply = annotation_services.annotations_apply_mapping

    def hand_label_first(**kwargs):
        # The suggestions were read; before the write locks the rows, someone labels b by hand.
        annotation_services.annotation_set(image=b, label_class=team.dog, user=team.reviewer)
        return real_apply(**kwargs)

    monkeypatch.setattr(annotation_services, "annotations_apply_mapping", hand_label_first)
    action = suggestions_accept(dataset=team.dataset, user=team.annotator, label_class=team.cat)
    state = _state(team.dataset)
    assert state[b.pk] == team.dog.pk  # the hand label stays
    assert state[a.pk] == state[c.pk] == team.cat.pk
    assert action.image_count == 2 and action.skipped == [b.pk]


def test_accept_with_stale_expected_is_409(team, client_for, map_of):
    a, b, _, _ = team.images
    map_of(team.dataset, {a: (0, 0, 0), b: (1, 0, 0)}, suggestions={a: (team.cat, 0.9), b: (team.cat, 0.9)})
    annotation_services.annotation_set(image=b, label_class=team.dog, user=team.reviewer)
    url = reverse("suggestions-accept", kwargs={"dataset_id": team.dataset.pk})
    response = client_for(team.annotator).post(
        url, {"class": team.cat.pk, "expected": {str(a.pk): 0, str(b.pk): 0}}, format="json"
    )
    assert response.status_code == 409 and response.json()["conflicts"][0]["image"] == b.pk
    assert _state(team.dataset) == {b.pk: team.dog.pk}


def test_undo_answers_the_restored_images_new_versions(team, client_for):
    a, b, _, _ = team.images
    client = client_for(team.annotator)
    bulk = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    done = client.post(
        bulk, {"class": team.cat.pk, "image_ids": [a.pk, b.pk], "expected": {str(a.pk): 0, str(b.pk): 0}}, format="json"
    ).json()
    assert done["versions"] == {str(a.pk): 1, str(b.pk): 1}
    undo = client.post(reverse("action-undo", kwargs={"dataset_id": team.dataset.pk, "action_id": done["action_id"]}))
    assert undo.status_code == 200 and undo.json()["versions"] == {str(a.pk): 2, str(b.pk): 2}
    # A page that takes those versions writes on without reloading; the old ones are stale.
    stale = client.post(bulk, {"class": team.dog.pk, "image_ids": [a.pk], "expected": {str(a.pk): 1}}, format="json")
    assert stale.status_code == 409
    ok = client.post(bulk, {"class": team.dog.pk, "image_ids": [a.pk], "expected": {str(a.pk): 2}}, format="json")
    assert ok.status_code == 200


def test_marking_reviewed_labels_changed_since_they_were_seen_is_409(team, client_for, map_of):
    from labeling.models import ReviewResolution

    a, b, c, _ = team.images
    map_of(team.dataset, {a: (0, 0, 0), b: (1, 0, 0), c: (2, 0, 0)})
    annotation_services.annotations_apply_bulk(
        dataset=team.dataset, user=team.admin, label_class=team.cat, image_ids=[a.pk, b.pk, c.pk]
    )
    seen = {str(i.pk): 1 for i in (a, b, c)}
    annotation_services.annotation_set(image=b, label_class=team.dog, user=team.annotator)  # after the reviewer read
    url = reverse("review-resolve", kwargs={"dataset_id": team.dataset.pk})
    client = client_for(team.reviewer)
    response = client.post(url, {"kind": "cluster", "id": 0, "outcome": "reviewed", "expected": seen}, format="json")
    assert response.status_code == 409 and response.json()["conflicts"][0]["image"] == b.pk
    assert not ReviewResolution.objects.exists()
    assert not Annotation.objects.filter(dataset=team.dataset, reviewed_by__isnull=False).exists()
    seen[str(b.pk)] = 2
    response = client.post(url, {"kind": "cluster", "id": 0, "outcome": "reviewed", "expected": seen}, format="json")
    assert response.status_code == 200, response.content
    assert Annotation.objects.filter(dataset=team.dataset, reviewed_by=team.reviewer).count() == 3
