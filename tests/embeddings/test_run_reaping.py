"""A dead worker's run: selectors only read it; the views that show runs reap it first, explicitly."""

from datetime import timedelta

import pytest
from django.utils import timezone

from embeddings import selectors
from embeddings.models import RunStatus, TrainingRun
from embeddings.services.runs import STALE_REASON
from tests.factories import ImageFactory


@pytest.fixture
def dead_run(settings, make_user, make_dataset):
    settings.SIMLABEL_RUN_HEARTBEAT_TIMEOUT = 30
    admin = make_user("alice")
    dataset = make_dataset("Digits", admin=admin)
    ImageFactory.create_batch(3, dataset=dataset, width=8, height=8)
    run = TrainingRun.objects.create(
        dataset=dataset,
        status=RunStatus.RUNNING,
        worker="host pid 1",
        heartbeat_at=timezone.now() - timedelta(seconds=31),
    )
    return admin, dataset, run


def _status(run) -> str:
    return TrainingRun.objects.values_list("status", flat=True).get(pk=run.pk)


def test_selectors_read_a_dead_run_without_changing_it(dead_run):
    _, dataset, run = dead_run
    assert selectors.active_run(dataset) == run
    assert list(selectors.dataset_runs(dataset)) == [run]
    assert selectors.run_status(run)["status"] == RunStatus.RUNNING
    assert _status(run) == RunStatus.RUNNING


@pytest.mark.parametrize("path", ["/api/runs/{run}/", "/api/datasets/{dataset}/runs/"])
def test_the_run_api_shows_a_dead_run_failed(client, dead_run, path):
    admin, dataset, run = dead_run
    client.force_login(admin)
    response = client.get(path.format(run=run.pk, dataset=dataset.pk))
    assert response.status_code == 200
    body = response.json()
    shown = body["results"][0] if "results" in body else body
    assert shown["status"] == RunStatus.FAILED and STALE_REASON in shown["error"]
    assert _status(run) == RunStatus.FAILED


@pytest.mark.parametrize("page", ["runs", "map"])
def test_the_run_pages_show_a_dead_run_failed(client, dead_run, page):
    admin, dataset, run = dead_run
    client.force_login(admin)
    assert client.get(f"/datasets/{dataset.pk}/{page}/").status_code == 200
    assert _status(run) == RunStatus.FAILED


def test_the_periodic_task_reaps_dead_runs(dead_run):
    from embeddings.tasks import fail_stale_runs

    _, _, run = dead_run
    assert fail_stale_runs() == 1
    assert _status(run) == RunStatus.FAILED
