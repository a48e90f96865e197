"""Storing images: uploads, archives and folders in; verified files and rows out.

Order of work for every batch of files, so a file and its row exist together
or not at all:

1. read each file with a size bound, hashing it on the way;
2. skip what the dataset (or this upload) already holds, by SHA-256;
3. verify and thumbnail the rest (labeling.uploads.inspect_image);
4. write original and thumbnail to storage under content-addressed names;
5. insert the rows in one transaction (the database drops duplicates that a
   concurrent upload inserted first); on any failure the batch's files are
   deleted again.

A process killed between 4 and 5 leaves files without rows, never rows without
files; `images_cleanup_orphans` (command `cleanup_orphan_media`) removes them.
"""

from __future__ import annotations

import colorsys
import hashlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.db import on_postgres_or_sqlite
from core.errors import PayloadTooLarge, ValidationFailed
from embeddings import services as embedding_services
from embeddings.models import RunStatus, TrainingRun
from labeling.models import (
    AnnotationSource,
    Dataset,
    Image,
    LabelAction,
    LabelClass,
    image_upload_path,
)
from labeling.palette import CLASS_PALETTE
from labeling.services._archive import ArchiveLimits, ArchiveRejected, iter_archive
from labeling.services.annotations import annotations_fill_unlabeled
from labeling.uploads import (
    THUMBNAIL_EXTENSIONS,
    ImageRejected,
    clean_text,
    inspect_image,
    looks_like_archive_name,
    sanitize_original_name,
)
from project.storage import walk_storage

logger = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
# Rows per transaction and bytes held per batch: large enough that per-batch
# costs (queries, commit) vanish, small enough to bound memory.
BATCH_FILES = 500
BATCH_BYTES = 32 * 1024 * 1024
REPORT_NAME_MAX = 300
ProgressCallback = Callable[[int, int], None]


# --- report and limits -------------------------------------------------------------------------


@dataclass
class IngestReport:
    created: list[dict] = field(default_factory=list)  # {id, name}
    skipped: list[dict] = field(default_factory=list)  # {name, reason}
    rejected: list[dict] = field(default_factory=list)  # {name, error}
    labeled: int = 0  # images given a class from their folder (import_images --classes-from-folders)

    def as_dict(self) -> dict:
        return {
            "created": self.created,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "labelled": self.labeled,  # the upload answer's field name, kept for scripts
            "counts": {"created": len(self.created), "skipped": len(self.skipped), "rejected": len(self.rejected)},
        }

    def summary(self) -> str:
        text = f"{len(self.created)} stored, {len(self.skipped)} skipped, {len(self.rejected)} rejected"
        return text + (f", {self.labeled} labeled from folders" if self.labeled else "")


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_image_pixels: int
    max_files_per_request: int
    max_upload_bytes: int
    thumbnail_size: int
    archive: ArchiveLimits

    @classmethod
    def from_settings(cls) -> UploadLimits:
        return cls(
            max_file_bytes=settings.SIMLABEL_MAX_FILE_BYTES,
            max_image_pixels=settings.SIMLABEL_MAX_IMAGE_PIXELS,
            max_files_per_request=settings.SIMLABEL_MAX_FILES_PER_REQUEST,
            max_upload_bytes=settings.SIMLABEL_MAX_UPLOAD_BYTES,
            thumbnail_size=settings.SIMLABEL_THUMBNAIL_SIZE,
            archive=ArchiveLimits(
                max_members=settings.SIMLABEL_MAX_ARCHIVE_MEMBERS,
                max_total_bytes=settings.SIMLABEL_MAX_ARCHIVE_BYTES,
                max_ratio=settings.SIMLABEL_MAX_COMPRESSION_RATIO,
                max_file_bytes=settings.SIMLABEL_MAX_FILE_BYTES,
            ),
        )


# --- what the sources yield ----------------------------------------------------------------------


@dataclass
class _File:
    name: str  # as shown in the report (archive:member or relative path)
    original_name: str  # sanitised base name, stored on the row
    data: bytes
    sha256: str
    class_name: str | None = None


@dataclass
class _Outcome:
    name: str
    status: str  # "skipped" | "rejected"
    message: str


@dataclass(slots=True)
class _NewImage:
    """The columns of an Image row about to be inserted (cheaper than a model instance)."""

    dataset_id: int
    sha256: str
    width: int
    height: int
    format: str
    mode: str
    size_bytes: int
    original_name: str
    uploaded_by_id: int | None
    file: str = ""
    thumbnail: str = ""
    pk: int | None = None


def _report_name(name: str) -> str:
    return clean_text(name, REPORT_NAME_MAX) or "unnamed"


def _read_bounded(fp, limit: int) -> tuple[bytes, str] | None:
    """(bytes, sha256) of a file object, or None when it holds more than `limit` bytes."""
    hasher = hashlib.sha256()
    chunks = []
    size = 0
    while True:
        chunk = fp.read(READ_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            return None
        hasher.update(chunk)
        chunks.append(chunk)
    return b"".join(chunks), hasher.hexdigest()


def _too_big(limit: int) -> str:
    return f"is larger than the limit of {limit:,} bytes"


def _single_file(name: str, fp, limits: UploadLimits, class_name: str | None = None) -> _File | _Outcome:
    read = _read_bounded(fp, limits.max_file_bytes)
    if read is None:
        return _Outcome(name, "rejected", _too_big(limits.max_file_bytes))
    data, digest = read
    return _File(name, sanitize_original_name(name), data, digest, class_name)


def _archive_class_prefix(paths: list[str]) -> int:
    """How many leading folders to drop before the class folder (a zipped folder wraps everything in one)."""
    split = [p.replace("\\", "/").split("/") for p in paths]
    split = [parts for parts in split if "__MACOSX" not in parts]
    if not split:
        return 0
    tops = {parts[0] for parts in split}
    if len(tops) == 1 and all(len(parts) >= 2 for parts in split) and any(len(parts) >= 3 for parts in split):
        return 1
    return 0


def _class_from_parts(parts: list[str]) -> str | None:
    return parts[0] if len(parts) >= 2 else None


def _iter_zip(
    fp, archive_name: str, limits: UploadLimits, classes_from_folders: bool, add_total
) -> Iterator[_File | _Outcome]:
    drop = 0

    def on_members(infos):
        nonlocal drop
        files = [info.filename for info in infos if not info.is_dir()]
        add_total(len(files) - 1)  # the archive itself was counted as one
        if classes_from_folders:
            drop = _archive_class_prefix(files)

    stored_before = 0
    entries = iter_archive(fp, limits=limits.archive, on_members=on_members)
    try:
        for entry in entries:
            name = _report_name(f"{archive_name}:{entry.path}")
            if entry.status == "file":
                class_name = None
                if classes_from_folders:
                    parts = [p for p in entry.path.replace("\\", "/").split("/") if p][drop:]
                    class_name = _class_from_parts(parts)
                stored_before += 1
                yield _File(name, sanitize_original_name(entry.path), entry.data, entry.sha256, class_name)
            else:
                yield _Outcome(name, entry.status, entry.reason)
    except ArchiveRejected as exc:
        rest = "; the rest of the archive was not read" if stored_before else "; nothing from it was stored"
        yield _Outcome(_report_name(archive_name), "rejected", exc.message + rest)


def _iter_uploads(files, limits: UploadLimits, classes_from_folders: bool, add_total) -> Iterator[_File | _Outcome]:
    for upload in files:
        raw_name = getattr(upload, "name", "") or "unnamed"
        name = _report_name(raw_name)
        add_total(1)
        fp = getattr(upload, "file", None) or upload
        try:
            fp.seek(0)
        except (AttributeError, OSError, ValueError):
            pass
        if raw_name.lower().endswith(".zip"):
            size = getattr(upload, "size", None)
            if size is not None and size > limits.max_upload_bytes:
                yield _Outcome(name, "rejected", _too_big(limits.max_upload_bytes))
                continue
            yield from _iter_zip(fp, name, limits, classes_from_folders, add_total)
            continue
        if looks_like_archive_name(raw_name):
            yield _Outcome(name, "rejected", "is an archive type that is not accepted (upload a .zip)")
            continue
        size = getattr(upload, "size", None)
        if size is not None and size > limits.max_file_bytes:
            yield _Outcome(name, "rejected", _too_big(limits.max_file_bytes))
            continue
        yield _single_file(raw_name, fp, limits)


def _iter_folder(root: Path, limits: UploadLimits, classes_from_folders: bool, add_total) -> Iterator[_File | _Outcome]:
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow symlinked folders
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        hidden_dirs = [d for d in dirnames if d.startswith(".") or d == "__MACOSX"]
        for d in hidden_dirs:
            dirnames.remove(d)
        paths.extend(rel_dir / f for f in sorted(filenames))
    add_total(len(paths))
    for rel in paths:
        name = _report_name(rel.as_posix())
        full = root / rel
        if rel.name.startswith("."):
            yield _Outcome(name, "skipped", "hidden file")
            continue
        if full.is_symlink():
            yield _Outcome(name, "skipped", "symbolic link not followed")
            continue
        if looks_like_archive_name(rel.name):
            yield _Outcome(name, "rejected", "is an archive; archives inside folders are not opened")
            continue
        try:
            if full.stat().st_size > limits.max_file_bytes:
                yield _Outcome(name, "rejected", _too_big(limits.max_file_bytes))
                continue
            with open(full, "rb") as fp:
                class_name = _class_from_parts(list(rel.parts)) if classes_from_folders else None
                yield _single_file(rel.as_posix(), fp, limits, class_name)
        except OSError as exc:
            yield _Outcome(name, "rejected", f"could not be read ({exc.strerror or exc})")


# --- writing files ------------------------------------------------------------------------------------


def thumbnail_path(dataset_id: int, sha256: str, thumbnail_format: str) -> str:
    return f"datasets/{dataset_id}/thumbs/{sha256[:2]}/{sha256}{THUMBNAIL_EXTENSIONS[thumbnail_format]}"


class _FileWriter:
    """Writes new files under names nobody else holds; never overwrites.

    On local disk it creates the file directly with O_EXCL: the generic
    Storage.save path costs more than decoding a small image. Names are built
    here from ids and hex digests, so they need no traversal checks. Any other
    storage (S3) goes through Storage.save, which also never overwrites.
    """

    def __init__(self, storage):
        self.storage = storage
        self.local = isinstance(storage, FileSystemStorage) and storage.directory_permissions_mode is None
        self.root = str(storage.location) if self.local else ""
        self.file_mode = storage.file_permissions_mode if self.local else None
        self.dirs: set[str] = set()

    def save(self, name: str, data: bytes) -> str:
        if self.local:
            full = os.path.join(self.root, name)
            directory = os.path.dirname(full)
            if directory not in self.dirs:
                os.makedirs(directory, exist_ok=True)
                self.dirs.add(directory)
            try:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            except FileExistsError:
                pass  # e.g. an orphan left by a killed ingest: let storage pick another name
            else:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self.file_mode is not None:
                        os.fchmod(fd, self.file_mode)
                except BaseException:
                    os.close(fd)
                    os.unlink(full)
                    raise
                os.close(fd)
                return name
        return self.storage.save(name, ContentFile(data))

    def save_pair(self, name: str, data: bytes, thumb_name: str, thumb: bytes) -> tuple[str, str]:
        """Both files of one image, or neither."""
        saved = self.save(name, data)
        try:
            return saved, self.save(thumb_name, thumb)
        except BaseException:
            self.storage.delete(saved)
            raise


# --- the ingest itself ----------------------------------------------------------------------------------

# Distinct, readable class colors (the one palette, none near the unlabeled gray); beyond them, evenly spaced hues.
CLASS_COLORS = CLASS_PALETTE


def class_color(index: int, used: set[str] = frozenset()) -> str:
    """The first palette color not in `used`, starting at `index`."""
    for offset in range(len(CLASS_COLORS)):
        color = CLASS_COLORS[(index + offset) % len(CLASS_COLORS)]
        if color not in used:
            return color
    n = index
    while True:
        hue = (n * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.85)
        color = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
        if color not in used:
            return color
        n += 1


class _Ingest:
    def __init__(self, *, dataset: Dataset, user, limits: UploadLimits, on_progress: ProgressCallback | None):
        self.dataset = dataset
        self.user = user if getattr(user, "is_authenticated", False) else None
        self.limits = limits
        self.on_progress = on_progress
        self.storage = Image._meta.get_field("file").storage
        self.writer = _FileWriter(self.storage)
        # File writes wait on the disk, not the CPU: overlapping them with
        # decoding keeps ingest fast on busy or network disks.
        self.io_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ingest-io")
        self.report = IngestReport()
        self.seen: dict[str, str] = {}  # sha256 -> name of the first file in this upload
        self.batch: list[_File] = []
        self.batch_bytes = 0
        self.done = 0
        self.total = 0
        self.created_ids: list[int] = []
        self.classes: dict[str, LabelClass | None] = {}
        self.actions: dict[int, LabelAction] = {}
        self.last_progress = 0.0

    # progress ---------------------------------------------------------------------------
    def add_total(self, n: int) -> None:
        self.total += n

    def _advance(self, n: int = 1) -> None:
        self.done += n
        if self.on_progress is not None:
            now = time.monotonic()
            if now - self.last_progress > 0.1 or self.done >= self.total:
                self.last_progress = now
                self.on_progress(self.done, self.total)

    # intake ------------------------------------------------------------------------------
    def run(self, items: Iterable[_File | _Outcome]) -> IngestReport:
        try:
            for item in items:
                if isinstance(item, _Outcome):
                    bucket = self.report.skipped if item.status == "skipped" else self.report.rejected
                    key = "reason" if item.status == "skipped" else "error"
                    bucket.append({"name": item.name, key: item.message})
                    self._advance()
                    continue
                first = self.seen.get(item.sha256)
                if first is not None:
                    self.report.skipped.append({"name": item.name, "reason": f"duplicate of {first} in this upload"})
                    self._advance()
                    continue
                self.seen[item.sha256] = item.name
                self.batch.append(item)
                self.batch_bytes += len(item.data)
                if len(self.batch) >= BATCH_FILES or self.batch_bytes >= BATCH_BYTES:
                    self._flush()
            self._flush()
        finally:
            self.io_pool.shutdown()
        self._after_ingest()
        return self.report

    def _flush(self) -> None:
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        if not batch:
            return
        existing = dict(_stored_images(self.dataset.pk, [f.sha256 for f in batch]))
        fresh = []
        labels_for_existing = []
        for item in batch:
            if item.sha256 in existing:
                image_id = existing[item.sha256]
                self.report.skipped.append(
                    {"name": item.name, "reason": f"duplicate of image #{image_id} already in the dataset"}
                )
                if item.class_name:
                    labels_for_existing.append((image_id, item.class_name))
                continue
            try:
                facts = inspect_image(
                    item.data, max_pixels=self.limits.max_image_pixels, thumbnail_size=self.limits.thumbnail_size
                )
            except ImageRejected as exc:
                self.report.rejected.append({"name": item.name, "error": exc.message})
                continue
            fresh.append((item, facts))
        rows: list[_NewImage] = []
        futures = []
        try:
            for item, facts in fresh:
                row = _NewImage(
                    dataset_id=self.dataset.pk,
                    sha256=item.sha256,
                    width=facts.width,
                    height=facts.height,
                    format=facts.format,
                    mode=facts.mode,
                    size_bytes=len(item.data),
                    original_name=item.original_name,
                    uploaded_by_id=self.user.pk if self.user else None,
                )
                # Content-addressed names; the writer picks a new name rather
                # than overwrite, so every file written here belongs to this batch alone.
                futures.append(
                    self.io_pool.submit(
                        self.writer.save_pair,
                        image_upload_path(row, "x" + facts.extension),
                        item.data,
                        thumbnail_path(self.dataset.pk, item.sha256, facts.thumbnail_format),
                        facts.thumbnail,
                    )
                )
                rows.append(row)
            for row, future in zip(rows, futures):
                row.file, row.thumbnail = future.result()
            lost: list[_NewImage] = []
            with transaction.atomic():
                _insert_images(rows)
                stored = {
                    sha: (pk, name)
                    for sha, pk, name in _stored_images(self.dataset.pk, [row.sha256 for row in rows], with_file=True)
                }
                created: list[tuple[_NewImage, _File]] = []
                for (item, _facts), row in zip(fresh, rows):
                    pk, name = stored.get(row.sha256, (None, None))
                    if pk is not None and name == row.file:
                        row.pk = pk
                        created.append((row, item))
                    else:  # a concurrent upload stored the same file first
                        lost.append(row)
                        self.report.skipped.append(
                            {"name": item.name, "reason": f"duplicate of image #{pk} already in the dataset"}
                        )
                labels = [(row.pk, item.class_name) for row, item in created if item.class_name]
                if labels or labels_for_existing:
                    self._import_labels(new=labels, existing=labels_for_existing)
        except BaseException:
            wait(futures)
            self._delete_files(
                name for f in futures if not f.cancelled() and f.exception() is None for name in f.result()
            )
            raise
        self._delete_files(name for row in lost for name in (row.file, row.thumbnail))
        for row, _item in created:
            self.report.created.append({"id": row.pk, "name": row.original_name})
            self.created_ids.append(row.pk)
        self._advance(len(batch))

    def _delete_files(self, names: Iterable[str]) -> None:
        for name in names:
            try:
                self.storage.delete(name)
            except Exception:  # cleanup_orphan_media removes whatever is left
                logger.warning("could not delete %s after a failed ingest", name, exc_info=True)

    # labels from folders ------------------------------------------------------------------------
    def _label_class(self, raw_name: str) -> LabelClass | None:
        name = clean_text(raw_name, LabelClass._meta.get_field("name").max_length)
        if not name:
            return None
        if name in self.classes:
            return self.classes[name]
        label_class = LabelClass.objects.filter(dataset=self.dataset, name=name).first()
        if label_class is None:
            used = set(LabelClass.objects.filter(dataset=self.dataset).values_list("color", flat=True))
            color = class_color(len(used), used)
            try:
                with transaction.atomic():
                    label_class = LabelClass.objects.create(dataset=self.dataset, name=name, color=color)
            except IntegrityError:  # created concurrently
                label_class = LabelClass.objects.get(dataset=self.dataset, name=name)
        self.classes[name] = label_class
        return label_class

    def _action(self, label_class: LabelClass) -> LabelAction:
        action = self.actions.get(label_class.pk)
        if action is None:
            action = LabelAction.objects.create(
                dataset=self.dataset,
                user=self.user,
                kind=LabelAction.Kind.SET,
                source=AnnotationSource.IMPORT,
                label_class=label_class,
                image_count=0,
            )
            self.actions[label_class.pk] = action
        return action

    def _import_labels(self, *, new: list[tuple[int, str]], existing: list[tuple[int, str]]) -> None:
        """Annotate images with their folder's class; an image that already has a class keeps it."""
        ids_by_class: dict[int, list[int]] = defaultdict(list)
        classes: dict[int, LabelClass] = {}
        for image_id, class_name in [*new, *existing]:
            label_class = self._label_class(class_name)
            if label_class is not None:
                ids_by_class[label_class.pk].append(image_id)
                classes[label_class.pk] = label_class
        labeled = 0
        for class_id, image_ids in ids_by_class.items():
            labeled += annotations_fill_unlabeled(
                dataset=self.dataset,
                user=self.user,
                image_ids=image_ids,
                label_class=classes[class_id],
                action=self._action(classes[class_id]),
                source=AnnotationSource.IMPORT,
            )
        if labeled:
            # Also set here, not only after commit, so the import's caller sees it at once.
            Dataset.objects.filter(pk=self.dataset.pk).update(labels_changed_at=timezone.now())
        self.report.labeled += labeled

    # after the last batch ---------------------------------------------------------------------------
    def _after_ingest(self) -> None:
        if self.report.labeled:
            dataset_id = self.dataset.pk
            transaction.on_commit(lambda: embedding_services.dataset_labels_changed(dataset_id=dataset_id), robust=True)
        if self.created_ids:
            _place_on_current_map(self.dataset, list(self.created_ids))


_IMAGE_COLUMNS = (
    "dataset_id",
    "file",
    "thumbnail",
    "sha256",
    "width",
    "height",
    "format",
    "mode",
    "size_bytes",
    "original_name",
    "uploaded_by_id",
    "uploaded_at",
)


def _insert_images(rows: list[_NewImage]) -> None:
    """INSERT the rows, letting the database drop those whose (dataset, sha256) exists.

    On PostgreSQL and SQLite this is one executemany of plain tuples: model
    instances and Django's bulk_create cost about 0.2 ms per row, which alone
    would cap ingest far below 1,000 images/s.
    """
    if not rows:
        return
    uploaded_at = timezone.now()
    if not on_postgres_or_sqlite():
        Image.objects.bulk_create(
            [Image(**{name: getattr(row, name) for name in _IMAGE_COLUMNS if name != "uploaded_at"}) for row in rows],
            ignore_conflicts=True,
        )
        return
    meta = Image._meta
    qn = connection.ops.quote_name
    columns = ", ".join(qn(meta.get_field(name).column) for name in _IMAGE_COLUMNS)
    placeholders = ", ".join(["%s"] * len(_IMAGE_COLUMNS))
    sql = f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"
    uploaded_at = connection.ops.adapt_datetimefield_value(uploaded_at)
    params = [
        (
            row.dataset_id,
            row.file,
            row.thumbnail,
            row.sha256,
            row.width,
            row.height,
            row.format,
            row.mode,
            row.size_bytes,
            row.original_name,
            row.uploaded_by_id,
            uploaded_at,
        )
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _stored_images(dataset_id: int, hashes: list[str], *, with_file: bool = False) -> list[tuple]:
    """(sha256, id) — with_file: (sha256, id, file) — of the dataset's images among `hashes`.

    On PostgreSQL this is a join of (dataset, sha256) pairs, not `dataset_id = X
    AND sha256 IN (...)`: that form is planned from the dataset's size at the
    last ANALYZE, and a dataset that grew since (one large upload outruns
    autovacuum; a server may run without it) looks small, so the planner read
    all of its rows through the dataset index for every batch: 0.5 s per 500
    files at 1,000,000 images. Joined, each pair is one probe of the
    (dataset, sha256) unique index, whatever the statistics say.
    """
    if not hashes:
        return []
    if connection.vendor != "postgresql":
        columns = ("sha256", "id", "file") if with_file else ("sha256", "id")
        return list(Image.objects.filter(dataset_id=dataset_id, sha256__in=hashes).values_list(*columns))
    meta = Image._meta
    qn = connection.ops.quote_name
    dataset_col, sha_col = qn(meta.get_field("dataset").column), qn(meta.get_field("sha256").column)
    selected = f"i.{sha_col}, i.{qn(meta.pk.column)}" + (
        f", i.{qn(meta.get_field('file').column)}" if with_file else ""
    )
    sql = (
        f"SELECT {selected} FROM unnest(%s::bigint[], %s::varchar[]) AS probe(dataset_id, sha256) "
        f"JOIN {qn(meta.db_table)} i ON i.{dataset_col} = probe.dataset_id AND i.{sha_col} = probe.sha256"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [[dataset_id] * len(hashes), list(hashes)])
        return cursor.fetchall()


def _place_on_current_map(dataset: Dataset, image_ids: list[int]) -> None:
    """New images join the dataset's current map without retraining (when it has one)."""
    if not TrainingRun.objects.filter(dataset=dataset, status=RunStatus.SUCCEEDED).exists():
        return
    transaction.on_commit(
        lambda: embedding_services.images_place_on_current_map(dataset=dataset, image_ids=image_ids), robust=True
    )


# --- public services ----------------------------------------------------------------------------------


def images_ingest(
    *,
    dataset: Dataset,
    user,
    files: list,
    classes_from_folders: bool = False,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    """Store uploaded images and .zip archives; the report says what happened to each file.

    Request-level problems raise: no files (ValidationFailed), more files than
    SIMLABEL_MAX_FILES_PER_REQUEST or more bytes than SIMLABEL_MAX_UPLOAD_BYTES
    (PayloadTooLarge). Everything else is decided per file. Batches commit one
    by one, so a failure part-way keeps the batches already stored.
    """
    limits = UploadLimits.from_settings()
    files = list(files or [])
    if not files:
        raise ValidationFailed("No files were uploaded.", field="files")
    if len(files) > limits.max_files_per_request:
        raise PayloadTooLarge(
            f"{len(files):,} files in one request; the limit is {limits.max_files_per_request:,}. "
            "Upload fewer files at once or put them in a .zip archive.",
            limit=limits.max_files_per_request,
        )
    total_bytes = sum(getattr(f, "size", 0) or 0 for f in files)
    if total_bytes > limits.max_upload_bytes:
        raise PayloadTooLarge(
            f"The upload is {total_bytes:,} bytes; the limit is {limits.max_upload_bytes:,}.",
            limit=limits.max_upload_bytes,
        )
    ingest = _Ingest(dataset=dataset, user=user, limits=limits, on_progress=on_progress)
    return ingest.run(_iter_uploads(files, limits, classes_from_folders, ingest.add_total))


def images_ingest_path(
    *,
    dataset: Dataset,
    user,
    path,
    classes_from_folders: bool = False,
    on_progress: ProgressCallback | None = None,
) -> IngestReport:
    """Store the images of a folder (recursively), a .zip archive or one image file on disk.

    With classes_from_folders, the first-level sub-folder of each image names
    its class: missing classes are created and the image is annotated (source
    "import", one label action per class); images that already have a class keep it.
    """
    limits = UploadLimits.from_settings()
    root = Path(path)
    if not root.exists():
        raise ValidationFailed(f"{root} does not exist.", field="path")
    ingest = _Ingest(dataset=dataset, user=user, limits=limits, on_progress=on_progress)
    if root.is_dir():
        items = _iter_folder(root, limits, classes_from_folders, ingest.add_total)
        return ingest.run(items)
    with open(root, "rb") as fp:
        if root.name.lower().endswith(".zip"):
            ingest.add_total(1)
            items = _iter_zip(fp, _report_name(root.name), limits, classes_from_folders, ingest.add_total)
        else:
            ingest.add_total(1)
            items = iter([_single_file(root.name, fp, limits)])
        return ingest.run(items)


# --- orphans ------------------------------------------------------------------------------------------


def images_cleanup_orphans(*, dataset: Dataset | None = None, min_age_seconds: float = 3600) -> list[str]:
    """Delete stored image files and thumbnails that no row points to; returns their names.

    Such files are left by a process killed between writing files and
    committing rows, or by datasets deleted while their files could not be.
    Files younger than `min_age_seconds` are kept: they may belong to an
    ingest still in progress.
    """
    storage = Image._meta.get_field("file").storage
    if dataset is not None:
        dataset_ids = [str(dataset.pk)]
    else:
        try:
            dataset_ids, _ = storage.listdir("datasets")
        except (FileNotFoundError, NotADirectoryError):
            return []
    cutoff = timezone.now().timestamp() - min_age_seconds
    removed = []
    for dataset_id in dataset_ids:
        if not dataset_id.isdigit():
            continue
        referenced = set()
        for file_name, thumb_name in (
            Image.objects.filter(dataset_id=int(dataset_id)).values_list("file", "thumbnail").iterator(chunk_size=5000)
        ):
            referenced.add(file_name)
            referenced.add(thumb_name)
        for sub in ("images", "thumbs"):
            for name in list(walk_storage(storage, f"datasets/{dataset_id}/{sub}")):
                if name in referenced:
                    continue
                if min_age_seconds > 0:
                    try:
                        if storage.get_modified_time(name).timestamp() > cutoff:
                            continue
                    except (OSError, NotImplementedError):
                        continue
                storage.delete(name)
                removed.append(name)
    return removed
