"""The whole labeling flow in headless Chromium, checking the database after each step:
log in, create a dataset and classes, upload a zip, run the pipeline on a real
Celery worker, lasso-label on the map and undo, label a cluster after leaving one
image out, and label with the keyboard on the grid and image pages."""

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.slow]

KINDS = ("horizontal", "vertical", "blob")


def kind_png(kind: str, seed: int, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == "horizontal":
        arr = (yy // 2 % 2) * 220.0
    elif kind == "vertical":
        arr = (xx // 2 % 2) * 220.0
    else:
        arr = 230.0 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 5) ** 2))
    arr = np.clip(arr + rng.normal(0, 10, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def make_zip(path: Path, per_kind: int = 20) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for kind in KINDS:
            for i in range(per_kind):
                zf.writestr(f"{kind}/{kind}-{i:02d}.png", kind_png(kind, seed=hash((kind, i)) % 10_000))
    return path


def labels(dataset):
    from labeling.models import Annotation

    return dict(
        Annotation.objects.filter(dataset=dataset, label_class__isnull=False).values_list("image_id", "label_class_id")
    )


def screenshot(page, name):
    """Saved for the README when SIMLABEL_SCREENSHOT_DIR is set."""
    shots = os.environ.get("SIMLABEL_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"{name}.png"))


def login(page, username, password):
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/datasets/")


def lasso_points_of(page, cluster_id):
    """Screen positions of a lasso hull (a padded bounding box) around one cluster's points."""
    return page.evaluate(
        """(cluster) => {
            const gd = document.getElementById('map-plot');
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
            const pts = [];
            // traces are per cluster when coloring by cluster: name 'cluster K (n)'
            gd.data.forEach((t) => {
                if (!t.name.startsWith(`cluster ${cluster} `)) return;
                for (let j = 0; j < t.x.length; j++) pts.push([box.left + xa.l2p(t.x[j]), box.top + ya.l2p(t.y[j])]);
            });
            const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
            const pad = 6;
            return {count: pts.length, x0: Math.min(...xs) - pad, x1: Math.max(...xs) + pad,
                    y0: Math.min(...ys) - pad, y1: Math.max(...ys) + pad};
        }""",
        cluster_id,
    )


def drag_lasso(page, hull) -> list[int]:
    """Draw a lasso along the hull's box (lasso_points_of); the ids the selection panel then shows."""
    page.mouse.move(hull["x0"], hull["y0"])
    page.mouse.down()
    for x, y in (
        (hull["x1"], hull["y0"]),
        (hull["x1"], hull["y1"]),
        (hull["x0"], hull["y1"]),
        (hull["x0"], hull["y0"] + 1),
    ):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.wait_for_selector("#selection-panel:not(.hidden)")
    return [
        int(v) for v in page.eval_on_selector_all("#selection-thumbs .thumb", "els => els.map(e => e.dataset.imageId)")
    ]


def test_label_a_dataset_in_the_browser(browser_page, live_server, celery_worker_process, make_user, tmp_path):
    from embeddings.models import ImageEmbedding, TrainingRun
    from labeling.models import Annotation, Dataset, Image, LabelClass

    page = browser_page
    make_user("alice", password="pw-Secret-123")

    # 1. Log in, create a dataset and two classes with shortcuts.
    login(page, "alice", "pw-Secret-123")
    page.fill("#create-dataset-form #id_name", "Stripes & blobs")
    page.click("#create-dataset-form button[type=submit]")
    page.wait_for_url("**/upload/")
    dataset = Dataset.objects.get(name="Stripes & blobs")
    page.goto(f"/datasets/{dataset.pk}/")
    for name, key in (("stripes", "s"), ("blob", "o")):
        page.fill("#id_class_name", name)
        page.fill("#id_class_shortcut", key)
        page.click("#add-class-form button[type=submit]")
        page.wait_for_selector(f"text=Class “{name}” added.")
    stripes = LabelClass.objects.get(dataset=dataset, name="stripes")
    blob = LabelClass.objects.get(dataset=dataset, name="blob")
    assert (stripes.shortcut, blob.shortcut) == ("s", "o")

    # 2. Upload a zip of 60 PNGs through the upload page.
    page.goto(f"/datasets/{dataset.pk}/upload/")
    page.set_input_files("#file-input", str(make_zip(tmp_path / "kinds.zip")))
    page.wait_for_selector("body[data-upload-done=true]", timeout=60_000)
    assert page.text_content("#count-stored") == "60"
    assert Image.objects.filter(dataset=dataset).count() == 60

    # 3. Start a small run and watch it finish.
    page.goto(f"/datasets/{dataset.pk}/runs/")
    page.fill("#p-epochs", "2")
    page.fill("#p-code-size", "4")
    page.fill("#p-n-clusters", "3")
    page.click("#start-run-form summary")
    page.fill("#p-batch-size", "16")
    page.click("#start-run-button")
    page.wait_for_selector(
        "body[data-run-status=succeeded], body[data-run-status=failed], body[data-run-status=cancelled]",
        timeout=300_000,
    )
    run = TrainingRun.objects.get(dataset=dataset)
    assert run.status == "succeeded", f"{run.status}: {run.error}\n{celery_worker_process.output()[-3000:]}"
    assert run.params["epochs"] == 2
    assert ImageEmbedding.objects.filter(run=run).count() == 60
    assert page.is_visible("#loss-chart .main-svg")
    page.wait_for_selector("#recon-grid img", timeout=30_000)
    screenshot(page, "runs")

    # 4. Lasso one cluster on the map, leave one image out, apply a class, see the counts, undo.
    page.goto(f"/datasets/{dataset.pk}/map/?color=cluster")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    screenshot(page, "map")
    hull = lasso_points_of(page, 0)
    assert hull["count"] > 0
    selected = drag_lasso(page, hull)
    screenshot(page, "map-selection")
    assert len(selected) >= hull["count"]
    left_out = selected[0]
    page.click(f"#selection-thumbs .thumb[data-image-id='{left_out}']")
    page.keyboard.press("s")
    page.wait_for_selector("#undo-last")
    expected = set(selected) - {left_out}
    assert labels(dataset) == {image_id: stripes.pk for image_id in expected}
    assert page.text_content(f"#count-class-{stripes.pk}") == str(len(expected))
    assert page.text_content("#count-unlabeled") == str(60 - len(expected))
    page.click("#undo-last")
    expect(page.locator(f"#count-class-{stripes.pk}")).to_have_text("0")
    assert labels(dataset) == {}
    page.watch.check(page)

    # 5. Label a cluster in the cluster browser after leaving one thumbnail out.
    page.goto(f"/datasets/{dataset.pk}/clusters/")
    page.wait_for_selector("body[data-clusters-ready=true]")
    card = page.locator(".cluster-card").first
    cluster_id = int(card.get_attribute("data-cluster"))
    members = set(ImageEmbedding.objects.filter(run=run, cluster=cluster_id).values_list("image_id", flat=True))
    first_thumb = card.locator(".thumb").first
    excluded = int(first_thumb.get_attribute("data-image-id"))
    first_thumb.click()
    screenshot(page, "clusters")
    card.locator("select.cluster-class").select_option(str(blob.pk))
    card.locator("button.label-cluster").click()
    page.wait_for_selector("#undo-last")
    assert labels(dataset) == {image_id: blob.pk for image_id in members - {excluded}}
    page.watch.check(page)

    # 6. Keyboard labeling on the grid: a key labels the focused image, space selects, z undoes.
    before = labels(dataset)
    page.goto(f"/datasets/{dataset.pk}/label/")
    page.wait_for_selector("body[data-grid-ready=true]")
    remaining = int(page.text_content("#count-remaining"))
    assert remaining == 60 - len(before)
    first = int(page.get_attribute("#label-grid .thumb.focused", "data-image-id"))
    page.keyboard.press("s")
    expect(page.locator("#count-done")).to_have_text("1")
    assert labels(dataset)[first] == stripes.pk
    page.keyboard.press(" ")
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")
    screenshot(page, "grid")
    chosen = [
        int(v)
        for v in page.eval_on_selector_all("#label-grid .thumb.selected", "els => els.map(e => e.dataset.imageId)")
    ]
    assert len(chosen) == 2
    page.keyboard.press("o")
    expect(page.locator("#count-done")).to_have_text("3")
    assert all(labels(dataset)[image_id] == blob.pk for image_id in chosen)
    page.keyboard.press("z")
    expect(page.locator("#count-done")).to_have_text("1")
    now = labels(dataset)
    assert all(image_id not in now for image_id in chosen) and now[first] == stripes.pk
    page.watch.check(page)

    # 7. The image page: a shortcut key sets the class with the annotation's version.
    target = Image.objects.filter(dataset=dataset).exclude(pk__in=list(labels(dataset))).order_by("id").first()
    page.goto(f"/images/{target.pk}/")
    page.wait_for_selector("body[data-image-ready=true]")
    page.keyboard.press("o")
    page.wait_for_selector("#current-class .chip")
    annotation = Annotation.objects.get(image=target)
    assert annotation.label_class_id == blob.pk and annotation.version >= 1
    assert page.text_content("#current-class").strip() == "blob"
    page.wait_for_selector("#similar .thumb")
    screenshot(page, "image")
    page.watch.check(page)
