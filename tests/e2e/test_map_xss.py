"""Stored XSS on the map page, in headless Chromium: class, dataset and file names
carrying markup must show as literal text in the map's legend, hover card, class
buttons and selection panel, create no elements and run no script.

The map draws its legend through Plotly, which turns a small set of HTML tags
in trace names into SVG; the hover card and panels are built by map.js. Both
paths are checked: remove the escaping in either and this test fails."""

import pytest

from tests.e2e.test_labeling_flow import login
from tests.factories import build_map

pytestmark = [pytest.mark.browser]

IMG_PAYLOAD = "<img src=x onerror=window.__xss=1>"
BOLD_PAYLOAD = "<b>bold</b></script><script>window.__xss=2</script>"


def _point_on_screen(page, class_name):
    """Screen position of the first point of the class's trace (trace names hold Plotly-escaped text)."""
    trace_name_prefix = class_name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return page.evaluate(
        """(prefix) => {
            const gd = document.getElementById('map-plot');
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
            const t = gd.data.find((t) => t.name.startsWith(prefix));
            if (!t) return null;
            return {x: box.left + xa.l2p(t.x[0]), y: box.top + ya.l2p(t.y[0]), name: t.name};
        }""",
        trace_name_prefix,
    )


def test_markup_in_names_is_inert_on_the_map(browser_page, live_server, make_user, make_dataset):
    from labeling.services.annotations import annotations_apply_bulk

    page = browser_page
    alice = make_user("alice", password="pw-Secret-123")
    dataset = make_dataset(name=IMG_PAYLOAD, admin=alice)
    run, (img_class, bold_class), blobs = build_map(
        dataset,
        blob_sizes=(12, 12, 12),
        class_names=(IMG_PAYLOAD, BOLD_PAYLOAD),
        spread=0.2,
        stored=True,
    )
    dataset.images.update(original_name=f"{IMG_PAYLOAD}.png")
    annotations_apply_bulk(dataset=dataset, user=alice, label_class=img_class, image_ids=blobs[0])
    annotations_apply_bulk(dataset=dataset, user=alice, label_class=bold_class, image_ids=blobs[1])

    login(page, "alice", "pw-Secret-123")
    page.goto(f"/datasets/{dataset.pk}/map/?color=class")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)

    # Legend: Plotly shows the names literally (no <b> turned into bold, no <img> dropped).
    legend_texts = page.eval_on_selector_all(".legend .legendtext", "els => els.map(e => e.textContent)")
    assert any(t.startswith(IMG_PAYLOAD) for t in legend_texts), legend_texts
    assert any(t.startswith(BOLD_PAYLOAD) for t in legend_texts), legend_texts
    assert page.locator(".legend .legendtext [style*='font-weight']").count() == 0

    # Class buttons carry the names as text.
    buttons = page.locator("#class-buttons").inner_text()
    assert IMG_PAYLOAD in buttons and BOLD_PAYLOAD in buttons

    # Hover a point of each labeled class: the card shows the name as text, no element is made.
    for name in (IMG_PAYLOAD, BOLD_PAYLOAD):
        point = _point_on_screen(page, name)
        assert point is not None, f"no trace for {name!r}"
        page.mouse.move(point["x"] + 40, point["y"] + 40)
        page.mouse.move(point["x"], point["y"], steps=4)
        page.wait_for_selector("#hover-card:not(.hidden)", timeout=5_000)
        assert name in page.text_content("#hover-text")
        page.mouse.move(5, 5)

    # Box-select one class's points so the selection panel lists them with their descriptions.
    point = _point_on_screen(page, IMG_PAYLOAD)
    page.evaluate("() => Plotly.relayout('map-plot', {dragmode: 'select'})")
    page.mouse.move(point["x"] - 60, point["y"] - 60)
    page.mouse.down()
    page.mouse.move(point["x"] + 60, point["y"] + 60, steps=8)
    page.mouse.up()
    page.wait_for_function("() => Number(document.getElementById('selection-count').textContent) > 0")

    # Nothing anywhere on the page came from the payloads.
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("#hover-card b, #selection-panel b, #class-buttons b, .legend b").count() == 0
    assert page.evaluate("window.__xss") is None
    assert IMG_PAYLOAD in page.title() or IMG_PAYLOAD in page.text_content("body")
    page.watch.check(page)
