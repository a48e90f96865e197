"""The training page in headless Chromium with uploaded vectors: the form offers embedding=uploaded and
starts such a run; a finished one says why it has no reconstructions and how many newer images it cannot show."""

import pytest

from tests.e2e.test_labeling_flow import login
from tests.factories import bulk_images

pytestmark = [pytest.mark.browser]

PASSWORD = "pw-Secret-123"


@pytest.fixture
def team(make_user, make_dataset):
    admin = make_user("alice", password=PASSWORD)
    dataset = make_dataset(name="Photos", admin=admin)
    bulk_images(dataset, 12)
    return dataset, admin, None


def test_a_run_on_uploaded_vectors_is_started_from_the_form_and_shows_no_reconstructions(browser_page, team):
    import numpy as np

    from embeddings.models import TrainingRun
    from embeddings.services.embeddings_upload import uploaded_embeddings_store
    from labeling.models import Image

    dataset, admin, _ = team
    ids = np.asarray(Image.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True))
    vectors = np.random.default_rng(0).normal(size=(len(ids), 8)).astype(np.float32)
    uploaded_embeddings_store(dataset=dataset, user=admin, image_ids=ids, vectors=vectors)
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/runs/")
    # The form offers the parameter from its declaration, the autoencoder chosen.
    assert page.input_value("#p-embedding") == "autoencoder"
    page.select_option("#p-embedding", "uploaded")
    page.click("#start-run-button")
    page.wait_for_function("() => document.getElementById('start-run-note').textContent.includes('queued')")
    run = TrainingRun.objects.get(dataset=dataset)
    assert run.params["embedding"] == "uploaded"
    page.wait_for_function("() => document.getElementById('live-metrics').textContent.includes('uploaded vectors')")

    # It succeeds (as a worker would leave it): no decoder, so no reconstructions, said in words.
    TrainingRun.objects.filter(pk=run.pk).update(
        status="succeeded",
        stage="done",
        progress=1.0,
        image_count=len(ids),
        cluster_count=3,
        metrics={"embedding": "uploaded", "unplaced_images": 2, "unplaced_reason": "no vector for them"},
    )
    page.wait_for_function("() => document.body.dataset.runStatus === 'succeeded'")
    page.wait_for_selector("#reconstructions:not(.hidden)")
    assert "No reconstructions for uploaded embeddings" in page.text_content("#recon-note")
    assert page.query_selector("#recon-grid img") is None
    assert "2 newer images not on the map: no vector for them" in page.text_content("#live-metrics")
    page.reload()
    assert "uploaded vectors" in page.text_content(f"#runs-table tr[data-run-id='{run.pk}']")
    page.watch.check(page)


def test_a_finished_run_says_which_objective_trained_it_and_why(browser_page, team):
    from embeddings.models import TrainingRun

    dataset, admin, _ = team
    TrainingRun.objects.create(
        dataset=dataset,
        created_by=admin,
        status="succeeded",
        stage="done",
        progress=1.0,
        image_count=12,
        cluster_count=3,
        params={"objective": "auto"},
        metrics={
            "objective": "contrastive",
            "objective_reason": "auto: 3-channel images",
            "patch_features": True,
            "patch_features_reason": "auto: contrastive codes of 3-channel photos",
            "final_loss": 0.5,
        },
    )
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/runs/")
    page.wait_for_function("() => document.body.dataset.runStatus === 'succeeded'")
    facts = page.text_content("#live-metrics")
    assert "objective: contrastive (auto: 3-channel images)" in facts
    assert "patch features: yes (auto: contrastive codes of 3-channel photos)" in facts
    page.screenshot(path="/tmp/pages-runs-objective.png")
    page.watch.check(page)
