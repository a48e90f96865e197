"""Which confidence floor should bulk accept use when the user gives none?

Same setup as bench/calibration.py (PCA codes, k=10, random labeled subsets of
1 %, 5 % and 20 %, seeds 0-2, the calibrated suggestions): for each floor f,
on the unlabeled images, prints the share of images that would be accepted
(confidence >= f), the accuracy of those accepted labels, and the share of
all correct suggestions that the floor keeps (recall).  The default floor
(settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE) is the lowest floor
whose accepted labels stay >= 95 % right on every draw (the worst seed).

    .venv/bin/python bench/accept_floor.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.calibration import FRACTIONS, K, code_sets, parse_args, print_table, random_labels  # noqa: E402
from embeddings.ml.suggestions import UNLABELED, knn_graph_of, suggest_calibrated  # noqa: E402

FLOORS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)


def measure(name: str, codes: np.ndarray, truth: np.ndarray, seeds: int) -> list[str]:
    n_classes = int(truth.max()) + 1
    graph = knn_graph_of(codes, K)
    lines = []
    for fraction in FRACTIONS:
        per_floor = {f: [] for f in FLOORS}
        for seed in range(seeds):
            labels = random_labels(truth, fraction, seed)
            open_ = labels == UNLABELED
            s = suggest_calibrated(codes, labels, n_classes=n_classes, k=K, graph=graph)
            correct = s.classes[open_] == truth[open_]
            conf = s.confidence[open_]
            for f in FLOORS:
                taken = conf >= f
                acc = correct[taken].mean() if taken.any() else float("nan")
                recall = (correct & taken).sum() / max(1, correct.sum())
                per_floor[f].append((taken.mean(), acc, recall))
        for f in FLOORS:
            rows = np.array(per_floor[f])
            share, acc, recall = np.nanmean(rows, axis=0)
            worst = np.nanmin(rows[:, 1]) if not np.isnan(rows[:, 1]).all() else float("nan")
            lines.append(
                f"| {name} | {fraction:.0%} | {f:.2f} | {share:.3f} | {acc:.3f} (worst seed {worst:.3f}) | {recall:.3f} |"
            )
    return lines


def main() -> None:
    args = parse_args(__doc__)
    sets = code_sets(args.photos)
    t0 = time.perf_counter()
    print_table(
        "| dataset | labeled | floor | share accepted | accuracy of accepted | share of correct kept |",
        sets,
        lambda name, codes, truth: measure(name, codes, truth, args.seeds),
    )
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
