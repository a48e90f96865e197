"""The neighbor interface at scale: approximate search agrees with exact search,
is reproducible for a seed, is chosen by size, and runs on threads in a
daemonic (Celery prefork) process."""

import multiprocessing
import warnings

import numpy as np
import pytest

from embeddings.ml import neighbors
from embeddings.ml.neighbors import (
    APPROXIMATE_MIN_POINTS,
    NeighborIndex,
    knn_graph,
    knn_graph_with_self,
    near_duplicate_pairs,
    near_duplicates_among,
    use_approximate,
)


def _clustered(n, d=10, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(clusters, d))
    spread = rng.uniform(0.3, 1.5, size=clusters)
    which = rng.integers(0, clusters, size=n)
    return (centers[which] + rng.normal(size=(n, d)) * spread[which, None]).astype(np.float32)


def _recall(found, truth):
    return sum(len(np.intersect1d(a, b)) for a, b in zip(found, truth)) / truth.size


def test_the_method_is_chosen_by_size():
    assert not use_approximate(APPROXIMATE_MIN_POINTS - 1)
    assert use_approximate(APPROXIMATE_MIN_POINTS)
    assert use_approximate(10, "approximate") and not use_approximate(10**7, "exact")
    with pytest.raises(ValueError):
        use_approximate(10, "annoy")


def test_exact_and_approximate_agree_on_easy_data():
    # Tight, far-apart clusters of 10: each point's 9 neighbors are its cluster.
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=100.0, size=(200, 8))
    codes = (np.repeat(centers, 10, axis=0) + rng.normal(scale=0.1, size=(2000, 8))).astype(np.float32)
    exact_idx, exact_dist = knn_graph(codes, 9, method="exact")
    approx_idx, approx_dist = knn_graph(codes, 9, method="approximate")
    assert approx_idx.shape == exact_idx.shape == (2000, 9)
    np.testing.assert_array_equal(np.sort(approx_idx, axis=1), np.sort(exact_idx, axis=1))
    np.testing.assert_allclose(approx_dist, exact_dist, rtol=1e-4, atol=1e-4)
    assert not (approx_idx == np.arange(2000)[:, None]).any()

    queries = (centers[:50] + rng.normal(scale=0.1, size=(50, 8))).astype(np.float32)
    exact = NeighborIndex(codes, method="exact").query_many(np.repeat(queries, 20, axis=0), 10)
    approx = NeighborIndex(codes, method="approximate").query_many(np.repeat(queries, 20, axis=0), 10)
    np.testing.assert_array_equal(np.sort(approx[0], axis=1), np.sort(exact[0], axis=1))


def test_recall_at_10_on_20k_clustered_codes():
    codes = _clustered(21_000, d=32)
    index_codes, new = codes[:20_000], codes[20_000:]
    exact_idx, _ = knn_graph(index_codes, 10, method="exact")
    approx_idx, approx_dist = knn_graph(index_codes, 10, method="approximate")
    assert _recall(approx_idx, exact_idx) >= 0.95
    assert (np.diff(approx_dist, axis=1) >= 0).all()

    want, _ = NeighborIndex(index_codes, method="exact").query_many(new, 10)
    got, _ = NeighborIndex(index_codes, method="approximate").query_many(new, 10)
    assert _recall(got, want) >= 0.95


def test_approximate_results_are_the_same_for_a_seed():
    codes = _clustered(6000, d=16, seed=3)
    first = knn_graph(codes, 10, method="approximate", seed=7)
    second = knn_graph(codes, 10, method="approximate", seed=7)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    new = _clustered(3000, d=16, seed=4)
    a = NeighborIndex(codes, method="approximate", seed=7).query_many(new, 10)
    b = NeighborIndex(codes, method="approximate", seed=7).query_many(new, 10)
    np.testing.assert_array_equal(a[0], b[0])


def test_query_many_leaves_out_the_excluded_index_when_approximate():
    codes = _clustered(4000, d=8)
    rows = np.arange(0, 4000, 7)
    idx, dist = NeighborIndex(codes, method="approximate").query_many(codes[rows], 5, exclude=rows)
    assert idx.shape == (len(rows), 5)
    assert not (idx == rows[:, None]).any()
    want, _ = NeighborIndex(codes, method="exact").query_many(codes[rows], 5, exclude=rows)
    assert _recall(idx, want) >= 0.95


def test_knn_graph_with_self_puts_each_point_first():
    codes = _clustered(3000, d=8)
    for method in ("exact", "approximate"):
        idx, dist = knn_graph_with_self(codes, 6, method=method)
        assert idx.shape == (3000, 6)
        assert (idx[:, 0] == np.arange(3000)).mean() > 0.99 and (dist[:, 0] < 1e-3).all()


def test_near_duplicates_approximate_finds_the_exact_pairs():
    codes = _clustered(5000, d=10)
    codes[100] = codes[20]
    codes[300] = codes[7] + 1e-4
    codes[4000] = codes[3999] + 2e-4
    exact = near_duplicate_pairs(codes, method="exact")
    approx = near_duplicate_pairs(codes, method="approximate")
    assert [p[:2] for p in exact] == [(20, 100), (7, 300), (3999, 4000)]
    assert [p[:2] for p in approx] == [p[:2] for p in exact]

    threshold = 1e-2
    new = np.array([300, 4000])
    for method in ("exact", "approximate"):
        found = near_duplicates_among(codes, new, threshold, method=method)
        assert [p[:2] for p in found] == [(7, 300), (3999, 4000)], method


def _knn_in_a_daemon(queue):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codes = _clustered(3000, d=8)
        knn_graph(codes, 5, n_jobs=2, method="exact")
        near_duplicate_pairs(codes, method="exact")
        NeighborIndex(codes, method="exact").query_many(codes, 5)
    queue.put([str(w.message) for w in caught])


def test_a_daemonic_worker_process_keeps_its_threads():
    """Celery's prefork children are daemonic, where joblib's process pool cannot
    start: scikit-learn warned 'Loky-backed parallel loops cannot be called in a
    multiprocessing, setting n_jobs=1' and ran on one core."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_knn_in_a_daemon, args=(queue,), daemon=True)
    child.start()
    messages = queue.get(timeout=120)
    child.join(timeout=30)
    assert not [m for m in messages if "Loky" in m or "n_jobs=1" in m], messages


def test_resolve_threads_uses_the_cores_of_this_process():
    import os

    assert neighbors.resolve_threads(None) == max(1, min(8, len(os.sched_getaffinity(0))))
    assert neighbors.resolve_threads(3) == 3


def test_a_runs_near_duplicates_take_the_threshold_and_the_pairs_from_one_graph(monkeypatch):
    from embeddings.ml.review_ranking import near_duplicate_threshold, near_duplicates

    monkeypatch.setattr(neighbors, "APPROXIMATE_MIN_POINTS", 1000)
    builds = []
    build = neighbors._nndescent
    monkeypatch.setattr(neighbors, "_nndescent", lambda *args, **kw: builds.append(len(args[0])) or build(*args, **kw))
    codes = _clustered(3000, d=8)
    codes[100] = codes[20]
    codes[2500] = codes[7] + 1e-4
    pairs, threshold = near_duplicates(codes)
    assert builds == [3000]  # the NN-descent graph of a million codes took minutes: once, not twice
    assert [(int(p["a"]), int(p["b"])) for p in pairs] == [(20, 100), (7, 2500)]
    builds.clear()
    assert threshold == pytest.approx(near_duplicate_threshold(codes)) and builds == [3000]
