"""Fill numba's on-disk cache at install time: ``python -m embeddings.ml.warmup``.

The clustering step (and the UMAP map) runs umap-learn, whose numba kernels
compile on first use: about 40 s on 2 cores, paid by the first run of a fresh
install. Running the same calls once on a tiny array at install time (setup.sh,
the Docker build) writes the compiled kernels to NUMBA_CACHE_DIR, and every
later process loads them from there. t-SNE (openTSNE with exact neighbors) is
compiled C++/Cython and needs no warm-up.

Pure: no Django. numba compiles per argument type, so the arrays have the
pipeline's dtypes (float32 codes) and the calls its parameters.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ._umap import ensure_numba_cache_dir, umap_embed
from .config import ClusterConfig, LayoutConfig
from .neighbors import knn_graph

# Enough points for UMAP's spectral initialization and the neighbor counts
# the pipeline uses (30), small enough to take well under a second once compiled.
WARMUP_POINTS = 300
WARMUP_DIM = 32


def warm_up(n_points: int = WARMUP_POINTS, dim: int = WARMUP_DIM) -> float:
    """Run the pipeline's UMAP calls once; returns the seconds it took."""
    ensure_numba_cache_dir()

    rng = np.random.default_rng(0)
    # A few separated blobs, as real codes are, so UMAP takes its usual paths.
    centers = rng.normal(scale=5.0, size=(5, dim))
    codes = (centers[rng.integers(0, 5, n_points)] + rng.normal(size=(n_points, dim))).astype(np.float32)
    cluster, layout = ClusterConfig(), LayoutConfig()
    start = time.perf_counter()
    # Clustering (every run): UMAP of the codes, seeded, as cluster_codes calls it.
    umap_embed(
        codes, cluster.umap_components, cluster.umap_neighbors, 0.0, cluster.seed, 1, n_epochs=cluster.umap_epochs
    )
    # The UMAP map (LayoutConfig.method == "umap").
    umap_embed(codes, 2, layout.n_neighbors, layout.min_dist, layout.seed, 1, n_epochs=200)
    # The approximate kNN graph (pynndescent), which datasets of
    # neighbors.APPROXIMATE_MIN_POINTS and more use.
    knn_graph(codes, 10, method="approximate")
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    cache_dir = ensure_numba_cache_dir()
    seconds = warm_up()
    print(f"numba cache warmed in {seconds:.1f} s: {cache_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
