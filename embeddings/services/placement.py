"""Placing images uploaded after a run onto that run's map, without retraining.

The run's own model embeds the new images; each is put on the map near its
code-space neighbors (ml.layout.place_new_points) and into their cluster
(ml.clustering.assign_clusters).  Rows are marked placed_after_run and the run's
placed_count says how many, so the map page can offer a full re-run.

A run on uploaded vectors has no model to embed a new image with: its new
images stay off the map, and the run's metrics say how many and why
(`unplaced_images`, `unplaced_reason`) until a new upload and run include them.
A run on a registered backbone embeds its new images with that backbone (while
it is registered; after it is deleted they stay off, and the metrics say so).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np
from django.db import transaction
from django.db.models import F

from embeddings import storage, tasks
from embeddings.ml.clustering import assign_clusters
from embeddings.ml.layout import place_new_points
from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
from embeddings.selectors import current_run, run_arrays
from embeddings.selectors.backbones import backbone_of_dataset
from labeling.models import Image

# The module, not its names: pipeline places late images through this module in turn.
from . import pipeline
from .near_duplicates import run_near_duplicates_add
from .suggestions import suggestions_schedule_recompute

logger = logging.getLogger(__name__)

_models: OrderedDict = OrderedDict()
_models_lock = threading.Lock()


def _run_model(run: TrainingRun):
    """The run's autoencoder, kept in memory for the next placement (a few runs)."""
    with _models_lock:
        model = _models.get(run.pk)
        if model is not None:
            _models.move_to_end(run.pk)
            return model
    model = storage.read_model(run)
    with _models_lock:
        _models[run.pk] = model
        while len(_models) > 3:
            _models.popitem(last=False)
    return model


def _run_backbone(run: TrainingRun, backbone):
    """(spec, loaded model) of a run's backbone, kept in memory beside the autoencoders (same few-runs cache)."""
    key = ("backbone", backbone.pk, backbone.sha256)
    with _models_lock:
        found = _models.get(key)
        if found is not None:
            _models.move_to_end(key)
            return found
    found = pipeline.backbone_load_for_run(backbone, run_id=run.pk)
    with _models_lock:
        _models[key] = found
        while len(_models) > 3:
            _models.popitem(last=False)
    return found


def images_missing_from_run(run: TrainingRun):
    return Image.objects.filter(dataset_id=run.dataset_id).exclude(
        pk__in=ImageEmbedding.objects.filter(run_id=run.pk).values("image_id")
    )


def images_place_on_current_map(*, dataset, image_ids=None) -> TrainingRun | None:
    """Queue embedding and placement of new images on the dataset's current map.

    Returns the run they go into, or None when the dataset has no map yet (the
    next run includes them).  A broker outage is logged, not raised: uploads
    must not fail for it, and the next placement or run picks the images up
    (placement with image_ids=None places every image missing from the map).
    """
    run = current_run(dataset)
    if run is None:
        return None
    ids = None if image_ids is None else sorted({int(i) for i in image_ids})
    if ids == []:
        return run

    def publish():
        try:
            tasks.place_images.delay(run.pk, ids)
        except Exception:
            logger.exception("could not queue placement of %s image(s) into run %s", len(ids or ()), run.pk)

    transaction.on_commit(publish)
    return run


def _map_codes(run: TrainingRun, ids: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, codes) of everything on the run's map (committed rows) plus the new images."""
    arrays = run_arrays(run)
    known = arrays.codes()
    ids = np.asarray(ids, dtype=np.int64)
    if not known.size:
        return ids, np.asarray(codes, dtype=np.float32)
    keep = np.isfinite(known).all(axis=1) & ~np.isin(arrays.image_ids, ids)
    return (
        np.concatenate([arrays.image_ids[keep], ids]),
        np.concatenate([known[keep], np.asarray(codes, dtype=np.float32)]),
    )


def _add_near_duplicates(run: TrainingRun, map_ids: np.ndarray, map_codes: np.ndarray, new_ids: set) -> None:
    """Extends the run's stored near-duplicate pairs with the new images' pairs."""
    try:
        added = run_near_duplicates_add(run=run, codes=map_codes, image_ids=map_ids, new_image_ids=new_ids)
        if added:
            logger.info("run %s: %s near-duplicate pair(s) with the new images", run.pk, added)
    except Exception:  # the review queue misses these pairs until the next run; placement still counts
        logger.exception("run %s: could not update near-duplicate pairs", run.pk)


def _after_placement(run: TrainingRun) -> None:
    """The new images get suggestions without waiting for a label change, and the
    map's new version is cached before anyone asks for it."""
    try:
        suggestions_schedule_recompute(dataset_id=run.dataset_id)
    except Exception:
        logger.exception("could not schedule suggestions for dataset %s", run.dataset_id)
    pipeline.run_map_cache_warm(run_id=run.pk)


UNPLACED_REASON = "no vector for them in the run's upload: upload vectors for every image and start a new run"
BACKBONE_GONE_REASON = "the run's backbone has been deleted: start a new run to place them"


def _note_unplaceable(run: TrainingRun, reason: str = UNPLACED_REASON) -> None:
    """Records on a run that cannot embed new images (uploaded vectors, a deleted backbone) how many of the
    dataset's images it cannot show."""
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().filter(pk=run.pk).first()
        if locked is None:
            return
        count = images_missing_from_run(locked).count()
        metrics = dict(locked.metrics or {})
        if metrics.get("unplaced_images", 0) == count:
            return
        metrics["unplaced_images"] = count
        metrics["unplaced_reason"] = reason if count else ""
        TrainingRun.objects.filter(pk=run.pk).update(metrics=metrics)
    if count:
        logger.info("run %s: %s new image(s) cannot be placed: %s", run.pk, count, reason)


def images_place_execute(*, run_id: int, image_ids=None) -> int:
    """Embed and place images into a succeeded run; returns how many were placed.

    Idempotent: images already on the run's map are skipped, and placements for
    the same run are serialized on the run row, so a redelivered task adds nothing.
    """
    # torch: loaded by the worker that places images, never by a web process.
    from embeddings.ml.inference import embed_images

    run = TrainingRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).first()
    if run is None:
        return 0
    embedding = (run.params or {}).get("embedding")
    if embedding == "uploaded":
        _note_unplaceable(run)
        return 0
    backbone = None
    if embedding == "backbone":
        backbone = backbone_of_dataset(run.dataset_id, (run.params or {}).get("backbone"))
        if backbone is None:
            _note_unplaceable(run, BACKBONE_GONE_REASON)
            return 0
    candidates = images_missing_from_run(run)
    if image_ids is not None:
        candidates = candidates.filter(pk__in=[int(i) for i in image_ids])
    rows = list(candidates.order_by("id").values_list("id", "file", "width", "height", "mode", "original_name"))
    if not rows:
        return 0
    if backbone is not None:
        spec, loaded = _run_backbone(run, backbone)
        codes, ids, unreadable = pipeline.backbone_embed_rows(rows, backbone, spec, loaded)
        errors = None  # a backbone has no decoder
    else:
        images, ids, unreadable = pipeline.load_run_images(rows, run.input_size, run.channels)
    for bad in unreadable:
        logger.warning("run %s: image %s (%s) could not be placed: %s", run.pk, bad["id"], bad["name"], bad["error"])
    if len(ids) == 0:
        return 0
    if backbone is None:
        model = _run_model(run)
        codes, errors = embed_images(model, images, batch_size=pipeline.embedding_batch_size())
    ref_codes = storage.read_array(run, storage.CODES)
    ref_xy = storage.read_array(run, storage.LAYOUT)
    ref_labels = storage.read_array(run, storage.CLUSTERS)
    k = max(1, min(10, len(ref_codes)))
    xy = np.asarray(place_new_points(ref_codes, ref_xy, codes, k=k), dtype=np.float32)
    labels = np.asarray(assign_clusters(ref_codes, ref_labels, codes, k=k), dtype=np.int32)

    try:
        # Read before the transaction: the cache must not hold rows that could still roll back.
        map_ids, map_codes = _map_codes(run, ids, codes)
    except Exception:
        logger.exception("run %s: could not read the map's codes; near-duplicates not updated", run.pk)
        map_ids = map_codes = None

    with transaction.atomic():
        # One placement per run at a time: the lock makes "skip the ones already there" exact.
        TrainingRun.objects.select_for_update().filter(pk=run.pk).values_list("pk").first()
        already = set(
            ImageEmbedding.objects.filter(run_id=run.pk, image_id__in=[int(i) for i in ids]).values_list(
                "image_id", flat=True
            )
        )
        new_rows = [
            ImageEmbedding(
                run_id=run.pk,
                image_id=int(image_id),
                code=codes[i].tobytes(),
                x=float(xy[i, 0]),
                y=float(xy[i, 1]),
                cluster=int(labels[i]),
                reconstruction_error=None if errors is None else float(errors[i]),
                placed_after_run=True,
            )
            for i, image_id in enumerate(ids)
            if int(image_id) not in already
        ]
        ImageEmbedding.objects.bulk_create(new_rows, batch_size=2000)
        if new_rows:
            # Under the run lock, before placed_count moves: a reader caching the new
            # version of the map finds the new pairs already stored.
            if map_ids is not None:
                _add_near_duplicates(run, map_ids, map_codes, {r.image_id for r in new_rows})
            TrainingRun.objects.filter(pk=run.pk).update(placed_count=F("placed_count") + len(new_rows))
    if new_rows:
        transaction.on_commit(lambda: _after_placement(run))
    logger.info("run %s: placed %s new image(s)", run.pk, len(new_rows))
    return len(new_rows)
