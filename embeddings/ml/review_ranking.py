"""Ranking what most needs a human reviewer.  Pure numpy: arrays in, items out.

Every item's score is on one scale, the expected number of wrong labels a
reviewer can fix by dealing with it:

- each image gets a *doubt* d in 0..1, the estimated chance that the class it
  has (or would get by accepting its suggestion) is wrong:
    labeled, neighbors agree        d = 1 - confidence
    labeled, neighbors disagree     d = confidence of the other class
    unlabeled with a suggestion      d = 1 - confidence
    reviewed by a reviewer            d = 0 (a person checked it)
- an image item scores its doubt (likely mistakes, low-confidence suggestions);
- a cluster item scores the sum of its images' doubts, counting only doubts of
  at least DOUBT_FLOOR so that a big, clean cluster does not accumulate noise;
  one look at a mixed cluster fixes several labels, so it ranks above one
  doubtful image exactly when it holds more expected mistakes.  A cluster
  whose classes are mixed scores at least MIXED_MINORITY_DOUBT (0.25) per
  image outside its top class, even when each image's neighbors agree with it;
- a cluster with nothing else wrong but not yet reviewed scores the sum of
  its images' doubts below 0.5 (no floor; higher ones are image items), listed when that reaches SWEEP_MIN_DOUBT:
  wrong labels that agree with each other hide from every neighbor test,
  and only a look at the cluster finds them;
- a near-duplicate pair with different classes scores 1 (one of the two
  labels is wrong unless the pair is genuinely ambiguous);
- a reconstruction-error outlier scores between 0.25 and 0.5 (or its doubt,
  if higher): worth a look, but below a likely mistake;
- an uploaded model's prediction (at least MODEL_MIN_CONFIDENCE) that disagrees
  with an image's label scores the model's confidence (the chance the label is
  wrong if the model is right that often); one that disagrees with an unlabeled
  image's neighbor suggestion scores the lower of the two confidences: two
  confident sources that disagree say most surely that one of them is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .neighbors import knn_graph, near_duplicate_pairs_and_threshold, near_duplicates_among

UNLABELED = -1
DOUBT_FLOOR = 0.2
MISTAKE_MIN_CONFIDENCE = 0.5  # "most of its neighbors" disagree
LOW_CONFIDENCE = 0.6
MIXED_MIN_MINORITY = 0.1  # a cluster is mixed when classes other than its top one hold >= 10 %
# Chance that an image outside its cluster's top class is wrong even when its neighbors do not say so.
MIXED_MINORITY_DOUBT = 0.25
# A cluster nobody reviewed, with no other reason to look, is listed when its
# images' doubts add up to this (its score is that sum, so it ranks last).
SWEEP_MIN_DOUBT = 0.05
OUTLIER_Z = 3.5  # robust z-score of the reconstruction error
MAX_OUTLIER_FRACTION = 0.01
MODEL_MIN_CONFIDENCE = 0.5  # a model's prediction below this is too unsure to question a label or suggestion


@dataclass
class RankedItem:
    kind: str  # "cluster" or "image"
    key: int  # cluster number, or the image's index into the arrays
    score: float
    reasons: list[str]
    members: np.ndarray  # image indices the item covers
    suggested_class: int  # class index, or UNLABELED
    codes: list[str] = field(default_factory=list)  # machine-readable reason codes

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def image_doubt(
    labels: np.ndarray, suggestions: np.ndarray, confidence: np.ndarray, reviewed: np.ndarray
) -> np.ndarray:
    """Per image, the estimated chance its class (or its suggestion, if unlabeled) is wrong."""
    labels = np.asarray(labels)
    suggestions = np.asarray(suggestions)
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    labeled = labels != UNLABELED
    suggested = suggestions != UNLABELED
    doubt = np.zeros(len(labels))
    agree = labeled & suggested & (suggestions == labels)
    disagree = labeled & suggested & (suggestions != labels)
    open_ = ~labeled & suggested
    doubt[agree] = 1.0 - confidence[agree]
    doubt[disagree] = confidence[disagree]
    doubt[open_] = 1.0 - confidence[open_]
    doubt[np.asarray(reviewed, dtype=bool)] = 0.0
    return doubt


def robust_z(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return values
    median = np.median(values)
    mad = np.median(np.abs(values - median)) * 1.4826
    if mad <= 0:
        mad = float(values.std()) or 1.0
    return (values - median) / mad


def _name(class_names: Sequence[str], c: int) -> str:
    return f"'{class_names[c]}'" if 0 <= c < len(class_names) else "?"


def _entropy_bits(counts: np.ndarray) -> float:
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def rank_review_items(
    *,
    clusters: np.ndarray,
    labels: np.ndarray,
    suggestions: np.ndarray,
    confidence: np.ndarray,
    reviewed: np.ndarray,
    class_names: Sequence[str],
    reconstruction_error: np.ndarray | None = None,
    duplicate_pairs: Sequence[tuple[int, int, float]] = (),
    predictions: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
) -> list[RankedItem]:
    """All review items, most useful first (see the module docstring for the score).

    predictions: per uploaded model, (name, class index per image (UNLABELED: none), confidence per image).
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    suggestions = np.asarray(suggestions, dtype=np.int64)
    confidence = np.asarray(confidence, dtype=np.float64)
    reviewed = np.asarray(reviewed, dtype=bool)
    n = len(labels)
    n_classes = max(len(class_names), int(labels.max(initial=-1)) + 1, int(suggestions.max(initial=-1)) + 1)
    doubt = image_doubt(labels, suggestions, confidence, reviewed)
    labeled = labels != UNLABELED
    effective = np.where(labeled, labels, suggestions)  # the class an image has or would get
    items: dict[tuple[str, int], RankedItem] = {}

    def add(kind, key, score, reason, code, members, suggested):
        item = items.get((kind, key))
        if item is None:
            items[(kind, key)] = RankedItem(
                kind, key, float(score), [reason], np.asarray(members, dtype=np.int64), int(suggested), [code]
            )
        else:
            item.score = max(item.score, float(score))
            item.reasons.append(reason)
            item.codes.append(code)
            if len(members) > len(item.members):
                item.members = np.asarray(members, dtype=np.int64)

    # Images whose class disagrees with most of their neighbors: likely mistakes.
    mistake = (
        labeled
        & ~reviewed
        & (suggestions != UNLABELED)
        & (suggestions != labels)
        & (confidence >= MISTAKE_MIN_CONFIDENCE)
    )
    for i in np.flatnonzero(mistake):
        # The code keeps its British spelling: reason codes reach clients as the review API's `codes` values.
        add(
            "image",
            int(i),
            doubt[i],
            f"labeled {_name(class_names, labels[i])} but {round(100 * confidence[i])} % of its neighbors "
            f"say {_name(class_names, suggestions[i])}",
            "disagrees_with_neighbours",
            [i],
            suggestions[i],
        )

    # Unlabeled images whose suggestion is unsure.
    unsure = ~labeled & (suggestions != UNLABELED) & (confidence < LOW_CONFIDENCE)
    for i in np.flatnonzero(unsure):
        add(
            "image",
            int(i),
            doubt[i],
            f"suggestion {_name(class_names, suggestions[i])} has low confidence ({round(100 * confidence[i])} %)",
            "low_confidence",
            [i],
            suggestions[i],
        )

    # Clusters: mixed classes, disagreeing suggestions, or low confidence overall.
    if n:
        order = np.argsort(clusters, kind="stable")
        bounds = np.flatnonzero(np.diff(clusters[order])) + 1
        for members in np.split(order, bounds):
            cluster = int(clusters[members[0]])
            considered = members[effective[members] != UNLABELED]
            if len(considered) == 0:
                continue
            counts = np.bincount(effective[considered], minlength=n_classes)
            top = int(counts.argmax())
            minority = 1.0 - counts[top] / counts.sum()
            d = doubt[members]
            expected_wrong = float(d[d >= DOUBT_FLOOR].sum())
            doubtful = int((d >= 0.5).sum())
            open_members = members[~labeled[members] & (suggestions[members] != UNLABELED)]
            mean_conf = float(confidence[open_members].mean()) if len(open_members) else 1.0
            # One doubtful image is its own image item; a cluster item needs more.
            if minority < MIXED_MIN_MINORITY and doubtful < 2 and mean_conf >= LOW_CONFIDENCE:
                unchecked = int((~reviewed[considered]).sum())
                total_doubt = float(d[d < 0.5].sum())  # the doubtful one has its own image item
                if unchecked and total_doubt >= SWEEP_MIN_DOUBT:
                    # Nothing stands out, but wrong labels that agree with each other hide
                    # from every neighbor test: a look at the whole cluster finds them.
                    add(
                        "cluster",
                        cluster,
                        total_doubt,
                        f"{unchecked} labels not reviewed yet (about {total_doubt:.1f} in doubt)",
                        "unreviewed",
                        members,
                        top,
                    )
                continue
            reasons, code = [], "mixed_classes"
            if minority >= MIXED_MIN_MINORITY:
                shown = np.argsort(-counts)[:3]
                parts = ", ".join(f"{int(counts[c])} {_name(class_names, int(c))}" for c in shown if counts[c])
                reasons.append(f"mixed classes ({parts}; entropy {_entropy_bits(counts):.2f} bits)")
            lab = members[labeled[members] & ~reviewed[members]]
            disagreeing = int((suggestions[lab] != labels[lab]).sum()) if len(lab) else 0
            if disagreeing:
                reasons.append(
                    f"{disagreeing} labeled image{'s' if disagreeing != 1 else ''} disagree with their neighbors"
                )
                code = code if minority >= MIXED_MIN_MINORITY else "disagreeing_suggestions"
            if len(open_members):
                if mean_conf < LOW_CONFIDENCE:
                    reasons.append(f"suggestions have low confidence (mean {round(100 * mean_conf)} %)")
                    code = code if reasons[:-1] else "low_confidence"
            if doubtful >= 2 and not disagreeing:
                reasons.append(f"{doubtful} images with uncertain suggestions")
                code = code if len(reasons) > 1 else "low_confidence"
            reasons.append(f"about {expected_wrong:.1f} labels in doubt")
            score = max(expected_wrong, MIXED_MINORITY_DOUBT * minority * len(considered))
            add("cluster", cluster, score, "; ".join(reasons), code, members, top)

    # Near-duplicates that carry different classes.
    for a, b, _dist in duplicate_pairs:
        a, b = int(a), int(b)
        if not (labeled[a] and labeled[b]) or labels[a] == labels[b] or (reviewed[a] and reviewed[b]):
            continue
        key, other = (a, b) if doubt[a] >= doubt[b] else (b, a)
        suggested = suggestions[key] if suggestions[key] != UNLABELED else labels[other]
        add(
            "image",
            key,
            1.0,
            f"near-duplicate of another image labeled {_name(class_names, labels[other])}, but this one is "
            f"{_name(class_names, labels[key])}",
            "near_duplicate_conflict",
            [key, other],
            suggested,
        )

    # Images the autoencoder reconstructs badly: unusual, possibly broken or out of place.
    if reconstruction_error is not None and n >= 10:
        z = robust_z(reconstruction_error)
        candidates = np.flatnonzero((z >= OUTLIER_Z) & ~reviewed)
        limit = max(1, int(math.ceil(MAX_OUTLIER_FRACTION * n)))
        for i in candidates[np.argsort(-z[candidates])][:limit]:
            score = max(doubt[i], 0.25 + 0.25 * min(1.0, (z[i] - OUTLIER_Z) / 6.5))
            add(
                "image",
                int(i),
                score,
                f"unusual image: reconstruction error {z[i]:.1f} robust standard deviations above typical",
                "outlier",
                [i],
                suggestions[i],
            )

    # Uploaded models that disagree with a label, or with the neighbors' suggestion for an unlabeled image.
    for model, predicted, predicted_confidence in predictions:
        predicted = np.asarray(predicted, dtype=np.int64)
        predicted_confidence = np.clip(np.asarray(predicted_confidence, dtype=np.float64), 0.0, 1.0)
        sure = (predicted != UNLABELED) & (predicted_confidence >= MODEL_MIN_CONFIDENCE)
        for i in np.flatnonzero(sure & labeled & ~reviewed & (predicted != labels)):
            add(
                "image",
                int(i),
                predicted_confidence[i],
                f"model {model} says {_name(class_names, predicted[i])} ({round(100 * predicted_confidence[i])} %), "
                f"labeled {_name(class_names, labels[i])}",
                "model_disagrees_with_label",
                [i],
                suggestions[i],  # what the queue's "accept" applies: the neighbors' class; relabel takes the model's
            )
        open_ = sure & ~labeled & (suggestions != UNLABELED) & (predicted != suggestions)
        for i in np.flatnonzero(open_):
            add(
                "image",
                int(i),
                min(predicted_confidence[i], confidence[i]),
                f"model {model} says {_name(class_names, predicted[i])} ({round(100 * predicted_confidence[i])} %), "
                f"neighbors suggest {_name(class_names, suggestions[i])} ({round(100 * confidence[i])} %)",
                "model_disagrees_with_neighbors",
                [i],
                suggestions[i],
            )

    ranked = sorted(items.values(), key=lambda it: (-it.score, 0 if it.kind == "cluster" else 1, it.key))
    return ranked


# --- near-duplicates, computed once per run -------------------------------------------------------------

NEAR_DUPLICATE_RELATIVE = 0.1  # of the median distance from an image to its nearest neighbor
PAIR_DTYPE = np.dtype([("a", "<i8"), ("b", "<i8"), ("distance", "<f4")])


def near_duplicate_threshold(codes: np.ndarray, relative: float = NEAR_DUPLICATE_RELATIVE) -> float:
    """The distance under which two codes count as near-duplicates: `relative` times
    the median nearest-neighbor distance, so it scales with the code space."""

    codes = np.asarray(codes, dtype=np.float32)
    if len(codes) < 2:
        return 0.0
    _, dist = knn_graph(codes, 1)
    return float(relative * np.median(dist[:, 0]))


def near_duplicates(codes: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, float]:
    """(pairs, threshold): every pair of rows (a < b) whose codes lie within the
    threshold, closest first, as a PAIR_DTYPE array of row indices."""

    codes = np.asarray(codes, dtype=np.float32)
    if len(codes) < 2:
        return np.zeros(0, dtype=PAIR_DTYPE), 0.0
    # The threshold (NEAR_DUPLICATE_RELATIVE of the median nearest-neighbor distance, as
    # near_duplicate_threshold computes it) and the pairs come from one neighbor search.
    pairs, threshold = near_duplicate_pairs_and_threshold(codes, threshold=threshold, relative=NEAR_DUPLICATE_RELATIVE)
    return np.array(pairs, dtype=PAIR_DTYPE) if pairs else np.zeros(0, dtype=PAIR_DTYPE), float(threshold)


def near_duplicates_of(codes: np.ndarray, rows: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs (a < b, PAIR_DTYPE, row indices) within threshold that involve one of
    `rows`: the pairs new images add to a map whose other pairs are known."""
    pairs = near_duplicates_among(codes, rows, threshold)
    return np.array(pairs, dtype=PAIR_DTYPE) if pairs else np.zeros(0, dtype=PAIR_DTYPE)
