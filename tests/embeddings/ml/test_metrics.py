import numpy as np
import pytest

from embeddings.ml.metrics import ari, cluster_accuracy, clustering_scores, hungarian_accuracy, majority_accuracy, nmi


def test_perfect_clustering_with_renamed_labels():
    y = [0, 0, 1, 1, 2, 2]
    p = [5, 5, 3, 3, 9, 9]
    assert hungarian_accuracy(y, p) == 1.0
    assert majority_accuracy(y, p) == 1.0
    assert cluster_accuracy(y, p) == 1.0
    assert nmi(y, p) == pytest.approx(1.0)
    assert ari(y, p) == pytest.approx(1.0)


def test_hand_example_one_mistake():
    y = [0, 0, 0, 1, 1, 1]
    p = [1, 1, 0, 0, 0, 0]
    # best mapping: cluster 1 -> class 0 (2 right), cluster 0 -> class 1 (3 right)
    assert hungarian_accuracy(y, p) == pytest.approx(5 / 6)
    assert majority_accuracy(y, p) == pytest.approx(5 / 6)


def test_more_clusters_than_classes():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0, 0, 1, 1, 2, 2, 3, 3]  # each class split in two pure clusters
    assert majority_accuracy(y, p) == 1.0
    assert hungarian_accuracy(y, p) == pytest.approx(0.5)  # one-to-one: only 2 clusters count


def test_fewer_clusters_than_classes():
    y = [0, 0, 1, 1, 2, 2]
    p = [0, 0, 0, 0, 1, 1]
    assert hungarian_accuracy(y, p) == pytest.approx(4 / 6)
    assert majority_accuracy(y, p) == pytest.approx(4 / 6)


def test_scores_dict_and_random_is_low():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    p = rng.integers(0, 10, 2000)
    s = clustering_scores(y, p)
    assert s["n_clusters"] == 10
    assert s["accuracy"] < 0.2 and abs(s["ari"]) < 0.02 and s["nmi"] < 0.02
