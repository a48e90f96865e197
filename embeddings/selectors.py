"""Reads for the map, clusters, similar images and run status.

Hot paths (the map, similar images, lasso selection) read each run's columns
once with one query and keep them in memory, keyed by (run id, placed_count):
a run's positions never change after it succeeds, except by placing new images,
which bumps placed_count.  Labels and suggestions are read fresh.
"""
from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
from labeling.errors import ValidationFailed

# --- runs -------------------------------------------------------------------------------------


def current_run(dataset) -> TrainingRun | None:
    """The dataset's current map: its newest succeeded run."""
    dataset_id = getattr(dataset, "pk", dataset)
    return TrainingRun.objects.filter(dataset_id=dataset_id, status=RunStatus.SUCCEEDED).order_by("-id").first()


def active_run(dataset) -> TrainingRun | None:
    from embeddings.services import runs_fail_stale

    dataset_id = getattr(dataset, "pk", dataset)
    runs_fail_stale(dataset_id=dataset_id)
    return TrainingRun.objects.filter(dataset_id=dataset_id, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).first()


def dataset_runs(dataset):
    """Runs of a dataset, newest first (dead workers' runs already marked failed)."""
    from embeddings.services import runs_fail_stale

    runs_fail_stale(dataset_id=dataset.pk)
    return TrainingRun.objects.filter(dataset=dataset).order_by("-id")


def run_status(run: TrainingRun) -> dict:
    """What a status poll shows.  Checks the worker is alive first (one cheap UPDATE)."""
    from embeddings.services import training_run_check_liveness

    run = training_run_check_liveness(run=run)
    current = current_run(run.dataset_id)
    return {
        "id": run.pk,
        "dataset": run.dataset_id,
        "status": run.status,
        "stage": run.stage,
        "progress": run.progress,
        "params": run.params,
        "metrics": run.metrics,
        "loss_curve": run.loss_curve,
        "stage_timings": run.stage_timings,
        "error": run.error,
        "cancel_requested": run.cancel_requested,
        "attempts": run.attempts,
        "worker": run.worker,
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
    }


# --- per-run arrays, cached in-process ----------------------------------------------------------


@dataclass
class RunArrays:
    run_id: int
    image_ids: np.ndarray  # int64, sorted
    x: np.ndarray  # float32
    y: np.ndarray
    cluster: np.ndarray  # int32
    _codes: np.ndarray | None = None
    _index: object = None

    def row_of(self, image_id: int) -> int | None:
        i = int(np.searchsorted(self.image_ids, image_id))
        if i < len(self.image_ids) and self.image_ids[i] == image_id:
            return i
        return None

    def codes(self) -> np.ndarray:
        if self._codes is None:
            rows = ImageEmbedding.objects.filter(run_id=self.run_id).order_by("image_id").values_list("code", flat=True)
            blob = b"".join(bytes(c) for c in rows.iterator(chunk_size=5000))
            self._codes = np.frombuffer(blob, dtype=np.float32).reshape(len(self.image_ids), -1)
        return self._codes

    def neighbour_index(self):
        if self._index is None:
            from embeddings.ml.neighbours import NeighbourIndex

            self._index = NeighbourIndex(self.codes())
        return self._index


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()
CACHED_RUNS = 4


def run_arrays(run: TrainingRun) -> RunArrays:
    key = (run.pk, run.placed_count)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    rows = ImageEmbedding.objects.filter(run_id=run.pk).order_by("image_id").values_list("image_id", "x", "y", "cluster")
    data = list(rows)
    if data:
        ids, xs, ys, clusters = zip(*data)
    else:
        ids, xs, ys, clusters = (), (), (), ()
    arrays = RunArrays(
        run_id=run.pk,
        image_ids=np.asarray(ids, dtype=np.int64),
        x=np.asarray(xs, dtype=np.float32),
        y=np.asarray(ys, dtype=np.float32),
        cluster=np.asarray(clusters, dtype=np.int32),
    )
    with _cache_lock:
        # Older placed_count versions of the same run are dead weight now.
        for old in [k for k in _cache if k[0] == run.pk]:
            del _cache[old]
        _cache[key] = arrays
        while len(_cache) > CACHED_RUNS:
            _cache.popitem(last=False)
    return arrays


def clear_run_cache() -> None:
    with _cache_lock:
        _cache.clear()


# --- the map ------------------------------------------------------------------------------------


def _labels_and_suggestions(run: TrainingRun, dataset_id: int):
    """(image ids, class ids or -1, suggested class ids or -1, confidence or nan) of the run, by image id."""
    from labeling.models import Annotation

    suggestions = list(
        ImageEmbedding.objects.filter(run_id=run.pk, suggested_class__isnull=False)
        .values_list("image_id", "suggested_class_id", "suggestion_confidence")
    )
    labels = list(
        Annotation.objects.filter(dataset_id=dataset_id, label_class__isnull=False).values_list("image_id", "label_class_id")
    )
    return labels, suggestions


def _column(arrays: RunArrays, pairs, default, dtype):
    """A column aligned with arrays.image_ids from (image_id, value) pairs."""
    out = np.full(len(arrays.image_ids), default, dtype=dtype)
    if pairs and len(arrays.image_ids):
        ids = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        values = np.asarray([p[1] if p[1] is not None else default for p in pairs], dtype=dtype)
        pos = np.searchsorted(arrays.image_ids, ids)
        pos = np.clip(pos, 0, len(arrays.image_ids) - 1)
        hit = arrays.image_ids[pos] == ids
        out[pos[hit]] = values[hit]
    return out


def _none_for(values: np.ndarray, missing) -> list:
    listed = values.tolist()
    if np.issubdtype(values.dtype, np.floating):
        return [None if v != v else v for v in listed]
    return [None if v == missing else v for v in listed]


def dataset_map_points(dataset) -> dict:
    """Every image on the dataset's current map, as columns (cheap to send and draw).

    Keys: run, placed_count, count, image_ids, x, y, cluster, class (id or None),
    suggestion (class id or None), confidence (0..1 or None).  Two queries for
    labels and suggestions plus, on a cache miss, one for positions.
    """
    run = current_run(dataset)
    empty = {"run": None, "placed_count": 0, "count": 0, "image_ids": [], "x": [], "y": [], "cluster": [],
             "class": [], "suggestion": [], "confidence": []}
    if run is None:
        return empty
    arrays = run_arrays(run)
    labels, suggestions = _labels_and_suggestions(run, dataset.pk)
    label_col = _column(arrays, labels, -1, np.int64)
    suggestion_col = _column(arrays, [(s[0], s[1]) for s in suggestions], -1, np.int64)
    confidence_col = _column(arrays, [(s[0], s[2]) for s in suggestions], np.nan, np.float32)
    return {
        "run": run.pk,
        "placed_count": run.placed_count,
        "count": int(len(arrays.image_ids)),
        "image_ids": arrays.image_ids.tolist(),
        # Two decimals: the map spans about ±50 units, far finer than a pixel.
        "x": np.round(arrays.x.astype(np.float64), 2).tolist(),
        "y": np.round(arrays.y.astype(np.float64), 2).tolist(),
        "cluster": arrays.cluster.tolist(),
        "class": _none_for(label_col, -1),
        "suggestion": _none_for(suggestion_col, -1),
        "confidence": _none_for(np.round(confidence_col.astype(np.float64), 3), None),
    }


def image_map_position(image) -> dict | None:
    run = current_run(image.dataset_id)
    if run is None:
        return None
    row = (
        ImageEmbedding.objects.filter(run=run, image_id=image.pk)
        .values_list("x", "y", "cluster", "suggested_class_id", "suggestion_confidence", "reconstruction_error",
                     "placed_after_run")
        .first()
    )
    if row is None:
        return None
    return {"run": run.pk, "x": row[0], "y": row[1], "cluster": row[2], "suggested_class": row[3],
            "confidence": row[4], "reconstruction_error": row[5], "placed_after_run": row[6]}


# --- clusters -------------------------------------------------------------------------------------


def cluster_image_ids(dataset, cluster: int) -> list[int]:
    run = current_run(dataset)
    if run is None:
        return []
    arrays = run_arrays(run)
    return arrays.image_ids[arrays.cluster == int(cluster)].tolist()


def _entropy(counts: dict) -> float:
    total = sum(counts.values())
    if total <= 0 or len(counts) <= 1:
        return 0.0
    p = np.asarray(list(counts.values()), dtype=np.float64) / total
    return float(-(p * np.log(p)).sum() / np.log(len(p)))


def dataset_clusters(dataset, order: str = "size", include_image_ids: bool = True) -> list[dict]:
    """The current map's clusters with what is known about their classes.

    class_counts: {class id: labelled images}; suggested_class: the majority of
    labels and (for unlabelled images) suggestions; uncertainty 0..1: the mean of
    the normalised entropy of those votes and the mean (1 - confidence) of the
    suggestions (1 when nothing is known).  order: "size", "uncertainty" or "id".
    """
    if order not in ("size", "uncertainty", "id"):
        raise ValidationFailed("order must be size, uncertainty or id.", field="order")
    run = current_run(dataset)
    if run is None:
        return []
    arrays = run_arrays(run)
    labels, suggestions = _labels_and_suggestions(run, dataset.pk)
    label_col = _column(arrays, labels, -1, np.int64)
    suggestion_col = _column(arrays, [(s[0], s[1]) for s in suggestions], -1, np.int64)
    confidence_col = _column(arrays, [(s[0], s[2]) for s in suggestions], np.nan, np.float32)
    result = []
    order_idx = np.argsort(arrays.cluster, kind="stable")
    sorted_clusters = arrays.cluster[order_idx]
    cluster_ids, starts = np.unique(sorted_clusters, return_index=True)
    bounds = list(starts) + [len(sorted_clusters)]
    for j, cluster in enumerate(cluster_ids.tolist()):
        members = order_idx[bounds[j]:bounds[j + 1]]
        member_labels = label_col[members]
        labelled = member_labels[member_labels >= 0]
        class_counts = {int(c): int(n) for c, n in zip(*np.unique(labelled, return_counts=True))}
        unlabelled = members[member_labels < 0]
        votes = dict(class_counts)
        suggested = suggestion_col[unlabelled]
        for c, n in zip(*np.unique(suggested[suggested >= 0], return_counts=True)):
            votes[int(c)] = votes.get(int(c), 0) + int(n)
        confidences = confidence_col[unlabelled]
        confidences = confidences[~np.isnan(confidences)]
        if votes:
            suggested_class = max(votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]
            doubt = float((1.0 - confidences).mean()) if len(confidences) else 0.0
            uncertainty = 0.5 * _entropy(votes) + 0.5 * doubt
        else:
            suggested_class, uncertainty = None, 1.0
        entry = {
            "id": int(cluster),
            "size": int(len(members)),
            "labelled": int(len(labelled)),
            "class_counts": class_counts,
            "suggested_class": suggested_class,
            "uncertainty": round(uncertainty, 4),
        }
        if include_image_ids:
            entry["image_ids"] = arrays.image_ids[members].tolist()
        result.append(entry)
    if order == "size":
        result.sort(key=lambda c: (-c["size"], c["id"]))
    elif order == "uncertainty":
        result.sort(key=lambda c: (-c["uncertainty"], -c["size"], c["id"]))
    return result


# --- lasso selection ------------------------------------------------------------------------------


def _validate_polygon(polygon) -> np.ndarray:
    try:
        points = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationFailed("polygon must be a list of [x, y] points.", field="polygon")
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValidationFailed("polygon needs at least 3 [x, y] points.", field="polygon")
    if len(points) > 10_000:
        raise ValidationFailed("polygon has too many points (at most 10000).", field="polygon")
    if not np.isfinite(points).all():
        raise ValidationFailed("polygon coordinates must be finite numbers.", field="polygon")
    return points


def points_in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, vectorised over the points, one edge at a time."""
    inside = np.zeros(len(x), dtype=bool)
    px, py = polygon[:, 0], polygon[:, 1]
    j = len(polygon) - 1
    for i in range(len(polygon)):
        xi, yi, xj, yj = px[i], py[i], px[j], py[j]
        crosses = (yi > y) != (yj > y)
        if crosses.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = (xj - xi) * (y - yi) / (yj - yi) + xi
            inside ^= crosses & (x < x_at)
        j = i
    return inside


def image_ids_in_polygon(dataset, polygon) -> list[int]:
    """Images of the current map inside a polygon drawn on the map (map coordinates)."""
    points = _validate_polygon(polygon)
    run = current_run(dataset)
    if run is None:
        return []
    arrays = run_arrays(run)
    (xmin, ymin), (xmax, ymax) = points.min(axis=0), points.max(axis=0)
    in_box = np.flatnonzero((arrays.x >= xmin) & (arrays.x <= xmax) & (arrays.y >= ymin) & (arrays.y <= ymax))
    if len(in_box) == 0:
        return []
    hit = points_in_polygon(arrays.x[in_box].astype(np.float64), arrays.y[in_box].astype(np.float64), points)
    return arrays.image_ids[in_box[hit]].tolist()


# --- similar images ---------------------------------------------------------------------------------


def image_similar(image, k: int = 20) -> list[dict]:
    """The k images nearest to this one in code space on the current map (itself excluded)."""
    from labeling.models import Annotation

    k = max(1, min(int(k), 200))
    run = current_run(image.dataset_id)
    if run is None:
        return []
    arrays = run_arrays(run)
    row = arrays.row_of(image.pk)
    if row is None or len(arrays.image_ids) < 2:
        return []
    index = arrays.neighbour_index()
    indices, distances = index.query(row, min(k, len(arrays.image_ids) - 1))
    ids = arrays.image_ids[np.asarray(indices, dtype=np.int64)].tolist()
    classes = dict(Annotation.objects.filter(image_id__in=ids).values_list("image_id", "label_class_id"))
    return [{"id": i, "distance": round(float(d), 5), "class": classes.get(i)} for i, d in zip(ids, distances)]


# --- training page ------------------------------------------------------------------------------------


def _png_data_url(array: np.ndarray) -> str:
    from PIL import Image as PILImage

    arr = np.clip(np.asarray(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = PILImage.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def run_reconstruction_preview(run: TrainingRun, n: int = 16) -> list[dict]:
    """Originals beside the autoencoder's reconstructions, as small PNG data URLs.

    Picks images spread over the range of reconstruction error (best to worst),
    so the page shows both what the model learned well and what it did not.
    """
    import torch

    from embeddings import storage

    from embeddings.services.pipeline import load_run_images

    if run.status != RunStatus.SUCCEEDED or not storage.exists(run, storage.MODEL):
        return []
    n = max(1, min(int(n), 64))
    rows = list(ImageEmbedding.objects.filter(run=run).order_by("reconstruction_error", "image_id")
                .values_list("image_id", "reconstruction_error"))
    if not rows:
        return []
    picks = sorted({int(round(v)) for v in np.linspace(0, len(rows) - 1, min(n, len(rows)))})
    chosen = [rows[i] for i in picks]
    from labeling.models import Image

    files = dict(Image.objects.filter(pk__in=[c[0] for c in chosen]).values_list("id", "file"))
    load_rows = [(image_id, files[image_id]) for image_id, _ in chosen if image_id in files]
    images, ids, _ = load_run_images(load_rows, run.input_size, run.channels)
    if len(ids) == 0:
        return []
    model = storage.read_model(run, device=torch.device("cpu"))
    with torch.inference_mode():
        recon = model(torch.from_numpy(images)).numpy()
    errors = dict(chosen)
    return [
        {"image_id": int(image_id), "reconstruction_error": float(errors[int(image_id)]),
         "original": _png_data_url(images[i]), "reconstruction": _png_data_url(recon[i])}
        for i, image_id in enumerate(ids)
    ]
