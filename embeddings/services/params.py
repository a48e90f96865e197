"""Run parameters: what a user may set, checked before a run is queued.

A run stores the normalized parameters (defaults filled in) so the training
page shows exactly what ran, and the worker builds the ML configs from them.
"""

from __future__ import annotations

from core.errors import ValidationFailed

# Both modules are pure Python; importing them does not import torch.
from embeddings.ml.config import (
    CLUSTER_MAX_POINTS,
    LAYOUT_MAX_POINTS,
    ClusterConfig,
    LayoutConfig,
    TrainConfig,
    choose_objective,
    choose_patch_features,
)
from embeddings.ml.run_params import BY_NAME, CLUSTER_METHODS, LAYOUT_METHODS, RunParam  # noqa: F401

_TRAIN_DEFAULTS = TrainConfig()

# The one declaration (embeddings/ml/run_params.py), by name.
PARAMS: dict[str, RunParam] = BY_NAME


def run_param_form_fields() -> list[dict]:
    """The training page's form fields, one per declared parameter (rendered on the server, so the form's
    defaults, ranges and help are the declaration's)."""
    fields = []
    for spec in PARAMS.values():
        choices = None
        if spec.choices is not None:
            labels = spec.choice_labels or tuple(str(c) for c in spec.choices)
            choices = [
                {"value": str(value), "label": label, "selected": value == spec.default}
                for value, label in zip(spec.choices, labels)
            ]
        fields.append(
            {
                "name": spec.name,
                "id": f"p-{spec.name.replace('_', '-')}",
                "label": spec.label,
                "help": spec.help,
                "kind": spec.kind.__name__,
                "stage": spec.stage,
                "basic": spec.basic,
                "nullable": spec.nullable,
                "empty": spec.empty,
                "value": _html_number(spec, spec.default),
                "min": _html_number(spec, spec.low),
                "max": _html_number(spec, spec.high),
                "step": "1" if spec.kind is int else "any",
                "choices": choices,
            }
        )
    return fields


def _html_number(spec: RunParam, value) -> str:
    if value is None:
        return ""
    if spec.kind is int:
        return str(int(value))
    if spec.kind is float:
        text = repr(float(value))  # exact, and a valid HTML number ("0.003", "1e-06")
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def _coerce(name: str, spec: RunParam, value):
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
        raise ValidationFailed(
            f"{name} must be {'a whole number' if spec.kind is int else 'a number'}.", field=name
        ) from None
    if spec.choices is not None and coerced not in spec.choices:
        raise ValidationFailed(f"{name} must be one of {', '.join(map(str, spec.choices))}.", field=name)
    if spec.low is not None and coerced < spec.low:
        raise ValidationFailed(f"{name} must be at least {spec.low:g}.", field=name)
    if spec.high is not None and coerced > spec.high:
        raise ValidationFailed(f"{name} must be at most {spec.high:g}.", field=name)
    return coerced


def run_params_validate(params: dict | None, *, image_count: int | None = None) -> dict:
    """Normalized parameters (every key, defaults filled) or ValidationFailed."""
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
        objective=params["objective"],
        patch_features=params["patch_features"],
    )


def objective_metrics(params: dict, *, channels: int) -> dict:
    """Which encoder objective a run's training used, and why (for its metrics): the same rule
    train_autoencoder applies, on the run's parameters and its images' channels.  Nothing for runs
    that train no encoder (uploaded vectors)."""
    if params.get("embedding", "autoencoder") != "autoencoder":
        return {}
    objective, reason = choose_objective(params["objective"], channels)
    patches, patches_reason = choose_patch_features(params["patch_features"], objective, channels)
    return {
        "objective": objective,
        "objective_reason": reason,
        "patch_features": patches,
        "patch_features_reason": patches_reason,
    }


def layout_config(params: dict, *, image_count: int):
    # t-SNE needs perplexity < N / 3; small datasets get the largest that works.
    perplexity = min(params["perplexity"], max(2.0, (image_count - 1) / 3.0))
    extra = {}
    if params.get("tsne_iterations"):
        extra = {
            "n_iter": params["tsne_iterations"],
            "early_exaggeration_iter": max(25, params["tsne_iterations"] // 3),
        }
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
    large = image_count is not None and image_count > CLUSTER_MAX_POINTS
    return ClusterConfig(
        method=params["cluster_method"],
        n_clusters=params["n_clusters"],
        seed=params["seed"],
        max_points=CLUSTER_MAX_POINTS if large else None,
    )
