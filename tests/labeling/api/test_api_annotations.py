"""Labeling through the API: one image, bulk selections, clusters, lasso, history, undo."""

import pytest
from django.urls import reverse

from labeling.models import Annotation, AnnotationHistory, LabelAction


def _class_of(image):
    return Annotation.objects.filter(image=image).values_list("label_class_id", flat=True).first()


def test_put_and_delete_annotation_with_versions(team, client_for):
    client = client_for(team.annotator)
    image = team.images[0]
    url = reverse("image-annotation", kwargs={"image_id": image.pk})
    response = client.put(url, {"class": team.cat.pk, "version": 0}, format="json")
    assert response.status_code == 200
    assert response.json()["annotation_version"] == 1 and response.json()["class"] == team.cat.pk
    stale = client_for(team.reviewer).put(url, {"class": team.dog.pk, "version": 0}, format="json")
    assert stale.status_code == 409
    body = stale.json()
    assert body["code"] == "stale_version" and body["current_version"] == 1 and body["current_class"] == team.cat.pk
    assert _class_of(image) == team.cat.pk
    detail = client.get(reverse("image-detail", kwargs={"image_id": image.pk})).json()
    assert detail["class"] == team.cat.pk and detail["annotation_version"] == 1
    assert client.delete(url + "?version=0").status_code == 409
    cleared = client.delete(url + "?version=1")
    assert cleared.status_code == 200 and cleared.json()["class"] is None
    assert client.put(url, {"class": None}, format="json").json()["action_id"] is None  # already clear


@pytest.mark.parametrize("body", [{"class": "x"}, {}, {"class": 999999}, {"class": -1}, {"class": 1, "version": -1}])
def test_put_invalid_body_is_400(team, client_for, body):
    url = reverse("image-annotation", kwargs={"image_id": team.images[0].pk})
    assert client_for(team.annotator).put(url, body, format="json").status_code == 400


def test_objects_pointing_into_another_dataset_are_refused(team, client_for):
    client = client_for(team.admin)
    put = client.put(
        reverse("image-annotation", kwargs={"image_id": team.images[0].pk}),
        {"class": team.other_class.pk},
        format="json",
    )
    assert put.status_code == 400
    bulk = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    mixed = client.post(
        bulk, {"class": team.cat.pk, "image_ids": [team.images[0].pk, team.other_images[0].pk]}, format="json"
    )
    assert mixed.status_code == 400 and mixed.json()["invalid_image_ids"] == [team.other_images[0].pk]
    foreign_class = client.post(bulk, {"class": team.other_class.pk, "image_ids": [team.images[0].pk]}, format="json")
    assert foreign_class.status_code == 400
    # The other dataset's image, addressed directly, does not exist for this user.
    other = client.put(
        reverse("image-annotation", kwargs={"image_id": team.other_images[0].pk}), {"class": team.cat.pk}, format="json"
    )
    assert other.status_code == 404
    assert not Annotation.objects.filter(label_class__isnull=False).exists()
    assert not LabelAction.objects.exists()


def test_bulk_by_ids_cluster_and_polygon(team, client_for, map_of):
    a, b, c, d = team.images
    map_of(team.dataset, {a: (0.0, 0.0, 0), b: (1.0, 0.0, 0), c: (10.0, 10.0, 1), d: (11.0, 10.0, 1)})
    client = client_for(team.annotator)
    url = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    by_ids = client.post(url, {"class": team.cat.pk, "image_ids": [a.pk, b.pk]}, format="json").json()
    assert by_ids["updated"] == 2
    by_cluster = client.post(
        url, {"class": team.dog.pk, "cluster": 1, "exclude_image_ids": [d.pk]}, format="json"
    ).json()
    assert by_cluster["updated"] == 1 and _class_of(c) == team.dog.pk and _class_of(d) is None
    lasso = client.post(
        url, {"class": team.spare.pk, "polygon": [[-1, -1], [0.5, -1], [0.5, 1], [-1, 1]]}, format="json"
    ).json()
    assert lasso["updated"] == 1 and _class_of(a) == team.spare.pk and _class_of(b) == team.cat.pk
    assert client.post(url, {"class": team.cat.pk, "cluster": 7}, format="json").status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"class": 1},
        {"class": 1, "image_ids": [1], "cluster": 0},
        {"class": 1, "polygon": [[0, 0], [1, 1]]},
        {"class": 1, "polygon": [[0, 0, 1], [1, 1], [2, 2]]},
        {"class": 1, "polygon": [[0, 0]] * 10_001},
        {"class": 1, "image_ids": list(range(1, 100_002))},
        {"class": 1, "image_ids": ["a"]},
        {"class": 1, "image_ids": [0]},
    ],
)
def test_bulk_invalid_bodies(team, client_for, body):
    url = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    response = client_for(team.admin).post(url, body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"]


def test_cluster_and_polygon_need_a_map(team, client_for):
    url = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    response = client_for(team.admin).post(url, {"class": team.cat.pk, "cluster": 0}, format="json")
    assert response.status_code == 400 and "map" in response.json()["detail"]


def test_history_actions_and_undo(team, client_for):
    ann, rev, admin = client_for(team.annotator), client_for(team.reviewer), client_for(team.admin)
    a, b = team.images[:2]
    bulk_url = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    action_id = ann.post(bulk_url, {"class": team.cat.pk, "image_ids": [a.pk, b.pk]}, format="json").json()["action_id"]
    rev.put(reverse("image-annotation", kwargs={"image_id": b.pk}), {"class": team.dog.pk}, format="json")
    undo_url = reverse("action-undo", kwargs={"dataset_id": team.dataset.pk, "action_id": action_id})
    assert rev.post(undo_url).status_code == 403  # not the author, not an admin
    result = ann.post(undo_url).json()
    assert result["action_id"] == action_id and result["restored"] == 1 and result["conflicts"] == [b.pk]
    assert _class_of(a) is None and _class_of(b) == team.dog.pk
    again = admin.post(undo_url)
    assert again.status_code == 409 and again.json()["undo_action_id"] == result["undo_action_id"]
    missing = reverse("action-undo", kwargs={"dataset_id": team.dataset.pk, "action_id": 10**9})
    assert ann.post(missing).status_code == 404

    history = ann.get(reverse("image-history", kwargs={"image_id": a.pk})).json()
    assert [(h["kind"], h["old_class"], h["new_class"], h["username"]) for h in history] == [
        ("undo", team.cat.pk, None, "anna"),
        ("set", None, team.cat.pk, "anna"),
    ]
    mine = ann.get(reverse("action-list", kwargs={"dataset_id": team.dataset.pk}) + "?mine=true").json()
    assert [r["kind"] for r in mine["results"]] == ["undo", "set"]
    assert mine["results"][1]["undone_by"] == result["undo_action_id"]
    everyone = ann.get(reverse("action-list", kwargs={"dataset_id": team.dataset.pk})).json()
    assert everyone["count"] == 3
    assert AnnotationHistory.objects.count() == 4


def test_undo_of_another_datasets_action_is_404(team, client_for):
    from labeling.services.annotations import annotations_apply_bulk

    theirs = annotations_apply_bulk(
        dataset=team.other, user=team.outsider, label_class=team.other_class, image_ids=[team.other_images[0].pk]
    )
    url = reverse("action-undo", kwargs={"dataset_id": team.dataset.pk, "action_id": theirs.pk})
    assert client_for(team.admin).post(url).status_code == 404
    assert _class_of(team.other_images[0]) == team.other_class.pk
