"""Images of a few visual kinds, stored like uploads (tests.factories.ImageFactory), for pipeline tests."""

import io

import numpy as np
from PIL import Image as PILImage

from tests.factories import ImageFactory

KINDS = ("horizontal", "vertical", "blob")


def kind_png(kind: str, seed: int, size: int = 16, color: bool = False) -> bytes:
    """A gray picture of one kind (stripes one way or the other, or a blob), with noise; with color,
    the same picture tinted a random color (3 channels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    phase = rng.integers(0, 4)
    if kind == "horizontal":
        arr = ((yy + phase) // 2 % 2) * 200.0
    elif kind == "vertical":
        arr = ((xx + phase) // 2 % 2) * 200.0
    else:
        cy, cx = size / 2 + rng.normal(0, 1), size / 2 + rng.normal(0, 1)
        arr = 230.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 5) ** 2))
    arr = np.clip(arr + rng.normal(0, 12, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    if color:
        tint = np.random.default_rng(seed).uniform(0.4, 1.0, 3)
        PILImage.fromarray((arr[..., None] * tint).astype(np.uint8), mode="RGB").save(buf, format="PNG")
        return buf.getvalue()
    PILImage.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def add_kind_images(dataset, per_kind: int = 20, start_seed: int = 0, user=None, color: bool = False) -> dict:
    """per_kind images of each kind (tinted, 3 channels, with color); returns {image id: kind}."""
    kinds = {}
    for k, kind in enumerate(KINDS):
        for i in range(per_kind):
            seed = start_seed + k * 10_000 + i
            image = ImageFactory(
                dataset=dataset,
                data=kind_png(kind, seed, color=color),
                original_name=f"{kind}-{seed}.png",
                uploaded_by=user,
            )
            kinds[image.pk] = kind
    return kinds


# Small and fast: a run of 60 images takes a couple of seconds on 2 cores.
FAST_PARAMS = {
    "epochs": 3,
    "code_size": 4,
    "depth": 2,
    "base_channels": 8,
    "batch_size": 16,
    "seed": 1,
    "cluster_method": "kmeans",
    "n_clusters": 3,
    "patience": None,
}
