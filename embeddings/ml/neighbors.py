"""Nearest neighbors in code space, behind one interface: similar images, the
kNN graph, near-duplicates, placing and assigning new images.

Exact search where it is cheap (small datasets, a few queries), approximate
search (NN-descent, pynndescent) where exact search grows with N x M: the
callers do not choose, ``use_approximate`` does, by size.  The thresholds come
from ``bench/neighbors.py`` (README, "Neighbor search").

Every stage runs its parallel loops on threads (``parallel_threads``): inside a
Celery prefork child, joblib's default process pool (loky) cannot start and
scikit-learn silently fell back to one core.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np

_CHUNK = 2048
_FEW_QUERIES = 8
# From this many codes a few queries take BLAS's matrix-vector product instead of einsum.
_MATVEC_MIN_CODES = 200_000

# Below this many indexed points exact search is used: an NN-descent index costs
# more to build than exact search saves (bench/neighbors.py, 2 cores: at 100,000
# 32-d codes the exact kNN graph took ~9x the approximate one; at 20,000 10-d
# codes the two were within a second).
APPROXIMATE_MIN_POINTS = 50_000
# Queries x indexed points under which brute force answers queries directly.
_BRUTE_FORCE_MAX_WORK = 20_000_000
# NN-descent: neighbors kept per point in the index graph and the query search
# breadth; measured recall at k = 10 >= 0.97 on 10-64-d clustered codes.
_INDEX_NEIGHBORS = 30
_QUERY_EPSILON = 0.2


def resolve_threads(n_jobs: int | None = None) -> int:
    """None or < 1: the cores this process may run on (at most 8)."""
    if n_jobs is not None and n_jobs >= 1:
        return int(n_jobs)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


@contextmanager
def parallel_threads(n_jobs: int | None = None):
    """joblib loops inside on threads, n_jobs of them (scikit-learn's tree
    queries release the GIL).  The process-based default cannot run in a
    daemonic worker process and would quietly use one core."""
    import joblib

    with joblib.parallel_config(backend="threading", n_jobs=resolve_threads(n_jobs)):
        yield


def use_approximate(n_points: int, method: str = "auto") -> bool:
    """Whether an index over n_points codes searches approximately."""
    if method not in ("auto", "exact", "approximate"):
        raise ValueError(f"unknown neighbor method {method!r}; one of auto, exact, approximate")
    if method == "auto":
        return n_points >= APPROXIMATE_MIN_POINTS
    return method == "approximate"


_PYNNDESCENT_MODULES = ("pynndescent_", "rp_trees", "utils", "distances", "graph_utils", "kernels")


def _cache_pynndescent_kernels() -> None:
    """Put pynndescent's kernels compiled without ``cache=True`` into numba's disk
    cache (as _umap does for umap-learn): a fresh process's first NN-descent went
    from ~45 s to ~20 s of compiling on the 2 busy cores.  Kernels it builds as
    closures at run time still compile once per process."""
    import importlib

    from ._umap import enable_kernel_caching

    enable_kernel_caching([importlib.import_module(f"pynndescent.{name}") for name in _PYNNDESCENT_MODULES])


def _nndescent(codes: np.ndarray, n_neighbors: int, seed: int, n_jobs: int | None, parallel_queries: bool = False):
    from ._umap import ensure_numba_cache_dir

    ensure_numba_cache_dir()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pynndescent import NNDescent

        _cache_pynndescent_kernels()

        return NNDescent(
            codes,
            metric="euclidean",
            n_neighbors=max(2, min(n_neighbors, len(codes) - 1)),
            random_state=seed,
            n_jobs=resolve_threads(n_jobs),
            low_memory=True,
            # Batch queries on numba's threads: a million-image run's 900,000 cluster
            # assignments ran on one of two cores otherwise (see README, scale benchmark).
            parallel_batch_queries=parallel_queries,
            verbose=False,
        )


def _drop_self(idx: np.ndarray, dist: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove row i's own index from each answer (k + 1 columns), keeping k.
    With exact duplicates the point may not come first, so remove it by
    identity rather than by position; where it fell off, drop the farthest."""
    n = len(idx)
    is_self = idx == rows[:, None]
    first = is_self & (np.cumsum(is_self, axis=1) == 1)  # a duplicated id (approximate) drops once
    no_self = ~first.any(axis=1)
    first[no_self, -1] = True
    keep = ~first
    return idx[keep].reshape(n, k).astype(np.int64), dist[keep].reshape(n, k).astype(np.float32)


class NeighborIndex:
    """Euclidean neighbor search over codes (N, D).

    A few queries, or a small index: brute force with numpy (for 100,000 10-d
    codes one query scans 1M floats, a couple of milliseconds, with no index
    to build or keep in sync).  Many queries against a large index: an
    NN-descent index built on first use (``use_approximate``), or exact tree
    search below its size.  ``seed`` fixes the approximate answers.
    """

    def __init__(self, codes: np.ndarray, method: str = "auto", seed: int = 0, n_jobs: int | None = None):
        self.codes = np.ascontiguousarray(codes, dtype=np.float32)
        if self.codes.ndim != 2:
            raise ValueError("codes must be 2-D (N, D)")
        self._sq_norms = np.einsum("ij,ij->i", self.codes, self.codes)
        self.approximate = use_approximate(len(self.codes), method)
        self.seed = seed
        self.n_jobs = n_jobs
        self._tree = None
        self._nnd = None

    def __len__(self) -> int:
        return len(self.codes)

    def _partial_sq_dists(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(|c|^2 - 2 q.c for every query and code (M, N), |q|^2 (M, 1)): the squared
        distances less each query's own constant, which does not change a row's
        order; _brute_force adds it back to the k it keeps, not to all N."""
        q = np.asarray(queries, dtype=np.float32)
        if len(q) <= _FEW_QUERIES and len(self.codes) < _MATVEC_MIN_CODES:
            # A few queries (a web request): einsum runs in this thread, where a
            # BLAS matmul would wake a thread pool that, on a busy machine, costs
            # ten times the arithmetic.
            dots = np.einsum("ij,kj->ki", self.codes, q)
        elif len(q) <= _FEW_QUERIES:
            # Against a million codes BLAS's matrix-vector product is 2x einsum's speed
            # (15 -> 7 ms idle, 29 -> 16 ms with both cores busy): the arithmetic dominates.
            dots = (self.codes @ q.T).T
        else:
            dots = q @ self.codes.T
        d = self._sq_norms[None, :] - 2.0 * dots
        return d, np.einsum("ij,ij->i", q, q)[:, None]

    def query_many(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(indices (M, k), distances (M, k)) nearest first.  exclude[m] is an
        index to leave out of row m's answer (the query point itself), or -1."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        m = len(queries)
        k = min(k, len(self) - (1 if exclude is not None else 0))
        if k <= 0:
            return np.zeros((m, 0), dtype=np.int64), np.zeros((m, 0), dtype=np.float32)
        if m <= _FEW_QUERIES or m * len(self) <= _BRUTE_FORCE_MAX_WORK:
            return self._brute_force(queries, k, exclude)
        extra = 1 if exclude is not None else 0
        idx, dist = self._search(queries, k + extra)
        if exclude is None:
            return idx.astype(np.int64), dist.astype(np.float32)
        ex = np.asarray(exclude, dtype=np.int64)
        return _drop_self(idx, dist, ex, k)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.approximate:
            if self._nnd is None:
                threads = resolve_threads(self.n_jobs)
                self._nnd = _nndescent(
                    self.codes, _INDEX_NEIGHBORS, self.seed, self.n_jobs, parallel_queries=threads > 1
                )
                self._nnd.prepare()
            idx, dist = self._nnd.query(queries, k=k, epsilon=_QUERY_EPSILON)
            return idx, dist
        if self._tree is None:
            from sklearn.neighbors import NearestNeighbors

            self._tree = NearestNeighbors().fit(self.codes)
        with parallel_threads(self.n_jobs):
            dist, idx = self._tree.kneighbors(queries, n_neighbors=k)
        return idx, dist

    def _brute_force(self, queries: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        m = len(queries)
        out_idx = np.empty((m, k), dtype=np.int64)
        out_dist = np.empty((m, k), dtype=np.float32)
        for start in range(0, m, _CHUNK):
            stop = min(m, start + _CHUNK)
            d, q_sq = self._partial_sq_dists(queries[start:stop])
            if exclude is not None:
                rows = np.arange(stop - start)
                ex = np.asarray(exclude[start:stop])
                valid = ex >= 0
                d[rows[valid], ex[valid]] = np.inf
            if k < d.shape[1]:
                part = np.argpartition(d, k - 1, axis=1)[:, :k]
            else:
                part = np.tile(np.arange(d.shape[1]), (len(d), 1))
            pd = np.maximum(np.take_along_axis(d, part, axis=1) + q_sq, 0.0)
            order = np.argsort(pd, axis=1, kind="stable")
            out_idx[start:stop] = np.take_along_axis(part, order, axis=1)
            out_dist[start:stop] = np.sqrt(np.take_along_axis(pd, order, axis=1))
        return out_idx, out_dist

    def query(self, vector_or_index, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest images to a code vector, or to the image at an integer
        index (which is then left out of its own answer).  Always exact: one
        query costs milliseconds by brute force."""
        if isinstance(vector_or_index, (int, np.integer)):
            i = int(vector_or_index)
            if not 0 <= i < len(self):
                raise IndexError(i)
            idx, dist = self.query_many(self.codes[i : i + 1], k, exclude=np.array([i]))
        else:
            vec = np.asarray(vector_or_index, dtype=np.float32).reshape(1, -1)
            idx, dist = self.query_many(vec, k)
        return idx[0], dist[0]


# --- many queries, in chunks other processes may answer ------------------------------------------

# (purpose, indexed codes (N, D), queries (M, D), k) -> answer, where answer() returns (indices (M, k),
# distances (M, k)): how the layout and the clustering ask for the neighbors of the points beyond their
# samples.  They ask as soon as the queries are known and call answer() once they need it, so a
# caller may have other workers answer meanwhile; purpose ("layout", "clustering") names the job.
QueryNeighborsFn = Callable[[str, np.ndarray, np.ndarray, int], Callable[[], tuple[np.ndarray, np.ndarray]]]


def query_neighbors(
    purpose: str, codes: np.ndarray, queries: np.ndarray, k: int
) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """The default QueryNeighborsFn: one index, every query answered here when the answer is asked for."""
    return lambda: NeighborIndex(codes).query_many(queries, k)


def query_chunk_bounds(n_queries: int, chunk_size: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of the queries, chunk_size rows each (the last one shorter)."""
    chunk_size = max(1, int(chunk_size))
    return [(start, min(n_queries, start + chunk_size)) for start in range(0, n_queries, chunk_size)]


def query_chunk(index: NeighborIndex, queries: np.ndarray, bounds: tuple[int, int], k: int):
    """(indices, distances) of one chunk of queries: the one computation a coordinator and
    its helpers share, so a chunk answered anywhere is the same array."""
    start, stop = bounds
    return index.query_many(queries[start:stop], k)


def query_in_chunks(
    index: NeighborIndex,
    queries: np.ndarray,
    k: int,
    *,
    chunk_size: int,
    done_elsewhere: Callable[[int], tuple[np.ndarray, np.ndarray] | None] | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(indices (M, k), distances (M, k), chunks answered elsewhere) for all queries, chunk by chunk.

    done_elsewhere(index) may return a chunk another process already answered
    (query_chunk on the same index); chunks are worked from the last to the
    first, so this process and helpers (which start at the first) meet in the
    middle.  on_chunk(done, total) after each chunk; it may raise to stop.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    k = max(0, min(int(k), len(index)))
    out_idx = np.empty((len(queries), k), dtype=np.int64)
    out_dist = np.empty((len(queries), k), dtype=np.float32)
    bounds = query_chunk_bounds(len(queries), chunk_size)
    from_elsewhere = 0
    for position, chunk in enumerate(reversed(bounds)):
        chunk_index = len(bounds) - 1 - position
        found = done_elsewhere(chunk_index) if done_elsewhere is not None else None
        if found is not None and found[0].shape == (chunk[1] - chunk[0], k):
            idx, dist = found
            from_elsewhere += 1
        else:
            idx, dist = query_chunk(index, queries, chunk, k)
        out_idx[chunk[0] : chunk[1]] = idx
        out_dist[chunk[0] : chunk[1]] = dist
        if on_chunk is not None:
            on_chunk(position + 1, len(bounds))
    return out_idx, out_dist, from_elsewhere


def knn_graph(
    codes: np.ndarray, k: int, n_jobs: int | None = None, method: str = "auto", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Each point's k nearest other points: (indices (N, k), distances (N, k)),
    nearest first.

    Exact (scikit-learn's tree search: for ~10-d codes far faster than brute
    force at 100,000 points) below APPROXIMATE_MIN_POINTS, NN-descent above;
    the same seed gives the same graph.
    """
    codes = np.ascontiguousarray(codes, dtype=np.float32)
    n = len(codes)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
    idx, dist = knn_graph_with_self(codes, k + 1, n_jobs=n_jobs, method=method, seed=seed)
    return _drop_self(idx, dist, np.arange(n), k)


def knn_graph_with_self(
    codes: np.ndarray, k: int, n_jobs: int | None = None, method: str = "auto", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Each point's k nearest points, itself among them (first, unless it has
    exact duplicates): the form UMAP takes as ``precomputed_knn``."""
    codes = np.ascontiguousarray(codes, dtype=np.float32)
    n = len(codes)
    k = min(k, n)
    if use_approximate(n, method) and k < n:
        index = _nndescent(codes, max(k, _INDEX_NEIGHBORS), seed, n_jobs)
        idx, dist = index.neighbor_graph
        return idx[:, :k].astype(np.int64), dist[:, :k].astype(np.float32)
    from sklearn.neighbors import NearestNeighbors

    with parallel_threads(n_jobs):
        dist, idx = NearestNeighbors(n_neighbors=k).fit(codes).kneighbors(codes)
    return idx.astype(np.int64), dist.astype(np.float32)


def near_duplicate_pairs(
    codes: np.ndarray, threshold: float | None = None, relative: float = 0.1, method: str = "auto", seed: int = 0
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, distance), i < j, of images whose codes are within threshold,
    closest first.  threshold None: ``relative`` times the median distance from
    an image to its nearest neighbor, so it scales with the code space and
    finds nothing in data without duplicates.

    Exact radius search on small datasets; on large ones the pairs come from
    the approximate kNN graph (near-duplicates are each other's nearest
    neighbors; a group of more than DUPLICATE_GROUP copies keeps the closest).
    """
    return near_duplicate_pairs_and_threshold(codes, threshold, relative, method, seed)[0]


def near_duplicate_pairs_and_threshold(
    codes: np.ndarray, threshold: float | None = None, relative: float = 0.1, method: str = "auto", seed: int = 0
) -> tuple[list[tuple[int, int, float]], float]:
    """near_duplicate_pairs and the threshold it used, from one neighbor search:
    on large datasets the threshold and the pairs come from the same kNN graph
    (building it twice cost a million-image run minutes)."""
    codes = np.ascontiguousarray(codes, dtype=np.float32)
    n = len(codes)
    if n < 2:
        return [], 0.0 if threshold is None else float(threshold)
    if use_approximate(n, method):
        idx, dist = knn_graph(codes, DUPLICATE_GROUP, method=method, seed=seed)
        if threshold is None:
            threshold = relative * float(np.median(dist[:, 0]))
        if threshold <= 0:
            return [], float(threshold)
        rows = np.repeat(np.arange(n), idx.shape[1])
        within = dist.ravel() <= threshold
        return _unique_pairs(rows[within], idx.ravel()[within], dist.ravel()[within]), float(threshold)
    from sklearn.neighbors import NearestNeighbors

    if threshold is None:
        _, dist = knn_graph(codes, 1, method=method)
        threshold = relative * float(np.median(dist[:, 0]))
    if threshold <= 0:
        return [], float(threshold)
    with parallel_threads():
        dist, idx = NearestNeighbors().fit(codes).radius_neighbors(codes, radius=threshold, sort_results=True)
    pairs = [(i, int(j), float(d)) for i, (js, ds) in enumerate(zip(idx, dist)) for j, d in zip(js, ds) if j > i]
    pairs.sort(key=lambda p: (p[2], p[0], p[1]))
    return pairs, float(threshold)


# Neighbors searched per image for near-duplicates on large datasets.
DUPLICATE_GROUP = 10


def _unique_pairs(a: np.ndarray, b: np.ndarray, d: np.ndarray) -> list[tuple[int, int, float]]:
    """(min, max, distance) once per unordered pair, closest first."""
    keep = a != b
    lo, hi, d = np.minimum(a, b)[keep], np.maximum(a, b)[keep], d[keep]
    if len(lo) == 0:
        return []
    _, first = np.unique(np.stack([lo, hi], axis=1), axis=0, return_index=True)
    lo, hi, d = lo[first], hi[first], d[first]
    order = np.lexsort((hi, lo, d))
    return [(int(lo[i]), int(hi[i]), float(d[i])) for i in order]


def near_duplicates_among(
    codes: np.ndarray, rows: np.ndarray, threshold: float, method: str = "auto", seed: int = 0
) -> list[tuple[int, int, float]]:
    """Pairs (i < j, distance) within threshold that involve one of ``rows``,
    closest first: what new images add to a map whose other pairs are known."""
    codes = np.ascontiguousarray(codes, dtype=np.float32)
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if len(codes) < 2 or len(rows) == 0 or threshold <= 0:
        return []
    index = NeighborIndex(codes, method=method, seed=seed)
    if index.approximate and len(rows) * len(codes) > _BRUTE_FORCE_MAX_WORK:
        idx, dist = index.query_many(codes[rows], DUPLICATE_GROUP, exclude=rows)
        within = dist <= threshold
        return _unique_pairs(np.repeat(rows, idx.shape[1])[within.ravel()], idx[within], dist[within])
    from sklearn.neighbors import NearestNeighbors

    with parallel_threads():
        dist, idx = NearestNeighbors().fit(codes).radius_neighbors(codes[rows], radius=threshold)
    a = np.concatenate([np.full(len(js), r) for r, js in zip(rows, idx)]).astype(np.int64)
    b = np.concatenate(idx).astype(np.int64)
    return _unique_pairs(a, b, np.concatenate(dist).astype(np.float32))
