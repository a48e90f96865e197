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

Placements are coalesced per run, like the suggestions' recompute (a cache key
and a countdown; embeddings.services.suggestions): every placement reads the
whole map and searches it, so one task per upload request made a million
images uploaded 1,000 at a time cost a thousand full-map placements.  An upload
into a mapped dataset queues ``place_images(run_id, None)`` only when no
placement of that run is pending (the key); the task drops the key as it
starts, then places *every* image missing from the map, so uploads that arrive
while it runs queue exactly one more.  A task that finds nothing missing (an
old per-request message whose images an earlier task placed) answers from an
indexed EXISTS, without reading the map.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef

from core.db import chunks
from embeddings import storage, tasks
from embeddings.ml.clustering import ASSIGN_NEIGHBORS, clusters_from_neighbors
from embeddings.ml.layout import PLACEMENT_NEIGHBORS, positions_from_neighbors
from embeddings.ml.neighbors import NeighborIndex
from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
from embeddings.selectors import current_run, run_arrays
from embeddings.selectors.backbones import backbone_of_dataset
from labeling.models import Image
from project.resilient_cache import resilient_cache

# The module, not its names: pipeline places late images through this module in turn.
from . import pipeline
from .near_duplicates import run_near_duplicates_add
from .suggestions import suggestions_schedule_recompute

logger = logging.getLogger(__name__)

# A burst of uploads (a client sending 1,000 images a request) lands in one placement.
PLACEMENT_COUNTDOWN_S = 2
# The pending key outlives a lost message by at most this long (the next upload then queues
# a placement again); a placement that is still queued after it costs one more, cheap, task.
PLACEMENT_PENDING_TTL_S = 300
# Images loaded and embedded at a time (memory); the neighbor search then runs once for all of them.
PLACEMENT_CHUNK = 2048
# One task places at most this many (then queues the next), so a huge backlog is written in
# pieces a worker restart does not lose all of.
PLACEMENT_MAX_IMAGES = 100_000
# A placement of at least this many images refreshes the embeddings table's statistics, as a run's
# storing does (pipeline.embedding_statistics_refresh): a run of 1,000 images that receives 100,000
# more would otherwise be planned as small until autovacuum catches up.
PLACEMENT_ANALYZE_MIN_IMAGES = 10_000

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
    # NOT EXISTS (an anti-join on the (run, image) unique index), not NOT IN: `.exists()` on it
    # stops at the first missing image instead of hashing every embedding of the run first.
    # Images gone from their bucket (missing_since) are not placed, as runs leave them out.
    return Image.objects.filter(dataset_id=run.dataset_id, missing_since__isnull=True).filter(
        ~Exists(ImageEmbedding.objects.filter(run_id=run.pk, image_id=OuterRef("pk")))
    )


def _pending_key(run: TrainingRun) -> str:
    # created_at too: a deleted run's id can come back (SQLite), and must not inherit its key.
    return f"simlabel:placement:pending:{run.pk}:{run.created_at.timestamp():.6f}"


def placement_schedule(*, run: TrainingRun) -> bool:
    """Queues a placement of every image missing from the run's map, unless one is pending.

    Returns True when a task was queued, False when one is already pending (it
    will place these images too) or the broker could not be reached (the next
    upload, or the next run, picks the images up).
    """
    # With Redis (CACHE_URL) down this coalesces per process instead of failing the upload.
    if not resilient_cache.add(_pending_key(run), 1, timeout=PLACEMENT_PENDING_TTL_S):
        return False
    countdown = getattr(settings, "SIMLABEL_PLACEMENT_COUNTDOWN", PLACEMENT_COUNTDOWN_S)
    try:
        tasks.place_images.apply_async(args=[run.pk, None], countdown=countdown)
    except Exception:
        resilient_cache.delete(_pending_key(run))
        logger.exception("could not queue placement of new images into run %s", run.pk)
        return False
    return True


def images_place_on_current_map(*, dataset, image_ids=None) -> TrainingRun | None:
    """Queue embedding and placement of new images on the dataset's current map.

    Returns the run they go into, or None when the dataset has no map yet (the
    next run includes them).  The placement is coalesced with any already
    pending for the run (placement_schedule), after commit so that one sees
    these rows.  A broker outage is logged, not raised: uploads must not fail
    for it, and the next placement or run picks the images up.
    """
    run = current_run(dataset)
    if run is None:
        return None
    if image_ids is not None and not {int(i) for i in image_ids}:
        return run

    def publish():
        try:
            placement_schedule(run=run)
        except Exception:
            logger.exception("could not queue placement of new images into run %s", run.pk)

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
    """Embed and place every image missing from a succeeded run's map; returns how many were placed.

    image_ids (the per-request messages queued before placements were
    coalesced) only decide whether there is anything to do: when all of them
    are on the map already, an earlier placement took them and this one returns
    without reading the map.  Otherwise every missing image is placed (up to
    PLACEMENT_MAX_IMAGES, then the next task), so later messages find nothing.

    Idempotent: images already on the run's map are skipped, and placements for
    the same run are serialized on the run row, so a redelivered task adds nothing.
    """
    run = TrainingRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).first()
    if run is None:
        return 0
    # Dropped before reading what is missing: an upload committed after that read queues one more placement.
    resilient_cache.delete(_pending_key(run))
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
    missing = images_missing_from_run(run)
    asked = missing if image_ids is None else missing.filter(pk__in=[int(i) for i in image_ids])
    if not asked.exists():
        return 0
    rows = list(
        missing.order_by("id").values_list("id", "file", "width", "height", "mode", "original_name")[
            : PLACEMENT_MAX_IMAGES + 1
        ]
    )
    more = len(rows) > PLACEMENT_MAX_IMAGES
    ids, codes, errors = _embed_rows(run, backbone, rows[:PLACEMENT_MAX_IMAGES])
    placed = _place_embedded(run, ids, codes, errors) if len(ids) else 0
    if more and placed:  # a backlog of images that cannot be read never requeues itself forever
        placement_schedule(run=run)
    return placed


def _embed_rows(run: TrainingRun, backbone, rows: list) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(image ids, codes, reconstruction errors or None) of the readable images among rows,
    loaded and embedded PLACEMENT_CHUNK at a time so memory does not grow with the backlog."""
    # torch: loaded by the worker that places images, never by a web process.
    from embeddings.ml.inference import embed_images

    id_parts, code_parts, error_parts = [], [], []
    for start in range(0, len(rows), PLACEMENT_CHUNK):
        chunk = rows[start : start + PLACEMENT_CHUNK]
        errors = None  # a backbone has no decoder
        if backbone is not None:
            spec, loaded = _run_backbone(run, backbone)
            codes, ids, unreadable = pipeline.backbone_embed_rows(chunk, backbone, spec, loaded)
        else:
            images, ids, unreadable = pipeline.load_run_images(chunk, run.input_size, run.channels)
            if len(ids):
                codes, errors = embed_images(_run_model(run), images, batch_size=pipeline.embedding_batch_size())
        for bad in unreadable:
            logger.warning(
                "run %s: image %s (%s) could not be placed: %s", run.pk, bad["id"], bad["name"], bad["error"]
            )
        if len(ids):
            id_parts.append(np.asarray(ids, dtype=np.int64))
            code_parts.append(np.asarray(codes, dtype=np.float32))
            if errors is not None:
                error_parts.append(np.asarray(errors))
    if not id_parts:
        return np.zeros(0, dtype=np.int64), None, None
    return (
        np.concatenate(id_parts),
        np.concatenate(code_parts),
        np.concatenate(error_parts) if error_parts else None,
    )


def _place_embedded(run: TrainingRun, ids: np.ndarray, codes: np.ndarray, errors: np.ndarray | None) -> int:
    """Positions, clusters and near-duplicate pairs of embedded images, written under the run lock."""
    ref_codes = storage.read_array(run, storage.CODES)
    ref_xy = storage.read_array(run, storage.LAYOUT)
    ref_labels = storage.read_array(run, storage.CLUSTERS)
    # One neighbor search for every image of this placement, answering both the position and
    # the cluster: above APPROXIMATE_MIN_POINTS each index is an NN-descent build, tens of
    # seconds at a million points, and place_new_points and assign_clusters built one each.
    k = max(1, min(max(PLACEMENT_NEIGHBORS, ASSIGN_NEIGHBORS), len(ref_codes)))
    idx, dist = NeighborIndex(ref_codes).query_many(codes, k)
    k_place, k_assign = min(PLACEMENT_NEIGHBORS, k), min(ASSIGN_NEIGHBORS, k)
    xy = np.asarray(positions_from_neighbors(ref_xy, idx[:, :k_place], dist[:, :k_place]), dtype=np.float32)
    labels = np.asarray(clusters_from_neighbors(ref_labels, idx[:, :k_assign], dist[:, :k_assign]), dtype=np.int32)

    try:
        # Read before the transaction: the cache must not hold rows that could still roll back.
        map_ids, map_codes = _map_codes(run, ids, codes)
    except Exception:
        logger.exception("run %s: could not read the map's codes; near-duplicates not updated", run.pk)
        map_ids = map_codes = None

    with transaction.atomic():
        # One placement per run at a time: the lock makes "skip the ones already there" exact.
        TrainingRun.objects.select_for_update().filter(pk=run.pk).values_list("pk").first()
        already = set()
        for part in chunks([int(i) for i in ids]):  # a coalesced placement can list more ids than SQLite binds
            already.update(
                ImageEmbedding.objects.filter(run_id=run.pk, image_id__in=part).values_list("image_id", flat=True)
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
        if len(new_rows) >= PLACEMENT_ANALYZE_MIN_IMAGES:
            pipeline.embedding_statistics_refresh()
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
