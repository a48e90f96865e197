"""Reads of a dataset's webhooks and their delivery log."""

from django.http import Http404

from core.permissions import as_id
from labeling.models import Webhook, WebhookDelivery

RECENT_DELIVERIES = 20


def dataset_webhooks(dataset):
    return Webhook.objects.filter(dataset=dataset).select_related("created_by").order_by("id")


def webhook_in_dataset(dataset, webhook_id) -> Webhook:
    """The dataset's webhook of that id, else a 404 (a webhook of another dataset is not found either)."""
    webhook_id = as_id(webhook_id)
    webhook = None if webhook_id is None else Webhook.objects.filter(dataset=dataset, pk=webhook_id).first()
    if webhook is None:
        raise Http404("No such webhook in this dataset.")
    return webhook


def webhook_deliveries(dataset, limit: int = RECENT_DELIVERIES):
    """The dataset's newest delivery attempts, newest first (the delivery log on the dataset page)."""
    return list(
        WebhookDelivery.objects.filter(webhook__dataset=dataset)
        .select_related("webhook")
        .defer("body", "webhook__secret")
        .order_by("-id")[:limit]
    )


def webhooks_overview(dataset) -> dict:
    """What the dataset page shows its admins: the webhooks and the newest delivery attempts."""
    return {"webhooks": list(dataset_webhooks(dataset)), "deliveries": webhook_deliveries(dataset)}
