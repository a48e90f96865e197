"""Importing labels for images already in a dataset: CSV, COCO and Label Studio files, through the REST
API (DRF's client, real multipart files), undo, the unknown-class rule, the report, roles and the command."""

import codecs
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from labeling.models import Annotation, AnnotationHistory, AnnotationSource, LabelAction, LabelClass
from labeling.services.annotations import annotations_apply_bulk
from tests.labeling.api.conftest import db_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def pets(make_user, make_dataset, add_image):
    """A dataset with an admin, a reviewer and an annotator, classes cat and dog, five images
    (two of them named dup.png), and another team's dataset."""
    from tests.factories import LabelClassFactory

    admin, reviewer, annotator, outsider = (make_user(n) for n in ("alice", "rita", "anna", "oscar"))
    dataset = make_dataset("Pets", admin=admin, members={reviewer: "reviewer", annotator: "annotator"})
    make_dataset("Other", admin=outsider)
    cat = LabelClassFactory(dataset=dataset, name="cat", color="#ff0000")
    dog = LabelClassFactory(dataset=dataset, name="dog", color="#00ff00")
    names = ["a.png", "b.png", "c.png", "dup.png", "dup.png"]
    images = {n: add_image(dataset, name=name, user=admin) for n, name in enumerate(names)}
    return {
        "dataset": dataset,
        "admin": admin,
        "reviewer": reviewer,
        "annotator": annotator,
        "outsider": outsider,
        "cat": cat,
        "dog": dog,
        "a": images[0],
        "b": images[1],
        "c": images[2],
        "dups": [images[3], images[4]],
    }


def labels(dataset) -> dict:
    return dict(Annotation.objects.filter(dataset=dataset).values_list("image_id", "label_class_id"))


def post_import(client, dataset, content: bytes, format: str, name="labels", **fields):
    url = reverse("annotation-import", kwargs={"dataset_id": dataset.pk})
    upload = SimpleUploadedFile(name, content)
    return client.post(url, {"file": upload, "format": format, **fields}, format="multipart")


# --- CSV -------------------------------------------------------------------------------------------------


def test_csv_import_is_one_undoable_action_and_reports_what_did_not_match(
    pets, client_for, django_capture_on_commit_callbacks
):
    dataset, cat, dog = pets["dataset"], pets["cat"], pets["dog"]
    annotations_apply_bulk(dataset=dataset, user=pets["admin"], label_class=dog, image_ids=[pets["b"].pk])
    before = labels(dataset)
    csv_text = (
        "name,sha256,class\n"
        "a.png,,cat\n"
        "photos/b.png,,cat\n"  # folders drop away: the stored name is a base name
        f",{pets['c'].sha256.upper()},dog\n"  # by content
        "missing.png,,cat\n"
        "a.png,,\n"  # no class
        f",{'0' * 64},cat\n"
        "dup.png,,cat\n"
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post_import(
            client_for(pets["annotator"]), dataset, codecs.BOM_UTF8 + csv_text.encode(), "csv", name="l.csv"
        )
    assert response.status_code == 200, response.json()
    report = response.json()
    assert (report["rows"], report["matched"], report["updated"], report["unchanged"]) == (7, 3, 3, 0)
    assert report["unmatched_count"] == 3
    reasons = {row["row"]: row["reason"] for row in report["unmatched"]}
    assert reasons == {
        5: "no image of this dataset is named 'missing.png'",
        6: "no class given",
        7: "no image of this dataset has this sha256",
    }
    assert report["ambiguous_count"] == 1
    assert report["ambiguous"][0]["row"] == 8
    assert sorted(report["ambiguous"][0]["image_ids"]) == sorted(i.pk for i in pets["dups"])
    assert labels(dataset) == {pets["a"].pk: cat.pk, pets["b"].pk: cat.pk, pets["c"].pk: dog.pk}
    # One action, with a history row per changed image; the labels-changed notification ran after commit.
    action = LabelAction.objects.get(pk=report["action_id"])
    assert (action.source, action.image_count, action.user_id) == (AnnotationSource.IMPORT, 3, pets["annotator"].pk)
    assert AnnotationHistory.objects.filter(action=action).count() == 3
    dataset.refresh_from_db()
    assert dataset.labels_changed_at is not None

    # Undo restores every image to its class before the import.
    undo = client_for(pets["annotator"]).post(
        reverse("action-undo", kwargs={"dataset_id": dataset.pk, "action_id": action.pk})
    )
    assert undo.status_code == 200, undo.json()
    assert undo.json()["restored"] == 3
    assert {k: v for k, v in labels(dataset).items() if v is not None} == before


def test_csv_semicolons_windows_1252_and_formula_guard(pets, client_for):
    """A spreadsheet's CSV: ";" separated, Windows-1252, and cells our own export guarded ("'-x")."""
    dataset = pets["dataset"]
    minus = LabelClass.objects.create(dataset=dataset, name="-1 ° cold", color="#123456")
    content = "Name;Class\r\na.png;'-1 ° cold\r\nb.png;CAT\r\n".encode("cp1252")
    response = post_import(client_for(pets["admin"]), dataset, content, "csv")
    assert response.status_code == 200, response.json()
    # "CAT" finds "cat": one class differs only in case.
    assert labels(dataset) == {pets["a"].pk: minus.pk, pets["b"].pk: pets["cat"].pk}


def test_csv_export_imports_back(pets, client_for):
    """Our own CSV export (image_id, name, sha256, class, …) is a valid import: by sha256, even for dup.png."""
    dataset, cat, dog = pets["dataset"], pets["cat"], pets["dog"]
    wanted = {pets["a"].pk: cat.pk, pets["dups"][0].pk: dog.pk, pets["dups"][1].pk: cat.pk}
    for image_id, class_id in wanted.items():
        annotations_apply_bulk(
            dataset=dataset, user=pets["admin"], label_class=LabelClass.objects.get(pk=class_id), image_ids=[image_id]
        )
    client = client_for(pets["admin"])
    exported = b"".join(client.get(reverse("export", kwargs={"dataset_id": dataset.pk}), {"format": "csv"}))
    annotations_apply_bulk(dataset=dataset, user=pets["admin"], label_class=None, image_ids=list(wanted))
    response = post_import(client, dataset, exported, "csv")
    assert response.status_code == 200, response.json()
    assert response.json()["updated"] == 3 and response.json()["ambiguous_count"] == 0
    assert {k: v for k, v in labels(dataset).items() if v} == wanted


def test_one_image_given_two_classes_is_left_alone(pets, client_for):
    dataset = pets["dataset"]
    content = b"name,class\na.png,cat\na.png,dog\nb.png,cat\nb.png,cat\n"
    response = post_import(client_for(pets["admin"]), dataset, content, "csv")
    assert response.status_code == 200
    report = response.json()
    assert report["updated"] == 1  # b.png, listed twice with the same class
    assert [r["row"] for r in report["unmatched"]] == [2, 3]
    assert "several classes (cat, dog)" in report["unmatched"][0]["reason"]
    assert labels(dataset) == {pets["b"].pk: pets["cat"].pk}


def test_only_unlabeled_keeps_existing_classes(pets, client_for):
    dataset, cat, dog = pets["dataset"], pets["cat"], pets["dog"]
    annotations_apply_bulk(dataset=dataset, user=pets["admin"], label_class=dog, image_ids=[pets["a"].pk])
    content = b"name,class\na.png,cat\nb.png,cat\n"
    response = post_import(client_for(pets["admin"]), dataset, content, "csv", only_unlabeled="true")
    assert response.status_code == 200
    assert (response.json()["updated"], response.json()["kept"]) == (1, 1)
    assert labels(dataset) == {pets["a"].pk: dog.pk, pets["b"].pk: cat.pk}


# --- COCO ------------------------------------------------------------------------------------------------


def test_coco_export_of_another_dataset_imports_by_sha256_and_file_name(pets, client_for, make_dataset, add_image):
    dataset, cat, dog = pets["dataset"], pets["cat"], pets["dog"]
    # Our own ?format=coco export (it carries sha256) of a copy of two of the images elsewhere.
    source = make_dataset("Source", admin=pets["admin"])
    from tests.factories import LabelClassFactory

    source_dog = LabelClassFactory(dataset=source, name="dog")
    copy = add_image(source, data=pets["a"].file.open("rb").read(), name="renamed.png")
    annotations_apply_bulk(dataset=source, user=pets["admin"], label_class=source_dog, image_ids=[copy.pk])
    client = client_for(pets["admin"])
    exported = b"".join(client.get(reverse("export", kwargs={"dataset_id": source.pk}), {"format": "coco"}))
    response = post_import(client, dataset, exported, "coco", name="coco.json")
    assert response.status_code == 200, response.json()
    assert labels(dataset) == {pets["a"].pk: dog.pk}

    # A COCO file from elsewhere: no sha256, string ids, several annotations of one image, loose references.
    coco = {
        "images": [{"id": "1", "file_name": "train/b.png"}, {"id": 2, "file_name": "c.png"}, {"file_name": "x"}],
        "categories": [{"id": 7, "name": "cat"}, {"id": 8, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7},
            {"id": 2, "image_id": 1, "category_id": "7"},
            {"id": 3, "image_id": 2, "category_id": 8},
            {"id": 4, "image_id": 99, "category_id": 7},
            {"id": 5, "image_id": 2, "category_id": 42},
        ],
    }
    response = post_import(client, dataset, json.dumps(coco).encode(), "coco")
    assert response.status_code == 200, response.json()
    report = response.json()
    assert (report["rows"], report["updated"]) == (5, 2)
    assert [(r["row"], r["reason"]) for r in report["unmatched"]] == [
        (4, "image_id 99 is not among the file's images"),
        (5, "category_id 42 is not among the file's categories"),
    ]
    assert labels(dataset) == {pets["a"].pk: dog.pk, pets["b"].pk: cat.pk, pets["c"].pk: dog.pk}


# --- Label Studio ---------------------------------------------------------------------------------------------


def _task(image, *annotations, predictions=()):
    return {"data": {"image": image}, "annotations": list(annotations), "predictions": list(predictions)}


def _choice(label, *, at, cancelled=False, id=1):
    return {
        "id": id,
        "was_cancelled": cancelled,
        "updated_at": at,
        "result": [
            {"type": "rectanglelabels", "value": {"rectanglelabels": ["x"]}},
            {"type": "choices", "from_name": "choice", "to_name": "image", "value": {"choices": [label]}},
        ],
    }


def test_label_studio_takes_each_tasks_latest_annotation_that_was_not_cancelled(pets, client_for):
    dataset, cat, dog = pets["dataset"], pets["cat"], pets["dog"]
    tasks = [
        # An upload ("<8 hex>-name"): the newer annotation wins.
        _task(
            "/data/upload/3/1a2b3c4d-a.png",
            _choice("cat", at="2024-01-01T10:00:00Z", id=1),
            _choice("dog", at="2024-02-01T10:00:00Z", id=2),
        ),
        # Local files (?d=folder/name, URL-quoted): the newest one was cancelled (skipped), so the one before.
        _task(
            "/data/local-files/?d=pets%2Fb.png",
            _choice("dog", at="2024-01-01T10:00:00Z", id=3),
            _choice("cat", at="2024-03-01T10:00:00Z", cancelled=True, id=4),
        ),
        # Only a prediction: predictions are not labels.
        _task("s3://bucket/c.png", predictions=[_choice("dog", at="2024-01-01T10:00:00Z")]),
        {"data": {"text": "no image"}, "annotations": [_choice("cat", at="2024-01-01")]},
        _task("c.png", {"id": 9, "result": [], "updated_at": "2024-01-01"}),
    ]
    response = post_import(client_for(pets["reviewer"]), dataset, json.dumps(tasks).encode(), "labelstudio")
    assert response.status_code == 200, response.json()
    report = response.json()
    assert (report["rows"], report["updated"], report["unmatched_count"]) == (5, 2, 3)
    assert [r["reason"] for r in report["unmatched"]] == [
        "the task has no annotation",
        "the task has no data.image",
        "the task's latest annotation has no choice",
    ]
    assert labels(dataset) == {pets["a"].pk: dog.pk, pets["b"].pk: dog.pk}
    assert cat  # unused otherwise


# --- classes -----------------------------------------------------------------------------------------------------


def test_unknown_classes_are_refused_listing_them_and_nothing_changes(pets, client_for):
    dataset = pets["dataset"]
    before = db_snapshot()
    content = b"name,class\na.png,cat\nb.png,bird\nc.png,Fish\nmissing.png,ghost\n"
    response = post_import(client_for(pets["admin"]), dataset, content, "csv")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "unknown_classes"
    # Only classes of rows that matched an image count: ghost's row matched nothing.
    assert body["unknown_classes"] == ["bird", "Fish"]
    assert "bird, Fish" in body["detail"]
    assert db_snapshot() == before


def test_create_classes_creates_them_in_the_same_action(pets, client_for):
    dataset = pets["dataset"]
    content = b"name,class\na.png,cat\nb.png,bird\nc.png,bird\n"
    response = post_import(client_for(pets["admin"]), dataset, content, "csv", create_classes="true")
    assert response.status_code == 200, response.json()
    assert response.json()["created_classes"] == ["bird"]
    bird = LabelClass.objects.get(dataset=dataset, name="bird")
    assert labels(dataset) == {pets["a"].pk: pets["cat"].pk, pets["b"].pk: bird.pk, pets["c"].pk: bird.pk}
    assert LabelAction.objects.filter(dataset=dataset).count() == 1


def test_a_bad_new_class_name_rolls_back_everything(pets, client_for):
    dataset = pets["dataset"]
    before = db_snapshot()
    content = f"name,class\na.png,bird\nb.png,{'x' * 101}\n".encode()
    response = post_import(client_for(pets["admin"]), dataset, content, "csv", create_classes="true")
    assert response.status_code == 400
    assert "at most 100 characters" in response.json()["detail"]
    assert db_snapshot() == before  # bird was created, then rolled back with the rest


def test_only_admins_may_create_classes(pets, client_for):
    dataset = pets["dataset"]
    before = db_snapshot()
    content = b"name,class\na.png,bird\n"
    response = post_import(client_for(pets["annotator"]), dataset, content, "csv", create_classes="true")
    assert response.status_code == 403
    assert "may not create classes" in response.json()["detail"]
    assert db_snapshot() == before


# --- bad files and requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "format, content, message",
    [
        ("coco", b'{"images": [', "The file is not valid JSON: Expecting value at line 1, column 13."),
        ("labelstudio", b"[" * 100_000, "The file is not valid JSON"),
        ("coco", b"[]", "A COCO file must be a JSON object with lists images, categories and annotations."),
        ("coco", b'{"images": [], "categories": [{"id": 1}], "annotations": []}', "categories[0] needs an id"),
        ("labelstudio", b'{"data": {}}', "A Label Studio export must be a JSON list of tasks."),
        ("labelstudio", b"[1]", "Label Studio task 1 is not an object."),
        ("csv", b"file,label_name\na.png,cat\n", "first line must name its columns"),
        ("csv", b"class,comment\ncat,x\n", "needs a name or a sha256 column"),
        ("csv", b'name,class\nb.png,dog\n"a.png,cat\n', "The CSV cannot be read at line 3: unexpected end of data."),
        ("csv", b"\n \n", "The file is empty."),
        ("csv", b"name,class\n\x81\x8d\x8f,cat\n", "must be UTF-8"),
    ],
)
def test_a_bad_file_is_a_clear_400_and_changes_nothing(pets, client_for, format, content, message):
    before = db_snapshot()
    response = post_import(client_for(pets["admin"]), pets["dataset"], content, format)
    assert response.status_code == 400, response.json()
    assert message in response.json()["detail"]
    assert db_snapshot() == before


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"format": "xml"}, "format"),
        ({"format": "csv", "overwrite": "true"}, "Unknown field(s): overwrite."),
        ({"format": "csv", "file": None}, "file"),
    ],
)
def test_bad_requests_are_400(pets, client_for, fields, message):
    url = reverse("annotation-import", kwargs={"dataset_id": pets["dataset"].pk})
    body = {"file": SimpleUploadedFile("l.csv", b"name,class\na.png,cat\n"), **fields}
    body = {k: v for k, v in body.items() if v is not None}
    response = client_for(pets["admin"]).post(url, body, format="multipart")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Annotation.objects.filter(label_class__isnull=False).exists()


def test_a_file_over_the_limit_is_413(pets, client_for, settings):
    settings.SIMLABEL_MAX_LABEL_IMPORT_BYTES = 1000
    content = b"name,class\n" + b"a.png,cat\n" * 200
    response = post_import(client_for(pets["admin"]), pets["dataset"], content, "csv")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert not Annotation.objects.exists()


# --- who may import ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role, status", [("admin", 200), ("reviewer", 200), ("annotator", 200), ("outsider", 404), ("anonymous", 401)]
)
def test_roles(pets, client_for, role, status):
    user = pets.get(role)
    before = db_snapshot()
    response = post_import(client_for(user), pets["dataset"], b"name,class\na.png,cat\n", "csv")
    assert response.status_code == status
    if status == 200:
        assert labels(pets["dataset"]) == {pets["a"].pk: pets["cat"].pk}
    else:
        assert db_snapshot() == before


def test_an_annotator_can_undo_own_import_but_not_another_annotators(pets, client_for, make_user):
    from tests.factories import MembershipFactory

    dataset = pets["dataset"]
    other = make_user("bob")
    MembershipFactory(dataset=dataset, user=other, role="annotator")
    response = post_import(client_for(pets["annotator"]), dataset, b"name,class\na.png,cat\n", "csv")
    url = reverse("action-undo", kwargs={"dataset_id": dataset.pk, "action_id": response.json()["action_id"]})
    assert client_for(other).post(url).status_code == 403
    assert client_for(pets["admin"]).post(url).status_code == 200
    assert not Annotation.objects.filter(label_class__isnull=False).exists()


# --- the command -------------------------------------------------------------------------------------------------


def test_import_labels_command(pets, tmp_path):
    dataset = pets["dataset"]
    path = tmp_path / "labels.csv"
    path.write_text("name,class\na.png,cat\nb.png,bird\nnope.png,cat\ndup.png,cat\n", encoding="utf-8-sig")
    with pytest.raises(CommandError, match="bird"):
        call_command("import_labels", "Pets", str(path), "--format", "csv", "--no-progress")
    assert not Annotation.objects.exists()

    out, err = io.StringIO(), io.StringIO()
    call_command(
        "import_labels",
        str(dataset.pk),
        str(path),
        "--format=csv",
        "--create-classes",
        "--user",
        "alice",
        stdout=out,
        stderr=err,
    )
    out = out.getvalue()
    assert "row 4: nope.png: no image of this dataset is named 'nope.png'" in out
    assert "row 5: dup.png: 2 images are named 'dup.png'; give sha256 instead" in out
    assert "4 row(s): 2 image(s) labeled" in out and "classes created: bird" in out
    assert "row" in err.getvalue()  # the tqdm progress bar
    action = LabelAction.objects.get(dataset=dataset)
    assert f"undo with action {action.pk}" in out
    assert action.user == pets["admin"]
    assert labels(dataset) == {
        pets["a"].pk: pets["cat"].pk,
        pets["b"].pk: LabelClass.objects.get(dataset=dataset, name="bird").pk,
    }
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_labels", "Pets", str(tmp_path / "none.csv"), "--format", "csv", "--no-progress")


def test_the_command_keeps_the_size_limit(pets, tmp_path, settings):
    """The service checks the size itself too: a command (or a body without Content-Length) reads no more."""
    settings.SIMLABEL_MAX_LABEL_IMPORT_BYTES = 100
    path = tmp_path / "big.csv"
    path.write_text("name,class\n" + "a.png,cat\n" * 20)
    with pytest.raises(CommandError, match="at most 100 bytes"):
        call_command("import_labels", "Pets", str(path), "--format", "csv", "--no-progress")
    assert not Annotation.objects.exists()
