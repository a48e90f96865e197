"""Exports in every format, parsed back and compared with the database."""

import csv
import io
import json
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from labeling.models import Annotation, Image, LabelClass
from labeling.services.annotations import annotations_apply_bulk
from labeling.services.exports import csv_safe, safe_name


@pytest.fixture
def labeled(team, add_image):
    """Digits with hostile names: two cats, one dog, one unlabeled; plus a formula-like name."""
    evil = add_image(team.dataset, name='=HYPERLINK("http://x")..\\..\\evil.png')
    LabelClass.objects.filter(pk=team.dog.pk).update(name="../dog/<b>")
    a, b, c, d = team.images
    annotations_apply_bulk(dataset=team.dataset, user=team.annotator, label_class=team.cat, image_ids=[a.pk, b.pk])
    annotations_apply_bulk(dataset=team.dataset, user=team.admin, label_class=team.dog, image_ids=[c.pk, evil.pk])
    # The other dataset's labels must never appear.
    annotations_apply_bulk(
        dataset=team.other,
        user=team.outsider,
        label_class=team.other_class,
        image_ids=[i.pk for i in team.other_images],
    )
    return team


def _export(client, team, fmt, unlabeled=False):
    url = reverse("export", kwargs={"dataset_id": team.dataset.pk}) + f"?format={fmt}"
    if unlabeled:
        url += "&include_unlabeled=true"
    response = client.get(url)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return response, b"".join(response.streaming_content)


def _db_rows(dataset, unlabeled):
    images = Image.objects.filter(dataset=dataset).order_by("id")
    if not unlabeled:
        images = images.filter(annotation__label_class__isnull=False)
    return [
        {
            "image_id": i.pk,
            "name": i.original_name,
            "sha256": i.sha256,
            "class": Annotation.objects.filter(image=i).values_list("label_class__name", flat=True).first(),
            "class_id": Annotation.objects.filter(image=i).values_list("label_class_id", flat=True).first(),
            "author": Annotation.objects.filter(image=i).values_list("author__username", flat=True).first(),
        }
        for i in images
    ]


@pytest.mark.parametrize("unlabeled", [False, True])
def test_json_round_trip(labeled, client_for, unlabeled):
    response, body = _export(client_for(labeled.annotator), labeled, "json", unlabeled)
    assert response["Content-Type"] == "application/json"
    rows = json.loads(body)
    assert [{k: r[k] for k in ("image_id", "name", "sha256", "class", "class_id", "author")} for r in rows] == _db_rows(
        labeled.dataset, unlabeled
    )
    assert all(r["updated"] for r in rows if r["class"])


@pytest.mark.parametrize("unlabeled", [False, True])
def test_csv_round_trip_and_formula_injection(labeled, client_for, unlabeled):
    response, body = _export(client_for(labeled.annotator), labeled, "csv", unlabeled)
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    expected = _db_rows(labeled.dataset, unlabeled)
    assert len(rows) == len(expected)
    for row, db in zip(rows, expected):
        assert int(row["image_id"]) == db["image_id"] and row["sha256"] == db["sha256"]
        assert row["class"] == (db["class"] or "") and row["author"] == (db["author"] or "")
        assert row["name"] == csv_safe(db["name"])
    assert any(r["name"].startswith("'=HYPERLINK") for r in rows)
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())


def test_coco_round_trip(labeled, client_for):
    _, body = _export(client_for(labeled.annotator), labeled, "coco", True)
    coco = json.loads(body)
    images = Image.objects.filter(dataset=labeled.dataset)
    assert sorted(i["id"] for i in coco["images"]) == sorted(images.values_list("id", flat=True))
    assert {c["id"]: c["name"] for c in coco["categories"]} == dict(
        LabelClass.objects.filter(dataset=labeled.dataset).values_list("id", "name")
    )
    by_image = {a["image_id"]: a["category_id"] for a in coco["annotations"]}
    assert by_image == dict(
        Annotation.objects.filter(dataset=labeled.dataset, label_class__isnull=False).values_list(
            "image_id", "label_class_id"
        )
    )
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
    for ann in coco["annotations"]:
        image = next(i for i in coco["images"] if i["id"] == ann["image_id"])
        assert ann["bbox"] == [0, 0, image["width"], image["height"]]


@pytest.mark.parametrize("unlabeled", [False, True])
def test_imagefolder_round_trip(labeled, client_for, unlabeled):
    response, body = _export(client_for(labeled.annotator), labeled, "imagefolder", unlabeled)
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    names = archive.namelist()
    for name in names:
        assert not name.startswith("/") and ".." not in name.split("/") and "\\" not in name
        assert name.count("/") == 1
    expected = {}
    for row in _db_rows(labeled.dataset, unlabeled):
        image = Image.objects.get(pk=row["image_id"])
        folder = {labeled.cat.pk: "cat", labeled.dog.pk: safe_name("../dog/<b>", "x"), None: "unlabeled"}[
            row["class_id"]
        ]
        with default_storage.open(image.file.name, "rb") as fp:
            expected[(folder, image.pk)] = fp.read()
    found = {}
    for name in names:
        folder, file_name = name.split("/")
        found[(folder, int(file_name.split("_", 1)[0]))] = archive.read(name)
    assert found == expected
    assert ("unlabeled" in {f for f, _ in found}) == unlabeled


def test_export_refuses_unknown_format_and_params(labeled, client_for):
    client = client_for(labeled.annotator)
    url = reverse("export", kwargs={"dataset_id": labeled.dataset.pk})
    assert client.get(url + "?format=xml").status_code == 400
    assert client.get(url + "?format=json&dataset=2").status_code == 400
    assert client.get(url).status_code == 200  # json by default


def test_export_of_another_dataset_is_404(labeled, client_for):
    url = reverse("export", kwargs={"dataset_id": labeled.other.pk}) + "?format=json"
    assert client_for(labeled.annotator).get(url).status_code == 404


def test_safe_name():
    assert safe_name("../../etc/passwd", "x") == "passwd"
    assert safe_name("C:\\Windows\\x.png", "x") == "x.png"
    assert safe_name("..", "fallback") == "fallback"
    assert safe_name("ünïcödé name.png", "x") == "unicode name.png"
