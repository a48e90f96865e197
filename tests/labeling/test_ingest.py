"""Uploads that should work: every accepted format, duplicates, the report, labels from folders."""

import io
import json
import zipfile

import pytest
from ingest_files import image_bytes, row_names, storage_names, upload, zip_of
from PIL import Image as PILImage

from labeling.models import Annotation, AnnotationHistory, Image, LabelAction, LabelClass
from labeling.services import images as images_service
from labeling.services.images import IngestReport, images_cleanup_orphans, images_ingest, images_ingest_path

pytestmark = pytest.mark.django_db


def open_stored(name):
    from django.core.files.storage import default_storage

    with default_storage.open(name, "rb") as fh:
        return PILImage.open(io.BytesIO(fh.read()))


def gif_two_frames() -> bytes:
    first = PILImage.new("P", (20, 10), 1)
    first.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    second = PILImage.new("P", (20, 10), 2)
    second.putpalette(first.getpalette())
    buf = io.BytesIO()
    first.save(buf, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    return buf.getvalue()


ACCEPTED = [
    ("a.png", image_bytes("PNG", mode="RGB", seed=1), "PNG", "RGB"),
    ("rgba.png", image_bytes("PNG", mode="RGBA", seed=2), "PNG", "RGBA"),
    ("palette.png", image_bytes("PNG", mode="P", seed=3), "PNG", "P"),
    ("sixteen.png", image_bytes("PNG", mode="I;16", seed=4), "PNG", None),  # I;16 or I depending on Pillow
    ("bits.png", image_bytes("PNG", mode="1", seed=5), "PNG", "1"),
    ("photo.jpg", image_bytes("JPEG", size=(300, 200), seed=6), "JPEG", "RGB"),
    ("gray.jpeg", image_bytes("JPEG", mode="L", seed=7), "JPEG", "L"),
    ("cmyk.jpg", image_bytes("JPEG", mode="CMYK", seed=8), "JPEG", "CMYK"),
    ("a.webp", image_bytes("WEBP", seed=9), "WEBP", "RGB"),
    ("a.bmp", image_bytes("BMP", seed=10), "BMP", "RGB"),
    ("a.tiff", image_bytes("TIFF", seed=11), "TIFF", "RGB"),
    ("sixteen.tif", image_bytes("TIFF", mode="I;16", seed=12), "TIFF", None),
    ("anim.gif", gif_two_frames(), "GIF", "P"),
]


@pytest.mark.parametrize("name, data, fmt, mode", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_every_accepted_format_and_mode_is_stored_with_a_thumbnail(admin_dataset, name, data, fmt, mode):
    dataset, admin = admin_dataset
    report = images_ingest(dataset=dataset, user=admin, files=[upload(name, data)])
    assert not report.rejected, report.rejected
    image = Image.objects.get(pk=report.created[0]["id"])
    original = PILImage.open(io.BytesIO(data))
    assert (image.format, image.width, image.height) == (fmt, original.width, original.height)
    if mode:
        assert image.mode == mode
    assert image.size_bytes == len(data)
    assert image.original_name == name
    assert image.uploaded_by == admin
    import hashlib

    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert image.file.name.endswith(
        {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}[fmt]
    )
    with image.file.open("rb") as fh:
        assert fh.read() == data  # the original, byte for byte
    thumb = open_stored(image.thumbnail.name)
    assert thumb.format in ("PNG", "WEBP")
    assert max(thumb.size) <= 128
    assert thumb.mode in ("L", "RGB", "RGBA")


def test_gif_thumbnail_is_the_first_frame(admin_dataset):
    dataset, admin = admin_dataset
    report = images_ingest(dataset=dataset, user=admin, files=[upload("anim.gif", gif_two_frames())])
    thumb = open_stored(Image.objects.get(pk=report.created[0]["id"]).thumbnail.name).convert("RGB")
    assert thumb.getpixel((0, 0)) == (255, 0, 0)  # frame 1 is red, frame 2 green


def test_sixteen_bit_thumbnail_keeps_the_range(admin_dataset):
    """A 16-bit ramp must not be clipped to white by the 8-bit conversion."""
    import numpy as np

    dataset, admin = admin_dataset
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (8, 1))
    buf = io.BytesIO()
    PILImage.fromarray(ramp).save(buf, "PNG")
    report = images_ingest(dataset=dataset, user=admin, files=[upload("ramp.png", buf.getvalue())])
    thumb = np.asarray(open_stored(Image.objects.get(pk=report.created[0]["id"]).thumbnail.name).convert("L"))
    assert thumb[0, 0] < 10 and thumb[0, -1] > 245 and 100 < thumb[0, 32] < 160


def test_large_jpeg_thumbnail_is_small_and_upright(admin_dataset):
    dataset, admin = admin_dataset
    img = PILImage.new("RGB", (1024, 768), (200, 30, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    report = images_ingest(dataset=dataset, user=admin, files=[upload("rotated.jpg", buf.getvalue())])
    image = Image.objects.get(pk=report.created[0]["id"])
    assert (image.width, image.height) == (1024, 768)
    assert open_stored(image.thumbnail.name).size == (96, 128)


def test_report_shape(admin_dataset):
    dataset, admin = admin_dataset
    report = images_ingest(
        dataset=dataset,
        user=admin,
        files=[upload("a.png", image_bytes(seed=1)), upload("b.png", image_bytes(seed=1)), upload("c.png", b"nope")],
    )
    assert isinstance(report, IngestReport)
    data = report.as_dict()
    image_id = Image.objects.get(dataset=dataset).pk
    assert data == {
        "created": [{"id": image_id, "name": "a.png"}],
        "skipped": [{"name": "b.png", "reason": "duplicate of a.png in this upload"}],
        "rejected": [
            {"name": "c.png", "error": "is not a supported image (accepted: PNG, JPEG, WebP, BMP, TIFF, GIF)"}
        ],
        "labelled": 0,
        "counts": {"created": 1, "skipped": 1, "rejected": 1},
    }
    assert report.summary() == "1 stored, 1 skipped, 1 rejected"


def test_duplicates_across_uploads_and_inside_archives_are_skipped(admin_dataset, make_dataset):
    dataset, admin = admin_dataset
    one, two = image_bytes(seed=1), image_bytes(seed=2)
    first = images_ingest(dataset=dataset, user=admin, files=[upload("one.png", one)])
    second = images_ingest(
        dataset=dataset,
        user=admin,
        files=[upload("again.zip", zip_of({"x/one.png": one, "two.png": two, "y/two.png": two}))],
    )
    image_id = first.created[0]["id"]
    assert sorted(second.skipped, key=lambda s: s["name"]) == [
        {"name": "again.zip:x/one.png", "reason": f"duplicate of image #{image_id} already in the dataset"},
        {"name": "again.zip:y/two.png", "reason": "duplicate of again.zip:two.png in this upload"},
    ]
    assert [c["name"] for c in second.created] == ["two.png"]
    assert Image.objects.filter(dataset=dataset).count() == 2
    # Another dataset may hold the same file.
    other = make_dataset("Other", admin=admin)
    assert len(images_ingest(dataset=other, user=admin, files=[upload("one.png", one)]).created) == 1
    assert storage_names() == row_names()


def test_concurrent_duplicate_loses_cleanly(admin_dataset, monkeypatch):
    """The row inserted by a concurrent upload between our check and our insert wins; our files go."""
    dataset, admin = admin_dataset
    data = image_bytes(seed=3)
    original_insert = images_service._insert_images

    raced = []

    def racing_insert(rows):
        if not raced:  # another upload of the same file commits first
            raced.append(True)
            images_ingest(dataset=dataset, user=admin, files=[upload("racer.png", data)])
        original_insert(rows)

    monkeypatch.setattr(images_service, "_insert_images", racing_insert)
    report = images_ingest(dataset=dataset, user=admin, files=[upload("mine.png", data)])
    winner = Image.objects.get(dataset=dataset)
    assert winner.original_name == "racer.png"
    assert report.created == []
    assert report.skipped == [{"name": "mine.png", "reason": f"duplicate of image #{winner.pk} already in the dataset"}]
    assert storage_names(dataset.pk) == row_names(dataset.pk)


def test_a_failed_batch_leaves_no_files(admin_dataset, monkeypatch):
    dataset, admin = admin_dataset

    def broken_insert(rows):
        raise RuntimeError("database went away")

    monkeypatch.setattr(images_service, "_insert_images", broken_insert)
    with pytest.raises(RuntimeError):
        images_ingest(dataset=dataset, user=admin, files=[upload(f"{i}.png", image_bytes(seed=i)) for i in range(5)])
    assert not Image.objects.exists()
    assert storage_names(dataset.pk) == set()


def test_batches_commit_separately(admin_dataset, monkeypatch):
    dataset, admin = admin_dataset
    monkeypatch.setattr(images_service, "BATCH_FILES", 3)
    progress = []
    data = zip_of({f"{i}.png": image_bytes(size=(8, 8), seed=i) for i in range(10)})
    report = images_ingest(
        dataset=dataset,
        user=admin,
        files=[upload("ten.zip", data)],
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert len(report.created) == 10
    assert progress[-1] == (10, 10)
    assert storage_names(dataset.pk) == row_names(dataset.pk)


def test_classes_from_folders_in_an_uploaded_zip(admin_dataset):
    dataset, admin = admin_dataset
    # A zipped folder wraps everything in one top folder; classes are the level below.
    files = {f"digits/{c}/{i}.png": image_bytes(size=(8, 8), seed=10 * ord(c) + i) for c in "ab" for i in range(3)}
    files["digits/loose.png"] = image_bytes(size=(8, 8), seed=999)
    report = images_ingest(
        dataset=dataset, user=admin, files=[upload("d.zip", zip_of(files))], classes_from_folders=True
    )
    assert len(report.created) == 7 and report.labeled == 6
    classes = {c.name: c for c in LabelClass.objects.filter(dataset=dataset)}
    assert set(classes) == {"a", "b"}
    assert classes["a"].color != classes["b"].color
    assert Annotation.objects.filter(dataset=dataset, label_class=classes["a"], source="import").count() == 3
    assert not Annotation.objects.filter(image__original_name="loose.png").exists()
    actions = LabelAction.objects.filter(dataset=dataset, source="import")
    assert sorted(a.image_count for a in actions) == [3, 3]
    assert AnnotationHistory.objects.filter(dataset=dataset).count() == 6
    history = AnnotationHistory.objects.filter(dataset=dataset).first()
    assert history.old_class is None and history.user == admin and history.new_version == 1
    dataset.refresh_from_db()
    assert dataset.labels_changed_at is not None


def test_import_labels_duplicates_that_have_no_class_but_never_overwrites(admin_dataset, tmp_path):
    dataset, admin = admin_dataset
    a, b = image_bytes(size=(8, 8), seed=1), image_bytes(size=(8, 8), seed=2)
    (tmp_path / "in" / "cat").mkdir(parents=True)
    (tmp_path / "in" / "cat" / "a.png").write_bytes(a)
    (tmp_path / "in" / "cat" / "b.png").write_bytes(b)
    images_ingest(dataset=dataset, user=admin, files=[upload("a.png", a), upload("b.png", b)])
    dog = LabelClass.objects.create(dataset=dataset, name="dog")
    image_b = Image.objects.get(original_name="b.png")
    Annotation.objects.create(image=image_b, dataset=dataset, label_class=dog, author=admin, version=1)
    report = images_ingest_path(dataset=dataset, user=admin, path=tmp_path / "in", classes_from_folders=True)
    assert len(report.skipped) == 2 and report.labeled == 1
    assert Image.objects.get(original_name="a.png").annotation.label_class.name == "cat"
    assert Annotation.objects.get(image=image_b).label_class == dog


def test_new_images_are_placed_on_the_current_map(admin_dataset, monkeypatch, django_capture_on_commit_callbacks):
    import embeddings.services as embedding_services
    from embeddings.models import TrainingRun

    dataset, admin = admin_dataset
    calls = []
    monkeypatch.setattr(
        embedding_services,
        "images_place_on_current_map",
        lambda *, dataset, image_ids: calls.append((dataset.pk, sorted(image_ids))),
        raising=False,
    )
    with django_capture_on_commit_callbacks(execute=True):
        images_ingest(dataset=dataset, user=admin, files=[upload("a.png", image_bytes(seed=1))])
    assert calls == []  # no map yet
    TrainingRun.objects.create(dataset=dataset, status="succeeded", stage="done")
    with django_capture_on_commit_callbacks(execute=True):
        report = images_ingest(
            dataset=dataset,
            user=admin,
            files=[upload("b.png", image_bytes(seed=2)), upload("c.png", image_bytes(seed=3))],
        )
    assert calls == [(dataset.pk, sorted(c["id"] for c in report.created))]


def test_cleanup_removes_only_files_without_rows(admin_dataset):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    dataset, admin = admin_dataset
    images_ingest(dataset=dataset, user=admin, files=[upload("a.png", image_bytes(seed=1))])
    kept = row_names(dataset.pk)
    orphan = default_storage.save(f"datasets/{dataset.pk}/images/ab/{'ab' * 32}.png", ContentFile(b"x"))
    gone_dataset = default_storage.save("datasets/999999/thumbs/cd/x.webp", ContentFile(b"x"))
    assert images_cleanup_orphans(dataset=dataset) == []  # too young: may belong to a running ingest
    assert sorted(images_cleanup_orphans(min_age_seconds=0)) == sorted([orphan, gone_dataset])
    assert storage_names() == kept


def test_ingest_path_single_file_and_missing_path(admin_dataset, tmp_path):
    from core.errors import ValidationFailed

    dataset, admin = admin_dataset
    path = tmp_path / "one.png"
    path.write_bytes(image_bytes(seed=5))
    assert len(images_ingest_path(dataset=dataset, user=admin, path=path).created) == 1
    with pytest.raises(ValidationFailed):
        images_ingest_path(dataset=dataset, user=admin, path=tmp_path / "nope")


def test_zip_read_from_disk(admin_dataset, tmp_path):
    dataset, admin = admin_dataset
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x/1.png", image_bytes(seed=1))
        zf.writestr("x/2.png", image_bytes(seed=2))
    report = images_ingest_path(dataset=dataset, user=admin, path=path, classes_from_folders=True)
    assert len(report.created) == 2 and report.labeled == 2
    assert LabelClass.objects.get(dataset=dataset).name == "x"


def _plan_scans(node, table):
    """(node type, index name) of every scan of `table` in an EXPLAIN (FORMAT JSON) plan."""
    found = []
    if node.get("Relation Name") == table:
        found.append((node["Node Type"], node.get("Index Name")))
    for child in node.get("Plans", ()):
        found.extend(_plan_scans(child, table))
    return found


def test_duplicate_lookup_probes_the_unique_index_even_with_stale_statistics(admin_dataset, make_dataset):
    """A dataset that grew since the last ANALYZE must not be read whole for each batch (issue 17)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner")
    dataset, admin = admin_dataset
    other = make_dataset("Other", admin=admin)
    table = Image._meta.db_table
    insert = (
        f"INSERT INTO {table} (dataset_id, file, thumbnail, sha256, width, height, format, mode, size_bytes, "
        "original_name, uploaded_at) SELECT %s, 'f', 't', encode(sha256((%s || i)::bytea), 'hex'), 1, 1, 'PNG', 'L', "
        "1, 'x.png', now() FROM generate_series(1, %s) AS i"
    )
    with connection.cursor() as cursor:
        cursor.execute(insert, [other.pk, "other ", 20_000])
        cursor.execute(insert, [dataset.pk, "small ", 10])
        cursor.execute(f"ANALYZE {table}")  # statistics of a small dataset ...
        cursor.execute(insert, [dataset.pk, "grown ", 100_000])  # ... that then grew tenfold past the other
    known = Image.objects.filter(dataset=dataset, original_name="x.png").order_by("id").first()
    hashes = [f"{i:064x}" for i in range(499)] + [known.sha256]

    with CaptureQueriesContext(connection) as queries:
        found = images_service._stored_images(dataset.pk, hashes, with_file=True)

    assert found == [(known.sha256, known.pk, "f")]
    (query,) = queries.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + query["sql"])
        plan = cursor.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    assert _plan_scans(plan[0]["Plan"], table) == [("Index Scan", "unique_image_per_dataset")]
