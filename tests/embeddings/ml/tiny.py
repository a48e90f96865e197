"""Configurations small enough for unit tests of the training code on tiny arrays."""

from embeddings.ml.config import TrainConfig


def tiny_train_config(**overrides) -> TrainConfig:
    """12-pixel gray images, 4-d codes, 4 epochs of batches of 16, no early stopping; `overrides` win."""
    base = dict(
        epochs=4,
        batch_size=16,
        code_size=4,
        depth=2,
        base_channels=4,
        input_size=12,
        channels=1,
        patience=None,
        learning_rate=1e-2,
        lr_schedule="constant",
    )
    base.update(overrides)
    return TrainConfig(**base)
