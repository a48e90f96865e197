"""The training page in headless Chromium: a run started with the form untouched stores the declared
defaults; the status note follows the live status; the loss chart draws the epoch means and the batch
losses as two traces; a failed run shows members a one-line reason and admins the traceback and worker."""

import pytest

from embeddings.ml.run_params import run_param_defaults
from tests.e2e.test_labeling_flow import login
from tests.factories import bulk_images

pytestmark = [pytest.mark.browser]

PASSWORD = "pw-Secret-123"


@pytest.fixture
def team(make_user, make_dataset):

    admin = make_user("alice", password=PASSWORD)
    annotator = make_user("anna", password=PASSWORD)
    dataset = make_dataset(name="Digits", admin=admin, members={annotator: "annotator"})
    bulk_images(dataset, 12)
    return dataset, admin, annotator


def _note(page):
    return page.text_content("#start-run-note").strip()


def test_a_run_started_with_untouched_fields_stores_the_declared_defaults_and_the_note_follows_it(browser_page, team):
    from embeddings.models import TrainingRun

    dataset, _, _ = team
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/runs/")
    assert page.input_value("#p-code-size") == "32" and page.input_value("#p-n-clusters") == ""
    assert page.get_attribute("#p-n-clusters", "placeholder") == "auto"
    page.click("#start-run-button")
    page.wait_for_function("() => document.getElementById('start-run-note').textContent.includes('queued')")
    run = TrainingRun.objects.get(dataset=dataset)
    # Exactly the declaration's defaults: 32 / 128 / 0.003, "auto" stored as None.
    assert run.params == run_param_defaults()
    assert (run.params["code_size"], run.params["batch_size"], run.params["learning_rate"]) == (32, 128, 0.003)
    assert _note(page) == f"Run {run.pk} is queued: one run at a time."
    assert page.is_disabled("#start-run-button")

    # A worker takes it: the card and the note both say running.
    TrainingRun.objects.filter(pk=run.pk).update(status="running", stage="training", progress=0.3)
    page.wait_for_function("() => document.getElementById('live-status').textContent === 'running'")
    assert _note(page) == f"Run {run.pk} is running: one run at a time."

    # It ends: no note about an active run, and a new run can start.
    TrainingRun.objects.filter(pk=run.pk).update(status="cancelled", error="cancelled by a user")
    page.wait_for_function("() => document.getElementById('live-status').textContent === 'cancelled'")
    assert _note(page) == ""
    assert not page.is_disabled("#start-run-button")
    page.watch.check(page)


def test_a_page_loaded_while_queued_follows_the_run_to_running(browser_page, team):
    """The bug as reported: "Run 2 is queued" under a card that says RUNNING."""
    from embeddings.models import TrainingRun

    dataset, _, _ = team
    run = TrainingRun.objects.create(dataset=dataset, status="queued")
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/runs/")
    page.wait_for_function("() => document.getElementById('live-status').textContent === 'queued'")
    assert _note(page) == f"Run {run.pk} is queued: one run at a time."
    TrainingRun.objects.filter(pk=run.pk).update(status="running", stage="training", progress=0.3)
    page.wait_for_function("() => document.getElementById('live-status').textContent === 'running'")
    assert _note(page) == f"Run {run.pk} is running: one run at a time."
    assert page.text_content(f"#runs-table tr[data-run-id='{run.pk}'] .badge") == "running"
    page.watch.check(page)


def test_the_loss_chart_draws_epoch_means_and_batch_losses_as_separate_traces(browser_page, team):
    from embeddings.models import TrainingRun

    dataset, _, _ = team
    curve = []
    for epoch in (1, 2, 3):
        for k in (1, 2):
            curve.append(
                {"kind": "batch", "step": 4 * (epoch - 1) + 2 * k, "epoch": epoch, "loss": 0.2 / epoch + 0.01 * k}
            )
        curve.append({"kind": "epoch", "step": 4 * epoch, "epoch": epoch, "loss": 0.2 / epoch})
    TrainingRun.objects.create(dataset=dataset, status="running", stage="training", loss_curve=curve)
    page = browser_page
    login(page, "anna", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/runs/")
    page.wait_for_function("() => (document.getElementById('loss-chart').data || []).length === 2")
    traces = page.evaluate(
        "() => document.getElementById('loss-chart').data.map(t => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)}))"
    )
    by_name = {t["name"]: t for t in traces}
    assert by_name["epoch mean"]["x"] == [4, 8, 12]
    assert by_name["epoch mean"]["y"] == pytest.approx([0.2, 0.1, 0.2 / 3])
    assert by_name["batch loss"]["x"] == [2, 4, 6, 8, 10, 12]
    for trace in traces:
        assert len(set(trace["x"])) == len(trace["x"])  # one point per x in each series: no jumps
    page.watch.check(page)


def test_a_failed_run_shows_members_the_reason_and_admins_the_detail(browser_page, team):
    from embeddings.models import TrainingRun

    dataset, _, _ = team
    TrainingRun.objects.create(
        dataset=dataset,
        status="failed",
        worker="celery@gpu-host-7 pid 4242",
        error="ValueError: 12 of 12 images could not be read",
        error_detail='worker: celery@gpu-host-7 pid 4242\n\nTraceback (most recent call last):\n  File "/srv/x.py"',
    )
    page = browser_page
    login(page, "anna", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/runs/")
    page.wait_for_function("() => document.body.dataset.runStatus === 'failed'")
    assert page.text_content("#live-error") == "ValueError: 12 of 12 images could not be read"
    assert not page.is_visible("#live-error-detail")
    text = page.text_content("body")
    assert "Traceback" not in text and "gpu-host-7" not in text and "4242" not in text
    page.watch.check(page)

    page.context.clear_cookies()  # signed out: sign in as the admin
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/runs/")
    page.wait_for_function("() => document.body.dataset.runStatus === 'failed'")
    assert page.text_content("#live-error") == "ValueError: 12 of 12 images could not be read"
    assert page.is_visible("#live-error-detail")
    page.click("#live-error-detail summary")
    detail = page.text_content("#live-error-detail pre")
    assert "Traceback (most recent call last)" in detail and "celery@gpu-host-7 pid 4242" in detail
    page.watch.check(page)


def test_a_backbone_run_is_started_by_picking_the_backbone_by_name(browser_page, team):
    """The Backbone field is a menu of the dataset's registered backbones (not an id to type); picking
    one with the pretrained-backbone embedding stores its id in the run's parameters."""
    from embeddings.models import TrainingRun
    from embeddings.services.backbones import backbone_register
    from tests.e2e.test_labeling_flow import screenshot
    from tests.embeddings.backbone_models import MEAN, SIZE, STD, torchscript_bytes

    dataset, admin, _ = team
    backbone = backbone_register(
        dataset=dataset,
        user=admin,
        name="tiny-cnn",
        data=torchscript_bytes(),
        fmt="torchscript",
        input_size=(SIZE, SIZE),
        mean=MEAN,
        std=STD,
    )
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/runs/")
    if not page.is_visible("#p-backbone"):
        page.click("#start-run-form summary")
    options = page.eval_on_selector_all("#p-backbone option", "els => els.map(e => [e.value, e.textContent])")
    assert options == [["", "none"], [str(backbone.pk), f"tiny-cnn (7 values, #{backbone.pk})"]]
    page.select_option("#p-embedding", "backbone")
    page.select_option("#p-backbone", str(backbone.pk))
    screenshot(page, "runs-backbone")
    page.click("#start-run-button")
    page.wait_for_function("() => document.getElementById('start-run-note').textContent.includes('queued')")
    run = TrainingRun.objects.get(dataset=dataset)
    assert run.params["embedding"] == "backbone" and run.params["backbone"] == backbone.pk
    page.watch.check(page)


def test_patch_features_are_chosen_under_advanced_and_stored_with_the_run(browser_page, team):
    from embeddings.models import TrainingRun
    from tests.e2e.test_labeling_flow import screenshot

    dataset, _, _ = team
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/runs/")
    page.click("summary:has-text('Advanced')")
    assert page.input_value("#p-patch-features") == "auto"
    options = page.eval_on_selector_all("#p-patch-features option", "els => els.map(e => e.value)")
    assert options == ["auto", "on", "off"]
    page.select_option("#p-patch-features", "off")
    screenshot(page, "runs-advanced-patch-features")
    page.click("#start-run-button")
    page.wait_for_function("() => document.getElementById('start-run-note').textContent.includes('queued')")
    run = TrainingRun.objects.get(dataset=dataset)
    assert run.params["patch_features"] == "off"
    assert {k: v for k, v in run.params.items() if k != "patch_features"} == {
        k: v for k, v in run_param_defaults().items() if k != "patch_features"
    }
    page.watch.check(page)
