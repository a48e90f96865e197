"""Codes from whitened image patches: features fitted in seconds, without gradient descent.

Each image's overlapping patches (patch_size x patch_size, every pixel) are
normalized for brightness and contrast, whitened (ZCA, fitted on a sample of the
dataset's patches) and compared with a dictionary of whitened patches drawn from
the same sample; the positive and negative parts of each match above a threshold
are averaged over a pool x pool grid of the image, square-rooted and reduced by a
whitening PCA to `dims` numbers; the image's and its mirror image's are summed and
scaled to unit length (Coates & Ng 2011; Thiry et al. 2021, "The unreasonable
effectiveness of patches").

Why beside the contrastive encoder (issue 14): on the 5,000 tuning photos these
codes alone find a same-class neighbor more often than the contrastive codes
trained for the default budget (10-NN agreement 0.391 vs 0.331), fitted and
computed in ~15 s, and the two disagree usefully: side by side 0.403-0.410 (the
learned code weighted 0.5-1.0, config.TrainConfig.patch_weight).  Settings
chosen there (one seed; README, Measurements): a dictionary of 128 (256: the
same, 2.7x slower), 64 dimensions (256: 0.388 vs 0.392 beside the code).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Per-patch contrast normalization's floor (pixels in [0, 1]): flat patches are
# not blown up into noise.
_CONTRAST_FLOOR = 0.01
# ZCA whitening's regularizer, added to the patch covariance's eigenvalues.
_WHITEN_EPSILON = 0.1
# Patches sampled to fit the whitening and draw the dictionary from.
_FIT_PATCHES = 100_000
_FIT_IMAGES = 1_000
# Images whose pooled features fit the final PCA.
_PCA_IMAGES = 2_500
# Larger images are averaged down to this side first: the features were measured on
# 32-px photos, and their cost per image (~1.7 ms a core) stays that of a 32-px one.
_MAX_SIDE = 32
# Images converted (and averaged down) at a time while fitting.
_FIT_CHUNK = 256
# Patch positions per chunk inside forward and fit: a chunk's patches and matches are
# positions x (C x p x p + 2K) floats (64 photos of 32 px, 46,656 positions: ~68 MB),
# so larger images go fewer at a time.
_CHUNK_POSITIONS = 50_000
_CHUNK_MAX_IMAGES = 64


def _images_per_chunk(positions: int) -> int:
    return max(1, min(_CHUNK_MAX_IMAGES, _CHUNK_POSITIONS // positions))


class PatchFeatures(nn.Module):
    """forward(images (N, C, H, W) in [0, 1]) -> unit-length codes (N, dims).

    Built empty (zeros) with its shapes, then fit() on a dataset's images, or
    filled by load_state_dict: every fitted value is a buffer, so it travels
    with the model's state dict."""

    def __init__(
        self,
        channels: int = 3,
        input_size: int = 32,
        patch_size: int = 6,
        dictionary_size: int = 128,
        pool: int = 2,
        dims: int = 64,
    ):
        super().__init__()
        self.channels, self.input_size = channels, input_size
        self.side = min(input_size, _MAX_SIDE)
        if patch_size > self.side:
            raise ValueError(f"patch_size {patch_size} is larger than the images ({self.side} px)")
        self.patch_size, self.dictionary_size, self.pool = patch_size, dictionary_size, pool
        patch_dim = channels * patch_size * patch_size
        pooled = 2 * dictionary_size * pool * pool
        self.dims = min(dims, pooled)
        # Whitening and the dictionary folded into one matrix: match = normalized patch @
        # projection - offset (whitened patch . dictionary atom).
        self.register_buffer("projection", torch.zeros(patch_dim, dictionary_size))
        self.register_buffer("offset", torch.zeros(dictionary_size))
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("feature_mean", torch.zeros(pooled))
        self.register_buffer("components", torch.zeros(pooled, self.dims))

    def fit(self, images: np.ndarray, seed: int = 0) -> PatchFeatures:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != self.channels or images.shape[2] != self.input_size:
            raise ValueError(
                f"images {images.shape} do not match (N, {self.channels}, {self.input_size}, {self.input_size})"
            )
        rng = np.random.default_rng(seed)
        sample = self._resized_rows(images, rng.choice(len(images), min(_FIT_IMAGES, len(images)), replace=False))
        patches = self._sample_patches(sample, rng)
        mean = patches.mean(0)
        centered = patches - mean
        eigenvalues, eigenvectors = torch.linalg.eigh(centered.T @ centered / max(1, len(patches) - 1))
        whitening = (
            eigenvectors @ torch.diag(1.0 / torch.sqrt(eigenvalues.clamp(min=0) + _WHITEN_EPSILON)) @ eigenvectors.T
        )
        whitened = centered @ whitening
        k = min(self.dictionary_size, len(whitened))
        atoms = whitened[torch.from_numpy(rng.choice(len(whitened), k, replace=False))]
        atoms = F.normalize(atoms, dim=1)
        if k < self.dictionary_size:  # fewer patches than atoms: the rest match nothing
            atoms = torch.cat([atoms, torch.zeros(self.dictionary_size - k, atoms.shape[1])])
        self.projection.copy_(whitening @ atoms.T)
        self.offset.copy_(mean @ whitening @ atoms.T)
        self.threshold.fill_(0.5 * float((whitened @ atoms.T).abs().mean()))

        pca_rows = np.sort(rng.choice(len(images), min(_PCA_IMAGES, len(images)), replace=False))
        pooled = self._pooled(self._resized_rows(images, pca_rows)).double()
        feature_mean = pooled.mean(0)
        _, singular, vt = torch.linalg.svd(pooled - feature_mean, full_matrices=False)
        # Whitening PCA: each kept direction scaled to unit variance, so a few strong directions
        # (overall color, texture energy) do not decide the distance.  Few images fix few
        # directions: at most half as many as images, and none the images barely vary along
        # (scaled to unit variance, such a direction would be all the code holds).
        dims = min(self.dims, len(singular), max(1, (len(pooled) - 1) // 2))
        kept = singular[:dims] > 1e-3 * singular[0]
        scale = np.sqrt(max(1, len(pooled) - 1)) / singular[:dims].clamp(min=1e-12) * kept
        components = torch.zeros(pooled.shape[1], self.dims, dtype=torch.float64)
        components[:, :dims] = vt[:dims].T * scale
        self.feature_mean.copy_(feature_mean.float())
        self.components.copy_(components.float())
        return self

    def _resized(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.shape[2] <= self.side else F.adaptive_avg_pool2d(x, self.side)

    def _resized_rows(self, images: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        """images[rows] as a tensor at the features' side, converted _FIT_CHUNK at a time (256-px
        images are 0.8 MB each)."""
        return torch.cat(
            [self._resized(torch.from_numpy(images[rows[i : i + _FIT_CHUNK]])) for i in range(0, len(rows), _FIT_CHUNK)]
        )

    def _sample_patches(self, sample: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """About _FIT_PATCHES normalized patches at random positions of the sample's images
        (all of them when there are fewer), unfolded a chunk of images at a time."""
        side = sample.shape[2] - self.patch_size + 1
        positions = side * side
        per_image = min(positions, -(-_FIT_PATCHES // len(sample)))
        step = _images_per_chunk(positions)
        picked = []
        for start in range(0, len(sample), step):
            chunk = F.unfold(sample[start : start + step], self.patch_size)  # B, C*p*p, positions
            where = torch.from_numpy(
                np.stack([rng.choice(positions, per_image, replace=False) for _ in range(len(chunk))])
            )
            chosen = chunk.gather(2, where[:, None, :].expand(-1, chunk.shape[1], -1))
            picked.append(chosen.transpose(1, 2).reshape(-1, chunk.shape[1]))
        return _normalize(torch.cat(picked))

    def _pooled(self, x: torch.Tensor, mirrored: bool = False) -> torch.Tensor:
        """Pooled features (N, 2K x pool²) of the images, and with mirrored=True also of their
        mirror images (a second (N, 2K x pool²)), from one pass over the patches: a mirror
        image's patch at (row, col) is the mirror of the patch at (row, side - 1 - col), so its
        matches are the original patches' matches with the mirrored atoms, pooled over mirrored regions."""
        x = self._resized(x)
        side = x.shape[2] - self.patch_size + 1
        positions = side * side
        regions = _pooling_regions(side, self.pool, x.device)
        projection = self.projection
        if mirrored:
            p = self.patch_size
            flip_in_patch = torch.arange(self.projection.shape[0], device=x.device).view(-1, p, p).flip(2).flatten()
            projection = torch.cat([projection, projection[flip_in_patch]], 1)
            flip_positions = torch.arange(positions, device=x.device).view(side, side).flip(1).flatten()
            mirrored_regions = regions[:, flip_positions]
        offset = -self.offset.repeat(2 if mirrored else 1)
        k = self.dictionary_size
        plain, flipped = [], []
        step = _images_per_chunk(positions)
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            # Normalized before the matmul, not folded into it: the patches (C x p x p values
            # each) are fewer numbers than their matches (K or 2K each).
            match = torch.addmm(offset, _normalized_patches(chunk, self.patch_size), projection)
            match = match.view(len(chunk), positions, -1)
            plain.append(self._pool(regions, match[:, :, :k]))
            if mirrored:
                flipped.append(self._pool(mirrored_regions, match[:, :, k:]))
        empty = x.new_zeros((0, self.feature_mean.shape[0]))
        plain = torch.cat(plain) if plain else empty
        if not mirrored:
            return plain
        return plain, (torch.cat(flipped) if flipped else empty)

    def _pool(self, regions: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
        positive = regions @ F.relu(match - self.threshold)
        negative = regions @ F.relu(-match - self.threshold)
        return torch.sqrt(torch.cat([positive, negative], 2).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The image and its mirror image, their codes summed: a photo and its mirror show the same
        # thing.  On the tuning photos 10-NN agreement 0.367 -> 0.391 alone, 0.395 -> 0.410 beside
        # the contrastive code (averaging the pooled features before the PCA instead: 0.404).
        plain, flipped = self._pooled(x, mirrored=True)
        return F.normalize((plain + flipped - 2 * self.feature_mean) @ self.components, dim=1)


def _pooling_regions(side: int, pool: int, device) -> torch.Tensor:
    """Average pooling over a pool x pool grid (adaptive_avg_pool2d's regions) as one
    (pool², side²) matrix, so pooling is (pool², positions) @ (positions, 2K) per image with no
    copy of the matches permuted."""
    along = torch.zeros(pool, side)
    for i in range(pool):
        start, end = (i * side) // pool, -(-((i + 1) * side) // pool)
        along[i, start:end] = 1.0 / (end - start)
    return torch.kron(along, along).to(device)


def _normalized_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Every patch of every image (N x positions, C x p x p), each with its mean
    removed and divided by its standard deviation (floored)."""
    patches = F.unfold(x, patch_size)  # N, C*p*p, positions
    return _normalize(patches.transpose(1, 2).reshape(-1, patches.shape[1]))


def _normalize(patches: torch.Tensor) -> torch.Tensor:
    """Each row (a patch) less its mean, over its standard deviation (floored), in place: the
    callers' patches are copies made for it (reshape of a transposed unfold, gather)."""
    variance, mean = torch.var_mean(patches, dim=1, keepdim=True)
    return patches.sub_(mean).mul_(torch.rsqrt(variance.add_(_CONTRAST_FLOOR)))
