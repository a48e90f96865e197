"""Ranking of review items: planted problems come first, scores are comparable."""

import numpy as np

from embeddings.ml.review_ranking import image_doubt, rank_review_items
from embeddings.ml.suggestions import suggest_classes

NAMES = ["zero", "one", "two"]


def planted_dataset(seed=0):
    """Three tight blobs = three clusters, every image labeled with its blob's class,
    except: one image of blob 0 mislabeled 'one', and cluster 3 (a blob of class two)
    half labeled 'zero'."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    codes = np.concatenate([rng.normal(c, 0.5, size=(25, 2)) for c in centers]).astype(np.float32)
    clusters = np.repeat(np.arange(4), 25)
    truth = np.array([0] * 25 + [1] * 25 + [2] * 25 + [2] * 25)
    labels = truth.copy()
    labels[7] = 1  # the planted mistake
    labels[75:88] = 0  # the planted mixed cluster: 13 'zero', 12 'two'
    return codes, clusters, labels


def ranked(codes, clusters, labels, **kw):
    s = suggest_classes(codes, labels, n_classes=3, k=8)
    return rank_review_items(
        clusters=clusters,
        labels=labels,
        suggestions=s.classes,
        confidence=s.confidence,
        reviewed=np.zeros(len(labels), bool),
        class_names=NAMES,
        **kw,
    )


def test_planted_mistake_and_mixed_cluster_come_first():
    codes, clusters, labels = planted_dataset()
    items = ranked(codes, clusters, labels)
    top = {(it.kind, it.key) for it in items[:2]}
    assert top == {("cluster", 3), ("image", 7)}, [(it.kind, it.key, it.score, it.reason) for it in items[:5]]
    mistake = next(it for it in items if (it.kind, it.key) == ("image", 7))
    assert mistake.suggested_class == 0
    assert "labeled 'one'" in mistake.reason and "'zero'" in mistake.reason
    mixed = next(it for it in items if (it.kind, it.key) == ("cluster", 3))
    assert "mixed classes" in mixed.reason
    assert len(mixed.members) == 25
    # Clean clusters 1 and 2 are not in the queue at all.
    assert ("cluster", 1) not in {(it.kind, it.key) for it in items}
    assert ("cluster", 2) not in {(it.kind, it.key) for it in items}


def test_fixing_the_labels_empties_the_queue():
    codes, clusters, labels = planted_dataset()
    labels[7] = 0
    labels[75:88] = 2
    assert ranked(codes, clusters, labels) == []


def test_reviewed_images_are_trusted():
    codes, clusters, labels = planted_dataset()
    s = suggest_classes(codes, labels, n_classes=3, k=8)
    reviewed = np.zeros(len(labels), bool)
    reviewed[7] = True
    items = rank_review_items(
        clusters=clusters,
        labels=labels,
        suggestions=s.classes,
        confidence=s.confidence,
        reviewed=reviewed,
        class_names=NAMES,
    )
    assert ("image", 7) not in {(it.kind, it.key) for it in items}
    assert image_doubt(labels, s.classes, s.confidence, reviewed)[7] == 0


def test_near_duplicates_with_different_classes_and_outliers_are_listed():
    codes, clusters, labels = planted_dataset()
    labels[7] = 0
    labels[75:88] = 2
    labels[30] = 1
    recon = np.full(len(labels), 0.01) + np.random.default_rng(1).normal(0, 0.001, len(labels))
    recon[50] = 0.2
    codes[31] = codes[30]  # 31 duplicates 30 ...
    labels[31] = 1
    labels[30] = 1
    labels_dup = labels.copy()
    labels_dup[31] = 0  # ... but carries another class
    items = ranked(codes, clusters, labels_dup, reconstruction_error=recon, duplicate_pairs=[(30, 31, 0.0)])
    by_key = {(it.kind, it.key): it for it in items}
    dup = by_key[("image", 31)]
    assert "near-duplicate" in dup.reason and set(dup.members.tolist()) == {30, 31}
    outlier = by_key[("image", 50)]
    assert "unusual image" in outlier.reason and 0.25 <= outlier.score <= 0.5
    assert dup.score > outlier.score


def test_unlabeled_low_confidence_and_scores_are_sorted():
    codes, clusters, labels = planted_dataset()
    labels[:] = -1
    labels[0], labels[25], labels[50] = 0, 1, 2
    # Cluster 3 is a bridge of images from the 'zero' blob to the 'one' blob.
    codes[75:, 0] = np.linspace(1.0, 9.0, 25)
    codes[75:, 1] = 0.0
    items = ranked(codes, clusters, labels)
    scores = [it.score for it in items]
    assert scores == sorted(scores, reverse=True)
    middle = 75 + int(np.argmin(np.abs(codes[75:, 0] - 5.0)))
    low = {it.key for it in items if it.kind == "image" and "low confidence" in it.reason}
    assert middle in low, [(i.kind, i.key, i.reason) for i in items[:5]]
    assert ("cluster", 3) in {(it.kind, it.key) for it in items}
