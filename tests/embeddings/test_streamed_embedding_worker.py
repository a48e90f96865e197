"""A run whose preparing decodes only its training sample, embedded in chunks by two real Celery workers
that each read their own chunks' images: the codes are one process's codes of every image."""

import sys
import time
from pathlib import Path

import pytest

from embeddings.models import RunStatus, TrainingRun
from embeddings.services import training_run_start

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import FAST_PARAMS, add_kind_images  # noqa: E402

from tests.embeddings.worker_runs import assert_codes_as_one_process  # noqa: E402

pytestmark = [pytest.mark.worker, pytest.mark.slow]

# 60 images, 24 trained on: the coordinator and the helper read the rest a chunk of 8 at a time.
PARAMS = {**FAST_PARAMS, "tsne_iterations": 60, "max_train_images": 24}


def wait_for_status(run_id, statuses, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = TrainingRun.objects.get(pk=run_id)
        if run.status in statuses:
            return run
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for run {run_id} in {statuses}")


def test_a_streamed_run_across_two_workers_equals_one_process(
    transactional_db, make_user, make_dataset, worker_factory
):
    dataset = make_dataset("Streamed kinds", admin=make_user("owner"))
    add_kind_images(dataset, per_kind=20)
    for _ in range(2):
        worker = worker_factory()
        worker.env.update({"SIMLABEL_EMBED_CHUNK_SIZE": "8", "SIMLABEL_EMBED_PARALLEL_MIN_IMAGES": "1"})
        worker.start()
    run = training_run_start(dataset=dataset, user=None, params=PARAMS)
    run = wait_for_status(run.pk, {RunStatus.SUCCEEDED, RunStatus.FAILED})
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.metrics["n_images"] == 60 and run.metrics["n_unreadable"] == 0
    chunks = run.metrics["embedding_chunks"]
    assert chunks["count"] == 8 and chunks["helpers_asked"]

    assert_codes_as_one_process(run, dataset)
