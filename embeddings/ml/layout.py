"""The 2-D map: t-SNE (openTSNE, FFT gradients) by default, UMAP selectable."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._umap import umap_embed
from .config import LayoutConfig
from .neighbors import NeighborIndex, QueryNeighborsFn, parallel_threads, resolve_threads, use_approximate
from .neighbors import query_neighbors as default_query_neighbors

ProgressFn = Callable[[int, int, dict], None]
FFT_MIN_POINTS = 5000


def resolve_n_jobs(n_jobs: int | None) -> int:
    """None: the cores this process may run on (at most 8)."""
    return resolve_threads(n_jobs)


def normalize_xy(xy: np.ndarray, extent: float = 50.0) -> np.ndarray:
    """Center the map and scale it so the largest |coordinate| is ``extent``."""
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) == 0:
        return xy.astype(np.float32).reshape(0, 2)
    xy = xy - xy.mean(axis=0)
    span = np.abs(xy).max()
    if span > 0:
        xy = xy * (extent / span)
    return xy.astype(np.float32)


def _tsne(codes: np.ndarray, config: LayoutConfig, on_progress: ProgressFn | None) -> np.ndarray:
    import openTSNE

    n = len(codes)
    if n < 4:
        return _tiny_layout(codes)
    perplexity = min(config.perplexity, max(1.0, (n - 1) / 3.0))
    total = config.early_exaggeration_iter + config.n_iter
    every = 25
    done = [0]

    def callback(iteration, error, embedding):
        done[0] += every
        if on_progress is not None:
            on_progress(min(done[0], total), total, {"kl_divergence": float(error)})
        return False

    tsne = openTSNE.TSNE(
        n_components=2,
        perplexity=perplexity,
        learning_rate=config.learning_rate if config.learning_rate is not None else "auto",
        early_exaggeration_iter=config.early_exaggeration_iter,
        n_iter=config.n_iter,
        exaggeration=config.exaggeration,
        # Exact neighbors: codes are ~10-d, where a tree search beats Annoy's build,
        # up to the size where the approximate search wins (neighbors.use_approximate).
        neighbors="annoy" if use_approximate(n) else "exact",
        # FFT-interpolated repulsion has a fixed grid cost that dominates below a
        # few thousand points, where Barnes-Hut is cheaper (2.7 s vs 0.1 s CPU at 150).
        negative_gradient_method="fft" if n >= FFT_MIN_POINTS else "bh",
        initialization="pca",
        n_jobs=resolve_n_jobs(config.n_jobs),
        random_state=config.seed,
        callbacks=callback,
        callbacks_every_iters=every,
        verbose=False,
    )
    # openTSNE's exact search is scikit-learn's: its joblib loops must run on threads in a worker.
    with parallel_threads(config.n_jobs):
        return np.asarray(tsne.fit(np.asarray(codes, dtype=np.float64)))


def _tiny_layout(codes: np.ndarray) -> np.ndarray:
    """Too few points for t-SNE/UMAP: the first two principal axes."""
    if len(codes) < 2:
        return np.zeros((len(codes), 2))
    x = codes - codes.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy


def compute_layout(
    codes: np.ndarray,
    config: LayoutConfig | None = None,
    on_progress: ProgressFn | None = None,
    query_neighbors: QueryNeighborsFn | None = None,
) -> np.ndarray:
    """Map coordinates float32 (N, 2), centered, within [-extent, extent].

    on_progress(step, total, metrics) is called as the optimization goes.  With
    config.max_points set and more points than that, the map is computed on a
    seeded random subset and the other points are placed as place_new_points
    places them.  Their neighbor queries go to query_neighbors("layout", ...)
    before the subset is laid out, so other workers can answer them meanwhile.
    """
    config = config or LayoutConfig()
    codes = np.asarray(codes, dtype=np.float32)
    n = len(codes)
    if config.max_points is not None and n > config.max_points:
        rng = np.random.default_rng(config.seed)
        ref = np.sort(rng.choice(n, config.max_points, replace=False))
        rest = np.setdiff1d(np.arange(n), ref)
        k = min(PLACEMENT_NEIGHBORS, len(ref))
        answer = (query_neighbors or default_query_neighbors)("layout", codes[ref], codes[rest], k)
        ref_xy = _layout_all(codes[ref], config, on_progress)
        xy = np.empty((n, 2), dtype=np.float64)
        xy[ref] = ref_xy
        xy[rest] = positions_from_neighbors(ref_xy, *answer())
    else:
        xy = _layout_all(codes, config, on_progress)
    return normalize_xy(xy, config.extent)


def _layout_all(codes: np.ndarray, config: LayoutConfig, on_progress: ProgressFn | None) -> np.ndarray:
    if config.method == "tsne":
        return _tsne(codes, config, on_progress)
    if config.method == "umap":
        if len(codes) < 4:
            return _tiny_layout(codes)

        if on_progress is not None:
            on_progress(0, 1, {})
        xy = umap_embed(
            codes, 2, config.n_neighbors, config.min_dist, config.seed, resolve_n_jobs(config.n_jobs), n_epochs=200
        )
        if on_progress is not None:
            on_progress(1, 1, {})
        return xy
    raise ValueError(f"unknown layout method {config.method!r}")


PLACEMENT_NEIGHBORS = 10


def place_new_points(
    ref_codes: np.ndarray, ref_xy: np.ndarray, new_codes: np.ndarray, k: int = PLACEMENT_NEIGHBORS
) -> np.ndarray:
    """Map positions (M, 2) for new images, without recomputing the map.

    Each new point goes to a weighted mean of its k nearest reference points'
    positions (nearest in code space).  Weights fall off like a Gaussian scaled
    by the distance to the nearest neighbor, so a point between two clusters
    lands in the one it is closer to instead of in the gap.
    """

    new_codes = np.asarray(new_codes, dtype=np.float32)
    ref_xy = np.asarray(ref_xy, dtype=np.float64)
    if len(new_codes) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    k = max(1, min(k, len(ref_codes)))
    idx, dist = NeighborIndex(ref_codes).query_many(new_codes, k)
    return positions_from_neighbors(ref_xy, idx, dist)


def positions_from_neighbors(ref_xy: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """place_new_points from the k nearest reference points (indices, distances (M, k)) already found."""
    ref_xy = np.asarray(ref_xy, dtype=np.float64)
    if len(idx) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    d0 = dist[:, :1]
    scale = np.maximum(d0, 1e-6 + 1e-3 * dist[:, -1:])
    weights = np.exp(-(((dist - d0) / scale) ** 2))
    weights /= weights.sum(axis=1, keepdims=True)
    return (weights[:, :, None] * ref_xy[idx]).sum(axis=1).astype(np.float32)
