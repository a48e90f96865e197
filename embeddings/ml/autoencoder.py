"""The convolutional autoencoder: images in, a low-dimensional code, images out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .patch_features import PatchFeatures


class ConvAutoencoder(nn.Module):
    """Stride-2 conv encoder to a small code, transposed-conv decoder back.

    Works for any square input size: each stride-2 conv halves the side
    (rounding up) and each transposed conv's output_padding restores the exact
    side, so 28 px goes 28-14-7-4 and back 4-7-14-28.
    """

    def __init__(
        self,
        in_channels: int = 1,
        input_size: int = 28,
        code_size: int = 10,
        depth: int = 3,
        base_channels: int = 32,
        batch_norm: bool = False,
        convs_per_stage: int = 1,
        normalize_codes: bool = False,
        patch_dims: int = 0,
        patch_size: int = 6,
        patch_dictionary_size: int = 128,
        patch_pool: int = 2,
        patch_weight: float = 1.0,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.input_size = input_size
        self.code_size = code_size
        self.depth = depth
        self.base_channels = base_channels
        self.batch_norm = batch_norm
        self.convs_per_stage = convs_per_stage
        self.normalize_codes = normalize_codes
        # Patch features (patch_features.py) after the learned code, when
        # patch_dims > 0: fitted after training (attach_patch_features) or
        # loaded with the state dict; the learned code is weighted by patch_weight.
        self.patch_size = patch_size
        self.patch_dictionary_size = patch_dictionary_size
        self.patch_pool = patch_pool
        self.patch_weight = _positive_weight(patch_weight)
        self.patches = None
        self.patch_dims = 0
        if patch_dims:
            self._set_patches(
                PatchFeatures(in_channels, input_size, patch_size, patch_dictionary_size, patch_pool, patch_dims)
            )

        sides = [input_size]
        for _ in range(depth):
            sides.append((sides[-1] + 1) // 2)
        widths = [in_channels] + [base_channels * 2**i for i in range(depth)]
        self._bottleneck_shape = (widths[-1], sides[-1], sides[-1])
        flat = widths[-1] * sides[-1] ** 2

        encoder = []
        for i in range(depth):
            # The stride-2 conv that halves the side, then convs_per_stage - 1
            # stride-1 convs at that side: a deeper encoder at the same code.
            for j in range(convs_per_stage):
                c_in, stride = (widths[i], 2) if j == 0 else (widths[i + 1], 1)
                encoder.append(nn.Conv2d(c_in, widths[i + 1], 3, stride=stride, padding=1, bias=not batch_norm))
                if batch_norm:
                    encoder.append(nn.BatchNorm2d(widths[i + 1]))
                encoder.append(nn.ReLU(inplace=True))
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(flat, code_size))

        self.decoder_input = nn.Sequential(nn.Linear(code_size, flat), nn.ReLU(inplace=True))
        decoder = []
        for i in range(depth, 0, -1):
            output_padding = 1 if sides[i - 1] % 2 == 0 else 0
            last = i == 1
            decoder.append(
                nn.ConvTranspose2d(
                    widths[i],
                    widths[i - 1],
                    3,
                    stride=2,
                    padding=1,
                    output_padding=output_padding,
                    bias=last or not batch_norm,
                )
            )
            if batch_norm and not last:
                decoder.append(nn.BatchNorm2d(widths[i - 1]))
            decoder.append(nn.Sigmoid() if last else nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(*decoder)

    def _set_patches(self, patches: PatchFeatures) -> None:
        self.patches = patches
        self.patch_dims = patches.dims
        self.patch_size, self.patch_dictionary_size, self.patch_pool = (
            patches.patch_size,
            patches.dictionary_size,
            patches.pool,
        )

    def attach_patch_features(self, patches: PatchFeatures, weight: float = 1.0) -> None:
        """Codes become [weight x learned code, patch features] (embedding_size numbers)."""
        self._set_patches(patches.to(next(self.parameters()).device))
        self.patch_weight = _positive_weight(weight)

    @property
    def embedding_size(self) -> int:
        """Numbers in each image's code as encode returns it."""
        return self.code_size + self.patch_dims

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        if self.normalize_codes:
            # Unit length: NT-Xent compares codes by angle only, so their length
            # is noise to Euclidean neighbors, the map and the clusters.
            z = F.normalize(z, dim=1)
        if self.patches is not None:
            z = torch.cat([z * self.patch_weight, self.patches(x)], 1)
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        # The decoder redraws from the learned code alone (the patch features follow it), with
        # encode's weight taken off again.
        learned = z[:, : self.code_size]
        if self.patches is not None:
            learned = learned / self.patch_weight
        h = self.decoder_input(learned).view(-1, *self._bottleneck_shape)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _positive_weight(weight: float) -> float:
    # Zero would leave the decoder nothing to redraw from (decode divides by it).
    if not weight > 0:
        raise ValueError(f"patch_weight must be positive, got {weight}")
    return float(weight)
