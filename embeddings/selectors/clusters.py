"""The current map's clusters: their images, and what their labels and suggestions say."""

from __future__ import annotations

import numpy as np

from core.errors import ValidationFailed

from .run_arrays import current_map_columns, run_arrays
from .runs import current_run


def cluster_image_ids(dataset, cluster: int) -> list[int]:
    run = current_run(dataset)
    if run is None:
        return []
    arrays = run_arrays(run)
    return arrays.image_ids[arrays.cluster == int(cluster)].tolist()


def _entropy(counts: dict) -> float:
    total = sum(counts.values())
    if total <= 0 or len(counts) <= 1:
        return 0.0
    p = np.asarray(list(counts.values()), dtype=np.float64) / total
    return float(-(p * np.log(p)).sum() / np.log(len(p)))


def dataset_clusters(dataset, order: str = "size", include_image_ids: bool = True) -> list[dict]:
    """The current map's clusters with what is known about their classes.

    class_counts: {class id: labeled images}; suggested_class: the majority of
    labels and (for unlabeled images) suggestions; uncertainty 0..1: the mean of
    the normalized entropy of those votes and the mean (1 - confidence) of the
    suggestions (1 when nothing is known).  order: "size", "uncertainty" or "id".
    """
    if order not in ("size", "uncertainty", "id"):
        raise ValidationFailed("order must be size, uncertainty or id.", field="order")
    columns = current_map_columns(dataset)
    if columns is None:
        return []
    arrays = columns.arrays
    label_col, suggestion_col, confidence_col = columns.label, columns.suggestion, columns.confidence
    result = []
    order_idx = np.argsort(arrays.cluster, kind="stable")
    sorted_clusters = arrays.cluster[order_idx]
    cluster_ids, starts = np.unique(sorted_clusters, return_index=True)
    bounds = list(starts) + [len(sorted_clusters)]
    for j, cluster in enumerate(cluster_ids.tolist()):
        members = order_idx[bounds[j] : bounds[j + 1]]
        member_labels = label_col[members]
        labeled = member_labels[member_labels >= 0]
        class_counts = {int(c): int(n) for c, n in zip(*np.unique(labeled, return_counts=True))}
        unlabeled = members[member_labels < 0]
        votes = dict(class_counts)
        suggested = suggestion_col[unlabeled]
        for c, n in zip(*np.unique(suggested[suggested >= 0], return_counts=True)):
            votes[int(c)] = votes.get(int(c), 0) + int(n)
        confidences = confidence_col[unlabeled]
        confidences = confidences[~np.isnan(confidences)]
        if votes:
            suggested_class = max(votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]
            doubt = float((1.0 - confidences).mean()) if len(confidences) else 0.0
            uncertainty = 0.5 * _entropy(votes) + 0.5 * doubt
        else:
            suggested_class, uncertainty = None, 1.0
        entry = {
            "id": int(cluster),
            "size": len(members),
            "labelled": len(labeled),  # the API field name, kept
            "class_counts": class_counts,
            "suggested_class": suggested_class,
            "uncertainty": round(uncertainty, 4),
        }
        if include_image_ids:
            entry["image_ids"] = arrays.image_ids[members].tolist()
        result.append(entry)
    if order == "size":
        result.sort(key=lambda c: (-c["size"], c["id"]))
    elif order == "uncertainty":
        result.sort(key=lambda c: (-c["uncertainty"], -c["size"], c["id"]))
    return result
