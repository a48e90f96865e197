"""Streaming exports of a dataset's labels.

JSON, CSV and COCO describe the labels; ImageFolder and YOLO classification are zips of the
original image files in class folders; `hf` is a Parquet file Hugging Face `datasets` loads
with the images and a ClassLabel; `labelstudio` is Label Studio's JSON task export.

Each export is a generator of byte chunks read from the database with
`.values().iterator(chunk_size=...)`, and images are copied one at a time, so memory
stays flat however many images the dataset holds; the view wraps it in a
StreamingHttpResponse. Anything that can refuse the request (a bad parameter, a split
that cannot be made) is checked before the first chunk, so a refusal is a 400, never a
truncated download.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import unicodedata
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from core import object_storage
from core.errors import ValidationFailed
from labeling.models import Dataset, Image, LabelClass

EXPORT_FORMATS = ("json", "csv", "coco", "imagefolder", "yolo", "hf", "labelstudio")
COLUMNS = ("image_id", "name", "sha256", "class", "class_id", "author", "updated")
ROW_CHUNK = 2000
FLUSH_BYTES = 256 * 1024
FILE_CHUNK = 1024 * 1024
# Cells a spreadsheet would run as a formula (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# One encoder for every row: json.dumps(..., ensure_ascii=False) builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False).encode


@dataclass
class Export:
    chunks: Iterator[bytes]
    content_type: str
    filename: str


def _rows(dataset: Dataset, include_unlabeled: bool):
    images = Image.objects.filter(dataset=dataset)
    if not include_unlabeled:
        images = images.filter(annotation__label_class__isnull=False)
    return (
        images.order_by("id")
        .values_list(
            "id",
            "original_name",
            "sha256",
            "annotation__label_class__name",
            "annotation__label_class_id",
            "annotation__author__username",
            "annotation__updated_at",
        )
        .iterator(chunk_size=ROW_CHUNK)
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _record(row) -> dict:
    image_id, name, sha256, class_name, class_id, author, updated = row
    return {
        "image_id": image_id,
        "name": name,
        "sha256": sha256,
        "class": class_name,
        "class_id": class_id,
        "author": author,
        "updated": _iso(updated) if class_id is not None else None,
    }


def _buffered(pieces: Iterator[str]) -> Iterator[bytes]:
    """Joins small string pieces into chunks of about FLUSH_BYTES."""
    buf: list[str] = []
    size = 0
    for piece in pieces:
        buf.append(piece)
        size += len(piece)
        if size >= FLUSH_BYTES:
            yield "".join(buf).encode()
            buf, size = [], 0
    if buf:
        yield "".join(buf).encode()


# --- JSON ------------------------------------------------------------------------------------


def _json_pieces(dataset, include_unlabeled) -> Iterator[str]:
    yield "["
    first = True
    for row in _rows(dataset, include_unlabeled):
        yield ("\n" if first else ",\n") + _encode(_record(row))
        first = False
    yield "\n]\n"


# --- CSV ---------------------------------------------------------------------------------------


class _Line:
    """A write-only file that hands back what csv.writer wrote."""

    def write(self, value):
        return value


def csv_safe(value) -> str:
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _csv_pieces(dataset, include_unlabeled) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(COLUMNS)
    for row in _rows(dataset, include_unlabeled):
        record = _record(row)
        yield writer.writerow([csv_safe(record[c]) for c in COLUMNS])


# --- COCO ------------------------------------------------------------------------------------------


def _coco_pieces(dataset, include_unlabeled) -> Iterator[str]:
    """COCO with one whole-image annotation per labeled image (classification)."""
    info = {
        "description": dataset.name,
        "version": "1.0",
        "date_created": timezone.now().isoformat(),
        "contributor": "simlabel",
    }
    yield '{"info": ' + json.dumps(info, ensure_ascii=False) + ', "licenses": [], "images": ['
    images = Image.objects.filter(dataset=dataset)
    if not include_unlabeled:
        images = images.filter(annotation__label_class__isnull=False)
    first = True
    for image_id, name, width, height, sha256 in (
        images.order_by("id")
        .values_list("id", "original_name", "width", "height", "sha256")
        .iterator(chunk_size=ROW_CHUNK)
    ):
        item = {"id": image_id, "file_name": name, "width": width, "height": height, "sha256": sha256}
        yield ("\n" if first else ",\n") + _encode(item)
        first = False
    categories = [
        {"id": pk, "name": name, "supercategory": "", "color": color}
        for pk, name, color in LabelClass.objects.filter(dataset=dataset)
        .order_by("id")
        .values_list("id", "name", "color")
    ]
    yield '], "categories": ' + json.dumps(categories, ensure_ascii=False) + ', "annotations": ['
    first = True
    labeled = (
        Image.objects.filter(dataset=dataset, annotation__label_class__isnull=False)
        .order_by("id")
        .values_list("id", "annotation__label_class_id", "width", "height", "annotation__author__username")
        .iterator(chunk_size=ROW_CHUNK)
    )
    for n, (image_id, class_id, width, height, author) in enumerate(labeled, start=1):
        item = {
            "id": n,
            "image_id": image_id,
            "category_id": class_id,
            # The label covers the whole image; bbox/area let detection-minded
            # COCO readers load the file too.
            "bbox": [0, 0, width, height],
            "area": width * height,
            "iscrowd": 0,
            "attributes": {"author": author},
        }
        yield ("\n" if first else ",\n") + _encode(item)
        first = False
    yield "]}\n"


# --- zips of the original files ---------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_name(name: str, fallback: str) -> str:
    """A file or folder name with no path separators, drive letters, dot-dot or control characters."""
    name = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:120] or fallback


class _Sink:
    """A write-only stream zipfile or pyarrow writes into; the generator drains it."""

    def __init__(self):
        self._parts: list[bytes] = []
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self._parts.append(data)
        self.size += len(data)
        return len(data)

    def flush(self):
        pass

    def close(self):
        self.closed = True

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return data


def _class_folders(dataset, reserved: tuple[str, ...] = ("unlabeled",)) -> dict[int | None, str]:
    """Class id -> a folder name that is filesystem-safe and unique, also where case is ignored."""
    folders: dict[int | None, str] = {None: "unlabeled"}
    used = set(reserved)
    for pk, name in LabelClass.objects.filter(dataset=dataset).order_by("id").values_list("id", "name"):
        folder = safe_name(name, f"class_{pk}")
        if folder.lower() in used:
            folder = f"{folder}_{pk}"
        used.add(folder.lower())
        folders[pk] = folder
    return folders


def _open_original(image_id: int, file_name: str):
    """The original as a binary file: from the project's storage, or from the bucket a synced image lives in.

    OSError (FileNotFoundError included) when it cannot be read, which the exports treat as a lost file.
    """
    if file_name:
        return default_storage.open(file_name, "rb")
    image = Image.objects.select_related("storage").get(pk=image_id)
    if image.storage is None or image.missing_since is not None:
        raise FileNotFoundError(f"image {image_id} has no original")
    try:
        data = object_storage.object_read(
            object_storage.storage_client(image.storage),
            image.storage.bucket,
            image.storage_key,
            limit=settings.SIMLABEL_MAX_FILE_BYTES,
        )
    except Exception as exc:  # botocore's errors, a network failure, a grown object: all one lost file here
        raise OSError(f"image {image_id}: the bucket did not give its original ({exc})") from exc
    return io.BytesIO(data)


def _zip_chunks(entries: Iterator[tuple[str, int, str, int, datetime]]) -> Iterator[bytes]:
    """A zip of (arcname, image id, storage name, size, mtime) entries, each file copied in FILE_CHUNK pieces."""
    sink = _Sink()
    # Images are already compressed: storing them is as small and far faster.
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for arcname, image_id, file_name, size_bytes, uploaded_at in entries:
            info = zipfile.ZipInfo(arcname, date_time=timezone.localtime(uploaded_at).timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = size_bytes or 0
            try:
                source = _open_original(image_id, file_name)
            except OSError:
                continue  # a file lost from storage is left out rather than failing the whole export
            with source, archive.open(info, mode="w") as target:
                while chunk := source.read(FILE_CHUNK):
                    target.write(chunk)
                    if sink.size >= FLUSH_BYTES:
                        yield sink.drain()
            if sink.size >= FLUSH_BYTES:
                yield sink.drain()
    yield sink.drain()


# --- ImageFolder zip ---------------------------------------------------------------------------------


def _imagefolder_entries(dataset, include_unlabeled):
    folders = _class_folders(dataset)
    images = Image.objects.filter(dataset=dataset)
    if not include_unlabeled:
        images = images.filter(annotation__label_class__isnull=False)
    rows = (
        images.order_by("id")
        .values_list("id", "original_name", "file", "size_bytes", "annotation__label_class_id", "uploaded_at")
        .iterator(chunk_size=ROW_CHUNK)
    )
    for image_id, name, file_name, size_bytes, class_id, uploaded_at in rows:
        yield f"{folders[class_id]}/{image_id}_{safe_name(name, 'image')}", image_id, file_name, size_bytes, uploaded_at


# --- YOLO classification zip ------------------------------------------------------------------------

# Suffixes Ultralytics reads as images (ultralytics.data.utils.IMG_FORMATS); it counts .gif as a
# video, so GIF images are left out of this export rather than silently skipped by the trainer.
YOLO_SUFFIXES = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


def _yolo_images(dataset):
    return Image.objects.filter(
        dataset=dataset, annotation__label_class__isnull=False, format__in=list(YOLO_SUFFIXES)
    ).order_by("id")


def yolo_val_ids(*, dataset: Dataset, val_fraction: float, seed: int) -> set[int]:
    """The ids of the images that go to val/: per class, round(n x val_fraction) of its n images,
    at least 1 and at most n - 1, chosen by a seeded hash of the image id.

    Hashing each id (rather than shuffling a list) keeps the split deterministic for a seed and
    stable when images are added: an image already in val/ stays there unless its class's count
    of val images changes.
    """
    if not val_fraction:
        return set()
    by_class: dict[int, list[int]] = defaultdict(list)
    for image_id, class_id in (
        _yolo_images(dataset).values_list("id", "annotation__label_class_id").iterator(chunk_size=ROW_CHUNK)
    ):
        by_class[class_id].append(image_id)
    names = dict(LabelClass.objects.filter(dataset=dataset).values_list("id", "name"))
    val: set[int] = set()
    for class_id in sorted(by_class):
        ids = by_class[class_id]
        # Ultralytics reads each split as its own ImageFolder: a class missing from val/ would
        # shift every later class's index there, so every class must be in both splits.
        if len(ids) < 2:
            raise ValidationFailed(
                f"val_fraction needs at least 2 labeled images in every class; class "
                f"{names[class_id]!r} has {len(ids)}. Label more or export with val_fraction=0.",
                field="val_fraction",
            )
        n_val = min(len(ids) - 1, max(1, math.floor(len(ids) * val_fraction + 0.5)))
        ranked = sorted(ids, key=lambda pk: hashlib.sha256(f"{seed}:{pk}".encode()).digest())
        val.update(ranked[:n_val])
    return val


def _yolo_entries(dataset, root: str, val_ids: set[int]):
    folders = _class_folders(dataset, reserved=())
    rows = (
        _yolo_images(dataset)
        .values_list("id", "original_name", "file", "size_bytes", "format", "annotation__label_class_id", "uploaded_at")
        .iterator(chunk_size=ROW_CHUNK)
    )
    for image_id, name, file_name, size_bytes, fmt, class_id, uploaded_at in rows:
        split = "val" if image_id in val_ids else "train"
        # The suffix comes from the format Pillow found: Ultralytics picks images by suffix.
        stem = safe_name(name.rsplit(".", 1)[0] if "." in name else name, "image")
        arcname = f"{root}/{split}/{folders[class_id]}/{image_id}_{stem}.{YOLO_SUFFIXES[fmt]}"
        yield arcname, image_id, file_name, size_bytes, uploaded_at


# --- Hugging Face datasets (Parquet) -----------------------------------------------------------------

# A row group holds whole images; flushing by bytes bounds the memory one group takes.
ROW_GROUP_BYTES = 4 * 1024 * 1024
ROW_GROUP_ROWS = 1000


def hf_features(class_names: list[str]) -> dict:
    """The `datasets` Features, as the JSON it stores in a Parquet schema's "huggingface" metadata."""
    return {
        "image": {"_type": "Image"},
        "label": {"names": class_names, "_type": "ClassLabel"},
        "image_id": {"dtype": "int64", "_type": "Value"},
        "file_name": {"dtype": "string", "_type": "Value"},
        "sha256": {"dtype": "string", "_type": "Value"},
    }


def _hf_chunks(dataset, include_unlabeled) -> Iterator[bytes]:
    import pyarrow as pa  # imported here: web processes load it only when someone exports
    import pyarrow.parquet as pq

    classes = list(LabelClass.objects.filter(dataset=dataset).order_by("id").values_list("id", "name"))
    index = {pk: n for n, (pk, _) in enumerate(classes)}
    metadata = {"huggingface": json.dumps({"info": {"features": hf_features([name for _, name in classes])}})}
    schema = pa.schema(
        [
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("label", pa.int64()),
            ("image_id", pa.int64()),
            ("file_name", pa.string()),
            ("sha256", pa.string()),
        ],
        metadata=metadata,
    )
    images = Image.objects.filter(dataset=dataset)
    if not include_unlabeled:
        images = images.filter(annotation__label_class__isnull=False)
    rows = (
        images.order_by("id")
        .values_list("id", "original_name", "file", "sha256", "annotation__label_class_id")
        .iterator(chunk_size=ROW_CHUNK)
    )
    sink = _Sink()
    # Images are already compressed; compressing them again costs time and saves nothing.
    writer = pq.ParquetWriter(sink, schema, compression="none")
    columns: dict[str, list] = {name: [] for name in schema.names}
    group_bytes = 0

    def write_group():
        writer.write_table(pa.table(columns, schema=schema))
        for values in columns.values():
            values.clear()

    for image_id, name, file_name, sha256, class_id in rows:
        try:
            with _open_original(image_id, file_name) as source:
                data = source.read()
        except OSError:
            continue  # as in the zips: a file lost from storage is left out
        columns["image"].append({"bytes": data, "path": f"{image_id}_{safe_name(name, 'image')}"})
        # -1 is `datasets`' ClassLabel value for "no label".
        columns["label"].append(index[class_id] if class_id is not None else -1)
        columns["image_id"].append(image_id)
        columns["file_name"].append(name)
        columns["sha256"].append(sha256)
        group_bytes += len(data)
        if group_bytes >= ROW_GROUP_BYTES or len(columns["image_id"]) >= ROW_GROUP_ROWS:
            write_group()
            group_bytes = 0
            yield sink.drain()
    if columns["image_id"]:
        write_group()
    writer.close()
    yield sink.drain()


# --- Label Studio JSON ----------------------------------------------------------------------------------

# The names of the Image and Choices tags of Label Studio's image classification template
# (<Image name="image" value="$image"/><Choices name="choice" toName="image">).
LABEL_STUDIO_FROM_NAME = "choice"
LABEL_STUDIO_TO_NAME = "image"


def _labelstudio_pieces(dataset, include_unlabeled, image_url: Callable[[int], str]) -> Iterator[str]:
    images = Image.objects.filter(dataset=dataset)
    if not include_unlabeled:
        images = images.filter(annotation__label_class__isnull=False)
    rows = (
        images.order_by("id")
        .values_list(
            "id",
            "original_name",
            "sha256",
            "width",
            "height",
            "annotation__label_class__name",
            "annotation__id",
            "annotation__author__username",
            "annotation__updated_at",
        )
        .iterator(chunk_size=ROW_CHUNK)
    )
    yield "["
    first = True
    for image_id, name, sha256, width, height, class_name, annotation_id, author, updated in rows:
        task = {
            "id": image_id,
            "data": {"image": image_url(image_id), "image_id": image_id, "name": name, "sha256": sha256},
            "annotations": [],
            "predictions": [],
            "meta": {},
        }
        if class_name is not None:
            updated_at = _iso(updated)
            task["annotations"].append(
                {
                    "id": annotation_id,
                    "result": [
                        {
                            "id": f"simlabel-{image_id}",
                            "type": "choices",
                            "from_name": LABEL_STUDIO_FROM_NAME,
                            "to_name": LABEL_STUDIO_TO_NAME,
                            "origin": "manual",
                            "original_width": width,
                            "original_height": height,
                            "value": {"choices": [class_name]},
                        }
                    ],
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": updated_at,
                    "updated_at": updated_at,
                    "lead_time": 0,
                }
            )
            # Label Studio's completed_by is one of its own user ids, which ours are not: the
            # author travels by name in the task's meta instead.
            task["meta"] = {"author": author}
        yield ("\n" if first else ",\n") + _encode(task)
        first = False
    yield "\n]\n"


# --- entry point ----------------------------------------------------------------------------------------


def _image_url_builder(site_url: str) -> Callable[[int], str]:
    # One reverse() for the whole export; each task only fills in its id.
    marker = 987654321
    path = reverse("image-file", kwargs={"image_id": marker})
    prefix, suffix = (site_url.rstrip("/") + path).split(str(marker))
    return lambda image_id: f"{prefix}{image_id}{suffix}"


def labels_export(
    *,
    dataset: Dataset,
    format: str,
    include_unlabeled: bool = False,
    val_fraction: float | None = None,
    seed: int | None = None,
    site_url: str = "",
) -> Export:
    """The dataset's current labels in `format` as a stream of byte chunks.

    val_fraction and seed apply to yolo only. site_url (scheme and host) makes the image
    URLs of the labelstudio export absolute.
    """
    if format not in EXPORT_FORMATS:
        raise ValidationFailed(f"format must be one of: {', '.join(EXPORT_FORMATS)}.", field="format")
    if format != "yolo" and (val_fraction is not None or seed is not None):
        raise ValidationFailed("val_fraction and seed apply only to format=yolo.", field="val_fraction")
    if val_fraction is not None and not (math.isfinite(val_fraction) and 0 <= val_fraction < 1):
        raise ValidationFailed("val_fraction must be a number from 0 up to (not including) 1.", field="val_fraction")
    stem = f"{safe_name(dataset.name, 'dataset')}-{dataset.pk}-labels"
    if format == "json":
        return Export(_buffered(_json_pieces(dataset, include_unlabeled)), "application/json", f"{stem}.json")
    if format == "csv":
        return Export(_buffered(_csv_pieces(dataset, include_unlabeled)), "text/csv; charset=utf-8", f"{stem}.csv")
    if format == "coco":
        return Export(_buffered(_coco_pieces(dataset, include_unlabeled)), "application/json", f"{stem}-coco.json")
    if format == "yolo":
        # Unlabeled images have no class folder to go to: YOLO classification leaves them out.
        val_ids = yolo_val_ids(dataset=dataset, val_fraction=val_fraction or 0.0, seed=seed or 0)
        root = f"{stem}-yolo"
        return Export(_zip_chunks(_yolo_entries(dataset, root, val_ids)), "application/zip", f"{root}.zip")
    if format == "hf":
        import pyarrow.parquet  # noqa: F401  (fails here, as a 500 before the stream, if it is missing)

        return Export(_hf_chunks(dataset, include_unlabeled), "application/vnd.apache.parquet", f"{stem}-hf.parquet")
    if format == "labelstudio":
        pieces = _labelstudio_pieces(dataset, include_unlabeled, _image_url_builder(site_url))
        return Export(_buffered(pieces), "application/json", f"{stem}-labelstudio.json")
    return Export(
        _zip_chunks(_imagefolder_entries(dataset, include_unlabeled)), "application/zip", f"{stem}-imagefolder.zip"
    )
