"""Accepting suggestions in headless Chromium: one class at a time from the map's
Suggestions card (with a confidence floor, and undo), and a whole cluster from
the cluster page, each one action after its preview."""

import pytest

from tests.e2e.test_labeling_flow import login
from tests.factories import build_map

pytestmark = [pytest.mark.browser]


def _labels(dataset):
    from labeling.models import Annotation

    return dict(
        Annotation.objects.filter(dataset=dataset, label_class__isnull=False).values_list("image_id", "label_class_id")
    )


def test_accept_suggestions_by_class_and_by_cluster(browser_page, live_server, make_user, make_dataset):
    from embeddings.models import ImageEmbedding
    from embeddings.services.suggestions import suggestions_recompute
    from labeling.models import LabelAction
    from labeling.services.annotations import annotations_apply_bulk

    page = browser_page
    alice = make_user("alice", password="pw-Secret-123")
    dataset = make_dataset(name="Pets", admin=alice)
    run, (cat, dog), (blob_a, blob_b) = build_map(dataset, blob_sizes=(20, 20), stored=True)
    annotations_apply_bulk(dataset=dataset, user=alice, label_class=cat, image_ids=blob_a[:2])
    annotations_apply_bulk(dataset=dataset, user=alice, label_class=dog, image_ids=blob_b[:2])
    suggestions_recompute(dataset=dataset)
    unsure = blob_a[5]
    ImageEmbedding.objects.filter(run=run, image_id=unsure).update(suggestion_confidence=0.3)

    login(page, "alice", "pw-Secret-123")
    page.goto(f"/datasets/{dataset.pk}/map/")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    card = page.locator("#suggestions-card")
    assert card.is_visible()
    cat_row = page.locator(f"#suggestion-rows [data-suggested-class='{cat.pk}']")
    # Two labels per blob keep every confidence under the default floor (90 %); 0 shows them all.
    page.fill("#suggestions-min-confidence", "0")
    assert cat_row.locator("button").inner_text() == "Accept 18"

    # A confidence floor of 50 % leaves the unsure image out of the count and of the action.
    page.fill("#suggestions-min-confidence", "50")
    assert cat_row.locator("button").inner_text() == "Accept 17"
    before = LabelAction.objects.count()
    cat_row.locator("button").click()  # previews (tests/e2e/test_accept_preview_browser.py), then confirm
    page.click("#accept-preview button.confirm-accept")
    page.wait_for_selector("#undo-last")
    labels = _labels(dataset)
    assert all(labels[i] == cat.pk for i in blob_a if i != unsure)
    assert unsure not in labels
    assert all(i not in labels for i in blob_b[2:])  # dog suggestions wait
    assert LabelAction.objects.count() == before + 1
    assert page.text_content("#count-unlabeled") == "19"

    # Undo puts them back.
    page.click("#undo-last")
    page.wait_for_function("() => document.getElementById('count-unlabeled').textContent === '36'")
    assert set(_labels(dataset)) == set(blob_a[:2] + blob_b[:2])

    # The cluster page accepts the dog cluster's suggestions (sure ones: above the floor) after a preview.
    ImageEmbedding.objects.filter(run=run, image_id__in=blob_b).update(suggestion_confidence=0.95)
    page.goto(f"/datasets/{dataset.pk}/clusters/")
    page.wait_for_selector("body[data-clusters-ready=true]")
    dog_card = page.locator(".card", has=page.locator("h2", has_text="Cluster 1"))
    dog_card.locator("button.accept-suggestions").click()
    dog_card.locator("button.confirm-accept").click()
    page.wait_for_selector("#last-action")
    labels = _labels(dataset)
    assert all(labels[i] == dog.pk for i in blob_b)
    assert all(i not in labels for i in blob_a[2:])
    page.watch.check(page)
