"""Reads of training runs: the current map's run, the active one, a dataset's runs, a run's status.

Reads only.  A run whose worker died stays "running" here until the reaper
(embeddings.services.runs_fail_stale) marks it failed: the periodic task does
that every minute, and the views that show runs call it first, explicitly.
"""

from __future__ import annotations

from embeddings.models import RunStatus, TrainingRun


def current_run(dataset) -> TrainingRun | None:
    """The dataset's current map: its newest succeeded run."""
    dataset_id = getattr(dataset, "pk", dataset)
    return TrainingRun.objects.filter(dataset_id=dataset_id, status=RunStatus.SUCCEEDED).order_by("-id").first()


def active_run(dataset) -> TrainingRun | None:
    """The dataset's queued or running run, if any."""
    dataset_id = getattr(dataset, "pk", dataset)
    return TrainingRun.objects.filter(dataset_id=dataset_id, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).first()


def dataset_runs(dataset):
    """Runs of a dataset, newest first."""
    return TrainingRun.objects.filter(dataset=dataset).order_by("-id")


def run_status(run: TrainingRun, *, with_detail: bool = False) -> dict:
    """What a status poll shows, as the run row says it (callers check liveness first).

    Every member sees the error's one-line reason; with_detail (the dataset's
    admins) adds the traceback and the worker's host and pid.
    """
    current = current_run(run.dataset_id)
    detail = {}
    if with_detail:
        # Runs failed before error_detail existed kept their traceback in error.
        legacy = run.error if run.error.strip() != run.error_reason else ""
        detail = {"worker": run.worker, "error_detail": run.error_detail or legacy}
    return {
        **detail,
        "id": run.pk,
        "dataset": run.dataset_id,
        "status": run.status,
        "stage": run.stage,
        "progress": run.progress,
        "params": run.params,
        "metrics": run.metrics,
        "loss_curve": run.loss_curve,
        "stage_timings": run.stage_timings,
        "error": run.error_reason,
        "cancel_requested": run.cancel_requested,
        "attempts": run.attempts,
        "heartbeat_at": run.heartbeat_at,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "input_size": run.input_size,
        "channels": run.channels,
        "image_count": run.image_count,
        "cluster_count": run.cluster_count,
        "placed_count": run.placed_count,
        "is_current": current is not None and current.pk == run.pk,
        # Which objective trained the run's encoder (None before it ran, and for runs that train none).
        "objective": (run.metrics or {}).get("objective"),
        "embedding": (run.params or {}).get("embedding", "autoencoder"),
        "started_automatically": run.started_automatically,
    }
