"""Originals beside the autoencoder's reconstructions, for the training page.

A service, not a selector: it loads the run's model and runs it, which a read
should not hide.  It runs in a web request, on at most a few dozen small images.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image as PILImage

from embeddings import storage
from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
from labeling.models import Image

from .pipeline import load_run_images


def _png_data_url(array: np.ndarray) -> str:
    arr = np.clip(np.asarray(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = PILImage.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def run_reconstruction_preview(*, run: TrainingRun, n: int = 16) -> list[dict]:
    """Originals beside the autoencoder's reconstructions, as small PNG data URLs.

    Picks images spread over the range of reconstruction error (best to worst),
    so the page shows both what the model learned well and what it did not.
    """
    # Deferred on purpose: web processes import the services, and torch costs about a second and
    # hundreds of MB; only this page's request needs it.
    import torch

    if run.status != RunStatus.SUCCEEDED or not storage.exists(run, storage.MODEL):
        return []
    n = max(1, min(int(n), 64))
    rows = list(
        ImageEmbedding.objects.filter(run=run)
        .order_by("reconstruction_error", "image_id")
        .values_list("image_id", "reconstruction_error")
    )
    if not rows:
        return []
    picks = sorted({int(round(v)) for v in np.linspace(0, len(rows) - 1, min(n, len(rows)))})
    chosen = [rows[i] for i in picks]
    files = dict(Image.objects.filter(pk__in=[c[0] for c in chosen]).values_list("id", "file"))
    load_rows = [(image_id, files[image_id]) for image_id, _ in chosen if image_id in files]
    images, ids, _ = load_run_images(load_rows, run.input_size, run.channels)
    if len(ids) == 0:
        return []
    model = storage.read_model(run, device=torch.device("cpu"))
    with torch.inference_mode():
        recon = model(torch.from_numpy(images)).numpy()
    errors = dict(chosen)
    return [
        {
            "image_id": int(image_id),
            "reconstruction_error": float(errors[int(image_id)]),
            "original": _png_data_url(images[i]),
            "reconstruction": _png_data_url(recon[i]),
        }
        for i, image_id in enumerate(ids)
    ]
