"""Accepting suggestions shows what it would change first (issue #15): the map's Suggestions
card and the cluster page preview per class, total and floor (the measured default, adjustable),
and Confirm accepts exactly that plan; below the floor there is nothing to accept."""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_labeling_flow import login
from tests.factories import PASSWORD, MembershipFactory, UserFactory, build_map

pytestmark = [pytest.mark.browser]


def _pets(make_user, make_dataset):
    """Two blobs of 20 (cluster 0: cat, cluster 1: dog), two labels each, set suggestions:
    blob A cat at 0.99 except a[2], dog at 0.95; blob B dog at 0.99 except b[2..7] at 0.5.
    Above the default floor (0.9): cat 17, dog 12 + 1. Cluster 0's suggestion is 94 % likely,
    cluster 1's 83 % (six unsure of eighteen): under the floor."""
    from embeddings.models import ImageEmbedding
    from labeling.services.annotations import annotations_apply_bulk

    alice = make_user("alice", password=PASSWORD)
    dataset = make_dataset(name="Pets", admin=alice)
    run, (cat, dog), (a, b) = build_map(dataset, blob_sizes=(20, 20), stored=True)
    annotations_apply_bulk(dataset=dataset, user=alice, label_class=cat, image_ids=a[:2])
    annotations_apply_bulk(dataset=dataset, user=alice, label_class=dog, image_ids=b[:2])
    rows = ImageEmbedding.objects.filter(run=run)
    rows.filter(image_id__in=a).update(suggested_class=cat, suggestion_confidence=0.99)
    rows.filter(image_id=a[2]).update(suggested_class=dog, suggestion_confidence=0.95)
    rows.filter(image_id__in=b).update(suggested_class=dog, suggestion_confidence=0.99)
    rows.filter(image_id__in=b[2:8]).update(suggestion_confidence=0.5)
    return dataset, (cat, dog), (a, b)


def _preview_counts(box):
    return {
        int(row.get_attribute("data-preview-class")): int(row.locator(".preview-count").inner_text())
        for row in box.locator("[data-preview-class]").all()
    }


def test_map_card_previews_then_accepts_exactly_the_plan(
    browser_page, live_server, make_user, make_dataset, shot, labels_of
):
    from labeling.models import LabelAction

    dataset, (cat, dog), (a, b) = _pets(make_user, make_dataset)
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/map/")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    # The floor starts at the measured default, and says so.
    expect(page.locator("#suggestions-min-confidence")).to_have_value("90")
    expect(page.locator("#suggestions-default-floor")).to_contain_text("default 90 %")
    expect(page.locator(f"#suggestion-rows [data-suggested-class='{cat.pk}'] button")).to_have_text("Accept 17")
    expect(page.locator(f"#suggestion-rows [data-suggested-class='{dog.pk}'] button")).to_have_text("Accept 13")
    expect(page.locator("#suggestion-rows button.accept-all")).to_have_text("Accept 30")

    # "Accept 30" previews: per class, total, floor; nothing is written yet.
    before = (LabelAction.objects.count(), labels_of(dataset))
    page.click("#suggestion-rows button.accept-all")
    box = page.locator("#accept-preview")
    expect(box.locator(".accept-summary")).to_contain_text("Would label 30 images")
    expect(box.locator(".accept-summary")).to_contain_text("at least 90 %")
    assert _preview_counts(box) == {cat.pk: 17, dog.pk: 13}
    assert (LabelAction.objects.count(), labels_of(dataset)) == before
    shot(page, "accept-preview-map")

    # The floor is adjustable: the preview follows it.
    page.fill("#suggestions-min-confidence", "40")
    expect(box.locator(".accept-summary")).to_contain_text("Would label 36 images")
    assert _preview_counts(box) == {cat.pk: 17, dog.pk: 19}
    page.fill("#suggestions-min-confidence", "100")
    expect(box.locator(".nothing-to-accept")).to_have_text(
        "Nothing to accept above the floor (confidence at least 100 %)."
    )
    expect(page.locator("#suggestion-rows")).to_contain_text("Nothing to accept above the floor (100 %).")
    shot(page, "accept-preview-map-nothing")
    assert (LabelAction.objects.count(), labels_of(dataset)) == before

    page.fill("#suggestions-min-confidence", "90")
    page.click("#suggestion-rows button.accept-all")
    expect(box.locator(".accept-summary")).to_contain_text("Would label 30 images")
    box.locator("button.confirm-accept").click()
    expect(page.locator("#toast .notice", has_text="Accepted 30 suggestions")).to_be_visible()
    labels = labels_of(dataset)
    assert LabelAction.objects.count() == before[0] + 1
    assert all(labels[i] == cat.pk for i in a if i != a[2]) and labels[a[2]] == dog.pk
    assert all(labels[i] == dog.pk for i in b[8:]) and not any(i in labels for i in b[2:8])
    page.watch.check(page)


def test_map_card_confirm_refuses_when_someone_labeled_meanwhile(
    browser_page, live_server, make_user, make_dataset, labels_of
):
    from labeling.models import Image
    from labeling.services.annotations import annotation_set

    dataset, (cat, dog), (a, b) = _pets(make_user, make_dataset)
    bob = UserFactory(username="bob", password=PASSWORD)
    MembershipFactory(dataset=dataset, user=bob, role="annotator")
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/map/")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    page.click(f"#suggestion-rows [data-suggested-class='{cat.pk}'] button")
    box = page.locator("#accept-preview")
    expect(box.locator(".accept-summary")).to_contain_text("Would label 17 images as cat")
    # bob labels one of the seventeen dog after alice's preview was read.
    annotation_set(image=Image.objects.get(pk=a[4]), label_class=dog, user=bob)
    before = labels_of(dataset)
    box.locator("button.confirm-accept").click()
    expect(page.locator("#toast .notice.conflict")).to_contain_text("someone else changed 1 of these images")
    assert labels_of(dataset) == before
    expect(page.locator(f"#suggestion-rows [data-suggested-class='{cat.pk}'] button")).to_have_text("Accept 16")
    page.watch.errors = [e for e in page.watch.errors if "status of 409" not in e]
    page.watch.check(page)


def test_cluster_page_previews_and_disables_below_the_floor(
    browser_page, live_server, make_user, make_dataset, shot, labels_of
):
    from labeling.models import LabelAction

    dataset, (cat, dog), (a, b) = _pets(make_user, make_dataset)
    page = browser_page
    login(page, "alice", PASSWORD)
    assert page.request.get(f"/api/datasets/{dataset.pk}/clusters/").ok  # builds the API schema once
    page.goto(f"/datasets/{dataset.pk}/clusters/")
    page.wait_for_selector("body[data-clusters-ready=true]")
    cat_card = page.locator(".cluster-card[data-cluster='0']")
    dog_card = page.locator(".cluster-card[data-cluster='1']")
    # Cluster 1's suggestion (83 % likely) is under the 90 % floor: no accept offered.
    expect(dog_card.locator("button.accept-suggestions")).to_be_disabled()
    assert "under the accept floor of 90 %" in dog_card.locator("button.accept-suggestions").get_attribute("title")

    before = (LabelAction.objects.count(), labels_of(dataset))
    cat_card.locator("button.accept-suggestions").click()
    preview = cat_card.locator(".accept-preview")
    expect(preview.locator(".accept-summary")).to_contain_text("Would label 18 images")
    expect(preview.locator(".accept-floor")).to_have_value("90")
    counts = {
        int(chip.get_attribute("data-preview-class")): " ".join(chip.inner_text().split())
        for chip in preview.locator("[data-preview-class]").all()
    }
    assert counts == {cat.pk: "cat 17", dog.pk: "dog 1"}
    shot(page, "accept-preview-cluster")
    preview.locator(".accept-floor").fill("100")
    expect(preview.locator(".nothing-to-accept")).to_have_text("Nothing to accept above the floor (100 %).")
    assert (LabelAction.objects.count(), labels_of(dataset)) == before
    preview.locator(".accept-floor").fill("90")
    expect(preview.locator("button.confirm-accept")).to_have_text("Confirm: accept 18")
    preview.locator("button.confirm-accept").click()
    expect(page.locator("#last-action")).to_contain_text("Accepted 18 suggestions in cluster 0")
    labels = labels_of(dataset)
    assert LabelAction.objects.count() == before[0] + 1
    assert all(labels[i] == cat.pk for i in a if i != a[2]) and labels[a[2]] == dog.pk
    assert not any(i in labels for i in b[2:])
    page.watch.check(page)
