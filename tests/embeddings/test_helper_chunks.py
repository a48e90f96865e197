"""A run's neighbor queries shared through its storage (services.helper_chunks), in this process: the
coordinator's offer, a helper's chunk, idempotent and late helpers, and what the run's metrics say."""

import numpy as np
import pytest
from django.core.files.storage import default_storage

from embeddings import storage
from embeddings.ml.neighbors import NeighborIndex, query_chunk_bounds, query_in_chunks
from embeddings.models import RunStage, RunStatus, TrainingRun
from embeddings.services import neighbor_chunk_execute
from embeddings.services.helper_chunks import RunNeighborQueries, read_neighbor_chunk
from embeddings.services.runs import RunReporter

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running_run(make_dataset):
    dataset = make_dataset("Vectors")
    return TrainingRun.objects.create(dataset=dataset, status=RunStatus.RUNNING, stage=RunStage.LAYOUT)


def _codes(n, seed):
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


def _chunk_files(run):
    try:
        return sorted(default_storage.listdir(storage.artifact_name(run, "chunks"))[1])
    except (FileNotFoundError, OSError):
        return []


def test_helpers_answer_offered_chunks_once_and_the_coordinator_reads_them(running_run, settings):
    settings.SIMLABEL_NEIGHBOR_CHUNK_SIZE = 10
    settings.SIMLABEL_NEIGHBOR_PARALLEL_MIN_QUERIES = 1
    run, codes, queries = running_run, _codes(200, 0), _codes(45, 1)
    queries_for_run = RunNeighborQueries(run, RunReporter(run))
    # The offer goes to the broker; no worker listens here: this test plays the helpers.
    answer = queries_for_run("layout", codes, queries, 5)
    assert "neighbors-layout.npz" in _chunk_files(run)  # the job, stored before the answer is asked for

    # Two helpers: chunk 0 answered once, the second delivery of it skipped; chunk 1 too.
    assert neighbor_chunk_execute(run_id=run.pk, purpose="layout", index=0) == "done"
    assert neighbor_chunk_execute(run_id=run.pk, purpose="layout", index=0) == "skipped"
    assert neighbor_chunk_execute(run_id=run.pk, purpose="layout", index=1) == "done"
    assert neighbor_chunk_execute(run_id=run.pk, purpose="layout", index=99) == "skipped"
    assert neighbor_chunk_execute(run_id=run.pk, purpose="../layout", index=2) == "skipped"
    helper_idx, _ = read_neighbor_chunk(run, "layout", 1)
    alone_idx, alone_dist, _ = query_in_chunks(NeighborIndex(codes), queries, 5, chunk_size=10)
    assert np.array_equal(helper_idx, alone_idx[10:20])

    idx, dist = answer()
    assert np.array_equal(idx, alone_idx) and np.array_equal(dist, alone_dist)
    assert queries_for_run.info["layout"] == {
        "queries": 45,
        "count": len(query_chunk_bounds(45, 10)),
        "chunk_size": 10,
        "helpers_asked": True,
        "from_helpers": 2,
    }
    assert _chunk_files(run) == []  # job, chunks and markers deleted
    # A late helper finds no job.
    assert neighbor_chunk_execute(run_id=run.pk, purpose="layout", index=3) == "skipped"


def test_a_run_no_longer_running_gets_no_help(running_run, settings):
    settings.SIMLABEL_NEIGHBOR_CHUNK_SIZE = 10
    settings.SIMLABEL_NEIGHBOR_PARALLEL_MIN_QUERIES = 1
    run = running_run
    RunNeighborQueries(run, RunReporter(run))("clustering", _codes(50, 2), _codes(30, 3), 4)
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)
    assert neighbor_chunk_execute(run_id=run.pk, purpose="clustering", index=0) == "skipped"
    assert neighbor_chunk_execute(run_id=run.pk + 1000, purpose="clustering", index=0) == "skipped"


def test_few_queries_are_answered_here_without_an_offer(running_run, settings):
    settings.SIMLABEL_NEIGHBOR_CHUNK_SIZE = 10
    settings.SIMLABEL_NEIGHBOR_PARALLEL_MIN_QUERIES = 100
    run = running_run
    queries_for_run = RunNeighborQueries(run, RunReporter(run))
    answer = queries_for_run("layout", _codes(50, 4), _codes(30, 5), 4)
    assert _chunk_files(run) == []
    idx, _ = answer()
    assert idx.shape == (30, 4)
    assert queries_for_run.info["layout"]["helpers_asked"] is False
