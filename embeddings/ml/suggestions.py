"""Label suggestions: spread the classes people applied to their neighbors in code space.

Two methods, both on the k-nearest-neighbor graph of the codes:

- ``"spreading"`` (default): label spreading (Zhou et al. 2004) on the
  symmetric kNN graph with self-tuning Gaussian weights.  Labels flow through
  unlabeled images too, so a class reaches images that have no labeled
  neighbor of their own.
- ``"knn"``: a distance-weighted vote of the k nearest *labeled* images.

Every image gets "what its neighbors say", labeled ones included: for a
labeled image the vote leaves the image itself out, so a label that
disagrees with its neighborhood shows up as a suggestion of another class
(used to find likely mistakes).  Confidence is the winning class's share of
the neighbor vote, 0..1.

Measured on scikit-learn's digits (1,797 images, autoencoder codes, k=10,
random labeled subsets; accuracy on the unlabeled images):

    labeled      30      100     300     (mean of 2 random draws)
    knn           0.49    0.84    0.92
    spreading     0.86    0.91    0.96

so spreading is the default: it is far better when few images are labeled
and no worse when many are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .neighbors import NeighborIndex, knn_graph

UNLABELED = -1


@dataclass
class Suggestions:
    classes: np.ndarray  # (N,) int64 class index, UNLABELED where nothing reached the image
    confidence: np.ndarray  # (N,) float32 0..1, 0 where there is no suggestion
    probabilities: np.ndarray  # (N, C) float32 rows sum to 1 (or 0 where nothing reached)


def _check(codes: np.ndarray, labels: np.ndarray, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    codes = np.ascontiguousarray(codes, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if codes.ndim != 2 or len(codes) != len(labels):
        raise ValueError("codes must be (N, D) and labels (N,)")
    if n_classes is None:
        n_classes = int(labels.max(initial=-1)) + 1
    if labels.max(initial=-1) >= n_classes or labels.min(initial=0) < UNLABELED:
        raise ValueError("labels must be in -1..n_classes-1")
    return codes, labels, n_classes


def _finish(probs: np.ndarray) -> Suggestions:
    total = probs.sum(axis=1)
    reached = total > 0
    probs = np.where(reached[:, None], probs / np.where(reached, total, 1.0)[:, None], 0.0).astype(np.float32)
    classes = np.where(reached, probs.argmax(axis=1), UNLABELED).astype(np.int64)
    confidence = np.where(reached, probs.max(axis=1), 0.0).astype(np.float32)
    return Suggestions(classes, confidence, probs)


def _empty(n: int, n_classes: int) -> Suggestions:
    return Suggestions(
        np.full(n, UNLABELED, dtype=np.int64), np.zeros(n, dtype=np.float32), np.zeros((n, n_classes), dtype=np.float32)
    )


def knn_graph_of(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) of each image's k nearest other images."""

    return knn_graph(codes, k)


def suggest_knn(codes: np.ndarray, labels: np.ndarray, n_classes: int | None = None, k: int = 10) -> Suggestions:
    """Distance-weighted vote of each image's k nearest labeled images (itself excluded)."""

    codes, labels, n_classes = _check(codes, labels, n_classes)
    n = len(codes)
    labeled = np.flatnonzero(labels != UNLABELED)
    if n == 0 or n_classes == 0 or len(labeled) == 0:
        return _empty(n, n_classes)
    position = np.full(n, -1, dtype=np.int64)
    position[labeled] = np.arange(len(labeled))
    idx, dist = NeighborIndex(codes[labeled]).query_many(codes, k, exclude=position)
    if idx.shape[1] == 0:
        return _empty(n, n_classes)
    # Inverse distance, relative to each row's nearest so scale does not matter;
    # the epsilon keeps exact duplicates from taking every vote.
    d = dist.astype(np.float64)
    scale = np.maximum(d[:, :1], 1e-6 * (float(d.mean()) + 1e-12))
    weights = 1.0 / (d / scale + 1.0)
    probs = np.zeros((n, n_classes))
    rows = np.repeat(np.arange(n), idx.shape[1])
    np.add.at(probs, (rows, labels[labeled][idx].ravel()), weights.ravel())
    return _finish(probs)


def _affinity(codes: np.ndarray, k: int, graph=None):
    """Symmetric sparse kNN affinity with self-tuning Gaussian weights
    exp(-d_ij^2 / (s_i s_j)), s_i = distance to the i-th image's 7th neighbor."""
    from scipy import sparse

    n = len(codes)
    idx, dist = graph if graph is not None else knn_graph_of(codes, k)
    k = idx.shape[1]
    if k == 0:
        return sparse.csr_matrix((n, n))
    d = dist.astype(np.float64)
    local = d[:, min(6, k - 1)]
    local = np.maximum(local, 1e-6 * (float(local.mean()) + 1e-12))
    rows = np.repeat(np.arange(n), k)
    cols = idx.ravel()
    w = np.exp(-(d.ravel() ** 2) / (local[rows] * local[cols]))
    w = np.maximum(w, 1e-12)  # a neighbor is never cut off entirely
    a = sparse.csr_matrix((w, (rows, cols)), shape=(n, n))
    a = a.maximum(a.T)
    a.setdiag(0)
    a.eliminate_zeros()
    return a


def suggest_spreading(
    codes: np.ndarray,
    labels: np.ndarray,
    n_classes: int | None = None,
    k: int = 10,
    alpha: float = 0.9,
    iterations: int = 30,
    sharpen: float = 2.0,
    graph=None,
) -> Suggestions:
    """Label spreading F <- alpha S F + (1 - alpha) Y on the normalized kNN graph
    S = D^-1/2 W D^-1/2, for unlabeled images: their neighbors' share of the
    spread labels, S F, raised to the power `sharpen` and renormalized (the raw
    shares are under-confident: on digits with 300 labels, alpha 0.9, mean
    confidence 0.78 against accuracy 0.97; squared, 0.93).

    A labeled image's own label would flow back to it through its neighbors
    and hide a mistake, so a labeled image gets the vote of its k nearest
    images instead: labeled neighbors vote their label, unlabeled ones
    their spread shares, weighted by the same Gaussian affinity."""
    codes, labels, n_classes = _check(codes, labels, n_classes)
    n = len(codes)
    labeled = np.flatnonzero(labels != UNLABELED)
    if n < 2 or n_classes == 0 or len(labeled) == 0:
        return _empty(n, n_classes)
    from scipy import sparse

    graph = graph if graph is not None else knn_graph_of(codes, k)
    w = _affinity(codes, k, graph)
    degree = np.asarray(w.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0)), 0.0)
    s = sparse.diags(inv_sqrt) @ w @ sparse.diags(inv_sqrt)
    y = np.zeros((n, n_classes))
    y[labeled, labels[labeled]] = 1.0
    f = y.copy()
    for _ in range(iterations):
        f = alpha * (s @ f) + (1.0 - alpha) * y
    # Each row of F is scaled by its degree; normalizing by rows compares classes only.
    neighbor_view = np.maximum(s @ f, 0.0)
    total = neighbor_view.sum(axis=1, keepdims=True)
    shares = np.divide(neighbor_view, total, out=np.zeros_like(neighbor_view), where=total > 0)
    opinion = shares.copy()
    opinion[labeled] = y[labeled]
    # Rows of the symmetric affinity: each labeled image's neighbors, itself excluded.
    votes = np.asarray(w[labeled] @ opinion)
    vote_total = votes.sum(axis=1, keepdims=True)
    votes = np.divide(votes, vote_total, out=np.zeros_like(votes), where=vote_total > 0)
    shares[labeled] = votes
    return _finish(shares**sharpen)


METHODS = {"spreading": suggest_spreading, "knn": suggest_knn}


def suggest_classes(
    codes: np.ndarray, labels: np.ndarray, n_classes: int | None = None, method: str = "spreading", k: int = 10
) -> Suggestions:
    """Suggested class and confidence for every image (see module docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown suggestion method {method!r}; one of {sorted(METHODS)}")
    return METHODS[method](codes, labels, n_classes=n_classes, k=k)
