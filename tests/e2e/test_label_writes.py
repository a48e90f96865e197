"""Label writes from the pages, in headless Chromium: an Undo button undoes the
action it belongs to (not the newest one), and every write carries the versions
the page read, so a page that lost a race to another annotator says so, shows
the other person's label and overwrites nothing."""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_labeling_flow import login
from tests.e2e.test_page_polish import PASSWORD, _box_select_blob, _open_map, pets  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser]


def _labels(dataset):
    from labeling.models import Annotation

    return dict(
        Annotation.objects.filter(dataset=dataset, label_class__isnull=False).values_list("image_id", "label_class_id")
    )


def _check_page(page, allowed_statuses=()):
    """No JS errors or CSP violations; a refused write's own 409 is expected in the console."""
    page.watch.errors = [
        e for e in page.watch.errors if not any(f"status of {status}" in e for status in allowed_statuses)
    ]
    page.watch.check(page)


def _someone_else(dataset):
    from labeling.models import Role
    from tests.factories import MembershipFactory, UserFactory

    bob = UserFactory(username="bob", password=PASSWORD)
    MembershipFactory(dataset=dataset, user=bob, role=Role.ANNOTATOR)
    return bob


def test_undo_on_an_older_map_toast_undoes_that_action(browser_page, live_server, pets):  # noqa: F811
    dataset, (cat, dog), (blob_a, blob_b) = pets
    page = browser_page
    _open_map(page, dataset)
    _box_select_blob(page, 0)
    page.keyboard.press("c")
    expect(page.locator(f"#count-class-{cat.pk}")).to_have_text("12")
    _box_select_blob(page, 1)
    page.keyboard.press("d")
    expect(page.locator(f"#count-class-{dog.pk}")).to_have_text("12")

    # Both toasts are still up; the older one's Undo undoes the cats, not the newer dogs.
    older = page.locator("#toast .notice", has_text="as cat")
    expect(page.locator("#toast .notice", has_text="as dog")).to_be_visible()
    older.get_by_role("button", name="Undo").click()
    expect(page.locator(f"#count-class-{cat.pk}")).to_have_text("0")
    assert _labels(dataset) == {image_id: dog.pk for image_id in blob_b}
    expect(page.locator(f"#count-class-{dog.pk}")).to_have_text("12")
    # The newest action is still the one the last-action bar offers, and it undoes the dogs.
    expect(page.locator("#last-action")).to_contain_text("as dog")
    page.click("#undo-last")
    expect(page.locator(f"#count-class-{dog.pk}")).to_have_text("0")
    assert _labels(dataset) == {}
    _check_page(page)


def test_undo_on_an_older_clusters_toast_undoes_that_action(browser_page, live_server, pets):  # noqa: F811
    dataset, (cat, dog), (blob_a, blob_b) = pets
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/clusters/")
    page.wait_for_selector("body[data-clusters-ready=true]")
    for cluster, cls in ((0, cat), (1, dog)):
        card = page.locator(f".cluster-card[data-cluster='{cluster}']")
        card.locator("select.cluster-class").select_option(str(cls.pk))
        card.locator("button.label-cluster").click()
        expect(page.locator("#toast .notice", has_text=f"of cluster {cluster} as {cls.name}")).to_be_visible()
        # The cards are drawn again after each action: wait for that before using the next one.
        expect(page.locator("#last-action")).to_contain_text(f"of cluster {cluster} as {cls.name}")
    assert len(_labels(dataset)) == 24

    page.locator("#toast .notice", has_text="of cluster 0 as cat").get_by_role("button", name="Undo").click()
    expect(page.locator("#toast .notice", has_text="Undone")).to_be_visible()
    assert _labels(dataset) == {image_id: dog.pk for image_id in blob_b}
    _check_page(page)


def test_the_grid_loses_a_race_and_shows_the_other_label(browser_page, live_server, pets):  # noqa: F811
    from labeling.models import Annotation, Image
    from labeling.services.annotations import annotation_set

    dataset, (cat, dog), blobs = pets
    bob = _someone_else(dataset)
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/label/")
    page.wait_for_selector("body[data-grid-ready=true]")
    focused = int(page.get_attribute("#label-grid .thumb.focused", "data-image-id"))

    # bob labels the focused image after alice's grid read it.
    annotation_set(image=Image.objects.get(pk=focused), label_class=dog, user=bob)
    page.keyboard.press("c")
    conflict = page.locator("#toast .notice.conflict")
    expect(conflict).to_contain_text("someone else changed this image")
    tile = page.locator(f"#label-grid .thumb[data-image-id='{focused}']")
    expect(tile.locator(".tag")).to_have_text("dog")
    expect(tile).to_have_class(__import__("re").compile(r"\bconflict\b"))
    assert _labels(dataset) == {focused: dog.pk}
    assert Annotation.objects.get(image_id=focused).author_id == bob.pk
    page.screenshot(path="/tmp/pages-grid-conflict.png")

    # Having seen bob's label, alice may still choose hers: the page now knows the version.
    page.click(f"#label-grid .thumb[data-image-id='{focused}']")
    page.keyboard.press("c")
    expect(tile.locator(".tag")).to_have_text("cat")
    page.wait_for_function(
        f"() => document.querySelector(\"#label-grid .thumb[data-image-id='{focused}'] .tag\").textContent === 'cat'"
    )
    assert _labels(dataset) == {focused: cat.pk}

    # A multi-image write from the grid carries the versions too.
    second, third = [
        int(v)
        for v in page.eval_on_selector_all(
            "#label-grid .thumb:not(.labeled)", "els => els.slice(0, 2).map(e => e.dataset.imageId)"
        )
    ]
    for image_id in (second, third):
        page.click(f"#label-grid .thumb[data-image-id='{image_id}']", modifiers=["Control"])
    annotation_set(image=Image.objects.get(pk=third), label_class=dog, user=bob)
    page.keyboard.press("c")
    expect(page.locator("#toast .notice.conflict", has_text="1 of these images")).to_be_visible()
    expect(page.locator(f"#label-grid .thumb[data-image-id='{third}'] .tag")).to_have_text("dog")
    labels = _labels(dataset)
    assert second not in labels and labels[third] == dog.pk
    _check_page(page, allowed_statuses=(409,))


def test_a_map_selection_that_lost_a_race_writes_nothing(browser_page, live_server, pets):  # noqa: F811
    from labeling.models import Image
    from labeling.services.annotations import annotation_set

    dataset, (cat, dog), (blob_a, blob_b) = pets
    bob = _someone_else(dataset)
    page = browser_page
    _open_map(page, dataset)
    annotation_set(image=Image.objects.get(pk=blob_a[3]), label_class=dog, user=bob)
    _box_select_blob(page, 0)
    page.keyboard.press("c")
    expect(page.locator("#toast .notice.conflict")).to_contain_text("1 of these images")
    assert _labels(dataset) == {blob_a[3]: dog.pk}  # nothing of alice's was written
    # The map was read again: bob's dog is counted, and the selection is gone.
    expect(page.locator(f"#count-class-{dog.pk}")).to_have_text("1")
    expect(page.locator("#selection-panel")).to_be_hidden()
    page.screenshot(path="/tmp/pages-map-conflict.png")

    # Selecting again with the fresh map labels them (bob's dog included, now seen).
    _box_select_blob(page, 0)
    page.keyboard.press("c")
    expect(page.locator(f"#count-class-{cat.pk}")).to_have_text("12")
    assert _labels(dataset) == {image_id: cat.pk for image_id in blob_a}
    _check_page(page, allowed_statuses=(409,))


def _suggested_pets(make_user, make_dataset, labels):
    """alice (admin), bob (annotator) and two blobs of 10 with suggestions computed from
    `labels(blob_a, blob_b)` -> {class name: image ids} (labeled by alice)."""
    from embeddings.services.suggestions import suggestions_recompute
    from labeling.services.annotations import annotations_apply_bulk
    from tests.factories import build_map

    alice = make_user("alice", password=PASSWORD)
    dataset = make_dataset(name="Pets", admin=alice)
    run, (cat, dog), (blob_a, blob_b) = build_map(dataset, blob_sizes=(10, 10), stored=True)
    for name, image_ids in labels(blob_a, blob_b).items():
        annotations_apply_bulk(
            dataset=dataset, user=alice, label_class={"cat": cat, "dog": dog}[name], image_ids=image_ids
        )
    suggestions_recompute(dataset=dataset)
    return dataset, (cat, dog), (blob_a, blob_b), _someone_else(dataset)


def test_accepting_suggestions_that_lost_a_race_writes_nothing(browser_page, live_server, make_user, make_dataset):
    from labeling.models import Image
    from labeling.services.annotations import annotation_set

    dataset, (cat, dog), (blob_a, blob_b), bob = _suggested_pets(
        make_user, make_dataset, lambda a, b: {"cat": a[:2], "dog": b[:2]}
    )
    page = browser_page
    _open_map(page, dataset)
    cat_row = page.locator(f"#suggestion-rows [data-suggested-class='{cat.pk}']")
    page.fill("#suggestions-min-confidence", "0")  # few labels: every confidence is under the default floor
    expect(cat_row.locator("button")).to_have_text("Accept 8")
    cat_row.locator("button").click()
    expect(page.locator("#accept-preview .accept-summary")).to_contain_text("Would label 8 images")

    # bob labels one of the eight as dog while alice looks at the preview.
    annotation_set(image=Image.objects.get(pk=blob_a[4]), label_class=dog, user=bob)
    before = _labels(dataset)
    page.click("#accept-preview button.confirm-accept")
    expect(page.locator("#toast .notice.conflict")).to_contain_text("someone else changed 1 of these images")
    assert _labels(dataset) == before
    # The card now counts the seven still waiting, and accepting them works.
    expect(cat_row.locator("button")).to_have_text("Accept 7")
    cat_row.locator("button").click()
    page.click("#accept-preview button.confirm-accept")
    expect(page.locator("#toast .notice", has_text="Accepted 7 suggestions of cat")).to_be_visible()
    labels = _labels(dataset)
    assert labels[blob_a[4]] == dog.pk and all(labels[i] == cat.pk for i in blob_a if i != blob_a[4])
    _check_page(page, allowed_statuses=(409,))


def test_a_review_resolution_that_lost_a_race_writes_nothing(browser_page, live_server, make_user, make_dataset):
    from labeling.models import Image, ReviewResolution
    from labeling.services.annotations import annotation_set

    # Blob 1 labeled half cat, half dog: a mixed cluster, first in the queue.
    dataset, (cat, dog), (blob_a, blob_b), bob = _suggested_pets(
        make_user, make_dataset, lambda a, b: {"cat": a + b[::2], "dog": b[1::2]}
    )
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/review/")
    page.wait_for_selector("body[data-review-ready=true]")
    card = page.locator(".review-item").first
    expect(card).to_be_visible()
    item_images = [int(v) for v in card.locator(".thumb").evaluate_all("els => els.map(e => e.dataset.imageId)")]
    target = item_images[-1]
    other = dog if _labels(dataset).get(target) != dog.pk else cat
    # bob changes one of the item's labels after the queue was read: marking it reviewed
    # would vouch for a label alice never saw.
    annotation_set(image=Image.objects.get(pk=target), label_class=other, user=bob)
    before = _labels(dataset)

    card.locator("button.reviewed").click()
    expect(page.locator("#toast .notice.conflict")).to_be_visible()
    assert _labels(dataset) == before and not ReviewResolution.objects.exists()
    _check_page(page, allowed_statuses=(409,))
