"""Webhooks: a dataset's events, signed and sent to URLs outside simlabel.

Events: `labels.changed` (a LabelAction changed labels), `run.succeeded` and
`run.failed` (embeddings.signals.run_finished), `export.ready` (an export was
served). After the write that caused it commits, each webhook of the dataset
subscribed to the event gets a WebhookDelivery row (attempt 1) and a
`labeling.tasks.deliver_webhook` task on the `default` queue. Each attempt is
a row of its own (status code, error, duration); a failed one (non-2xx,
timeout, connection error) queues the next after an exponential backoff, up
to SIMLABEL_WEBHOOK_MAX_ATTEMPTS. Retries of one event share its delivery id
and send the same bytes, so a receiver can drop duplicates.

A webhook must not become a way into the network simlabel runs in (SSRF):
the host is resolved and every address it resolves to must be public (not
loopback, private, link-local, multicast, reserved or unspecified, IPv4 or
IPv6; core.network) unless SIMLABEL_WEBHOOK_ALLOWED_NETWORKS lists it. That is checked
when the webhook is created (400) and again at every attempt, where the
connection goes to the very address that was checked (a DNS answer that
changes between check and connect cannot slip through). Redirects are never
followed, and only http and https URLs are accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from core import network
from core.errors import ValidationFailed
from core.network import TargetRefused
from labeling.models import AnnotationHistory, Dataset, LabelAction, Webhook, WebhookDelivery

logger = logging.getLogger(__name__)

EVENTS = ("labels.changed", "run.succeeded", "run.failed", "export.ready")
MAX_WEBHOOKS_PER_DATASET = 20
MAX_URL_LENGTH = 2000
SIGNATURE_HEADER = "X-Simlabel-Signature"
EVENT_HEADER = "X-Simlabel-Event"
DELIVERY_HEADER = "X-Simlabel-Delivery"
USER_AGENT = "simlabel-webhooks/1"
# Receivers answer with a status; their body is read only this far, then the connection is closed.
MAX_RESPONSE_READ = 64 * 1024
ERROR_MAX = 500
QUEUE_UNREACHABLE = "could not reach the task queue"


# --- where a webhook may point ------------------------------------------------------------------

_ALLOWED_SETTING = "SIMLABEL_WEBHOOK_ALLOWED_NETWORKS"
_RULE = "webhooks may only reach public addresses"


def address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why simlabel may not send to `ip` (a kind of address, e.g. "loopback"), or None when it may."""
    return network.address_refusal(ip, network.networks(settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS))


def _clean_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http(s) URL, or TargetRefused."""
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused("Give the URL to send events to.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"The URL may be at most {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise TargetRefused("The URL may not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("That is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("Only http:// and https:// URLs can receive webhooks.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("The URL may not carry a user name or password; receivers check the signature instead.")
    if port == 0:
        raise TargetRefused("The URL's port must be between 1 and 65535.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def resolve_allowed(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, all of them allowed; TargetRefused otherwise."""
    return network.resolve_allowed(
        host, port, allowed=settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS, rule=_RULE, setting=_ALLOWED_SETTING
    )


def check_target(url: str) -> None:
    """ValidationFailed (400) unless `url` is an http(s) URL whose host resolves only to allowed addresses."""
    try:
        _, host, port, _ = _clean_url(url)
        resolve_allowed(host, port)
    except TargetRefused as exc:
        raise ValidationFailed(str(exc), field="url") from None


# --- managing webhooks ------------------------------------------------------------------------------


def _clean_events(events) -> list[str]:
    if not isinstance(events, list | tuple) or not events:
        raise ValidationFailed(f"events must list one or more of: {', '.join(EVENTS)}.", field="events")
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise ValidationFailed(
            f"Unknown event(s): {', '.join(map(str, unknown))}. Known: {', '.join(EVENTS)}.", field="events"
        )
    return list(dict.fromkeys(events))


def webhook_create(*, dataset, user, url: str, events) -> tuple[Webhook, str]:
    """A new webhook of `dataset` and its secret (which is shown to the user only this once)."""
    events = _clean_events(events)
    check_target(url)  # resolves the host: before the transaction, which must not wait on DNS
    secret = secrets.token_hex(32)
    with transaction.atomic():
        # The lock makes two concurrent creations count each other.
        Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
        if Webhook.objects.filter(dataset=dataset).count() >= MAX_WEBHOOKS_PER_DATASET:
            raise ValidationFailed(f"A dataset can have at most {MAX_WEBHOOKS_PER_DATASET} webhooks.")
        webhook = Webhook.objects.create(
            dataset=dataset, url=url.strip(), events=events, secret=secret, created_by=user
        )
    return webhook, secret


def webhook_delete(*, webhook: Webhook) -> None:
    """Deletes the webhook and its delivery log; attempts already queued find no row and do nothing."""
    webhook.delete()


# --- events -----------------------------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """The X-Simlabel-Signature value of `body`: sha256=<hex HMAC-SHA256 keyed with the webhook's secret>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhooks_emit(*, dataset_id: int, event: str, data: dict) -> None:
    """Queues `event` for every webhook of the dataset subscribed to it, once the current transaction commits.

    Never raises into the caller: the write that caused the event has happened,
    and a webhook that cannot be queued is logged and recorded as failed.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    created = timezone.now()

    def enqueue():
        try:
            _enqueue(dataset_id=dataset_id, event=event, data=data, created=created)
        except Exception:
            logger.exception("could not queue webhook event %s of dataset %s", event, dataset_id)

    transaction.on_commit(enqueue)


def _subscribers(dataset_id: int, event: str) -> list[Webhook]:
    # Filtered here, not with a JSON `contains` lookup (SQLite has none): a dataset has a few webhooks at most.
    return [w for w in Webhook.objects.filter(dataset_id=dataset_id).only("id", "events") if event in w.events]


def _enqueue(*, dataset_id: int, event: str, data: dict, created) -> None:
    for webhook in _subscribers(dataset_id, event):
        delivery_id = uuid.uuid4()
        body = json.dumps(
            {
                "delivery_id": str(delivery_id),
                "event": event,
                "dataset_id": dataset_id,
                "created": created.isoformat(),
                "data": data,
            },
            separators=(",", ":"),
        )
        row = WebhookDelivery.objects.create(webhook=webhook, delivery_id=delivery_id, event=event, body=body)
        _publish(row.pk)


def _publish(delivery_pk: int) -> None:
    # Imported here: labeling.tasks imports services that import this module (label writes notify webhooks).
    from labeling import tasks

    try:
        tasks.deliver_webhook.apply_async(args=[delivery_pk])
    except Exception as exc:  # kombu's errors all mean "not queued"
        WebhookDelivery.objects.filter(pk=delivery_pk, status=WebhookDelivery.Status.PENDING).update(
            status=WebhookDelivery.Status.FAILED, error=f"{QUEUE_UNREACHABLE}: {exc}"[:ERROR_MAX]
        )
        logger.warning("webhook delivery %s not queued: %s", delivery_pk, exc)


def labels_changed_notify(*, action: LabelAction) -> None:
    """`labels.changed` for a LabelAction that changed labels, with how many images went to each class.

    The counts are read after commit from the action's history, so an import,
    which adds to one action per class batch by batch, reports its running total.
    """
    dataset_id, action_id = action.dataset_id, action.pk

    def send():
        try:
            # Most datasets have no webhook: then a label write costs one small query, not a count of its history.
            if not _subscribers(dataset_id, "labels.changed"):
                return
            data = _label_action_data(action_id)
        except Exception:
            logger.exception("could not describe label action %s for webhooks", action_id)
            return
        if data is not None:
            webhooks_emit(dataset_id=dataset_id, event="labels.changed", data=data)

    transaction.on_commit(send)


def _label_action_data(action_id: int) -> dict | None:
    action = LabelAction.objects.filter(pk=action_id).select_related("user").first()
    if action is None:
        return None
    counts = (
        AnnotationHistory.objects.filter(action_id=action_id)
        .values("new_class_id")
        .annotate(images=Count("id"))
        .order_by("new_class_id")
    )
    classes = [{"class_id": row["new_class_id"], "images": row["images"]} for row in counts]
    return {
        "action_id": action.pk,
        "kind": action.kind,
        "source": action.source,
        "user": action.user.username if action.user else None,
        "class_id": action.label_class_id,
        "undo_of": action.undo_of_id,
        "image_count": sum(c["images"] for c in classes),
        "classes": classes,
    }


def run_finished_notify(*, run) -> None:
    """`run.succeeded` or `run.failed` for a run that has just ended so (embeddings.signals.run_finished)."""
    data = {
        "run_id": run.pk,
        "status": run.status,
        "image_count": run.image_count,
        "cluster_count": run.cluster_count,
        "error": run.error_reason if run.status == "failed" else "",
        "finished": run.finished_at.isoformat() if run.finished_at else None,
    }
    webhooks_emit(dataset_id=run.dataset_id, event=f"run.{run.status}", data=data)


def export_ready_notify(*, dataset, user, query: dict, filename: str) -> None:
    """`export.ready` when an export of the dataset's labels is served; `query`: the export's parameters."""
    data = {"filename": filename, "user": getattr(user, "username", None)}
    data.update((name, value) for name, value in query.items() if isinstance(value, str | int | float | bool))
    webhooks_emit(dataset_id=dataset.pk, event="export.ready", data=data)


# --- delivering -------------------------------------------------------------------------------------


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address checked beforehand, whatever the host name resolves to now."""

    def __init__(self, host, port, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, over TLS: the certificate is still checked against the host name (SNI too)."""

    def __init__(self, host, port, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _post(url: str, *, body: bytes, headers: dict, timeout: float) -> int:
    """POSTs `body` to `url` at an allowed address and returns the status; redirects are not followed."""
    scheme, host, port, path = _clean_url(url)
    address = resolve_allowed(host, port)[0]
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    conn = connection_class(host, port, address=address, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(MAX_RESPONSE_READ)
        return response.status
    finally:
        conn.close()


@dataclass(frozen=True)
class AttemptOutcome:
    status: str  # "succeeded", "failed", "retry" or "skipped"
    next_delivery_pk: int | None = None
    countdown: float = 0.0


def backoff_seconds(attempt: int) -> float:
    """How long after failed attempt number `attempt` the next one starts."""
    base = float(settings.SIMLABEL_WEBHOOK_BACKOFF)
    return min(base * 2 ** (attempt - 1), float(settings.SIMLABEL_WEBHOOK_BACKOFF_MAX))


def webhook_delivery_attempt(*, delivery_pk: int) -> AttemptOutcome:
    """Makes the attempt the pending row `delivery_pk` stands for and records its result on the row.

    The row is claimed with a conditional update, so a message delivered twice
    sends once. A failed attempt that may be retried creates the next attempt's
    row and says when to start it (outcome "retry"); the caller queues it.
    """
    Status = WebhookDelivery.Status
    claimed = WebhookDelivery.objects.filter(pk=delivery_pk, status=Status.PENDING).update(
        status=Status.SENDING, sent_at=timezone.now()
    )
    if not claimed:
        return AttemptOutcome("skipped")
    row = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_pk).first()
    if row is None:  # the webhook was deleted meanwhile
        return AttemptOutcome("skipped")
    body = row.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: row.event,
        DELIVERY_HEADER: str(row.delivery_id),
        SIGNATURE_HEADER: signature(row.webhook.secret, body),
    }
    status_code, error, retryable = None, "", True
    started = time.perf_counter()
    try:
        status_code = _post(row.webhook.url, body=body, headers=headers, timeout=settings.SIMLABEL_WEBHOOK_TIMEOUT)
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}" + (" (redirects are not followed)" if 300 <= status_code < 400 else "")
    except TargetRefused as exc:
        # A policy refusal, not a passing failure: trying again would only knock on the same door.
        error, retryable = str(exc), False
    except TimeoutError:
        error = f"timed out after {settings.SIMLABEL_WEBHOOK_TIMEOUT:g} s"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    duration_ms = round((time.perf_counter() - started) * 1000)
    succeeded = not error
    WebhookDelivery.objects.filter(pk=row.pk).update(
        status=Status.SUCCEEDED if succeeded else Status.FAILED,
        status_code=status_code,
        error=error[:ERROR_MAX],
        duration_ms=duration_ms,
    )
    if succeeded:
        return AttemptOutcome("succeeded")
    logger.info("webhook %s delivery %s attempt %s failed: %s", row.webhook_id, row.delivery_id, row.attempt, error)
    if not retryable or row.attempt >= settings.SIMLABEL_WEBHOOK_MAX_ATTEMPTS:
        return AttemptOutcome("failed")
    try:
        with transaction.atomic():
            next_row = WebhookDelivery.objects.create(
                webhook_id=row.webhook_id,
                delivery_id=row.delivery_id,
                event=row.event,
                body=row.body,
                attempt=row.attempt + 1,
            )
    except IntegrityError:  # made already by an earlier run of this same attempt
        return AttemptOutcome("failed")
    return AttemptOutcome("retry", next_row.pk, backoff_seconds(row.attempt))


def webhook_delivery_not_queued(*, delivery_pk: int, error: BaseException) -> None:
    """The next attempt could not be queued (the broker is down): its row says so instead of waiting forever."""
    WebhookDelivery.objects.filter(pk=delivery_pk, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, error=f"{QUEUE_UNREACHABLE}: {error}"[:ERROR_MAX]
    )
