"""The retrain offer in headless Chromium: the map page tells every member how many labels arrived since
the last run; an admin's "Retrain now" starts a default run, then is disabled and links the run's
progress; an annotator sees the notice without the button; the cluster page shows the same offer."""

import os
from pathlib import Path

import pytest
from django.utils import timezone

from tests.e2e.test_labeling_flow import login
from tests.factories import build_map

pytestmark = [pytest.mark.browser]

PASSWORD = "pw-Secret-123"
# Set SIMLABEL_SCREENSHOTS=<folder> to keep screenshots of the pages for a look.
SHOTS = os.environ.get("SIMLABEL_SCREENSHOTS")


def _shoot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
def labeled(make_user, make_dataset):
    """A map whose run learned from labels, then 60 new labels: a retrain is suggested."""
    from embeddings.models import TrainingRun
    from labeling.services.annotations import annotations_apply_bulk

    admin = make_user("alice", password=PASSWORD)
    annotator = make_user("anna", password=PASSWORD)
    dataset = make_dataset(name="Pets", admin=admin, members={annotator: "annotator"})
    run, (cat, dog), (cats, dogs) = build_map(dataset, blob_sizes=(40, 40), stored=True, metrics={"labels_used": 8})
    TrainingRun.objects.filter(pk=run.pk).update(started_at=timezone.now())
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=cats[:30])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=dogs[:30])
    return dataset, run


def test_an_admin_retrains_from_the_map_page(browser_page, labeled, settings):
    from embeddings.ml.run_params import run_param_defaults
    from embeddings.models import TrainingRun

    settings.SIMLABEL_MIN_RUN_IMAGES = 2
    dataset, map_run = labeled
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/map/")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    offer = page.locator("#retrain-offer")
    offer.wait_for(state="visible")
    assert page.text_content("#retrain-headline") == "60 labels since the last run — retraining would use them."
    button = page.locator("#retrain-now")
    assert button.is_enabled() and button.inner_text() == "Retrain now"
    _shoot(page, "map-admin")

    button.click()
    page.wait_for_selector("#retrain-progress-link")
    run = TrainingRun.objects.exclude(pk=map_run.pk).get(dataset=dataset)
    assert run.params == run_param_defaults() and run.created_by.username == "alice"
    assert not run.started_automatically
    assert page.is_disabled("#retrain-now")  # one run at a time
    assert page.text_content("#retrain-run").startswith(f"Run {run.pk} is queued.")
    assert page.get_attribute("#retrain-progress-link", "href") == f"/datasets/{dataset.pk}/runs/"

    # A worker takes it: the notice follows the run's progress.
    TrainingRun.objects.filter(pk=run.pk).update(status="running", stage="training", progress=0.42)
    page.wait_for_function("() => document.getElementById('retrain-run').textContent.includes('running, 42%')")
    _shoot(page, "map-admin-running")

    # Reloaded while it runs, the page says so and keeps the button disabled.
    page.reload()
    page.wait_for_selector("#retrain-progress-link")
    assert page.is_disabled("#retrain-now")
    page.watch.check(page)


def test_an_annotator_sees_the_offer_without_the_button(browser_page, labeled):
    dataset, _ = labeled
    page = browser_page
    login(page, "anna", PASSWORD)
    for path in ("map", "clusters"):
        page.goto(f"/datasets/{dataset.pk}/{path}/")
        page.locator("#retrain-offer").wait_for(state="visible")
        assert "60 labels since the last run" in page.text_content("#retrain-headline")
        assert page.locator("#retrain-now").count() == 0
        if path == "clusters":
            page.wait_for_selector("#cluster-list .cluster-card", timeout=30_000)
        _shoot(page, f"{path}-annotator")
    page.watch.check(page)


def test_no_offer_without_enough_new_labels(browser_page, make_user, make_dataset):
    alice = make_user("alice", password=PASSWORD)
    dataset = make_dataset(name="Pets", admin=alice)
    build_map(dataset, blob_sizes=(20, 20), stored=True)
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/map/")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    assert page.locator("#retrain-offer").is_hidden()
    page.watch.check(page)


def test_an_admin_turns_auto_retrain_on_in_the_settings_card(browser_page, labeled):
    from labeling.models import Dataset

    dataset, _ = labeled
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/#settings")
    assert not page.is_checked("#id_auto_retrain")
    page.check("#id_auto_retrain")
    _shoot(page, "dataset-settings")
    page.click("#settings button[type=submit]")
    page.wait_for_selector("text=Dataset updated.")
    assert Dataset.objects.get(pk=dataset.pk).auto_retrain is True
    assert page.is_checked("#id_auto_retrain")
    # The map's notice says so (the check itself runs on the next label change: tests/embeddings/test_retrain_offer.py).
    page.goto(f"/datasets/{dataset.pk}/map/")
    page.locator("#retrain-offer").wait_for(state="visible")
    assert "Auto-retrain is on" in page.text_content("#retrain-offer")
    page.watch.check(page)
