"""The review queue: what most needs a reviewer on the dataset's current map.

The ranking itself is pure (embeddings.ml.review_ranking, where the score is
documented); this module reads the current labels, suggestions, clusters and
resolutions, and turns indices back into ids.  Items a reviewer resolved on
this map (ReviewResolution rows) leave the queue; items whose reason went away
because labels changed simply are not produced any more, since the queue is
computed from the current labels on every read.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from embeddings.models import ImageEmbedding
from labeling.models import Annotation, LabelClass, ReviewResolution

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

_duplicates_cache: OrderedDict = OrderedDict()
_duplicates_lock = threading.Lock()


def _duplicate_image_pairs(run) -> list[tuple[int, int, float]]:
    """Near-duplicate (image id, image id, distance) pairs of a run; cached per
    (run, placed_count) because codes never change after a run succeeds."""
    key = (run.pk, run.placed_count)
    with _duplicates_lock:
        if key in _duplicates_cache:
            _duplicates_cache.move_to_end(key)
            return _duplicates_cache[key]
    from embeddings.ml.neighbours import near_duplicate_pairs
    from embeddings.selectors import run_arrays

    arrays = run_arrays(run)
    pairs = []
    if len(arrays.image_ids) >= 2:
        ids = arrays.image_ids
        pairs = [(int(ids[i]), int(ids[j]), d) for i, j, d in near_duplicate_pairs(arrays.codes())]
    with _duplicates_lock:
        _duplicates_cache[key] = pairs
        while len(_duplicates_cache) > 4:
            _duplicates_cache.popitem(last=False)
    return pairs


def review_queue_for_dataset(dataset, limit: int = DEFAULT_LIMIT) -> list[dict]:
    """Review items, most useful first: [{kind, id, reason, score, image_ids,
    suggested_class, reasons, codes, size, label_class, confidence}].

    kind "cluster": id is the cluster number on the current map; kind
    "image": id is the image id.  score is the expected number of wrong labels
    the item lets a reviewer fix (see embeddings.ml.review_ranking).
    """
    from embeddings.ml.review_ranking import rank_review_items
    from embeddings.selectors import current_run

    limit = max(1, min(int(limit), MAX_LIMIT))
    run = current_run(dataset)
    if run is None:
        return []
    rows = list(
        ImageEmbedding.objects.filter(run=run)
        .order_by("image_id")
        .values_list("image_id", "cluster", "suggested_class_id", "suggestion_confidence", "reconstruction_error")
    )
    if not rows:
        return []
    classes = list(LabelClass.objects.filter(dataset=dataset).order_by("id").values_list("id", "name"))
    class_index = {cid: i for i, (cid, _) in enumerate(classes)}
    class_ids = [cid for cid, _ in classes]
    annotations = {
        image_id: (class_id, reviewed_at is not None)
        for image_id, class_id, reviewed_at in Annotation.objects.filter(dataset=dataset).values_list(
            "image_id", "label_class_id", "reviewed_at"
        )
    }
    n = len(rows)
    image_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    clusters = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
    suggestions = np.fromiter((class_index.get(r[2], -1) for r in rows), dtype=np.int64, count=n)
    confidence = np.fromiter((r[3] or 0.0 for r in rows), dtype=np.float64, count=n)
    recon = np.fromiter((r[4] or 0.0 for r in rows), dtype=np.float64, count=n)
    labels = np.full(n, -1, dtype=np.int64)
    reviewed = np.zeros(n, dtype=bool)
    for i, image_id in enumerate(image_ids.tolist()):
        ann = annotations.get(image_id)
        if ann is not None:
            labels[i] = class_index.get(ann[0], -1)
            reviewed[i] = ann[1] and ann[0] is not None
    position = {image_id: i for i, image_id in enumerate(image_ids.tolist())}
    pairs = [
        (position[a], position[b], d) for a, b, d in _duplicate_image_pairs(run) if a in position and b in position
    ]
    items = rank_review_items(
        clusters=clusters,
        labels=labels,
        suggestions=suggestions,
        confidence=confidence,
        reviewed=reviewed,
        class_names=[name for _, name in classes],
        reconstruction_error=recon,
        duplicate_pairs=pairs,
    )
    resolved = set(
        ReviewResolution.objects.filter(dataset=dataset, run=run).values_list("kind", "object_id").distinct()
    )
    queue = []
    for item in items:
        object_id = int(item.key) if item.kind == "cluster" else int(image_ids[item.key])
        if (item.kind, object_id) in resolved:
            continue
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
                "size": int(len(item.members)),
                "suggested_class": class_ids[item.suggested_class] if item.suggested_class >= 0 else None,
                "label_class": (class_ids[labels[first]] if item.kind == "image" and labels[first] >= 0 else None),
                "confidence": (round(float(confidence[first]), 4) if item.kind == "image" else None),
            }
        )
        if len(queue) >= limit:
            break
    return queue
