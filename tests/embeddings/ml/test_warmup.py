"""Install-time numba warm-up: a later process loads UMAP's kernels instead of compiling them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

# Runs `code` in a fresh interpreter with its own NUMBA_CACHE_DIR, then prints how
# the numba kernels of umap-learn and pynndescent met the disk cache.
STATS = """
import gc, json, time
from numba.core.caching import NullCache
from numba.core.dispatcher import Dispatcher
start = time.perf_counter()
{code}
seconds = time.perf_counter() - start
kernels = {{}}
for obj in gc.get_objects():
    if isinstance(obj, Dispatcher) and obj.py_func.__module__.startswith(("umap", "pynndescent")):
        # umap jits one function twice, serial and parallel: two kernels.
        name = obj.py_func.__module__ + "." + obj.py_func.__qualname__
        name += "[parallel]" if obj.targetoptions.get("parallel") else ""
        kernels[name] = {{"cached": not isinstance(obj._cache, NullCache),
                         "hits": sum(obj.stats.cache_hits.values()),
                         "misses": sum(obj.stats.cache_misses.values()),
                         "compiled": len(obj.signatures)}}
print(json.dumps({{"seconds": seconds, "kernels": kernels}}))
"""

# The pipeline's clustering step as a run calls it (UMAP of the codes, then a mixture).
PIPELINE_CALL = """
import numpy as np
from embeddings.ml.clustering import cluster_codes
from embeddings.ml.config import ClusterConfig
rng = np.random.default_rng(3)
codes = (rng.normal(scale=5.0, size=(4, 32))[rng.integers(0, 4, 600)] + rng.normal(size=(600, 32))).astype("float32")
cluster_codes(codes, ClusterConfig(method="umap_gmm", n_clusters=4, n_jobs=1))
"""

# The kernels that cost most of UMAP's compilation; umap-learn compiles them without
# cache=True, so they only reach the disk cache through _umap._cache_umap_kernels.
HEAVY = (
    "umap.umap_.smooth_knn_dist[parallel]",
    "umap.umap_.compute_membership_strengths[parallel]",
    "umap.layouts._optimize_layout_euclidean_single_epoch",
)


def _run(code, cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", STATS.format(code=code)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_warm_up_fills_the_cache_that_a_later_process_loads_umap_from(tmp_path):
    cache = tmp_path / "numba-cache"
    # What setup.sh and the Docker build run, on an empty cache: everything compiles.
    cold = _run("from embeddings.ml.warmup import main; main([])", cache)
    compiled = {name for name, k in cold["kernels"].items() if k["cached"] and k["misses"]}
    assert set(HEAVY) <= compiled, sorted(compiled)
    index_files = {path.name for path in cache.rglob("*.nbi")}
    for name in HEAVY:
        module, function = name.split("[")[0].split(".")[-2:]
        assert any(f.startswith(f"{module}.{function}-") for f in index_files), (name, sorted(index_files))

    # A fresh process (a worker's first run) loads them all from the cache.
    warm = _run(PIPELINE_CALL, cache)
    for name in HEAVY:
        assert warm["kernels"][name]["hits"] >= 1 and warm["kernels"][name]["misses"] == 0, warm["kernels"][name]
    used = {name: k for name, k in warm["kernels"].items() if k["cached"] and (k["hits"] or k["misses"])}
    hits = sum(k["hits"] for k in used.values())
    misses = sum(k["misses"] for k in used.values())
    # A couple of tiny helpers that umap compiles eagerly at import may still be
    # compiled again; everything the run's UMAP needs comes from the cache.
    assert hits >= 10 * max(1, misses), used
    print(
        f"warm-up (cold compile) {cold['seconds']:.1f} s; first clustering with the warm cache "
        f"{warm['seconds']:.1f} s; {hits} kernels loaded, {misses} compiled"
    )
