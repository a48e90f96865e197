"""Patch features (embeddings/ml/patch_features.py) on small arrays: what they group, and that
they travel with the model."""

import io

import numpy as np
import pytest
import torch

from embeddings.ml.config import choose_patch_features
from embeddings.ml.inference import embed_images, load_model, save_model
from embeddings.ml.patch_features import PatchFeatures
from embeddings.ml.training import train_autoencoder
from tests.embeddings.ml.tiny import tiny_train_config


def _stripes(n=80, size=16, seed=0):
    """Half the images faint horizontal stripes, half faint vertical ones (random period and phase),
    each over a strong random color ramp: pixel distance sees the ramps, not the stripes' orientation."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, 3, size, size), dtype=np.float32)
    y = np.repeat([0, 1], n // 2)
    grid = np.arange(size)
    for i in range(n):
        period = rng.uniform(3, 6)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * grid / period + rng.uniform(0, 2 * np.pi))
        plane = np.tile(wave[:, None], (1, size)) if y[i] == 0 else np.tile(wave[None, :], (size, 1))
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * grid[:, None] + np.sin(angle) * grid[None, :]) / size
        color = rng.uniform(-0.5, 0.5, 3)
        x[i] = 0.5 + color[:, None, None] * ramp + 0.12 * plane + rng.normal(0, 0.02, (3, size, size))
    return np.clip(x, 0, 1), y


def _neighbor_agreement(codes, y):
    d = ((codes[:, None] - codes[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((y[d.argmin(1)] == y).mean())


def test_patch_features_group_images_by_edge_orientation_where_pixels_do_not():
    x, y = _stripes()
    features = PatchFeatures(3, 16, patch_size=4, dictionary_size=32, pool=2, dims=16).fit(x, seed=0)
    with torch.inference_mode():
        codes = features(torch.from_numpy(x)).numpy()
    assert codes.shape == (80, 16)
    assert np.allclose(np.linalg.norm(codes, axis=1), 1.0, atol=1e-4)
    assert _neighbor_agreement(codes, y) >= 0.8  # 0.825 measured
    assert _neighbor_agreement(x.reshape(len(x), -1), y) < 0.7  # 0.55


def test_fitting_is_seeded_and_rejects_images_of_another_shape():
    x, _ = _stripes(n=40)
    a = PatchFeatures(3, 16, patch_size=4, dictionary_size=16, dims=8).fit(x, seed=3)
    b = PatchFeatures(3, 16, patch_size=4, dictionary_size=16, dims=8).fit(x, seed=3)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    with pytest.raises(ValueError, match="do not match"):
        PatchFeatures(3, 16, patch_size=4).fit(x[:, :1])
    with pytest.raises(ValueError, match="larger than the images"):
        PatchFeatures(3, 4, patch_size=6)


def test_a_saved_model_with_patch_features_embeds_the_same_codes_after_loading():
    x, _ = _stripes(n=48)
    result = train_autoencoder(x, tiny_train_config(channels=3, input_size=16, objective="contrastive", epochs=1))
    assert result.patch_features["used"] and result.model.patch_dims > 0
    codes, errors = embed_images(result.model, x)
    buffer = io.BytesIO()
    save_model(result.model, buffer)
    buffer.seek(0)
    loaded = load_model(buffer, device="cpu")
    again, errors_again = embed_images(loaded, x)
    assert codes.shape == (48, loaded.embedding_size) == (48, loaded.code_size + loaded.patch_dims)
    assert np.allclose(codes, again, atol=1e-5) and np.allclose(errors, errors_again, atol=1e-6)


def test_the_auto_rule_and_the_override():
    assert choose_patch_features("auto", "contrastive", 3) == (True, "auto: contrastive codes of 3-channel photos")
    assert choose_patch_features("auto", "reconstruction", 3)[0] is False
    assert choose_patch_features("auto", "contrastive", 1)[0] is False
    assert choose_patch_features("on", "reconstruction", 1) == (True, "chosen")
    assert choose_patch_features("off", "contrastive", 3) == (False, "chosen")
    with pytest.raises(ValueError, match="unknown patch_features"):
        choose_patch_features("sometimes", "contrastive", 3)
    gray = train_autoencoder(_stripes(n=24)[0][:, :1], tiny_train_config(channels=1, input_size=16, epochs=1))
    assert gray.patch_features == {"used": False, "reason": "auto: reconstruction codes of 1-channel images"}
    assert gray.model.embedding_size == gray.model.code_size


def test_an_image_and_its_mirror_image_get_the_same_code_one_at_a_time_or_in_chunks():
    x, _ = _stripes(n=150)  # more than one internal chunk of images
    features = PatchFeatures(3, 16, patch_size=5, dictionary_size=16, pool=2, dims=12).fit(x, seed=1)
    with torch.inference_mode():
        batch = features(torch.from_numpy(x)).numpy()
        mirrored = features(torch.from_numpy(x).flip(3)).numpy()
        single = np.concatenate([features(torch.from_numpy(x[i : i + 1])).numpy() for i in (0, 70, 149)])
        upside_down = features(torch.from_numpy(x).flip(2)).numpy()
    assert np.allclose(batch, mirrored, atol=1e-5)
    assert np.allclose(batch[[0, 70, 149]], single, atol=1e-5)
    # Mirroring left-right is all it ignores: turned upside down, horizontal stripes still match
    # but the codes of the ramps' images move.
    assert not np.allclose(batch, upside_down, atol=1e-3)


def test_large_images_are_averaged_down_to_32_pixels_first():
    from embeddings.ml.patch_features import _images_per_chunk

    assert _images_per_chunk(27 * 27) == 64  # 32-px photos: the most per chunk
    x, _ = _stripes(n=40, size=32)
    big = np.repeat(np.repeat(x, 4, axis=2), 4, axis=3)  # the same pictures at 128 px
    small = PatchFeatures(3, 32, patch_size=4, dictionary_size=16, dims=8).fit(x, seed=0)
    large = PatchFeatures(3, 128, patch_size=4, dictionary_size=16, dims=8).fit(big, seed=0)
    assert large.side == 32
    with torch.inference_mode():
        assert np.allclose(small(torch.from_numpy(x)).numpy(), large(torch.from_numpy(big)).numpy(), atol=1e-4)


def test_a_few_images_fit_few_directions_and_still_group_by_orientation():
    """With fewer images than dimensions a whitening PCA would blow up directions the images barely
    span; only about half as many directions as images are kept, and the codes still group."""
    x, y = _stripes(n=80)
    fitted_on = np.r_[0:12, 40:52]  # 24 images, 64 dimensions asked for
    features = PatchFeatures(3, 16, patch_size=4, dictionary_size=32, pool=2, dims=64).fit(x[fitted_on], seed=0)
    with torch.inference_mode():
        codes = features(torch.from_numpy(x)).numpy()
    assert codes.shape == (80, 64) and np.isfinite(codes).all()
    assert np.count_nonzero(np.abs(codes).max(0) > 0) <= 11
    assert np.abs(codes).mean(0).max() < 0.9  # no single direction is the whole code
    assert _neighbor_agreement(codes, y) >= 0.8


def test_the_decoder_reads_the_learned_code_as_it_was_before_weighting():
    x, _ = _stripes(n=32)
    result = train_autoencoder(
        x, tiny_train_config(channels=3, input_size=16, objective="contrastive", epochs=1, patch_features="off")
    )
    _, errors = embed_images(result.model, x)
    result.model.attach_patch_features(PatchFeatures(3, 16, patch_size=4, dictionary_size=8, dims=4).fit(x), 0.5)
    codes, weighted_errors = embed_images(result.model, x)
    assert codes.shape == (32, 4 + 4)
    assert np.allclose(np.linalg.norm(codes[:, :4], axis=1), 0.5, atol=1e-4)
    assert np.allclose(errors, weighted_errors, atol=1e-6)
    with pytest.raises(ValueError, match="patch_weight must be positive"):
        result.model.attach_patch_features(result.model.patches, 0.0)
