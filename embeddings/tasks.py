"""Celery tasks for the pipeline: thin wrappers that take ids and call a service.

Delivery semantics, and why:
- run_pipeline uses acks_late=True: the message is acknowledged only when the
  run is over, so a worker lost *before* it claimed the run gives the run to
  another worker.  The claim is a conditional UPDATE, so a redelivered message
  (or the same id published twice) never executes a run twice at once.
- reject_on_worker_lost=False: when the process running a task dies (SIGKILL,
  out of memory), Celery must not requeue the message, or a run that kills its
  worker would kill every worker in turn, forever.  Instead the run stops
  writing heartbeats and runs_fail_stale() marks it failed with the reason.
  (With Redis, a message unacked because the whole worker died comes back after
  the visibility timeout; by then the run is failed, so the claim skips it —
  or, if nothing reaped it yet, the stale claim retries it once.)
- Results are ignored: the UI polls the TrainingRun row, never the result backend,
  and publishing does not need the result backend to be reachable.
"""

import os
import socket

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_process_init
from django.db import OperationalError

# The package, not its names: the services enqueue these tasks (`from embeddings import tasks`), so
# each side of that cycle needs only the other's module object at import time.
from embeddings import services
from project.celery import app

# Whether this worker consumes the `ml` queue; set in the main process before the pool forks its children.
_consumes_ml_queue = False


@celeryd_after_setup.connect
def _note_ml_queue(sender=None, instance=None, **kwargs) -> None:
    global _consumes_ml_queue
    _consumes_ml_queue = instance is not None and "ml" in instance.app.amqp.queues.consume_from


@worker_process_init.connect
def _import_torch_in_ml_children(**kwargs) -> None:
    """An `ml` worker's child imports torch (~2 s) when it starts, not in its first task: an embedding
    chunk offered to a helper worker is worth ~1 s, so a helper that imported torch on demand lost the
    first chunks to the coordinator (measured: 5 of 13 chunks at 50,000 images, 1.60x with 2 workers)."""
    if _consumes_ml_queue:
        import embeddings.ml.inference  # noqa: F401


def _worker_name(task) -> str:
    hostname = getattr(task.request, "hostname", None) or socket.gethostname()
    return f"{hostname} pid {os.getpid()}"


@shared_task(
    bind=True, name="embeddings.tasks.run_pipeline", acks_late=True, reject_on_worker_lost=False, ignore_result=True
)
def run_pipeline(self, run_id: int) -> str:
    return services.training_run_execute(run_id=run_id, worker_name=_worker_name(self))


@shared_task(
    bind=True, name="embeddings.tasks.embed_chunk", acks_late=True, reject_on_worker_lost=False, ignore_result=True
)
def embed_chunk(self, run_id: int, index: int) -> str:
    return services.embedding_chunk_execute(run_id=run_id, index=index)


@shared_task(
    bind=True, name="embeddings.tasks.neighbor_chunk", acks_late=True, reject_on_worker_lost=False, ignore_result=True
)
def neighbor_chunk(self, run_id: int, purpose: str, index: int) -> str:
    """One chunk of a running run's layout or clustering neighbor queries (services.helper_chunks)."""
    return services.neighbor_chunk_execute(run_id=run_id, purpose=purpose, index=index)


@shared_task(
    bind=True,
    name="embeddings.tasks.place_images",
    acks_late=True,
    reject_on_worker_lost=False,
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=2,
    max_retries=3,
)
def place_images(self, run_id: int, image_ids=None) -> int:
    return services.images_place_execute(run_id=run_id, image_ids=image_ids)


@shared_task(name="embeddings.tasks.fail_stale_runs", ignore_result=True)
def fail_stale_runs() -> int:
    return services.runs_fail_stale()


@shared_task(
    name="embeddings.tasks.recompute_suggestions",
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    max_retries=3,
)
def recompute_suggestions(dataset_id: int, requested_at: str | None = None) -> str:
    """Debounced suggestion recompute; idempotent (a later request that is already
    covered by a finished recompute is skipped).  Returns "computed", "skipped" or "missing"."""
    return services.suggestions_recompute_if_stale(dataset_id=dataset_id, requested_at=requested_at)


@shared_task(
    name="embeddings.tasks.auto_retrain",
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    max_retries=3,
)
def auto_retrain(dataset_id: int) -> str:
    """Starts a default run when the dataset's auto-retrain is on and a retrain is suggested; idempotent
    (a second check finds the run active, or too recent).  Returns what happened (services.retrain)."""
    return services.training_run_start_auto(dataset_id=dataset_id)


# When celery beat runs, it reaps dead runs every minute; without beat the views
# that show runs (run status, run lists, the map and runs pages) and the run-start
# service call runs_fail_stale themselves first: selectors only read.
app.conf.beat_schedule = {
    **(app.conf.beat_schedule or {}),
    "embeddings-fail-stale-runs": {"task": "embeddings.tasks.fail_stale_runs", "schedule": 60.0},
}
