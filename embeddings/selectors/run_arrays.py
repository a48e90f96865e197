"""A run's per-image arrays, read once and cached in-process and in the Django cache.

A run's positions, clusters and codes never change after it succeeds, except
by placing new images, which bumps placed_count: (run id, placed_count,
created_at) identifies one version of them.  (created_at guards against a
reused id, e.g. SQLite after a rollback.)  The Django cache shares them
between web processes when it is Redis (CACHE_URL), so a new process does not
go back to the database.

The reads over the map (the map itself, clusters, lasso, similar images, the
review queue) start here: run_arrays for the unchanging columns, map_columns
for them plus the labels and suggestions read fresh.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.core.cache import cache

from embeddings import storage
from embeddings.ml.neighbors import NeighborIndex
from embeddings.ml.review_ranking import PAIR_DTYPE, near_duplicates
from embeddings.models import TrainingRun

from .columns import (
    read_codes,
    read_labels,
    read_positions,
    read_reconstruction_errors,
    read_suggestions,
)
from .runs import current_run

log = logging.getLogger(__name__)

CACHED_RUNS = 4
CACHE_TIMEOUT_S = 24 * 3600
CACHE_PREFIX = "simlabel:run:v2"


def run_cache_key(run: TrainingRun) -> str:
    created = int(run.created_at.timestamp() * 1_000_000) if run.created_at else 0
    return f"{run.pk}:{run.placed_count}:{created}"


def shared_get(key: str):
    try:
        return cache.get(f"{CACHE_PREFIX}:{key}")
    except Exception:  # a cache outage must not take the map down: read the database instead
        log.warning("cache read failed for %s", key, exc_info=True)
        return None


def shared_set(key: str, value) -> None:
    try:
        cache.set(f"{CACHE_PREFIX}:{key}", value, timeout=CACHE_TIMEOUT_S)
    except Exception:
        log.warning("cache write failed for %s", key, exc_info=True)


@dataclass
class RunArrays:
    run_id: int
    image_ids: np.ndarray  # int64, sorted
    x: np.ndarray  # float64
    y: np.ndarray
    cluster: np.ndarray  # int32
    key: str = ""
    _codes: np.ndarray | None = None
    _errors: np.ndarray | None = None
    _near_duplicates: np.ndarray | None = None
    _index: object = None
    # The map's encoded unchanging columns (selectors.map.StaticMap), built on first use.
    static_map: object = None

    def row_of(self, image_id: int) -> int | None:
        i = int(np.searchsorted(self.image_ids, image_id))
        if i < len(self.image_ids) and self.image_ids[i] == image_id:
            return i
        return None

    def rows_of(self, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, hit): the row of each id in this run, and which ids are in it at all."""
        if len(self.image_ids) == 0 or len(image_ids) == 0:
            return np.zeros(len(image_ids), dtype=np.int64), np.zeros(len(image_ids), dtype=bool)
        rows = np.clip(np.searchsorted(self.image_ids, image_ids), 0, len(self.image_ids) - 1)
        return rows, self.image_ids[rows] == image_ids

    def codes(self) -> np.ndarray:
        if self._codes is None:
            codes = shared_get(f"{self.key}:codes") if self.key else None
            if codes is None:
                codes = read_codes(self.run_id, self.image_ids)
                if self.key:
                    shared_set(f"{self.key}:codes", codes)
            self._codes = codes
        return self._codes

    def reconstruction_errors(self) -> np.ndarray:
        """float64 per row (NaN where unknown); like positions, fixed per run version."""
        if self._errors is None:
            errors = shared_get(f"{self.key}:errors") if self.key else None
            if errors is None:
                errors = read_reconstruction_errors(self.run_id, self.image_ids)
                if self.key:
                    shared_set(f"{self.key}:errors", errors)
            self._errors = errors
        return self._errors

    def neighbor_index(self):
        if self._index is None:
            self._index = NeighborIndex(self.codes())
        return self._index


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def run_arrays(run: TrainingRun) -> RunArrays:
    key = run_cache_key(run)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    shared = shared_get(f"{key}:positions")
    if shared is None:
        records = read_positions(run.pk)
        shared = {
            "image_ids": records["image_id"].astype(np.int64),
            "x": records["x"].astype(np.float64),
            "y": records["y"].astype(np.float64),
            "cluster": records["cluster"].astype(np.int32),
        }
        shared_set(f"{key}:positions", shared)
    arrays = RunArrays(run_id=run.pk, key=key, **shared)
    with _cache_lock:
        # Older placed_count versions of the same run are dead weight now.
        for old in [k for k in _cache if k.split(":", 1)[0] == str(run.pk)]:
            del _cache[old]
        _cache[key] = arrays
        while len(_cache) > CACHED_RUNS:
            _cache.popitem(last=False)
    return arrays


def forget_run_arrays() -> None:
    """Forgets the in-process copies (the Django cache keys carry the run's version, so they need no clearing)."""
    with _cache_lock:
        _cache.clear()


# --- labels and suggestions aligned with a run's rows ---------------------------------------------------


@dataclass
class MapColumns:
    """The current map's rows with what changes between requests: labels and suggestions.

    label and suggestion are class ids, -1 for none; confidence is NaN for none;
    version is each image's annotation version (0 when it has never been labeled).
    """

    run: TrainingRun
    arrays: RunArrays
    label: np.ndarray
    suggestion: np.ndarray
    confidence: np.ndarray
    version: np.ndarray


def map_columns(run: TrainingRun, dataset_id: int) -> MapColumns:
    """The run's cached arrays plus fresh labels and suggestions (two queries)."""
    arrays = run_arrays(run)
    n = len(arrays.image_ids)
    label = np.full(n, -1, dtype=np.int64)
    suggestion = np.full(n, -1, dtype=np.int64)
    confidence = np.full(n, np.nan, dtype=np.float64)
    version = np.zeros(n, dtype=np.int64)
    labels = read_labels(dataset_id)
    rows, hit = arrays.rows_of(labels["image_id"].astype(np.int64))
    label[rows[hit]] = labels["label"][hit]
    version[rows[hit]] = labels["version"][hit]
    suggestions = read_suggestions(run.pk)
    rows, hit = arrays.rows_of(suggestions["image_id"].astype(np.int64))
    suggestion[rows[hit]] = suggestions["suggestion"][hit]
    confidence[rows[hit]] = suggestions["confidence"][hit]
    return MapColumns(
        run=run, arrays=arrays, label=label, suggestion=suggestion, confidence=confidence, version=version
    )


def current_map_columns(dataset) -> MapColumns | None:
    run = current_run(dataset)
    if run is None:
        return None
    return map_columns(run, getattr(dataset, "pk", dataset))


# --- near-duplicates ---------------------------------------------------------------------------------
# Computed once per run by the pipeline (embeddings.services.near_duplicates)
# and stored as an artifact; placement adds the pairs new images make.  A run
# from before the artifact existed gets its pairs computed on the first read
# and cached like its other arrays (a read never writes the artifact).

NEAR_DUPLICATES = "near_duplicates.npy"


def run_near_duplicates(run: TrainingRun) -> np.ndarray:
    """The run's near-duplicate pairs as a record array (a, b: image ids, a < b;
    distance), closest first.  Cached with the run's other arrays."""
    arrays = run_arrays(run)
    if arrays._near_duplicates is not None:
        return arrays._near_duplicates
    pairs = shared_get(f"{arrays.key}:near-duplicates")
    if pairs is None:
        pairs = _load_near_duplicates(run, arrays)
        shared_set(f"{arrays.key}:near-duplicates", pairs)
    arrays._near_duplicates = pairs
    return pairs


def _load_near_duplicates(run: TrainingRun, arrays: RunArrays) -> np.ndarray:
    try:
        if storage.exists(run, NEAR_DUPLICATES):
            return storage.read_array(run, NEAR_DUPLICATES).astype(PAIR_DTYPE, copy=False)
    except Exception:  # unreadable artifact: recompute below, as for an old run
        log.warning("run %s: could not read %s; recomputing", run.pk, NEAR_DUPLICATES, exc_info=True)
    codes = arrays.codes()
    present = np.flatnonzero(np.isfinite(codes).all(axis=1)) if codes.size else np.zeros(0, dtype=np.int64)
    found, _ = near_duplicates(codes[present]) if len(present) >= 2 else (np.zeros(0, dtype=PAIR_DTYPE), 0.0)
    pairs = np.zeros(len(found), dtype=PAIR_DTYPE)
    pairs["a"] = arrays.image_ids[present[found["a"]]]
    pairs["b"] = arrays.image_ids[present[found["b"]]]
    pairs["distance"] = found["distance"]
    return pairs
