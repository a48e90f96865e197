"""Configuration dataclasses for each stage, and the one place the device is chosen."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class TrainConfig:
    """Autoencoder training.  Defaults measured on 10,000 MNIST digits, 2 cores
    (bench/quality.py, bench/pipeline_speed.py): a 16-32-64-channel encoder with
    batch norm and a 32-d code, 10 epochs of batch 128 with a cosine-decayed
    learning rate, reconstructs better (MSE 0.0068 vs 0.021) and gives codes
    whose neighbors share the class more often (10-NN 0.93 vs 0.87-0.89) than
    the 32-64-128, 10-d, batch-256 setup, in about half the time."""

    # None: chosen from the number of training images and the objective
    # (training_budget below; the run's metrics say what was used).
    epochs: int | None = None
    batch_size: int = 128
    learning_rate: float = 3e-3
    # 'constant' or 'cosine' (decay to zero over the planned steps: lower final
    # loss in few epochs).
    lr_schedule: str = "cosine"
    code_size: int = 32
    depth: int = 3
    base_channels: int = 16
    batch_norm: bool = True
    # 'mse' or 'bce' (pixels in [0, 1] read as probabilities).
    loss: str = "mse"
    input_size: int = 28
    channels: int = 1
    # Denoising and augmentation.  Off by default: on 10,000 handwritten digits
    # (10 epochs, UMAP 2-d, k-means) input noise and shifts dropped clustering
    # accuracy from 0.95 to 0.81 (one seed, measured before this repository's benches).
    noise_std: float = 0.0
    max_shift: int = 0
    seed: int = 0
    # Early stopping: stop after `patience` epochs whose loss improved on the best
    # by less than `min_delta` (relative, 0.01 = 1 %).  None disables it.
    patience: int | None = 3
    min_delta: float = 0.01
    # Train on at most this many images (a seeded random subset); all images are
    # embedded afterwards.  Keeps training time flat for large datasets.
    max_train_images: int | None = None
    # Stop training (not cancelled: a normal finish) after this many seconds.
    max_seconds: float | None = None
    # Call on_progress every this many optimization steps.
    progress_every: int = 5
    # torch CPU threads while training.  None: all cores but one.  On the
    # 2-core machine two threads ran 5-10x slower than one once numba/openTSNE
    # had run in the same process (OpenMP runtimes spinning against each
    # other), and the other core is wanted by the web server anyway.
    num_threads: int | None = None
    # What the encoder learns: 'reconstruction' (the autoencoder alone),
    # 'contrastive' (contrastive_weight x NT-Xent on two augmented views of
    # each image, see contrastive.py, and a reconstruction loss as
    # contrastive_reconstruction says), or 'auto' (choose_objective: by the
    # images' channels).  Contrastive training makes
    # its own views (augment.py); noise_std and max_shift apply to
    # reconstruction only.
    objective: str = "auto"
    contrastive_weight: float = 1.0
    # NT-Xent temperature.  On 5,000 tuning photos (12 epochs) 10-NN
    # agreement, seeds 0 / 1: 0.285 / - at 0.5, 0.315 / 0.338 at 0.2,
    # 0.325 / 0.333 at 0.1, 0.320 / - at 0.07: 0.1 and 0.2 tie, 0.5 is worse.
    temperature: float = 0.1
    # Stride-1 convs after each stride-2 conv of the encoder, plus one (1: the
    # plain 3-conv encoder).
    convs_per_stage: int = 1
    # Unit-length codes; None: when the objective is contrastive.
    normalize_codes: bool | None = None
    # NT-Xent on a (code -> projection_dim -> projection_dim) MLP head instead
    # of the codes themselves (SimCLR); None: no head.
    projection_dim: int | None = None
    # Contrastive training's reconstruction term: 'joint' (its gradient also
    # shapes the encoder) or 'detached' (the decoder learns from a quarter of
    # the batch's codes with the encoder's gradient stopped: reconstructions
    # and the outlier signal without pulling the codes toward color and
    # layout).  Detached: on 5,000 tuning photos, 45 s of training, 10-NN
    # agreement 0.327 vs 0.321, and 655 steps in the time of 490.
    contrastive_reconstruction: str = "detached"
    # The default budget's clock (budget_seconds): False keeps only its steps,
    # so a benchmark on a busy machine trains what an idle one would.
    budget_clock: bool = True
    # Learning from people's labels (supervised.py), when train_autoencoder is
    # given them: every step also draws this many labeled images (two views
    # each) and adds labels_weight x SupCon on their codes at this temperature.
    labels_weight: float = 1.0
    labels_batch_size: int = 64
    labels_temperature: float = 0.1
    # Patch features (patch_features.py) beside the learned code: 'auto' (with
    # the contrastive objective on color images, choose_patch_features), 'on'
    # or 'off'; the learned code is weighted by patch_weight beside them (both
    # unit length).  On 5,000 tuning photos without labels 10-NN agreement
    # 0.405 / 0.409 / 0.403 at 0.5 / 0.7 / 1.0; on 2,000 with 20 % labeled
    # (bench/learn_from_labels.py) 0.371 / purity 0.389 at 0.5, 0.391 / 0.431 at
    # 1.0, 0.378 / 0.425 at 2.0: equal weights, so what the labels teach the code counts.
    patch_features: str = "auto"
    patch_weight: float = 1.0
    patch_dims: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


OBJECTIVES = ("auto", "reconstruction", "contrastive")
PATCH_FEATURES = ("auto", "on", "off")

# The default training budget (epochs None), issue 14.  Reconstruction: 10
# epochs (the digits' measured default above; early stopping by patience).
# Contrastive keeps improving as long as it trains, so its budget grows with
# the number of training images N: CONTRASTIVE_STEPS_PER_1K_IMAGES steps per
# 1,000 images, within [MIN, MAX] steps, and never longer than
# seconds = clamp(BUDGET_SECONDS_PER_1K_IMAGES x N / 1,000, MIN, MAX) by the
# clock (on a busy machine the clock ends it first).  The steps are about
# what the 2-core machine trains in those seconds on one thread: a step of 128
# 32-px photos (two views, the 16-32-64 encoder, a quarter of the batch
# decoded) took 47 ms CPU (tuning runs, 5,000 photos), so 10,000 photos get
# 1,200 steps, about 56 s, and with the ~30 s of embedding, t-SNE and
# clustering (README, 10,000 images) and reading the images are a map in
# under 120 s.
RECONSTRUCTION_EPOCHS = 10
CONTRASTIVE_STEPS_PER_1K_IMAGES = 120
CONTRASTIVE_MIN_STEPS = 300
CONTRASTIVE_MAX_STEPS = 2400
BUDGET_SECONDS_PER_1K_IMAGES = 6.0
BUDGET_MIN_SECONDS = 20.0
BUDGET_MAX_SECONDS = 120.0


@dataclass(frozen=True)
class TrainingBudget:
    """What a training run may spend: epochs, and seconds (None: no limit)."""

    epochs: int
    seconds: float | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def budget_seconds(n_images: int) -> float:
    """The default contrastive training time for n_images training images, at most."""
    return float(min(BUDGET_MAX_SECONDS, max(BUDGET_MIN_SECONDS, BUDGET_SECONDS_PER_1K_IMAGES * n_images / 1000)))


def budget_steps(n_images: int) -> int:
    """The default contrastive optimization steps for n_images training images."""
    steps = CONTRASTIVE_STEPS_PER_1K_IMAGES * n_images // 1000
    return int(min(CONTRASTIVE_MAX_STEPS, max(CONTRASTIVE_MIN_STEPS, steps)))


def training_budget(config: TrainConfig, n_images: int, objective: str) -> TrainingBudget:
    """The epochs and seconds a run of `objective` on n_images training images
    gets: config.epochs and config.max_seconds when epochs is set; else the
    default budget above (config.max_seconds, when set, still caps it)."""
    if config.epochs is not None:
        return TrainingBudget(config.epochs, config.max_seconds, "chosen")
    if objective != "contrastive":
        return TrainingBudget(RECONSTRUCTION_EPOCHS, config.max_seconds, f"auto: {RECONSTRUCTION_EPOCHS} epochs")
    steps_per_epoch = max(1, -(-n_images // config.batch_size))
    epochs = max(1, round(budget_steps(n_images) / steps_per_epoch))
    seconds = budget_seconds(n_images) if config.budget_clock else None
    if config.max_seconds is not None:
        seconds = config.max_seconds if seconds is None else min(seconds, config.max_seconds)
    clock = "" if seconds is None else f" or {seconds:.0f} s"
    return TrainingBudget(
        epochs, seconds, f"auto: {epochs} epochs ({epochs * steps_per_epoch} steps){clock}, {n_images} images"
    )


def choose_objective(objective: str, channels: int) -> tuple[str, str]:
    """The objective that runs, and why, for images of `channels` channels.

    The 'auto' rule, measured with bench/objectives.py (default settings and
    training budget, 1 thread, seeds 0 and 1; 10-NN class agreement of the
    codes / cluster purity at the default cluster count; README, Measurements):
      5,000 held-out color photos: reconstruction 0.238 / 0.280,
        contrastive 0.340 / 0.366; pixel PCA-50 0.246 / 0.262.
      5,000 MNIST digits: reconstruction 0.910 / 0.921,
        contrastive 0.872 / 0.918.
      5,000 Fashion-MNIST: reconstruction 0.750 / 0.730 (contrastive: README).
    Reconstruction learns the photos' color and layout, not what they show;
    on gray digits and clothes it is as good or better in a third of the
    time, so gray images keep it.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; one of {', '.join(OBJECTIVES)}")
    if objective != "auto":
        return objective, "chosen"
    if channels == 3:
        return "contrastive", "auto: 3-channel photos"
    return "reconstruction", f"auto: {channels}-channel images"


def choose_patch_features(setting: str, objective: str, channels: int) -> tuple[bool, str]:
    """Whether codes get patch features (patch_features.py) beside the learned code, and why.

    The 'auto' rule (bench/similar_api.py, through the REST API, seeds 0 / 1): on 5,000 held-out
    color photos similar-image agreement 0.333 / 0.343 became 0.402 / 0.407 with them and cluster
    purity 0.359 / 0.366 became 0.393 / 0.421, for ~22 s more at 10,000 photos (start to map 58 -> 81 s).
    Gray images keep the codes as they are: there the reconstruction objective runs (digits 0.91)."""
    if setting not in PATCH_FEATURES:
        raise ValueError(f"unknown patch_features {setting!r}; one of {', '.join(PATCH_FEATURES)}")
    if setting != "auto":
        return setting == "on", "chosen"
    if objective == "contrastive" and channels == 3:
        return True, "auto: contrastive codes of 3-channel photos"
    return False, f"auto: {objective} codes of {channels}-channel images"


USE_LABELS = ("auto", "off")

# When a run learns from the labels (use_labels 'auto'): a class counts once it
# has LABELS_MIN_PER_CLASS labeled images, and the labels are used once at
# least 2 classes count and they hold LABELS_MIN_TOTAL labeled images.
# Measured with bench/learn_from_labels.py (2,000 images, seeds 0 and 1; README,
# "Learning from labels"); 10-NN agreement / cluster purity over the unlabeled
# images, without labels -> with:
#   digits: 1 % labeled (about 2 a class) 0.853 / 0.833 -> 0.698 / 0.667 (the
#     supervised term pulls the codes around the few examples; label spreading
#     on the plain codes is better, 0.63 vs 0.52); 5 % (about 10 a class)
#     0.851 / 0.831 -> 0.874 / 0.888; 20 % 0.851 / 0.837 -> 0.887 / 0.894.
#   photos: 1 % 0.295 / 0.330 -> 0.290 / 0.348; 5 % 0.294 / 0.330 -> 0.316 /
#     0.372; 20 % 0.294 / 0.330 -> 0.346 / 0.406.
LABELS_MIN_PER_CLASS = 5
LABELS_MIN_TOTAL = 50


@dataclass(frozen=True)
class LabelsChoice:
    """The class index of each image a run trains with (-1: not used), how many are used, and why."""

    classes: np.ndarray | None
    used: int
    reason: str


def choose_labels(classes: np.ndarray | None, use_labels: str = "auto") -> LabelsChoice:
    """Whether a run learns from its images' labels (class indices, -1 unlabeled), by the rule above.

    Classes with fewer than LABELS_MIN_PER_CLASS labeled images are left out
    (set to -1): a handful of examples is better spread from than trained on.
    """
    if use_labels not in USE_LABELS:
        raise ValueError(f"unknown use_labels {use_labels!r}; one of {', '.join(USE_LABELS)}")
    if use_labels == "off":
        return LabelsChoice(None, 0, "off: use_labels is off")
    if classes is None:
        return LabelsChoice(None, 0, "auto: no labels")
    classes = np.asarray(classes, dtype=np.int64)
    labeled = classes[classes >= 0]
    if not len(labeled):
        return LabelsChoice(None, 0, "auto: no labeled images")
    values, counts = np.unique(labeled, return_counts=True)
    enough = values[counts >= LABELS_MIN_PER_CLASS]
    kept = np.where(np.isin(classes, enough), classes, -1)
    used = int((kept >= 0).sum())
    rule = f"{LABELS_MIN_TOTAL} labeled images in 2 or more classes of {LABELS_MIN_PER_CLASS} or more"
    if len(enough) < 2 or used < LABELS_MIN_TOTAL:
        return LabelsChoice(
            None, 0, f"auto: {len(labeled)} labeled images, {used} in {len(enough)} classes; needs {rule}"
        )
    return LabelsChoice(kept, used, f"auto: {used} labeled images in {len(enough)} classes")


@dataclass
class LayoutConfig:
    """How the 2-D map is computed from the codes.

    method 'tsne' (openTSNE, FFT-accelerated gradients) is the map users see by
    default; 'umap' is offered beside it.
    """

    method: str = "tsne"
    seed: int = 0
    # t-SNE
    perplexity: float = 30.0
    early_exaggeration_iter: int = 125
    n_iter: int = 375
    exaggeration: float | None = None
    learning_rate: float | None = None  # None: openTSNE's "auto" (N / exaggeration)
    # Compute the map on at most this many points and place the rest by their
    # code-space neighbors (None: all points).
    max_points: int | None = None
    # UMAP
    n_neighbors: int = 15
    min_dist: float = 0.1
    # Threads for t-SNE/UMAP; None: all cores (at most 8).
    n_jobs: int | None = None
    # Output coordinates are scaled so that the largest |x| or |y| is this.
    extent: float = 50.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClusterConfig:
    """How images are grouped into clusters for labelling.

    method: 'auto' (UMAP of the codes, then a Gaussian mixture for <= 20
    clusters or k-means for more; plain k-means for tiny datasets), 'umap_gmm', 'umap_kmeans', 'kmeans' (on the codes), or 'layout_kmeans'
    (k-means on the map coordinates passed as layout_xy).
    n_clusters: None chooses a count from the number of images (fine clusters,
    several per class, which is what saves labelling clicks).
    """

    method: str = "auto"
    n_clusters: int | None = None
    seed: int = 0
    umap_components: int = 2
    # 30 neighbors gave fewer spurious splits than 15 or 50 on MNIST codes.
    umap_neighbors: int = 30
    # UMAP optimization epochs: umap-learn uses 500 up to 10,000 points and
    # 200 above; 200 everywhere keeps 10,000 images inside the time budget.
    umap_epochs: int | None = 200
    min_clusters: int = 2
    max_clusters: int = 300
    # Cluster at most this many images (a seeded subset); the rest get the
    # cluster of their nearest neighbors.  None: all.
    max_points: int | None = None
    n_jobs: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def select_device():
    """The one place the torch device is chosen: CUDA when present, else CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


# Clustering runs on every image up to this many (a seeded sample above it, the
# rest placed by code-space neighbors).  On all 70,000 MNIST digits, one
# cluster per class scored 0.970 (three seeds) clustering all of them and
# 0.80-0.87 clustering a 20,000 sample: UMAP's neighbor graph separates the
# classes better the denser it is.  UMAP costs ~50 s at 70,000 points.
CLUSTER_MAX_POINTS = 100_000
LAYOUT_MAX_POINTS = 30_000
TRAIN_MAX_IMAGES = 20_000


def recommended_configs(
    n_images: int, input_size: int = 28, channels: int = 1, seed: int = 0
) -> tuple[TrainConfig, LayoutConfig, ClusterConfig]:
    """Configs for a dataset of n_images, keeping time near-flat as N grows:
    the autoencoder trains on at most TRAIN_MAX_IMAGES images, t-SNE and
    clustering run on at most LAYOUT_MAX_POINTS / CLUSTER_MAX_POINTS and place
    the rest by code-space neighbors."""
    train = TrainConfig(input_size=input_size, channels=channels, seed=seed, max_train_images=TRAIN_MAX_IMAGES)
    layout = LayoutConfig(seed=seed, max_points=LAYOUT_MAX_POINTS if n_images > LAYOUT_MAX_POINTS else None)
    cluster = ClusterConfig(seed=seed, max_points=CLUSTER_MAX_POINTS if n_images > CLUSTER_MAX_POINTS else None)
    return train, layout, cluster


def default_cpu_threads() -> int:
    """torch CPU threads for training and embedding: all cores but one (see
    TrainConfig.num_threads for the measurement behind it)."""
    import os

    return max(1, (os.cpu_count() or 1) - 1)
