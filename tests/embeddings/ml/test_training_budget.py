"""The default training budget, the time-aware learning-rate schedule, and the encoder options for photos."""

import io
import time

import numpy as np
import pytest
import torch

from embeddings.ml import config as ml_config
from embeddings.ml.autoencoder import ConvAutoencoder
from embeddings.ml.config import TrainConfig, budget_seconds, budget_steps, training_budget
from embeddings.ml.inference import embed_images, load_model, save_model
from embeddings.ml.training import LearningRateSchedule, train_autoencoder
from tests.embeddings.ml.tiny import tiny_train_config


def _photos(n=48, size=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, (n, 3, size, size)).astype(np.float32)
    x[: n // 2, 0, : size // 2, : size // 2] += 0.7
    x[n // 2 :, 2, size // 2 :, size // 2 :] += 0.7
    return np.clip(x, 0, 1)


def test_budget_seconds_grow_with_the_images_within_bounds():
    assert budget_seconds(10) == ml_config.BUDGET_MIN_SECONDS
    assert budget_seconds(10_000_000) == ml_config.BUDGET_MAX_SECONDS
    small, medium, large = budget_seconds(4_000), budget_seconds(8_000), budget_seconds(12_000)
    assert ml_config.BUDGET_MIN_SECONDS <= small < medium < large <= ml_config.BUDGET_MAX_SECONDS


def test_default_budget_per_objective_and_explicit_settings_win():
    auto = TrainConfig(batch_size=100)
    assert auto.epochs is None
    recon = training_budget(auto, 10_000, "reconstruction")
    assert (recon.epochs, recon.seconds) == (ml_config.RECONSTRUCTION_EPOCHS, None)
    contrastive = training_budget(auto, 10_000, "contrastive")
    assert contrastive.seconds == budget_seconds(10_000) and contrastive.reason.startswith("auto")
    # Epochs of the budget's steps (100 steps an epoch here), more epochs for fewer images, more steps for more.
    assert abs(contrastive.epochs * 100 - budget_steps(10_000)) <= 50
    assert training_budget(auto, 1_000, "contrastive").epochs > contrastive.epochs
    assert budget_steps(100) == ml_config.CONTRASTIVE_MIN_STEPS
    assert budget_steps(10**7) == ml_config.CONTRASTIVE_MAX_STEPS
    assert budget_steps(4_000) < budget_steps(8_000) < budget_steps(12_000)
    capped = training_budget(TrainConfig(max_seconds=5.0), 10_000, "contrastive")
    assert capped.seconds == 5.0
    steps_only = training_budget(TrainConfig(batch_size=100, budget_clock=False), 10_000, "contrastive")
    assert (steps_only.epochs, steps_only.seconds) == (contrastive.epochs, None)
    chosen = training_budget(TrainConfig(epochs=3, max_seconds=7.0), 10_000, "contrastive")
    assert (chosen.epochs, chosen.seconds, chosen.reason) == (3, 7.0, "chosen")


def test_the_result_says_the_budget_it_used():
    result = train_autoencoder(_photos(), tiny_train_config(channels=3, objective="contrastive", epochs=2))
    assert result.budget.epochs == 2 and result.budget.reason == "chosen"
    assert result.budget.to_dict() == {"epochs": 2, "seconds": None, "reason": "chosen"}


def test_auto_contrastive_training_stops_at_its_time_budget(monkeypatch):
    # A budget of half a second on 48 images: its steps (CONTRASTIVE_MIN_STEPS) would take far longer.
    monkeypatch.setattr(ml_config, "BUDGET_MIN_SECONDS", 0.5)
    config = tiny_train_config(channels=3, objective="contrastive", epochs=None, patience=1)
    started = time.perf_counter()
    result = train_autoencoder(_photos(), config)
    assert time.perf_counter() - started < 10
    assert result.budget.seconds == 0.5 and result.stopped_early and not result.cancelled
    assert 1 <= result.epochs_run < result.budget.epochs
    # patience=1 would have stopped it after a flat epoch: the budgeted run ignores patience.
    assert len(result.step_losses) > 3


def test_cosine_schedule_decays_over_steps_and_over_the_clock():
    config = TrainConfig(learning_rate=1.0, lr_schedule="cosine")
    by_steps = LearningRateSchedule(config, total_steps=100, max_seconds=None, started=time.perf_counter())
    assert by_steps.rate(0) == pytest.approx(1.0)
    assert by_steps.rate(50) == pytest.approx(0.5)
    assert by_steps.rate(100) == pytest.approx(0.0)
    # Half the seconds spent at step 0 of 100: the clock, not the steps, sets the rate.
    by_clock = LearningRateSchedule(config, total_steps=100, max_seconds=10.0, started=time.perf_counter() - 5.0)
    assert by_clock.rate(0) == pytest.approx(0.5, abs=0.01)
    assert not by_clock.out_of_time()
    spent = LearningRateSchedule(config, total_steps=100, max_seconds=1.0, started=time.perf_counter() - 2.0)
    assert spent.out_of_time() and spent.rate(1) == pytest.approx(0.0)
    constant = LearningRateSchedule(
        TrainConfig(learning_rate=0.3, lr_schedule="constant"), 100, None, time.perf_counter()
    )
    assert constant.rate(99) == 0.3


def test_deeper_encoder_and_unit_codes_keep_shapes_and_round_trip():
    model = ConvAutoencoder(in_channels=3, input_size=12, code_size=6, depth=2, base_channels=4, convs_per_stage=2)
    plain = ConvAutoencoder(in_channels=3, input_size=12, code_size=6, depth=2, base_channels=4)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and len([m for m in plain.encoder if isinstance(m, torch.nn.Conv2d)]) == 2
    model.normalize_codes = True
    x = torch.rand(5, 3, 12, 12)
    z = model.eval().encode(x)
    assert z.shape == (5, 6) and torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)
    assert model(x).shape == x.shape
    buffer = io.BytesIO()
    save_model(model, buffer)
    buffer.seek(0)
    loaded = load_model(buffer, device=torch.device("cpu"))
    assert loaded.convs_per_stage == 2 and loaded.normalize_codes
    assert torch.allclose(loaded.encode(x), z, atol=1e-6)


def test_contrastive_codes_are_unit_length_unless_switched_off():
    x = _photos()
    config = tiny_train_config(channels=3, objective="contrastive", epochs=1, patch_features="off")
    codes, _ = embed_images(train_autoencoder(x, config).model, x)
    assert np.allclose(np.linalg.norm(codes, axis=1), 1.0, atol=1e-4)
    # With patch features (auto on color): the learned part is patch_weight long, the patch part unit length.
    model = train_autoencoder(x, tiny_train_config(channels=3, objective="contrastive", epochs=1)).model
    codes, _ = embed_images(model, x)
    learned, patches = codes[:, : model.code_size], codes[:, model.code_size :]
    assert np.allclose(np.linalg.norm(learned, axis=1), model.patch_weight, atol=1e-4)
    assert np.allclose(np.linalg.norm(patches, axis=1), 1.0, atol=1e-4)
    config = tiny_train_config(
        channels=3, objective="contrastive", epochs=1, normalize_codes=False, patch_features="off"
    )
    codes, _ = embed_images(train_autoencoder(x, config).model, x)
    assert not np.allclose(np.linalg.norm(codes, axis=1), 1.0, atol=1e-2)
    recon = tiny_train_config(channels=3, epochs=1, objective="reconstruction")
    codes, _ = embed_images(train_autoencoder(x, recon).model, x)
    assert not np.allclose(np.linalg.norm(codes, axis=1), 1.0, atol=1e-2)


def test_detached_reconstruction_leaves_the_encoder_to_nt_xent():
    """With the reconstruction detached, the decoder still learns (reconstruction error falls) while the
    encoder's gradient comes from NT-Xent alone: a zero contrastive weight leaves the encoder untrained."""
    x = _photos()
    base = dict(channels=3, objective="contrastive", contrastive_reconstruction="detached")
    untrained = train_autoencoder(x, tiny_train_config(**base, epochs=1, learning_rate=0.0)).model
    frozen = train_autoencoder(x, tiny_train_config(**base, epochs=3, contrastive_weight=0.0)).model
    for before, after in zip(untrained.encoder.parameters(), frozen.encoder.parameters()):
        assert torch.equal(before, after)
    _, errors_before = embed_images(untrained, x)
    _, errors_after = embed_images(frozen, x)
    assert errors_after.mean() < errors_before.mean()
    with pytest.raises(ValueError, match="contrastive_reconstruction"):
        train_autoencoder(x, tiny_train_config(channels=3, objective="contrastive", contrastive_reconstruction="x"))


def test_the_pipeline_result_carries_the_budget_for_the_run_metrics():
    from embeddings.ml.config import ClusterConfig, LayoutConfig
    from embeddings.ml.pipeline import run_pipeline

    train = tiny_train_config(channels=3, objective="reconstruction", epochs=None, patience=None)
    result = run_pipeline(
        _photos(),
        train,
        LayoutConfig(early_exaggeration_iter=25, n_iter=50, n_jobs=1),
        ClusterConfig(method="kmeans", n_clusters=2),
    )
    assert result.training_budget == {
        "epochs": ml_config.RECONSTRUCTION_EPOCHS,
        "seconds": None,
        "reason": f"auto: {ml_config.RECONSTRUCTION_EPOCHS} epochs",
    }
    assert result.epochs_run == ml_config.RECONSTRUCTION_EPOCHS
