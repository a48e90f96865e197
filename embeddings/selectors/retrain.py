"""Whether retraining the dataset's map would help: how many labels arrived since the current map's run.

A run learns from the labels when there are enough of them (embeddings.ml.config.choose_labels:
LABELS_MIN_TOTAL labeled images in 2 or more classes of LABELS_MIN_PER_CLASS or more). The advice
applies that same rule to the labels as they are now, so "retraining would use them" says what the
next default run (use_labels "auto") will do.

A retrain is *suggested* when the map has a run, the next run would use the labels, and at least
max(RETRAIN_MIN_NEW_LABELS, RETRAIN_MIN_NEW_SHARE x images) labels are new to the map: labeled or
relabeled since its run started, or all of them when that run did not learn from labels (it ran
before there were enough, with use_labels "off", or before runs learned from labels at all).
The floor keeps a few dozen clicks from proposing a retrain of minutes; the share scales it with
the dataset, since the same number of new labels moves a large dataset's codes less.
"""

from __future__ import annotations

import math

import numpy as np
from django.conf import settings
from django.db.models import Count

from embeddings.ml.config import choose_labels
from embeddings.models import TrainingRun
from labeling.models import Annotation, Dataset, Image

from .runs import active_run, current_run

RETRAIN_MIN_NEW_LABELS = 50
RETRAIN_MIN_NEW_SHARE = 0.05


def retrain_new_labels_needed(image_count: int) -> int:
    """How many labels new to the map make a retrain worth suggesting, for a dataset of `image_count`."""
    floor = int(getattr(settings, "SIMLABEL_RETRAIN_MIN_NEW_LABELS", RETRAIN_MIN_NEW_LABELS))
    share = float(getattr(settings, "SIMLABEL_RETRAIN_MIN_NEW_SHARE", RETRAIN_MIN_NEW_SHARE))
    return max(floor, math.ceil(share * image_count))


def run_used_labels(run: TrainingRun | None) -> bool | None:
    """Whether the run learned from labels (its `labels_used` metric); None without a run."""
    if run is None:
        return None
    used = (run.metrics or {}).get("labels_used")
    return isinstance(used, (int, float)) and used > 0


def retrain_advice(dataset: Dataset | int) -> dict:
    """What the map and cluster pages and `GET /api/datasets/{id}/retrain/` show about retraining.

    Reads only; a few aggregate queries (no per-image rows are loaded).
    """
    dataset_id = getattr(dataset, "pk", dataset)
    run = current_run(dataset_id)
    active = active_run(dataset_id)
    labeled = Annotation.objects.filter(dataset_id=dataset_id, label_class__isnull=False)
    per_class = list(labeled.values("label_class_id").annotate(n=Count("id")).values_list("n", flat=True))
    labeled_total = int(sum(per_class))
    # choose_labels takes one class index per image; the rule only needs the counts per class.
    choice = choose_labels(np.repeat(np.arange(len(per_class)), per_class) if per_class else None, "auto")
    if run is None:
        since = labeled_total
    elif run.started_at is None:  # a succeeded run always started; kept for rows edited by hand
        since = 0
    else:
        since = labeled.filter(updated_at__gt=run.started_at).count()
    used = run_used_labels(run)
    new_to_map = since if used else labeled_total
    image_count = Image.objects.filter(dataset_id=dataset_id).count()
    needed = retrain_new_labels_needed(image_count)
    auto_retrain = (
        dataset.auto_retrain
        if isinstance(dataset, Dataset)
        else bool(Dataset.objects.filter(pk=dataset_id).values_list("auto_retrain", flat=True).first())
    )
    return {
        "last_run_id": run.pk if run else None,
        "last_run_started_at": run.started_at if run else None,
        "last_run_used_labels": used,
        "labels_since_last_run": since,
        "labels_new_to_map": new_to_map,
        "labeled_total": labeled_total,
        "image_count": image_count,
        "would_use_labels": choice.used > 0,
        "labels_reason": choice.reason,
        "new_labels_needed": needed,
        "suggested": run is not None and choice.used > 0 and new_to_map >= needed,
        "active_run": {"id": active.pk, "status": active.status} if active else None,
        "auto_retrain": auto_retrain,
    }
