"""Exact against approximate neighbor search on realistic codes.

Codes are synthetic clustered Gaussians (many clusters of unequal spread, like
autoencoder codes of a dataset with a few dozen kinds of image).  For each
size and dimension it prints the seconds of the kNN graph (all points, k = 10)
exact and approximate, the recall of the approximate graph against the exact
one, and the same for M new points queried against the index (cluster
assignment and placement), the CPU use (CPU seconds / wall seconds) of each.

    python bench/neighbors.py                       # 20k and 100k points, 10/32/64-d
    python bench/neighbors.py --sizes 1000000 --dims 32 --queries 900000
    python bench/neighbors.py --threads 1           # one thread
    python bench/neighbors.py --worker-cpu 50000    # CPU use inside a daemonic (prefork) process

Exact search above 200,000 points is skipped unless --exact-max says more; recall is
then measured on a 2,000-point sample of queries against brute force.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embeddings.ml.neighbors import NeighborIndex, knn_graph  # noqa: E402

K = 10


def clustered_codes(n: int, d: int, seed: int = 0, clusters: int = 50) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(clusters, d))
    spread = rng.uniform(0.3, 1.5, size=clusters)
    which = rng.integers(0, clusters, size=n)
    return (centers[which] + rng.normal(size=(n, d)) * spread[which, None]).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(found, truth))
    return hits / truth.size


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return result, wall, cpu / max(wall, 1e-9)


def sample_truth(codes: np.ndarray, queries: np.ndarray, rows: np.ndarray, exclude_self: bool) -> np.ndarray:
    index = NeighborIndex(codes, method="exact")
    out = []
    for r in rows:
        idx, _ = index.query(int(r), K) if exclude_self else index.query(queries[r], K)
        out.append(idx)
    return np.array(out)


def _stages_in_a_daemon(n: int, backend: str, queue) -> None:
    """The exact neighbor stages of a run (kNN graph, near-duplicates, many
    queries) in a daemonic process, as in a Celery prefork child.  backend
    'loky' is what scikit-learn got before issue 17 (it fell back to one core)."""
    import warnings

    import joblib

    from embeddings.ml import neighbors

    codes = clustered_codes(n, 10)
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(), joblib.parallel_config(backend=backend):
        warnings.simplefilter("ignore")
        if backend == "loky":  # the interface's own threads off: joblib's default, as before
            neighbors.parallel_threads = lambda n_jobs=None: joblib.parallel_config(n_jobs=2)
        knn_graph(codes, K, n_jobs=2, method="exact")
        neighbors.near_duplicate_pairs(codes, method="exact")
        NeighborIndex(codes[: n // 2], method="exact").query_many(codes[n // 2 :], K)
    queue.put((time.perf_counter() - wall, time.process_time() - cpu))


def worker_cpu(n: int) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    print(f"neighbor stages, {n:,} 10-d codes, in a daemonic process on {len(os.sched_getaffinity(0))} cores")
    for label, backend in (("before (loky: n_jobs=1)", "loky"), ("after (threads)", "threading")):
        queue = ctx.Queue()
        child = ctx.Process(target=_stages_in_a_daemon, args=(n, backend, queue), daemon=True)
        child.start()
        wall, cpu = queue.get()
        child.join()
        print(f"{label:<24} wall {wall:7.2f} s  CPU {cpu:7.2f} s  CPU/wall {cpu / wall:4.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--dims", default="10,32,64")
    parser.add_argument("--queries", type=int, default=None, help="new points queried (default: the size)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: the cores)")
    parser.add_argument("--exact-max", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker-cpu", type=int, default=None, metavar="N", help="only the daemon CPU measurement")
    args = parser.parse_args()
    if args.worker_cpu:
        worker_cpu(args.worker_cpu)
        return
    print(f"cores {len(os.sched_getaffinity(0))}, threads {args.threads or 'all'}, k={K}")
    print(f"{'n':>8} {'d':>3} {'what':<7} {'exact s':>8} {'cpu/wall':>8} {'approx s':>8} {'cpu/wall':>8} {'recall':>6}")
    for n in (int(s) for s in args.sizes.split(",")):
        for d in (int(s) for s in args.dims.split(",")):
            m = args.queries or n
            # New points come from the same kinds of image as the indexed ones.
            everything = clustered_codes(n + m, d, args.seed)
            codes, new = everything[:n], everything[n:]
            knn_graph(codes[:3000], K, method="approximate")  # numba compiles on first use: not timed
            sample = np.random.default_rng(1).choice(n, min(n, 2000), replace=False)

            # kNN graph (UMAP, suggestions, near-duplicates)
            (a_idx, _), a_s, a_u = timed(
                lambda: knn_graph(codes, K, n_jobs=args.threads, method="approximate", seed=args.seed)
            )
            if n <= args.exact_max:
                (e_idx, _), e_s, e_u = timed(lambda: knn_graph(codes, K, n_jobs=args.threads, method="exact"))
                r = recall(a_idx, e_idx)
            else:
                e_s = e_u = float("nan")
                r = recall(a_idx[sample], sample_truth(codes, codes, sample, True))
            print(f"{n:>8} {d:>3} {'graph':<7} {e_s:>8.2f} {e_u:>8.2f} {a_s:>8.2f} {a_u:>8.2f} {r:>6.3f}")

            # M new points against the index (assign_clusters, placement)
            q_sample = np.random.default_rng(2).choice(m, min(m, 2000), replace=False)

            def query(method):
                return NeighborIndex(codes, method=method, seed=args.seed, n_jobs=args.threads).query_many(new, K)

            (a_idx, _), a_s, a_u = timed(lambda: query("approximate"))
            if n <= args.exact_max:
                (e_idx, _), e_s, e_u = timed(lambda: query("exact"))
                r = recall(a_idx[q_sample], e_idx[q_sample])
            else:
                e_s = e_u = float("nan")
                r = recall(a_idx[q_sample], sample_truth(codes, new, q_sample, False))
            print(f"{n:>8} {d:>3} {'queries':<7} {e_s:>8.2f} {e_u:>8.2f} {a_s:>8.2f} {a_u:>8.2f} {r:>6.3f}")


if __name__ == "__main__":
    main()
