"""The contrastive objective: two random views of each image should have codes
that point the same way, and codes of different images should not (NT-Xent,
SimCLR, Chen et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Normalized-temperature cross entropy of two views' embeddings (N, D):
    for each of the 2N embeddings, the other view of the same image must be
    picked out among the 2N - 1 others by cosine similarity."""
    if z1.shape != z2.shape:
        raise ValueError(f"views differ in shape: {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = (z @ z.T) / temperature
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_pairs, float("-inf"))
    index = torch.arange(n, device=z.device)
    targets = torch.cat([index + n, index])
    return F.cross_entropy(similarity, targets)
