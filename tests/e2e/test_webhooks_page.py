"""The dataset page shows its admins the webhooks and every delivery attempt; other members see neither."""

import os

import pytest
from playwright.sync_api import expect

from labeling.models import WebhookDelivery
from labeling.services import webhooks as webhook_services
from labeling.services.annotations import annotations_apply_bulk
from tests.e2e.test_labeling_flow import login
from tests.labeling.test_webhooks import Receiver

pytestmark = [pytest.mark.browser]

PASSWORD = "pw-Secret-123"


@pytest.fixture
def hooked(make_user, make_dataset, add_image, settings):
    """A dataset whose webhook's receiver failed once (HTTP 500), then took the labels.changed event."""
    from tests.factories import LabelClassFactory

    settings.SIMLABEL_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = make_user("alice", password=PASSWORD)
    annotator = make_user("anna", password=PASSWORD)
    dataset = make_dataset("Hooked", admin=admin, members={annotator: "annotator"})
    cat = LabelClassFactory(dataset=dataset, name="cat")
    images = [add_image(dataset) for _ in range(2)]
    with Receiver(statuses=[500]) as receiver:
        # Markup in the URL must come out as text on the page.
        url = receiver.url + "&tag=<b>bold</b>"
        webhook, _ = webhook_services.webhook_create(dataset=dataset, user=admin, url=url, events=["labels.changed"])
        # Committed at once (live_server's tests do not wrap in a transaction): the first attempt's row exists.
        annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=[i.pk for i in images])
        first = WebhookDelivery.objects.get()
        retry = webhook_services.webhook_delivery_attempt(delivery_pk=first.pk)
        assert retry.status == "retry"
        assert webhook_services.webhook_delivery_attempt(delivery_pk=retry.next_delivery_pk).status == "succeeded"
        assert len(receiver.requests) == 2
    return dataset, webhook, first


def test_admins_see_webhooks_and_their_delivery_log(browser_page, hooked):
    dataset, webhook, first = hooked
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/")
    section = page.locator("#webhooks")
    expect(section).to_be_visible()
    row = section.locator(f"#webhook-list tr[data-webhook-id='{webhook.pk}']")
    expect(row).to_contain_text("labels.changed")
    expect(row.locator("code")).to_have_text(webhook.url)
    assert section.locator("b").count() == 0, "markup in a URL is shown as text"

    attempts = section.locator(f"#webhook-deliveries tr[data-delivery-id='{first.delivery_id}']")
    expect(attempts).to_have_count(2)
    newest, oldest = attempts.nth(0), attempts.nth(1)
    assert newest.get_attribute("data-attempt") == "2" and newest.get_attribute("data-status") == "succeeded"
    expect(newest).to_contain_text("200")
    expect(newest).to_contain_text(" ms")
    assert oldest.get_attribute("data-attempt") == "1" and oldest.get_attribute("data-status") == "failed"
    expect(oldest).to_contain_text("HTTP 500")
    assert webhook.secret not in page.content(), "the secret is never shown again"
    section.scroll_into_view_if_needed()
    if os.environ.get("SIMLABEL_SCREENSHOTS"):
        section.screenshot(path=os.path.join(os.environ["SIMLABEL_SCREENSHOTS"], "webhooks.png"))
        page.screenshot(path=os.path.join(os.environ["SIMLABEL_SCREENSHOTS"], "webhooks-page.png"), full_page=True)
    page.watch.check(page)


def test_other_members_do_not_see_webhooks(browser_page, hooked):
    dataset, webhook, _ = hooked
    page = browser_page
    login(page, "anna", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/")
    expect(page.locator("#dataset-title")).to_have_text("Hooked")
    expect(page.locator("#webhooks")).to_have_count(0)
    assert "127.0.0.1" not in page.content()
    page.watch.check(page)
