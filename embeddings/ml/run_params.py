"""The run parameters a user may set: the one declaration of each one's type,
default, range or choices, help text and the stage it applies to.

Everything that shows or checks a run parameter reads this list: the training
page's form (embeddings/templates, rendered from it), the API serializer, the
`start_run` command's arguments, the service that validates and normalizes a
run's parameters (embeddings/services/params.py), and the README's table
(tests/embeddings/test_run_params.py compares it).  Defaults that the ML
configs also have are read from those dataclasses (embeddings/ml/config.py),
where the measurements behind them are written down, so a measured default is
stated once.  A default of None means "chosen from the data" (or "off"): the
form shows `empty` in the field, not a made-up number.

Pure Python: no Django, no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import (
    LABELS_MIN_PER_CLASS,
    LABELS_MIN_TOTAL,
    OBJECTIVES,
    PATCH_FEATURES,
    TRAIN_MAX_IMAGES,
    USE_LABELS,
    ClusterConfig,
    LayoutConfig,
    TrainConfig,
)

_TRAIN = TrainConfig()
_LAYOUT = LayoutConfig()
_CLUSTER = ClusterConfig()

LAYOUT_METHODS = ("tsne", "umap")
CLUSTER_METHODS = ("auto", "umap_kmeans", "umap_gmm", "kmeans", "gmm", "layout_kmeans")
# Where each image's code comes from: the autoencoder trained in the run, or vectors a dataset admin
# uploaded (POST /api/datasets/{id}/embeddings/).  More sources add a value here and a branch in the worker.
EMBEDDINGS = ("autoencoder", "uploaded", "backbone")
EMBEDDING_LABELS = ("Autoencoder (trained in the run)", "Uploaded vectors", "Pretrained backbone")

# Stages a parameter applies to, in the order the pipeline runs them.
STAGES = ("preparing", "training", "layout", "clustering", "all")


@dataclass(frozen=True)
class RunParam:
    name: str
    kind: Callable  # int, float or str
    default: Any
    label: str
    help: str
    stage: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    # Labels shown for the choices, same order (the values themselves when None).
    choice_labels: tuple | None = None
    # None is accepted, and means what `empty` says ("auto": chosen from the data).
    nullable: bool = False
    empty: str = ""
    # Shown on the form without opening "Advanced".
    basic: bool = False
    # The ML config field this parameter sets, as "train.epochs"; its default
    # must equal that dataclass's (tested).
    config: str | None = None

    @property
    def type_name(self) -> str:
        return {int: "integer", float: "number", str: "text"}[self.kind]

    def describe_default(self) -> str:
        if self.default is None:
            return self.empty
        return f"{self.default:g}" if self.kind is float else str(self.default)

    def describe_range(self) -> str:
        if self.choices is not None:
            return ", ".join(str(c) for c in self.choices)
        if self.low is None and self.high is None:
            return ""
        number = (lambda v: str(int(v))) if self.kind is int else (lambda v: f"{v:g}")
        return f"{number(self.low)} – {number(self.high)}"


RUN_PARAMS: tuple[RunParam, ...] = (
    # --- preparing ------------------------------------------------------------------------------
    RunParam(
        "input_size",
        int,
        None,
        "Input size",
        stage="preparing",
        low=8,
        high=256,
        nullable=True,
        empty="auto",
        help="Images are letterboxed to this many pixels square. Auto: the multiple of 4 nearest the "
        "median side, at most 64.",
    ),
    RunParam(
        "channels",
        int,
        None,
        "Channels",
        stage="preparing",
        choices=(1, 3),
        choice_labels=("1 (gray)", "3 (color)"),
        nullable=True,
        empty="auto",
        help="1 gray, 3 color. Auto: color only when the images have it.",
    ),
    # --- training -------------------------------------------------------------------------------
    RunParam(
        "embedding",
        str,
        EMBEDDINGS[0],
        "Embedding",
        stage="training",
        choices=EMBEDDINGS,
        choice_labels=EMBEDDING_LABELS,
        basic=True,
        help="autoencoder: train one on the images and use its codes; uploaded: use the vectors uploaded to "
        "/api/datasets/{id}/embeddings/ (no training; every image needs one); backbone: embed every image with "
        "a pretrained model registered at /api/datasets/{id}/backbones/ (no training).",
    ),
    RunParam(
        "backbone",
        int,
        None,
        "Backbone",
        stage="training",
        low=1,
        high=2**31 - 1,
        nullable=True,
        empty="none",
        help="With embedding backbone: one of the dataset's registered backbones, by id in the API (required then).",
    ),
    RunParam(
        "epochs",
        int,
        _TRAIN.epochs,
        "Epochs",
        stage="training",
        low=1,
        high=1000,
        nullable=True,
        empty="auto",
        basic=True,
        config="train.epochs",
        help="Passes over the training images; training stops early when the loss stops improving. Empty: "
        "chosen from the number of images and the objective (reconstruction 10; contrastive until a time budget "
        "that grows with the images; the run's metrics say which).",
    ),
    RunParam(
        "objective",
        str,
        _TRAIN.objective,
        "Objective",
        stage="training",
        choices=OBJECTIVES,
        config="train.objective",
        help="What the encoder learns. reconstruction: to redraw each image (color and layout); contrastive: "
        "also to give two altered views of an image (cropped, flipped, recolored) the same code, which groups "
        "photos by what they show. Auto: contrastive for color images, reconstruction for gray.",
    ),
    RunParam(
        "patch_features",
        str,
        _TRAIN.patch_features,
        "Patch features",
        stage="training",
        choices=PATCH_FEATURES,
        config="train.patch_features",
        help="Statistics of each image's small whitened patches (fitted in seconds, no training) put beside "
        "the learned code. On photos they add what contrastive training has not learned yet (held-out photos, "
        "through the API: similar-image agreement 0.34 to 0.40, cluster purity 0.36 to 0.41). Auto: with the "
        "contrastive objective on color images.",
    ),
    RunParam(
        "use_labels",
        str,
        USE_LABELS[0],
        "Learn from labels",
        stage="training",
        choices=USE_LABELS,
        help=f"auto: the encoder also learns from the images people have labeled (labeled images of one class "
        f"are drawn together), once {LABELS_MIN_TOTAL} labeled images are in 2 or more classes of "
        f"{LABELS_MIN_PER_CLASS} or more; off: it learns from the images alone. The run's metrics say how many "
        f"labeled images it used and why.",
    ),
    RunParam(
        "code_size",
        int,
        _TRAIN.code_size,
        "Code size",
        stage="training",
        low=2,
        high=512,
        basic=True,
        config="train.code_size",
        help="Numbers in each image's code (the autoencoder's bottleneck).",
    ),
    RunParam(
        "batch_size",
        int,
        _TRAIN.batch_size,
        "Batch size",
        stage="training",
        low=1,
        high=8192,
        config="train.batch_size",
        help="Images per training step.",
    ),
    RunParam(
        "learning_rate",
        float,
        _TRAIN.learning_rate,
        "Learning rate",
        stage="training",
        low=1e-6,
        high=1.0,
        config="train.learning_rate",
        help="Adam's initial step size (decayed to zero on a cosine schedule).",
    ),
    RunParam(
        "depth",
        int,
        _TRAIN.depth,
        "Depth",
        stage="training",
        low=1,
        high=6,
        config="train.depth",
        help="Stride-2 convolution layers in the encoder.",
    ),
    RunParam(
        "base_channels",
        int,
        _TRAIN.base_channels,
        "Base channels",
        stage="training",
        low=4,
        high=256,
        config="train.base_channels",
        help="Channels of the first convolution; each layer doubles them.",
    ),
    RunParam(
        "patience",
        int,
        _TRAIN.patience,
        "Patience",
        stage="training",
        low=1,
        high=1000,
        nullable=True,
        empty="off",
        config="train.patience",
        help="Stop after this many epochs without improvement; empty: never stop early.",
    ),
    RunParam(
        "min_delta",
        float,
        _TRAIN.min_delta,
        "Minimum improvement",
        stage="training",
        low=0.0,
        high=1.0,
        config="train.min_delta",
        help="Relative loss improvement that counts for early stopping (0.01 = 1 %).",
    ),
    RunParam(
        "noise_std",
        float,
        _TRAIN.noise_std,
        "Input noise",
        stage="training",
        low=0.0,
        high=1.0,
        config="train.noise_std",
        help="Denoising: Gaussian noise added to the inputs while training.",
    ),
    RunParam(
        "max_shift",
        int,
        _TRAIN.max_shift,
        "Maximum shift",
        stage="training",
        low=0,
        high=16,
        config="train.max_shift",
        help="Augmentation: random shift in pixels while training.",
    ),
    RunParam(
        "max_train_images",
        int,
        TRAIN_MAX_IMAGES,
        "Training sample",
        stage="training",
        low=10,
        high=10_000_000,
        nullable=True,
        empty="all",
        help="Train on a random sample of this many images; every image is embedded. Empty: train on all.",
    ),
    RunParam(
        "max_train_seconds",
        float,
        _TRAIN.max_seconds,
        "Training time limit",
        stage="training",
        low=1,
        high=7 * 24 * 3600,
        nullable=True,
        empty="none",
        config="train.max_seconds",
        help="Seconds after which training ends (a normal finish). Empty: no limit.",
    ),
    # --- layout ---------------------------------------------------------------------------------
    RunParam(
        "layout_method",
        str,
        _LAYOUT.method,
        "Map layout",
        stage="layout",
        choices=LAYOUT_METHODS,
        choice_labels=("t-SNE", "UMAP"),
        basic=True,
        config="layout.method",
        help="t-SNE separates groups well; UMAP is faster on very large datasets.",
    ),
    RunParam(
        "perplexity",
        float,
        _LAYOUT.perplexity,
        "Perplexity",
        stage="layout",
        low=2.0,
        high=200.0,
        config="layout.perplexity",
        help="t-SNE's neighborhood size (lowered for datasets of fewer than 3 × this many images).",
    ),
    RunParam(
        "tsne_iterations",
        int,
        None,
        "t-SNE iterations",
        stage="layout",
        low=50,
        high=5000,
        nullable=True,
        empty="auto",
        help=f"t-SNE optimization steps, after a third as many of early exaggeration. Auto: "
        f"{_LAYOUT.n_iter} after {_LAYOUT.early_exaggeration_iter}.",
    ),
    RunParam(
        "layout_max_points",
        int,
        None,
        "Map sample",
        stage="layout",
        low=100,
        high=10_000_000,
        nullable=True,
        empty="auto",
        help="Compute the map on a sample of this many images and place the rest by their "
        "neighbors. Auto: a 30,000 sample above 30,000 images.",
    ),
    # --- clustering -----------------------------------------------------------------------------
    RunParam(
        "n_clusters",
        int,
        _CLUSTER.n_clusters,
        "Clusters",
        stage="clustering",
        low=2,
        high=5000,
        nullable=True,
        empty="auto",
        basic=True,
        config="cluster.n_clusters",
        help="Clusters to group the images into. Auto: chosen from the dataset size (about √(N/2): fine "
        "clusters, several per class, save labeling clicks).",
    ),
    RunParam(
        "cluster_method",
        str,
        _CLUSTER.method,
        "Cluster method",
        stage="clustering",
        choices=CLUSTER_METHODS,
        config="cluster.method",
        help="auto: UMAP of the codes, then a Gaussian mixture (≤ 20 clusters) or k-means; or one of these "
        "on the codes (kmeans, gmm), on their UMAP (umap_*) or on the map (layout_kmeans).",
    ),
    # --- every stage ----------------------------------------------------------------------------
    RunParam(
        "seed",
        int,
        _TRAIN.seed,
        "Seed",
        stage="all",
        low=0,
        high=2**31 - 1,
        config="train.seed",
        help="Same seed, same images: same model, map and clusters.",
    ),
)

BY_NAME: dict[str, RunParam] = {spec.name: spec for spec in RUN_PARAMS}


def run_param_defaults() -> dict:
    """Every parameter's default: what a run started with no parameters stores."""
    return {spec.name: spec.default for spec in RUN_PARAMS}


def markdown_table() -> str:
    """The README's run-parameter table (tests/embeddings/test_run_params.py keeps them equal)."""
    rows = ["| Parameter | Stage | Type | Default | Range | What it does |", "|---|---|---|---|---|---|"]
    for spec in RUN_PARAMS:
        default = spec.describe_default()
        rows.append(
            f"| `{spec.name}` | {spec.stage} | {spec.type_name} | {f'`{default}`' if spec.default is not None else default} "
            f"| {spec.describe_range()} | {spec.help} |"
        )
    return "\n".join(rows)
