"""Label suggestions on toy code sets: two well-separated blobs of codes."""

import numpy as np
import pytest

from embeddings.ml.suggestions import UNLABELED, suggest_classes, suggest_knn, suggest_spreading


def two_blobs(n_per=30, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 0.3, size=(n_per, 4))
    b = rng.normal(0.0, 0.3, size=(n_per, 4)) + np.array([5.0, 5.0, 0, 0])
    codes = np.concatenate([a, b]).astype(np.float32)
    truth = np.array([0] * n_per + [1] * n_per)
    return codes, truth


@pytest.mark.parametrize("method", ["spreading", "knn"])
def test_two_labels_propagate_to_their_blobs(method):
    codes, truth = two_blobs()
    labels = np.full(len(codes), UNLABELED)
    labels[0], labels[30] = 0, 1  # one label per blob
    result = suggest_classes(codes, labels, n_classes=2, method=method, k=5)
    open_ = labels == UNLABELED
    assert (result.classes[open_] == truth[open_]).all()
    assert result.confidence.shape == (60,)
    assert ((result.confidence >= 0) & (result.confidence <= 1)).all()
    assert np.allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_spreading_is_confident_inside_a_blob():
    codes, truth = two_blobs()
    labels = np.full(len(codes), UNLABELED)
    labels[:5], labels[30:35] = 0, 1
    result = suggest_spreading(codes, labels, n_classes=2, k=5)
    assert result.confidence[labels == UNLABELED].min() > 0.9


def test_labeled_image_gets_what_its_neighbors_say():
    codes, truth = two_blobs()
    labels = truth.copy()
    labels[3] = 1  # a mistake planted in blob 0
    for fn in (suggest_knn, suggest_spreading):
        result = fn(codes, labels, n_classes=2, k=5)
        assert result.classes[3] == 0, fn.__name__  # its own wrong label does not vote for itself
        assert result.confidence[3] > 0.8
        agree = np.delete(np.arange(60), 3)
        assert (result.classes[agree] == truth[agree]).all()


def test_nothing_labeled_means_no_suggestion():
    codes, _ = two_blobs()
    labels = np.full(len(codes), UNLABELED)
    for method in ("spreading", "knn"):
        result = suggest_classes(codes, labels, n_classes=3, method=method)
        assert (result.classes == UNLABELED).all()
        assert (result.confidence == 0).all()


def test_bad_input_is_refused():
    codes, _ = two_blobs()
    with pytest.raises(ValueError):
        suggest_classes(codes, np.zeros(5, dtype=int), n_classes=2)
    with pytest.raises(ValueError):
        suggest_classes(codes, np.full(60, 7), n_classes=2)
    with pytest.raises(ValueError):
        suggest_classes(codes, np.zeros(60, dtype=int), method="magic")


def test_deterministic():
    codes, _ = two_blobs(seed=3)
    labels = np.full(len(codes), UNLABELED)
    labels[[1, 40]] = [0, 1]
    a = suggest_spreading(codes, labels, n_classes=2)
    b = suggest_spreading(codes, labels, n_classes=2)
    assert np.array_equal(a.classes, b.classes) and np.array_equal(a.confidence, b.confidence)
