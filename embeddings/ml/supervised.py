"""Learning from people's labels: a supervised-contrastive term (SupCon, Khosla et al. 2020).

Labeled images of the same class are each other's positives, so their codes
are pulled together and codes of other classes pushed apart; trained beside the
run's own objective (training.py), it makes the map separate the classes
people have labeled, and the unlabeled images of those classes follow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(codes: torch.Tensor, classes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss of codes (N, D) with class indices (N,).

    For each code, the mean over its positives (the other codes of its class)
    of the cross entropy of picking that positive out of all N - 1 others by
    cosine similarity.  Codes with no positive in the batch are left out; a
    batch with none at all gives 0 (with a gradient, so the caller need not
    branch).
    """
    if codes.ndim != 2 or classes.ndim != 1 or len(codes) != len(classes):
        raise ValueError(f"codes (N, D) and classes (N,) expected, got {tuple(codes.shape)} and {tuple(classes.shape)}")
    n = len(codes)
    z = F.normalize(codes, dim=1)
    similarity = (z @ z.T) / temperature
    self_pairs = torch.eye(n, dtype=torch.bool, device=codes.device)
    log_prob = F.log_softmax(similarity.masked_fill(self_pairs, float("-inf")), dim=1)
    positives = (classes[:, None] == classes[None, :]) & ~self_pairs
    counts = positives.sum(dim=1)
    anchors = counts > 0
    if not bool(anchors.any()):
        return codes.sum() * 0.0
    # masked_fill, not multiplication: log_prob is -inf on the diagonal, and 0 x -inf is NaN.
    summed = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
    return -(summed[anchors] / counts[anchors]).mean()
