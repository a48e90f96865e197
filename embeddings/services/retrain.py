"""Auto-retrain: a dataset whose admin turned `auto_retrain` on gets a default run started by the app
when the retrain advice (embeddings.selectors.retrain) says `suggested`.

How it is reached: every label change ends in ``dataset_labels_changed`` (after commit), which calls
``retrain_schedule_auto``.  That costs one indexed query when auto-retrain is off; when it is on it
enqueues ``embeddings.tasks.auto_retrain`` a few seconds later, at most once per
SCHEDULE_WINDOW_S per dataset (a cache key), so a burst of labels is one check.  The task calls
``training_run_start_auto``, which decides under a lock on the dataset row, so two checks at once
start at most one run; the database's one-active-run constraint backs that up.  A dataset gets at
most one automatic run per SIMLABEL_AUTO_RETRAIN_MIN_MINUTES, however fast labels arrive: a run
takes minutes of the `ml` workers, and a map that changes under the annotators every few minutes
is worse than one a little behind their labels.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import RunAlreadyActive, ServiceUnavailable, ValidationFailed
from embeddings import tasks
from embeddings.models import TrainingRun
from embeddings.selectors import active_run
from embeddings.selectors.retrain import retrain_advice
from labeling.models import Dataset
from project.resilient_cache import resilient_cache

from .runs import runs_fail_stale, training_run_start

log = logging.getLogger(__name__)

AUTO_RETRAIN_COUNTDOWN_S = 5
SCHEDULE_WINDOW_S = 4
AUTO_RETRAIN_MIN_MINUTES = 30


def auto_retrain_min_interval() -> timedelta:
    return timedelta(minutes=float(getattr(settings, "SIMLABEL_AUTO_RETRAIN_MIN_MINUTES", AUTO_RETRAIN_MIN_MINUTES)))


def _schedule_key(dataset_id: int) -> str:
    return f"simlabel:auto-retrain:scheduled:{dataset_id}"


def retrain_schedule_auto(*, dataset_id: int, countdown: float = AUTO_RETRAIN_COUNTDOWN_S) -> bool:
    """After labels changed: enqueue an auto-retrain check if the dataset has auto-retrain on.

    True when a check was enqueued; False when auto-retrain is off, one is already pending (it
    will see this change), or the broker is unreachable (the next label change tries again).
    """
    if not Dataset.objects.filter(pk=dataset_id, auto_retrain=True).exists():
        return False
    if not resilient_cache.add(_schedule_key(dataset_id), 1, timeout=SCHEDULE_WINDOW_S):
        return False
    try:
        tasks.auto_retrain.apply_async(args=[dataset_id], countdown=countdown)
    except Exception:
        resilient_cache.delete(_schedule_key(dataset_id))
        log.warning("could not enqueue the auto-retrain check for dataset %s", dataset_id, exc_info=True)
        return False
    return True


def training_run_start_auto(*, dataset_id: int) -> str:
    """The task body: start a default run if auto-retrain is on, a retrain is suggested, no run is
    active and no automatic run started in the last SIMLABEL_AUTO_RETRAIN_MIN_MINUTES.

    Returns what happened: "started", "off", "missing", "active", "too_soon", "not_suggested" or
    "refused" (the run could not start: too few images, or the broker is down; logged).
    """
    runs_fail_stale(dataset_id=dataset_id)  # a dead worker's run must not block the check forever
    try:
        with transaction.atomic():
            # Serializes the checks of one dataset: the second waits, then sees the first's run.
            dataset = Dataset.objects.select_for_update().filter(pk=dataset_id).first()
            if dataset is None:
                return "missing"
            if not dataset.auto_retrain:
                return "off"
            if active_run(dataset) is not None:
                return "active"
            since = timezone.now() - auto_retrain_min_interval()
            if TrainingRun.objects.filter(dataset=dataset, started_automatically=True, created_at__gte=since).exists():
                return "too_soon"
            if not retrain_advice(dataset)["suggested"]:
                return "not_suggested"
            # Default parameters (use_labels "auto"), no user: the run says it was started automatically.
            run = training_run_start(dataset=dataset, user=None, params={})
            # In the same transaction as the row, so the flag is there before the run is published.
            TrainingRun.objects.filter(pk=run.pk).update(started_automatically=True)
    except RunAlreadyActive:
        return "active"
    except (ValidationFailed, ServiceUnavailable) as exc:
        log.warning("auto-retrain of dataset %s did not start a run: %s", dataset_id, exc)
        return "refused"
    log.info("auto-retrain started run %s of dataset %s", run.pk, dataset_id)
    return "started"
