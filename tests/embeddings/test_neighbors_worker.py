"""A run through a real Celery prefork worker keeps the scikit-learn stages on
their threads: its children are daemonic processes, where joblib's process
pool (loky) cannot start, and scikit-learn used to log 'Loky-backed parallel
loops cannot be called in a multiprocessing, setting n_jobs=1' and run the
neighbor searches (t-SNE's, UMAP's, near-duplicates') on one core."""

import sys
import time
from pathlib import Path

import pytest

from embeddings.models import RunStatus, TrainingRun
from embeddings.services import training_run_start

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import FAST_PARAMS, add_kind_images  # noqa: E402

pytestmark = [pytest.mark.worker, pytest.mark.slow]

# UMAP clustering and the exact t-SNE: both search neighbors with scikit-learn.
PARAMS = {**FAST_PARAMS, "tsne_iterations": 60, "cluster_method": "umap_kmeans"}


def test_a_prefork_worker_runs_the_neighbor_stages_without_falling_back_to_one_core(
    transactional_db, make_user, make_dataset, worker_factory
):
    admin = make_user("owner")
    dataset = make_dataset("Kinds", admin=admin)
    add_kind_images(dataset, per_kind=20)
    worker = worker_factory(extra_args=["--pool=prefork", "--concurrency=1"]).start()
    run = training_run_start(dataset=dataset, user=admin, params=PARAMS)

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run = TrainingRun.objects.get(pk=run.pk)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            break
        time.sleep(0.5)
    assert run.status == RunStatus.SUCCEEDED, run.error
    worker.wait_for("succeeded", timeout=30)
    log = worker.output()
    assert "ForkPoolWorker" in log  # the task ran in a prefork child, whose output this log holds
    assert "Loky-backed" not in log and "setting n_jobs=1" not in log, log[-4000:]
    assert run.metrics.get("near_duplicate_pairs") is not None
