import numpy as np
import pytest

from embeddings.ml.clustering import assign_clusters, auto_cluster_count, cluster_codes, cluster_purity_stats
from embeddings.ml.config import ClusterConfig
from embeddings.ml.metrics import hungarian_accuracy, majority_accuracy


def _blobs(n_per=40, k=4, d=8, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=5.0, size=(k, d))
    x = np.concatenate([c + rng.normal(scale=spread, size=(n_per, d)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    return x, y


def test_auto_count_grows_with_n_and_is_clamped():
    assert auto_cluster_count(1000) == 22
    assert auto_cluster_count(10_000) == 71
    assert auto_cluster_count(70_000) == 187
    assert auto_cluster_count(10**7) == 300
    assert auto_cluster_count(3) == 2
    assert auto_cluster_count(1) == 1
    counts = [auto_cluster_count(n) for n in (100, 1000, 10_000, 100_000)]
    assert counts == sorted(counts)


def test_kmeans_recovers_blobs_with_given_count():
    x, y = _blobs()
    labels = cluster_codes(x, ClusterConfig(method="kmeans", n_clusters=4))
    assert labels.shape == (160,) and labels.dtype == np.int64
    assert hungarian_accuracy(y, labels) == 1.0


def test_auto_picks_count_and_stays_pure():
    x, y = _blobs()
    labels = cluster_codes(x, ClusterConfig())  # small data: k-means on the codes
    assert len(np.unique(labels)) == auto_cluster_count(len(x))
    assert majority_accuracy(y, labels) == 1.0  # finer clusters, each one kind


def test_clusters_numbered_by_size():
    x, _ = _blobs(n_per=30, k=3)
    x = np.concatenate([x, x[:30] + 0.01]).astype(np.float32)  # first blob twice as big
    labels = cluster_codes(x, ClusterConfig(method="kmeans", n_clusters=3))
    sizes = np.bincount(labels)
    assert list(sizes) == sorted(sizes, reverse=True)


def test_layout_kmeans_uses_layout_and_needs_it():
    x, y = _blobs()
    xy = np.repeat(np.arange(4), 40)[:, None] * np.array([[10.0, 0.0]])
    labels = cluster_codes(np.zeros_like(x), ClusterConfig(method="layout_kmeans", n_clusters=4), layout_xy=xy)
    assert hungarian_accuracy(y, labels) == 1.0
    with pytest.raises(ValueError):
        cluster_codes(x, ClusterConfig(method="layout_kmeans", n_clusters=4))
    with pytest.raises(ValueError):
        cluster_codes(x, ClusterConfig(method="nonsense"))


def test_reproducible():
    x, _ = _blobs(seed=3, spread=2.0)
    a = cluster_codes(x, ClusterConfig(method="kmeans", n_clusters=6, seed=1))
    b = cluster_codes(x, ClusterConfig(method="kmeans", n_clusters=6, seed=1))
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_umap_kmeans_separates_blobs():
    x, y = _blobs(n_per=60)
    labels = cluster_codes(x, ClusterConfig(method="umap_kmeans", n_clusters=4))
    assert hungarian_accuracy(y, labels) == 1.0


def test_assign_new_images_by_neighbor_vote():
    x, y = _blobs()
    new, new_y = _blobs(n_per=5, seed=0)  # same centers, fresh noise
    new = new + np.random.default_rng(9).normal(scale=0.1, size=new.shape).astype(np.float32)
    got = assign_clusters(x, y * 10, new)
    np.testing.assert_array_equal(got, new_y * 10)
    assert assign_clusters(x, y, new[:0]).shape == (0,)


def test_purity_stats():
    clusters = np.array([0, 0, 0, 1, 1, 2])
    classes = np.array([3, 3, 4, 5, -1, -1])
    stats = cluster_purity_stats(clusters, classes)
    assert stats[0] == {"cluster": 0, "size": 3, "labeled": 3, "majority_class": 3, "purity": pytest.approx(2 / 3)}
    assert stats[1]["majority_class"] == 5 and stats[1]["purity"] == 1.0 and stats[1]["labeled"] == 1
    assert stats[2]["majority_class"] is None and stats[2]["size"] == 1


def test_subset_clustering_assigns_the_rest():
    x, y = _blobs(n_per=100)
    labels = cluster_codes(x, ClusterConfig(method="kmeans", n_clusters=4, max_points=120))
    assert labels.shape == (400,)
    assert hungarian_accuracy(y, labels) == 1.0
