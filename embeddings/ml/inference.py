"""Embedding images with a trained autoencoder, and saving/loading it safely."""

from __future__ import annotations

import numpy as np
import torch

from .autoencoder import ConvAutoencoder
from .config import default_cpu_threads, select_device

MODEL_FORMAT = "simlabel-conv-autoencoder"
MODEL_FORMAT_VERSION = 1
_HYPERPARAMETERS = (
    "in_channels",
    "input_size",
    "code_size",
    "depth",
    "base_channels",
    "batch_norm",
    "convs_per_stage",
    "normalize_codes",
    "patch_dims",
    "patch_size",
    "patch_dictionary_size",
    "patch_pool",
    "patch_weight",
)


def embed_images(
    model: ConvAutoencoder,
    images: np.ndarray,
    batch_size: int = 1024,
    device=None,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Codes float32 (N, model.embedding_size) and reconstruction error float32 (N,)
    (mean squared error per image: high means unusual for this dataset).
    num_threads: torch CPU threads (None: all cores but one)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads or default_cpu_threads())
    try:
        return _embed(model, images, batch_size, device)
    finally:
        torch.set_num_threads(previous_threads)


def _embed(model, images, batch_size, device):
    device = device or next(model.parameters()).device
    model = model.to(device).eval()
    n = len(images)
    codes = np.empty((n, model.embedding_size), dtype=np.float32)
    errors = np.empty(n, dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32))
            batch = batch.to(device)
            z = model.encode(batch)
            recon = model.decode(z)
            codes[start : start + len(batch)] = z.float().cpu().numpy()
            errors[start : start + len(batch)] = ((recon - batch) ** 2).flatten(1).mean(1).float().cpu().numpy()
    return codes, errors


def _plain(value):
    if isinstance(value, bool):
        return bool(value)
    return float(value) if isinstance(value, float) else int(value)


def save_model(model: ConvAutoencoder, path_or_fileobj) -> None:
    """Save weights and constructor hyperparameters (plain types only), so
    load_model can rebuild it with torch.load(weights_only=True)."""
    torch.save(
        {
            "format": MODEL_FORMAT,
            "version": MODEL_FORMAT_VERSION,
            "hyperparameters": {name: _plain(getattr(model, name)) for name in _HYPERPARAMETERS},
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        path_or_fileobj,
    )


def load_model(path_or_fileobj, device=None) -> ConvAutoencoder:
    device = device or select_device()
    checkpoint = torch.load(path_or_fileobj, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != MODEL_FORMAT:
        raise ValueError("not a simlabel autoencoder checkpoint")
    if checkpoint.get("version") != MODEL_FORMAT_VERSION:
        raise ValueError(f"unsupported checkpoint version {checkpoint.get('version')}")
    model = ConvAutoencoder(**checkpoint["hyperparameters"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
