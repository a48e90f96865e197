"""A run started through the API and finished by a real Celery worker (the worker tests' shared steps)."""

import time

from django.urls import reverse

from embeddings.models import RunStatus, TrainingRun


def run_through_worker(client, dataset, params: dict, timeout: float = 180) -> TrainingRun:
    """POSTs the run's params, waits until the worker has finished it, and returns it, succeeded."""
    started = client.post(reverse("run-list", kwargs={"dataset_id": dataset.pk}), params, format="json")
    assert started.status_code == 202, started.json()
    deadline = time.monotonic() + timeout
    while (run := TrainingRun.objects.get(pk=started.json()["id"])).status not in (
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
    ):
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.3)
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run
