"""Run parameters: what a user may set, checked before a run is queued.

A run stores the normalised parameters (defaults filled in) so the training
page shows exactly what ran, and the worker builds the ML configs from them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# The config module is pure Python; importing it does not import torch.
from embeddings.ml.config import CLUSTER_MAX_POINTS, LAYOUT_MAX_POINTS, TRAIN_MAX_IMAGES, TrainConfig
from labeling.errors import ValidationFailed

LAYOUT_METHODS = ("tsne", "umap")
CLUSTER_METHODS = ("auto", "umap_kmeans", "umap_gmm", "kmeans", "gmm", "layout_kmeans")


@dataclass(frozen=True)
class Param:
    kind: Callable
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    help: str = ""


_TRAIN_DEFAULTS = TrainConfig()

PARAMS: dict[str, Param] = {
    # Defaults are the ML package's measured ones (embeddings/ml/config.py).
    "epochs": Param(int, _TRAIN_DEFAULTS.epochs, 1, 1000, help="passes over the training images"),
    "batch_size": Param(int, _TRAIN_DEFAULTS.batch_size, 1, 8192),
    "learning_rate": Param(float, _TRAIN_DEFAULTS.learning_rate, 1e-6, 1.0),
    "code_size": Param(int, _TRAIN_DEFAULTS.code_size, 2, 512, help="length of each image's code"),
    "depth": Param(int, _TRAIN_DEFAULTS.depth, 1, 6, help="stride-2 convolution layers in the encoder"),
    "base_channels": Param(int, _TRAIN_DEFAULTS.base_channels, 4, 256),
    "input_size": Param(int, None, 8, 256, nullable=True, help="side in pixels; empty: chosen from the images"),
    "channels": Param(int, None, choices=(1, 3), nullable=True, help="1 grey, 3 colour; empty: chosen from the images"),
    "seed": Param(int, 0, 0, 2**31 - 1),
    "patience": Param(int, 3, 1, 1000, nullable=True, help="early stopping; empty: off"),
    "min_delta": Param(float, 0.01, 0.0, 1.0),
    "noise_std": Param(float, 0.0, 0.0, 1.0),
    "max_shift": Param(int, 0, 0, 16),
    "max_train_images": Param(int, TRAIN_MAX_IMAGES, 10, 10_000_000, nullable=True,
                              help="train on a sample of this many images; the rest are only embedded"),
    "max_train_seconds": Param(float, None, 1, 7 * 24 * 3600, nullable=True),
    "layout_method": Param(str, "tsne", choices=LAYOUT_METHODS),
    "perplexity": Param(float, 30.0, 2.0, 200.0),
    "tsne_iterations": Param(int, None, 50, 5000, nullable=True, help="t-SNE optimisation steps; empty: default"),
    "layout_max_points": Param(int, None, 100, 10_000_000, nullable=True),
    "cluster_method": Param(str, "auto", choices=CLUSTER_METHODS),
    "n_clusters": Param(int, None, 2, 5000, nullable=True, help="empty: chosen from the data"),
}


def _coerce(name: str, spec: Param, value):
    if value is None or value == "":
        if spec.nullable:
            return None
        raise ValidationFailed(f"{name} is required.", field=name)
    if isinstance(value, bool):
        raise ValidationFailed(f"{name} must be a number.", field=name)
    try:
        if spec.kind is int:
            number = float(value)
            if number != int(number):
                raise ValueError
            coerced = int(number)
        elif spec.kind is float:
            coerced = float(value)
            if coerced != coerced or coerced in (float("inf"), float("-inf")):
                raise ValueError
        else:
            coerced = str(value).strip().lower()
    except (TypeError, ValueError, OverflowError):
        raise ValidationFailed(f"{name} must be {'a whole number' if spec.kind is int else 'a number'}.", field=name)
    if spec.choices is not None and coerced not in spec.choices:
        raise ValidationFailed(f"{name} must be one of {', '.join(map(str, spec.choices))}.", field=name)
    if spec.low is not None and coerced < spec.low:
        raise ValidationFailed(f"{name} must be at least {spec.low:g}.", field=name)
    if spec.high is not None and coerced > spec.high:
        raise ValidationFailed(f"{name} must be at most {spec.high:g}.", field=name)
    return coerced


def run_params_validate(params: dict | None, *, image_count: int | None = None) -> dict:
    """Normalised parameters (every key, defaults filled) or ValidationFailed."""
    params = dict(params or {})
    if not isinstance(params, dict):
        raise ValidationFailed("params must be an object.")
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValidationFailed(f"unknown parameter(s): {', '.join(unknown)}.", fields=unknown)
    clean = {}
    for name, spec in PARAMS.items():
        clean[name] = _coerce(name, spec, params[name]) if name in params else spec.default
    if image_count is not None and clean["n_clusters"] is not None and clean["n_clusters"] > image_count:
        raise ValidationFailed(
            f"n_clusters ({clean['n_clusters']}) is more than the dataset's {image_count} images.", field="n_clusters"
        )
    return clean


def train_config(params: dict, *, input_size: int, channels: int):
    from embeddings.ml.config import TrainConfig

    return TrainConfig(
        batch_norm=_TRAIN_DEFAULTS.batch_norm,
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
        code_size=params["code_size"],
        depth=params["depth"],
        base_channels=params["base_channels"],
        input_size=input_size,
        channels=channels,
        seed=params["seed"],
        patience=params["patience"],
        min_delta=params["min_delta"],
        noise_std=params["noise_std"],
        max_shift=params["max_shift"],
        max_train_images=params["max_train_images"],
        max_seconds=params["max_train_seconds"],
    )


def layout_config(params: dict, *, image_count: int):
    from embeddings.ml.config import LayoutConfig

    # t-SNE needs perplexity < N / 3; small datasets get the largest that works.
    perplexity = min(params["perplexity"], max(2.0, (image_count - 1) / 3.0))
    extra = {}
    if params.get("tsne_iterations"):
        extra = {"n_iter": params["tsne_iterations"], "early_exaggeration_iter": max(25, params["tsne_iterations"] // 3)}
    return LayoutConfig(
        **extra,
        method=params["layout_method"],
        seed=params["seed"],
        perplexity=perplexity,
        # Above 30,000 points t-SNE runs on a sample and places the rest (measured in bench/pipeline_speed.py).
        max_points=params["layout_max_points"] or (LAYOUT_MAX_POINTS if image_count > LAYOUT_MAX_POINTS else None),
        n_neighbors=max(2, min(15, image_count - 1)),
    )


def cluster_config(params: dict, *, image_count: int | None = None):
    from embeddings.ml.config import ClusterConfig

    large = image_count is not None and image_count > CLUSTER_MAX_POINTS
    return ClusterConfig(method=params["cluster_method"], n_clusters=params["n_clusters"], seed=params["seed"],
                         max_points=CLUSTER_MAX_POINTS if large else None)
