"""Import umap-learn with numba's compile cache on disk.

numba compiles UMAP's kernels on first use (~45 s on 2 cores); with a
persistent NUMBA_CACHE_DIR later processes load them in a second or two.
numba reads the variable when it is first imported, so set it before that.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_NUMBA_CACHE_DIR = Path.home() / ".cache" / "simlabel-numba"


def ensure_numba_cache_dir() -> str:
    path = os.environ.setdefault("NUMBA_CACHE_DIR", str(DEFAULT_NUMBA_CACHE_DIR))
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return path


def import_umap():
    ensure_numba_cache_dir()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

    _cache_umap_kernels()
    return umap


def _cache_umap_kernels() -> None:
    """Put umap-learn's uncached kernels into the disk cache too.

    umap-learn 0.5 compiles smooth_knn_dist, compute_membership_strengths and
    the per-epoch layout step without ``cache=True``: even with a warm
    NUMBA_CACHE_DIR every new process spent ~4.5 s of its first UMAP (6 s)
    compiling them. numba's own switch turns the disk cache on for them;
    with it the first UMAP of a process with a warm cache is as fast as a
    later one.
    """
    import umap.layouts
    import umap.umap_
    import umap.utils

    enable_kernel_caching((umap.umap_, umap.layouts, umap.utils))


def enable_kernel_caching(modules) -> None:
    """Turn numba's disk cache on for the kernels the modules define without it."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, Dispatcher)
                and value.__module__ == module.__name__
                and (value._cache is None or isinstance(value._cache, NullCache))
            ):
                value.enable_caching()


def umap_embed(codes, n_components: int, n_neighbors: int, min_dist: float, seed, n_jobs: int = 2, n_epochs=None):
    """UMAP of the codes.  A seed makes it reproducible but single-threaded.

    The neighbor graph comes from ``neighbors.knn_graph_with_self`` and is
    handed to UMAP: exact for up to tens of thousands of codes (0.5 s at 10,000
    ~32-d codes, where UMAP's own NN-descent cost ~40 s in a fresh process,
    numba compiling it), NN-descent, seeded, above.
    """
    import warnings

    from .neighbors import knn_graph_with_self

    umap = import_umap()
    n = len(codes)
    n_neighbors = min(n_neighbors, max(2, n - 1))
    # UMAP expects each point to be its own first neighbor.
    idx, dists = knn_graph_with_self(codes, n_neighbors, n_jobs=n_jobs, seed=seed if seed is not None else 0)
    reducer = umap.UMAP(
        n_components=n_components,
        n_neighbors=n_neighbors,
        precomputed_knn=(idx, dists, None),
        min_dist=min_dist,
        random_state=seed,
        n_jobs=1 if seed is not None else n_jobs,
        n_epochs=n_epochs,
        init="spectral" if n > n_components + 1 else "random",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reducer.fit_transform(codes).astype("float32")
