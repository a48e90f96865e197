"""Webhooks: managing them, what is sent and how it is signed, retries, and the addresses never reached.

Deliveries go to a real HTTP receiver (http.server in a thread on 127.0.0.1);
the end-to-end tests send through a real Celery worker, which reads its own
settings from the environment (allowed networks, backoff).
"""

import hashlib
import hmac
import ipaddress
import json
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse
from django.utils import timezone

from embeddings.models import RunStatus, TrainingRun
from embeddings.services.runs import run_mark_finished, runs_fail_stale
from embeddings.signals import run_finished_send
from labeling.models import LabelAction, Webhook, WebhookDelivery
from labeling.services import webhooks as webhook_services
from labeling.services.annotations import annotations_apply_bulk
from tests.factories import LabelClassFactory

LOCAL = ["127.0.0.1/32"]


# --- a receiver -------------------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records each request and answers with the next scripted status."""

    def __init__(self, statuses=(), delay=0.0, redirect_to=None):
        self.requests = []
        self.statuses = list(statuses)
        self.delay = delay
        self.redirect_to = redirect_to
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.arrived.notify_all()
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    if receiver.redirect_to:
                        self.send_header("Location", receiver.redirect_to)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (the timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?source=simlabel"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 60) -> list[dict]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            assert len(self.requests) >= count, f"{len(self.requests)} of {count} requests arrived"
            return list(self.requests)


def _free_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/hook"


def _verify(secret: str, request: dict) -> bool:
    """What a receiver does (the README's example)."""
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"]["X-Simlabel-Signature"])


def _wait_rows(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(WebhookDelivery.objects.order_by("id"))
        if predicate(rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"delivery rows never matched: {[(r.event, r.attempt, r.status, r.error) for r in rows]}")


@pytest.fixture
def shop(make_user, make_dataset, add_image):
    admin = make_user("alice")
    annotator = make_user("anna")
    reviewer = make_user("rita")
    outsider = make_user("oscar")
    dataset = make_dataset("Shop", admin=admin, members={annotator: "annotator", reviewer: "reviewer"})
    make_dataset("Elsewhere", admin=outsider)
    cat = LabelClassFactory(dataset=dataset, name="cat")
    dog = LabelClassFactory(dataset=dataset, name="dog")
    images = [add_image(dataset, user=admin) for _ in range(3)]
    return dataset, admin, annotator, reviewer, outsider, (cat, dog), images


def _list_url(dataset):
    return reverse("webhook-list", kwargs={"dataset_id": dataset.pk})


def _detail_url(dataset, webhook_id):
    return reverse("webhook-detail", kwargs={"dataset_id": dataset.pk, "webhook_id": webhook_id})


# --- where a webhook may point ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("8.8.8.8", None),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_which_addresses_are_refused(address, kind, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = []
    assert webhook_services.address_refusal(ipaddress.ip_address(address)) == kind


def test_allowed_networks_let_listed_addresses_through(settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32", "10.20.0.0/16", "fd00::/8"]
    refusal = webhook_services.address_refusal
    assert refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert refusal(ipaddress.ip_address("10.20.5.5")) is None
    assert refusal(ipaddress.ip_address("fd12::1")) is None
    assert refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert refusal(ipaddress.ip_address("10.21.0.1")) == "private"


# --- managing webhooks --------------------------------------------------------------------------------


def test_admin_creates_lists_and_deletes_a_webhook(shop, client_for, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, admin, *_ = shop
    client = client_for(admin)
    response = client.post(
        _list_url(dataset),
        {"url": "http://127.0.0.1:9/hook", "events": ["labels.changed", "run.failed", "labels.changed"]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    created = response.json()
    webhook = Webhook.objects.get()
    assert created["secret"] == webhook.secret and len(created["secret"]) == 64
    assert created["events"] == ["labels.changed", "run.failed"]
    assert created["created_by"] == "alice"

    listed = client.get(_list_url(dataset)).json()
    assert listed["count"] == 1
    assert listed["results"][0]["id"] == webhook.pk
    assert "secret" not in listed["results"][0], "the secret is shown only when the webhook is created"
    assert webhook.secret not in json.dumps(listed)

    assert client.delete(_detail_url(dataset, webhook.pk)).status_code == 204
    assert not Webhook.objects.exists()
    assert client.delete(_detail_url(dataset, webhook.pk)).status_code == 404


def test_secrets_differ_per_webhook(shop, client_for, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, admin, *_ = shop
    client = client_for(admin)
    secrets = {
        client.post(
            _list_url(dataset), {"url": "http://127.0.0.1:9/", "events": ["export.ready"]}, format="json"
        ).json()["secret"]
        for _ in range(3)
    }
    assert len(secrets) == 3


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://localhost:9/hook", "loopback"),
        ("http://10.0.0.7/hook", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:9/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.251/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 written as one number
        ("ftp://93.184.215.14/hook", "Only http"),
        ("file:///etc/passwd", "Only http"),
        ("gopher://93.184.215.14/", "Only http"),
        ("https://user:pw@93.184.215.14/", "user name or password"),
        ("http:///nohost", "no host"),
        ("http://93.184.215.14:99999/", "valid URL"),
        ("http://no-such-host.invalid/", "could not be resolved"),
    ],
)
def test_refused_urls_are_a_400_and_store_nothing(shop, client_for, url, message, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = []
    dataset, admin, *_ = shop
    response = client_for(admin).post(_list_url(dataset), {"url": url, "events": ["labels.changed"]}, format="json")
    assert response.status_code == 400, response.json()
    assert message in response.json()["detail"]
    assert not Webhook.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://93.184.215.14/", "events": []},
        {"url": "https://93.184.215.14/", "events": ["labels.deleted"]},
        {"url": "https://93.184.215.14/", "events": "labels.changed"},
        {"url": "https://93.184.215.14/"},
        {"events": ["labels.changed"]},
        {"url": "https://93.184.215.14/" + "a" * 2000, "events": ["labels.changed"]},
    ],
)
def test_malformed_bodies_are_a_400(shop, client_for, body):
    dataset, admin, *_ = shop
    response = client_for(admin).post(_list_url(dataset), body, format="json")
    assert response.status_code == 400
    assert not Webhook.objects.exists()


def test_a_public_address_is_accepted_without_any_allowance(shop, client_for, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = []
    dataset, admin, *_ = shop
    body = {"url": "https://93.184.215.14/hook", "events": ["run.succeeded"]}
    assert client_for(admin).post(_list_url(dataset), body, format="json").status_code == 201


def test_a_dataset_has_at_most_so_many_webhooks(shop, client_for):
    dataset, admin, *_ = shop
    body = {"url": "https://93.184.215.14/hook", "events": ["labels.changed"]}
    for _ in range(webhook_services.MAX_WEBHOOKS_PER_DATASET):
        assert client_for(admin).post(_list_url(dataset), body, format="json").status_code == 201
    response = client_for(admin).post(_list_url(dataset), body, format="json")
    assert response.status_code == 400 and "at most" in response.json()["detail"]
    assert Webhook.objects.count() == webhook_services.MAX_WEBHOOKS_PER_DATASET


def test_only_dataset_admins_manage_webhooks(shop, client_for, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, admin, annotator, reviewer, outsider, *_ = shop
    webhook = Webhook.objects.create(dataset=dataset, url="http://127.0.0.1:9/", events=["labels.changed"], secret="s")
    body = {"url": "http://127.0.0.1:9/other", "events": ["labels.changed"]}
    for user, status in ((annotator, 403), (reviewer, 403), (outsider, 404), (None, 401)):
        client = client_for(user)
        assert client.get(_list_url(dataset)).status_code == status
        assert client.post(_list_url(dataset), body, format="json").status_code == status
        assert client.delete(_detail_url(dataset, webhook.pk)).status_code == status
    assert list(Webhook.objects.values_list("url", flat=True)) == ["http://127.0.0.1:9/"]


def test_a_webhook_of_another_dataset_is_not_found(shop, client_for, make_dataset):
    dataset, admin, *_ = shop
    mine_too = make_dataset("Second", admin=admin)
    other = Webhook.objects.create(dataset=mine_too, url="http://127.0.0.1:9/", events=["labels.changed"], secret="s")
    assert client_for(admin).delete(_detail_url(dataset, other.pk)).status_code == 404
    assert Webhook.objects.filter(pk=other.pk).exists()


# --- what is queued ----------------------------------------------------------------------------------


def test_events_are_queued_after_commit_for_subscribed_webhooks_only(shop, django_capture_on_commit_callbacks):
    dataset, admin, _, _, _, (cat, dog), images = shop
    labels = Webhook.objects.create(dataset=dataset, url="http://127.0.0.1:9/", events=["labels.changed"], secret="a")
    Webhook.objects.create(dataset=dataset, url="http://127.0.0.1:9/", events=["run.failed"], secret="b")
    with django_capture_on_commit_callbacks(execute=True):
        action = annotations_apply_bulk(
            dataset=dataset, user=admin, label_class=cat, image_ids=[i.pk for i in images[:2]]
        )
        assert not WebhookDelivery.objects.exists(), "nothing is queued before the write commits"
    rows = list(WebhookDelivery.objects.all())
    assert [(r.webhook_id, r.event, r.attempt, r.status) for r in rows] == [(labels.pk, "labels.changed", 1, "pending")]
    body = json.loads(rows[0].body)
    assert body["event"] == "labels.changed" and body["dataset_id"] == dataset.pk
    assert body["delivery_id"] == str(rows[0].delivery_id)
    assert body["data"]["action_id"] == action.pk
    assert body["data"]["image_count"] == 2
    assert body["data"]["classes"] == [{"class_id": cat.pk, "images": 2}]
    assert body["data"]["user"] == "alice"


def test_a_write_that_changes_nothing_sends_nothing(shop, django_capture_on_commit_callbacks):
    dataset, admin, _, _, _, (cat, dog), images = shop
    Webhook.objects.create(dataset=dataset, url="http://127.0.0.1:9/", events=["labels.changed"], secret="a")
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=[images[0].pk])
    with django_capture_on_commit_callbacks(execute=True):
        annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=[images[0].pk])
    assert not WebhookDelivery.objects.exists()


# --- one attempt, in this process --------------------------------------------------------------------


def _pending(dataset, url, secret="s3cret", event="labels.changed"):
    webhook = Webhook.objects.create(dataset=dataset, url=url, events=[event], secret=secret)
    delivery_id = uuid.uuid4()
    body = json.dumps({"delivery_id": str(delivery_id), "event": event, "dataset_id": dataset.pk, "data": {}})
    return WebhookDelivery.objects.create(webhook=webhook, delivery_id=delivery_id, event=event, body=body)


def test_an_attempt_signs_the_body_and_records_the_answer(shop, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, *_ = shop
    with Receiver() as receiver:
        row = _pending(dataset, receiver.url)
        outcome = webhook_services.webhook_delivery_attempt(delivery_pk=row.pk)
        (request,) = receiver.wait_for(1)
    assert outcome.status == "succeeded"
    assert request["path"] == "/hook?source=simlabel"
    assert request["body"] == row.body.encode()
    assert _verify("s3cret", request)
    assert not _verify("wrong", request)
    assert request["headers"]["X-Simlabel-Event"] == "labels.changed"
    assert request["headers"]["X-Simlabel-Delivery"] == str(row.delivery_id)
    assert request["headers"]["Content-Type"] == "application/json"
    row.refresh_from_db()
    assert (row.status, row.status_code, row.error) == ("succeeded", 200, "")
    assert row.duration_ms is not None and row.sent_at is not None
    # A second run of the same message finds the row taken and sends nothing.
    assert webhook_services.webhook_delivery_attempt(delivery_pk=row.pk).status == "skipped"
    assert len(receiver.requests) == 1


def test_a_redirect_is_not_followed(shop, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, *_ = shop
    with Receiver() as target, Receiver(statuses=[302], redirect_to="PLACEHOLDER") as receiver:
        receiver.redirect_to = target.url
        row = _pending(dataset, receiver.url)
        outcome = webhook_services.webhook_delivery_attempt(delivery_pk=row.pk)
        time.sleep(0.3)
        assert target.requests == []
    assert len(receiver.requests) == 1
    row.refresh_from_db()
    assert (row.status, row.status_code) == ("failed", 302)
    assert "redirects are not followed" in row.error
    assert outcome.status == "retry"


def test_failures_schedule_the_next_attempt_with_a_growing_backoff(shop, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    settings.SIMLABEL_WEBHOOK_MAX_ATTEMPTS = 3
    settings.SIMLABEL_WEBHOOK_BACKOFF = 2
    settings.SIMLABEL_WEBHOOK_BACKOFF_MAX = 3
    dataset, *_ = shop
    row = _pending(dataset, _free_port_url())
    first = webhook_services.webhook_delivery_attempt(delivery_pk=row.pk)
    assert (first.status, first.countdown) == ("retry", 2)
    second = webhook_services.webhook_delivery_attempt(delivery_pk=first.next_delivery_pk)
    assert (second.status, second.countdown) == ("retry", 3)  # 4, capped
    third = webhook_services.webhook_delivery_attempt(delivery_pk=second.next_delivery_pk)
    assert third.status == "failed", "the last attempt queues no other"
    rows = list(WebhookDelivery.objects.order_by("attempt"))
    assert [(r.attempt, r.status, r.status_code) for r in rows] == [
        (1, "failed", None),
        (2, "failed", None),
        (3, "failed", None),
    ]
    assert {r.delivery_id for r in rows} == {row.delivery_id}
    assert {r.body for r in rows} == {row.body}
    assert all("ConnectionRefused" in r.error for r in rows)


def test_a_slow_receiver_times_out(shop, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    settings.SIMLABEL_WEBHOOK_TIMEOUT = 0.3
    dataset, *_ = shop
    with Receiver(delay=2) as receiver:
        row = _pending(dataset, receiver.url)
        started = time.monotonic()
        outcome = webhook_services.webhook_delivery_attempt(delivery_pk=row.pk)
        assert time.monotonic() - started < 1.5
    row.refresh_from_db()
    assert outcome.status == "retry"
    assert row.status == "failed" and "timed out" in row.error


def test_an_address_allowed_at_creation_but_not_at_delivery_is_not_contacted(shop, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, *_ = shop
    with Receiver() as receiver:
        row = _pending(dataset, receiver.url)
        settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = []
        outcome = webhook_services.webhook_delivery_attempt(delivery_pk=row.pk)
        time.sleep(0.2)
        assert receiver.requests == []
    row.refresh_from_db()
    assert outcome.status == "failed", "a refused address is not retried"
    assert row.status == "failed" and "loopback" in row.error
    assert WebhookDelivery.objects.count() == 1


def test_a_deleted_webhook_sends_nothing(shop, settings):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, *_ = shop
    with Receiver() as receiver:
        row = _pending(dataset, receiver.url)
        row.webhook.delete()
        assert webhook_services.webhook_delivery_attempt(delivery_pk=row.pk).status == "skipped"
        assert receiver.requests == []


# --- through a real worker --------------------------------------------------------------------------


def _worker(worker_factory, subprocess_env, allowed="127.0.0.1/32"):
    env = {
        **subprocess_env,
        "SIMLABEL_WEBHOOK_ALLOWED_NETWORKS": allowed,
        "SIMLABEL_WEBHOOK_BACKOFF": "0.5",
        "SIMLABEL_WEBHOOK_MAX_ATTEMPTS": "4",
    }
    return worker_factory(queues="default", env=env).start()


@pytest.mark.worker
def test_events_reach_the_receiver_signed(shop, client_for, settings, worker_factory, subprocess_env):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, admin, annotator, _, _, (cat, dog), images = shop
    worker = _worker(worker_factory, subprocess_env)
    with Receiver() as receiver:
        created = client_for(admin).post(
            _list_url(dataset),
            {"url": receiver.url, "events": ["labels.changed", "run.succeeded", "run.failed", "export.ready"]},
            format="json",
        )
        assert created.status_code == 201
        secret = created.json()["secret"]

        # A single label by an annotator, through the API.
        put = client_for(annotator).put(
            reverse("image-annotation", kwargs={"image_id": images[0].pk}), {"class": cat.pk}, format="json"
        )
        assert put.status_code == 200
        (labeled,) = receiver.wait_for(1)
        # An export served.
        assert (
            client_for(annotator).get(reverse("export", kwargs={"dataset_id": dataset.pk}) + "?format=csv").status_code
            == 200
        )
        exported = receiver.wait_for(2)[1]
        # A run whose worker went quiet, and one that succeeded.
        stale = TrainingRun.objects.create(
            dataset=dataset, status=RunStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1)
        )
        assert runs_fail_stale(dataset_id=dataset.pk) == 1
        failed = receiver.wait_for(3)[2]
        done = TrainingRun.objects.create(
            dataset=dataset, status=RunStatus.SUCCEEDED, image_count=3, cluster_count=2, finished_at=timezone.now()
        )
        run_finished_send(run_ids=[done.pk])
        succeeded = receiver.wait_for(4)[3]

    for request in (labeled, exported, failed, succeeded):
        assert _verify(secret, request), request["headers"]
        body = json.loads(request["body"])
        assert request["headers"]["X-Simlabel-Event"] == body["event"]
        assert request["headers"]["X-Simlabel-Delivery"] == body["delivery_id"]
        assert body["dataset_id"] == dataset.pk and body["created"]
    action = LabelAction.objects.get()
    labeled_body = json.loads(labeled["body"])
    assert labeled_body["event"] == "labels.changed"
    assert labeled_body["data"]["action_id"] == action.pk
    assert labeled_body["data"]["image_count"] == 1
    assert labeled_body["data"]["classes"] == [{"class_id": cat.pk, "images": 1}]
    assert labeled_body["data"]["user"] == "anna"
    exported_body = json.loads(exported["body"])
    assert exported_body["event"] == "export.ready"
    assert exported_body["data"]["format"] == "csv" and exported_body["data"]["user"] == "anna"
    failed_body = json.loads(failed["body"])
    assert failed_body["event"] == "run.failed"
    assert failed_body["data"]["run_id"] == stale.pk and "stopped responding" in failed_body["data"]["error"]
    succeeded_body = json.loads(succeeded["body"])
    assert succeeded_body["event"] == "run.succeeded"
    assert succeeded_body["data"]["run_id"] == done.pk and succeeded_body["data"]["cluster_count"] == 2
    assert len({json.loads(r["body"])["delivery_id"] for r in (labeled, exported, failed, succeeded)}) == 4

    rows = _wait_rows(lambda rows: len(rows) == 4 and all(r.status == "succeeded" for r in rows))
    assert [r.event for r in rows] == ["labels.changed", "export.ready", "run.failed", "run.succeeded"]
    assert all(r.status_code == 200 and r.attempt == 1 for r in rows)
    assert "labeling.tasks.deliver_webhook" in worker.output()


@pytest.mark.worker
def test_a_failing_receiver_is_retried_until_it_answers(shop, settings, worker_factory, subprocess_env):
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, admin, _, _, _, (cat, dog), images = shop
    worker = _worker(worker_factory, subprocess_env)
    with Receiver(statuses=[500, 503]) as receiver:
        webhook, secret = webhook_services.webhook_create(
            dataset=dataset, user=admin, url=receiver.url, events=["labels.changed"]
        )
        action = annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=[i.pk for i in images])
        requests = receiver.wait_for(3)
        rows = _wait_rows(lambda rows: len(rows) == 3 and rows[-1].status == "succeeded")
        time.sleep(1.5)  # nothing more comes after the success
        assert len(receiver.requests) == 3
    assert [(r.attempt, r.status, r.status_code) for r in rows] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "succeeded", 200),
    ]
    assert rows[0].error == "HTTP 500"
    assert len({r.delivery_id for r in rows}) == 1
    assert len({r["headers"]["X-Simlabel-Delivery"] for r in requests}) == 1
    assert len({r["body"] for r in requests}) == 1, "every retry sends the same bytes"
    assert all(_verify(secret, r) for r in requests)
    assert json.loads(requests[0]["body"])["data"]["action_id"] == action.pk
    # Backoff 0.5 s then 1 s: each retry started at least that long after the failure before it.
    assert (rows[1].sent_at - rows[0].sent_at).total_seconds() >= 0.45
    assert (rows[2].sent_at - rows[1].sent_at).total_seconds() >= 0.95
    assert "Retry in" in worker.output()


@pytest.mark.worker
def test_the_worker_refuses_an_address_its_settings_do_not_allow(shop, settings, worker_factory, subprocess_env):
    """Allowed when created (this process), refused at delivery (the worker allows nothing): never contacted."""
    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = LOCAL
    dataset, admin, _, _, _, (cat, dog), images = shop
    _worker(worker_factory, subprocess_env, allowed="")
    with Receiver() as receiver:
        webhook_services.webhook_create(dataset=dataset, user=admin, url=receiver.url, events=["labels.changed"])
        annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=[images[0].pk])
        rows = _wait_rows(lambda rows: len(rows) == 1 and rows[0].status == "failed")
        time.sleep(1.5)  # no retry comes either
        assert receiver.requests == []
    assert WebhookDelivery.objects.count() == 1
    assert "127.0.0.1, a loopback address" in rows[0].error
    assert rows[0].status_code is None


def test_cancelled_runs_send_nothing(shop, django_capture_on_commit_callbacks):
    dataset, *_ = shop
    Webhook.objects.create(
        dataset=dataset, url="http://127.0.0.1:9/", events=["run.failed", "run.succeeded"], secret="s"
    )
    run = TrainingRun.objects.create(dataset=dataset, status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert run_mark_finished(run_id=run.pk, status=RunStatus.CANCELLED, error="cancelled by a user")
    assert not WebhookDelivery.objects.exists()
    other = TrainingRun.objects.create(dataset=dataset, status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert run_mark_finished(run_id=other.pk, status=RunStatus.FAILED, error="ValueError: boom")
    (row,) = WebhookDelivery.objects.all()
    assert row.event == "run.failed"
    assert json.loads(row.body)["data"]["error"] == "ValueError: boom"


@pytest.mark.django_db(transaction=True)
def test_a_real_run_sends_run_succeeded_and_a_broken_one_run_failed(make_user, make_dataset):
    """The pipeline's own end states (executed in this process) queue the events: no worker needed to see the rows."""
    import sys
    from pathlib import Path

    from embeddings.services import run_params_validate, training_run_execute

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "embeddings"))
    from pipeline_factories import FAST_PARAMS, add_kind_images

    admin = make_user("alice")
    good = make_dataset("Good", admin=admin)
    bad = make_dataset("Bad", admin=admin)
    add_kind_images(good, per_kind=4)
    add_kind_images(bad, per_kind=2, start_seed=500)  # too few images: the run fails in its first stage
    events = ["run.succeeded", "run.failed"]
    good_hook = Webhook.objects.create(dataset=good, url="https://93.184.215.14/", events=events, secret="g")
    bad_hook = Webhook.objects.create(dataset=bad, url="https://93.184.215.14/", events=events, secret="b")
    params = run_params_validate({**FAST_PARAMS, "tsne_iterations": 60})
    good_run = TrainingRun.objects.create(dataset=good, params=params)
    bad_run = TrainingRun.objects.create(dataset=bad, params=params)

    assert training_run_execute(run_id=good_run.pk, worker_name="test") == "succeeded"
    assert training_run_execute(run_id=bad_run.pk, worker_name="test") == "failed"

    sent = {row.webhook_id: json.loads(row.body) for row in WebhookDelivery.objects.all()}
    assert set(sent) == {good_hook.pk, bad_hook.pk}, "one event per run, to its own dataset's webhook"
    assert sent[good_hook.pk]["event"] == "run.succeeded"
    assert sent[good_hook.pk]["data"]["run_id"] == good_run.pk
    assert sent[good_hook.pk]["data"]["image_count"] == 12
    assert sent[bad_hook.pk]["event"] == "run.failed"
    assert sent[bad_hook.pk]["data"]["run_id"] == bad_run.pk
    assert "a run needs at least" in sent[bad_hook.pk]["data"]["error"]
