"""Images where they already live: a bucket connected, synced and re-synced against a real S3 API.

The S3 API is moto's server on a local port (tests/s3_server.py) with credentials
checked, not a mock of boto3: every request here travels over HTTP as it would to AWS.
It listens on 127.0.0.1, which endpoints may reach only when SIMLABEL_STORAGE_ALLOWED_NETWORKS
lists it: every test here allows it, except where a test takes it away.
"""

import hashlib
import time
import urllib.request
import uuid

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from core.network import TargetRefused
from core.object_storage import credentials_decrypt, endpoint_check, object_read, storage_client
from labeling.models import Image, Storage, StorageSync
from labeling.services.storages import storage_connect, storage_sync_execute, storage_sync_start
from tests.factories import png_bytes
from tests.s3_server import presigned_urls_accepted, s3_client, s3_server

pytestmark = pytest.mark.django_db

LOCAL = ["127.0.0.1/32"]


@pytest.fixture(autouse=True)
def s3_server_allowed(settings, monkeypatch):
    """The tests' S3 server (on 127.0.0.1) may be reached, here and by the workers a test starts."""
    settings.SIMLABEL_STORAGE_ALLOWED_NETWORKS = LOCAL
    monkeypatch.setenv("SIMLABEL_STORAGE_ALLOWED_NETWORKS", ",".join(LOCAL))


@pytest.fixture
def bucket():
    """A new, empty bucket of its own: (name, client)."""
    name = f"photos-{uuid.uuid4().hex[:12]}"
    client = s3_client()
    client.create_bucket(Bucket=name)
    return name, client


@pytest.fixture
def team(settings, tmp_path, make_user, make_dataset):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    admin, reviewer, annotator, outsider = (make_user(n) for n in ("sally", "rex", "ann", "otto"))
    dataset = make_dataset("Cameras", admin=admin, members={reviewer: "reviewer", annotator: "annotator"})
    return dataset, {"admin": admin, "reviewer": reviewer, "annotator": annotator, "outsider": outsider}


def put(client, bucket_name, key, data):
    client.put_object(Bucket=bucket_name, Key=key, Body=data)
    return data


def connect_body(bucket_name, prefix="cam/", **overrides):
    server = s3_server()
    body = {
        "endpoint_url": server["endpoint_url"],
        "bucket": bucket_name,
        "prefix": prefix,
        "region": server["region"],
        "access_key_id": server["access_key_id"],
        "secret_access_key": server["secret_access_key"],
    }
    body.update(overrides)
    return body


def fill_bucket(client, name) -> dict:
    """Two images, one nested, a duplicate, a corrupt PNG, a text file and an image outside the prefix."""
    a = put(client, name, "cam/a.png", png_bytes(size=(40, 30), seed=1))
    b = put(client, name, "cam/night/b.png", png_bytes(size=(20, 50), seed=2, mode="RGB"))
    put(client, name, "cam/copy-of-a.png", a)
    put(client, name, "cam/broken.png", png_bytes(seed=3)[:60])
    put(client, name, "cam/notes.txt", b"not an image")
    put(client, name, "cam/fake.jpg", b"<html><script>alert(1)</script></html>")
    put(client, name, "other/c.png", png_bytes(seed=4))
    return {"cam/a.png": a, "cam/night/b.png": b}


@pytest.fixture
def sync_now(django_capture_on_commit_callbacks):
    """sync_now(storage, user): a sync as the worker runs it, in this process (the worker test covers the
    queue), with what it does after commit (deleting replaced thumbnails) done too."""

    def run(storage, user) -> StorageSync:
        sync = storage_sync_start(storage=storage, user=user)
        with django_capture_on_commit_callbacks(execute=True):
            assert storage_sync_execute(sync_id=sync.pk) == "succeeded", StorageSync.objects.get(pk=sync.pk).error
        return StorageSync.objects.get(pk=sync.pk)

    return run


def connect(dataset, admin, name, **options) -> Storage:
    body = connect_body(name)
    body.pop("prefix")
    return storage_connect(dataset=dataset, user=admin, prefix=options.pop("prefix", "cam"), **body, **options)


# --- connecting ---------------------------------------------------------------------------------------------


def test_connect_checks_the_bucket_and_never_returns_the_credentials(team, bucket, client_for):
    dataset, users = team
    name, _ = bucket
    body = connect_body(name, prefix="cam")
    response = client_for(users["admin"]).post(reverse("storage-list", args=[dataset.pk]), body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["prefix"] == "cam/" and data["bucket"] == name and data["copy"] is False
    assert data["last_sync"] is None and data["image_count"] == 0
    text = response.content.decode()
    assert body["secret_access_key"] not in text and body["access_key_id"] not in text
    storage = Storage.objects.get(pk=data["id"])
    # Encrypted at rest: neither appears in the row, and they decrypt to what was sent.
    assert body["secret_access_key"] not in storage.credentials and body["access_key_id"] not in storage.credentials
    assert credentials_decrypt(storage.credentials) == (body["access_key_id"], body["secret_access_key"])
    listed = client_for(users["admin"]).get(reverse("storage-list", args=[dataset.pk]))
    assert listed.status_code == 200 and body["secret_access_key"] not in listed.content.decode()
    assert [s["id"] for s in listed.json()["results"]] == [storage.pk]


def test_credentials_encrypted_with_another_key_cannot_be_read(team, bucket, settings):
    dataset, users = team
    storage = connect(dataset, users["admin"], bucket[0])
    settings.SIMLABEL_STORAGE_KEY = "another key entirely"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        credentials_decrypt(storage.credentials)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"access_key_id": "AKIAWRONGWRONGWRONG1"}, "refused the credentials (InvalidAccessKeyId)"),
        ({"secret_access_key": "not-the-secret"}, "refused the credentials (SignatureDoesNotMatch)"),
        ({"bucket": "no-such-bucket-here"}, "does not exist"),
        ({"endpoint_url": "http://127.0.0.1:9"}, "could not be reached"),
        ({"bucket": "Not_A_Bucket"}, "Not a bucket name"),
        ({"endpoint_url": "ftp://example.com"}, "http://"),
    ],
    ids=["wrong key id", "wrong secret", "no bucket", "unreachable", "bad name", "bad scheme"],
)
def test_wrong_bucket_or_credentials_are_a_clear_400(team, bucket, client_for, overrides, message):
    dataset, users = team
    body = connect_body(bucket[0], **overrides)
    response = client_for(users["admin"]).post(reverse("storage-list", args=[dataset.pk]), body, format="json")
    assert response.status_code == 400
    assert message in str(response.json()), response.json()
    assert not Storage.objects.exists()


# --- where an endpoint may point (SSRF) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint_url, kind",
    [
        ("http://127.0.0.1:{port}", "loopback"),
        ("http://10.0.0.5", "private"),
        ("http://169.254.169.254", "link-local"),
        ("http://[::1]:9000", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}", "loopback"),
        ("http://localhost:{port}", "loopback"),  # a host name is judged by what it resolves to
    ],
    ids=["loopback", "private", "metadata service", "ipv6 loopback", "ipv4-mapped", "localhost"],
)
def test_endpoints_on_internal_addresses_are_refused_and_nothing_is_stored(
    team, bucket, client_for, settings, endpoint_url, kind
):
    settings.SIMLABEL_STORAGE_ALLOWED_NETWORKS = []
    dataset, users = team
    port = s3_server()["endpoint_url"].rsplit(":", 1)[1]
    body = connect_body(bucket[0], endpoint_url=endpoint_url.format(port=port))
    response = client_for(users["admin"]).post(reverse("storage-list", args=[dataset.pk]), body, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()
    assert error["code"] == "endpoint_refused" and error.get("field") == "endpoint_url", error
    assert f"a {kind} address" in error["detail"] and "SIMLABEL_STORAGE_ALLOWED_NETWORKS" in error["detail"], error
    assert not Storage.objects.exists()


def test_public_endpoints_pass_the_check():
    # Public addresses need no setting (the check resolves, it does not connect: nothing here is reachable).
    for url in ("https://93.184.215.14", "http://8.8.8.8:9000", "https://[2606:4700:4700::1111]"):
        endpoint_check(url)
    with pytest.raises(TargetRefused, match="a private address"):
        endpoint_check("https://192.168.1.20")


def test_allowed_networks_open_an_endpoint_and_only_those(team, bucket, client_for, settings):
    dataset, users = team
    admin = client_for(users["admin"])
    settings.SIMLABEL_STORAGE_ALLOWED_NETWORKS = ["10.0.0.0/8"]  # another network: still refused
    refused = admin.post(reverse("storage-list", args=[dataset.pk]), connect_body(bucket[0]), format="json")
    assert refused.status_code == 400 and "loopback" in refused.json()["detail"]
    settings.SIMLABEL_STORAGE_ALLOWED_NETWORKS = ["10.0.0.0/8", "127.0.0.0/8"]
    created = admin.post(reverse("storage-list", args=[dataset.pk]), connect_body(bucket[0]), format="json")
    assert created.status_code == 201, created.json()
    assert Storage.objects.count() == 1


def test_sync_of_an_endpoint_no_longer_allowed_fails_and_changes_nothing(team, bucket, settings, sync_now):
    dataset, users = team
    name, client = bucket
    fill_bucket(client, name)
    storage = connect(dataset, users["admin"], name)
    first = sync_now(storage, users["admin"])
    assert first.report["counts"]["added"] == 2
    before = sorted(Image.objects.values_list("id", "storage_key", "storage_etag", "missing_since", "thumbnail"))
    # The bucket changes (one new, one gone), then the endpoint is no longer allowed.
    put(client, name, "cam/new.png", png_bytes(seed=9))
    client.delete_object(Bucket=name, Key="cam/a.png")
    settings.SIMLABEL_STORAGE_ALLOWED_NETWORKS = []
    sync = storage_sync_start(storage=storage, user=users["admin"])
    assert storage_sync_execute(sync_id=sync.pk) == "failed"
    sync.refresh_from_db()
    assert sync.status == "failed"
    assert "not allowed" in sync.error and "loopback" in sync.error, sync.error
    assert "SIMLABEL_STORAGE_ALLOWED_NETWORKS" in sync.error
    assert (
        sorted(Image.objects.values_list("id", "storage_key", "storage_etag", "missing_since", "thumbnail")) == before
    )
    # Allowed again, the same storage syncs: the refusal was the setting, read at each request.
    settings.SIMLABEL_STORAGE_ALLOWED_NETWORKS = LOCAL
    again = sync_now(storage, users["admin"])
    assert again.report["counts"]["added"] == 1 and again.report["counts"]["removed"] == 1


def test_reading_originals_checks_the_endpoint_too(team, bucket, settings):
    # Exports and runs read originals through the same client; its requests are refused unsent.
    dataset, users = team
    name, client = bucket
    put(client, name, "cam/a.png", png_bytes(seed=1))
    storage = connect(dataset, users["admin"], name)
    assert object_read(storage_client(storage), name, "cam/a.png", limit=10**6)
    settings.SIMLABEL_STORAGE_ALLOWED_NETWORKS = []
    with pytest.raises(TargetRefused, match="loopback address"):
        object_read(storage_client(storage), name, "cam/a.png", limit=10**6)


# --- syncing --------------------------------------------------------------------------------------------------


def test_sync_creates_images_by_reference_with_thumbnails(team, bucket, client_for, sync_now):
    dataset, users = team
    name, client = bucket
    originals = fill_bucket(client, name)
    storage = connect(dataset, users["admin"], name)
    sync = sync_now(storage, users["admin"])

    counts = sync.report["counts"]
    assert counts["listed"] == 6  # other/ is outside the prefix
    assert counts["added"] == 2 and counts["ignored"] == 1  # notes.txt
    assert counts["skipped"] == 1 and sync.report["skipped"][0]["key"] == "cam/copy-of-a.png"
    rejected = {r["key"]: r["error"] for r in sync.report["rejected"]}
    assert set(rejected) == {"cam/broken.png", "cam/fake.jpg"}
    assert "truncated" in rejected["cam/broken.png"] or "malformed" in rejected["cam/broken.png"]
    assert "HTML" in rejected["cam/fake.jpg"]
    assert sync.progress == 1.0 and sync.objects_done == sync.objects_total == 5

    images = {image.storage_key: image for image in Image.objects.filter(dataset=dataset)}
    assert set(images) == set(originals)
    for key, data in originals.items():
        image = images[key]
        assert image.storage_id == storage.pk and image.file.name == ""  # nothing copied
        assert image.sha256 == hashlib.sha256(data).hexdigest() and image.size_bytes == len(data)
        assert image.storage_etag == client.head_object(Bucket=name, Key=key)["ETag"].strip('"')
        assert default_storage.exists(image.thumbnail.name)
        assert image.missing_since is None
    assert (images["cam/a.png"].width, images["cam/a.png"].height) == (40, 30)
    assert images["cam/night/b.png"].original_name == "b.png" and images["cam/night/b.png"].mode == "RGB"

    # The original is served through a short-lived presigned URL of the bucket.
    member = client_for(users["annotator"])
    response = member.get(f"/images/{images['cam/a.png'].pk}/file/")
    assert response.status_code == 302 and "no-store" in response["Cache-Control"]
    url = response["Location"]
    assert url.startswith(f"{s3_server()['endpoint_url']}/{name}/cam/a.png?")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
    with presigned_urls_accepted(), urllib.request.urlopen(url, timeout=10) as fetched:
        assert fetched.read() == originals["cam/a.png"]
        assert fetched.headers["Content-Type"] == "image/png"
    thumbnail = member.get(f"/images/{images['cam/a.png'].pk}/thumbnail/")
    assert thumbnail.status_code == 200
    assert client_for(users["outsider"]).get(f"/images/{images['cam/a.png'].pk}/file/").status_code == 404


def test_resync_adds_updates_and_reports_removed_objects(team, bucket, client_for, sync_now):
    dataset, users = team
    name, client = bucket
    fill_bucket(client, name)
    storage = connect(dataset, users["admin"], name)
    sync_now(storage, users["admin"])
    before = {image.storage_key: image for image in Image.objects.filter(dataset=dataset)}

    new = put(client, name, "cam/new/d.png", png_bytes(size=(12, 12), seed=7))
    changed = put(client, name, "cam/a.png", png_bytes(size=(16, 9), seed=8))
    client.delete_object(Bucket=name, Key="cam/night/b.png")
    client.delete_object(Bucket=name, Key="cam/copy-of-a.png")  # skipped before: no image, nothing to report
    sync = sync_now(storage, users["admin"])

    report = sync.report
    assert [a["key"] for a in report["added"]] == ["cam/new/d.png"]
    assert report["updated"] == [{"key": "cam/a.png", "id": before["cam/a.png"].pk}]
    assert report["removed"] == [{"key": "cam/night/b.png", "id": before["cam/night/b.png"].pk}]
    assert report["counts"]["removed"] == 1 and report["counts"]["added"] == 1
    # Rejected objects are checked again (they may have been fixed), and still refused.
    assert {r["key"] for r in report["rejected"]} == {"cam/broken.png", "cam/fake.jpg"}

    a = Image.objects.get(pk=before["cam/a.png"].pk)
    assert a.sha256 == hashlib.sha256(changed).hexdigest() and (a.width, a.height) == (16, 9)
    assert a.thumbnail.name != before["cam/a.png"].thumbnail.name and default_storage.exists(a.thumbnail.name)
    assert not default_storage.exists(before["cam/a.png"].thumbnail.name)
    gone = Image.objects.get(pk=before["cam/night/b.png"].pk)  # reported and marked, not deleted
    assert gone.missing_since is not None
    assert client_for(users["admin"]).get(f"/images/{gone.pk}/file/").status_code == 404
    d = Image.objects.get(storage=storage, storage_key="cam/new/d.png")
    assert d.sha256 == hashlib.sha256(new).hexdigest()

    third = sync_now(storage, users["admin"])
    assert third.report["counts"]["removed"] == 0 and third.report["counts"]["still_missing"] == 1
    assert third.report["counts"]["added"] == third.report["counts"]["updated"] == 0

    put(client, name, "cam/night/b.png", png_bytes(size=(20, 50), seed=2, mode="RGB"))
    fourth = sync_now(storage, users["admin"])
    assert fourth.report["restored"] == [{"key": "cam/night/b.png", "id": gone.pk}]
    assert Image.objects.get(pk=gone.pk).missing_since is None

    detail = client_for(users["admin"]).get(reverse("storage-detail", args=[dataset.pk, storage.pk])).json()
    assert detail["last_sync"]["id"] == fourth.pk and detail["last_sync"]["report"]["restored"][0]["id"] == gone.pk
    assert detail["image_count"] == 3 and detail["missing_count"] == 0


def test_copy_stores_originals_in_the_project_storage(team, bucket, client_for, sync_now):
    dataset, users = team
    name, client = bucket
    data = put(client, name, "cam/a.png", png_bytes(size=(10, 10), seed=11))
    storage = connect(dataset, users["admin"], name, copy_originals=True)
    sync_now(storage, users["admin"])
    image = Image.objects.get(storage=storage)
    assert image.file.name and default_storage.open(image.file.name).read() == data
    response = client_for(users["admin"]).get(f"/images/{image.pk}/file/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == data


def test_deleting_the_dataset_leaves_the_bucket_alone(team, bucket, sync_now):
    from labeling.services.datasets import dataset_delete

    dataset, users = team
    name, client = bucket
    fill_bucket(client, name)
    storage = connect(dataset, users["admin"], name)
    sync_now(storage, users["admin"])
    keys_before = sorted(o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"])
    dataset_delete(dataset=dataset)
    assert not Storage.objects.exists() and not Image.objects.exists()
    assert sorted(o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"]) == keys_before


def test_one_sync_at_a_time_and_a_second_request_gets_409(team, bucket, client_for):
    dataset, users = team
    storage = connect(dataset, users["admin"], bucket[0])
    admin = client_for(users["admin"])
    url = reverse("storage-sync", args=[dataset.pk, storage.pk])
    first = admin.post(url)
    assert first.status_code == 202 and first.json()["status"] == "queued"
    second = admin.post(url)
    assert second.status_code == 409 and second.json()["sync_id"] == first.json()["id"]
    assert storage_sync_execute(sync_id=first.json()["id"]) == "succeeded"
    assert storage_sync_execute(sync_id=first.json()["id"]) == "skipped"  # a redelivered message does nothing


def test_failed_listing_fails_the_sync_with_the_reason(team, bucket):
    dataset, users = team
    name, client = bucket
    storage = connect(dataset, users["admin"], name)
    client.delete_bucket(Bucket=name)
    sync = storage_sync_start(storage=storage, user=users["admin"])
    assert storage_sync_execute(sync_id=sync.pk) == "failed"
    sync.refresh_from_db()
    assert sync.status == "failed" and "does not exist" in sync.error


# --- permissions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role, expected", [("reviewer", 403), ("annotator", 403), ("outsider", 404), (None, 401)])
def test_only_admins_manage_storages(team, bucket, client_for, role, expected):
    dataset, users = team
    storage = connect(dataset, users["admin"], bucket[0])
    client = client_for(users[role] if role else None)
    requests = [
        client.get(reverse("storage-list", args=[dataset.pk])),
        client.post(reverse("storage-list", args=[dataset.pk]), connect_body(bucket[0]), format="json"),
        client.get(reverse("storage-detail", args=[dataset.pk, storage.pk])),
        client.post(reverse("storage-sync", args=[dataset.pk, storage.pk])),
    ]
    assert [r.status_code for r in requests] == [expected] * 4
    assert Storage.objects.count() == 1 and not StorageSync.objects.exists()


def test_a_storage_of_another_dataset_is_not_found(team, bucket, client_for, make_dataset):
    dataset, users = team
    other = make_dataset("Elsewhere", admin=users["admin"])
    storage = connect(other, users["admin"], bucket[0])
    admin = client_for(users["admin"])
    assert admin.get(reverse("storage-detail", args=[dataset.pk, storage.pk])).status_code == 404
    assert admin.post(reverse("storage-sync", args=[dataset.pk, storage.pk])).status_code == 404


# --- training reads referenced originals -------------------------------------------------------------------------


def test_run_loading_reads_referenced_originals_like_stored_files(
    team, bucket, settings, add_image, make_dataset, sync_now
):
    from embeddings.services.pipeline import _dataset_images, load_run_images

    settings.SIMLABEL_STORAGE_FETCH_THREADS = 3
    dataset, users = team
    name, client = bucket
    datas = [put(client, name, f"cam/{i:03d}.png", png_bytes(size=(20, 20), seed=100 + i)) for i in range(70)]
    storage = connect(dataset, users["admin"], name)
    sync_now(storage, users["admin"])
    client.delete_object(Bucket=name, Key="cam/005.png")
    sync_now(storage, users["admin"])  # marks it missing: runs leave it out

    rows = _dataset_images(dataset.pk)
    assert len(rows) == 69 and all(r[1] == "" for r in rows)
    images, ids, unreadable = load_run_images(rows, 16, 1)
    assert unreadable == [] and len(ids) == 69 and images.shape == (69, 1, 16, 16)

    # The same bytes uploaded as files load to the same arrays.
    local = make_dataset("Local copy", admin=users["admin"])
    by_key = {i.pk: i.storage_key for i in Image.objects.filter(storage=storage)}
    stored = [add_image(local, data=datas[int(by_key[int(pk)][4:7])]) for pk in ids]
    expected, _, _ = load_run_images([(i.pk, i.file.name) for i in stored], 16, 1)
    assert np.array_equal(images, expected)

    # An object deleted behind the sync's back is one unreadable image, not a failed load.
    client.delete_object(Bucket=name, Key="cam/010.png")
    _, ids2, unreadable2 = load_run_images(rows, 16, 1)
    assert len(ids2) == 68 and len(unreadable2) == 1 and "NoSuchKey" in unreadable2[0]["error"]


# --- through the queue ---------------------------------------------------------------------------------------------


@pytest.mark.worker
def test_sync_runs_on_a_worker_and_the_row_reports_it(team, bucket, client_for, worker_factory):
    dataset, users = team
    name, client = bucket
    originals = fill_bucket(client, name)
    admin = client_for(users["admin"])
    created = admin.post(reverse("storage-list", args=[dataset.pk]), connect_body(name), format="json")
    assert created.status_code == 201
    storage_id = created.json()["id"]
    worker = worker_factory(queues="default").start()
    started = admin.post(reverse("storage-sync", args=[dataset.pk, storage_id]))
    assert started.status_code == 202
    deadline = time.monotonic() + 90
    while True:
        detail = admin.get(reverse("storage-detail", args=[dataset.pk, storage_id])).json()
        if detail["last_sync"]["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert detail["last_sync"]["status"] == "succeeded", (detail, worker.output()[-3000:])
    assert detail["last_sync"]["id"] == started.json()["id"]
    assert detail["last_sync"]["report"]["counts"]["added"] == 2 and detail["image_count"] == 2
    assert set(Image.objects.filter(dataset=dataset).values_list("storage_key", flat=True)) == set(originals)
    assert "labeling.tasks.sync_storage" in worker.output()


@pytest.mark.django_db(transaction=True)  # the run's heartbeat thread writes through its own connection
def test_a_run_trains_on_referenced_images(team, bucket, settings, sync_now):
    import sys
    from pathlib import Path

    from embeddings.models import ImageEmbedding, TrainingRun
    from embeddings.services import run_params_validate, training_run_execute

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "embeddings"))
    from pipeline_factories import FAST_PARAMS

    settings.SIMLABEL_MIN_RUN_IMAGES = 4
    dataset, users = team
    name, client = bucket
    for i in range(13):
        put(client, name, f"cam/{i:02d}.png", png_bytes(size=(24, 24), seed=500 + i))
    storage = connect(dataset, users["admin"], name)
    sync_now(storage, users["admin"])
    client.delete_object(Bucket=name, Key="cam/00.png")
    sync_now(storage, users["admin"])
    run = TrainingRun.objects.create(dataset=dataset, params=run_params_validate(FAST_PARAMS))
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded", TrainingRun.objects.get(
        pk=run.pk
    ).error
    missing = Image.objects.get(storage=storage, storage_key="cam/00.png")
    embedded = set(ImageEmbedding.objects.filter(run=run).values_list("image_id", flat=True))
    assert embedded == set(Image.objects.filter(dataset=dataset).exclude(pk=missing.pk).values_list("id", flat=True))


@pytest.mark.parametrize("format", ["imagefolder", "yolo", "hf"])
def test_exports_carry_the_originals_of_images_kept_in_the_bucket(team, bucket, client_for, sync_now, format):
    import io
    import zipfile

    import pyarrow.parquet as pq

    from labeling.models import Annotation, LabelClass

    dataset, users = team
    name, client = bucket
    a = put(client, name, "cam/a.png", png_bytes(size=(40, 30), seed=1))
    b = put(client, name, "cam/b.png", png_bytes(size=(20, 50), seed=2, mode="RGB"))
    sync_now(connect(dataset, users["admin"], name), users["admin"])
    cat = LabelClass.objects.create(dataset=dataset, name="cat")
    for image in Image.objects.filter(dataset=dataset):
        Annotation.objects.create(dataset=dataset, image=image, label_class=cat)

    response = client_for(users["annotator"]).get(f"/api/datasets/{dataset.pk}/export/?format={format}")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    if format == "hf":
        blobs = [row["bytes"] for row in pq.read_table(io.BytesIO(body)).column("image").to_pylist()]
    else:
        archive = zipfile.ZipFile(io.BytesIO(body))
        blobs = [archive.read(n) for n in archive.namelist() if not n.endswith("/")]
    assert sorted(blobs) == sorted([a, b])
