"""Pages for the map, the cluster browser and training runs.

The heavy data (the columnar map, clusters, run status) comes from the REST API
in the browser; these views render the frame and the small facts the page needs
first (classes, the current run, the past runs table).
"""

import base64

from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render

from core.page_params import PageParameterError, bool_param, choice_param, class_param, int_param
from core.pages import dataset_classes, dataset_page, page_context

from .api.serializers import run_data
from .models import ACTIVE_RUN_STATUSES, RunStatus, TrainingRun
from .selectors import active_run, current_run
from .selectors import dataset_runs as runs_of
from .selectors.backbones import dataset_backbones
from .selectors.retrain import retrain_advice
from .services import runs_fail_stale
from .services.params import run_param_form_fields
from .services.preview import run_reconstruction_preview

PAST_RUNS_SHOWN = 25
RECONSTRUCTIONS_MAX = 32


def _run_data(run: TrainingRun | None) -> dict | None:
    """The run in the API's shape (GET /api/runs/<id>/), for the page's data."""
    return None if run is None else run_data(run, with_detail=False)


def _retrain_data(dataset) -> dict:
    """The retrain offer in the API's shape (GET /api/datasets/<id>/retrain/), for static/js/retrain.js."""
    advice = retrain_advice(dataset)
    advice["can_start_run"] = "start_run" in dataset.allowed
    advice["last_run_started_at"] = advice["last_run_started_at"] and advice["last_run_started_at"].isoformat()
    return advice


@dataset_page("view")
def dataset_map(request, dataset):
    run = current_run(dataset)
    classes = dataset_classes(dataset)
    initial = {
        "cluster": int_param(request.GET, "cluster"),
        "class": class_param(request.GET, "class", classes),
        "unlabeled": bool_param(request.GET, "unlabeled"),
        "color": choice_param(request.GET, "color", ("class", "cluster", "confidence")),
    }
    runs_fail_stale(dataset_id=dataset.pk)  # a dead worker's run shows as failed, not active
    active = active_run(dataset)
    active = {"id": active.id, "status": active.status} if active else None
    context = page_context(
        dataset,
        "map",
        classes=classes,
        run=run,
        active_run=active,
        page_data={
            "run": _run_data(run),
            "initial": initial,
            "active_run": active,
            "accept_min_confidence": settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE,
            "retrain": _retrain_data(dataset),
        },
    )
    return render(request, "embeddings/map.html", context)


@dataset_page("view")
def dataset_clusters(request, dataset):
    run = current_run(dataset)
    order = choice_param(request.GET, "order", ("size", "uncertainty"), default="size")
    runs_fail_stale(dataset_id=dataset.pk)  # the retrain offer must not wait on a dead worker's run
    page_data = {
        "run": _run_data(run),
        "order": order,
        "accept_min_confidence": settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE,
        "retrain": _retrain_data(dataset),
    }
    context = page_context(dataset, "clusters", run=run, order=order, page_data=page_data)
    return render(request, "embeddings/clusters.html", context)


@dataset_page("view")
def dataset_runs(request, dataset):
    runs_fail_stale(dataset_id=dataset.pk)  # a dead worker's run shows as failed, not running
    runs = list(runs_of(dataset).select_related("created_by")[:PAST_RUNS_SHOWN])
    active = next((r for r in runs if r.status in ACTIVE_RUN_STATUSES), None)
    latest_succeeded = next((r for r in runs if r.status == RunStatus.SUCCEEDED), None)
    for run in runs:
        run.timings = sorted((run.stage_timings or {}).items(), key=lambda kv: _STAGE_ORDER.get(kv[0], 99))
        run.duration = (
            (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
        )
    fields = run_param_form_fields()
    for field in fields:
        if field["name"] == "backbone":
            # A menu of the dataset's registered backbones instead of an id to type (none: only "none").
            field["choices"] = [
                {"value": str(b.pk), "label": f"{b.name} ({b.dim} values, #{b.pk})", "selected": False}
                for b in dataset_backbones(dataset)
            ]
    context = page_context(
        dataset,
        "runs",
        runs=runs,
        active_run=active,
        latest_succeeded=latest_succeeded,
        basic_fields=[f for f in fields if f["basic"]],
        advanced_fields=[f for f in fields if not f["basic"]],
        page_data={
            "active_run": active.id if active else None,
            "latest_succeeded": latest_succeeded.id if latest_succeeded else None,
            "watch_run": runs[0].id if runs else None,
        },
    )
    return render(request, "embeddings/runs.html", context)


_STAGE_ORDER = {"preparing": 0, "training": 1, "embedding": 2, "layout": 3, "clustering": 4, "done": 5}


@dataset_page("view")
def run_reconstructions(request, dataset, run_id):
    """Originals beside their reconstructions for a succeeded run, as data URLs."""
    run = runs_of(dataset).filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    if run.status != RunStatus.SUCCEEDED:
        return JsonResponse({"detail": "Reconstructions exist only for succeeded runs.", "items": []}, status=409)
    try:
        n = int_param(request.GET, "n", default=16, min_value=1, max_value=RECONSTRUCTIONS_MAX)
    except PageParameterError as exc:
        return JsonResponse({"detail": str(exc), "code": "invalid"}, status=400)
    items = run_reconstruction_preview(run=run, n=n)
    return JsonResponse({"run": run.id, "items": [_preview_item(item) for item in items]})


def _preview_item(item) -> dict:
    """Normalize one preview entry to {image_id, original, reconstruction} data URLs."""

    def as_url(value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return "data:image/png;base64," + base64.b64encode(bytes(value)).decode("ascii")
        return value

    return {
        "image_id": item.get("image_id", item.get("id")),
        "original": as_url(item.get("original")),
        "reconstruction": as_url(item.get("reconstruction")),
    }
