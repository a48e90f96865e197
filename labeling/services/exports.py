"""Streaming exports of a dataset's labels: JSON, CSV, COCO and ImageFolder zip.

Each export is a generator of byte chunks read from the database with
`.values().iterator(chunk_size=...)`, so memory stays flat however many
images the dataset holds; the view wraps it in a StreamingHttpResponse.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.core.files.storage import default_storage
from django.utils import timezone

from core.errors import ValidationFailed
from labeling.models import Dataset, Image, LabelClass

EXPORT_FORMATS = ("json", "csv", "coco", "imagefolder")
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


# --- ImageFolder zip ---------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_name(name: str, fallback: str) -> str:
    """A file or folder name with no path separators, drive letters, dot-dot or control characters."""
    name = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:120] or fallback


class _ZipSink:
    """A write-only stream zipfile writes into; the generator drains it."""

    def __init__(self):
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data) -> int:
        data = bytes(data)
        self._parts.append(data)
        self.size += len(data)
        return len(data)

    def flush(self):
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return data


def _class_folders(dataset) -> dict[int | None, str]:
    folders: dict[int | None, str] = {None: "unlabeled"}
    used = {"unlabeled"}
    for pk, name in LabelClass.objects.filter(dataset=dataset).order_by("id").values_list("id", "name"):
        folder = safe_name(name, f"class_{pk}")
        if folder.lower() in used:
            folder = f"{folder}_{pk}"
        used.add(folder.lower())
        folders[pk] = folder
    return folders


def _imagefolder_chunks(dataset, include_unlabeled) -> Iterator[bytes]:
    folders = _class_folders(dataset)
    sink = _ZipSink()
    # Images are already compressed: storing them is as small and far faster.
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        images = Image.objects.filter(dataset=dataset)
        if not include_unlabeled:
            images = images.filter(annotation__label_class__isnull=False)
        rows = (
            images.order_by("id")
            .values_list("id", "original_name", "file", "size_bytes", "annotation__label_class_id", "uploaded_at")
            .iterator(chunk_size=ROW_CHUNK)
        )
        for image_id, name, file_name, size_bytes, class_id, uploaded_at in rows:
            arcname = f"{folders[class_id]}/{image_id}_{safe_name(name, 'image')}"
            info = zipfile.ZipInfo(arcname, date_time=timezone.localtime(uploaded_at).timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = size_bytes or 0
            try:
                source = default_storage.open(file_name, "rb")
            except (FileNotFoundError, OSError):
                continue  # a file lost from storage is left out rather than failing the whole export
            with source, archive.open(info, mode="w") as target:
                while chunk := source.read(FILE_CHUNK):
                    target.write(chunk)
                    if sink.size >= FLUSH_BYTES:
                        yield sink.drain()
            if sink.size >= FLUSH_BYTES:
                yield sink.drain()
    yield sink.drain()


# --- entry point ----------------------------------------------------------------------------------------


def labels_export(*, dataset: Dataset, format: str, include_unlabeled: bool = False) -> Export:
    """The dataset's current labels in `format` as a stream of byte chunks."""
    if format not in EXPORT_FORMATS:
        raise ValidationFailed(f"format must be one of: {', '.join(EXPORT_FORMATS)}.", field="format")
    stem = f"{safe_name(dataset.name, 'dataset')}-{dataset.pk}-labels"
    if format == "json":
        return Export(_buffered(_json_pieces(dataset, include_unlabeled)), "application/json", f"{stem}.json")
    if format == "csv":
        return Export(_buffered(_csv_pieces(dataset, include_unlabeled)), "text/csv; charset=utf-8", f"{stem}.csv")
    if format == "coco":
        return Export(_buffered(_coco_pieces(dataset, include_unlabeled)), "application/json", f"{stem}-coco.json")
    return Export(_imagefolder_chunks(dataset, include_unlabeled), "application/zip", f"{stem}-imagefolder.zip")
