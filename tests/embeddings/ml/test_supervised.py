"""Learning from labels: the SupCon term, training with labels, and the rule that decides when a run uses them."""

import numpy as np
import pytest
import torch

from embeddings.ml import config as ml_config
from embeddings.ml.config import LABELS_MIN_PER_CLASS, LABELS_MIN_TOTAL, choose_labels
from embeddings.ml.inference import embed_images
from embeddings.ml.supervised import supcon_loss
from embeddings.ml.training import train_autoencoder
from tests.embeddings.ml.tiny import tiny_train_config


def test_supcon_is_low_when_classes_are_apart_and_high_when_mixed():
    classes = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01], [0.01, 1.0]])
    assert float(supcon_loss(apart, classes)) < 0.1 < float(supcon_loss(mixed, classes))


def test_supcon_leaves_out_codes_without_a_positive_and_is_zero_without_any():
    codes = torch.randn(5, 3, requires_grad=True)
    with_single = supcon_loss(codes, torch.tensor([0, 0, 1, 1, 2]))
    without = supcon_loss(codes[:4], torch.tensor([0, 0, 1, 1]))
    assert torch.isclose(with_single, supcon_loss(codes, torch.tensor([0, 0, 1, 1, 2])))
    assert torch.isfinite(with_single) and torch.isfinite(without)
    none = supcon_loss(codes, torch.tensor([0, 1, 2, 3, 4]))
    assert float(none.detach()) == 0.0
    none.backward()  # still part of the graph: callers need not branch
    with pytest.raises(ValueError):
        supcon_loss(codes, torch.tensor([0, 1]))


def test_supcon_falls_when_codes_are_trained_on_it():
    torch.manual_seed(0)
    codes = torch.randn(12, 4, requires_grad=True)
    classes = torch.arange(12) % 3
    optimizer = torch.optim.SGD([codes], lr=0.5)
    first = float(supcon_loss(codes, classes).detach())
    for _ in range(50):
        optimizer.zero_grad()
        supcon_loss(codes, classes).backward()
        optimizer.step()
    assert float(supcon_loss(codes, classes).detach()) < first / 2


def _two_kinds(n=64, size=12, seed=0):
    """Gray noise with a bar, horizontal (class 0) or vertical (class 1) anywhere: the noise is most of the pixels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.4, (n, 1, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    where = rng.integers(2, size - 2, n)
    for i in range(n):
        if y[i]:
            x[i, 0, :, where[i]] += 0.6
        else:
            x[i, 0, where[i], :] += 0.6
    return np.clip(x, 0, 1), y


def _same_class_closer(codes, y, rows):
    """Mean distance between same-class codes minus that between different-class codes, over rows."""
    c = codes[rows] / np.linalg.norm(codes[rows], axis=1, keepdims=True)
    d = np.linalg.norm(c[:, None] - c[None], axis=2)
    same = y[rows][:, None] == y[rows][None]
    np.fill_diagonal(same, False)
    other = y[rows][:, None] != y[rows][None]
    return d[same].mean() - d[other].mean()


def test_training_with_labels_draws_labeled_same_class_codes_together():
    x, y = _two_kinds()
    labels = np.where(np.arange(len(y)) < 32, y, -1)  # half the images labeled
    # A warmer temperature than the default: the 8-channel toy encoder collapses at 0.1 within its 60 steps.
    config = tiny_train_config(
        epochs=15, labels_batch_size=16, learning_rate=3e-3, base_channels=8, code_size=8, labels_temperature=0.5
    )
    plain = train_autoencoder(x, config)
    taught = train_autoencoder(x, config, labels=labels)
    assert plain.labels_used == 0 and taught.labels_used == 32
    labeled = np.arange(32)
    gap_plain = _same_class_closer(embed_images(plain.model, x)[0], y, labeled)
    gap_taught = _same_class_closer(embed_images(taught.model, x)[0], y, labeled)
    assert gap_taught < gap_plain - 0.5
    # the unlabeled images follow (the point of learning from labels)
    unlabeled = np.arange(32, 64)
    plain_unlabeled = _same_class_closer(embed_images(plain.model, x)[0], y, unlabeled)
    assert _same_class_closer(embed_images(taught.model, x)[0], y, unlabeled) < plain_unlabeled - 0.5


def test_training_with_labels_loss_falls_and_is_reproducible():
    x, y = _two_kinds()
    labels = np.where(np.arange(len(y)) % 4 == 0, y, -1)
    config = tiny_train_config(epochs=6, labels_batch_size=8)
    first = train_autoencoder(x, config, labels=labels)
    again = train_autoencoder(x, config, labels=labels)
    assert first.loss_curve[-1] < first.loss_curve[0]
    assert first.loss_curve == again.loss_curve


def test_labeled_images_stay_in_training_when_the_rest_is_sampled():
    x, y = _two_kinds()
    labels = np.where(np.arange(len(y)) < 10, y, -1)
    trained = train_autoencoder(x, tiny_train_config(epochs=1, max_train_images=16), labels=labels)
    assert trained.labels_used == 10


def test_one_labeled_class_is_not_learned_from():
    x, y = _two_kinds()
    labels = np.where(y == 0, 0, -1)
    assert train_autoencoder(x, tiny_train_config(epochs=1), labels=labels).labels_used == 0
    with pytest.raises(ValueError):
        train_autoencoder(x, tiny_train_config(epochs=1), labels=labels[:5])


def test_choose_labels_applies_the_measured_threshold():
    per_class = LABELS_MIN_PER_CLASS
    classes_needed = -(-LABELS_MIN_TOTAL // per_class)
    enough = np.repeat(np.arange(max(2, classes_needed)), per_class)
    n_enough = len(enough)
    assert n_enough >= LABELS_MIN_TOTAL
    labels = np.concatenate([enough, -np.ones(100, dtype=np.int64), [99] * (per_class - 1)])
    chosen = choose_labels(labels, "auto")
    assert chosen.used == n_enough and chosen.reason.startswith("auto")
    # the class with too few examples is left out of training
    assert (chosen.classes == 99).sum() == 0 and (chosen.classes >= 0).sum() == n_enough
    off = choose_labels(labels, "off")
    assert off.classes is None and off.used == 0 and "off" in off.reason
    # one short of the total: not used, and the reason says what is needed
    too_few = labels.copy()
    too_few[np.flatnonzero(too_few == 0)[0]] = -1
    if n_enough - 1 < LABELS_MIN_TOTAL:
        short = choose_labels(too_few, "auto")
        assert short.classes is None and short.used == 0 and "needs" in short.reason
    assert choose_labels(None).used == 0 and choose_labels(-np.ones(10, dtype=np.int64)).used == 0
    with pytest.raises(ValueError):
        choose_labels(labels, "always")


def test_choose_labels_needs_two_classes(monkeypatch):
    monkeypatch.setattr(ml_config, "LABELS_MIN_TOTAL", 3)
    assert choose_labels(np.zeros(LABELS_MIN_PER_CLASS * 4, dtype=np.int64)).used == 0
