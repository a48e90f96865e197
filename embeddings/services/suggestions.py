"""Label suggestions: each image's suggested class and confidence on the current map, stored on
ImageEmbedding, recomputed after labels change or the map changes.

The confidence of an unlabeled image's suggestion is calibrated (the "calibrated" method of
embeddings.ml.suggestions): the measured chance that it is right, low for images far from every
label and when few classes have labels, so a floor on it (accepting, coloring, review) means
what it says.

Recomputation is debounced.  Labeling reports every label change through
``dataset_labels_changed`` (after commit), a new map or newly placed images call
``suggestions_schedule_recompute``; it enqueues
``embeddings.tasks.recompute_suggestions`` with a short countdown, at most once
per SCHEDULE_WINDOW seconds per dataset and process (a cache key).  The task
carries the time it was requested; ``suggestions_recompute_if_stale`` skips
when a recompute that *started reading labels after that time* has already
run (``Dataset.suggestions_computed_at``), so a burst of label changes from
many processes still costs one recompute.

Accepting suggestions writes labels, so it lives in labeling.services.suggestions.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.db import max_query_params, on_postgres
from embeddings import tasks
from embeddings.ml.suggestions import suggest_classes
from embeddings.models import ImageEmbedding
from embeddings.selectors import current_run
from labeling.models import Annotation, Dataset, LabelClass
from project.resilient_cache import resilient_cache

from .retrain import retrain_schedule_auto

log = logging.getLogger(__name__)

RECOMPUTE_COUNTDOWN_S = 3
# Shorter than the countdown: a change made after the key expires schedules a
# new task, and by then the pending one has read (or will read) the labels.
SCHEDULE_WINDOW_S = 2
SUGGESTION_METHOD = "calibrated"
SUGGESTION_NEIGHBORS = 10
UPDATE_BATCH = 5000


def _schedule_key(dataset_id: int) -> str:
    return f"simlabel:suggestions:scheduled:{dataset_id}"


def suggestions_schedule_recompute(*, dataset_id: int, countdown: float = RECOMPUTE_COUNTDOWN_S) -> bool:
    """Enqueues a debounced recompute of the dataset's suggestions.

    Returns True when a task was enqueued, False when one is already pending
    (it will see this change) or the broker could not be reached (labels are
    saved regardless; the next change retries).
    """
    window = getattr(settings, "SIMLABEL_SUGGESTIONS_SCHEDULE_WINDOW", SCHEDULE_WINDOW_S)
    # With Redis (CACHE_URL) down this debounces per process instead of failing the label write.
    if not resilient_cache.add(_schedule_key(dataset_id), 1, timeout=window):
        return False
    requested_at = timezone.now().isoformat()
    try:
        tasks.recompute_suggestions.apply_async(args=[dataset_id, requested_at], countdown=countdown)
    except Exception:
        resilient_cache.delete(_schedule_key(dataset_id))
        log.warning("could not enqueue suggestion recompute for dataset %s", dataset_id, exc_info=True)
        return False
    return True


def dataset_labels_changed(*, dataset_id: int) -> None:
    """Labeling's one call into embeddings when a dataset's labels changed (call it after commit).

    Schedules the suggestions' recompute, and the auto-retrain check when the dataset has it on
    (embeddings.services.retrain); both are advisory, so a broker or cache failure is logged and
    never fails the label write that caused it.
    """
    try:
        suggestions_schedule_recompute(dataset_id=dataset_id)
    except Exception:
        log.exception("could not schedule suggestion recompute for dataset %s", dataset_id)
    try:
        retrain_schedule_auto(dataset_id=dataset_id)
    except Exception:
        log.exception("could not schedule the auto-retrain check for dataset %s", dataset_id)


def suggestions_recompute_if_stale(*, dataset_id: int, requested_at: str | datetime | None = None) -> str:
    """The task body: recompute unless a recompute started after `requested_at` already ran.

    Returns "computed", "skipped" or "missing" (dataset deleted).
    """
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        return "missing"
    if isinstance(requested_at, str):
        requested_at = datetime.fromisoformat(requested_at)
    if requested_at is not None and dataset.suggestions_computed_at is not None:
        if dataset.suggestions_computed_at >= requested_at:
            return "skipped"
    suggestions_recompute(dataset=dataset)
    return "computed"


def suggestions_recompute(*, dataset: Dataset) -> dict:
    """Recomputes every image's suggested class and confidence on the current map.

    Reads the codes and labels, computes outside any transaction, then writes
    all rows in one atomic block.  Returns counts and timings.
    """
    started = timezone.now()
    t0 = time.perf_counter()
    run = current_run(dataset)
    if run is None:
        Dataset.objects.filter(pk=dataset.pk).update(suggestions_computed_at=started)
        return {"run": None, "images": 0, "suggested": 0, "seconds": 0.0}
    rows = list(ImageEmbedding.objects.filter(run=run).order_by("id").values_list("id", "image_id", "code"))
    class_ids = list(LabelClass.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True))
    label_of = dict(
        Annotation.objects.filter(dataset=dataset, label_class__isnull=False).values_list("image_id", "label_class_id")
    )
    n = len(rows)
    if n == 0:
        Dataset.objects.filter(pk=dataset.pk).update(suggestions_computed_at=started)
        return {"run": run.pk, "images": 0, "suggested": 0, "seconds": 0.0}
    index_of_class = {cid: i for i, cid in enumerate(class_ids)}
    embedding_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    codes = np.stack([np.frombuffer(bytes(r[2]), dtype="<f4") for r in rows])
    labels = np.fromiter((index_of_class.get(label_of.get(r[1]), -1) for r in rows), dtype=np.int64, count=n)
    result = suggest_classes(codes, labels, n_classes=len(class_ids), method=SUGGESTION_METHOD, k=SUGGESTION_NEIGHBORS)
    t_compute = time.perf_counter() - t0
    class_array = np.asarray(class_ids + [0], dtype=np.int64)  # index -1 maps to the sentinel, then to None
    values = [
        (int(eid), int(class_array[c]) if c >= 0 else None, float(conf) if c >= 0 else None)
        for eid, c, conf in zip(embedding_ids, result.classes, result.confidence)
    ]
    with transaction.atomic():
        _write_suggestions(values)
        Dataset.objects.filter(pk=dataset.pk).update(suggestions_computed_at=started)
    return {
        "run": run.pk,
        "images": n,
        "labeled": int((labels >= 0).sum()),
        "suggested": int((result.classes >= 0).sum()),
        "compute_seconds": round(t_compute, 3),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _write_suggestions(values: list[tuple[int, int | None, float | None]]) -> None:
    """(embedding id, class id, confidence) rows in a few statements."""
    table = ImageEmbedding._meta.db_table
    if on_postgres():
        with connection.cursor() as cursor:
            for start in range(0, len(values), UPDATE_BATCH):
                batch = values[start : start + UPDATE_BATCH]
                placeholders = ",".join(["(%s::bigint, %s::bigint, %s::double precision)"] * len(batch))
                params = [v for row in batch for v in row]
                cursor.execute(
                    f"UPDATE {table} AS e SET suggested_class_id = v.c, suggestion_confidence = v.p "
                    f"FROM (VALUES {placeholders}) AS v(id, c, p) WHERE e.id = v.id",
                    params,
                )
        return
    # SQLite (3.33+) has UPDATE ... FROM too; VALUES columns are named through a CTE.
    limit = max_query_params(999)
    batch_size = max(1, min(UPDATE_BATCH, limit // 3 - 1))
    with connection.cursor() as cursor:
        for start in range(0, len(values), batch_size):
            batch = values[start : start + batch_size]
            placeholders = ",".join(["(%s, %s, %s)"] * len(batch))
            params = [v for row in batch for v in row]
            cursor.execute(
                f"WITH v(id, c, p) AS (VALUES {placeholders}) "
                f"UPDATE {table} SET suggested_class_id = v.c, suggestion_confidence = v.p "
                f"FROM v WHERE {table}.id = v.id",
                params,
            )
