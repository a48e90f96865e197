"""Images where they already live: a dataset connects an S3-compatible bucket and prefix, and syncs it.

A sync lists the prefix and turns each image object into an Image row *by reference*
(storage, key, ETag, size): the original stays in the bucket and is served through
short-lived presigned URLs (labeling.media_views) and read by training in chunks
(core.object_storage.referenced_originals). Each new or changed object is fetched
once, checked like an upload (labeling.uploads.inspect_image: format, pixels,
decompression bombs, truncation), and its thumbnail is stored in the project's
storage; nothing else is copied unless the storage was connected with `copy`.

A re-sync adds new objects, re-reads those whose ETag changed, and reports the ones
no longer listed: their rows stay (with their labels) and are marked missing, so a
deleted or renamed object is never dropped silently; one that comes back is restored.

Only list and get are sent to the bucket. The sync runs as a Celery task (queue
`default`) with its state, progress and report on a StorageSync row.

The endpoint must resolve to public addresses unless SIMLABEL_STORAGE_ALLOWED_NETWORKS lists them (SSRF):
checked when the storage is connected (400) and by the client before every request it sends
(core.object_storage), so a sync of a storage whose endpoint is no longer allowed fails before it lists
anything.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import Conflict, ServiceUnavailable, ValidationFailed
from core.network import TargetRefused
from core.object_storage import (
    ObjectTooLarge,
    bucket_client,
    credentials_encrypt,
    endpoint_check,
    object_read,
    storage_client,
)
from labeling.models import Dataset, Image, Storage, StorageSync, image_upload_path
from labeling.services.images import UploadLimits, _FileWriter, _place_on_current_map, _stored_images, thumbnail_path
from labeling.uploads import EXTENSIONS, ImageRejected, inspect_image, sanitize_original_name

logger = logging.getLogger(__name__)

# What a sync treats as an image, by the key's extension; anything else is counted as ignored.
IMAGE_EXTENSIONS = frozenset({*EXTENSIONS.values(), ".jpeg", ".tiff"})
BATCH_OBJECTS = 64  # fetched, checked and stored per step; bounds memory to a batch of originals
REPORT_KEYS_MAX = 1000  # keys listed per category in a report; the counts are always complete
# A sync whose worker has not written for this long is taken for dead and no longer blocks a new one.
SYNC_STALE_SECONDS = 600
ACTIVE = (StorageSync.Status.QUEUED, StorageSync.Status.RUNNING)


# --- connecting -------------------------------------------------------------------------------------------


def _bucket_error(exc: Exception, bucket: str) -> str:
    """A message an admin can act on, for what listing the bucket raised."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404", "NotFound"):
            return f"The bucket {bucket!r} does not exist at this endpoint."
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "AuthorizationHeaderMalformed"):
            return f"The endpoint refused the credentials ({code}): check the access key id and secret."
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return f"These credentials may not list {bucket!r} ({code}): they need s3:ListBucket and s3:GetObject."
        return f"Listing the bucket failed: {code or 'error'}: {exc.response.get('Error', {}).get('Message', '')}"
    if isinstance(exc, EndpointConnectionError):
        return "The endpoint could not be reached: check endpoint_url (and that it is reachable from the server)."
    if isinstance(exc, BotoCoreError):
        return f"Listing the bucket failed: {exc}"
    return f"Listing the bucket failed: {type(exc).__name__}: {exc}"


def _clean_prefix(prefix: str) -> str:
    """ "" or a prefix ending with "/": "photos" must not also match "photos-old/"."""
    prefix = (prefix or "").strip().lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def storage_connect(
    *,
    dataset: Dataset,
    user,
    bucket: str,
    access_key_id: str,
    secret_access_key: str,
    endpoint_url: str = "",
    prefix: str = "",
    region: str = "",
    copy_originals: bool = False,
) -> Storage:
    """Connect a bucket and prefix to the dataset, after checking that the credentials may list it (else 400)."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = _clean_prefix(prefix)
    if endpoint_url:  # checked here for a clear 400; the client checks every request again (an empty one is AWS)
        try:
            endpoint_check(endpoint_url)
        except TargetRefused as exc:
            raise ValidationFailed(str(exc), code="endpoint_refused", field="endpoint_url") from None
    client = bucket_client(  # one attempt: an admin waiting on a wrong endpoint hears so in seconds
        endpoint_url=endpoint_url,
        region=region,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        attempts=1,
    )
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except TargetRefused as exc:  # the answer changed since the check above
        raise ValidationFailed(str(exc), code="endpoint_refused", field="endpoint_url") from None
    except (ClientError, BotoCoreError, ValueError) as exc:
        raise ValidationFailed(_bucket_error(exc, bucket), code="bucket_unreadable", field="bucket") from None
    return Storage.objects.create(
        dataset=dataset,
        endpoint_url=endpoint_url,
        bucket=bucket,
        prefix=prefix,
        region=region,
        credentials=credentials_encrypt(access_key_id, secret_access_key),
        copy_originals=copy_originals,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )


# --- starting a sync --------------------------------------------------------------------------------------


def _fail_stale_syncs(storage: Storage) -> None:
    cutoff = timezone.now() - timezone.timedelta(seconds=SYNC_STALE_SECONDS)
    quiet = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    StorageSync.objects.filter(quiet, storage=storage, status__in=ACTIVE).update(
        status=StorageSync.Status.FAILED,
        error=f"the sync stopped reporting for {SYNC_STALE_SECONDS} s (its worker died); start it again",
        finished_at=timezone.now(),
    )


def storage_sync_start(*, storage: Storage, user) -> StorageSync:
    """Queue a sync of the storage; one queued or running sync per storage (409 with its id otherwise)."""
    from labeling import tasks

    _fail_stale_syncs(storage)
    try:
        with transaction.atomic():
            sync = StorageSync.objects.create(
                storage=storage, created_by=user if getattr(user, "is_authenticated", False) else None
            )
    except IntegrityError:
        active = StorageSync.objects.filter(storage=storage, status__in=ACTIVE).first()
        raise Conflict(
            f"Sync {active.pk if active else '?'} of this storage is already {active.status if active else 'active'}.",
            code="sync_active",
            sync_id=active.pk if active else None,
        ) from None

    def publish():
        try:
            tasks.sync_storage.delay(sync.pk)
        except Exception as exc:  # kombu's errors all mean "not queued"
            StorageSync.objects.filter(pk=sync.pk, status=StorageSync.Status.QUEUED).update(
                status=StorageSync.Status.FAILED, error="the task queue is not reachable", finished_at=timezone.now()
            )
            raise ServiceUnavailable(
                "The task queue (broker) is not reachable, so the sync could not be started.", sync_id=sync.pk
            ) from exc

    transaction.on_commit(publish)
    return sync


# --- the sync itself --------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    listed: int = 0
    unchanged: int = 0
    ignored: int = 0  # objects whose keys do not end in an image extension
    added: list[dict] = field(default_factory=list)  # {key, id}
    updated: list[dict] = field(default_factory=list)  # {key, id}: the ETag changed and the object was re-read
    restored: list[dict] = field(default_factory=list)  # {key, id}: missing before, listed again
    removed: list[dict] = field(default_factory=list)  # {key, id}: no longer listed; the row is marked missing
    still_missing: int = 0
    rejected: list[dict] = field(default_factory=list)  # {key, error}
    skipped: list[dict] = field(default_factory=list)  # {key, reason}: duplicates

    def as_dict(self) -> dict:
        lists = ("added", "updated", "restored", "removed", "rejected", "skipped")
        counts = {name: len(getattr(self, name)) for name in lists}
        counts.update(listed=self.listed, unchanged=self.unchanged, ignored=self.ignored)
        counts["still_missing"] = self.still_missing
        data = {"counts": counts}
        for name in lists:
            data[name] = getattr(self, name)[:REPORT_KEYS_MAX]
        data["truncated"] = any(len(getattr(self, name)) > REPORT_KEYS_MAX for name in lists)
        return data


@dataclass
class _Object:
    key: str
    etag: str
    size: int
    row_id: int | None = None  # the image it already is (a changed ETag), None for a new one


@dataclass
class _Fetched:
    obj: _Object
    sha256: str = ""
    data: bytes | None = None  # kept only when originals are copied
    facts: object = None
    error: str = ""


def _is_image_key(key: str) -> bool:
    dot = key.rfind(".")
    return not key.endswith("/") and dot >= 0 and key[dot:].lower() in IMAGE_EXTENSIONS


class _Sync:
    def __init__(self, sync: StorageSync):
        self.sync = sync
        self.storage = sync.storage
        self.dataset = self.storage.dataset
        self.client = storage_client(self.storage)
        self.limits = UploadLimits.from_settings()
        self.project_storage = Image._meta.get_field("file").storage
        self.writer = _FileWriter(self.project_storage)
        self.report = SyncReport()
        self.done = 0
        self.total = 0
        self.last_write = 0.0
        self.added_ids: list[int] = []

    def list_objects(self) -> dict[str, tuple[str, int]]:
        listed = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.storage.bucket, Prefix=self.storage.prefix):
            for item in page.get("Contents", ()):
                listed[item["Key"]] = (item.get("ETag", "").strip('"'), int(item.get("Size", 0)))
            self._heartbeat()
        return listed

    def run(self) -> SyncReport:
        listed = self.list_objects()
        now = timezone.now()
        self.report.listed = len(listed)
        existing = {
            key: (pk, etag, missing)
            for pk, key, etag, missing in Image.objects.filter(storage=self.storage).values_list(
                "id", "storage_key", "storage_etag", "missing_since"
            )
        }
        to_fetch: list[_Object] = []
        restored: list[int] = []
        for key, (etag, size) in sorted(listed.items()):
            if not _is_image_key(key):
                self.report.ignored += 1
                continue
            row = existing.get(key)
            if row is not None and row[1] == etag:
                self.report.unchanged += 1
                if row[2] is not None:
                    restored.append(row[0])
                    self.report.restored.append({"key": key, "id": row[0]})
                continue
            if size > self.limits.max_file_bytes:
                limit = self.limits.max_file_bytes
                self.report.rejected.append({"key": key, "error": f"is larger than the limit of {limit:,} bytes"})
                continue
            to_fetch.append(_Object(key, etag, size, row[0] if row else None))
        removed = [(key, row[0]) for key, row in existing.items() if key not in listed and row[2] is None]
        self.report.still_missing = sum(1 for key, row in existing.items() if key not in listed and row[2] is not None)
        with transaction.atomic():
            Image.objects.filter(pk__in=restored).update(missing_since=None)
            Image.objects.filter(pk__in=[pk for _, pk in removed]).update(missing_since=now)
        self.report.removed = [{"key": key, "id": pk} for key, pk in sorted(removed)]

        self.total = len(to_fetch)
        self._progress(force=True)
        threads = settings.SIMLABEL_STORAGE_FETCH_THREADS
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="storage-sync") as pool:
            for start in range(0, len(to_fetch), BATCH_OBJECTS):
                batch = to_fetch[start : start + BATCH_OBJECTS]
                self._store(pool, list(pool.map(self._fetch, batch)))
                self.done += len(batch)
                self._progress()
        if self.added_ids:
            _place_on_current_map(self.dataset, list(self.added_ids))
        return self.report

    # one object, in a pool thread: fetch once, hash, check, thumbnail -------------------------------------------
    def _fetch(self, obj: _Object) -> _Fetched:
        result = _Fetched(obj)
        try:
            data = object_read(self.client, self.storage.bucket, obj.key, limit=self.limits.max_file_bytes)
            result.sha256 = hashlib.sha256(data).hexdigest()
            result.facts = inspect_image(
                data, max_pixels=self.limits.max_image_pixels, thumbnail_size=self.limits.thumbnail_size
            )
            result.data = data if self.storage.copy_originals else None
        except (ImageRejected, ObjectTooLarge) as exc:
            result.error = getattr(exc, "message", None) or str(exc)
        except TargetRefused:  # the endpoint, not this object: the whole sync fails
            raise
        except Exception as exc:  # the bucket answered with an error for this object only
            result.error = f"could not be read from the bucket ({type(exc).__name__}: {str(exc)[:200]})"
        return result

    # a batch, in this thread: duplicates, files, then rows ---------------------------------------------------
    def _store(self, pool: ThreadPoolExecutor, fetched: list[_Fetched]) -> None:
        good = []
        for item in fetched:
            if item.error:
                self.report.rejected.append({"key": item.obj.key, "error": item.error})
            else:
                good.append(item)
        # The upload path's lookup: one probe of the (dataset, sha256) index per object, whatever the statistics.
        holders = dict(_stored_images(self.dataset.pk, [i.sha256 for i in good]))
        keep, seen = [], {}
        for item in good:
            holder = holders.get(item.sha256)
            if holder is not None and holder != item.obj.row_id:
                self.report.skipped.append({"key": item.obj.key, "reason": f"duplicate of image #{holder}"})
            elif item.sha256 in seen:
                self.report.skipped.append({"key": item.obj.key, "reason": f"duplicate of {seen[item.sha256]}"})
            elif holder is not None:  # a changed ETag, the same bytes: only the ETag is new
                Image.objects.filter(pk=holder).update(storage_etag=item.obj.etag, size_bytes=item.obj.size)
                self.report.unchanged += 1
            else:
                seen[item.sha256] = item.obj.key
                keep.append(item)
        names = list(pool.map(self._write_files, keep))
        try:
            self._write_rows(keep, names)
        except BaseException:
            self._delete_files(n for pair in names for n in pair if n)
            raise

    def _write_files(self, item: _Fetched) -> tuple[str, str]:
        facts = item.facts
        thumb = self.writer.save(thumbnail_path(self.dataset.pk, item.sha256, facts.thumbnail_format), facts.thumbnail)
        if item.data is None:
            return "", thumb
        probe = Image(dataset_id=self.dataset.pk, sha256=item.sha256)
        try:
            return self.writer.save(image_upload_path(probe, "x" + facts.extension), item.data), thumb
        except BaseException:
            self._delete_files([thumb])
            raise

    def _write_rows(self, keep: list[_Fetched], names: list[tuple[str, str]]) -> None:
        replaced: list[str] = []
        user_id = self.sync.created_by_id
        with transaction.atomic():
            updates = [(item, pair) for item, pair in zip(keep, names) if item.obj.row_id is not None]
            olds = {
                pk: (f, t)
                for pk, f, t in Image.objects.filter(pk__in=[i.obj.row_id for i, _ in updates]).values_list(
                    "id", "file", "thumbnail"
                )
            }
            for item, (file_name, thumb) in updates:
                facts = item.facts
                Image.objects.filter(pk=item.obj.row_id).update(
                    file=file_name,
                    thumbnail=thumb,
                    sha256=item.sha256,
                    width=facts.width,
                    height=facts.height,
                    format=facts.format,
                    mode=facts.mode,
                    size_bytes=item.obj.size,
                    storage_etag=item.obj.etag,
                    missing_since=None,
                )
                replaced.extend(n for n in olds.get(item.obj.row_id, ()) if n and n not in (file_name, thumb))
                self.report.updated.append({"key": item.obj.key, "id": item.obj.row_id})
            new = [
                Image(
                    dataset=self.dataset,
                    file=file_name,
                    thumbnail=thumb,
                    sha256=item.sha256,
                    width=item.facts.width,
                    height=item.facts.height,
                    format=item.facts.format,
                    mode=item.facts.mode,
                    size_bytes=item.obj.size,
                    original_name=sanitize_original_name(item.obj.key),
                    uploaded_by_id=user_id,
                    storage=self.storage,
                    storage_key=item.obj.key,
                    storage_etag=item.obj.etag,
                )
                for item, (file_name, thumb) in zip(keep, names)
                if item.obj.row_id is None
            ]
            try:
                with transaction.atomic():
                    created = Image.objects.bulk_create(new)
            except IntegrityError:  # an upload stored one of these files meanwhile: row by row
                created = []
                for image in new:
                    try:
                        with transaction.atomic():
                            image.save(force_insert=True)
                        created.append(image)
                    except IntegrityError:
                        self.report.skipped.append({"key": image.storage_key, "reason": "duplicate of another image"})
                        self._delete_after_commit([image.file.name, image.thumbnail.name])
            for image in created:
                self.report.added.append({"key": image.storage_key, "id": image.pk})
                self.added_ids.append(image.pk)
            self._delete_after_commit(replaced)

    def _delete_after_commit(self, names) -> None:
        names = [n for n in names if n]
        if names:
            transaction.on_commit(lambda: self._delete_files(names))

    def _delete_files(self, names) -> None:
        for name in names:
            try:
                self.project_storage.delete(name)
            except Exception:  # cleanup_orphan_media removes whatever is left
                logger.warning("could not delete %s after a sync", name, exc_info=True)

    # progress on the row ----------------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self.last_write >= 1.0:
            self.last_write = now
            StorageSync.objects.filter(pk=self.sync.pk).update(heartbeat_at=timezone.now())

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_write >= 0.5 or self.done >= self.total:
            self.last_write = now
            StorageSync.objects.filter(pk=self.sync.pk).update(
                objects_done=self.done,
                objects_total=self.total,
                progress=(self.done / self.total) if self.total else 1.0,
                heartbeat_at=timezone.now(),
            )


def storage_sync_execute(*, sync_id: int) -> str:
    """Run a queued sync; "skipped" when another worker has it (or it is over). Idempotent: a sync run
    again finds what the first one stored unchanged."""
    now = timezone.now()
    claimed = StorageSync.objects.filter(pk=sync_id, status=StorageSync.Status.QUEUED).update(
        status=StorageSync.Status.RUNNING, started_at=now, heartbeat_at=now
    )
    if not claimed:
        return "skipped"
    sync = StorageSync.objects.select_related("storage__dataset").get(pk=sync_id)
    worker = None
    try:
        worker = _Sync(sync)
        report = worker.run()
    except Exception as exc:
        logger.exception("sync %s of storage %s failed", sync_id, sync.storage_id)
        StorageSync.objects.filter(pk=sync_id).update(
            status=StorageSync.Status.FAILED,
            error=_sync_error(exc, sync.storage.bucket),
            report=worker.report.as_dict() if worker else {},
            finished_at=timezone.now(),
        )
        return "failed"
    StorageSync.objects.filter(pk=sync_id).update(
        status=StorageSync.Status.SUCCEEDED,
        progress=1.0,
        objects_done=worker.total,
        objects_total=worker.total,
        report=report.as_dict(),
        finished_at=timezone.now(),
    )
    return "succeeded"


def _sync_error(exc: Exception, bucket: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, TargetRefused):
        return f"The endpoint is not allowed: {exc}"
    if isinstance(exc, ClientError | BotoCoreError):
        return _bucket_error(exc, bucket)
    return f"{type(exc).__name__}: {exc}"
