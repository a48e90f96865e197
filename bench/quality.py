"""Clustering quality of the simlabel pipeline against simpler baselines.

    .venv/bin/python bench/quality.py                       # MNIST's 10,000 test digits
    .venv/bin/python bench/quality.py --dataset mnist70k    # all 70,000 MNIST digits
    .venv/bin/python bench/quality.py --dataset digits      # scikit-learn's 1,797 digits

Prints one table: Hungarian-matched cluster accuracy (one cluster per class,
n_clusters = number of classes), majority accuracy, NMI and ARI for
  - k-means on raw pixels,
  - the pipeline without the autoencoder (PCA-50 of the pixels, then the
    same clustering as the pipeline),
  - k-means on the autoencoder's codes (no neighbor graph),
  - the pipeline (autoencoder, then its default clustering),
  - the pipeline with the automatic (finer) cluster count, where majority
    accuracy is what labelling whole clusters would reach,
plus how well the 2-D t-SNE map keeps classes together (10-NN agreement),
and how much one-cluster-per-class accuracy moves with the clustering seed
(the same codes, clustered with --cluster-seeds).  Every stage uses the
configuration the pipeline uses at that size (recommended_configs): at 70,000
images the autoencoder trains on a 20,000 sample and t-SNE runs on 30,000.
Datasets: see bench/datasets.py (mnist = real MNIST digits shipped in a package).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "simlabel-numba"))
warnings.filterwarnings("ignore")

from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402

from bench.datasets import load_dataset  # noqa: E402
from embeddings.ml.clustering import cluster_codes  # noqa: E402
from embeddings.ml.config import ClusterConfig, recommended_configs  # noqa: E402
from embeddings.ml.inference import embed_images  # noqa: E402
from embeddings.ml.layout import compute_layout  # noqa: E402
from embeddings.ml.metrics import clustering_scores  # noqa: E402
from embeddings.ml.training import train_autoencoder  # noqa: E402


class Clock:
    """Wall and CPU seconds: on a shared machine CPU time is the steadier number."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def knn_agreement(xy: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Share of each point's k map neighbors that have its class."""
    from embeddings.ml.neighbors import knn_graph

    idx, _ = knn_graph(xy, k)
    return float((y[idx] == y[:, None]).mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist-test", help="see bench/datasets.py")
    parser.add_argument("--n", type=int, default=None, help="number of images (default: the whole set)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override TrainConfig.epochs")
    parser.add_argument("--no-map", action="store_true", help="skip the t-SNE map")
    parser.add_argument(
        "--cluster-seeds", default="1,2", help="more seeds for the one-cluster-per-class clustering of the same codes"
    )
    args = parser.parse_args(argv)

    x, y = load_dataset(args.dataset, args.n, args.seed)
    n_classes = len(np.unique(y))
    print(
        f"dataset {args.dataset}: {len(x)} images {x.shape[1:]}, {n_classes} classes, seed {args.seed}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    train_config, layout_config, auto_config = recommended_configs(len(x), x.shape[2], x.shape[1], seed=args.seed)
    if args.epochs is not None:
        train_config.epochs = args.epochs
    fixed = replace(auto_config, n_clusters=n_classes)
    rows = []

    def add(name, labels, clock, extra=""):
        rows.append((name, clustering_scores(y, labels), clock.wall, clock.cpu, extra))
        print(f"  done: {name} ({clock.wall:.1f} s)", flush=True)

    flat = x.reshape(len(x), -1)
    with Clock() as c:
        labels = cluster_codes(flat, ClusterConfig(method="kmeans", n_clusters=n_classes, seed=args.seed))
    add("k-means on raw pixels", labels, c)

    from sklearn.decomposition import PCA

    with Clock() as c:
        pca = PCA(n_components=min(50, flat.shape[1], len(x)), random_state=args.seed).fit_transform(flat)
        labels = cluster_codes(pca, fixed)
    add("PCA-50 + pipeline clustering (no AE)", labels, c)

    with Clock() as c:
        trained = train_autoencoder(x, train_config)
        codes, _ = embed_images(trained.model, x)
    train_clock = c
    with Clock() as c:
        labels = cluster_codes(codes, ClusterConfig(method="kmeans", n_clusters=n_classes, seed=args.seed))
    add("AE codes + k-means", labels, c)

    with Clock() as c:
        labels = cluster_codes(codes, fixed)
    add(
        f"pipeline: AE + {ClusterConfig().method} clustering",
        labels,
        c,
        f"+ AE {train_clock.wall:.0f} s, {trained.epochs_run} epochs",
    )
    seed_scores = [clustering_scores(y, labels)["accuracy"]]
    for seed in [int(v) for v in args.cluster_seeds.split(",") if v.strip()]:
        with Clock() as c:
            labels = cluster_codes(codes, replace(fixed, seed=seed))
        add(f"pipeline, clustering seed {seed}", labels, c)
        seed_scores.append(clustering_scores(y, labels)["accuracy"])

    with Clock() as c:
        labels = cluster_codes(codes, auto_config)
    add("pipeline, automatic cluster count", labels, c)

    map_note = ""
    if not args.no_map:
        with Clock() as c:
            xy = compute_layout(codes, layout_config)
        map_note = (
            f"t-SNE map of the codes: 10-NN class agreement {knn_agreement(xy, y):.3f} "
            f"({c.wall:.1f} s wall, {c.cpu:.1f} s CPU)"
        )
        with Clock() as c:
            labels = cluster_codes(
                codes, ClusterConfig(method="layout_kmeans", n_clusters=n_classes, seed=args.seed), layout_xy=xy
            )
        add("k-means on the t-SNE map", labels, c)

    print()
    print(f"{'method':44} {'acc':>6} {'maj.acc':>7} {'NMI':>6} {'ARI':>6} {'k':>4} {'wall s':>7} {'cpu s':>7}")
    for name, s, wall, cpu, extra in rows:
        print(
            f"{name:44} {s['accuracy']:6.3f} {s['majority_accuracy']:7.3f} {s['nmi']:6.3f} {s['ari']:6.3f} "
            f"{s['n_clusters']:4d} {wall:7.1f} {cpu:7.1f} {extra}"
        )
    print(
        f"autoencoder: {trained.epochs_run} epochs, final loss {trained.loss_curve[-1]:.4f}, "
        f"{train_clock.wall:.1f} s wall, {train_clock.cpu:.1f} s CPU"
    )
    if map_note:
        print(map_note)
    print(
        f"one cluster per class over {len(seed_scores)} clustering seeds: accuracy min {min(seed_scores):.3f}, "
        f"median {float(np.median(seed_scores)):.3f}, max {max(seed_scores):.3f} (goal >= 0.95)"
    )


if __name__ == "__main__":
    main()
