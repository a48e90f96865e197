"""Neighbor queries of a running run, answered in chunks that idle `ml` workers help with.

The layout places the points beyond its sample, and the clustering assigns the
points beyond its sample, by querying each point's nearest neighbors in an
index of the sample: many independent queries.  For a large run the
coordinator (the worker running the run) stores the job (indexed codes,
queries, k) under the run, offers every chunk of queries to the `ml` queue as
a Celery group, and works the chunks itself from the last one; a chunk a
helper finished first is read instead of computed.  Helpers start at the first
chunk, so the two meet in the middle and nobody waits for anybody.

Storage protocol, as for embedding chunks (embeddings.services.pipeline):
``chunks/neighbors-<purpose>.npz`` is the job; a helper writes its answer to a
uniquely named ``chunks/neighbors-<purpose>-<index>-<random>.npz`` and then the
marker ``chunks/neighbors-<purpose>-<index>.done`` naming it, so a chunk is
read only once complete and two helpers never overwrite each other.  The
coordinator deletes the job's files when it is done; a helper that finds no
job, a marker, or a run no longer running skips the chunk.

Every chunk is computed by embeddings.ml.neighbors.query_chunk on an index of
the same codes, and the coordinator chunks the same way whether or not anyone
helps, so a run's result does not depend on how many workers it had.  The
stages ask before they lay out or cluster their sample and take the answer
after, so helpers work while the coordinator runs t-SNE or UMAP.  Indexes
of APPROXIMATE_MIN_POINTS codes or more are not offered: every helper would
have to build its own NN-descent index (the expensive part), and its answers
are only reproducible with the same build.
"""

from __future__ import annotations

import io
import logging
import os
import re
import uuid

import numpy as np
from celery import group
from django.conf import settings
from django.core.files.storage import default_storage

# The module, not its names: embeddings.tasks imports these services in turn.
from embeddings import storage, tasks
from embeddings.ml.neighbors import NeighborIndex, query_chunk, query_chunk_bounds, query_in_chunks
from embeddings.models import RunStatus, TrainingRun

from .runs import RunReporter

logger = logging.getLogger(__name__)

PURPOSES = ("layout", "clustering")
_PURPOSE = re.compile(r"^[a-z]+$")


def setting_int(name: str, default: int) -> int:
    """A whole-number setting: Django settings first, then the environment, then the default."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name) or default
    return int(value)


def neighbor_chunk_size() -> int:
    return max(1, setting_int("SIMLABEL_NEIGHBOR_CHUNK_SIZE", 8192))


def neighbor_parallel_min_queries() -> int:
    """Stages with at least this many neighbor queries offer chunks to idle `ml` workers (0: never)."""
    return setting_int("SIMLABEL_NEIGHBOR_PARALLEL_MIN_QUERIES", 20_000)


def _job_name(purpose: str) -> str:
    return f"chunks/neighbors-{purpose}.npz"


def _marker_name(purpose: str, index: int) -> str:
    return f"chunks/neighbors-{purpose}-{index:05d}.done"


class RunNeighborQueries:
    """The run's QueryNeighborsFn (embeddings.ml.neighbors): chunked queries, helped by idle workers.

    info holds, per purpose, the chunks and how many helpers answered; it goes into the run's metrics.
    """

    def __init__(self, run: TrainingRun, reporter: RunReporter):
        self.run = run
        self.reporter = reporter
        self.info: dict = {}

    def __call__(self, purpose: str, codes: np.ndarray, queries: np.ndarray, k: int):
        """Offers the chunks now (large runs); the returned answer() works them from the last one."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown neighbor query purpose {purpose!r}")
        index = NeighborIndex(codes)
        chunk_size = neighbor_chunk_size()
        chunk_count = len(query_chunk_bounds(len(queries), chunk_size))
        minimum = neighbor_parallel_min_queries()
        offered = (
            0 < minimum <= len(queries)
            and chunk_count > 1
            and not index.approximate
            and self._offer(purpose, index, queries, k, chunk_size, chunk_count)
        )

        def done_elsewhere(chunk_index: int):
            return read_neighbor_chunk(self.run, purpose, chunk_index) if offered else None

        def on_chunk(done: int, total: int) -> None:
            self.reporter.check()  # raises RunCancelled or RunLost to stop

        def answer():
            try:
                idx, dist, from_helpers = query_in_chunks(
                    index, queries, k, chunk_size=chunk_size, done_elsewhere=done_elsewhere, on_chunk=on_chunk
                )
            finally:
                if offered:
                    delete_neighbor_chunks(self.run, purpose)
            self.info[purpose] = {
                "queries": int(len(queries)),
                "count": chunk_count,
                "chunk_size": chunk_size,
                "helpers_asked": bool(offered),
                "from_helpers": from_helpers,
            }
            return idx, dist

        return answer

    def _offer(self, purpose, index, queries, k, chunk_size, chunk_count) -> bool:
        """Stores the job and offers its chunks; False (working alone) when either fails."""
        try:
            # A retried run offers the same purpose again: answers left from its earlier attempt must not count.
            delete_neighbor_chunks(self.run, purpose)
            buf = io.BytesIO()
            np.savez(
                buf,
                codes=index.codes,
                queries=np.ascontiguousarray(queries, dtype=np.float32),
                k=k,
                chunk_size=chunk_size,
            )
            storage.write_bytes(self.run, _job_name(purpose), buf.getvalue())
            group(tasks.neighbor_chunk.s(self.run.pk, purpose, i) for i in range(chunk_count)).apply_async()
            return True
        except Exception:
            logger.exception(
                "run %s: could not hand %s neighbor queries to other workers; working alone", self.run.pk, purpose
            )
            return False


def read_neighbor_chunk(run: TrainingRun, purpose: str, index: int):
    """A helper's finished chunk (indices, distances), or None: anything odd means "compute it here"."""
    try:
        if not storage.exists(run, _marker_name(purpose, index)):
            return None
        data_name = storage.read_bytes(run, _marker_name(purpose, index)).decode().strip()
        if not data_name.startswith(f"chunks/neighbors-{purpose}-"):
            return None
        with np.load(io.BytesIO(storage.read_bytes(run, data_name)), allow_pickle=False) as data:
            return data["indices"], data["distances"]
    except Exception:
        logger.warning(
            "run %s: unreadable %s neighbor chunk %s; computing it here", run.pk, purpose, index, exc_info=True
        )
        return None


def delete_neighbor_chunks(run: TrainingRun, purpose: str) -> None:
    """The job and every chunk of it: the job first, so a late helper finds nothing to do."""
    try:
        default_storage.delete(storage.artifact_name(run, _job_name(purpose)))
    except Exception:
        logger.warning("run %s: could not delete the %s neighbor job", run.pk, purpose, exc_info=True)
    delete_chunk_files(run, f"neighbors-{purpose}-")


def delete_chunk_files(run: TrainingRun, name_prefix: str) -> None:
    """Deletes the run's chunk files (helpers' answers and their markers) whose names start with name_prefix."""
    folder = storage.artifact_name(run, "chunks")
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, OSError):
        return
    for name in files:
        if name.startswith(name_prefix):
            try:
                default_storage.delete(f"{folder}/{name}")
            except Exception:
                logger.warning("could not delete %s/%s", folder, name)


# A helper keeps the index of the job it last worked on: the next chunk of it needs no rebuild.
_helper_indexes: dict = {}


def neighbor_chunk_execute(*, run_id: int, purpose: str, index: int) -> str:
    """A helper worker answers one chunk of a running run's neighbor queries, if still needed.

    Idempotent and harmless when late: a run no longer running, a job already
    finished (its file deleted) or a chunk already answered is skipped.
    Returns "done" or "skipped".
    """
    if not isinstance(purpose, str) or not _PURPOSE.match(purpose) or purpose not in PURPOSES:
        return "skipped"
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING:
        return "skipped"
    if storage.exists(run, _marker_name(purpose, index)):
        return "skipped"
    try:
        job_bytes = storage.read_bytes(run, _job_name(purpose))
    except (FileNotFoundError, OSError):
        return "skipped"  # the coordinator finished the job
    key = (run.pk, purpose, len(job_bytes), hash(job_bytes[-4096:]))
    cached = _helper_indexes.get(key)
    if cached is None:
        with np.load(io.BytesIO(job_bytes), allow_pickle=False) as job:
            codes, queries, k, chunk_size = job["codes"], job["queries"], int(job["k"]), int(job["chunk_size"])
        _helper_indexes.clear()
        cached = _helper_indexes[key] = (NeighborIndex(codes), queries, k, chunk_size)
    neighbor_index, queries, k, chunk_size = cached
    bounds = query_chunk_bounds(len(queries), chunk_size)
    if not 0 <= index < len(bounds):
        return "skipped"
    idx, dist = query_chunk(neighbor_index, queries, bounds[index], k)
    still = TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).exists()
    if not still or not storage.exists(run, _job_name(purpose)):
        return "skipped"
    data_name = f"chunks/neighbors-{purpose}-{index:05d}-{uuid.uuid4().hex[:12]}.npz"
    buf = io.BytesIO()
    np.savez(buf, indices=idx, distances=dist)
    storage.write_bytes(run, data_name, buf.getvalue())
    storage.write_bytes(run, _marker_name(purpose, index), data_name.encode())
    return "done"
