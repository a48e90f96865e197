"""Grouping images into clusters to label from, and assigning new images.

The codes themselves cluster poorly (k-means on them scored 0.63-0.76 on
digits); a neighbor-graph embedding of the codes separates the kinds of image
(UMAP with min_dist 0: 0.80 with k-means, 0.93 with a Gaussian mixture, which
fits the elongated islands UMAP makes).  So 'auto' clusters on a UMAP of the
codes: with a GMM for up to 20 clusters, with k-means for more.  The count defaults to fine clusters, several per class: one kind
of image per cluster is what makes labelling a cluster at once safe.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ._umap import umap_embed
from .config import ClusterConfig
from .layout import resolve_n_jobs
from .neighbors import NeighborIndex, QueryNeighborsFn
from .neighbors import query_neighbors as default_query_neighbors

SMALL_DATASET = 200  # below this UMAP is not worth it: k-means on the codes
GMM_MAX_CLUSTERS = 20


def auto_cluster_count(n: int, config: ClusterConfig | None = None) -> int:
    """About sqrt(N / 2): 22 clusters for 1,000 images, 71 for 10,000, 187 for
    70,000; clamped to [min_clusters, max_clusters] and never more than N."""
    config = config or ClusterConfig()
    if n <= 1:
        return max(n, 0)
    k = int(round(math.sqrt(n / 2.0)))
    k = max(config.min_clusters, min(config.max_clusters, k))
    return min(k, n)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def _gmm(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(
        n_components=k, covariance_type="full", n_init=2 if k <= 20 else 1, random_state=seed
    ).fit_predict(x)


def cluster_codes(
    codes: np.ndarray,
    config: ClusterConfig | None = None,
    layout_xy: np.ndarray | None = None,
    query_neighbors: QueryNeighborsFn | None = None,
) -> np.ndarray:
    """Cluster label per image, int64 (N,), numbered 0..k-1 by decreasing size.

    With config.max_points, images beyond the clustered sample are assigned as
    assign_clusters assigns them; their neighbor queries go to
    query_neighbors("clustering", ...) before the sample is clustered, so other
    workers can answer them meanwhile."""
    config = config or ClusterConfig()
    codes = np.asarray(codes, dtype=np.float32)
    n = len(codes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = config.n_clusters if config.n_clusters is not None else auto_cluster_count(n, config)
    k = max(1, min(int(k), n))
    method = config.method
    if method == "auto":
        # A GMM fits UMAP's elongated islands better when there is about one
        # cluster per class; for fine clusters k-means is as pure and far
        # cheaper (GMM with 71 components took ~15 s at 10,000 images).
        if n < SMALL_DATASET:
            method = "kmeans"
        else:
            method = "umap_gmm" if k <= GMM_MAX_CLUSTERS else "umap_kmeans"
    if config.max_points is not None and n > config.max_points and method != "layout_kmeans":
        # Cluster a seeded subset, then give every other image its neighbors' cluster.
        rng = np.random.default_rng(config.seed)
        subset = np.sort(rng.choice(n, config.max_points, replace=False))
        sub_config = replace(config, method=method, n_clusters=k, max_points=None)
        labels = np.empty(n, dtype=np.int64)
        rest = np.setdiff1d(np.arange(n), subset)
        answer = (query_neighbors or default_query_neighbors)(
            "clustering", codes[subset], codes[rest], min(ASSIGN_NEIGHBORS, len(subset))
        )
        labels[subset] = cluster_codes(codes[subset], sub_config)
        labels[rest] = clusters_from_neighbors(labels[subset], *answer())
        return _renumber_by_size(labels)

    if method == "kmeans":
        labels = _kmeans(codes, k, config.seed)
    elif method == "gmm":
        labels = _gmm(codes, k, config.seed)
    elif method in ("umap_kmeans", "umap_gmm"):
        space = umap_embed(
            codes,
            config.umap_components,
            config.umap_neighbors,
            0.0,
            config.seed,
            resolve_n_jobs(config.n_jobs),
            n_epochs=config.umap_epochs,
        )
        labels = _kmeans(space, k, config.seed) if method == "umap_kmeans" else _gmm(space, k, config.seed)
    elif method == "layout_kmeans":
        if layout_xy is None:
            raise ValueError("method 'layout_kmeans' needs layout_xy")
        labels = _kmeans(np.asarray(layout_xy, dtype=np.float32), k, config.seed)
    else:
        raise ValueError(f"unknown cluster method {config.method!r}")
    return _renumber_by_size(labels)


def _renumber_by_size(labels: np.ndarray) -> np.ndarray:
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64)


ASSIGN_NEIGHBORS = 10


def assign_clusters(
    ref_codes: np.ndarray, ref_labels: np.ndarray, new_codes: np.ndarray, k: int = ASSIGN_NEIGHBORS
) -> np.ndarray:
    """Cluster for each new image: the distance-weighted vote of its k nearest
    reference images in code space."""

    new_codes = np.asarray(new_codes, dtype=np.float32)
    ref_labels = np.asarray(ref_labels)
    if len(new_codes) == 0:
        return np.zeros(0, dtype=ref_labels.dtype)
    k = max(1, min(k, len(ref_codes)))
    idx, dist = NeighborIndex(ref_codes).query_many(new_codes, k)
    return clusters_from_neighbors(ref_labels, idx, dist)


def clusters_from_neighbors(ref_labels: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """assign_clusters from the k nearest reference images (indices, distances (M, k)) already found."""
    ref_labels = np.asarray(ref_labels)
    if len(idx) == 0:
        return np.zeros(0, dtype=ref_labels.dtype)
    k = idx.shape[1]
    weights = 1.0 / (dist.astype(np.float64) + 1e-6 * (dist.max() + 1e-12))
    values, inverse = np.unique(ref_labels, return_inverse=True)
    votes = np.zeros((len(idx), len(values)))
    np.add.at(votes, (np.repeat(np.arange(len(idx)), k), inverse[idx].ravel()), weights.ravel())
    return values[votes.argmax(axis=1)]


def cluster_purity_stats(cluster_labels: np.ndarray, class_labels: np.ndarray, unknown=-1) -> list[dict]:
    """Per cluster: size, labeled count, majority class and its share of the
    labeled images (purity).  Images whose class is ``unknown`` are counted in
    size only.  Sorted by cluster id."""
    cluster_labels = np.asarray(cluster_labels)
    class_labels = np.asarray(class_labels)
    stats = []
    for c in np.unique(cluster_labels):
        members = class_labels[cluster_labels == c]
        known = members[members != unknown]
        entry = {
            "cluster": int(c),
            "size": int(len(members)),
            "labeled": int(len(known)),
            "majority_class": None,
            "purity": None,
        }
        if len(known):
            values, counts = np.unique(known, return_counts=True)
            best = int(np.argmax(counts))
            entry["majority_class"] = values[best].item()
            entry["purity"] = float(counts[best] / len(known))
        stats.append(entry)
    return stats
