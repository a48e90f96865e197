"""A run's near-duplicate image pairs, computed once on the worker and stored
under the run (``near_duplicates.npy``), so the review queue reads them instead
of searching 100,000 codes inside a request.

The array holds image ids, not row numbers: (a, b, distance) with a < b,
closest first (embeddings.ml.review_ranking.PAIR_DTYPE).  The threshold it was
computed with goes into the run's metrics, so images placed later are compared
on the same scale.
"""

from __future__ import annotations

import logging

import numpy as np

from embeddings import storage
from embeddings.ml.review_ranking import PAIR_DTYPE, near_duplicate_threshold, near_duplicates, near_duplicates_of
from embeddings.models import TrainingRun
from embeddings.selectors import NEAR_DUPLICATES

logger = logging.getLogger(__name__)


def _as_image_pairs(found: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    pairs = np.zeros(len(found), dtype=PAIR_DTYPE)
    a, b = image_ids[found["a"]], image_ids[found["b"]]
    pairs["a"], pairs["b"] = np.minimum(a, b), np.maximum(a, b)
    pairs["distance"] = found["distance"]
    return pairs


def run_near_duplicates_store(*, run: TrainingRun, codes: np.ndarray, image_ids: np.ndarray) -> dict:
    """Computes and stores the pairs of a run's images; returns what goes into its metrics."""
    found, threshold = near_duplicates(codes)
    pairs = _as_image_pairs(found, np.asarray(image_ids, dtype=np.int64))
    storage.write_array(run, NEAR_DUPLICATES, pairs)
    return {"near_duplicate_pairs": int(len(pairs)), "near_duplicate_threshold": threshold}


def run_near_duplicates_add(*, run: TrainingRun, codes: np.ndarray, image_ids: np.ndarray, new_image_ids) -> int:
    """Adds the pairs that newly placed images make with the map (and each other).

    codes/image_ids: every image on the run's map, the new ones included.  Runs
    without the artifact are left alone: their first read computes everything.
    Returns the number of pairs added.
    """
    if not storage.exists(run, NEAR_DUPLICATES):
        return 0
    image_ids = np.asarray(image_ids, dtype=np.int64)
    rows = np.flatnonzero(np.isin(image_ids, np.asarray(list(new_image_ids), dtype=np.int64)))
    if len(rows) == 0:
        return 0
    threshold = (run.metrics or {}).get("near_duplicate_threshold")
    if threshold is None:
        threshold = near_duplicate_threshold(codes)
    added = _as_image_pairs(near_duplicates_of(codes, rows, float(threshold)), image_ids)
    if len(added) == 0:
        return 0
    known = storage.read_array(run, NEAR_DUPLICATES).astype(PAIR_DTYPE, copy=False)
    merged = np.concatenate([known, added])
    _, first = np.unique(np.stack([merged["a"], merged["b"]], axis=1), axis=0, return_index=True)
    merged = merged[first]
    merged = merged[np.lexsort((merged["b"], merged["a"], merged["distance"]))]
    storage.write_array(run, NEAR_DUPLICATES, merged)
    return int(len(merged) - len(known))
