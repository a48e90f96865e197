"""Encoder objectives side by side, on photos and on digits.

    .venv/bin/python bench/objectives.py                                 # photos (held-out half) and digits
    .venv/bin/python bench/objectives.py --n 2000 --budget-s 30 --seeds 0
    .venv/bin/python bench/objectives.py --photos PATH --datasets photos --split tune

For each dataset and each objective (reconstruction, contrastive, and what
'auto' picks), train the pipeline's encoder for at most --budget-s seconds
(and the default epochs), embed every image, and print: the share of each
image's 10 nearest neighbors in code space (Euclidean, as the similar-images
view finds them) that share its class, cluster purity (majority class) at the
pipeline's default cluster count with the pipeline's clustering, and the
training seconds; beside the same numbers for PCA-50 of the pixels, measured
in the same run.  Several --seeds give each number's spread (min-max).

Photos: the 10,000-photo set of ../shared/data (CIFAR-10 kind).  Its images
are split in two halves by a fixed seed: 'tune' (where settings were chosen)
and 'heldout' (reported); --n takes a seeded sample of the half.  Digits:
scikit-learn's 1,797 digits upscaled to 28 px (bench/datasets.py).
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
from embeddings.ml.config import ClusterConfig, choose_objective, recommended_configs  # noqa: E402
from embeddings.ml.inference import embed_images  # noqa: E402
from embeddings.ml.metrics import majority_accuracy  # noqa: E402
from embeddings.ml.neighbors import knn_graph  # noqa: E402
from embeddings.ml.training import train_autoencoder  # noqa: E402

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos-dev-10k.npz"


def load_photos(path: Path, split: str, n: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as f:
        x, y = f["X"], f["y"].astype(np.int64)
    order = np.random.default_rng(12345).permutation(len(x))  # fixed: the halves never change
    half = order[: len(x) // 2] if split == "tune" else order[len(x) // 2 :]
    if n is not None and n < len(half):
        half = np.sort(np.random.default_rng(seed).choice(half, n, replace=False))
    images = np.ascontiguousarray(x[half].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    return images, y[half]


def knn_agreement(codes: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    idx, _ = knn_graph(codes, k, n_jobs=1)
    return float((y[idx] == y[:, None]).mean())


def purity(codes: np.ndarray, y: np.ndarray, seed: int) -> float:
    return majority_accuracy(y, cluster_codes(codes, ClusterConfig(seed=seed, n_jobs=1)))


def pca50(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    flat = x.reshape(len(x), -1)
    return PCA(n_components=min(50, *flat.shape), random_state=seed).fit_transform(flat).astype(np.float32)


def run_objective(x, objective: str, seed: int, budget_s: float, overrides: dict) -> dict:
    train, _, _ = recommended_configs(len(x), input_size=x.shape[2], channels=x.shape[1], seed=seed)
    train.objective, train.max_seconds, train.num_threads = objective, budget_s, 1
    for key, value in overrides.items():
        if value is not None:
            setattr(train, key, value)
    trained = train_autoencoder(x, train)
    codes, errors = embed_images(trained.model, x)
    return {
        "codes": codes,
        "seconds": trained.seconds,
        "epochs": trained.epochs_run,
        "ran": trained.objective,
        "recon_mse": float(errors.mean()),
    }


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="photos,digits")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--split", choices=("tune", "heldout"), default="heldout")
    parser.add_argument("--n", type=int, default=None, help="images per dataset (a seeded sample)")
    parser.add_argument("--budget-s", type=float, default=120.0, help="training seconds per model at most")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--objectives", default="reconstruction,contrastive")
    parser.add_argument("--weight", type=float, default=None, help="contrastive_weight (default: TrainConfig's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: TrainConfig's)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default: TrainConfig's)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    import torch

    torch.set_num_threads(1)

    rows = []
    for name in args.datasets.split(","):
        if name == "photos":
            x, y = load_photos(args.photos, args.split, args.n)
            label = f"photos/{args.split}"
        else:
            x, y = load_dataset(name, args.n)
            label = name
        auto, _ = choose_objective("auto", x.shape[1])
        results: dict[str, dict[str, list]] = {}
        for seed in seeds:
            started = time.perf_counter()
            base = pca50(x, seed)
            seconds = time.perf_counter() - started
            entry = results.setdefault("pixels PCA-50", {"knn": [], "purity": [], "seconds": [], "epochs": []})
            entry["knn"].append(knn_agreement(base, y))
            entry["purity"].append(purity(base, y, seed))
            entry["seconds"].append(seconds)
            for objective in args.objectives.split(","):
                overrides = {"contrastive_weight": args.weight, "epochs": args.epochs, "batch_size": args.batch_size}
                out = run_objective(x, objective, seed, args.budget_s, overrides)
                key = objective + (" (auto)" if objective == auto else "")
                entry = results.setdefault(key, {"knn": [], "purity": [], "seconds": [], "epochs": []})
                entry["knn"].append(knn_agreement(out["codes"], y))
                entry["purity"].append(purity(out["codes"], y, seed))
                entry["seconds"].append(out["seconds"])
                entry["epochs"].append(out["epochs"])
                print(
                    f"  {label} seed {seed} {objective}: knn {entry['knn'][-1]:.3f} purity "
                    f"{entry['purity'][-1]:.3f} {out['seconds']:.0f} s {out['epochs']} epochs "
                    f"recon mse {out['recon_mse']:.4f}",
                    flush=True,
                )
        for key, entry in results.items():
            rows.append((label, len(x), key, entry))

    print(f"\nseeds {seeds}, training budget {args.budget_s:g} s, 1 torch thread")
    print(f"{'dataset':<16} {'N':>6} {'codes':<26} {'10-NN agreement':<22} {'cluster purity':<22} train s")
    for label, n, key, entry in rows:
        train_s = f"{np.mean(entry['seconds']):.0f}" + (
            f" ({np.mean(entry['epochs']):.0f} ep)" if entry["epochs"] else ""
        )
        print(f"{label:<16} {n:>6} {key:<26} {spread(entry['knn']):<22} {spread(entry['purity']):<22} {train_s}")


if __name__ == "__main__":
    main()
