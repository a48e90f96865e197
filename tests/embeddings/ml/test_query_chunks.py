"""Neighbor queries in chunks: the bounds, identical answers however the chunks are
shared out, and the layout/clustering stages asking through a QueryNeighborsFn."""

import numpy as np
import pytest

from embeddings.ml.clustering import assign_clusters, cluster_codes, clusters_from_neighbors
from embeddings.ml.config import ClusterConfig, LayoutConfig
from embeddings.ml.layout import compute_layout, place_new_points, positions_from_neighbors
from embeddings.ml.neighbors import NeighborIndex, query_chunk, query_chunk_bounds, query_in_chunks


def _codes(n, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [
        (0, 4, []),
        (3, 4, [(0, 3)]),
        (8, 4, [(0, 4), (4, 8)]),
        (9, 4, [(0, 4), (4, 8), (8, 9)]),
        (2, 0, [(0, 1), (1, 2)]),  # a size below 1 means 1
    ],
)
def test_chunk_bounds_cover_every_query_once(n, size, expected):
    assert query_chunk_bounds(n, size) == expected


def test_chunks_answered_elsewhere_are_used_and_the_result_does_not_change():
    index, queries = NeighborIndex(_codes(300)), _codes(103, seed=1)
    alone, alone_dist, none_elsewhere = query_in_chunks(index, queries, 5, chunk_size=10)
    assert none_elsewhere == 0 and alone.shape == (103, 5)

    # A helper process: its own index of the same codes, the same chunk computation.
    helper_index = NeighborIndex(index.codes.copy())
    bounds = query_chunk_bounds(len(queries), 10)
    helped = {i: query_chunk(helper_index, queries, bounds[i], 5) for i in (0, 1, 2, 3)}
    asked, order = [], []
    idx, dist, from_elsewhere = query_in_chunks(
        index,
        queries,
        5,
        chunk_size=10,
        done_elsewhere=lambda i: asked.append(i) or helped.get(i),
        on_chunk=lambda done, total: order.append((done, total)),
    )
    assert from_elsewhere == 4
    assert asked == list(reversed(range(len(bounds))))  # from the last chunk: helpers start at the first
    assert order[-1] == (len(bounds), len(bounds))
    assert np.array_equal(idx, alone) and np.array_equal(dist, alone_dist)
    # and the same neighbours as one query of everything
    assert np.array_equal(idx, index.query_many(queries, 5)[0])


def test_a_chunk_of_the_wrong_shape_from_elsewhere_is_computed_here():
    index, queries = NeighborIndex(_codes(50)), _codes(20, seed=2)
    alone, _, _ = query_in_chunks(index, queries, 3, chunk_size=8)
    wrong = (np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3), dtype=np.float32))
    idx, _, from_elsewhere = query_in_chunks(index, queries, 3, chunk_size=8, done_elsewhere=lambda i: wrong)
    assert from_elsewhere == 0 and np.array_equal(idx, alone)


def test_on_chunk_may_stop_the_queries():
    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    with pytest.raises(Stop):
        query_in_chunks(NeighborIndex(_codes(20)), _codes(20), 2, chunk_size=5, on_chunk=stop)


def test_placing_and_assigning_from_neighbours_found_elsewhere_match_the_direct_ones():
    ref, new = _codes(80), _codes(30, seed=3)
    idx, dist, _ = query_in_chunks(NeighborIndex(ref), new, 10, chunk_size=7)
    xy = np.random.default_rng(4).normal(size=(80, 2))
    assert np.allclose(positions_from_neighbors(xy, idx, dist), place_new_points(ref, xy, new))
    labels = np.arange(80) % 4
    assert np.array_equal(clusters_from_neighbors(labels, idx, dist), assign_clusters(ref, labels, new))


class Recorder:
    """A QueryNeighborsFn that notes what was asked and when the answer was taken."""

    def __init__(self):
        self.events = []

    def __call__(self, purpose, codes, queries, k):
        self.events.append(("asked", purpose, len(codes), len(queries), k))

        def answer():
            self.events.append(("answered", purpose))
            idx, dist, _ = query_in_chunks(NeighborIndex(codes), queries, k, chunk_size=7)
            return idx, dist

        return answer


def test_clustering_beyond_its_sample_asks_for_the_rest():
    codes = _codes(120)
    recorder = Recorder()
    config = ClusterConfig(method="kmeans", n_clusters=3, max_points=50)
    labels = cluster_codes(codes, config, query_neighbors=recorder)
    assert recorder.events == [("asked", "clustering", 50, 70, 10), ("answered", "clustering")]
    assert np.array_equal(labels, cluster_codes(codes, config))


def test_the_layout_asks_before_laying_out_its_sample_and_answers_after():
    codes = _codes(90)
    recorder = Recorder()

    def on_progress(step, total, metrics):  # the sample's layout running
        recorder.events.append(("laying out",))

    config = LayoutConfig(max_points=40, perplexity=5.0)
    xy = compute_layout(codes, config, on_progress, query_neighbors=recorder)
    assert recorder.events[0] == ("asked", "layout", 40, 50, 10)
    assert ("laying out",) in recorder.events[1:-1] and recorder.events[-1] == ("answered", "layout")
    assert np.allclose(xy, compute_layout(codes, config))
