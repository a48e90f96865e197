"""Exact nearest neighbors in code space: similar images, the kNN graph,
near-duplicates."""

from __future__ import annotations

import numpy as np

_CHUNK = 2048
_FEW_QUERIES = 8


class NeighborIndex:
    """Exact Euclidean neighbor search over codes (N, D).

    Brute force with numpy: for 100,000 10-d codes one query scans 1M floats,
    a couple of milliseconds, with no index to build or keep in sync.
    """

    def __init__(self, codes: np.ndarray):
        self.codes = np.ascontiguousarray(codes, dtype=np.float32)
        if self.codes.ndim != 2:
            raise ValueError("codes must be 2-D (N, D)")
        self._sq_norms = np.einsum("ij,ij->i", self.codes, self.codes)

    def __len__(self) -> int:
        return len(self.codes)

    def _sq_dists(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        if len(q) <= _FEW_QUERIES:
            # A few queries (a web request): einsum runs in this thread, where a
            # BLAS matmul would wake a thread pool that, on a busy machine, costs
            # ten times the arithmetic.
            dots = np.einsum("ij,kj->ki", self.codes, q)
        else:
            dots = q @ self.codes.T
        d = self._sq_norms[None, :] - 2.0 * dots + np.einsum("ij,ij->i", q, q)[:, None]
        return np.maximum(d, 0.0, out=d)

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
        out_idx = np.empty((m, k), dtype=np.int64)
        out_dist = np.empty((m, k), dtype=np.float32)
        for start in range(0, m, _CHUNK):
            stop = min(m, start + _CHUNK)
            d = self._sq_dists(queries[start:stop])
            if exclude is not None:
                rows = np.arange(stop - start)
                ex = np.asarray(exclude[start:stop])
                valid = ex >= 0
                d[rows[valid], ex[valid]] = np.inf
            if k < d.shape[1]:
                part = np.argpartition(d, k - 1, axis=1)[:, :k]
            else:
                part = np.tile(np.arange(d.shape[1]), (len(d), 1))
            pd = np.take_along_axis(d, part, axis=1)
            order = np.argsort(pd, axis=1, kind="stable")
            out_idx[start:stop] = np.take_along_axis(part, order, axis=1)
            out_dist[start:stop] = np.sqrt(np.take_along_axis(pd, order, axis=1))
        return out_idx, out_dist

    def query(self, vector_or_index, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest images to a code vector, or to the image at an integer
        index (which is then left out of its own answer)."""
        if isinstance(vector_or_index, (int, np.integer)):
            i = int(vector_or_index)
            if not 0 <= i < len(self):
                raise IndexError(i)
            idx, dist = self.query_many(self.codes[i : i + 1], k, exclude=np.array([i]))
        else:
            vec = np.asarray(vector_or_index, dtype=np.float32).reshape(1, -1)
            idx, dist = self.query_many(vec, k)
        return idx[0], dist[0]


def knn_graph(codes: np.ndarray, k: int, n_jobs: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Each point's k nearest other points: (indices (N, k), distances (N, k)).

    Uses scikit-learn's tree search (exact); for ~10-d codes it is far faster
    than brute force at 100,000 points.
    """
    from sklearn.neighbors import NearestNeighbors

    codes = np.asarray(codes, dtype=np.float32)
    n = len(codes)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
    nn = NearestNeighbors(n_neighbors=k + 1, n_jobs=n_jobs).fit(codes)
    dist, idx = nn.kneighbors(codes)
    # Drop each point itself.  With exact duplicates the point may not come
    # first, so remove it by identity rather than by position.
    is_self = idx == np.arange(n)[:, None]
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True  # self fell off the list: drop the farthest
    keep = ~is_self
    return idx[keep].reshape(n, k).astype(np.int64), dist[keep].reshape(n, k).astype(np.float32)


def near_duplicate_pairs(
    codes: np.ndarray, threshold: float | None = None, relative: float = 0.1
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, distance), i < j, of images whose codes are within threshold,
    closest first.  threshold None: ``relative`` times the median distance from
    an image to its nearest neighbor, so it scales with the code space and
    finds nothing in data without duplicates.
    """
    from sklearn.neighbors import NearestNeighbors

    codes = np.asarray(codes, dtype=np.float32)
    if len(codes) < 2:
        return []
    if threshold is None:
        _, dist = knn_graph(codes, 1)
        threshold = relative * float(np.median(dist[:, 0]))
    nn = NearestNeighbors().fit(codes)
    dist, idx = nn.radius_neighbors(codes, radius=threshold, sort_results=True)
    pairs = [(i, int(j), float(d)) for i, (js, ds) in enumerate(zip(idx, dist)) for j, d in zip(js, ds) if j > i]
    pairs.sort(key=lambda p: (p[2], p[0], p[1]))
    return pairs
