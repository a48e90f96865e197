"""Importing labels for images already in a dataset: CSV, COCO (classification) and Label Studio JSON.

Read, match, apply:
- the file is read into rows (a file name or a SHA-256, and a class name), each remembering where in the
  file it came from (CSV line, COCO annotation, Label Studio task);
- rows are matched to the dataset's images by SHA-256, else by file name. The stored original name is a
  base name (labeling.uploads.sanitize_original_name), so a row's name goes through the same function and
  its folders drop away. A name that two images share is ambiguous: reported, never guessed. Rows that
  match nothing, or that give one image two classes, are reported with the reason and left out;
- the classes of the matched rows must exist (or, when asked, are created);
- the labels are written by annotations_apply_mapping as ONE LabelAction (undoable like a bulk label, and
  it tells embeddings that labels changed after commit), in one transaction with any classes created:
  a bad file is a 400 and nothing changes.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings
from django.db import transaction

from core.errors import PayloadTooLarge, ValidationFailed
from labeling.models import AnnotationSource, Dataset, Image, LabelClass
from labeling.services.annotations import MAX_BULK_IMAGES, annotations_apply_mapping
from labeling.services.datasets import label_class_create
from labeling.services.exports import FORMULA_PREFIXES
from labeling.uploads import clean_text, sanitize_original_name

IMPORT_FORMATS = ("csv", "coco", "labelstudio")
# The report lists this many unmatched and ambiguous rows (and counts them all).
MAX_REPORTED_ROWS = 50
# An import creates at most this many classes; more is a file that is not what it seems.
MAX_NEW_CLASSES = 500
MAX_UNKNOWN_CLASSES_REPORTED = 100
CSV_NAME_COLUMNS = ("name", "file_name", "filename")
CSV_CLASS_COLUMNS = ("class", "label")
# Label Studio stores an uploaded file as "<8 hex digits>-<original name>".
LABEL_STUDIO_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PROGRESS_EVERY = 2000

ProgressCallback = Callable[[int, int], None]


class UnknownClasses(ValidationFailed):
    """The file names classes the dataset does not have, and creating them was not asked for."""

    code = "unknown_classes"


@dataclass
class ImportRow:
    row: int  # CSV line, COCO annotation or Label Studio task, counted from 1
    name: str = ""
    sha256: str = ""
    class_name: str = ""
    reason: str = ""  # why the row cannot be applied, when the file alone says so

    def reported(self, reason: str, **extra) -> dict:
        entry = {"row": self.row, "name": self.name, "sha256": self.sha256, "class": self.class_name}
        entry["reason"] = reason
        entry.update(extra)
        return entry


@dataclass
class LabelImportReport:
    format: str
    rows: int = 0
    matched: int = 0  # images the file gives a class
    updated: int = 0  # of those, images whose class changed
    unchanged: int = 0  # already had that class
    kept: int = 0  # left alone with only_unlabeled: they had a class
    created_classes: list[str] = field(default_factory=list)
    unmatched_count: int = 0
    unmatched: list[dict] = field(default_factory=list)
    ambiguous_count: int = 0
    ambiguous: list[dict] = field(default_factory=list)
    action_id: int | None = None

    def add_unmatched(self, entry: dict) -> None:
        self.unmatched_count += 1
        if len(self.unmatched) < MAX_REPORTED_ROWS:
            self.unmatched.append(entry)

    def add_ambiguous(self, entry: dict) -> None:
        self.ambiguous_count += 1
        if len(self.ambiguous) < MAX_REPORTED_ROWS:
            self.ambiguous.append(entry)

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "action_id": self.action_id,
            "rows": self.rows,
            "matched": self.matched,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "kept": self.kept,
            "created_classes": list(self.created_classes),
            "unmatched_count": self.unmatched_count,
            "unmatched": list(self.unmatched),
            "ambiguous_count": self.ambiguous_count,
            "ambiguous": list(self.ambiguous),
        }

    def summary(self) -> str:
        parts = [f"{self.rows} row(s): {self.updated} image(s) labeled", f"{self.unchanged} already had that class"]
        if self.kept:
            parts.append(f"{self.kept} kept their class")
        parts.append(f"{self.unmatched_count} unmatched")
        parts.append(f"{self.ambiguous_count} ambiguous")
        if self.created_classes:
            parts.append(f"classes created: {', '.join(self.created_classes)}")
        return ", ".join(parts)


# --- reading the file ----------------------------------------------------------------------------------


def _read_bounded(file) -> bytes:
    limit = settings.SIMLABEL_MAX_LABEL_IMPORT_BYTES
    if hasattr(file, "seek"):
        file.seek(0)
    data = file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"A label file may be at most {limit} bytes (SIMLABEL_MAX_LABEL_IMPORT_BYTES).")
    if not data.strip():
        raise ValidationFailed("The file is empty.", field="file")
    return data


def _text(data: bytes) -> str:
    """The file as text: UTF-8 (with or without a byte order mark), UTF-16 with one, or Windows-1252,
    which spreadsheet programs write on Windows."""
    try:
        if data.startswith(codecs.BOM_UTF8):
            return data[len(codecs.BOM_UTF8) :].decode("utf-8")
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise ValidationFailed("The file must be UTF-8 (or UTF-16 or Windows-1252) text.", field="file") from None


def _unguard(cell: str) -> str:
    """A cell as written before our CSV export guarded it against spreadsheet formulas ("'=x" -> "=x")."""
    cell = cell.strip()
    if len(cell) > 1 and cell[0] == "'" and cell[1:].startswith(FORMULA_PREFIXES):
        return cell[1:]
    return cell


def _csv_rows(text: str) -> list[ImportRow]:
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    columns = None
    delimiter = ","
    # Spreadsheets in many locales write ";" (or tabs); the header line says which.
    for delimiter in (",", ";", "\t"):
        header = [h.strip().lower() for h in next(csv.reader([first_line], delimiter=delimiter), [])]
        if any(c in header for c in CSV_CLASS_COLUMNS):
            columns = header
            break
    if columns is None:
        raise ValidationFailed(
            "The CSV's first line must name its columns: name (or sha256) and class.", field="file"
        ) from None

    def index(names):
        return next((columns.index(n) for n in names if n in columns), None)

    class_at = index(CSV_CLASS_COLUMNS)
    name_at = index(CSV_NAME_COLUMNS)
    sha_at = index(("sha256",))
    if name_at is None and sha_at is None:
        raise ValidationFailed("The CSV needs a name or a sha256 column to find the images.", field="file")
    # strict: a stray or unclosed quote is a 400, not a guess at what the row meant.
    reader = csv.reader(io.StringIO(text.lstrip("\r\n"), newline=""), delimiter=delimiter, strict=True)
    rows = []
    try:
        next(reader)  # the header
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue

            def cell(at, cells=cells):
                return _unguard(cells[at]) if at is not None and at < len(cells) else ""

            rows.append(
                ImportRow(row=reader.line_num, name=cell(name_at), sha256=cell(sha_at), class_name=cell(class_at))
            )
    except csv.Error as exc:
        raise ValidationFailed(f"The CSV cannot be read at line {reader.line_num}: {exc}.", field="file") from None
    return rows


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            f"The file is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.", field="file"
        ) from None
    except RecursionError:
        raise ValidationFailed("The file is not valid JSON: it nests too deeply.", field="file") from None


def _json_id(value):
    """A COCO id as a lookup key: 7 and "7" are the same image."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip():
        value = value.strip()
        return int(value) if value.isascii() and value.isdigit() else value
    return None


def _coco_rows(data) -> list[ImportRow]:
    shape = "A COCO file must be a JSON object with lists images, categories and annotations."
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise ValidationFailed(shape, field="file")
    if not isinstance(data.get("annotations"), list):
        raise ValidationFailed(shape, field="file")
    categories = {}
    for n, category in enumerate(data["categories"]):
        key = _json_id(category.get("id")) if isinstance(category, dict) else None
        if key is None or not isinstance(category.get("name"), str):
            raise ValidationFailed(f"COCO categories[{n}] needs an id and a name.", field="file")
        categories[key] = category["name"]
    images = {}
    for n, image in enumerate(data["images"]):
        if not isinstance(image, dict):
            raise ValidationFailed(f"COCO images[{n}] is not an object.", field="file")
        key = _json_id(image.get("id"))
        name, sha256 = image.get("file_name"), image.get("sha256")
        if key is not None:
            images[key] = (name if isinstance(name, str) else "", sha256 if isinstance(sha256, str) else "")
    rows = []
    for n, annotation in enumerate(data["annotations"], start=1):
        if not isinstance(annotation, dict):
            raise ValidationFailed(f"COCO annotations[{n - 1}] is not an object.", field="file")
        image_key, category_key = _json_id(annotation.get("image_id")), _json_id(annotation.get("category_id"))
        row = ImportRow(row=n)
        if image_key in images:
            row.name, row.sha256 = images[image_key]
        else:
            row.reason = f"image_id {annotation.get('image_id')!r} is not among the file's images"
        if category_key in categories:
            row.class_name = categories[category_key]
        elif not row.reason:
            row.reason = f"category_id {annotation.get('category_id')!r} is not among the file's categories"
        rows.append(row)
    return rows


def _label_studio_file_name(url: str) -> str:
    """The file name of a task's data.image: an upload URL, a path, or local-files' ?d=folder/name."""
    parts = urlsplit(url.strip())
    local = parse_qs(parts.query).get("d")
    path = local[0] if local else parts.path
    return unquote(path).replace("\\", "/").rsplit("/", 1)[-1]


def _latest_annotation(annotations) -> dict | None:
    """The task's newest annotation that was not cancelled (skipped), by updated_at, created_at, then id."""
    candidates = [
        (a.get("updated_at") or a.get("created_at") or "", a.get("id") if isinstance(a.get("id"), int) else 0, n, a)
        for n, a in enumerate(annotations)
        if isinstance(a, dict) and not a.get("was_cancelled")
    ]
    candidates = [c for c in candidates if isinstance(c[0], str)]
    return max(candidates, key=lambda c: c[:3])[3] if candidates else None


def _first_choice(annotation: dict) -> str | None:
    results = annotation.get("result")
    for result in results if isinstance(results, list) else ():
        if isinstance(result, dict) and result.get("type") == "choices":
            choices = result.get("value", {}).get("choices") if isinstance(result.get("value"), dict) else None
            if isinstance(choices, list) and choices and isinstance(choices[0], str):
                return choices[0]
    return None


def _label_studio_rows(data) -> list[ImportRow]:
    if not isinstance(data, list):
        raise ValidationFailed("A Label Studio export must be a JSON list of tasks.", field="file")
    rows = []
    for n, task in enumerate(data, start=1):
        if not isinstance(task, dict):
            raise ValidationFailed(f"Label Studio task {n} is not an object.", field="file")
        row = ImportRow(row=n)
        rows.append(row)
        image = task.get("data", {}).get("image") if isinstance(task.get("data"), dict) else None
        if not isinstance(image, str) or not image.strip():
            row.reason = "the task has no data.image"
            continue
        row.name = _label_studio_file_name(image)
        # Our own Label Studio export names each image by its sha256 too (its data.image URL ends in /file/).
        sha256 = task["data"].get("sha256")
        if isinstance(sha256, str):
            row.sha256 = sha256
        annotations = task.get("annotations") if isinstance(task.get("annotations"), list) else []
        annotation = _latest_annotation(annotations)
        if annotation is None:
            row.reason = "every annotation of the task was cancelled" if annotations else "the task has no annotation"
            continue
        choice = _first_choice(annotation)
        if choice is None:
            row.reason = "the task's latest annotation has no choice"
            continue
        row.class_name = choice
    return rows


def read_label_rows(file, format: str) -> list[ImportRow]:
    """The rows of a label file in `format`; a file that cannot be read is a 400 (413 when too large)."""
    if format not in IMPORT_FORMATS:
        raise ValidationFailed(f"format must be one of: {', '.join(IMPORT_FORMATS)}.", field="format")
    text = _text(_read_bounded(file))
    if format == "csv":
        return _csv_rows(text)
    if format == "coco":
        return _coco_rows(_json(text))
    return _label_studio_rows(_json(text))


# --- matching ------------------------------------------------------------------------------------------------


@dataclass
class _Images:
    by_sha256: dict[str, int]
    by_name: dict[str, list[int]]

    @classmethod
    def of(cls, dataset: Dataset) -> _Images:
        by_sha256: dict[str, int] = {}
        by_name: dict[str, list[int]] = defaultdict(list)
        rows = Image.objects.filter(dataset=dataset).order_by("id").values_list("id", "original_name", "sha256")
        for pk, name, sha256 in rows.iterator(chunk_size=5000):
            by_sha256[sha256] = pk
            by_name[name].append(pk)
        return cls(by_sha256, by_name)


def _match(row: ImportRow, images: _Images, format: str) -> tuple[int | None, dict | None, bool]:
    """(image id, None, False) for a row that names one image, else (None, report entry, is ambiguous)."""
    if row.reason:
        return None, row.reported(row.reason), False
    if not clean_text(row.class_name):
        return None, row.reported("no class given"), False
    sha256 = row.sha256.strip().lower()
    if sha256:
        if not SHA256.match(sha256):
            return None, row.reported("sha256 is not 64 hexadecimal digits"), False
        if sha256 in images.by_sha256:
            return images.by_sha256[sha256], None, False
        return None, row.reported("no image of this dataset has this sha256"), False
    if not row.name.strip():
        return None, row.reported("no name or sha256 given"), False
    name = sanitize_original_name(row.name)
    ids = images.by_name.get(name)
    if not ids and format == "labelstudio":
        stripped = LABEL_STUDIO_UPLOAD_PREFIX.match(name)
        ids = images.by_name.get(stripped.group(1)) if stripped else None
    if not ids:
        return None, row.reported(f"no image of this dataset is named {name!r}"), False
    if len(ids) > 1:
        shown = ids[:10]
        reason = f"{len(ids)} images are named {name!r}; give sha256 instead"
        return None, row.reported(reason, image_ids=shown), True
    return ids[0], None, False


def label_classes_for_names(
    *, dataset: Dataset, names: set[str], create_classes: bool, named_by: str, write: str
) -> tuple[dict[str, int], list[str]]:
    """({name: class id} for every name, the names of the classes created), for a write that names classes
    (a label import, a prediction upload); run it inside that write's transaction.

    A name matches a class exactly or, when exactly one class differs from it only in case, that one.
    Names that match none are created when create_classes, else UnknownClasses lists them; more than
    MAX_NEW_CLASSES is a 400 either way.  The messages say who names them (`named_by`: "The file names")
    and what the write is (`write`: "import").
    """
    exact = dict(LabelClass.objects.filter(dataset=dataset).values_list("name", "id"))
    folded: dict[str, list[int]] = defaultdict(list)
    for name, pk in exact.items():
        folded[name.casefold()].append(pk)
    known, unknown = {}, []
    for name in names:
        if name in exact:
            known[name] = exact[name]
        elif len(folded.get(name.casefold(), ())) == 1:
            known[name] = folded[name.casefold()][0]
        else:
            unknown.append(name)
    unknown.sort(key=str.casefold)
    if unknown and not create_classes:
        shown = unknown[:MAX_UNKNOWN_CLASSES_REPORTED]
        raise UnknownClasses(
            f"{named_by} {len(unknown)} class(es) this dataset does not have: {', '.join(shown)}"
            f"{', …' if len(unknown) > len(shown) else ''}. Add them first, or {write} with create_classes; "
            "nothing was changed.",
            field="class",
            unknown_classes=shown,
            unknown_class_count=len(unknown),
        )
    if len(unknown) > MAX_NEW_CLASSES:
        raise ValidationFailed(
            f"{named_by} {len(unknown)} new classes; an {write} creates at most {MAX_NEW_CLASSES}.",
            field="class",
        )
    for name in unknown:
        known[name] = label_class_create(dataset=dataset, name=name).pk
    return known, unknown


# --- the import ----------------------------------------------------------------------------------------------


def labels_import(
    *,
    dataset: Dataset,
    user,
    file,
    format: str,
    create_classes: bool = False,
    only_unlabeled: bool = False,
    on_progress: ProgressCallback | None = None,
) -> LabelImportReport:
    """Gives the dataset's images the classes a label file names, as one undoable LabelAction.

    Unknown classes are an UnknownClasses 400 listing them unless `create_classes`; with
    `only_unlabeled` an image that has a class keeps it. Nothing is written unless it all is.
    """
    rows = read_label_rows(file, format)
    report = LabelImportReport(format=format, rows=len(rows))
    images = _Images.of(dataset)
    rows_of_image: dict[int, list[ImportRow]] = defaultdict(list)
    for n, row in enumerate(rows, start=1):
        image_id, entry, ambiguous = _match(row, images, format)
        if image_id is not None:
            rows_of_image[image_id].append(row)
        elif ambiguous:
            report.add_ambiguous(entry)
        else:
            report.add_unmatched(entry)
        if on_progress is not None and (n % PROGRESS_EVERY == 0 or n == len(rows)):
            on_progress(n, len(rows))

    class_of_image: dict[int, str] = {}
    for image_id, image_rows in rows_of_image.items():
        names = {clean_text(r.class_name) for r in image_rows}
        if len(names) == 1:
            class_of_image[image_id] = names.pop()
            continue
        listed = ", ".join(sorted(names, key=str.casefold))
        for r in image_rows:
            report.add_unmatched(r.reported(f"the file gives this image several classes ({listed}); left alone"))
    if len(class_of_image) > MAX_BULK_IMAGES:
        raise ValidationFailed(
            f"A label import may label at most {MAX_BULK_IMAGES} images; this file names {len(class_of_image)}.",
            field="file",
        )

    with transaction.atomic():
        known, report.created_classes = label_classes_for_names(
            dataset=dataset,
            names=set(class_of_image.values()),
            create_classes=create_classes,
            named_by="The file names",
            write="import",
        )
        report.matched = len(class_of_image)
        if class_of_image:
            action = annotations_apply_mapping(
                dataset=dataset,
                user=user,
                class_by_image={image_id: known[name] for image_id, name in class_of_image.items()},
                source=AnnotationSource.IMPORT,
                only_unlabeled=only_unlabeled,
            )
            report.action_id = action.pk
            report.updated = action.image_count
            report.kept = len(action.skipped)
            report.unchanged = report.matched - report.updated - report.kept
    return report
