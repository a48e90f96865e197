"""Label suggestions: computing them after labels change, and accepting them.

Recomputation is debounced.  Every label write calls
``suggestions_schedule_recompute`` after commit; it enqueues
``labeling.tasks.recompute_suggestions`` with a short countdown, at most once
per SCHEDULE_WINDOW seconds per dataset and process (a cache key).  The task
carries the time it was requested; ``suggestions_recompute_if_stale`` skips
when a recompute that *started reading labels after that time* has already
run (``Dataset.suggestions_computed_at``), so a burst of label changes from
many processes still costs one recompute.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from embeddings.models import ImageEmbedding, TrainingRun
from labeling.errors import ValidationFailed
from labeling.models import Annotation, AnnotationSource, Dataset, LabelAction, LabelClass
from project.resilient_cache import resilient_cache

log = logging.getLogger(__name__)

RECOMPUTE_COUNTDOWN_S = 3
# Shorter than the countdown: a change made after the key expires schedules a
# new task, and by then the pending one has read (or will read) the labels.
SCHEDULE_WINDOW_S = 2
SUGGESTION_METHOD = "spreading"
SUGGESTION_NEIGHBOURS = 10
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
    from labeling.tasks import recompute_suggestions

    requested_at = timezone.now().isoformat()
    try:
        recompute_suggestions.apply_async(args=[dataset_id, requested_at], countdown=countdown)
    except Exception:
        resilient_cache.delete(_schedule_key(dataset_id))
        log.warning("could not enqueue suggestion recompute for dataset %s", dataset_id, exc_info=True)
        return False
    return True


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


def _current_run(dataset) -> TrainingRun | None:
    from embeddings.selectors import current_run

    return current_run(dataset)


def suggestions_recompute(*, dataset: Dataset) -> dict:
    """Recomputes every image's suggested class and confidence on the current map.

    Reads the codes and labels, computes outside any transaction, then writes
    all rows in one atomic block.  Returns counts and timings.
    """
    from embeddings.ml.suggestions import suggest_classes

    started = timezone.now()
    t0 = time.perf_counter()
    run = _current_run(dataset)
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
    result = suggest_classes(codes, labels, n_classes=len(class_ids), method=SUGGESTION_METHOD,
                             k=SUGGESTION_NEIGHBOURS)
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
        "labelled": int((labels >= 0).sum()),
        "suggested": int((result.classes >= 0).sum()),
        "compute_seconds": round(t_compute, 3),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _write_suggestions(values: list[tuple[int, int | None, float | None]]) -> None:
    """(embedding id, class id, confidence) rows in a few statements."""
    table = ImageEmbedding._meta.db_table
    if connection.vendor == "postgresql":
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
    limit = getattr(connection.features, "max_query_params", None) or 999
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


# --- accepting -------------------------------------------------------------------------------


def _check_images_of_dataset(dataset: Dataset, ids: list[int], chunk: int = 900) -> None:
    from labeling.models import Image

    found = sum(
        Image.objects.filter(dataset=dataset, id__in=ids[i : i + chunk]).count() for i in range(0, len(ids), chunk)
    )
    if found != len(ids):
        raise ValidationFailed(
            f"{len(ids) - found} image id(s) are not images of this dataset; nothing was changed.", field="image_ids"
        )


@dataclass(frozen=True)
class AcceptPlan:
    """What accepting suggestions would write, and the state it was computed on.

    class_by_image: the suggested class of each image to change; seen_versions:
    each of those images' annotation version when it was read (0 without a
    row).  The read takes no locks, so annotations_apply_mapping re-checks both
    against the locked rows.
    """

    class_by_image: dict[int, int]
    seen_versions: dict[int, int]
    only_unlabeled: bool


def suggestions_accept_plan(
    *,
    dataset: Dataset,
    image_ids=None,
    cluster: int | None = None,
    label_class: LabelClass | None = None,
    min_confidence: float = 0.0,
    include_labelled: bool = False,
    expected=None,
) -> AcceptPlan:
    """The read half of suggestions_accept (see there); writes nothing."""
    from labeling.services.annotations import clean_expected

    if image_ids is not None and cluster is not None:
        raise ValidationFailed("Give image_ids or cluster, not both.")
    try:
        min_confidence = float(min_confidence)
    except (TypeError, ValueError):
        raise ValidationFailed("min_confidence must be a number between 0 and 1.", field="min_confidence")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValidationFailed("min_confidence must be a number between 0 and 1.", field="min_confidence")
    expected = clean_expected(expected)
    run = _current_run(dataset)
    if run is None:
        raise ValidationFailed("This dataset has no map yet, so there are no suggestions.")
    rows = ImageEmbedding.objects.filter(run=run, suggested_class__isnull=False,
                                         suggestion_confidence__gte=min_confidence)
    wanted = None
    if image_ids is not None:
        try:
            wanted = {int(i) for i in image_ids}
        except (TypeError, ValueError):
            raise ValidationFailed("image_ids must be a list of integers.", field="image_ids")
        if not wanted:
            raise ValidationFailed("image_ids is empty.", field="image_ids")
        _check_images_of_dataset(dataset, sorted(wanted))
    if cluster is not None:
        try:
            cluster = int(cluster)
        except (TypeError, ValueError):
            raise ValidationFailed("cluster must be an integer.", field="cluster")
        if not ImageEmbedding.objects.filter(run=run, cluster=cluster).exists():
            raise ValidationFailed(f"The current map has no cluster {cluster}.", field="cluster")
        rows = rows.filter(cluster=cluster)
    if label_class is not None:
        if label_class.dataset_id != dataset.pk:
            raise ValidationFailed("That class belongs to another dataset.", field="class")
        rows = rows.filter(suggested_class=label_class)
    suggested = dict(rows.values_list("image_id", "suggested_class_id"))
    if wanted is not None:
        suggested = {i: c for i, c in suggested.items() if i in wanted}
    if expected is not None:
        # The client accepts what it saw: only the images it lists, each checked against its version.
        suggested = {i: c for i, c in suggested.items() if i in expected}
    current = {
        image_id: (class_id, version)
        for image_id, class_id, version in Annotation.objects.filter(dataset=dataset)
        .values_list("image_id", "label_class_id", "version")
    }
    if include_labelled or expected is not None:
        # Labelled images the client listed stay in: the locked rows decide (409 if
        # changed since the client saw them, else left alone when only_unlabeled).
        mapping = suggested
    else:
        mapping = {i: c for i, c in suggested.items() if current.get(i, (None, 0))[0] is None}
    seen = {i: current.get(i, (None, 0))[1] for i in mapping}
    return AcceptPlan(class_by_image=mapping, seen_versions=seen, only_unlabeled=not include_labelled)


def suggestions_accept(
    *,
    dataset: Dataset,
    user,
    image_ids=None,
    cluster: int | None = None,
    label_class: LabelClass | None = None,
    min_confidence: float = 0.0,
    include_labelled: bool = False,
    mark_reviewed: bool = False,
    source: str = AnnotationSource.SUGGESTION,
    expected=None,
) -> LabelAction:
    """Applies each image's suggested class as ONE LabelAction.

    Scope: the given images, or a cluster of the current map, or (neither) the
    whole map; label_class narrows any scope to the images suggested that class
    (one class applied to a selection: "accept every 'seven'").  By default only unlabelled images take their suggestion;
    include_labelled also changes labelled images whose neighbours suggest
    another class (a reviewer accepting "this label is a mistake").  Images
    without a suggestion or below min_confidence are left alone.

    The suggestions and labels are read first, without locks; the write then
    locks the rows and changes only images still in the state the accept was
    computed on (still unlabelled, or for include_labelled, not changed
    since): someone's label set a moment earlier is never overwritten.  Those
    left alone are in action.skipped.  `expected` ({image id: version}, what the
    client saw) narrows the scope to the images it lists and makes the accept
    conditional: a listed image changed since is a 409, nothing changed.
    """
    from labeling.services import annotations

    plan = suggestions_accept_plan(
        dataset=dataset, image_ids=image_ids, cluster=cluster, label_class=label_class,
        min_confidence=min_confidence, include_labelled=include_labelled, expected=expected,
    )
    return annotations.annotations_apply_mapping(
        dataset=dataset, user=user, class_by_image=plan.class_by_image, source=source, mark_reviewed=mark_reviewed,
        expected=expected, if_versions=plan.seen_versions, only_unlabeled=plan.only_unlabeled,
    )
