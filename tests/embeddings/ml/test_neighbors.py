import numpy as np

from embeddings.ml.neighbors import NeighborIndex, knn_graph, near_duplicate_pairs


def _codes(n=300, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _brute(codes, q, k):
    d = np.linalg.norm(codes - q, axis=1)
    order = np.argsort(d, kind="stable")
    return order[:k], d[order[:k]]


def test_query_by_vector_matches_brute_force():
    codes = _codes()
    index = NeighborIndex(codes)
    q = np.random.default_rng(1).normal(size=6)
    idx, dist = index.query(q, 7)
    want_idx, want_dist = _brute(codes, q, 7)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-4, atol=1e-4)
    assert (np.diff(dist) >= 0).all()


def test_query_by_index_excludes_self():
    codes = _codes()
    index = NeighborIndex(codes)
    idx, dist = index.query(17, 5)
    assert 17 not in idx
    want_idx, _ = _brute(codes, codes[17], 6)
    np.testing.assert_array_equal(idx, want_idx[1:])
    # numpy integers count as an index too
    assert 17 not in index.query(np.int64(17), 5)[0]


def test_query_by_index_with_an_exact_duplicate_returns_the_duplicate():
    codes = _codes(50)
    codes[10] = codes[3]
    idx, dist = NeighborIndex(codes).query(3, 2)
    assert idx[0] == 10 and dist[0] < 1e-3 and 3 not in idx


def test_k_larger_than_dataset():
    idx, dist = NeighborIndex(_codes(4)).query(0, 10)
    assert sorted(idx.tolist()) == [1, 2, 3]


def test_knn_graph_excludes_self_even_with_duplicates():
    codes = _codes(200)
    codes[5] = codes[6]
    codes[7] = codes[6]
    idx, dist = knn_graph(codes, 4)
    assert idx.shape == dist.shape == (200, 4)
    assert not (idx == np.arange(200)[:, None]).any()
    assert {6, 7} <= set(idx[5].tolist())
    index = NeighborIndex(codes)
    for i in (0, 42, 199):
        np.testing.assert_array_equal(np.sort(idx[i]), np.sort(index.query(i, 4)[0]))


def test_near_duplicates_found_and_none_in_clean_data():
    codes = _codes(400)
    assert near_duplicate_pairs(codes) == []
    dup = codes.copy()
    dup[100] = dup[20]
    dup[300] = dup[7] + 1e-4
    pairs = near_duplicate_pairs(dup)
    assert [(i, j) for i, j, _ in pairs] == [(20, 100), (7, 300)]
    assert pairs[0][2] <= pairs[1][2]
    assert near_duplicate_pairs(dup, threshold=1e-6)[0][:2] == (20, 100)
