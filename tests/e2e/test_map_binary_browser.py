"""The map page reads the binary map format (typed arrays) and a lasso on it labels exactly the points inside."""

import pytest

from tests.e2e.test_labeling_flow import drag_lasso, lasso_points_of, login, screenshot
from tests.factories import build_map

pytestmark = [pytest.mark.browser]


def test_map_page_draws_from_the_binary_format_and_lasso_labels_the_right_points(
    browser_page, live_server, make_user, make_dataset
):
    from labeling.models import Annotation

    page = browser_page
    alice = make_user("alice", password="pw-Secret-123")
    dataset = make_dataset(name="Binary map", admin=alice)
    run, (cat, _dog), blobs = build_map(dataset, blob_sizes=(15, 20, 25), spread=0.3, stored=True)
    map_answers = []
    page.on(
        "response",
        lambda r: (
            map_answers.append((r.url, r.headers.get("content-type")))
            if "/map/" in r.url and "/api/" in r.url
            else None
        ),
    )

    login(page, "alice", "pw-Secret-123")
    page.goto(f"/datasets/{dataset.pk}/map/?color=cluster")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    screenshot(page, "map-binary")

    # Only the binary format was fetched, and what was drawn is its columns.
    assert map_answers and all(u.endswith("?format=binary") for u, _ in map_answers), map_answers
    assert all(t == "application/vnd.simlabel.map" for _, t in map_answers), map_answers
    drawn = page.evaluate(
        """() => {
            const gd = document.getElementById('map-plot');
            return {points: window.simlabelMap.points, bytes: window.simlabelMap.mapBytes,
                    traces: gd.data.map((t) => ({name: t.name, n: t.x.length, typed: t.x instanceof Float32Array}))};
        }"""
    )
    assert drawn["points"] == 60 and drawn["bytes"] > 0
    assert sorted(t["n"] for t in drawn["traces"]) == [15, 20, 25]
    assert all(t["typed"] for t in drawn["traces"])
    assert page.text_content("#count-unlabeled") == "60"

    # Lasso the middle blob (cluster 1, 20 points) and label it: the server applies the polygon.
    hull = lasso_points_of(page, 1)
    assert hull["count"] == 20
    selected = set(drag_lasso(page, hull))
    assert page.text_content("#selection-count") == "20"
    assert selected == set(blobs[1])
    page.click(f"#class-buttons button:has-text('{cat.name}')")
    page.wait_for_selector(f"#count-class-{cat.pk}:has-text('20')")
    labeled = set(Annotation.objects.filter(dataset=dataset, label_class=cat).values_list("image_id", flat=True))
    assert labeled == set(blobs[1])
    # The map was read again (binary, a new ETag) and shows the new labels.
    assert page.text_content("#count-unlabeled") == "40"
    screenshot(page, "map-binary-labeled")
    page.watch.check(page)


def test_density_view_lasso_selects_exactly_the_points_inside(browser_page, live_server, make_user, make_dataset):
    """The density view (a heatmap; drawn by itself past 250,000 points, forced here by ?density=1):
    a lasso around one blob selects exactly its points, and the server labels exactly those."""
    from embeddings.models import ImageEmbedding
    from labeling.models import Annotation

    page = browser_page
    alice = make_user("alice", password="pw-Secret-123")
    dataset = make_dataset(name="Dense map", admin=alice)
    run, (cat, _dog), blobs = build_map(dataset, blob_sizes=(15, 20, 25), spread=0.3, stored=True)
    login(page, "alice", "pw-Secret-123")
    page.goto(f"/datasets/{dataset.pk}/map/?density=1")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    traces = page.evaluate("() => document.getElementById('map-plot').data.map((t) => [t.type, t.name])")
    assert traces[0] == ["heatmap", "density of 60 points (zoom in to see them)"] and len(traces) == 2
    screenshot(page, "map-density")

    xy = list(ImageEmbedding.objects.filter(run=run, image_id__in=blobs[1]).values_list("x", "y"))
    hull = page.evaluate(
        """(xy) => {
            const gd = document.getElementById('map-plot');
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
            const sx = xy.map(([x]) => box.left + xa.l2p(x)), sy = xy.map(([, y]) => box.top + ya.l2p(y));
            return {x0: Math.min(...sx) - 6, x1: Math.max(...sx) + 6, y0: Math.min(...sy) - 6, y1: Math.max(...sy) + 6};
        }""",
        xy,
    )
    selected = set(drag_lasso(page, hull))
    assert page.text_content("#selection-count") == "20"
    assert selected == set(blobs[1])
    page.click(f"#class-buttons button:has-text('{cat.name}')")
    page.wait_for_selector(f"#count-class-{cat.pk}:has-text('20')")
    labeled = set(Annotation.objects.filter(dataset=dataset, label_class=cat).values_list("image_id", flat=True))
    assert labeled == set(blobs[1])
    page.watch.check(page)
