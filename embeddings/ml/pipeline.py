"""All stages in one call, for benchmarks and scripts.  The web side runs the
stages separately (each with its own progress) but in this same order."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .autoencoder import ConvAutoencoder
from .clustering import cluster_codes
from .config import ClusterConfig, LayoutConfig, TrainConfig
from .inference import embed_images
from .layout import compute_layout
from .training import train_autoencoder

StageProgressFn = Callable[[str, float, dict], None]
STAGES = ("training", "embedding", "layout", "clustering")


@dataclass
class PipelineResult:
    model: Optional[ConvAutoencoder]
    codes: Optional[np.ndarray]
    recon_error: Optional[np.ndarray]
    xy: Optional[np.ndarray]
    clusters: Optional[np.ndarray]
    loss_curve: list[float]
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False
    stopped_early: bool = False


def run_pipeline(
    images: np.ndarray,
    train_config: Optional[TrainConfig] = None,
    layout_config: Optional[LayoutConfig] = None,
    cluster_config: Optional[ClusterConfig] = None,
    on_progress: Optional[StageProgressFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    device=None,
) -> PipelineResult:
    """Train, embed, lay out and cluster.  on_progress(stage, fraction, metrics)
    with stage in STAGES; should_stop() is polled during training and between
    stages, and a cancelled result has the later fields None."""
    images = np.asarray(images, dtype=np.float32)
    train_config = train_config or TrainConfig(input_size=images.shape[2], channels=images.shape[1])
    layout_config = layout_config or LayoutConfig()
    cluster_config = cluster_config or ClusterConfig()

    def report(stage):
        if on_progress is None:
            return None
        return lambda step, total, metrics: on_progress(stage, step / max(1, total), metrics)

    timings: dict[str, float] = {}
    t = time.perf_counter()
    trained = train_autoencoder(images, train_config, report("training"), should_stop, device=device)
    timings["training"] = time.perf_counter() - t
    result = PipelineResult(trained.model, None, None, None, None, trained.loss_curve, timings,
                            trained.cancelled, trained.stopped_early)
    if trained.cancelled:
        return result

    def cancelled() -> bool:
        result.cancelled = bool(should_stop is not None and should_stop())
        return result.cancelled

    t = time.perf_counter()
    result.codes, result.recon_error = embed_images(trained.model, images, device=device)
    timings["embedding"] = time.perf_counter() - t
    if on_progress is not None:
        on_progress("embedding", 1.0, {"images": len(images)})
    if cancelled():
        return result

    t = time.perf_counter()
    result.xy = compute_layout(result.codes, layout_config, report("layout"))
    timings["layout"] = time.perf_counter() - t
    if cancelled():
        return result

    t = time.perf_counter()
    result.clusters = cluster_codes(result.codes, cluster_config, layout_xy=result.xy)
    timings["clustering"] = time.perf_counter() - t
    if on_progress is not None:
        on_progress("clustering", 1.0, {"n_clusters": int(result.clusters.max(initial=-1) + 1)})
    timings["total"] = sum(timings.values())
    return result
