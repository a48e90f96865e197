"""Starting, cancelling and reaping training runs, and the worker's run reporter.

Run state lives on the TrainingRun row; every write here is a conditional
UPDATE on the status it expects, so a web request, the worker and the stale-run
reaper can race without one undoing another.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from core.errors import RunAlreadyActive, ServiceUnavailable, ValidationFailed
from embeddings import tasks
from embeddings.models import ACTIVE_RUN_STATUSES, ERROR_REASON_MAX, RunStage, RunStatus, TrainingRun
from embeddings.signals import run_finished_send
from labeling.models import Image

from .backbones import backbone_check_run
from .embeddings_upload import uploaded_embeddings_check_run
from .params import run_params_validate

logger = logging.getLogger(__name__)

STALE_REASON = "worker stopped responding (killed or crashed)"
QUEUE_UNREACHABLE = "could not reach the task queue"


def min_run_images() -> int:
    return int(getattr(settings, "SIMLABEL_MIN_RUN_IMAGES", 10))


def heartbeat_timeout() -> float:
    return float(settings.SIMLABEL_RUN_HEARTBEAT_TIMEOUT)


def heartbeat_interval() -> float:
    # Several beats per timeout, so one slow database write never looks like death.
    return max(0.5, min(10.0, heartbeat_timeout() / 4.0))


# --- starting and cancelling ---------------------------------------------------------------


def training_run_start(*, dataset, user, params: dict | None = None) -> TrainingRun:
    """Queue a new run of the pipeline for the dataset.

    The caller has checked that the user may start runs.  One queued or running
    run per dataset is enforced by a database constraint: a second start gets
    RunAlreadyActive with the active run's id.  The task is published after the
    commit; when the broker cannot be reached the publish fails fast (settings:
    connection timeout and retry policy), the run is marked failed with the reason,
    and ServiceUnavailable (503) is raised: labeling keeps working meanwhile.
    """
    # A dead worker's run must not block new runs until something reads it.
    runs_fail_stale(dataset_id=dataset.pk)
    image_count = Image.objects.filter(dataset=dataset).count()
    clean = run_params_validate(params, image_count=image_count)
    if image_count < min_run_images():
        raise ValidationFailed(
            f"A run needs at least {min_run_images()} images; this dataset has {image_count}.",
            image_count=image_count,
        )
    # Every start path (API, runs page, start_run) refuses uploaded vectors that miss images, before queueing.
    uploaded_embeddings_check_run(dataset=dataset, params=clean)
    backbone_check_run(dataset=dataset, params=clean)
    task_id = str(uuid.uuid4())
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                dataset=dataset,
                created_by=user,
                params=clean,
                celery_task_id=task_id,
                image_count=image_count,
            )
            transaction.on_commit(lambda: _publish_run(run, task_id))
    except IntegrityError:
        active = TrainingRun.objects.filter(dataset=dataset, status__in=ACTIVE_RUN_STATUSES).first()
        raise RunAlreadyActive(
            f"Run {active.pk if active else '?'} is already {active.status if active else 'active'} for this dataset.",
            run_id=active.pk if active else None,
        ) from None
    run.refresh_from_db()
    return run


def _publish_run(run: TrainingRun, task_id: str) -> None:
    try:
        tasks.run_pipeline.apply_async(args=[run.pk], task_id=task_id)
    except Exception as exc:  # kombu raises OperationalError and friends; all mean "not queued"
        # The broker's own message can name its host and port: admins only.
        failed = TrainingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED,
            error=QUEUE_UNREACHABLE,
            error_detail=f"{QUEUE_UNREACHABLE}: {exc}",
            finished_at=timezone.now(),
        )
        if failed:
            run_finished_send(run_ids=[run.pk])
        logger.warning("run %s not queued: %s: %s", run.pk, QUEUE_UNREACHABLE, exc)
        raise ServiceUnavailable(
            "The task queue (broker) is not reachable, so the run could not be started. "
            "Labeling still works; try again when the queue is back.",
            run_id=run.pk,
        ) from exc


def training_run_cancel(*, run: TrainingRun, user=None) -> TrainingRun:
    """A queued run is cancelled at once; a running one stops at its next step."""
    now = timezone.now()
    cancelled = TrainingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED, cancel_requested=True, finished_at=now, error="cancelled before it started"
    )
    if not cancelled:
        TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(cancel_requested=True)
    run.refresh_from_db()
    return run


# --- dead workers ----------------------------------------------------------------------------


def runs_fail_stale(*, dataset_id: int | None = None, run_id: int | None = None) -> int:
    """Mark running runs whose worker stopped writing heartbeats as failed.

    The one place runs are reaped: called cheaply (one UPDATE) by the views
    before they show runs (training_run_check_liveness for one run), by
    training_run_start, and every minute by the periodic task when celery beat
    runs.  Selectors never call it.  Returns the number of runs failed.
    """
    cutoff = timezone.now() - timedelta(seconds=heartbeat_timeout())
    stale = TrainingRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff)
    if dataset_id is not None:
        stale = stale.filter(dataset_id=dataset_id)
    if run_id is not None:
        stale = stale.filter(pk=run_id)
    now = timezone.now()
    count = stale.update(
        status=RunStatus.FAILED,
        error=f"{STALE_REASON}: no heartbeat for more than {heartbeat_timeout():g} s",
        # Which worker went quiet (host and pid) is for the dataset's admins.
        error_detail=Concat(Value("worker: "), F("worker")),
        finished_at=now,
    )
    if count:
        logger.warning("marked %d stale run(s) failed", count)
        # The runs this UPDATE failed carry its timestamp: no extra query when nothing was stale.
        reaped = TrainingRun.objects.filter(status=RunStatus.FAILED, finished_at=now, error__startswith=STALE_REASON)
        run_finished_send(run_ids=reaped.values_list("id", flat=True))
    return count


def training_run_check_liveness(*, run: TrainingRun) -> TrainingRun:
    """The run, failed first if its worker is gone (used on every status read)."""
    if run.status == RunStatus.RUNNING and runs_fail_stale(run_id=run.pk):
        run.refresh_from_db()
    return run


# --- claiming a run on the worker --------------------------------------------------------------


class RunLost(Exception):
    """The run row is no longer ours (reaped as stale, or deleted): stop quietly."""


class RunCancelled(Exception):
    pass


def run_claim(*, run_id: int, worker_name: str, max_attempts: int = 2) -> TrainingRun | None:
    """Take the run for this worker, or None if someone else has it or it is over.

    A queued run is claimed; a running run whose heartbeat is stale (its worker
    died and the broker redelivered the message) is retried, once.  The claim is
    one conditional UPDATE, so a redelivered message running beside the first
    one finds nothing to claim.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=heartbeat_timeout())
    claimable = Q(status=RunStatus.QUEUED, cancel_requested=False) | Q(
        status=RunStatus.RUNNING, heartbeat_at__lt=cutoff, attempts__lt=max_attempts, cancel_requested=False
    )
    claimed = TrainingRun.objects.filter(claimable, pk=run_id).update(
        status=RunStatus.RUNNING,
        stage=RunStage.PREPARING,
        progress=0.0,
        attempts=F("attempts") + 1,
        worker=worker_name[:200],
        heartbeat_at=now,
        started_at=now,
        error="",
        error_detail="",
        loss_curve=[],
        metrics={},
        stage_timings={},
    )
    if not claimed:
        return None
    return TrainingRun.objects.get(pk=run_id)


def loss_point(step: int, metrics: dict) -> dict:
    """One entry of a run's loss curve from a train_autoencoder progress report.

    The curve holds two series, told apart by "kind": "batch" (the mean loss of
    the steps since the previous report) and "epoch" (an epoch's mean, at the
    step that ended it).  The page draws each as its own trace: joined into one
    line, the epoch mean beside the last batch loss at the same step made the
    curve jump at every epoch.
    """
    epoch = int(metrics.get("epoch", 0))
    if "epoch_loss" in metrics:
        return {"kind": "epoch", "step": int(step), "epoch": epoch, "loss": float(metrics["epoch_loss"])}
    return {"kind": "batch", "step": int(step), "epoch": epoch, "loss": float(metrics["loss"])}


class RunReporter:
    """The worker's voice on the run row: progress, loss curve, heartbeat, cancel.

    A background thread writes the heartbeat every few seconds for as long as
    the worker process lives, so long stages without callbacks (t-SNE, the bulk
    write) never look dead, and a SIGKILLed worker stops beating at once.
    Progress writes are throttled to one a second.
    """

    # Share of the run's total time each stage typically takes (sums to 1).
    STAGE_WEIGHTS = {
        RunStage.PREPARING: 0.10,
        RunStage.TRAINING: 0.55,
        RunStage.EMBEDDING: 0.10,
        RunStage.LAYOUT: 0.17,
        RunStage.CLUSTERING: 0.08,
    }

    def __init__(self, run: TrainingRun, *, min_interval: float = 1.0):
        self.run_id = run.pk
        self.min_interval = min_interval
        self.stage = run.stage
        self.stage_started = time.perf_counter()
        self.stage_timings: dict[str, float] = {}
        self.loss_curve: list = []
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancel_seen = False
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"run-{run.pk}-heartbeat", daemon=True)

    # context manager: the heartbeat thread lives exactly as long as the work
    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def _beat(self):
        try:
            while not self._stop.wait(heartbeat_interval()):
                try:
                    alive = TrainingRun.objects.filter(pk=self.run_id, status=RunStatus.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                    if not alive:
                        self._lost.set()
                except Exception:  # a locked or briefly unreachable database: beat again later
                    logger.exception("heartbeat for run %s failed", self.run_id)
        finally:
            connection.close()  # this thread's own connection

    def _base_progress(self, stage) -> float:
        total = 0.0
        for name, weight in self.STAGE_WEIGHTS.items():
            if name == stage:
                return total
            total += weight
        return total

    def _write(self, **fields) -> None:
        fields["heartbeat_at"] = timezone.now()
        updated = TrainingRun.objects.filter(pk=self.run_id, status=RunStatus.RUNNING).update(**fields)
        self._last_write = time.monotonic()
        if not updated:
            raise RunLost(f"run {self.run_id} is no longer running on this worker")

    def check(self) -> None:
        """Raise RunLost / RunCancelled when the run should stop (DB read at most once a second)."""
        if self._lost.is_set():
            raise RunLost(f"run {self.run_id} is no longer running on this worker")
        if self.should_stop():
            raise RunCancelled()

    def should_stop(self) -> bool:
        if self._cancel_seen or self._lost.is_set():
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= self.min_interval:
            self._last_cancel_check = now
            row = TrainingRun.objects.filter(pk=self.run_id).values_list("status", "cancel_requested").first()
            if row is None or row[0] != RunStatus.RUNNING:
                self._lost.set()
                return True
            self._cancel_seen = bool(row[1])
        return self._cancel_seen

    def enter_stage(self, stage) -> None:
        self._finish_stage()
        self.stage = stage
        self.stage_started = time.perf_counter()
        self.check()
        self._write(stage=stage, progress=self._base_progress(stage), stage_timings=self.stage_timings)

    def _finish_stage(self) -> None:
        self.stage_timings[str(self.stage)] = round(time.perf_counter() - self.stage_started, 3)

    def progress(self, fraction: float, *, loss_point: dict | None = None, force: bool = False) -> None:
        """Progress within the current stage (0..1); writes at most once a second."""
        if loss_point is not None:
            self.loss_curve.append(loss_point)
        if not force and time.monotonic() - self._last_write < self.min_interval:
            return
        weight = self.STAGE_WEIGHTS.get(self.stage, 0.0)
        overall = self._base_progress(self.stage) + weight * max(0.0, min(1.0, fraction))
        fields = {"progress": round(min(overall, 0.999), 4)}
        if self.stage == RunStage.TRAINING:
            fields["loss_curve"] = self.loss_curve
        self._write(**fields)

    def timings(self) -> dict:
        self._finish_stage()
        return dict(self.stage_timings)


def run_mark_finished(*, run_id: int, status: str, error: str = "", error_detail: str = "", **fields) -> bool:
    """Move a running run to its end state; False if it was not running any more."""
    finished = bool(
        TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            status=status,
            error=error[:ERROR_REASON_MAX],
            error_detail=error_detail[:20000],
            finished_at=timezone.now(),
            **fields,
        )
    )
    if finished:
        run_finished_send(run_ids=[run_id])  # sends for succeeded and failed runs only
    return finished


def failure_reason(exc: BaseException) -> str:
    """The error every member sees: one line, the exception's type and the first line of its message.

    Tracebacks name the server's paths, and the worker its host and pid: those
    go to failure_detail, which only the dataset's admins see.
    """
    lines = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return reason if len(reason) <= ERROR_REASON_MAX else reason[: ERROR_REASON_MAX - 1] + "…"


def failure_detail(exc: BaseException, *, worker: str = "") -> str:
    """The error for the dataset's admins and the logs: the worker, then the traceback's innermost frames."""
    frames = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-20000:]
    return f"worker: {worker}\n\n{frames}" if worker else frames
