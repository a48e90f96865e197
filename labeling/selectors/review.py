"""The review queue: what most needs a reviewer on the dataset's current map.

The ranking itself is pure (embeddings.ml.review_ranking, where the score is
documented); this module reads the current labels, suggestions, clusters and
resolutions, and turns indices back into ids.  Items a reviewer resolved on
this map (ReviewResolution rows) leave the queue; items whose reason went away
because labels changed simply are not produced any more, since the queue is
computed from the current labels on every read.

One exception: a cluster relabelled only in part (the reviewer fixed a
selection of it) returns, after every other item, while it still holds images
no reviewer has checked and the ranking still finds a reason to look at it.
A lone stray of another class inside a cluster carries the cluster's class,
and so do its neighbors: no neighbor test ever flags it, and only another look
at the cluster finds it.
Marking the cluster reviewed, accepting its suggestion or relabelling all of
it (each reviews every image) ends that.
"""

from __future__ import annotations

import numpy as np

from embeddings.ml.review_ranking import rank_review_items
from embeddings.selectors import current_map_columns, run_near_duplicates
from labeling.models import Annotation, LabelClass, ReviewResolution
from labeling.selectors.predictions import prediction_columns_for_images

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def _class_indices(class_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Class ids (-1: none) as indices into the sorted class_ids (-1: none or unknown)."""
    if len(class_ids) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    at = np.clip(np.searchsorted(class_ids, values), 0, len(class_ids) - 1)
    return np.where((values >= 0) & (class_ids[at] == values), at, -1).astype(np.int64)


def review_queue_for_dataset(dataset, limit: int = DEFAULT_LIMIT) -> list[dict]:
    """Review items, most useful first: [{kind, id, reason, score, image_ids,
    image_versions, suggested_class, reasons, codes, size, label_class, confidence}].

    kind "cluster": id is the cluster number on the current map; kind
    "image": id is the image id.  score is the expected number of wrong labels
    the item lets a reviewer fix (see embeddings.ml.review_ranking).

    Reads columns, not rows: the run's cached arrays (positions, reconstruction
    errors, near-duplicate pairs computed by the pipeline) plus fresh labels and
    suggestions, a fixed number of queries whatever the size of the dataset.
    """
    limit = max(1, min(int(limit), MAX_LIMIT))
    columns = current_map_columns(dataset)
    if columns is None or len(columns.arrays.image_ids) == 0:
        return []
    run, arrays = columns.run, columns.arrays
    image_ids = arrays.image_ids
    classes = list(LabelClass.objects.filter(dataset=dataset).order_by("id").values_list("id", "name"))
    class_ids = [cid for cid, _ in classes]
    class_array = np.asarray(class_ids, dtype=np.int64)
    labels = _class_indices(class_array, columns.label)
    suggestions = _class_indices(class_array, columns.suggestion)
    confidence = np.nan_to_num(columns.confidence, nan=0.0)
    recon = np.nan_to_num(arrays.reconstruction_errors(), nan=0.0)
    reviewed_ids = np.fromiter(
        Annotation.objects.filter(dataset=dataset, reviewed_at__isnull=False, label_class__isnull=False).values_list(
            "image_id", flat=True
        ),
        dtype=np.int64,
    )
    reviewed = np.zeros(len(image_ids), dtype=bool)
    rows, hit = arrays.rows_of(reviewed_ids)
    reviewed[rows[hit]] = True
    # Only pairs that can become items: both on the map, both labeled, classes differ, not both reviewed.
    pairs = run_near_duplicates(run)
    rows_a, hit_a = arrays.rows_of(pairs["a"])
    rows_b, hit_b = arrays.rows_of(pairs["b"])
    keep = hit_a & hit_b
    rows_a, rows_b, distances = rows_a[keep], rows_b[keep], pairs["distance"][keep]
    conflict = (
        (labels[rows_a] >= 0)
        & (labels[rows_b] >= 0)
        & (labels[rows_a] != labels[rows_b])
        & ~(reviewed[rows_a] & reviewed[rows_b])
    )
    duplicate_pairs = list(zip(rows_a[conflict].tolist(), rows_b[conflict].tolist(), distances[conflict].tolist()))
    items = rank_review_items(
        clusters=arrays.cluster,
        labels=labels,
        suggestions=suggestions,
        confidence=confidence,
        reviewed=reviewed,
        class_names=[name for _, name in classes],
        reconstruction_error=recon,
        duplicate_pairs=duplicate_pairs,
        predictions=[
            (model, _class_indices(class_array, predicted), predicted_confidence)
            for model, predicted, predicted_confidence in prediction_columns_for_images(dataset, image_ids)
        ],
    )
    resolved, relabelled_in_part = set(), set()
    for kind, object_id, outcome in (
        ReviewResolution.objects.filter(dataset=dataset, run=run).values_list("kind", "object_id", "outcome").distinct()
    ):
        if kind == ReviewResolution.Kind.CLUSTER and outcome == ReviewResolution.Outcome.RELABELED:
            relabelled_in_part.add(object_id)
        else:
            resolved.add((kind, object_id))
    fresh, again = [], []
    for item in items:
        object_id = int(item.key) if item.kind == "cluster" else int(image_ids[item.key])
        if (item.kind, object_id) in resolved:
            continue
        if item.kind == "cluster" and object_id in relabelled_in_part:
            if reviewed[item.members].all():
                continue  # relabelled in full, or the rest checked since: nothing left that nobody looked at
            # Its score counts every unchecked image's doubt, but a reviewer has looked at it once, so
            # it holds a stray or two at most: after everything nobody has looked at yet.
            again.append((item, object_id))
        else:
            fresh.append((item, object_id))
    queue = []
    for item, object_id in fresh + again:
        first = item.members[0]
        queue.append(
            {
                "kind": item.kind,
                "id": object_id,
                "reason": item.reason,
                "reasons": list(item.reasons),
                "codes": list(item.codes),
                "score": round(float(item.score), 4),
                "image_ids": image_ids[item.members].tolist(),
                # What a resolve sends back as `expected`, so it cannot overwrite a later change.
                "image_versions": columns.version[item.members].tolist(),
                "size": int(len(item.members)),
                "suggested_class": class_ids[item.suggested_class] if item.suggested_class >= 0 else None,
                "label_class": (class_ids[labels[first]] if item.kind == "image" and labels[first] >= 0 else None),
                "confidence": (round(float(confidence[first]), 4) if item.kind == "image" else None),
            }
        )
        if len(queue) >= limit:
            break
    return queue
