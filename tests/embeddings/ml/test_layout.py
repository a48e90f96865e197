import numpy as np
import pytest

from embeddings.ml.config import LayoutConfig
from embeddings.ml.layout import compute_layout, normalize_xy, place_new_points


def _blobs(n_per=50, k=3, d=10, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(k, d))
    x = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


def _one_nn_agreement(xy, y):
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((y[d.argmin(1)] == y).mean())


def _fast_tsne(**kw):
    return LayoutConfig(early_exaggeration_iter=50, n_iter=100, n_jobs=1, **kw)


def test_tsne_layout_shape_range_and_separation():
    x, y = _blobs()
    calls = []
    xy = compute_layout(x, _fast_tsne(), on_progress=lambda s, t, m: calls.append((s, t)))
    assert xy.shape == (150, 2) and xy.dtype == np.float32
    assert np.abs(xy).max() == pytest.approx(50.0, rel=1e-4)
    assert np.abs(xy.mean(0)).max() < 1e-3
    assert _one_nn_agreement(xy, y) > 0.97
    assert calls and calls[-1][0] == calls[-1][1] == 150


def test_tsne_reproducible():
    x, _ = _blobs(n_per=30)
    np.testing.assert_array_equal(compute_layout(x, _fast_tsne(seed=3)), compute_layout(x, _fast_tsne(seed=3)))


def test_tiny_inputs():
    assert compute_layout(np.zeros((0, 4), np.float32)).shape == (0, 2)
    assert compute_layout(np.ones((1, 4), np.float32)).shape == (1, 2)
    xy = compute_layout(np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    assert xy.shape == (3, 2) and np.isfinite(xy).all()


def test_subsampled_map_places_the_rest_near_their_kind():
    x, y = _blobs(n_per=80)
    xy = compute_layout(x, _fast_tsne(max_points=120))
    assert xy.shape == (240, 2) and np.abs(xy).max() <= 50.0 + 1e-4
    assert _one_nn_agreement(xy, y) > 0.97


def test_new_points_land_near_their_neighbors():
    x, y = _blobs()
    xy = compute_layout(x, _fast_tsne())
    rng = np.random.default_rng(4)
    pick = rng.choice(len(x), 20, replace=False)
    new = x[pick] + rng.normal(scale=0.05, size=(20, x.shape[1])).astype(np.float32)
    placed = place_new_points(x, xy, new, k=10)
    assert placed.shape == (20, 2)
    centroids = np.stack([xy[y == c].mean(0) for c in range(3)])
    nearest_centroid = ((placed[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(nearest_centroid, y[pick])
    # an exact copy of a reference image lands (almost) on it
    same = place_new_points(x, xy, x[:1], k=10)
    assert np.linalg.norm(same[0] - xy[0]) < 5.0
    assert place_new_points(x, xy, x[:0]).shape == (0, 2)


def test_normalize_xy():
    xy = normalize_xy(np.array([[0.0, 0.0], [10.0, 2.0], [20.0, 4.0]]), extent=50)
    np.testing.assert_allclose(xy, [[-50, -10], [0, 0], [50, 10]], atol=1e-5)


def test_unknown_method():
    with pytest.raises(ValueError):
        compute_layout(_blobs()[0], LayoutConfig(method="pca-ish"))


@pytest.mark.slow
def test_umap_layout():
    x, y = _blobs(n_per=60)
    xy = compute_layout(x, LayoutConfig(method="umap"))
    assert xy.shape == (180, 2) and np.abs(xy).max() == pytest.approx(50.0, rel=1e-4)
    assert _one_nn_agreement(xy, y) > 0.97
