import io
import pickle

import numpy as np
import pytest
import torch

from embeddings.ml.autoencoder import ConvAutoencoder
from embeddings.ml.config import select_device
from embeddings.ml.inference import embed_images, load_model, save_model
from embeddings.ml.training import train_autoencoder
from tests.embeddings.ml.tiny import tiny_train_config


def _blobs(n=96, size=12, seed=0):
    """Two kinds of tiny image: a bright square top-left or bottom-right."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.1, (n, 1, size, size)).astype(np.float32)
    half = size // 2
    x[: n // 2, :, :half, :half] += 0.8
    x[n // 2 :, :, half:, half:] += 0.8
    return np.clip(x, 0, 1)


def _config(**kw):
    return tiny_train_config(**{"batch_norm": False, **kw})


@pytest.mark.parametrize("size", [12, 16, 28, 33])
@pytest.mark.parametrize("channels", [1, 3])
def test_autoencoder_shapes(size, channels):
    model = ConvAutoencoder(channels, size, code_size=5, depth=3, base_channels=4)
    x = torch.rand(2, channels, size, size)
    z = model.encode(x)
    assert z.shape == (2, 5)
    assert model.decode(z).shape == x.shape
    assert model(x).shape == x.shape


def test_select_device_is_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device().type == expected


def test_loss_falls():
    result = train_autoencoder(_blobs(), _config(epochs=6))
    assert result.epochs_run == 6 and not result.cancelled
    assert result.loss_curve[-1] < 0.7 * result.loss_curve[0]


def test_same_seed_same_codes_and_different_seed_differs():
    x = _blobs()
    a = embed_images(train_autoencoder(x, _config(seed=1)).model, x)[0]
    b = embed_images(train_autoencoder(x, _config(seed=1)).model, x)[0]
    c = embed_images(train_autoencoder(x, _config(seed=2)).model, x)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_early_stopping_on_plateau():
    # demanding a 90 % improvement per epoch: every epoch after the first is
    # "no improvement", so patience=2 stops after epoch 3
    result = train_autoencoder(_blobs(), _config(epochs=20, patience=2, min_delta=0.9))
    assert result.stopped_early
    assert result.epochs_run == 3


def test_should_stop_cancels():
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 3

    result = train_autoencoder(_blobs(), _config(epochs=5), should_stop=should_stop)
    assert result.cancelled
    assert len(result.step_losses) == 3
    assert result.epochs_run == 0


def test_progress_reports_loss_and_steps():
    calls = []
    train_autoencoder(
        _blobs(n=64),
        _config(epochs=2, progress_every=2),
        on_progress=lambda step, total, m: calls.append((step, total, m)),
    )
    assert calls, "on_progress never called"
    # Every report is either a batch-loss window or an epoch's mean, never both.
    assert all(("loss" in m) != ("epoch_loss" in m) for _, _, m in calls)
    assert all(np.isfinite(m.get("loss", m.get("epoch_loss"))) for _, _, m in calls)
    steps = [s for s, _, _ in calls]
    assert steps == sorted(steps) and steps[-1] == calls[-1][1] == 8
    assert sum("epoch_loss" in m for _, _, m in calls) == 2


def test_max_train_images_and_shape_checks():
    result = train_autoencoder(_blobs(n=80), _config(epochs=1, max_train_images=32))
    assert len(result.step_losses) == 2  # 32 images / batch 16
    with pytest.raises(ValueError):
        train_autoencoder(_blobs(size=16), _config())


def test_denoising_options_train():
    result = train_autoencoder(_blobs(), _config(epochs=2, noise_std=0.2, max_shift=1))
    assert all(np.isfinite(result.loss_curve))


def test_embed_shapes_and_recon_error():
    x = _blobs(n=64)
    model = train_autoencoder(x, _config(epochs=8)).model
    codes, err = embed_images(model, x, batch_size=16)
    assert codes.shape == (64, 4) and codes.dtype == np.float32
    assert err.shape == (64,) and err.dtype == np.float32 and (err >= 0).all()
    noise = np.random.default_rng(5).uniform(0, 1, (5, 1, 12, 12)).astype(np.float32)
    assert embed_images(model, noise)[1].mean() > err.mean()  # unusual images reconstruct worse


def test_save_load_round_trip(tmp_path):
    x = _blobs(n=20)
    model = train_autoencoder(x, _config(epochs=1, batch_norm=True)).model
    buf = io.BytesIO()
    save_model(model, buf)
    buf.seek(0)
    loaded = load_model(buf, device=torch.device("cpu"))
    assert loaded.batch_norm and loaded.code_size == 4
    np.testing.assert_allclose(embed_images(loaded, x)[0], embed_images(model, x)[0], rtol=1e-6, atol=1e-6)
    path = tmp_path / "model.pt"
    save_model(model, path)
    # plain types only: loadable with weights_only=True
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyperparameters"]["input_size"] == 12


class _NotAllowed:
    pass


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "simlabel-conv-autoencoder", "version": 1, "obj": _NotAllowed()}, path)
    with pytest.raises(pickle.UnpicklingError):  # weights_only refuses to build arbitrary objects
        load_model(path)
    torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(ValueError):
        load_model(path)


def test_default_recipe_batch_norm_and_cosine_trains():
    result = train_autoencoder(_blobs(), _config(epochs=6, batch_norm=True, lr_schedule="cosine"))
    assert result.loss_curve[-1] < 0.7 * result.loss_curve[0]
    with pytest.raises(ValueError):
        train_autoencoder(_blobs(), _config(lr_schedule="sometimes"))


def test_batch_norm_survives_a_last_batch_of_one_tiny_image():
    x = np.random.default_rng(0).uniform(0, 1, (17, 1, 8, 8)).astype(np.float32)
    result = train_autoencoder(x, _config(epochs=1, input_size=8, depth=3, batch_norm=True))
    assert result.epochs_run == 1 and len(result.step_losses) == 1
