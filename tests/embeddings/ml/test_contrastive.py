"""The contrastive objective: augmentations, NT-Xent, its training loop and the 'auto' rule."""

import numpy as np
import pytest
import torch

from embeddings.ml.augment import AugmentConfig, augment, random_crop, random_resized_crop
from embeddings.ml.config import choose_objective
from embeddings.ml.contrastive import nt_xent
from embeddings.ml.inference import embed_images
from embeddings.ml.training import train_autoencoder
from tests.embeddings.ml.tiny import tiny_train_config


def _photos(n=64, size=12, seed=0):
    """Two kinds of tiny color image: a red square top-left or a blue one bottom-right, on noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, (n, 3, size, size)).astype(np.float32)
    half = size // 2
    x[: n // 2, 0, :half, :half] += 0.7
    x[n // 2 :, 2, half:, half:] += 0.7
    return np.clip(x, 0, 1)


def _config(**kw):
    return tiny_train_config(**{"channels": 3, "objective": "contrastive", **kw})


@pytest.mark.parametrize("channels", [1, 3])
def test_augment_keeps_shape_and_range(channels):
    x = torch.rand(8, channels, 12, 12)
    out = augment(x, AugmentConfig.for_channels(channels), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x)


def test_augment_is_seeded():
    x = torch.rand(8, 3, 12, 12)
    config = AugmentConfig()
    a = augment(x, config, torch.Generator().manual_seed(5))
    b = augment(x, config, torch.Generator().manual_seed(5))
    c = augment(x, config, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_same_views_on_cuda():
    x = torch.rand(8, 3, 12, 12)
    config = AugmentConfig()
    cpu = augment(x, config, torch.Generator().manual_seed(1))
    cuda = augment(x.cuda(), config, torch.Generator().manual_seed(1)).cpu()
    assert torch.allclose(cpu, cuda, atol=1e-5)


def test_crop_shifts_without_losing_content():
    """With padding p every view is the image shifted by at most p pixels (reflected at the edges)."""
    x = torch.zeros(16, 1, 12, 12)
    x[:, :, 5:7, 5:7] = 1.0
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert torch.all(out.sum(dim=(1, 2, 3)) == 4)  # the square moved but is whole
    rows = out[:, 0].amax(dim=2).argmax(dim=1)
    assert int(rows.min()) >= 3 and int(rows.max()) <= 7
    assert len(torch.unique(rows)) > 1


def test_resized_crop_keeps_shape_range_and_seed():
    x = torch.rand(8, 3, 12, 12)
    a = random_resized_crop(x, (0.3, 1.0), torch.Generator().manual_seed(2))
    b = augment(x, AugmentConfig(crop_scale=(0.3, 1.0)), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, random_resized_crop(x, (0.3, 1.0), torch.Generator().manual_seed(2)))
    assert b.shape == x.shape and not torch.equal(b, x)


def test_gray_views_do_not_flip():
    """A mirrored digit is another symbol: gray images are never flipped."""
    assert AugmentConfig.for_channels(1).flip is False
    x = torch.zeros(32, 1, 12, 12)
    x[:, :, :, :3] = 1.0  # a bar on the left
    out = augment(x, AugmentConfig.for_channels(1), torch.Generator().manual_seed(0))
    left, right = out[:, :, :, :6].sum(dim=(1, 2, 3)), out[:, :, :, 6:].sum(dim=(1, 2, 3))
    assert torch.all(left > right)


def test_nt_xent_lower_for_matching_views():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(32, 8, generator=g)
    same = nt_xent(z, z + 0.01 * torch.randn(32, 8, generator=g))
    unrelated = nt_xent(z, torch.randn(32, 8, generator=g))
    assert float(same) < float(unrelated)
    # Unrelated views are a guess among 2N - 1 others: near log(2N - 1).
    assert abs(float(unrelated) - np.log(63)) < 1.5


def test_nt_xent_rejects_mismatched_views():
    with pytest.raises(ValueError):
        nt_xent(torch.zeros(4, 3), torch.zeros(5, 3))


def test_contrastive_training_loss_falls():
    result = train_autoencoder(_photos(), _config(epochs=6))
    assert result.objective == "contrastive" and result.objective_reason == "chosen"
    assert result.loss_curve[-1] < result.loss_curve[0]
    assert all(np.isfinite(result.loss_curve))


def test_contrastive_training_reports_progress_and_keeps_a_decoder():
    reports = []
    result = train_autoencoder(
        _photos(), _config(epochs=2, progress_every=2), on_progress=lambda s, t, m: reports.append((s, t, m))
    )
    assert reports and all(total == 8 for _, total, _ in reports)
    assert [m["epoch_loss"] for _, _, m in reports if "epoch_loss" in m] == result.loss_curve
    codes, errors = embed_images(result.model, _photos())
    # Color photos: the learned code (4) with patch features after it (auto).
    assert result.patch_features["used"] and codes.shape == (64, 4 + result.model.patch_dims)
    assert errors.shape == (64,) and np.all(np.isfinite(errors))


def test_contrastive_training_is_reproducible():
    a = train_autoencoder(_photos(), _config(epochs=2, seed=3))
    b = train_autoencoder(_photos(), _config(epochs=2, seed=3))
    c = train_autoencoder(_photos(), _config(epochs=2, seed=4))
    assert a.step_losses == b.step_losses
    assert a.step_losses != c.step_losses
    codes_a, _ = embed_images(a.model, _photos())
    codes_b, _ = embed_images(b.model, _photos())
    np.testing.assert_array_equal(codes_a, codes_b)


def test_contrastive_training_respects_time_budget():
    result = train_autoencoder(_photos(), _config(epochs=50, max_seconds=0.0))
    assert result.epochs_run == 1 and result.stopped_early


def test_auto_rule():
    assert choose_objective("auto", 3) == ("contrastive", "auto: 3-channel photos")
    assert choose_objective("auto", 1) == ("reconstruction", "auto: 1-channel images")
    assert choose_objective("reconstruction", 3) == ("reconstruction", "chosen")
    assert choose_objective("contrastive", 1) == ("contrastive", "chosen")
    with pytest.raises(ValueError):
        choose_objective("magic", 3)


def test_auto_trains_what_the_rule_picks():
    gray = train_autoencoder(_photos()[:, :1], _config(channels=1, objective="auto", epochs=1))
    color = train_autoencoder(_photos(), _config(objective="auto", epochs=1))
    assert (gray.objective, gray.objective_reason) == ("reconstruction", "auto: 1-channel images")
    assert (color.objective, color.objective_reason) == ("contrastive", "auto: 3-channel photos")
