"""Clustering quality against known classes (benchmarks and tests)."""

from __future__ import annotations

import numpy as np


def _contingency(y_true, y_pred) -> np.ndarray:
    """Counts (n_clusters, n_classes)."""
    _, t = np.unique(np.asarray(y_true), return_inverse=True)
    _, p = np.unique(np.asarray(y_pred), return_inverse=True)
    table = np.zeros((p.max(initial=-1) + 1, t.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (p, t), 1)
    return table


def hungarian_accuracy(y_true, y_pred) -> float:
    """Accuracy under the best one-to-one mapping of clusters to classes.

    With more clusters than classes the extra clusters map to nothing and
    count as wrong; use majority_accuracy for over-clustering.
    """
    from scipy.optimize import linear_sum_assignment

    if len(y_true) == 0:
        return 0.0
    table = _contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(y_true))


def majority_accuracy(y_true, y_pred) -> float:
    """Accuracy when each cluster is labeled with its most common class (what
    labelling a whole cluster at once achieves).  Never below hungarian_accuracy."""
    if len(y_true) == 0:
        return 0.0
    table = _contingency(y_true, y_pred)
    return float(table.max(axis=1).sum() / len(y_true))


def cluster_accuracy(y_true, y_pred) -> float:
    """The usual unsupervised clustering accuracy: Hungarian-matched."""
    return hungarian_accuracy(y_true, y_pred)


def nmi(y_true, y_pred) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(y_true, y_pred))


def ari(y_true, y_pred) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(y_true, y_pred))


def clustering_scores(y_true, y_pred) -> dict:
    return {
        "accuracy": hungarian_accuracy(y_true, y_pred),
        "majority_accuracy": majority_accuracy(y_true, y_pred),
        "nmi": nmi(y_true, y_pred),
        "ari": ari(y_true, y_pred),
        "n_clusters": int(len(np.unique(y_pred))),
    }
