"""Celery tasks of the labeling app: thin wrappers that take ids and call a service.

deliver_webhook runs on the `default` queue. Each attempt is a WebhookDelivery
row that the service claims with a conditional update, so a message delivered
twice sends once; a failed attempt that may be retried comes back through
Celery's retry, with the next attempt's row id and an exponential countdown.
Results are ignored: the delivery log lives on the rows.
"""

from celery import shared_task
from celery.exceptions import Retry

# The module, not its names: the service queues this task (`from labeling import tasks`), so each
# side of that cycle needs only the other's module object at import time.
from labeling.services import storages, webhooks


@shared_task(bind=True, name="labeling.tasks.deliver_webhook", ignore_result=True)
def deliver_webhook(self, delivery_pk: int) -> str:
    outcome = webhooks.webhook_delivery_attempt(delivery_pk=delivery_pk)
    if outcome.status != "retry":
        return outcome.status
    try:
        # Attempts are counted on the rows (SIMLABEL_WEBHOOK_MAX_ATTEMPTS), hence no Celery limit.
        raise self.retry(args=[outcome.next_delivery_pk], countdown=outcome.countdown, max_retries=None)
    except Retry:
        raise
    except Exception as exc:  # the broker is unreachable: the next attempt cannot be queued
        webhooks.webhook_delivery_not_queued(delivery_pk=outcome.next_delivery_pk, error=exc)
        return "failed"


@shared_task(name="labeling.tasks.sync_storage", acks_late=True, reject_on_worker_lost=False, ignore_result=True)
def sync_storage(sync_id: int) -> str:
    """A bucket's sync (queue `default`); the StorageSync row is claimed with a conditional update, so a
    redelivered message does nothing, and a worker lost mid-sync leaves a row that a new sync replaces."""
    return storages.storage_sync_execute(sync_id=sync_id)
