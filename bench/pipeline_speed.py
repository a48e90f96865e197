"""Wall time per stage of the simlabel pipeline, against a straightforward
baseline in the same run.

    .venv/bin/python bench/pipeline_speed.py --sizes 2000,10000,70000

For each size: that many of the 70,000 real MNIST digits (--dataset mnist70k;
other sets are topped up with random warps to reach the size; see
bench/datasets.py) through the pipeline with the
configuration recommended for that size (embeddings.ml.config.recommended_configs),
then the baseline: a 32-64-128 autoencoder trained 20 epochs, scikit-learn's
Barnes-Hut t-SNE and k-means on the codes (skipped above --baseline-max images).
Also embedding throughput for new images.  Both wall and CPU seconds are
printed: on a shared machine wall time swings with other load, CPU time less.
Goals on 2 cores: 10,000 images map-ready <= 60 s, 70,000 <= 6 min,
embedding >= 5,000 images/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "simlabel-numba"))
warnings.filterwarnings("ignore")

import numpy as np

from bench.datasets import load_scaled
from bench.quality import Clock
from embeddings.ml.clustering import cluster_codes
from embeddings.ml.config import ClusterConfig, TrainConfig, recommended_configs
from embeddings.ml.inference import embed_images
from embeddings.ml.metrics import clustering_scores
from embeddings.ml.pipeline import STAGES, run_pipeline
from embeddings.ml.training import train_autoencoder


def warm_up() -> None:
    """Load (or compile, the first time ever) numba's UMAP kernels, so the
    timings below are those of a warm worker; the cost is printed."""
    from embeddings.ml._umap import umap_embed

    with Clock() as c:
        umap_embed(np.random.default_rng(0).normal(size=(300, 10)).astype(np.float32), 2, 15, 0.0, 0)
    print(f"UMAP/numba warm-up: {c.wall:.1f} s wall ({os.environ['NUMBA_CACHE_DIR']})")


def run_simlabel(x, y, seed):
    """The worker's own assembly of the stages (embeddings.ml.pipeline), timed per stage."""
    train_config, layout_config, cluster_config = recommended_configs(len(x), x.shape[2], x.shape[1], seed=seed)
    result = run_pipeline(x, train_config, layout_config, cluster_config)
    times = {stage: SimpleNamespace(wall=result.timings[stage], cpu=result.cpu_timings[stage]) for stage in STAGES}
    codes, labels = result.codes, result.clusters
    # quality against the classes, one cluster per class, on the same codes
    with Clock():
        ten = cluster_codes(
            codes,
            ClusterConfig(method=cluster_config.method, n_clusters=10, seed=seed, max_points=cluster_config.max_points),
        )
    note = (
        f"{result.epochs_run} epochs on {min(len(x), train_config.max_train_images or len(x))} images; "
        f"{labels.max() + 1} clusters (majority acc {clustering_scores(y, labels)['majority_accuracy']:.3f}); "
        f"10 clusters: acc {clustering_scores(y, ten)['accuracy']:.3f}"
    )
    return times, note, result.model


def run_baseline(x, y, seed):
    from sklearn.manifold import TSNE

    times = {}
    config = TrainConfig(
        epochs=20,
        batch_size=128,
        base_channels=32,
        patience=None,
        seed=seed,
        input_size=x.shape[2],
        channels=x.shape[1],
    )
    with Clock() as c:
        trained = train_autoencoder(x, config)
    times["training"] = c
    with Clock() as c:
        codes, _ = embed_images(trained.model, x)
    times["embedding"] = c
    with Clock() as c:
        TSNE(n_components=2, random_state=seed, n_jobs=2).fit_transform(codes)
    times["layout"] = c
    with Clock() as c:
        labels = cluster_codes(codes, ClusterConfig(method="kmeans", n_clusters=10, seed=seed))
    times["clustering"] = c
    return times, f"k-means on codes, 10 clusters: acc {clustering_scores(y, labels)['accuracy']:.3f}"


def row(name, n, times, note):
    total_wall = sum(c.wall for c in times.values())
    total_cpu = sum(c.cpu for c in times.values())
    cells = " ".join(f"{times[s].wall:7.1f}/{times[s].cpu:<6.1f}" for s in STAGES)
    print(f"{n:>7} {name:9} {cells} {total_wall:7.1f}/{total_cpu:<6.1f}  {note}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,10000,70000")
    parser.add_argument("--dataset", default="mnist70k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=10000,
        help="skip the baseline above this many images (at 70k it takes most of an hour)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]

    import torch

    print(
        f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    warm_up()
    header = " ".join(f"{s:>14}" for s in STAGES)
    print(f"\nseconds as wall/CPU\n{'images':>7} {'run':9} {header} {'total':>14}")
    model = None
    for n in sizes:
        x, y = load_scaled(args.dataset, n, args.seed)
        times, note, model = run_simlabel(x, y, args.seed)
        row("simlabel", n, times, note)
        if n <= args.baseline_max:
            times, note = run_baseline(x, y, args.seed)
            row("baseline", n, times, note)
        else:
            print(f"{n:>7} baseline  skipped (--baseline-max {args.baseline_max})")
    if model is not None:
        x_new, _ = load_scaled("synthetic", 10000, args.seed + 1)
        embed_images(model, x_new[:1024])
        with Clock() as c:
            embed_images(model, x_new)
        print(
            f"\nembedding new images: {len(x_new) / c.wall:,.0f} images/s wall "
            f"({len(x_new)} images, {c.wall:.2f} s; goal >= 5,000/s)"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
