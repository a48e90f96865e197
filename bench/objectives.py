"""Encoder objectives side by side, on photos, digits and clothes, through the pipeline.

    .venv/bin/python bench/objectives.py                  # photos (held-out), mnist5k, fashion 5k; seeds 0,1
    .venv/bin/python bench/objectives.py --datasets photos --n 2000 --seeds 0
    .venv/bin/python bench/objectives.py --datasets photos-tune --objectives contrastive   # where settings are tuned

For each dataset and seed, the pipeline (embeddings.ml.pipeline, the default
configs of recommended_configs, so the default training budget for N images)
runs once per objective (reconstruction, contrastive without patch features
('contrastive:off'), contrastive; 'auto' is whichever the rule picks, marked),
and once on "uploaded" vectors: PCA-50 of the pixels
through run_pipeline_on_codes, the baseline, measured in the same run.  It
prints for each: the share of each image's 10 nearest neighbors in code space
(Euclidean, as the similar-images view finds them) that share its class;
cluster purity (each cluster labeled with its majority class) at the
pipeline's default cluster count, with the pipeline's clusters; accuracy of
one cluster per class (the pipeline's clustering at k = number of classes,
Hungarian-matched); and the wall seconds of each stage (PCA or training,
embedding, layout, clustering) and the CPU seconds of them all.  Training
gets the default budget for N images (config.training_budget), by default
its steps only (--clock: also its clock, as the app does).  Several seeds give each number's spread
(mean, min-max).  Training runs on one torch thread, as the worker's default
on the 2-core machine.

Datasets (bench/datasets.py): 'photos' is the held-out half of the
photos-dev-10k set (settings were chosen on 'photos-tune', the other half);
'mnist5k' MNIST digits; 'fashion' Fashion-MNIST clothes.  --n takes a seeded
sample of each.
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
from embeddings.ml.clustering import cluster_codes  # noqa: E402
from embeddings.ml.config import choose_objective, recommended_configs  # noqa: E402
from embeddings.ml.metrics import hungarian_accuracy, majority_accuracy  # noqa: E402
from embeddings.ml.neighbors import knn_graph  # noqa: E402
from embeddings.ml.pipeline import run_pipeline, run_pipeline_on_codes  # noqa: E402

UPLOADED = "uploaded: pixels PCA-50"
STAGE_COLUMNS = ("prepare", "training", "embedding", "layout", "clustering")


def knn_agreement(codes: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    idx, _ = knn_graph(codes, k, n_jobs=1)
    return float((y[idx] == y[:, None]).mean())


def pca50(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    flat = x.reshape(len(x), -1)
    return PCA(n_components=min(50, *flat.shape), random_state=seed).fit_transform(flat).astype(np.float32)


def configs(x: np.ndarray, seed: int, objective: str | None, args):
    """objective: 'contrastive', or with the patch features' setting after a colon ('contrastive:off')."""
    train, layout, cluster = recommended_configs(len(x), input_size=x.shape[2], channels=x.shape[1], seed=seed)
    train.num_threads, layout.n_jobs, cluster.n_jobs = 1, 1, 1
    if objective is not None:
        train.objective, _, patches = objective.partition(":")
        train.patch_features = patches or "auto"
    train.budget_clock = args.clock
    if args.budget_s is not None:
        train.max_seconds = args.budget_s
    if args.epochs is not None:
        train.epochs = args.epochs
    return train, layout, cluster


def scores(codes: np.ndarray, clusters: np.ndarray, y: np.ndarray, cluster_config) -> dict:
    from dataclasses import replace

    per_class = cluster_codes(codes, replace(cluster_config, n_clusters=len(np.unique(y))))
    return {
        "knn": knn_agreement(codes, y),
        "purity": majority_accuracy(y, clusters),
        "per_class": hungarian_accuracy(y, per_class),
        "n_clusters": int(len(np.unique(clusters))),
    }


def run_uploaded(x, y, seed, args) -> dict:
    started = time.perf_counter()
    codes = pca50(x, seed)
    prepare = time.perf_counter() - started
    _, layout, cluster = configs(x, seed, None, args)
    result = run_pipeline_on_codes(codes, layout, cluster)
    out = scores(codes, result.clusters, y, cluster)
    out["seconds"] = {"prepare": prepare, **result.timings}
    out["cpu"] = prepare + sum(result.cpu_timings.values())
    return out


def run_objective(x, y, seed, objective, args) -> dict:
    train, layout, cluster = configs(x, seed, objective, args)
    info = {}
    result = run_pipeline(
        x, train, layout, cluster, after_training=lambda t: info.update(objective=t.objective, patches=t.patch_features)
    )
    out = scores(result.codes, result.clusters, y, cluster)
    out["seconds"] = dict(result.timings)
    out["cpu"] = sum(result.cpu_timings.values())
    out["epochs"] = result.epochs_run
    out["budget"] = result.training_budget["reason"]
    out["recon_mse"] = float(result.recon_error.mean())
    out["patches"] = info["patches"]
    return out


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="photos,mnist5k,fashion")
    parser.add_argument("--n", type=int, default=5000, help="images per dataset (a seeded sample); 0: all")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument(
        "--objectives",
        default="reconstruction,contrastive:off,contrastive",
        help="objectives, each optionally with the patch features' setting after a colon (auto, on, off)",
    )
    parser.add_argument("--budget-s", type=float, default=None, help="training seconds (default: the pipeline's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the pipeline's)")
    parser.add_argument(
        "--clock",
        action="store_true",
        help="let the default budget's clock end training, as in the app (default: its steps only, so a busy "
        "machine trains what an idle one would)",
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    import torch

    torch.set_num_threads(1)

    rows = []
    for name in args.datasets.split(","):
        x, y = load_dataset(name, args.n or None, seed=0)
        auto, _ = choose_objective("auto", x.shape[1])
        results: dict[str, list[dict]] = {}
        for seed in seeds:
            results.setdefault(UPLOADED, []).append(run_uploaded(x, y, seed, args))
            for objective in args.objectives.split(","):
                key = objective + (" (auto)" if objective == auto else "")
                out = run_objective(x, y, seed, objective, args)
                results.setdefault(key, []).append(out)
                print(
                    f"  {name} seed {seed} {objective}: knn {out['knn']:.3f} purity {out['purity']:.3f} "
                    f"per-class {out['per_class']:.3f}; {out['epochs']} epochs in {out['seconds']['training']:.0f} s "
                    f"(budget {out['budget']}); recon mse {out['recon_mse']:.4f}; patch features {out['patches']}; "
                    "stage seconds " + ", ".join(f"{k} {v:.1f}" for k, v in out["seconds"].items()),
                    flush=True,
                )
        for key, entries in results.items():
            rows.append((name, len(x), key, entries))

    clock = "steps and clock" if args.clock else "steps only"
    print(
        f"\nseeds {seeds}; mean (min-max); seconds are wall means; default training budget ({clock}); 1 torch "
        f"thread, 1 job for layout and clustering; load average {os.getloadavg()[0]:.1f} at the end"
    )
    head = f"{'dataset':<12} {'N':>6} {'codes':<26} {'10-NN agreement':<20} {'cluster purity':<20} {'1 per class':<20}"
    print(head + " " + " ".join(f"{s:>10}" for s in STAGE_COLUMNS) + "    CPU s  clusters")
    for name, n, key, entries in rows:
        cells = [spread([e[m] for e in entries]) for m in ("knn", "purity", "per_class")]
        secs = [np.mean([e["seconds"].get(s, np.nan) for e in entries]) for s in STAGE_COLUMNS]
        seconds = " ".join(f"{'-' if np.isnan(s) else f'{s:.1f}':>10}" for s in secs)
        clusters = np.mean([e["n_clusters"] for e in entries])
        cpu = np.mean([e["cpu"] for e in entries])
        print(
            f"{name:<12} {n:>6} {key:<26} {cells[0]:<20} {cells[1]:<20} {cells[2]:<20} {seconds} {cpu:8.1f}  {clusters:8.0f}"
        )


if __name__ == "__main__":
    main()
