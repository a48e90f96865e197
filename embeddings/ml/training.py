"""Training loop for the autoencoder.  Knows nothing of Django: it takes arrays
and a config, reports through on_progress and polls should_stop."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .augment import AugmentConfig, augment
from .autoencoder import ConvAutoencoder
from .config import (
    TrainConfig,
    TrainingBudget,
    choose_objective,
    choose_patch_features,
    default_cpu_threads,
    select_device,
    training_budget,
)
from .contrastive import nt_xent
from .patch_features import PatchFeatures
from .supervised import supcon_loss

ProgressFn = Callable[[int, int, dict], None]


@dataclass
class TrainResult:
    model: ConvAutoencoder
    loss_curve: list[float]  # mean training loss per finished epoch
    epochs_run: int
    stopped_early: bool
    cancelled: bool
    step_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    # The objective that ran ('reconstruction' or 'contrastive') and why
    # ('chosen', or the 'auto' rule's reason).
    objective: str = "reconstruction"
    objective_reason: str = ""
    # The epochs and seconds training was allowed (config.training_budget).
    budget: TrainingBudget | None = None
    # Labeled images the supervised term trained on (0: none).
    labels_used: int = 0
    # Whether patch features were fitted beside the learned code, why, and in how many seconds.
    patch_features: dict | None = None


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def training_threads(config: TrainConfig) -> int:
    if config.num_threads is not None:
        return max(1, config.num_threads)
    return default_cpu_threads()


def build_model(config: TrainConfig, objective: str = "reconstruction") -> ConvAutoencoder:
    normalize = config.normalize_codes if config.normalize_codes is not None else objective == "contrastive"
    return ConvAutoencoder(
        in_channels=config.channels,
        input_size=config.input_size,
        code_size=config.code_size,
        depth=config.depth,
        base_channels=config.base_channels,
        batch_norm=config.batch_norm,
        convs_per_stage=config.convs_per_stage,
        normalize_codes=normalize,
    )


def projection_head(config: TrainConfig) -> nn.Module:
    """SimCLR's MLP between the codes and NT-Xent, for training only (not saved)."""
    dim = config.projection_dim
    return nn.Sequential(nn.Linear(config.code_size, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


class LearningRateSchedule:
    """The learning rate at each step: constant, or cosine-decayed to zero over
    the training planned, whichever ends first of the budget's steps and its
    seconds (by the clock), so a run cut short by its time budget still ends
    at a low rate instead of stopping at full rate."""

    def __init__(self, config: TrainConfig, total_steps: int, max_seconds: float | None, started: float):
        self.base = config.learning_rate
        self.cosine = config.lr_schedule == "cosine"
        self.total_steps = max(1, total_steps)
        self.max_seconds = max_seconds
        self.started = started

    def progress(self, step: int) -> float:
        done = step / self.total_steps
        if self.max_seconds is not None and self.max_seconds > 0:
            done = max(done, (time.perf_counter() - self.started) / self.max_seconds)
        return min(1.0, done)

    def rate(self, step: int) -> float:
        if not self.cosine:
            return self.base
        return self.base * 0.5 * (1.0 + math.cos(math.pi * self.progress(step)))

    def out_of_time(self) -> bool:
        return self.max_seconds is not None and time.perf_counter() - self.started > self.max_seconds


def _augment(batch: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Inputs for a denoising autoencoder: random shifts and Gaussian noise.
    The target stays the clean image."""
    if config.max_shift > 0:
        s = config.max_shift
        dx, dy = (int(v) for v in torch.randint(-s, s + 1, (2,), generator=generator))
        batch = torch.roll(batch, shifts=(dy, dx), dims=(2, 3))
    if config.noise_std > 0:
        noise = torch.randn(batch.shape, generator=generator) * config.noise_std
        batch = (batch + noise.to(batch.device)).clamp_(0.0, 1.0)
    return batch


def training_sample(n: int, config: TrainConfig) -> np.ndarray | None:
    """The sorted rows of n images that training reconstructs: config.max_train_images drawn with
    config.seed, or None when every image is trained on.  The worker decodes only these (and the
    labeled images) before training; the same draw as training's own, so the results are the same."""
    if config.max_train_images is None or n <= config.max_train_images:
        return None
    return np.sort(np.random.default_rng(config.seed).choice(n, config.max_train_images, replace=False))


def train_autoencoder(
    images: np.ndarray,
    config: TrainConfig,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    device=None,
    labels: np.ndarray | None = None,
    train_rows: np.ndarray | None = None,
) -> TrainResult:
    """Train a ConvAutoencoder on float32 images (N, C, H, W) in [0, 1], with
    the objective config.objective names (config.choose_objective).

    on_progress(step, total_steps, metrics) is called every
    config.progress_every steps, with 'loss' (the mean batch loss of the steps
    since the last report, all in one epoch) and 'epoch'; and at an epoch's end
    once more with 'epoch' and 'epoch_loss' (its mean) only, after a 'loss'
    report of any steps not yet reported.  should_stop() is polled before every step; when
    it returns True training stops and the result has cancelled=True.

    labels: each image's class index (N,), -1 for unlabeled.  With labeled
    images of 2 or more classes, every step also trains config.labels_weight x
    SupCon (supervised.py) on two views of config.labels_batch_size labeled
    images; all labeled images stay in training when max_train_images samples the rest.

    train_rows: the rows of images to reconstruct when the caller drew the sample itself
    (training_sample) and passes only it and the labeled images; default: training_sample(len(images)).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    if images.shape[1] != config.channels or images.shape[2] != config.input_size:
        raise ValueError(
            f"images {images.shape[1:]} do not match config (channels={config.channels}, "
            f"input_size={config.input_size})"
        )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(training_threads(config))
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    try:
        return _train(images, config, on_progress, should_stop, device, labels, train_rows)
    finally:
        torch.set_num_threads(previous_threads)


def _train(images, config: TrainConfig, on_progress, should_stop, device, labels=None, train_rows=None) -> TrainResult:
    started = time.perf_counter()
    device = device or select_device()
    set_seeds(config.seed)
    labeled_data, labeled_classes = _labeled_images(images, labels, device)
    if train_rows is None:
        train_rows = training_sample(len(images), config)
    if train_rows is not None:
        images = images[train_rows]
    data = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    n = len(data)

    objective, objective_reason = choose_objective(config.objective, config.channels)
    model = build_model(config, objective).to(device)
    contrastive = objective == "contrastive"
    views = AugmentConfig.for_channels(config.channels)
    head = projection_head(config).to(device) if contrastive and config.projection_dim else None
    if config.contrastive_reconstruction not in ("joint", "detached"):
        raise ValueError(f"unknown contrastive_reconstruction {config.contrastive_reconstruction!r}")
    parameters = list(model.parameters()) + (list(head.parameters()) if head is not None else [])
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    if config.loss not in ("mse", "bce"):
        raise ValueError(f"unknown loss {config.loss!r}")
    loss_fn = nn.MSELoss() if config.loss == "mse" else nn.BCELoss()
    generator = torch.Generator().manual_seed(config.seed)

    def contrastive_loss(target: torch.Tensor) -> torch.Tensor:
        # Both views in one batch (batch norm sees them together); the decoder
        # reconstructs the views, so it still gives reconstructions and the
        # outlier signal without a third pass.  NT-Xent acts on the codes themselves, with no
        # projection head between: on 5,000 photos (15 epochs) a 128-64 MLP head, as SimCLR has,
        # gave codes whose 10 nearest neighbors shared the class 27.7 % of the time, none 31.2 %
        # (neighbors and clusters are found on the codes, so the codes should be what NT-Xent shapes).
        both = torch.cat([augment(target, views, generator), augment(target, views, generator)])
        codes = model.encode(both)
        if config.contrastive_reconstruction == "detached":
            # A quarter of the first view's codes, gradient stopped: the decoder still sees every
            # image several times over a run, and a step costs about 45 ms instead of 75 (128 photos).
            some = max(2, len(target) // 4)
            recon = loss_fn(model.decode(codes[:some].detach()), both[:some])
        else:
            recon = loss_fn(model.decode(codes), both)
        projected = head(codes) if head is not None else codes
        return recon + config.contrastive_weight * nt_xent(*projected.chunk(2), temperature=config.temperature)

    def supervised_loss() -> torch.Tensor:
        # A fresh draw of labeled images each step, two views each, so a class's few examples
        # are seen often and under the changes the encoder should ignore.
        pick = torch.randperm(len(labeled_data), generator=generator)[: config.labels_batch_size].to(device)
        chosen = labeled_data[pick]
        both = torch.cat([augment(chosen, views, generator), augment(chosen, views, generator)])
        classes = labeled_classes[pick].repeat(2)
        return config.labels_weight * supcon_loss(model.encode(both), classes, config.labels_temperature)

    steps_per_epoch = max(1, -(-n // config.batch_size))
    budget = training_budget(config, n, objective)
    total_steps = steps_per_epoch * budget.epochs
    if config.lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")
    schedule = LearningRateSchedule(config, total_steps, budget.seconds, started)
    # A contrastive run on the default budget trains to its end: its cosine
    # schedule is planned over the budget, and its loss falls by less than
    # min_delta an epoch long before its codes stop improving.
    patience = None if (contrastive and config.epochs is None) else config.patience
    loss_curve: list[float] = []
    step_losses: list[float] = []
    best = float("inf")
    bad_epochs = 0
    stopped_early = cancelled = False
    step = 0
    epoch = 0

    model.train()
    for epoch in range(1, budget.epochs + 1):
        order = torch.randperm(n, generator=generator).to(device)
        epoch_sum, epoch_count = 0.0, 0
        window_sum, window_count = 0.0, 0
        for start in range(0, n, config.batch_size):
            if should_stop is not None and should_stop():
                cancelled = True
                break
            if step and schedule.out_of_time():
                break  # mid-epoch: the budget's seconds are spent (at least one step is always taken)
            target = data[order[start : start + config.batch_size]]
            if len(target) == 1 and config.batch_norm and n > 1:
                continue  # batch norm cannot train on a single image
            if contrastive:
                loss = contrastive_loss(target)
            else:
                inputs = _augment(target, config, generator) if (config.noise_std or config.max_shift) else target
                loss = loss_fn(model(inputs), target)
            if labeled_data is not None:
                loss = loss + supervised_loss()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for group in optimizer.param_groups:
                group["lr"] = schedule.rate(step + 1)

            value = float(loss.detach())
            step += 1
            step_losses.append(value)
            epoch_sum += value * len(target)
            epoch_count += len(target)
            window_sum += value
            window_count += 1
            if on_progress is not None and step % config.progress_every == 0:
                on_progress(step, total_steps, {"loss": window_sum / window_count, "epoch": epoch})
                window_sum, window_count = 0.0, 0
        if cancelled:
            break
        if not epoch_count:
            break  # the time budget ran out before this epoch's first step
        epoch_loss = epoch_sum / max(1, epoch_count)
        loss_curve.append(epoch_loss)
        if on_progress is not None:
            # The batch report of the epoch's last steps first, so a window of
            # batch losses never spans two epochs; then the epoch's mean, as its
            # own report ('epoch_loss' only): a curve of batch losses that took
            # the epoch mean for one more point jumped at every epoch's end.
            if window_count:
                on_progress(step, total_steps, {"loss": window_sum / window_count, "epoch": epoch})
            on_progress(step, total_steps, {"epoch": epoch, "epoch_loss": epoch_loss})
        if epoch_loss < best * (1.0 - config.min_delta):
            best = epoch_loss
            bad_epochs = 0
        else:
            best = min(best, epoch_loss)
            bad_epochs += 1
        if patience is not None and bad_epochs >= patience and epoch < budget.epochs:
            stopped_early = True
            break
        if schedule.out_of_time():
            stopped_early = epoch < budget.epochs
            break

    model.eval()
    patch_info = None
    if not cancelled and not (should_stop is not None and should_stop()):
        patch_info = _attach_patch_features(model, images, config, objective, device)
    return TrainResult(
        model=model,
        loss_curve=loss_curve,
        epochs_run=len(loss_curve),
        stopped_early=stopped_early,
        cancelled=cancelled,
        step_losses=step_losses,
        seconds=time.perf_counter() - started,
        objective=objective,
        objective_reason=objective_reason,
        budget=budget,
        labels_used=0 if labeled_data is None else len(labeled_data),
        patch_features=patch_info,
    )


def _attach_patch_features(model: ConvAutoencoder, images: np.ndarray, config: TrainConfig, objective, device):
    """Fit patch features on the training images and put them beside the model's code, when
    config.patch_features says so (choose_patch_features)."""
    use, reason = choose_patch_features(config.patch_features, objective, config.channels)
    if not use:
        return {"used": False, "reason": reason}
    started = time.perf_counter()
    patches = PatchFeatures(config.channels, config.input_size, dims=config.patch_dims).fit(images, seed=config.seed)
    model.attach_patch_features(patches.to(device), weight=config.patch_weight)
    return {
        "used": True,
        "reason": reason,
        "dims": model.patch_dims,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _labeled_images(images: np.ndarray, labels: np.ndarray | None, device):
    """(images, class indices) of the labeled images as tensors, or (None, None) when
    fewer than 2 classes are labeled (SupCon needs another class to push away from)."""
    if labels is None:
        return None, None
    labels = np.asarray(labels, dtype=np.int64)
    labeled = np.flatnonzero(labels >= 0)
    if len(np.unique(labels[labeled])) < 2:
        return None, None
    data = torch.from_numpy(np.ascontiguousarray(images[labeled])).to(device)
    return data, torch.from_numpy(labels[labeled]).to(device)
