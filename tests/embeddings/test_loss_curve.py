"""A run's recorded loss curve is two consistent series: the epochs' means and the batch losses.

Recorded as one list of points plotted by step, the epoch mean sat at the same
step as the epoch's last batch loss, so the line jumped at every epoch's end.
"""

import numpy as np

from embeddings.ml.config import TrainConfig
from embeddings.ml.training import train_autoencoder
from embeddings.services.runs import loss_point


def _images(n=48, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        x, y = rng.integers(2, size - 6, 2)
        images[i, 0, y : y + 4, x : x + 4] = 1.0
    return images


def test_the_recorded_curve_is_one_series_of_epoch_means_and_one_of_batch_losses():
    # 48 images in batches of 16: 3 steps an epoch; reports every 2 steps, so
    # epochs end between two reports (step 3) and on one (step 6).
    config = TrainConfig(
        epochs=4,
        batch_size=16,
        code_size=4,
        depth=2,
        base_channels=8,
        input_size=16,
        progress_every=2,
        patience=None,
        seed=3,
    )
    curve = []
    result = train_autoencoder(
        _images(), config, on_progress=lambda step, total, metrics: curve.append(loss_point(step, metrics))
    )

    epochs = [p for p in curve if p["kind"] == "epoch"]
    batches = [p for p in curve if p["kind"] == "batch"]
    assert len(epochs) + len(batches) == len(curve)
    # One point per epoch, at the step that ended it, holding that epoch's mean.
    assert [p["epoch"] for p in epochs] == [1, 2, 3, 4]
    assert [p["step"] for p in epochs] == [3, 6, 9, 12]
    assert np.allclose([p["loss"] for p in epochs], result.loss_curve)
    # Batch losses: distinct, increasing steps, each window inside one epoch,
    # covering every step (each epoch's last step is reported).
    steps = [p["step"] for p in batches]
    assert steps == sorted(set(steps))
    assert all(p["epoch"] == -(-p["step"] // 3) for p in batches)
    assert {3, 6, 9, 12} <= set(steps)
    # And they are batch losses, not epoch means: every window's mean is a mean of the steps it covers.
    previous = 0
    for point in batches:
        assert np.isclose(point["loss"], np.mean(result.step_losses[previous : point["step"]]))
        previous = point["step"]
