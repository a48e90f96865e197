"""Learning from people's labels: the map with labels vs without, measured on the images nobody labeled.

    nice .venv/bin/python bench/learn_from_labels.py                       # mnist5k and photos, 2,000 each
    .venv/bin/python bench/learn_from_labels.py --datasets photos --fractions 0.05 --seeds 0

For each dataset and seed, the pipeline (embeddings.ml.pipeline, the default
configs of recommended_configs and the default training budget, its steps
only) runs once without labels and once per labeled fraction, with that share
of the images (a seeded random sample, the same for both runs) labeled and
passed to training as class indices (training.train_autoencoder's labels,
whatever config.choose_labels would decide: this is what its threshold is
chosen from).  Every score is over the UNLABELED images only:
  knn     share of each image's 10 nearest neighbors in code space that share its class
  map     the same on the 2-D map (what people see)
  purity  cluster purity of the pipeline's clusters (each cluster read as its majority class)
  spread  accuracy of label spreading (suggestions.suggest_spreading, the suggestions' method)
          from the labeled images: what the labels already give without retraining
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

import numpy as np  # noqa: E402

from bench.datasets import load_dataset  # noqa: E402
from bench.objectives import spread  # noqa: E402
from embeddings.ml.config import recommended_configs  # noqa: E402
from embeddings.ml.metrics import majority_accuracy  # noqa: E402
from embeddings.ml.neighbors import knn_graph  # noqa: E402
from embeddings.ml.pipeline import run_pipeline  # noqa: E402
from embeddings.ml.suggestions import suggest_spreading  # noqa: E402

METRICS = ("knn", "map", "purity", "spread")


def labeled_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    if fraction > 0:
        mask[np.random.default_rng(1000 + seed).choice(n, max(2, round(n * fraction)), replace=False)] = True
    return mask


def agreement(points: np.ndarray, y: np.ndarray, rows: np.ndarray, k: int = 10) -> float:
    idx, _ = knn_graph(points, k, n_jobs=1)
    return float((y[idx[rows]] == y[rows, None]).mean())


def scores(result, y: np.ndarray, mask: np.ndarray) -> dict:
    rows = np.flatnonzero(~mask)
    out = {
        "knn": agreement(result.codes, y, rows),
        "map": agreement(result.xy, y, rows),
        "purity": majority_accuracy(y[rows], result.clusters[rows]),
        "spread": float("nan"),
    }
    if mask.any():
        suggested = suggest_spreading(result.codes, np.where(mask, y, -1), n_classes=int(y.max()) + 1).classes
        out["spread"] = float((suggested[rows] == y[rows]).mean())
    return out


def run(x, y, seed: int, labels: np.ndarray | None, patch_features: str = "auto", patch_weight: float | None = None):
    train, layout, cluster = recommended_configs(len(x), input_size=x.shape[2], channels=x.shape[1], seed=seed)
    train.num_threads, layout.n_jobs, cluster.n_jobs = 1, 1, 1
    train.patch_features = patch_features
    if patch_weight is not None:
        train.patch_weight = patch_weight
    train.budget_clock = False
    started = time.perf_counter()
    result = run_pipeline(x, train, layout, cluster, labels=labels)
    return result, time.perf_counter() - started


def spread_of(values: list[float]) -> str:
    values = [v for v in values if not np.isnan(v)]
    return spread(values) if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="mnist5k,photos")
    parser.add_argument("--n", type=int, default=2000, help="images per dataset (a seeded sample)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--fractions", default="0.01,0.05,0.2", help="labeled shares (0 is always run)")
    parser.add_argument(
        "--patch-features", default="auto", help="the runs' patch_features setting: auto, on or off (both runs)"
    )
    parser.add_argument("--patch-weight", type=float, default=None, help="the learned code's weight beside them")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",") if float(f) > 0]
    import torch

    torch.set_num_threads(1)
    table: dict[tuple, dict[str, list[dict]]] = {}
    for name in args.datasets.split(","):
        x, y = load_dataset(name, args.n or None, seed=0)
        for seed in seeds:
            baseline, seconds = run(x, y, seed, None, args.patch_features, args.patch_weight)
            print(f"  {name} seed {seed} no labels: {seconds:.0f} s", flush=True)
            table.setdefault((name, 0.0), {}).setdefault("without", []).append(
                scores(baseline, y, np.zeros(len(y), bool))
            )
            for fraction in fractions:
                mask = labeled_mask(len(y), fraction, seed)
                result, seconds = run(x, y, seed, np.where(mask, y, -1), args.patch_features, args.patch_weight)
                cell = table.setdefault((name, fraction), {})
                cell.setdefault("without", []).append(scores(baseline, y, mask))
                cell.setdefault("with", []).append(out := scores(result, y, mask))
                print(
                    f"  {name} seed {seed} {fraction:.0%} labeled ({mask.sum()}): "
                    + " ".join(f"{m} {out[m]:.3f}" for m in METRICS)
                    + f"; {result.labels_used} used, {seconds:.0f} s",
                    flush=True,
                )
    print(
        f"\nN {args.n}, seeds {seeds}, patch features {args.patch_features}: mean (min-max) over the unlabeled "
        f"images; load {os.getloadavg()[0]:.1f}"
    )
    print(f"| dataset | labeled | labels | {' | '.join(METRICS)} |")
    print("|---|---|---|" + "---|" * len(METRICS))
    for (name, fraction), cell in table.items():
        for key in ("without", "with"):
            if key not in cell:
                continue
            values = " | ".join(spread_of([e[m] for e in cell[key]]) for m in METRICS)
            print(f"| {name} | {fraction:.0%} | {key} | {values} |")


if __name__ == "__main__":
    main()
