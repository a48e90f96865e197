"""Turning image files into fixed-size float arrays for the autoencoder.

Every image is letterboxed: scaled so its longer side equals ``input_size``
(aspect ratio kept, never stretched), then centered on a square canvas filled
with the mean color of the image's own border, so the padding looks like the
image's background rather than adding a black or white frame that the
autoencoder would spend its capacity on.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

# Modes whose pixels carry no color.  'P' (palette) images may or may not be
# gray: use effective_mode() to look at the pixels.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F", "La"}


def effective_mode(image: Image.Image, sample_size: int = 64) -> str:
    """The image's mode, but 'L' for color-mode images whose pixels are gray.

    Checks a thumbnail: an RGB (or palette) image whose channels are equal
    everywhere is a grayscale image saved as color.
    """
    if image.mode in GRAY_MODES:
        return image.mode
    thumb = image.copy()
    thumb.thumbnail((sample_size, sample_size))
    rgb = np.asarray(thumb.convert("RGB"), dtype=np.int16)
    if np.abs(rgb[..., 0] - rgb[..., 1]).max(initial=0) <= 2 and np.abs(rgb[..., 1] - rgb[..., 2]).max(initial=0) <= 2:
        return "L"
    return image.mode


def choose_input_spec(
    sizes: Sequence[tuple[int, int]],
    modes: Sequence[str],
    max_size: int = 64,
    min_size: int = 16,
    multiple: int = 4,
    counts: Sequence[int] | None = None,
) -> tuple[int, int]:
    """(input_size, channels) for a dataset from its images' sizes and modes.

    counts: how many images have each (size, mode), when they come grouped (the
    worker asks the database for the distinct ones, not for one row per image);
    the answer is the one the expanded lists give.

    channels is 1 when every image is gray (pass modes from effective_mode() so
    gray images stored as RGB count as gray), else 3.  input_size is the
    multiple of ``multiple`` nearest the median longer side, clamped to
    [min_size, max_size]; the autoencoder accepts any size, a multiple of 4 just
    keeps the first two stride-2 layers exact.
    """
    if not sizes:
        raise ValueError("no image sizes given")
    if counts is None:
        channels = 1 if all(m in GRAY_MODES for m in modes) else 3
        median_side = statistics.median(max(w, h) for w, h in sizes)
    else:
        channels = 1 if all(m in GRAY_MODES for m, c in zip(modes, counts, strict=True) if c > 0) else 3
        median_side = _weighted_median([max(w, h) for w, h in sizes], counts)
    size = int(round(median_side / multiple)) * multiple
    size = max(min_size, min(max_size, size))
    return size, channels


def _weighted_median(values: Sequence[int], counts: Sequence[int]) -> float:
    """statistics.median of each value repeated its count times, without repeating them."""
    order = np.argsort(values, kind="stable")
    ordered = np.asarray(values)[order]
    ends = np.cumsum(np.asarray(counts, dtype=np.int64)[order])
    total = int(ends[-1]) if len(ends) else 0
    if total <= 0:
        raise ValueError("no image sizes given")
    low = ordered[np.searchsorted(ends, (total - 1) // 2, side="right")]
    high = ordered[np.searchsorted(ends, total // 2, side="right")]
    return low if low == high else (low + high) / 2


def _open(fp_or_path) -> Image.Image:
    image = Image.open(fp_or_path)
    # Animated GIF/PNG/WebP: the first frame is the image.
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    return image


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent images onto white, the usual page background."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _letterbox(image: Image.Image, input_size: int) -> Image.Image:
    w, h = image.size
    scale = input_size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if new_w == input_size and new_h == input_size:
        return image
    arr = np.asarray(image)
    border = np.concatenate(
        [
            arr[0].reshape(-1, *arr.shape[2:]),
            arr[-1].reshape(-1, *arr.shape[2:]),
            arr[:, 0].reshape(-1, *arr.shape[2:]),
            arr[:, -1].reshape(-1, *arr.shape[2:]),
        ]
    )
    fill = border.mean(axis=0)
    fill = int(round(float(fill))) if np.ndim(fill) == 0 else tuple(int(round(v)) for v in fill)
    canvas = Image.new(image.mode, (input_size, input_size), fill)
    canvas.paste(image, ((input_size - new_w) // 2, (input_size - new_h) // 2))
    return canvas


def load_image_array(fp_or_path, input_size: int, channels: int) -> np.ndarray:
    """One image as float32 (channels, input_size, input_size) in [0, 1]."""
    if channels not in (1, 3):
        raise ValueError("channels must be 1 or 3")
    target_mode = "L" if channels == 1 else "RGB"
    with _open(fp_or_path) as image:
        if image.format == "JPEG":
            # Let libjpeg decode at a reduced scale: much faster for large photos.
            image.draft(target_mode, (input_size, input_size))
        image = ImageOps.exif_transpose(image)
        image = _flatten_alpha(image)
        if image.mode != target_mode:
            if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
                image = _wide_to_l(image)
            image = image.convert(target_mode)
        image = _letterbox(image, input_size)
        arr = np.asarray(image, dtype=np.float32) / 255.0
    if channels == 1:
        return arr[None, :, :]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _wide_to_l(image: Image.Image) -> Image.Image:
    """16-bit and float images: stretch their own range to 0..255."""
    arr = np.asarray(image, dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def load_images(
    sources: Iterable,
    input_size: int,
    channels: int,
    on_progress: Callable[[int, int, dict], None] | None = None,
    progress_every: int = 200,
) -> np.ndarray:
    """Many images as float32 (N, channels, input_size, input_size).

    on_progress(done, total, {}) is called every ``progress_every`` images.
    """
    sources = list(sources)
    total = len(sources)
    out = np.empty((total, channels, input_size, input_size), dtype=np.float32)
    for i, source in enumerate(sources):
        out[i] = load_image_array(source, input_size, channels)
        if on_progress is not None and ((i + 1) % progress_every == 0 or i + 1 == total):
            on_progress(i + 1, total, {})
    return out
