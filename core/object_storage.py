"""Reading images from the S3-compatible buckets that datasets connect (labeling.models.Storage).

Only list, head and get are ever sent: simlabel never writes to, or deletes from,
someone else's bucket. The credentials are stored as one Fernet token, encrypted
with SIMLABEL_STORAGE_KEY (or a key derived from SECRET_KEY when that is unset),
and are decrypted here only to sign requests.

A bucket's endpoint is a host an admin typed, so it must not become a way into the network simlabel runs
in (SSRF): every request a client made here sends is checked right before it goes out (botocore's
`before-send` event): the request's host is resolved and every address must be public unless
SIMLABEL_STORAGE_ALLOWED_NETWORKS lists it (core.network), else TargetRefused and nothing is sent. botocore
then resolves the host again itself, so a DNS answer that changes between the two lookups (DNS rebinding)
is not caught; the webhooks, which connect themselves, pin the checked address instead.

Here rather than in labeling.services because the pipeline (embeddings) reads
originals too, and embeddings may import only core and labeling.models.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from django.conf import settings

from core import network
from core.network import TargetRefused
from labeling.models import Image, Storage

READ_CHUNK = 256 * 1024
FETCH_CHUNK = 32  # originals fetched ahead per step when training reads them


class ObjectTooLarge(Exception):
    pass


# --- credentials at rest ----------------------------------------------------------------------------------


def _fernet():
    from cryptography.fernet import Fernet

    secret = settings.SIMLABEL_STORAGE_KEY or f"simlabel-storage:{settings.SECRET_KEY}"
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def credentials_encrypt(access_key_id: str, secret_access_key: str) -> str:
    payload = json.dumps({"access_key_id": access_key_id, "secret_access_key": secret_access_key})
    return _fernet().encrypt(payload.encode()).decode()


def credentials_decrypt(token: str) -> tuple[str, str]:
    """(access key id, secret); ValueError when the key that encrypted them is gone."""
    from cryptography.fernet import InvalidToken

    try:
        payload = json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise ValueError(
            "the bucket's credentials cannot be decrypted (SIMLABEL_STORAGE_KEY or SECRET_KEY changed); "
            "connect the bucket again"
        ) from None
    return payload["access_key_id"], payload["secret_access_key"]


# --- where a client may connect -----------------------------------------------------------------------------

ENDPOINT_SETTING = "SIMLABEL_STORAGE_ALLOWED_NETWORKS"
ENDPOINT_RULE = "a bucket's endpoint may only be a public address"


def endpoint_check(url: str) -> None:
    """TargetRefused unless `url` (an endpoint, or a request's URL) is http(s) and its host resolves only to
    allowed addresses."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused(f"{url!r} is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("The endpoint must be an http:// or https:// URL with a host.")
    network.resolve_allowed(
        parts.hostname,
        port or (443 if parts.scheme == "https" else 80),
        allowed=settings.SIMLABEL_STORAGE_ALLOWED_NETWORKS,
        rule=ENDPOINT_RULE,
        setting=ENDPOINT_SETTING,
    )


def _check_before_send(request, **kwargs) -> None:
    # Every request, not once per client: a client lives for the process, and DNS answers change.
    endpoint_check(request.url)


# --- clients ------------------------------------------------------------------------------------------------

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def bucket_client(
    *,
    endpoint_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    pool_size: int | None = None,
    attempts: int = 3,
):
    """A boto3 S3 client (thread-safe) with short timeouts, so a dead endpoint fails a request, not a worker.

    Each request raises TargetRefused, unsent, when its host resolves to an address that is not allowed.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        # Custom endpoints (MinIO, Ceph, moto, ...) rarely resolve bucket sub-domains.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": attempts, "mode": "standard"},
        max_pool_connections=pool_size or max(10, settings.SIMLABEL_STORAGE_FETCH_THREADS),
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )
    client.meta.events.register("before-send.s3", _check_before_send)
    return client


def storage_client(storage: Storage):
    """The client of a connected storage, made once per process and storage (making one costs ~10 ms)."""
    key = (storage.pk, storage.endpoint_url, storage.region, storage.credentials)
    with _clients_lock:
        client = _clients.get(key)
    if client is None:
        access_key_id, secret = credentials_decrypt(storage.credentials)
        client = bucket_client(
            endpoint_url=storage.endpoint_url,
            region=storage.region,
            access_key_id=access_key_id,
            secret_access_key=secret,
        )
        with _clients_lock:
            _clients[key] = client
    return client


def object_read(client, bucket: str, key: str, *, limit: int) -> bytes:
    """The object's bytes, read in chunks; ObjectTooLarge past `limit` bytes (nothing more is read)."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        chunks, size = [], 0
        while chunk := body.read(READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ObjectTooLarge(f"is larger than the limit of {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        body.close()


def original_url(image: Image, *, content_type: str, filename: str) -> str:
    """A short-lived presigned GET of a referenced image's original (SIMLABEL_STORAGE_URL_SECONDS)."""
    storage = image.storage
    return storage_client(storage).generate_presigned_url(
        "get_object",
        Params={
            "Bucket": storage.bucket,
            "Key": image.storage_key,
            "ResponseContentType": content_type,
            "ResponseContentDisposition": f'inline; filename="{filename}"',
            "ResponseCacheControl": "private, max-age=60",
        },
        ExpiresIn=settings.SIMLABEL_STORAGE_URL_SECONDS,
    )


# --- reading many originals (training) -----------------------------------------------------------------------


def referenced_originals(image_ids: Iterable[int]) -> Iterator[tuple[int, bytes | Exception]]:
    """(id, original bytes or the error) for images kept in a bucket, in the order given.

    Fetched FETCH_CHUNK at a time by a pool of SIMLABEL_STORAGE_FETCH_THREADS, the next
    chunk in flight while the caller decodes this one: bounded memory, and the network's
    latency hidden behind decoding.
    """
    ids = list(image_ids)
    if not ids:
        return
    limit = settings.SIMLABEL_MAX_FILE_BYTES
    storages: dict[int, Storage] = {}

    def fetch(image_id: int, where: tuple[int, str] | None):
        if where is None:
            return ValueError("the image has no original in a bucket")
        try:
            storage = storages[where[0]]
            return object_read(storage_client(storage), storage.bucket, where[1], limit=limit)
        except Exception as exc:  # the caller reports it per image, like a corrupt file
            return exc

    def submit(pool, chunk):
        rows = {
            pk: (storage_id, key)
            for pk, storage_id, key in Image.objects.filter(pk__in=chunk, storage__isnull=False).values_list(
                "id", "storage_id", "storage_key"
            )
        }
        missing = {sid for sid, _ in rows.values()} - storages.keys()
        storages.update(Storage.objects.in_bulk(missing))
        return [(pk, pool.submit(fetch, pk, rows.get(pk))) for pk in chunk]

    chunks = [ids[i : i + FETCH_CHUNK] for i in range(0, len(ids), FETCH_CHUNK)]
    with ThreadPoolExecutor(
        max_workers=settings.SIMLABEL_STORAGE_FETCH_THREADS, thread_name_prefix="originals"
    ) as pool:
        pending = submit(pool, chunks[0])
        for index in range(len(chunks)):
            ahead = submit(pool, chunks[index + 1]) if index + 1 < len(chunks) else []
            for pk, future in pending:
                yield pk, future.result()
            pending = ahead
