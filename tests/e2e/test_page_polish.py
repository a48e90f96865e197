"""Pages that misled in Chromium: the map stayed dimmed after labeling and its
toolbar covered the legend; the image page's `0` both labeled and cleared, its
history stayed empty and the active class's key was a blank box; the grid
scrolled its heading away; the upload drop zone and report; the clusters page
of a dataset without classes."""

import io

import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

from labeling.palette import CLASS_PALETTE
from tests.e2e.test_labeling_flow import login
from tests.factories import build_map

pytestmark = [pytest.mark.browser]

PASSWORD = "pw-Secret-123"


@pytest.fixture
def pets(make_user, make_dataset):
    """alice (admin) and a dataset with a finished map: two blobs of 12 images, classes cat (key c) and dog (key d)."""
    alice = make_user("alice", password=PASSWORD)
    dataset = make_dataset(name="Pets", admin=alice)
    run, (cat, dog), blobs = build_map(dataset, blob_sizes=(12, 12), spread=0.2, stored=True)
    for label_class, key, color in ((cat, "c", CLASS_PALETTE[0]), (dog, "d", CLASS_PALETTE[1])):
        label_class.shortcut, label_class.color = key, color
        label_class.save(update_fields=["shortcut", "color"])
    return dataset, (cat, dog), blobs


def _open_map(page, dataset):
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/map/?color=class")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)


def _box_select_blob(page, blob_index):
    """Box-select the points of one blob (the factory puts blob b at x = 8 for b = 0, y = 8 for b = 1)."""
    corners = page.evaluate(
        """(b) => {
            const gd = document.getElementById('map-plot');
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
            const [cx, cy] = b === 0 ? [8, 0] : [0, 8];
            // Kept inside the plot area: a drag that starts in the margin selects nothing.
            const clampX = (v) => Math.min(Math.max(v, box.left + 2), box.right - 2);
            const clampY = (v) => Math.min(Math.max(v, box.top + 2), box.bottom - 2);
            return {x0: clampX(box.left + xa.l2p(cx - 1.5)), y0: clampY(box.top + ya.l2p(cy + 1.5)),
                    x1: clampX(box.left + xa.l2p(cx + 1.5)), y1: clampY(box.top + ya.l2p(cy - 1.5))};
        }""",
        blob_index,
    )
    page.click("#mode-box")
    page.mouse.move(corners["x0"], corners["y0"])
    page.mouse.down()
    page.mouse.move(corners["x1"], corners["y1"], steps=8)
    page.mouse.up()
    page.wait_for_selector("#selection-panel:not(.hidden)")


SELECTION_STATE = """() => {
    const gd = document.getElementById('map-plot');
    return {
        selected: gd.data.map((t) => t.selectedpoints ?? null),
        fullSelected: gd._fullData.map((t) => t.selectedpoints ?? null),
        selections: (gd.layout.selections || []).length,
    };
}"""


def _assert_not_dimmed(page):
    state = page.evaluate(SELECTION_STATE)
    assert all(s is None for s in state["selected"]), state
    assert all(s is None for s in state["fullSelected"]), state
    assert state["selections"] == 0, state


def test_map_is_not_dimmed_after_labeling_or_undo(browser_page, live_server, pets):
    dataset, (cat, dog), blobs = pets
    page = browser_page
    _open_map(page, dataset)

    _box_select_blob(page, 0)
    assert page.evaluate(SELECTION_STATE)["selections"] == 1  # Plotly dims the rest while a selection is on
    page.keyboard.press("c")
    expect(page.locator(f"#count-class-{cat.pk}")).to_have_text("12")
    _assert_not_dimmed(page)
    page.screenshot(path="/tmp/pages-map-after-label.png")

    page.click("#undo-last")
    expect(page.locator(f"#count-class-{cat.pk}")).to_have_text("0")
    _assert_not_dimmed(page)

    # A second selection after the first one was labeled dims and clears the same way.
    _box_select_blob(page, 1)
    page.keyboard.press("d")
    expect(page.locator(f"#count-class-{dog.pk}")).to_have_text("12")
    _assert_not_dimmed(page)
    page.watch.check(page)


def _overlap(a, b) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def test_map_toolbar_does_not_cover_the_legend(browser_page, live_server, pets):
    dataset, _classes, _blobs = pets
    page = browser_page
    _open_map(page, dataset)
    page.hover("#map-plot")  # the modebar shows on hover
    modebar = page.locator(".modebar").bounding_box()
    entries = page.locator(".legend .traces")
    assert entries.count() >= 1
    first = entries.first.bounding_box()
    assert modebar and first
    assert not _overlap(modebar, first), (modebar, first)
    legend = page.locator(".legend .bg").bounding_box()
    assert not _overlap(modebar, legend), (modebar, legend)
    page.screenshot(path="/tmp/pages-map-legend.png")


# --- image page ---------------------------------------------------------------------------------


@pytest.fixture
def digit_image(make_user, make_dataset):
    """alice (admin), a dataset with classes "0" and "1" on keys 0 and 1 (as in the demo), and one unlabeled image."""
    from django.core.files.base import ContentFile

    from labeling.models import Image, LabelClass

    alice = make_user("alice", password=PASSWORD)
    dataset = make_dataset(name="Digits", admin=alice)
    zero = LabelClass.objects.create(dataset=dataset, name="0", shortcut="0", color=CLASS_PALETTE[0])
    one = LabelClass.objects.create(dataset=dataset, name="1", shortcut="1", color=CLASS_PALETTE[1])
    buf = io.BytesIO()
    PILImage.new("L", (28, 28), 128).save(buf, format="PNG")
    image = Image(dataset=dataset, sha256="a" * 64, width=28, height=28, format="PNG", original_name="x.png")
    image.file.save("polish/x.png", ContentFile(buf.getvalue()), save=False)
    image.thumbnail.save("polish/x.webp", ContentFile(buf.getvalue()), save=False)
    image.save()
    return image, zero, one


def _open_image(page, image):
    login(page, "alice", PASSWORD)
    page.goto(f"/images/{image.pk}/")
    page.wait_for_selector("body[data-image-ready=true]")


def _class_of(image):
    from labeling.models import Annotation

    return Annotation.objects.filter(image=image).values_list("label_class_id", flat=True).first()


def test_image_page_zero_labels_class_zero_and_delete_clears(browser_page, live_server, digit_image):
    image, zero, _one = digit_image
    page = browser_page
    _open_image(page, image)
    # `0` is class "0"'s key: it labels and nothing else.
    page.keyboard.press("0")
    expect(page.locator("#current-class")).to_contain_text("0")
    assert _class_of(image) == zero.pk
    # Clearing has its own keys, and the button names them.
    assert "Del" in page.locator("#clear-class").inner_text()
    page.keyboard.press("Delete")
    expect(page.locator("#current-class")).to_contain_text("Unlabeled")
    assert _class_of(image) is None
    page.keyboard.press("1")
    expect(page.locator("#current-class")).to_contain_text("1")
    page.keyboard.press("Backspace")
    expect(page.locator("#current-class")).to_contain_text("Unlabeled")
    assert _class_of(image) is None
    page.watch.check(page)


def test_image_page_history_updates_without_reload(browser_page, live_server, digit_image):
    image, _zero, one = digit_image
    page = browser_page
    _open_image(page, image)
    expect(page.locator("#history-empty")).to_be_visible()
    page.keyboard.press("0")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator("#history-empty")).to_be_hidden()
    assert "unlabeled → 0" in page.locator("#history tbody tr").first.inner_text()
    page.keyboard.press("1")
    expect(page.locator("#history tbody tr")).to_have_count(2)
    assert "0 → 1" in page.locator("#history tbody tr").first.inner_text()
    assert _class_of(image) == one.pk
    # Undo from the newest toast adds its own row, as a reload would show it.
    page.locator("#toast .notice", has_text="Labeled as 1").locator("button", has_text="Undo").click()
    expect(page.locator("#current-class")).to_contain_text("0")
    expect(page.locator("#history tbody tr")).to_have_count(3)
    newest = page.locator("#history tbody tr").first.inner_text()
    assert "1 → 0" in newest and "Undo" in newest
    page.reload()
    page.wait_for_selector("body[data-image-ready=true]")
    assert page.locator("#history tbody tr").count() == 3
    assert page.locator("#history tbody tr").first.inner_text().split("\t")[1:] == newest.split("\t")[1:]
    page.watch.check(page)


def test_image_page_active_class_shows_its_key(browser_page, live_server, digit_image):
    image, _zero, one = digit_image
    page = browser_page
    _open_image(page, image)
    page.keyboard.press("1")
    badge = page.locator(f"#class-buttons button.primary[data-class-id='{one.pk}'] kbd")
    expect(badge).to_have_text("1")
    ink, paper = badge.evaluate("(k) => { const s = getComputedStyle(k); return [s.color, s.backgroundColor]; }")
    assert ink != paper, (ink, paper)
    assert ink != "rgb(255, 255, 255)", ink
    page.screenshot(path="/tmp/pages-image.png")
    page.watch.check(page)


def test_image_page_similar_images_message_spans_the_card(browser_page, live_server, digit_image):
    image, _zero, _one = digit_image
    page = browser_page
    _open_image(page, image)
    message = page.locator("#similar > p")
    expect(message).to_have_text("Similar images appear once the dataset has a map.")
    # One line across the card, not one thumbnail column wide (a word per line). image.js redraws the
    # message once its similar-images request answers, so wait for the layout rather than read it once.
    page.wait_for_function(
        """() => {
            const card = document.getElementById('similar').getBoundingClientRect();
            const p = document.querySelector('#similar > p');
            if (!p) return false;
            const box = p.getBoundingClientRect();
            return box.width > 0.9 * card.width && box.height < 40;
        }""",
        timeout=5000,
    )


# --- grid, upload, clusters --------------------------------------------------------------------------


def test_label_grid_does_not_scroll_on_load(browser_page, live_server, make_user, make_dataset):
    dataset = make_dataset(name="Many", admin=make_user("alice", password=PASSWORD))
    build_map(dataset, blob_sizes=(60, 60), stored=True)  # a grid taller than the window
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 700})
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/label/")
    page.wait_for_selector("body[data-grid-ready=true]")
    assert page.evaluate("window.scrollY") == 0
    # Keys still reach the grid.
    assert page.evaluate("document.activeElement.id") == "label-grid"
    heading = page.locator("h1").bounding_box()
    topbar = page.locator(".topbar").bounding_box()
    assert heading["y"] >= topbar["y"] + topbar["height"]
    assert page.locator("#class-buttons .class-button").first.is_visible()
    page.screenshot(path="/tmp/pages-grid.png")


def test_upload_drop_zone_is_one_box(browser_page, live_server, pets):
    dataset, _classes, _blobs = pets
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/upload/")

    # The drop zone is one block with one border box, not a border around each line of text.
    zone = page.locator("#dropzone")
    assert zone.evaluate("(z) => getComputedStyle(z).display") == "block"
    assert zone.evaluate("(z) => z.getClientRects().length") == 1
    page.screenshot(path="/tmp/pages-upload.png")
    page.watch.check(page)


def test_upload_report_waits_for_every_batch(browser_page, live_server, pets, tmp_path):
    dataset, _classes, _blobs = pets
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/upload/")
    # Hold the upload request until the test lets it go.
    held = []
    page.route(f"**/api/datasets/{dataset.pk}/images/", lambda route: held.append(route))
    good = tmp_path / "good.png"
    buf = io.BytesIO()
    PILImage.new("L", (20, 20), 200).save(buf, format="PNG")
    good.write_bytes(buf.getvalue())
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    page.set_input_files("#file-input", [str(good), str(bad)])
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    # While the batch is sending: no totals that look final ("0 stored, 1 rejected"), but progress.
    assert page.locator("#upload-report").is_hidden()
    assert page.text_content("#upload-summary") == "Sending batch 1 of 1…"
    assert page.get_attribute("body", "data-upload-done") is None
    page.screenshot(path="/tmp/pages-upload-sending.png")

    held[0].continue_()
    page.wait_for_selector("body[data-upload-done=true]")
    assert page.locator("#upload-report").is_visible()
    assert page.text_content("#count-stored") == "1"
    assert page.text_content("#count-rejected") == "1"
    assert page.text_content("#upload-summary") == "Done: 1 stored, 0 skipped, 1 rejected."
    page.screenshot(path="/tmp/pages-upload-done.png")
    page.watch.check(page)


def test_clusters_page_without_classes_says_where_to_add_them(browser_page, live_server, make_user, make_dataset):
    from labeling.models import LabelClass, Membership

    page = browser_page
    alice = make_user("alice", password=PASSWORD)
    bob = make_user("bob", password=PASSWORD)
    dataset = make_dataset(name="Unnamed things", admin=alice, members={bob: "annotator"})
    build_map(dataset, blob_sizes=(6, 6), stored=True)
    LabelClass.objects.filter(dataset=dataset).delete()

    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/clusters/")
    page.wait_for_selector("body[data-clusters-ready=true]")
    hint = page.locator("#no-classes-hint")
    expect(hint).to_be_visible()
    assert "no classes yet" in hint.inner_text()
    page.screenshot(path="/tmp/pages-clusters-no-classes.png")
    hint.locator("a").click()
    page.wait_for_url(f"**/datasets/{dataset.pk}/#classes")
    assert page.locator("#add-class-form").is_visible()

    # An annotator is told who adds them.
    page.context.clear_cookies()
    login(page, "bob", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/clusters/")
    assert "An admin of the dataset adds them" in page.locator("#no-classes-hint").inner_text()
    assert Membership.objects.filter(dataset=dataset).count() == 2
    page.watch.check(page)


def test_a_bad_page_option_is_a_readable_page(browser_page, live_server, pets):
    dataset, _classes, _blobs = pets
    page = browser_page
    login(page, "alice", PASSWORD)
    response = page.goto(f"/datasets/{dataset.pk}/map/?cluster=%C2%B2")
    assert response.status == 400
    assert "The “cluster” option in this address is not valid" in page.text_content("#bad-request-reason")
    page.screenshot(path="/tmp/pages-400.png")
    page.click("text=without these options")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    # Chromium logs the 400 document itself as a failed load; nothing else may fail.
    page.watch.errors = [e for e in page.watch.errors if "status of 400" not in e]
    page.watch.check(page)
