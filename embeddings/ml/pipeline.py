"""The pipeline over arrays, assembled once: train, embed, lay out, cluster.

Pure (no Django).  run_pipeline_on_codes is the same from the layout on, for
codes made elsewhere (uploaded vectors).  The worker (embeddings.services.pipeline) wraps it with
progress on the run row, cancellation, storing the model where helper workers
find it, chunked embedding, and the database writes; the benches and tests
call it as it is.  Each stage is one function of its own module: training.
train_autoencoder, inference.embed_images, layout.compute_layout,
clustering.cluster_codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .autoencoder import ConvAutoencoder
from .clustering import cluster_codes
from .config import ClusterConfig, LayoutConfig, TrainConfig
from .inference import embed_images
from .layout import compute_layout
from .neighbors import QueryNeighborsFn
from .training import TrainResult, train_autoencoder

STAGES = ("training", "embedding", "layout", "clustering")

StageFn = Callable[[str], None]  # (stage) as it starts
StageProgressFn = Callable[[str, int, int, dict], None]  # (stage, step, total, metrics) within it
EmbedFn = Callable[[ConvAutoencoder, np.ndarray], tuple]  # (model, images) -> (codes, errors)


@dataclass
class PipelineResult:
    model: ConvAutoencoder | None
    codes: np.ndarray | None  # float32 (N, code_size)
    recon_error: np.ndarray | None  # float32 (N,)
    xy: np.ndarray | None  # float32 (N, 2)
    clusters: np.ndarray | None  # int32 (N,)
    loss_curve: list[float]
    epochs_run: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per stage
    cpu_timings: dict[str, float] = field(default_factory=dict)  # this process's CPU seconds per stage
    cancelled: bool = False
    stopped_early: bool = False
    # The epochs and seconds training was allowed, and why (config.training_budget); None without training.
    training_budget: dict | None = None
    # Labeled images training learned from (training.train_autoencoder's labels); 0: none.
    labels_used: int = 0
    # Per purpose ("layout", "clustering"), how the caller's query_neighbors split those stages'
    # neighbor queries (chunks, chunks other workers answered); the caller fills it, {} without one.
    neighbor_chunks: dict = field(default_factory=dict)


def run_pipeline(
    images: np.ndarray,
    train_config: TrainConfig | None = None,
    layout_config: LayoutConfig | None = None,
    cluster_config: ClusterConfig | None = None,
    *,
    on_stage: StageFn | None = None,
    on_progress: StageProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    after_training: Callable[[TrainResult], None] | None = None,
    embed: EmbedFn | None = None,
    device=None,
    labels: np.ndarray | None = None,
    train_rows: np.ndarray | None = None,
    embed_streams: bool = False,
    query_neighbors: QueryNeighborsFn | None = None,
) -> PipelineResult:
    """Train, embed, lay out and cluster the images (N, C, H, W) float32 in [0, 1].

    on_stage(stage) is called as each stage in STAGES starts and may raise to
    stop the run; on_progress(stage, step, total, metrics) reports within the
    training, embedding and layout stages.  should_stop() is polled during
    training and between stages: a cancelled result has the later fields None.
    after_training(trained) runs once the model is trained, before embedding;
    embed(model, images) -> (codes, errors) replaces single-process embedding.
    labels (N,) are the images' class indices, -1 unlabeled, for training to
    learn from (None: none; config.choose_labels decides whether a run passes them).
    query_neighbors answers the layout's and clustering's many-point neighbor
    queries (placing points beyond the layout sample, assigning points beyond
    the clustering sample); default: here, in one process.

    train_rows: the rows of images training reconstructs (training.train_autoencoder);
    with embed_streams, images are only what training reads (a sample and the
    labeled images): they are dropped before embedding and embed(model, None)
    reads every image itself, a chunk at a time (the worker: bounded memory).

    images is dropped after embedding, so a caller that hands over its only
    reference frees the largest array before the layout.
    """
    if embed_streams and embed is None:
        raise ValueError("embed_streams needs an embed function that reads the images")
    images = np.asarray(images, dtype=np.float32)
    train_config = train_config or TrainConfig(input_size=images.shape[2], channels=images.shape[1])
    layout_config = layout_config or LayoutConfig()
    cluster_config = cluster_config or ClusterConfig()
    result = PipelineResult(None, None, None, None, None, [])
    start, finish, report, cancelled = _stage_helpers(result, on_stage, on_progress, should_stop)

    start("training")
    trained = train_autoencoder(
        images, train_config, report("training"), should_stop, device=device, labels=labels, train_rows=train_rows
    )
    if embed_streams:
        images = None  # embed reads the images itself: training's copy goes now
    finish("training")
    result.model, result.loss_curve = trained.model, trained.loss_curve
    result.epochs_run, result.stopped_early, result.cancelled = (
        trained.epochs_run,
        trained.stopped_early,
        trained.cancelled,
    )
    result.training_budget = trained.budget.to_dict() if trained.budget is not None else None
    result.labels_used = trained.labels_used
    if trained.cancelled:
        return result
    if after_training is not None:
        after_training(trained)
    if cancelled():
        return result

    start("embedding")
    if embed is not None:
        codes, errors = embed(trained.model, images)
    else:
        codes, errors = embed_images(trained.model, images, device=device)
        if on_progress is not None:
            on_progress("embedding", len(images), len(images), {"images": len(images)})
    result.codes, result.recon_error = codes, errors
    finish("embedding")
    del images
    if cancelled():
        return result

    return _lay_out_and_cluster(
        result, layout_config, cluster_config, start, finish, report, cancelled, query_neighbors
    )


def run_pipeline_on_codes(
    codes: np.ndarray,
    layout_config: LayoutConfig | None = None,
    cluster_config: ClusterConfig | None = None,
    *,
    on_stage: StageFn | None = None,
    on_progress: StageProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    query_neighbors: QueryNeighborsFn | None = None,
) -> PipelineResult:
    """Lay out and cluster codes computed elsewhere (vectors a team uploaded): no training, no embedding.

    The result has no model and no reconstruction errors (recon_error None):
    nothing here can rebuild an image from such a code.  Stages, callbacks and
    cancellation as in run_pipeline, from "layout" on.
    """
    result = PipelineResult(None, np.ascontiguousarray(codes, dtype=np.float32), None, None, None, [])
    start, finish, report, cancelled = _stage_helpers(result, on_stage, on_progress, should_stop)
    if cancelled():
        return result
    return _lay_out_and_cluster(
        result, layout_config, cluster_config, start, finish, report, cancelled, query_neighbors
    )


def _stage_helpers(result: PipelineResult, on_stage, on_progress, should_stop):
    """(start, finish, report, cancelled) for one pipeline result: stage callbacks, per-stage wall and
    CPU seconds into result.timings / cpu_timings, progress callbacks, and the cancel poll."""
    clock: dict[str, tuple[float, float]] = {}

    def start(stage: str) -> None:
        if on_stage is not None:
            on_stage(stage)
        clock[stage] = (time.perf_counter(), time.process_time())

    def finish(stage: str) -> None:
        wall, cpu = clock[stage]
        result.timings[stage] = time.perf_counter() - wall
        result.cpu_timings[stage] = time.process_time() - cpu

    def report(stage: str):
        if on_progress is None:
            return None
        return lambda step, total, metrics=None, *_: on_progress(stage, step, total, metrics or {})

    def cancelled() -> bool:
        result.cancelled = bool(should_stop is not None and should_stop())
        return result.cancelled

    return start, finish, report, cancelled


def _lay_out_and_cluster(
    result, layout_config, cluster_config, start, finish, report, cancelled, query_neighbors=None
) -> PipelineResult:
    """The map and the clusters of result.codes: the stages both assemblies share."""
    layout_config = layout_config or LayoutConfig()
    cluster_config = cluster_config or ClusterConfig()
    start("layout")
    result.xy = np.asarray(
        compute_layout(result.codes, layout_config, report("layout"), query_neighbors), dtype=np.float32
    )
    finish("layout")
    if cancelled():
        return result

    start("clustering")
    result.clusters = np.asarray(
        cluster_codes(result.codes, cluster_config, layout_xy=result.xy, query_neighbors=query_neighbors),
        dtype=np.int32,
    )
    finish("clustering")
    result.timings["total"] = sum(result.timings.values())
    return result
