"""Signals embeddings sends for the apps above it, which embeddings may not import (.importlinter).

`run_finished` is sent once a run has ended succeeded or failed and that end
has committed, with `run` (the TrainingRun as it ended). A cancelled run sends
nothing. Receivers are called with send_robust: one that raises is logged and
never fails the run or the request that ended it.
"""

import logging

from django.db import transaction
from django.dispatch import Signal

from embeddings.models import RunStatus, TrainingRun

logger = logging.getLogger(__name__)

run_finished = Signal()

FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED)


def run_finished_send(*, run_ids) -> None:
    """After the current transaction commits, sends run_finished for each of `run_ids` that ended succeeded or failed."""
    run_ids = list(run_ids)
    if not run_ids:
        return

    def send():
        for run in TrainingRun.objects.filter(pk__in=run_ids, status__in=FINISHED_STATUSES).order_by("id"):
            for receiver, result in run_finished.send_robust(sender=TrainingRun, run=run):
                if isinstance(result, Exception):
                    logger.error("run_finished receiver %r failed for run %s: %r", receiver, run.pk, result)

    transaction.on_commit(send)
