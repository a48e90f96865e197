"""Executing a training run on the worker: prepare, train, embed, lay out, cluster, store.

Read, compute, write: images and arrays are loaded and computed outside any
transaction; the per-image results are written in one atomic block at the end,
and only if the run is still ours (not cancelled, not reaped as stale).
"""

from __future__ import annotations

import io
import itertools
import logging
import time
import uuid
from dataclasses import dataclass

import numpy as np
from celery import group
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from core.db import on_postgres
from core.object_storage import referenced_originals

# The module, not its names: embeddings.tasks imports these services in turn.
from embeddings import storage, tasks
from embeddings.ml.config import choose_labels
from embeddings.ml.preprocess import choose_input_spec, load_image_array
from embeddings.models import ImageEmbedding, RunStage, RunStatus, TrainingRun
from embeddings.selectors import map_cache_warm
from embeddings.selectors.backbones import backbone_file_bytes, backbone_of_dataset
from embeddings.selectors.uploaded_embeddings import uploaded_embedding_arrays, uploaded_embedding_current
from embeddings.signals import run_finished_send
from labeling.models import Annotation, Image

from . import params as run_params
from . import placement
from .embeddings_upload import uploaded_vectors_missing_message
from .helper_chunks import RunNeighborQueries, delete_chunk_files, setting_int
from .near_duplicates import run_near_duplicates_store
from .runs import (
    RunCancelled,
    RunLost,
    RunReporter,
    failure_detail,
    failure_reason,
    loss_point,
    min_run_images,
    run_claim,
    run_mark_finished,
)
from .suggestions import suggestions_schedule_recompute

logger = logging.getLogger(__name__)

# Unreadable images are skipped (and listed in the run's metrics) up to this share.
MAX_UNREADABLE_SHARE = 0.05
EMBED_BATCH_SIZE = 1024
# Image rows written per INSERT when a run stores its results.
STORE_BATCH = 2000


def embed_chunk_size() -> int:
    return max(1, setting_int("SIMLABEL_EMBED_CHUNK_SIZE", 4096))


def embed_parallel_min_images() -> int:
    """Datasets with at least this many images are embedded in chunks that idle
    `ml` workers help with (0: never)."""
    return setting_int("SIMLABEL_EMBED_PARALLEL_MIN_IMAGES", 20000)


# --- entry point called by the task ----------------------------------------------------------------


def training_run_execute(*, run_id: int, worker_name: str) -> str:
    """Run the whole pipeline for a queued run; returns what happened.

    Safe to call twice for the same run (a redelivered message): the second call
    finds nothing to claim and returns "skipped".  Every exception ends the run
    as failed with the reason: a run never stays running because of an error.
    """
    run = run_claim(run_id=run_id, worker_name=worker_name)
    if run is None:
        logger.info("run %s: nothing to claim (already taken, finished or cancelled): skipped", run_id)
        return "skipped"
    logger.info("run %s claimed by %s (attempt %s)", run_id, worker_name, run.attempts)
    with RunReporter(run) as reporter:
        try:
            metrics = _execute(run, reporter)
        except RunCancelled:
            run_mark_finished(
                run_id=run_id,
                status=RunStatus.CANCELLED,
                error="cancelled by a user",
                stage_timings=reporter.timings(),
                loss_curve=reporter.loss_curve,
            )
            logger.info("run %s cancelled", run_id)
            return "cancelled"
        except RunLost:
            logger.warning("run %s was taken away from this worker (reaped or deleted); stopped", run_id)
            _delete_artifacts_if_deleted(run)
            return "lost"
        except Exception as exc:
            logger.exception("run %s failed on %s", run_id, worker_name)
            run_mark_finished(
                run_id=run_id,
                status=RunStatus.FAILED,
                error=failure_reason(exc),
                error_detail=failure_detail(exc, worker=worker_name),
                stage_timings=reporter.timings(),
                loss_curve=reporter.loss_curve,
            )
            return "failed"
    if metrics is None:
        _delete_artifacts_if_deleted(run)
        return "lost"
    _after_success(run)
    run_finished_send(run_ids=[run.pk])
    return "succeeded"


def _delete_artifacts_if_deleted(run: TrainingRun) -> None:
    """A run deleted with its dataset while this worker computed: what it wrote since goes too."""
    if TrainingRun.objects.filter(pk=run.pk).exists():
        return  # reaped as stale, not deleted: its files stay for whoever looks into it
    try:
        removed = storage.delete_tree(run.artifact_prefix)
        logger.info("run %s was deleted; removed %d artifact file(s) it wrote", run.pk, len(removed))
    except Exception:  # cleanup_orphan_media finds them later
        logger.exception("could not delete the artifacts of deleted run %s", run.pk)


def run_map_cache_warm(*, run_id: int) -> None:
    """Reads a run's arrays into the shared cache so its first visitor finds a warm map."""
    run = TrainingRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).first()
    if run is None:
        return
    try:
        map_cache_warm(run)
    except Exception:  # a cold cache only costs the first visitor time
        logger.exception("could not warm the map cache of run %s", run_id)


def _after_success(run: TrainingRun) -> None:
    try:
        suggestions_schedule_recompute(dataset_id=run.dataset_id)
    except Exception:
        logger.exception("could not schedule suggestions for dataset %s", run.dataset_id)
    # Images uploaded while the run was training are not in it: place them now.
    if placement.images_missing_from_run(run).exists():
        try:
            placement.images_place_execute(run_id=run.pk)
        except Exception:
            logger.exception("placing late images into run %s failed", run.pk)
    # Last, so it caches the map's final version (placement above warms it too: a cheap second call).
    transaction.on_commit(lambda: run_map_cache_warm(run_id=run.pk))


# --- the stages ------------------------------------------------------------------------------------------


@dataclass
class PreparedImages:
    """The run's images as the model reads them, and what could not be read."""

    # (M, C, H, W) float32, what training reads: every readable image, rows as image_ids; or, when `streamed`,
    # only training's sample and the labeled images (embedding then reads every image a chunk at a time).
    # None once handed to the pipeline, or for runs that train nothing.
    images: np.ndarray | None
    image_ids: np.ndarray  # int64 (N,); the images found unreadable while embedding leave it then
    unreadable: list  # [{id, name, error}]
    input_size: int | None  # None for uploaded vectors: no image is read
    channels: int | None
    # Runs on uploaded vectors: the vectors (float32 N x dim, rows as image_ids) and which upload they came from.
    codes: np.ndarray | None = None
    uploaded: dict | None = None
    # Runs on a backbone: which one embedded the images, on what device, how fast.
    backbone: dict | None = None
    # The class index training learns from for each row of images (config.choose_labels: -1 unlabeled or
    # left out), from the labels people had given when the run started; None: training learns from none.
    train_labels: np.ndarray | None = None
    # Why training learned from those labels or not (config.choose_labels), once decided.
    labels_reason: str = ""
    # The rows of images training reconstructs (training.training_sample); None: all of them.
    train_rows: np.ndarray | None = None
    streamed: bool = False
    # The dataset's images when the run started, readable or not: the unreadable share is of these.
    image_count: int = 0

    def hand_over(self) -> np.ndarray:
        """The images, dropping this reference: the pipeline frees them after embedding."""
        images, self.images = self.images, None
        return images


def _execute(run: TrainingRun, reporter: RunReporter) -> dict | None:
    params = run_params.run_params_validate(run.params or {})  # defaults for keys added since the run was queued
    started = time.perf_counter()
    if params["embedding"] == "uploaded":
        prepared = _prepare_uploaded(run, reporter)
        result, chunk_info = _compute_from_codes(run, params, prepared, reporter), {}
    elif params["embedding"] == "backbone":
        prepared = _prepare_backbone(run, params, reporter)
        result, chunk_info = _compute_from_codes(run, params, prepared, reporter), {}
    else:
        prepared = _prepare(run, params, reporter)
        result, chunk_info = _compute(run, params, prepared, reporter)
    reporter.check()
    duplicate_info = _store_artifacts(run, prepared, result)
    reporter.check()
    metrics = _run_metrics(params, prepared, result, chunk_info, duplicate_info, started)
    return _store_rows(run, prepared, result, metrics, reporter, started)


def _prepare(run: TrainingRun, params: dict, reporter: RunReporter) -> PreparedImages:
    """The preparing stage: choose the input size and channels, and decode what training reads.

    The size and channels come from the sizes and modes recorded at ingest (no
    image is opened for them).  When training samples (max_train_images, fewer
    than the dataset's images), only that sample and the labeled images are
    decoded here; embedding reads every image again a chunk at a time, so no
    stage holds the whole dataset's pixels.  A smaller dataset is decoded whole
    here and embedded from memory.  A few unreadable images are skipped.
    """
    reporter.enter_stage(RunStage.PREPARING)
    ids = _dataset_image_ids(run.dataset_id)
    if len(ids) < min_run_images():
        raise ValueError(f"the dataset has {len(ids)} images; a run needs at least {min_run_images()}")
    input_size, channels = params["input_size"], params["channels"]
    if input_size is None or channels is None:
        chosen_size, chosen_channels = _dataset_input_spec(run.dataset_id)
        input_size = input_size or chosen_size
        channels = channels or chosen_channels
    TrainingRun.objects.filter(pk=run.pk).update(input_size=input_size, channels=channels, image_count=len(ids))
    run.input_size, run.channels = input_size, channels
    # Deferred on purpose, as in _compute: training imports torch.
    from embeddings.ml.training import training_sample

    sample = training_sample(len(ids), run_params.train_config(params, input_size=input_size, channels=channels))
    # Read after run_claim set started_at: the run saw every label given before it started.
    classes = image_classes(run.dataset_id, ids)
    labels = choose_labels(classes, params["use_labels"])
    if sample is None:
        read = np.arange(len(ids))
    else:
        labeled = np.flatnonzero(labels.classes >= 0) if labels.classes is not None else np.empty(0, np.int64)
        read = np.union1d(sample, labeled)
    images, read_ids, unreadable = load_run_images(
        image_rows(ids[read]),
        input_size,
        channels,
        on_progress=lambda done, total: reporter.progress(done / total),
        should_stop=reporter.check,
    )
    _check_unreadable(len(ids), len(ids) - len(unreadable), unreadable)
    kept = read[np.isin(ids[read], read_ids)]  # rows of ids, as the rows of images
    image_ids = ids[np.isin(ids, [u["id"] for u in unreadable], invert=True)]
    storage.write_array(run, storage.IMAGE_IDS, image_ids)
    if sample is None:
        labels = choose_labels(classes[kept], params["use_labels"])  # of the readable images, rows as kept
        train_labels, train_rows = labels.classes, None
    else:
        train_labels = None if labels.classes is None else labels.classes[kept]
        train_rows = np.flatnonzero(np.isin(kept, sample))
    return PreparedImages(
        images,
        image_ids,
        unreadable,
        input_size,
        channels,
        train_labels=train_labels,
        labels_reason=labels.reason,
        train_rows=train_rows,
        streamed=sample is not None,
        image_count=len(ids),
    )


def _check_unreadable(total: int, readable: int, unreadable: list) -> None:
    """Fail the run when more of its `total` images could not be read than may be skipped, naming the first."""
    if not unreadable:
        return
    allowed = int(total * MAX_UNREADABLE_SHARE)
    if len(unreadable) > allowed or readable < min_run_images():
        first = unreadable[0]
        raise ValueError(
            f"{len(unreadable)} of {total} images could not be read (at most {allowed} may be skipped); "
            f"first: image {first['id']} ({first['name']}): {first['error']}"
        )


def image_classes(dataset_id: int, image_ids: np.ndarray) -> np.ndarray:
    """int64 (N,): each image's current class as an index into the dataset's labeled classes (by class id),
    -1 for an unlabeled image; rows as image_ids."""
    labeled = Annotation.objects.filter(dataset_id=dataset_id, label_class__isnull=False).values_list(
        "image_id", "label_class_id"
    )
    # Streamed into an array: no list of a tuple per labeled image.
    pairs = np.fromiter(itertools.chain.from_iterable(labeled.iterator(chunk_size=10000)), dtype=np.int64).reshape(
        -1, 2
    )
    classes = np.full(len(image_ids), -1, dtype=np.int64)
    if not len(pairs):
        return classes
    _, indices = np.unique(pairs[:, 1], return_inverse=True)
    order = np.argsort(pairs[:, 0])
    found = np.searchsorted(pairs[order, 0], image_ids).clip(0, len(pairs) - 1)
    hit = pairs[order, 0][found] == image_ids
    classes[hit] = indices[order][found[hit]]
    return classes


def _prepare_uploaded(run: TrainingRun, reporter: RunReporter) -> PreparedImages:
    """The preparing stage of a run on uploaded vectors: the dataset's latest upload, one vector per image.

    No image is read.  An image without a vector fails the run with how many
    (the API refuses to start such a run; this catches images added since, and
    runs started another way).  Vectors of images deleted since the upload are
    left out.
    """
    reporter.enter_stage(RunStage.PREPARING)
    dataset_ids = np.fromiter(
        Image.objects.filter(dataset_id=run.dataset_id)
        .order_by("id")
        .values_list("id", flat=True)
        .iterator(chunk_size=10000),
        dtype=np.int64,
    )
    if len(dataset_ids) < min_run_images():
        raise ValueError(f"the dataset has {len(dataset_ids)} images; a run needs at least {min_run_images()}")
    for attempt in range(2):
        upload = uploaded_embedding_current(run.dataset_id)
        if upload is None:
            raise ValueError("the dataset has no uploaded vectors: upload them, then start the run")
        try:
            ids, vectors = uploaded_embedding_arrays(upload)
            break
        except FileNotFoundError:  # replaced by a newer upload between the two reads: read that one
            if attempt:
                raise ValueError("the uploaded vectors could not be read; upload them again") from None
    missing = dataset_ids[~np.isin(dataset_ids, ids)]
    if len(missing):
        raise ValueError(uploaded_vectors_missing_message(len(missing), missing))
    keep = np.isin(ids, dataset_ids)
    ids, vectors = ids[keep], vectors[keep]
    TrainingRun.objects.filter(pk=run.pk).update(image_count=len(ids))
    storage.write_array(run, storage.IMAGE_IDS, ids)
    uploaded = {"id": upload.pk, "dim": upload.dim, "count": upload.count, "created_at": upload.created_at.isoformat()}
    return PreparedImages(None, ids, [], None, None, codes=vectors, uploaded=uploaded)


# Images read, resized and embedded at a time by a backbone run: 128 x 3 x 224 x 224 float32 is 77 MB.
BACKBONE_CHUNK_IMAGES = 128
BACKBONE_BATCH_SIZE = 32


def _prepare_backbone(run: TrainingRun, params: dict, reporter: RunReporter) -> PreparedImages:
    """The preparing and embedding stages of a run on a registered backbone: every image is read, resized
    to the backbone's input and embedded, a chunk at a time (on CUDA when the worker has it).

    No training: the vectors go straight to layout and clustering.  A few
    unreadable images are skipped, as in _prepare.
    """
    reporter.enter_stage(RunStage.PREPARING)
    rows = ImageRows(_dataset_image_ids(run.dataset_id))
    if len(rows) < min_run_images():
        raise ValueError(f"the dataset has {len(rows)} images; a run needs at least {min_run_images()}")
    backbone = backbone_of_dataset(run.dataset_id, params["backbone"])
    if backbone is None:
        raise ValueError(f"backbone {params['backbone']} is not a backbone of this dataset (deleted?)")
    spec, loaded = backbone_load_for_run(backbone, run_id=run.pk)
    TrainingRun.objects.filter(pk=run.pk).update(channels=spec.channels, image_count=len(rows))
    run.channels = spec.channels

    reporter.enter_stage(RunStage.EMBEDDING)
    started = time.perf_counter()
    codes, image_ids, unreadable = backbone_embed_rows(
        rows, backbone, spec, loaded, should_stop=reporter.check, on_progress=reporter.progress
    )
    seconds = time.perf_counter() - started
    _check_unreadable(len(rows), len(image_ids), unreadable)
    storage.write_array(run, storage.IMAGE_IDS, image_ids)
    info = {
        "id": backbone.pk,
        "name": backbone.name,
        "format": backbone.format,
        "dim": backbone.dim,
        "input_size": [backbone.input_height, backbone.input_width],
        "sha256": backbone.sha256,
        "device": str(loaded.device),
        "images_per_second": round(len(image_ids) / max(seconds, 1e-9), 1),
    }
    return PreparedImages(None, image_ids, unreadable, None, spec.channels, codes=codes, backbone=info)


def backbone_load_for_run(backbone, *, run_id: int | None = None):
    """(BackboneSpec, LoadedBackbone) of a registered backbone, on CUDA when the worker has it and the model
    runs there, else on the CPU."""
    # Deferred on purpose, as in _compute: torch is the worker's.
    from embeddings.ml.backbone import BackboneError, BackboneSpec, load_backbone, probe_backbone

    spec = BackboneSpec(
        backbone.input_height, backbone.input_width, backbone.channels, tuple(backbone.mean), tuple(backbone.std)
    )
    data = backbone_file_bytes(backbone)
    loaded = load_backbone(data, backbone.format)
    if loaded.device.type != "cpu":
        try:
            probe_backbone(loaded, spec)
        except BackboneError:
            # Some exported programs bake CPU tensors into their graph: such a model still runs, on the CPU.
            logger.warning("run %s: backbone %s fails on %s; embedding on the CPU", run_id, backbone.pk, loaded.device)
            loaded = load_backbone(data, backbone.format, device="cpu")
    return spec, loaded


def backbone_embed_rows(rows, backbone, spec, loaded, *, should_stop=None, on_progress=None):
    """(vectors float32 N x dim, image ids int64, unreadable [{id,name,error}]) of image rows (id, file, …,
    original name) (a list, or ImageRows that fetches them as it goes), read, resized and embedded
    BACKBONE_CHUNK_IMAGES at a time.

    should_stop() is called between batches and may raise to stop; on_progress(fraction) after each chunk.
    """
    from embeddings.ml.backbone import embed_arrays, image_array

    codes = np.empty((len(rows), backbone.dim), dtype=np.float32)
    ok = np.zeros(len(rows), dtype=bool)
    unreadable = []
    images = read_image_rows(rows, lambda fh: image_array(_open_image(fh), spec), unreadable)
    for start in range(0, len(rows), BACKBONE_CHUNK_IMAGES):
        count = min(BACKBONE_CHUNK_IMAGES, len(rows) - start)
        arrays, positions = [], []
        for _ in range(count):
            position, array = next(images)
            if array is not None:
                arrays.append(array)
                positions.append(position)
        if arrays:
            vectors = embed_arrays(
                loaded, np.stack(arrays), batch_size=BACKBONE_BATCH_SIZE, between_batches=should_stop
            )
            if vectors.shape[1] != backbone.dim:
                raise ValueError(f"the backbone gave {vectors.shape[1]} values per image, not {backbone.dim}")
            codes[positions] = vectors
            ok[positions] = True
        if should_stop is not None:
            should_stop()
        if on_progress is not None:
            on_progress((start + count) / len(rows))
    if isinstance(rows, ImageRows):
        image_ids = rows.image_ids
    else:
        image_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return codes[ok], image_ids[ok], unreadable


def _open_image(fh):
    from PIL import Image as PILImage

    image = PILImage.open(fh)
    image.load()
    return image


def _compute_from_codes(run: TrainingRun, params: dict, prepared: PreparedImages, reporter: RunReporter):
    """Layout and clustering of uploaded vectors (no training, no embedding); raises RunCancelled or RunLost."""
    # Deferred on purpose, as in _compute.
    from embeddings.ml.pipeline import run_pipeline_on_codes

    n = len(prepared.image_ids)
    codes, prepared.codes = prepared.codes, None  # the result holds them from here
    neighbor_queries = RunNeighborQueries(run, reporter)  # idle `ml` workers help with large runs' queries
    result = run_pipeline_on_codes(
        codes,
        run_params.layout_config(params, image_count=n),
        run_params.cluster_config(params, image_count=n),
        on_stage=reporter.enter_stage,
        on_progress=lambda stage, step, total, metrics: reporter.progress(step / max(1, total)),
        should_stop=reporter.should_stop,
        query_neighbors=neighbor_queries,
    )
    result.neighbor_chunks = neighbor_queries.info
    if result.cancelled:
        reporter.check()  # raises RunCancelled or RunLost
        raise RunCancelled()
    return result


def _compute(run: TrainingRun, params: dict, prepared: PreparedImages, reporter: RunReporter):
    """Training, embedding, layout and clustering: the one pipeline assembly, reporting to the run row.

    Returns (PipelineResult, embedding chunk info).  Raises RunCancelled or RunLost to stop.
    """
    # Deferred on purpose: this module is imported by web processes (through embeddings.services),
    # and the pipeline imports torch; only the worker runs it.
    from embeddings.ml.pipeline import run_pipeline

    n = len(prepared.image_ids)
    chunk_info: dict = {}

    def on_progress(stage, step, total, metrics):
        point = loss_point(step, metrics) if stage == RunStage.TRAINING else None
        reporter.progress(step / max(1, total), loss_point=point)

    def after_training(trained):
        reporter.progress(1.0, force=True)
        storage.write_model(run, trained.model)  # before embedding: helper workers load it from there

    def embed(model, images):
        if not prepared.streamed:
            codes, errors, info = embed_run_images(run, model, images, reporter)
            chunk_info.update(info)
            return codes, errors
        reader = RunImageReader(
            prepared.image_ids, prepared.input_size, prepared.channels, prepared.unreadable, reporter.check
        )
        codes, errors, info = embed_run_images(run, model, reader, reporter)
        chunk_info.update(info)
        if reader.readable.all():
            return codes, errors
        # Images found unreadable only now get no code and are listed, as those found while preparing;
        # more than the allowed share fails the run.
        _check_unreadable(prepared.image_count, prepared.image_count - len(prepared.unreadable), prepared.unreadable)
        prepared.image_ids = prepared.image_ids[reader.readable]
        storage.write_array(run, storage.IMAGE_IDS, prepared.image_ids)
        return codes[reader.readable], errors[reader.readable]

    neighbor_queries = RunNeighborQueries(run, reporter)  # idle `ml` workers help with large runs' queries
    result = run_pipeline(
        prepared.hand_over(),
        run_params.train_config(params, input_size=prepared.input_size, channels=prepared.channels),
        run_params.layout_config(params, image_count=n),
        run_params.cluster_config(params, image_count=n),
        on_stage=reporter.enter_stage,
        on_progress=on_progress,
        should_stop=reporter.should_stop,
        after_training=after_training,
        embed=embed,
        embed_streams=prepared.streamed,
        labels=prepared.train_labels,
        train_rows=prepared.train_rows,
        query_neighbors=neighbor_queries,
    )
    result.neighbor_chunks = neighbor_queries.info
    if result.cancelled:
        reporter.check()  # raises RunCancelled or RunLost
        raise RunCancelled()
    return result, chunk_info


def _store_artifacts(run: TrainingRun, prepared: PreparedImages, result) -> dict:
    """The run's arrays and near-duplicate pairs under its id; returns the pairs' metrics.

    Stored before the run turns succeeded, so no reader ever finds one missing.
    """
    storage.write_array(run, storage.CODES, result.codes)
    storage.write_array(run, storage.LAYOUT, result.xy)
    storage.write_array(run, storage.CLUSTERS, result.clusters)
    if result.recon_error is not None:  # runs on uploaded vectors have no decoder, hence no errors
        storage.write_array(run, storage.RECONSTRUCTION_ERRORS, result.recon_error)
    # Near-duplicate pairs for the review queue: once here, not in every request.
    return run_near_duplicates_store(run=run, codes=result.codes, image_ids=prepared.image_ids)


def _run_metrics(
    params: dict, prepared: PreparedImages, result, chunk_info: dict, duplicate_info: dict, started: float
) -> dict:
    codes, errors = result.codes, result.recon_error
    embedding_seconds = result.timings.get("embedding")
    return {
        "embedding": params["embedding"],
        **({"uploaded_embedding": prepared.uploaded} if prepared.uploaded else {}),
        **({"backbone": prepared.backbone} if prepared.backbone else {}),
        "n_images": len(prepared.image_ids),
        "n_unreadable": len(prepared.unreadable),
        "unreadable": prepared.unreadable[:50],
        "n_clusters": len(np.unique(result.clusters)),
        "code_size": int(codes.shape[1]),
        "input_size": None if prepared.input_size is None else int(prepared.input_size),
        "channels": None if prepared.channels is None else int(prepared.channels),
        "final_loss": float(result.loss_curve[-1]) if result.loss_curve else None,
        "epoch_losses": [float(v) for v in result.loss_curve],
        "epochs_run": int(result.epochs_run),
        "stopped_early": bool(result.stopped_early),
        # The epochs and seconds training was allowed and why ('auto: 60 s for 10000 images'); trained runs only.
        **({"training_budget": result.training_budget} if getattr(result, "training_budget", None) else {}),
        # Which encoder objective trained the codes, and why ('auto: 3-channel photos'); autoencoder runs only.
        **run_params.objective_metrics(params, channels=prepared.channels),
        # None: unknown (uploaded vectors: no reconstruction to measure).
        "mean_reconstruction_error": None if errors is None else float(errors.mean()),
        "layout_method": run_params.layout_config(params, image_count=len(codes)).method,
        "embedding_images_per_second": (
            None if embedding_seconds is None else round(len(codes) / max(embedding_seconds, 1e-9), 1)
        ),
        "embedding_chunks": chunk_info,
        # Per stage, the chunks of neighbor queries and how many other workers answered (helper_chunks).
        "neighbor_chunks": getattr(result, "neighbor_chunks", {}),
        # Labeled images training learned from (0: none) and why (config.choose_labels); the run's
        # started_at says which labels it saw.
        "labels_used": int(getattr(result, "labels_used", 0)),
        "labels_reason": prepared.labels_reason or f"no training: codes from the {params['embedding']}",
        **duplicate_info,
        "total_seconds": round(time.perf_counter() - started, 3),
    }


def embedding_statistics_refresh() -> None:
    """On PostgreSQL, ANALYZE the embeddings table's planner columns, inside the caller's transaction.

    Called after storing many rows of one run, so the statistics that know them commit with them.
    Without them the planner takes a run id it has never sampled for a handful of rows, and the
    first query after a run, "is any image missing from the run" (a NOT EXISTS probe per image),
    probed the run's rows through the run_id index with image_id as a filter: 100,000 x 100,000
    row visits, a core busy for hours after every run (autovacuum's analyze comes a minute later
    at best).  The columns the planner filters on only.
    """
    if on_postgres():
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {ImageEmbedding._meta.db_table} (run_id, image_id, cluster)")


def _insert_embedding_rows(run_id: int, image_ids, codes, xy, labels, errors) -> None:
    """Every image's ImageEmbedding row of a run, inside the caller's transaction.

    PostgreSQL takes them by COPY: a million rows through bulk_create cost minutes of
    model objects and INSERT parameters in the worker (see README, scale benchmark).
    Elsewhere bulk_create a slice at a time: it makes a list of what it is given, and a
    million model objects at once would cost gigabytes.
    """
    n = len(image_ids)
    if on_postgres():
        table = ImageEmbedding._meta.db_table
        columns = "run_id, image_id, code, x, y, cluster, reconstruction_error, placed_after_run"
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for start in range(0, n, STORE_BATCH):
                    stop = min(start + STORE_BATCH, n)
                    # Python numbers a slice at a time (tolist), not numpy scalars row by row.
                    ids, xs = image_ids[start:stop].tolist(), xy[start:stop, 0].tolist()
                    ys, clusters = xy[start:stop, 1].tolist(), labels[start:stop].tolist()
                    errs = [None] * (stop - start) if errors is None else errors[start:stop].tolist()
                    block = np.ascontiguousarray(codes[start:stop])
                    for j in range(stop - start):
                        copy.write_row((run_id, ids[j], block[j].tobytes(), xs[j], ys[j], clusters[j], errs[j], False))
        embedding_statistics_refresh()
        return
    for start in range(0, n, STORE_BATCH):
        ImageEmbedding.objects.bulk_create(
            [
                ImageEmbedding(
                    run_id=run_id,
                    image_id=int(image_ids[i]),
                    code=codes[i].tobytes(),
                    x=float(xy[i, 0]),
                    y=float(xy[i, 1]),
                    cluster=int(labels[i]),
                    reconstruction_error=None if errors is None else float(errors[i]),
                )
                for i in range(start, min(start + STORE_BATCH, n))
            ]
        )


def _store_rows(
    run: TrainingRun, prepared: PreparedImages, result, metrics: dict, reporter: RunReporter, started: float
) -> dict | None:
    """One atomic write of every image's row and the run's end state, if the run is still ours."""
    codes, xy, labels, errors = result.codes, result.xy, result.clusters, result.recon_error
    image_ids = prepared.image_ids
    timings = reporter.timings()
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().filter(pk=run.pk, status=RunStatus.RUNNING).first()
        if locked is None:
            return None  # reaped or deleted while we computed; results are not ours to write
        if locked.cancel_requested:
            raise RunCancelled()
        ImageEmbedding.objects.filter(run_id=run.pk).delete()  # a retried run replaces its own rows
        _insert_embedding_rows(run.pk, image_ids, codes, xy, labels, errors)
        timings["storing"] = round(time.perf_counter() - started - sum(timings.values()), 3)
        metrics["total_seconds"] = round(time.perf_counter() - started, 3)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.SUCCEEDED,
            stage=RunStage.DONE,
            progress=1.0,
            metrics=metrics,
            stage_timings=timings,
            loss_curve=reporter.loss_curve,
            image_count=len(image_ids),
            cluster_count=metrics["n_clusters"],
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )
    logger.info(
        "run %s succeeded: %s images, %s clusters in %.1f s",
        run.pk,
        len(image_ids),
        metrics["n_clusters"],
        metrics["total_seconds"],
    )
    return metrics


# Image rows fetched from the database at a time (also below SQLite's 999 query parameters).
ROW_BATCH = 900
ROW_FIELDS = ("id", "file", "width", "height", "mode", "original_name")


def _run_images(dataset_id: int):
    return Image.objects.filter(dataset_id=dataset_id, missing_since__isnull=True)  # gone from their bucket


def _dataset_image_ids(dataset_id: int) -> np.ndarray:
    """int64: the ids of the dataset's images a run reads, in order; an array, not a row object per image."""
    ids = _run_images(dataset_id).order_by("id").values_list("id", flat=True)
    return np.fromiter(ids.iterator(chunk_size=10000), dtype=np.int64)


def _dataset_input_spec(dataset_id: int) -> tuple[int, int]:
    """(input_size, channels) chosen from the sizes and modes recorded at ingest, counted by the database."""
    groups = list(_run_images(dataset_id).order_by().values_list("width", "height", "mode").annotate(count=Count("id")))
    return choose_input_spec(
        [(w, h) for w, h, _, _ in groups], [m for _, _, m, _ in groups], counts=[c for *_, c in groups]
    )


def image_rows(image_ids) -> list[tuple]:
    """The rows (id, file, width, height, mode, original name) of these images, in the order given, fetched
    ROW_BATCH at a time; an image deleted since has the row (id, None), which read_image_rows reports."""
    image_ids = [int(v) for v in image_ids]
    found = {}
    for start in range(0, len(image_ids), ROW_BATCH):
        batch = image_ids[start : start + ROW_BATCH]
        found.update((row[0], row) for row in Image.objects.filter(pk__in=batch).values_list(*ROW_FIELDS))
    return [found.get(image_id, (image_id, None)) for image_id in image_ids]


class ImageRows:
    """The rows of image_ids (as image_rows gives them) fetched ROW_BATCH at a time while they are iterated:
    what read_image_rows reads for a whole dataset without a row object per image held at once."""

    def __init__(self, image_ids: np.ndarray):
        self.image_ids = image_ids

    def __len__(self) -> int:
        return len(self.image_ids)

    def __iter__(self):
        for start in range(0, len(self.image_ids), ROW_BATCH):
            yield from image_rows(self.image_ids[start : start + ROW_BATCH])


def _dataset_images(dataset_id: int) -> list[tuple]:
    """Every row at once: for a small dataset (a test, a bench's before); a run reads ImageRows or image_rows."""
    return list(_run_images(dataset_id).order_by("id").values_list(*ROW_FIELDS))


def read_image_rows(rows, read, unreadable: list):
    """(index, read(open file)) for each row of (id, file name, …, original name), in order; None for a row
    that cannot be read (a missing, truncated or non-image file), which goes to `unreadable` as
    {id, name, error}.  Images kept in a bucket (no stored file) are fetched ahead in chunks by a bounded pool."""
    originals = referenced_originals(r[0] for r in rows if r[1] == "")
    # Matched by id, not by position: rows that fetch from the database (ImageRows) are read again here, and
    # a bucket image deleted meanwhile must not shift every later image onto its neighbor's bytes.
    pending = next(originals, None)
    for i, row in enumerate(rows):
        image_id, name = row[0], row[1]
        original = None
        if pending is not None and pending[0] == image_id:
            original, pending = pending[1], next(originals, None)
        try:
            if name is None:
                raise LookupError("the image was deleted while the run read it")
            if name == "" and original is None:
                raise LookupError("the image's original was not fetched from its bucket")
            if isinstance(original, Exception):
                raise original
            with io.BytesIO(original) if original is not None else storage.open_image_file(name) as fh:
                value = read(fh)
        except Exception as exc:  # a missing, truncated or non-image file
            label = row[5] if len(row) > 5 else (name or "")
            unreadable.append({"id": int(image_id), "name": str(label), "error": str(exc)[:300]})
            value = None
        yield i, value


def load_run_images(rows, input_size: int, channels: int, *, on_progress=None, should_stop=None):
    """(images (N,C,H,W) float32, image ids int64, unreadable [{id,name,error}]) for
    rows of (id, file name, width, height, mode, original name)."""
    total = len(rows)
    out = np.empty((total, channels, input_size, input_size), dtype=np.float32)
    ok = np.zeros(total, dtype=bool)
    unreadable = []
    last = time.monotonic()
    for i, array in read_image_rows(rows, lambda fh: load_image_array(fh, input_size, channels), unreadable):
        if array is not None:
            out[i] = array
            ok[i] = True
        if time.monotonic() - last >= 1.0:
            last = time.monotonic()
            if should_stop is not None:
                should_stop()
            if on_progress is not None:
                on_progress(i + 1, total)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=total)
    if ok.all():
        return out, ids, unreadable
    return out[ok], ids[ok], unreadable


# --- embedding, optionally in chunks shared with other `ml` workers ---------------------------------


def chunk_bounds(n: int, chunk_size: int, batch_size: int) -> list[tuple[int, int]]:
    """Chunk boundaries aligned to the inference batch size, so chunked and
    single-process embedding run exactly the same batches (identical results)."""
    chunk_size = max(batch_size, (chunk_size // batch_size) * batch_size)
    return [(start, min(n, start + chunk_size)) for start in range(0, n, chunk_size)]


def embedding_batch_size() -> int:
    return min(EMBED_BATCH_SIZE, embed_chunk_size())


def embed_in_chunks(
    model, images, *, chunk_size: int, batch_size: int, done_elsewhere=None, on_chunk=None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes and errors for all images, chunk by chunk.

    images: an array (N, C, H, W), or a reader (RunImageReader): len(reader)
    images, and reader(start, stop) -> (the chunk's readable images, their rows
    within the chunk), called once for each chunk computed here, so only one
    chunk's pixels are decoded at a time.  A row the reader could not read keeps
    a zero code; the reader lists it.
    done_elsewhere(index) may return (codes, errors) a helper worker already
    computed for that chunk; chunks are worked from the last to the first so the
    coordinator and helpers (which start at the first) meet in the middle.
    Returns (codes, errors, chunks taken from helpers).
    """
    # Deferred on purpose: inference imports torch, which web processes (importing the services) never load.
    from embeddings.ml.inference import embed_images

    n = len(images)
    bounds = chunk_bounds(n, chunk_size, batch_size)
    codes = errors = None
    from_helpers = 0
    for index in reversed(range(len(bounds))):
        start, stop = bounds[index]
        found = done_elsewhere(index) if done_elsewhere is not None else None
        rows = slice(None)
        if found is not None:
            chunk_codes, chunk_errors = found
            from_helpers += 1
        elif isinstance(images, np.ndarray):
            chunk_codes, chunk_errors = embed_images(model, images[start:stop], batch_size=batch_size)
        else:
            chunk, rows = images(start, stop)
            chunk_codes, chunk_errors = (
                embed_images(model, chunk, batch_size=batch_size) if len(chunk) else (None, None)
            )
            del chunk  # this chunk's pixels go before the next chunk's are decoded
        if chunk_codes is not None:
            if codes is None:
                codes = np.zeros((n, chunk_codes.shape[1]), dtype=np.float32)
                errors = np.zeros(n, dtype=np.float32)
            codes[start:stop][rows] = chunk_codes
            errors[start:stop][rows] = chunk_errors
        if on_chunk is not None:
            on_chunk(len(bounds) - index, len(bounds))
    if codes is None:  # nothing readable at all (the caller's unreadable check fails the run)
        codes, errors = np.zeros((n, 0), dtype=np.float32), np.zeros(n, dtype=np.float32)
    return codes, errors, from_helpers


class RunImageReader:
    """A run's images for chunked embedding: reader(start, stop) reads and decodes rows start..stop of
    image_ids (files or bucket originals), returning (their readable images (M, C, H, W), those rows within
    the chunk).  What could not be read is appended to `unreadable` and marked False in `readable`."""

    def __init__(self, image_ids: np.ndarray, input_size: int, channels: int, unreadable: list, should_stop=None):
        self.image_ids = image_ids
        self.input_size, self.channels = input_size, channels
        self.unreadable = unreadable
        self.readable = np.ones(len(image_ids), dtype=bool)
        self.should_stop = should_stop

    def __len__(self) -> int:
        return len(self.image_ids)

    def __call__(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        ids = self.image_ids[start:stop]
        images, read_ids, unreadable = load_run_images(
            image_rows(ids), self.input_size, self.channels, should_stop=self.should_stop
        )
        rows = np.flatnonzero(np.isin(ids, read_ids))
        if unreadable:
            self.readable[start:stop] = False
            self.readable[start + rows] = True
            self.unreadable.extend(unreadable)
        return images, rows


def embed_run_images(run: TrainingRun, model, images, reporter: RunReporter):
    """embed_in_chunks of images (an array or a RunImageReader) with other `ml` workers' help on a large
    dataset, reporting to the run; (codes, errors, chunk info)."""
    batch_size = embedding_batch_size()
    chunk_size = embed_chunk_size()
    bounds = chunk_bounds(len(images), chunk_size, batch_size)
    parallel = 0 < embed_parallel_min_images() <= len(images) and len(bounds) > 1
    helpers_asked = False
    if parallel:
        helpers_asked = _ask_helpers(run, len(bounds))

    def done_elsewhere(index):
        if not helpers_asked:
            return None
        return read_helper_chunk(run, index)

    def on_chunk(done, total):
        reporter.check()
        reporter.progress(done / total)

    codes, errors, from_helpers = embed_in_chunks(
        model, images, chunk_size=chunk_size, batch_size=batch_size, done_elsewhere=done_elsewhere, on_chunk=on_chunk
    )
    if helpers_asked:
        _delete_helper_chunks(run)
    info = {
        "count": len(bounds),
        "chunk_size": bounds[0][1] - bounds[0][0] if bounds else 0,
        "helpers_asked": helpers_asked,
        "from_helpers": from_helpers,
    }
    return codes, errors, info


def _ask_helpers(run: TrainingRun, chunk_count: int) -> bool:
    try:
        group(tasks.embed_chunk.s(run.pk, index) for index in range(chunk_count)).apply_async()
        return True
    except Exception:
        logger.exception("run %s: could not hand embedding chunks to other workers; embedding alone", run.pk)
        return False


def _chunk_marker(index: int) -> str:
    return f"chunks/embedding-{index:05d}.done"


def read_helper_chunk(run: TrainingRun, index: int):
    """A helper's finished chunk, or None.  The marker is written after the data,
    so a chunk is read only once complete; anything odd means "compute it here"."""
    try:
        if not storage.exists(run, _chunk_marker(index)):
            return None
        data_name = storage.read_bytes(run, _chunk_marker(index)).decode().strip()
        if not data_name.startswith("chunks/"):
            return None
        with np.load(io.BytesIO(storage.read_bytes(run, data_name)), allow_pickle=False) as data:
            return data["codes"], data["errors"]
    except Exception:
        logger.warning("run %s: unreadable helper chunk %s; computing it here", run.pk, index, exc_info=True)
        return None


def _delete_helper_chunks(run: TrainingRun) -> None:
    delete_chunk_files(run, "embedding-")


_helper_models: dict = {}


def embedding_chunk_execute(*, run_id: int, index: int) -> str:
    """A helper worker embeds one chunk of a running run, if it is still needed.

    Idempotent and harmless when late: a run that is past its embedding stage,
    or a chunk already done, is skipped.  Results go to a uniquely named file
    and a marker naming it, so two helpers never overwrite each other.
    """
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING or run.stage != RunStage.EMBEDDING:
        return "skipped"
    if storage.exists(run, _chunk_marker(index)):
        return "skipped"
    image_ids = storage.read_array(run, storage.IMAGE_IDS)
    bounds = chunk_bounds(len(image_ids), embed_chunk_size(), embedding_batch_size())
    if index >= len(bounds):
        return "skipped"
    start, stop = bounds[index]
    chunk_ids = [int(v) for v in image_ids[start:stop]]
    files = dict(Image.objects.filter(pk__in=chunk_ids).values_list("id", "file"))
    rows = [(image_id, files[image_id]) for image_id in chunk_ids if image_id in files]
    if len(rows) != len(chunk_ids):
        return "skipped"  # images deleted meanwhile: let the coordinator do it
    images, _, unreadable = load_run_images(rows, run.input_size, run.channels)
    if unreadable:
        return "skipped"
    key = run.pk
    model = _helper_models.get(key)
    if model is None:
        _helper_models.clear()
        model = _helper_models[key] = storage.read_model(run)
    # Deferred on purpose: inference imports torch (see embed_in_chunks).
    from embeddings.ml.inference import embed_images

    codes, errors = embed_images(model, images, batch_size=embedding_batch_size())
    fresh = TrainingRun.objects.filter(pk=run_id).values_list("status", "stage").first()
    if fresh is None or fresh[0] != RunStatus.RUNNING or fresh[1] != RunStage.EMBEDDING:
        return "skipped"
    data_name = f"chunks/embedding-{index:05d}-{uuid.uuid4().hex[:12]}.npz"
    buf = io.BytesIO()
    np.savez(buf, codes=codes, errors=errors)
    storage.write_bytes(run, data_name, buf.getvalue())
    storage.write_bytes(run, _chunk_marker(index), data_name.encode())
    return "done"
