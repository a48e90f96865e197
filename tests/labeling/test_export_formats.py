"""The yolo, hf and labelstudio exports, each read back by what consumes it.

- yolo: a reader that follows the layout Ultralytics documents for classification datasets
  (docs.ultralytics.com/datasets/classify) and the rules its loader applies (ultralytics itself
  needs torchvision, which this project does not install).
- hf: Hugging Face `datasets.load_dataset("parquet", ...)`, the real library.
- labelstudio: the documented task shape, the image URLs fetched back, and simlabel's own
  Label Studio importer parsing the file.
"""

import io
import json
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image as PILImage

from labeling.models import Annotation, Image, LabelClass
from labeling.services.annotations import annotations_apply_bulk
from labeling.services.exports import safe_name
from labeling.services.label_import import read_label_rows

# ultralytics.data.utils.IMG_FORMATS: the suffixes its loaders pick up as images.
ULTRALYTICS_IMG_FORMATS = {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"}


@pytest.fixture
def pets(make_user, make_dataset, add_image, make_png):
    """Classes that collide as folder names, hostile names, JPEG and GIF files, unlabeled images."""
    from types import SimpleNamespace

    from tests.factories import LabelClassFactory

    admin, annotator, outsider = make_user("alice"), make_user("anna"), make_user("oscar")
    dataset = make_dataset("Pets", admin=admin, members={annotator: "annotator"})
    other = make_dataset("Other", admin=outsider)
    names = ["cat", "Cat", "../dog/<b>", "unlabeled", "empty"]
    classes = {name: LabelClassFactory(dataset=dataset, name=name, color="#123456") for name in names}
    counts = {"cat": 6, "Cat": 2, "../dog/<b>": 3, "unlabeled": 2}
    for name, count in counts.items():
        images = [add_image(dataset, name=f"{name[-3:]}{n}.png") for n in range(count)]
        annotations_apply_bulk(
            dataset=dataset, user=annotator, label_class=classes[name], image_ids=[i.pk for i in images]
        )
    jpeg = add_image(dataset, data=make_png(size=(9, 7), seed=77, mode="RGB", fmt="JPEG"), name="photo")
    gif = add_image(dataset, data=make_png(size=(5, 5), seed=78, fmt="GIF"), name="anim.gif")
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=classes["cat"], image_ids=[jpeg.pk, gif.pk])
    unlabeled = [add_image(dataset, name=f"raw{n}.png") for n in range(2)]
    other_class = LabelClassFactory(dataset=other, name="cat")
    other_image = add_image(other, name="cat0.png")
    annotations_apply_bulk(dataset=other, user=outsider, label_class=other_class, image_ids=[other_image.pk])
    return SimpleNamespace(
        admin=admin,
        annotator=annotator,
        outsider=outsider,
        dataset=dataset,
        other=other,
        classes=classes,
        jpeg=jpeg,
        gif=gif,
        unlabeled=unlabeled,
    )


def _url(dataset, query: str) -> str:
    return reverse("export", kwargs={"dataset_id": dataset.pk}) + "?" + query


def _download(client, dataset, query: str):
    response = client.get(_url(dataset, query))
    assert response.status_code == 200, response.content[:500]
    assert response.streaming
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return response, b"".join(response.streaming_content)


def _original(image_id: int) -> bytes:
    with default_storage.open(Image.objects.get(pk=image_id).file.name, "rb") as fp:
        return fp.read()


def _db_classes(dataset) -> dict[int, str | None]:
    """image id -> class name (None when unlabeled) of every image of the dataset."""
    return dict(Image.objects.filter(dataset=dataset).values_list("id", "annotation__label_class__name"))


# --- YOLO classification -----------------------------------------------------------------------------


def read_ultralytics_classify(zip_bytes: bytes, zip_name: str, into: Path) -> dict:
    """A classification dataset zip read the way Ultralytics lays it out and loads it.

    - unzip: a zip with one top-level folder unzips to that folder, else into a folder named
      after the zip (ultralytics.utils.downloads.unzip_file);
    - the root holds train/ and optionally val/ (or validation/, valid/) and test/;
    - the class names are train/'s sub-folders, sorted, and a class's index is its position
      (check_cls_dataset); each split is read as its own torchvision ImageFolder, so it must hold
      the same class folders, each with at least one image;
    - images are picked by suffix (IMG_FORMATS); anything else is not part of the dataset.
    Returns {"names": [...], "splits": {split: [(path, class index), ...]}}.
    """
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        assert archive.testzip() is None
        members = archive.namelist()
        for member in members:
            parts = PurePosixPath(member).parts
            assert not member.startswith("/") and ".." not in parts and "\\" not in member, member
        tops = {PurePosixPath(m).parts[0] for m in members}
        archive.extractall(into)
    root = into / tops.pop() if len(tops) == 1 else into / Path(zip_name).stem
    assert (root / "train").is_dir(), "Ultralytics needs a train/ folder"
    names = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    assert names, "no classes"
    # Folders that differ only in case merge on Windows and macOS filesystems.
    assert len({n.lower() for n in names}) == len(names)
    splits = {}
    for split in ("train", "val", "validation", "valid", "test"):
        folder = root / split
        if not folder.exists():
            continue
        assert sorted(d.name for d in folder.iterdir()) == names, f"{split}/ must hold exactly train/'s classes"
        samples = []
        for index, name in enumerate(names):
            files = sorted((folder / name).iterdir())
            assert files and all(f.is_file() and f.suffix[1:].lower() in ULTRALYTICS_IMG_FORMATS for f in files)
            samples += [(f, index) for f in files]
        splits[split] = samples
    assert set(p.name for p in root.iterdir()) <= {"train", "val", "validation", "valid", "test"}
    return {"names": names, "splits": splits}


def _yolo(client, pets, tmp_path, query=""):
    response, body = _download(client, pets.dataset, "format=yolo" + query)
    assert response["Content-Type"] == "application/zip"
    zip_name = response["Content-Disposition"].split('filename="', 1)[1].rstrip('"')
    return body, read_ultralytics_classify(body, zip_name, tmp_path / "unzipped")


def _check_yolo_images(pets, read) -> dict[str, dict[int, str]]:
    """Every labeled non-GIF image once, original bytes, in the folder of its class; {split: {id: class}}."""
    db = _db_classes(pets.dataset)
    found: dict[str, dict[int, str]] = {}
    folder_to_class: dict[str, str] = {}
    for split, samples in read["splits"].items():
        for path, index in samples:
            image_id = int(path.name.split("_", 1)[0])
            folder = read["names"][index]
            assert path.read_bytes() == _original(image_id)
            # One folder per class and one class per folder.
            assert folder_to_class.setdefault(folder, db[image_id]) == db[image_id]
            found.setdefault(split, {})[image_id] = db[image_id]
    assert len(set(folder_to_class.values())) == len(folder_to_class)
    ids = [i for split in found.values() for i in split]
    assert len(ids) == len(set(ids)), "an image is in two splits"
    expected = {pk for pk, name in db.items() if name is not None and pk != pets.gif.pk}
    assert set(ids) == expected
    assert folder_to_class["cat"] == "cat" and folder_to_class[safe_name("../dog/<b>", "x")] == "../dog/<b>"
    # "Cat" collides with "cat" where case is ignored; "unlabeled" is a class like any other here.
    assert {f for f, c in folder_to_class.items() if c == "Cat"} == {f"Cat_{pets.classes['Cat'].pk}"}
    assert folder_to_class["unlabeled"] == "unlabeled"
    return found


def test_yolo_train_only_matches_the_database(pets, client_for, tmp_path):
    _, read = _yolo(client_for(pets.annotator), pets, tmp_path, "&include_unlabeled=true")
    assert set(read["splits"]) == {"train"}
    found = _check_yolo_images(pets, read)
    # A class without images has no folder; unlabeled images are left out even when asked for.
    assert "empty" not in read["names"] and not set(found["train"]) & {i.pk for i in pets.unlabeled}
    jpeg = next(p for p, _ in read["splits"]["train"] if p.name.startswith(f"{pets.jpeg.pk}_"))
    assert jpeg.suffix == ".jpg" and PILImage.open(jpeg).format == "JPEG"


def test_yolo_val_split_is_stratified_and_deterministic(pets, client_for, tmp_path):
    client = client_for(pets.annotator)
    body, read = _yolo(client, pets, tmp_path / "a", "&val_fraction=0.3&seed=0")
    assert set(read["splits"]) == {"train", "val"}
    found = _check_yolo_images(pets, read)
    # Per class: round(n * 0.3) images in val/, at least 1 and at most n - 1.
    per_class = {}
    for split, images in found.items():
        for name in images.values():
            per_class.setdefault(name, {"train": 0, "val": 0})[split] += 1
    for name, counts in per_class.items():
        n = counts["train"] + counts["val"]
        assert counts["val"] == min(n - 1, max(1, int(n * 0.3 + 0.5))), (name, counts)
    # 7 labeled cats (the GIF is not one of them), 2 "Cat", 3 dogs, 2 "unlabeled".
    assert per_class == {
        "cat": {"train": 5, "val": 2},
        "Cat": {"train": 1, "val": 1},
        "../dog/<b>": {"train": 2, "val": 1},
        "unlabeled": {"train": 1, "val": 1},
    }
    again, _ = _yolo(client, pets, tmp_path / "b", "&val_fraction=0.3&seed=0")
    assert again == body
    val_ids = set()
    for seed in range(1, 6):
        _, other = _yolo(client, pets, tmp_path / f"s{seed}", f"&val_fraction=0.3&seed={seed}")
        val_ids.add(frozenset(int(p.name.split("_", 1)[0]) for p, _ in other["splits"]["val"]))
    assert len(val_ids) > 1, "the seed does not change the split"


def test_yolo_val_split_refuses_a_class_with_one_image(pets, client_for, add_image):
    lonely = LabelClass.objects.create(dataset=pets.dataset, name="lonely")
    image = add_image(pets.dataset, name="alone.png")
    annotations_apply_bulk(dataset=pets.dataset, user=pets.admin, label_class=lonely, image_ids=[image.pk])
    client = client_for(pets.annotator)
    response = client.get(_url(pets.dataset, "format=yolo&val_fraction=0.3"))
    assert response.status_code == 400
    assert not response.streaming
    assert "lonely" in json.dumps(response.json())
    assert client.get(_url(pets.dataset, "format=yolo")).status_code == 200


# --- Hugging Face datasets -----------------------------------------------------------------------------


def _load_hf(body: bytes, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "export.parquet"
    path.write_bytes(body)
    loaded = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    return datasets, loaded


@pytest.mark.parametrize("unlabeled", [False, True])
def test_hf_loads_with_datasets_and_round_trips(pets, client_for, tmp_path, monkeypatch, unlabeled):
    query = "format=hf" + ("&include_unlabeled=true" if unlabeled else "")
    response, body = _download(client_for(pets.annotator), pets.dataset, query)
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    datasets, loaded = _load_hf(body, tmp_path, monkeypatch)

    label = loaded.features["label"]
    assert isinstance(label, datasets.ClassLabel)
    assert label.names == list(
        LabelClass.objects.filter(dataset=pets.dataset).order_by("id").values_list("name", flat=True)
    )
    assert isinstance(loaded.features["image"], datasets.Image)

    db = _db_classes(pets.dataset)
    expected = {pk for pk, name in db.items() if unlabeled or name is not None}
    assert sorted(loaded["image_id"]) == sorted(expected)
    raw = loaded.cast_column("image", datasets.Image(decode=False))
    for row, stored in zip(loaded, raw):
        image_id = row["image_id"]
        original = _original(image_id)
        assert stored["image"]["bytes"] == original  # the file itself, not a re-encoding
        assert np.array_equal(np.asarray(row["image"]), np.asarray(PILImage.open(io.BytesIO(original))))
        if db[image_id] is None:
            assert row["label"] == -1
        else:
            assert label.int2str(row["label"]) == db[image_id]
        image = Image.objects.get(pk=image_id)
        assert (row["file_name"], row["sha256"]) == (image.original_name, image.sha256)
    assert (-1 in loaded["label"]) == unlabeled


def test_hf_streams_in_several_row_groups(pets, client_for, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from labeling.services import exports

    monkeypatch.setattr(exports, "ROW_GROUP_ROWS", 4)
    response = client_for(pets.annotator).get(_url(pets.dataset, "format=hf"))
    chunks = list(response.streaming_content)
    body = b"".join(chunks)
    # 15 labeled images in groups of 4: the file leaves in pieces, not as one buffer at the end.
    assert len([c for c in chunks if c]) >= 4
    assert pq.ParquetFile(io.BytesIO(body)).metadata.num_row_groups == 4
    _, loaded = _load_hf(body, tmp_path, monkeypatch)
    assert len(loaded) == 15


# --- Label Studio ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unlabeled", [False, True])
def test_labelstudio_tasks(pets, client_for, client, unlabeled):
    query = "format=labelstudio" + ("&include_unlabeled=true" if unlabeled else "")
    response, body = _download(client_for(pets.annotator), pets.dataset, query)
    assert response["Content-Type"] == "application/json"
    tasks = json.loads(body)
    db = _db_classes(pets.dataset)
    assert [t["id"] for t in tasks] == sorted(pk for pk, name in db.items() if unlabeled or name is not None)
    client.force_login(pets.annotator)
    for task in tasks:
        image_id = task["data"]["image_id"]
        assert task["data"]["image"] == f"http://testserver/images/{image_id}/file/"
        # The URL serves the image itself to a member.
        served = client.get(task["data"]["image"])
        assert served.status_code == 200 and b"".join(served.streaming_content) == _original(image_id)
        assert task["predictions"] == []
        if db[image_id] is None:
            assert task["annotations"] == []
            continue
        (annotation,) = task["annotations"]
        assert annotation["was_cancelled"] is False and annotation["updated_at"]
        assert task["meta"]["author"] == Annotation.objects.get(image_id=image_id).author.username
        (result,) = annotation["result"]
        assert result["type"] == "choices"
        assert (result["from_name"], result["to_name"]) == ("choice", "image")
        assert result["value"] == {"choices": [db[image_id]]}
    assert any(not t["annotations"] for t in tasks) == unlabeled


def test_labelstudio_file_reads_back_in_the_importer(pets, client_for):
    """simlabel's Label Studio importer parses the export: one row per task, the class of each."""
    _, body = _download(client_for(pets.annotator), pets.dataset, "format=labelstudio")
    rows = read_label_rows(io.BytesIO(body), "labelstudio")
    db = _db_classes(pets.dataset)
    labeled = sorted(pk for pk, name in db.items() if name is not None)
    assert [row.class_name for row in rows] == [db[pk] for pk in labeled]
    assert not any(row.reason for row in rows)


# --- refusals and permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "format=yaml",
        "format=yolo&val_fraction=1",
        "format=yolo&val_fraction=-0.1",
        "format=yolo&val_fraction=nan",
        "format=yolo&val_fraction=inf",
        "format=yolo&val_fraction=abc",
        "format=yolo&seed=-1",
        "format=yolo&seed=x",
        "format=hf&val_fraction=0.2",
        "format=labelstudio&seed=3",
        "format=yolo&split=0.2",
    ],
)
def test_bad_parameters_are_a_400(pets, client_for, query):
    response = client_for(pets.annotator).get(_url(pets.dataset, query))
    assert response.status_code == 400, query
    assert not response.streaming
    assert response.json()


@pytest.mark.parametrize("fmt", ["yolo", "hf", "labelstudio"])
def test_permissions_as_other_exports(pets, client_for, fmt):
    url = _url(pets.dataset, f"format={fmt}")
    assert client_for(None).get(url).status_code == 401
    assert client_for(pets.outsider).get(url).status_code == 404
    # The other team's export holds its own images and none of this team's.
    _, body = _download(client_for(pets.outsider), pets.other, f"format={fmt}&include_unlabeled=true")
    if fmt == "labelstudio":
        ids = {t["id"] for t in json.loads(body)}
    elif fmt == "hf":
        import pyarrow.parquet as pq

        ids = set(pq.read_table(io.BytesIO(body), columns=["image_id"]).column("image_id").to_pylist())
    else:
        names = zipfile.ZipFile(io.BytesIO(body)).namelist()
        ids = {int(PurePosixPath(n).name.split("_", 1)[0]) for n in names}
    assert ids == set(Image.objects.filter(dataset=pets.other).values_list("id", flat=True))


def test_labelstudio_export_imports_back(pets, client_for):
    from labeling.services.label_import import labels_import

    _, body = _download(client_for(pets.annotator), pets.dataset, "format=labelstudio")
    before = dict(Annotation.objects.filter(dataset=pets.dataset).values_list("image_id", "label_class_id"))
    Annotation.objects.filter(dataset=pets.dataset).update(label_class=None)
    labels_import(dataset=pets.dataset, user=pets.admin, file=io.BytesIO(body), format="labelstudio")
    after = dict(Annotation.objects.filter(dataset=pets.dataset).values_list("image_id", "label_class_id"))
    assert after == before


def test_a_dataset_without_labels_exports_empty_but_readable(make_user, make_dataset, add_image, client_for):
    from tests.factories import LabelClassFactory

    admin = make_user("alice")
    dataset = make_dataset("Fresh", admin=admin)
    LabelClassFactory(dataset=dataset, name="cat")
    add_image(dataset, name="raw.png")
    client = client_for(admin)
    _, body = _download(client, dataset, "format=yolo&val_fraction=0.5")
    assert zipfile.ZipFile(io.BytesIO(body)).namelist() == []
    _, body = _download(client, dataset, "format=labelstudio")
    assert json.loads(body) == []
    _, body = _download(client, dataset, "format=hf")
    # load_dataset refuses a split without rows; the file itself holds the features and no rows.
    import pyarrow.parquet as pq

    datasets = pytest.importorskip("datasets")
    parquet = pq.ParquetFile(io.BytesIO(body))
    assert parquet.metadata.num_rows == 0
    assert datasets.Features.from_arrow_schema(parquet.schema_arrow)["label"].names == ["cat"]
