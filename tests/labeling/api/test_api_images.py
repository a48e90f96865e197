"""Image listing, filters, detail and upload through the API."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.models import Image
from labeling.services.annotations import annotations_apply_bulk


def _ids(response):
    assert response.status_code == 200, response.json()
    return [r["id"] for r in response.json()["results"]]


def test_list_and_filters(team, client_for, map_of):
    a, b, c, d = team.images
    map_of(team.dataset, {a: (0.0, 0.0, 0), b: (1.0, 0.0, 0), c: (5.0, 5.0, 1), d: (6.0, 5.0, 1)})
    annotations_apply_bulk(dataset=team.dataset, user=team.admin, label_class=team.cat, image_ids=[a.pk, c.pk])
    client = client_for(team.annotator)
    url = reverse("image-list", kwargs={"dataset_id": team.dataset.pk})
    assert _ids(client.get(url)) == [a.pk, b.pk, c.pk, d.pk]
    assert _ids(client.get(url, {"class": team.cat.pk})) == [a.pk, c.pk]
    assert _ids(client.get(url, {"unlabeled": "true"})) == [b.pk, d.pk]
    assert _ids(client.get(url, {"cluster": 1})) == [c.pk, d.pk]
    assert _ids(client.get(url, {"cluster": 1, "unlabeled": "true"})) == [d.pk]
    first = client.get(url).json()["results"][0]
    assert first["class"] == team.cat.pk and first["cluster"] == 0 and first["annotation_version"] == 1
    assert first["url"].endswith(f"/images/{a.pk}/file/") and first["thumbnail_url"].endswith("/thumbnail/")


@pytest.mark.parametrize(
    "query",
    [{"class": "cat"}, {"cluster": "x"}, {"unlabeled": "maybe"}, {"label": 1}, {"owner": "x"}, {"page_size": 0}],
)
def test_bad_or_unknown_filters_are_400(team, client_for, query):
    url = reverse("image-list", kwargs={"dataset_id": team.dataset.pk})
    response = client_for(team.annotator).get(url, query)
    assert response.status_code == 400
    assert response.json()["detail"]


def test_filter_by_class_of_another_dataset_is_400(team, client_for):
    url = reverse("image-list", kwargs={"dataset_id": team.dataset.pk})
    assert client_for(team.annotator).get(url, {"class": team.other_class.pk}).status_code == 400


def test_image_detail_and_cross_dataset_404(team, client_for, map_of):
    image = team.images[0]
    map_of(team.dataset, {image: (1.5, -2.5, 3)}, suggestions={image: (team.dog, 0.75)})
    body = client_for(team.reviewer).get(reverse("image-detail", kwargs={"image_id": image.pk})).json()
    for key in (
        "id",
        "dataset",
        "name",
        "width",
        "height",
        "url",
        "thumbnail_url",
        "class",
        "annotation_version",
        "cluster",
        "x",
        "y",
    ):
        assert key in body
    assert (body["dataset"], body["width"], body["height"]) == (team.dataset.pk, 8, 6)
    assert (body["x"], body["y"], body["cluster"], body["suggestion"], body["confidence"]) == (
        1.5,
        -2.5,
        3,
        team.dog.pk,
        0.75,
    )
    assert body["class"] is None and body["annotation_version"] == 0 and body["reviewed"] is False
    for name in ("image-detail", "image-history", "image-similar"):
        response = client_for(team.outsider).get(reverse(name, kwargs={"image_id": image.pk}))
        assert response.status_code == 404
        # A missing id and someone else's image look the same.
        assert response.json() == client_for(team.outsider).get(reverse(name, kwargs={"image_id": 10**12})).json()


def test_upload_report(team, client_for, make_png):
    client = client_for(team.admin)
    url = reverse("image-list", kwargs={"dataset_id": team.dataset.pk})
    png = make_png(size=(12, 10), seed=77)
    files = [
        SimpleUploadedFile("one.png", png, content_type="image/png"),
        SimpleUploadedFile("again.png", png, content_type="image/png"),
        SimpleUploadedFile("notes.png", b"<html><script>alert(1)</script>", content_type="image/png"),
    ]
    response = client.post(url, {"files": files}, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert [c["name"] for c in body["created"]] == ["one.png"]
    assert [s["name"] for s in body["skipped"]] == ["again.png"] and body["skipped"][0]["reason"]
    assert [r["name"] for r in body["rejected"]] == ["notes.png"] and body["rejected"][0]["error"]
    assert Image.objects.filter(dataset=team.dataset).count() == 5


def test_upload_without_files_is_400_and_too_many_is_413(team, client_for, make_png, settings):
    client = client_for(team.admin)
    url = reverse("image-list", kwargs={"dataset_id": team.dataset.pk})
    assert client.post(url, {}, format="multipart").status_code == 400
    settings.SIMLABEL_MAX_FILES_PER_REQUEST = 2
    files = [SimpleUploadedFile(f"{i}.png", make_png(seed=500 + i), content_type="image/png") for i in range(3)]
    response = client.post(url, {"files": files}, format="multipart")
    assert response.status_code == 413 and response.json()["detail"]
    assert Image.objects.filter(dataset=team.dataset).count() == 4


def test_upload_over_the_request_size_limit_is_413(team, client_for, make_png, settings):
    settings.SIMLABEL_MAX_UPLOAD_BYTES = 1000
    url = reverse("image-list", kwargs={"dataset_id": team.dataset.pk})
    files = [SimpleUploadedFile("big.png", make_png(size=(64, 64), seed=3), content_type="image/png")]
    response = client_for(team.admin).post(url, {"files": files}, format="multipart")
    assert response.status_code == 413


def test_too_many_multipart_files_for_django_is_413(team, client_for, make_png, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    url = reverse("image-list", kwargs={"dataset_id": team.dataset.pk})
    files = [SimpleUploadedFile(f"{i}.png", make_png(seed=900 + i), content_type="image/png") for i in range(3)]
    response = client_for(team.admin).post(url, {"files": files}, format="multipart")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
