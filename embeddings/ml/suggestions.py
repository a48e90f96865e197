"""Label suggestions: spread the classes people applied to their neighbors in code space.

Three methods, all on the k-nearest-neighbor graph of the codes:

- ``"calibrated"`` (default): label spreading for the class, and a confidence
  that is the measured probability that the suggestion is right (see
  ``suggest_calibrated``).
- ``"spreading"``: label spreading (Zhou et al. 2004) on the symmetric kNN
  graph with self-tuning Gaussian weights; confidence is the winning class's
  (sharpened) share among the classes that reached the image.  With one class
  labeled that share is 1 everywhere, which is why it is no longer the default.
- ``"knn"``: a distance-weighted vote of the k nearest *labeled* images.

Every image gets "what its neighbors say", labeled ones included: for a
labeled image the vote leaves the image itself out, so a label that
disagrees with its neighborhood shows up as a suggestion of another class
(used to find likely mistakes).

Measured on scikit-learn's digits (1,797 images, autoencoder codes, k=10,
random labeled subsets; accuracy on the unlabeled images):

    labeled      30      100     300     (mean of 2 random draws)
    knn           0.49    0.84    0.92
    spreading     0.86    0.91    0.96

so the class comes from spreading; ``bench/calibration.py`` measures the
confidence (expected calibration error) of the old and the calibrated method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .neighbors import NeighborIndex, knn_graph

UNLABELED = -1
# The slope of the unlabeled-class logistic in log reach (``_in_labeled_classes``): on 1 % of
# digits labeled (tuning seeds 10-19, not the bench's 0-2) 0.5, 1, 2, 3, 5 gave mean ECE 0.109,
# 0.082, 0.062, 0.061, 0.064, the clipped estimate alone 0.069.
PU_SHARPNESS = 3.0
# Under this many labels the calibration's cross-validation runs FEW_LABELS_REPEATS times
# with FEW_LABELS_FOLDS folds (see ``suggest_calibrated``).
FEW_LABELS = 200
FEW_LABELS_FOLDS = 5
FEW_LABELS_REPEATS = 3
# The calibration's prior, in labeled images (see ``suggest_calibrated``): on 1 % of digits
# labeled (tuning seeds 10-19) 1, 2, 3.3, 5 labels' worth gave mean ECE 0.058, 0.056, 0.054, 0.054
# (0.061 without, 0.075 before the repeats and the unlabeled-class logistic); photos 1 % (100
# labels) 0.045 against 0.046.
PRIOR_LABELS = 4.0
# With one class labeled no suggestion's confidence reaches this (see ``_in_labeled_classes``):
# nothing measures where that class ends until a second class has labels.
ONE_CLASS_CEILING = 0.49


@dataclass
class Suggestions:
    classes: np.ndarray  # (N,) int64 class index, UNLABELED where nothing reached the image
    confidence: np.ndarray  # (N,) float32 0..1, 0 where there is no suggestion
    probabilities: np.ndarray  # (N, C) float32; rows sum to 1 - other (0 where nothing reached)
    # (N,) float32: the probability that the image belongs to none of the labeled classes
    # (only the calibrated method estimates it; 0 for the others).
    other: np.ndarray | None = None

    def __post_init__(self):
        if self.other is None:
            self.other = np.zeros(len(self.classes), dtype=np.float32)


def _check(codes: np.ndarray, labels: np.ndarray, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    codes = np.ascontiguousarray(codes, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if codes.ndim != 2 or len(codes) != len(labels):
        raise ValueError("codes must be (N, D) and labels (N,)")
    if n_classes is None:
        n_classes = int(labels.max(initial=-1)) + 1
    if labels.max(initial=-1) >= n_classes or labels.min(initial=0) < UNLABELED:
        raise ValueError("labels must be in -1..n_classes-1")
    return codes, labels, n_classes


def _finish(probs: np.ndarray) -> Suggestions:
    total = probs.sum(axis=1)
    reached = total > 0
    probs = np.where(reached[:, None], probs / np.where(reached, total, 1.0)[:, None], 0.0).astype(np.float32)
    classes = np.where(reached, probs.argmax(axis=1), UNLABELED).astype(np.int64)
    confidence = np.where(reached, probs.max(axis=1), 0.0).astype(np.float32)
    return Suggestions(classes, confidence, probs)


def _empty(n: int, n_classes: int) -> Suggestions:
    return Suggestions(
        np.full(n, UNLABELED, dtype=np.int64), np.zeros(n, dtype=np.float32), np.zeros((n, n_classes), dtype=np.float32)
    )


def knn_graph_of(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) of each image's k nearest other images."""

    return knn_graph(codes, k)


def suggest_knn(codes: np.ndarray, labels: np.ndarray, n_classes: int | None = None, k: int = 10) -> Suggestions:
    """Distance-weighted vote of each image's k nearest labeled images (itself excluded)."""

    codes, labels, n_classes = _check(codes, labels, n_classes)
    n = len(codes)
    labeled = np.flatnonzero(labels != UNLABELED)
    if n == 0 or n_classes == 0 or len(labeled) == 0:
        return _empty(n, n_classes)
    position = np.full(n, -1, dtype=np.int64)
    position[labeled] = np.arange(len(labeled))
    idx, dist = NeighborIndex(codes[labeled]).query_many(codes, k, exclude=position)
    if idx.shape[1] == 0:
        return _empty(n, n_classes)
    # Inverse distance, relative to each row's nearest so scale does not matter;
    # the epsilon keeps exact duplicates from taking every vote.
    d = dist.astype(np.float64)
    scale = np.maximum(d[:, :1], 1e-6 * (float(d.mean()) + 1e-12))
    weights = 1.0 / (d / scale + 1.0)
    probs = np.zeros((n, n_classes))
    rows = np.repeat(np.arange(n), idx.shape[1])
    np.add.at(probs, (rows, labels[labeled][idx].ravel()), weights.ravel())
    return _finish(probs)


def _affinity(codes: np.ndarray, k: int, graph=None):
    """Symmetric sparse kNN affinity with self-tuning Gaussian weights
    exp(-d_ij^2 / (s_i s_j)), s_i = distance to the i-th image's 7th neighbor."""
    from scipy import sparse

    n = len(codes)
    idx, dist = graph if graph is not None else knn_graph_of(codes, k)
    k = idx.shape[1]
    if k == 0:
        return sparse.csr_matrix((n, n))
    d = dist.astype(np.float64)
    local = d[:, min(6, k - 1)]
    local = np.maximum(local, 1e-6 * (float(local.mean()) + 1e-12))
    rows = np.repeat(np.arange(n), k)
    cols = idx.ravel()
    w = np.exp(-(d.ravel() ** 2) / (local[rows] * local[cols]))
    w = np.maximum(w, 1e-12)  # a neighbor is never cut off entirely
    a = sparse.csr_matrix((w, (rows, cols)), shape=(n, n))
    a = a.maximum(a.T)
    a.setdiag(0)
    a.eliminate_zeros()
    return a


def _normalized_graph(codes: np.ndarray, k: int, graph=None):
    """(W, S): the symmetric affinity and S = D^-1/2 W D^-1/2."""
    from scipy import sparse

    graph = graph if graph is not None else knn_graph_of(codes, k)
    w = _affinity(codes, k, graph)
    degree = np.asarray(w.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0)), 0.0)
    return w, sparse.diags(inv_sqrt) @ w @ sparse.diags(inv_sqrt)


def _spread(s, y: np.ndarray, alpha: float, iterations: int) -> np.ndarray:
    """Each image's neighbors' view S F of F <- alpha S F + (1 - alpha) Y (not row-normalized)."""
    f = y.copy()
    for _ in range(iterations):
        f = alpha * (s @ f) + (1.0 - alpha) * y
    return np.maximum(s @ f, 0.0)


def _row_shares(x: np.ndarray) -> np.ndarray:
    total = x.sum(axis=1, keepdims=True)
    return np.divide(x, total, out=np.zeros_like(x), where=total > 0)


def _spread_shares(w, s, labels: np.ndarray, n_classes: int, alpha: float, iterations: int) -> np.ndarray:
    """(N, C) class shares: spread for unlabeled images; for a labeled image the
    affinity-weighted vote of its neighbors (itself excluded), labeled neighbors
    voting their label and unlabeled ones their spread shares."""
    n = len(labels)
    labeled = np.flatnonzero(labels != UNLABELED)
    y = np.zeros((n, n_classes))
    y[labeled, labels[labeled]] = 1.0
    # Each row of F is scaled by its degree; normalizing by rows compares classes only.
    shares = _row_shares(_spread(s, y, alpha, iterations))
    opinion = shares.copy()
    opinion[labeled] = y[labeled]
    shares[labeled] = _row_shares(np.asarray(w[labeled] @ opinion))
    return shares


@dataclass
class _SpreadingGraph:
    labels: np.ndarray
    n_classes: int
    labeled: np.ndarray  # indices of the labeled images
    w: object  # the symmetric affinity (sparse)
    s: object  # D^-1/2 W D^-1/2 (sparse)


def _spreading_graph(codes: np.ndarray, labels: np.ndarray, n_classes: int | None, k: int, graph):
    """The checked inputs and the normalized graph label spreading runs on, or the
    empty Suggestions when there is nothing to spread (under two images, no class
    or no label)."""
    codes, labels, n_classes = _check(codes, labels, n_classes)
    labeled = np.flatnonzero(labels != UNLABELED)
    if len(codes) < 2 or n_classes == 0 or len(labeled) == 0:
        return _empty(len(codes), n_classes)
    w, s = _normalized_graph(codes, k, graph)
    return _SpreadingGraph(labels, n_classes, labeled, w, s)


def suggest_spreading(
    codes: np.ndarray,
    labels: np.ndarray,
    n_classes: int | None = None,
    k: int = 10,
    alpha: float = 0.9,
    iterations: int = 30,
    sharpen: float = 2.0,
    graph=None,
) -> Suggestions:
    """Label spreading F <- alpha S F + (1 - alpha) Y on the normalized kNN graph
    S = D^-1/2 W D^-1/2, for unlabeled images: their neighbors' share of the
    spread labels, S F, raised to the power `sharpen` and renormalized (the raw
    shares are under-confident: on digits with 300 labels, alpha 0.9, mean
    confidence 0.78 against accuracy 0.97; squared, 0.93).

    A labeled image's own label would flow back to it through its neighbors
    and hide a mistake, so a labeled image gets the vote of its k nearest
    images instead: labeled neighbors vote their label, unlabeled ones
    their spread shares, weighted by the same Gaussian affinity."""
    graph = _spreading_graph(codes, labels, n_classes, k, graph)
    if isinstance(graph, Suggestions):
        return graph
    return _finish(_spread_shares(graph.w, graph.s, graph.labels, graph.n_classes, alpha, iterations) ** sharpen)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _calibration_features(shares: np.ndarray, reach: np.ndarray) -> np.ndarray:
    return np.column_stack([_logit(shares.max(axis=1)), _logit(reach)])


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 50, weight: np.ndarray | None = None
) -> np.ndarray:
    """Weights (intercept first) of an L2-regularized logistic regression, by Newton's method.
    The penalty keeps a few dozen samples (1 % of a small dataset labeled) from overfitting.
    `y` may be a probability (a soft target) and `weight` each sample's weight (default 1)."""
    x = np.column_stack([np.ones(len(x)), x])
    weight = np.ones(len(x)) if weight is None else weight
    beta = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 1e-6  # the intercept is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
        grad = x.T @ (weight * (p - y)) + penalty * beta
        hess = (x * (weight * p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def _fit_monotone(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """A logistic fit whose weights are all >= 0 (a larger share or reach never makes a
    suggestion less likely right): a feature that comes out negative, which on a
    few labels is noise (e.g. a fully labeled mixed cluster), is dropped and the rest refit."""
    keep = list(range(x.shape[1]))
    while True:
        beta = _fit_logistic(x[:, keep], y, weight=weight)
        negative = [j for j, b in zip(keep, beta[1:]) if b < 0]
        if not negative:
            full = np.zeros(x.shape[1] + 1)
            full[0] = beta[0]
            full[1 + np.asarray(keep, dtype=int)] = beta[1:]
            return full
        keep = [j for j in keep if j not in negative]


def _predict_logistic(beta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(beta[0] + x @ beta[1:], -30, 30)))


def _in_labeled_classes(reach: np.ndarray, labels: np.ndarray, classes_labeled: int, n_classes: int) -> np.ndarray:
    """P(an image belongs to one of the labeled classes), by positive-unlabeled learning.

    Under Elkan & Noto's assumption (labeled images are a random sample of their
    classes, a share c of them) an unlabeled image of reach g belongs to a labeled
    class with probability a * g / (1 - g), a = (1 - c) / c, clipped to 1.
    Assuming each class holds about N / C images, c is n_labeled / (m N / C), and
    the unlabeled images hold about m N / C - n_labeled of the labeled classes'
    images.  Reach measured on a few labels is noisy and the clipping loses mass,
    so a second factor is solved for (bisection) that makes the probabilities add
    up to that count (on 18 labels of digits, (1 - c) / c alone put 0.57 of the
    unlabeled images in labeled classes against 0.9 expected).  The two are
    blended by c, in log space: with a small share of the labeled classes
    labeled, reach is noisy and the count decides; with most of them labeled (70 %
    of one class, or one whole cluster), c itself is the better measure, and the
    count would hand its last few expected images to whichever image sits
    nearest the labeled ones."""
    labeled = labels != UNLABELED
    open_ = ~labeled
    result = np.ones(len(labels))
    if not open_.any():
        return result
    images_of_labeled_classes = max(classes_labeled * len(labels) / n_classes, 1.0)
    expected = images_of_labeled_classes - labeled.sum()
    target = float(np.clip(expected / open_.sum(), 1.0 / (open_.sum() + 1), 1.0))
    g = np.clip(reach[open_], 0.0, 1.0 - 1e-9)
    odds = g / (1.0 - g)
    lo, hi = -30.0, 30.0  # log of the factor
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.minimum(1.0, np.exp(mid) * odds).mean() < target:
            lo = mid
        else:
            hi = mid
    c = float(np.clip(labeled.sum() / images_of_labeled_classes, 1e-9, 1.0 - 1e-9))
    factor = np.exp(c * np.log((1.0 - c) / c) + (1.0 - c) * hi)
    result[open_] = np.minimum(1.0, factor * odds)
    if classes_labeled > 1:
        # With several classes labeled, the clipped count above gives 1 to the top
        # m/C of the images by reach, and an unlabeled class whose images sit near
        # one class's few labels gets it too (18 labels of digits: the missing
        # class's images had mean confidence 0.6 on some draws).  A logistic in
        # log reach ranks the same but never says "surely a labeled class" from reach
        # alone; blended by c like the factor, so that a mostly labeled set keeps c's
        # measure.  (One class labeled: below.)
        soft = _count_matched_logistic(odds, target)
        result[open_] = np.exp(c * np.log(np.maximum(result[open_], 1e-300)) + (1.0 - c) * np.log(soft))
    else:
        # One class labeled: no label of a second class says where the labeled one ends, and
        # the estimate above rests on the labels being a random sample of their class, which
        # nothing can check.  On 10,000 held-out MNIST digits' PCA codes it gave up to 0.81 to
        # images of a neighbouring class (20 above 0.5, of 90,000 checks), though the images it
        # put at 0.5-0.9 were 94-100 % of the labeled class; on the pipeline's codes, with a whole
        # cluster labeled, 1.0 to 611 (bench/label_effort.py's one-class check).  So p becomes
        # p / (1 + p), as if an unseen class were as likely, scaled to stay under one half
        # (ONE_CLASS_CEILING): the order is kept (the review queue and the Suggestions card still
        # rank by it), no floor of 0.5 or more accepts a suggestion before a second class is
        # labeled, and small values barely move.
        result[open_] = 2.0 * ONE_CLASS_CEILING * result[open_] / (1.0 + result[open_])
    return result


def _count_matched_logistic(odds: np.ndarray, target: float) -> np.ndarray:
    """sigmoid(PU_SHARPNESS * log(odds) + b), b solved (bisection) so the mean is `target`."""
    score = PU_SHARPNESS * np.log(np.maximum(odds, 1e-300))
    lo, hi = -1000.0, 1000.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if _sigmoid(score + mid).mean() < target:
            lo = mid
        else:
            hi = mid
    return np.maximum(_sigmoid(score + hi), 1e-300)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500.0, 500.0)))


def suggest_calibrated(
    codes: np.ndarray,
    labels: np.ndarray,
    n_classes: int | None = None,
    k: int = 10,
    alpha: float = 0.9,
    iterations: int = 30,
    folds: int = 10,
    seed: int = 0,
    graph=None,
) -> Suggestions:
    """Label spreading's class, with a confidence that is the probability the suggestion is right.

    The confidence of an unlabeled image is the product of two measured parts:

    1. P(right | the image is of a labeled class), calibrated on the labeled
       images themselves: `folds`-fold cross-validation (fewer folds hide fewer labels,
       which matters with a handful of labels per class) hides each fold's
       labels, spreads the rest, and fits a logistic regression from what the
       held-out images looked like (the winning class's share, and the reach:
       the share of labeled images in the image's spread neighborhood, low for
       images far from every labeled example) to whether the suggestion matched
       their label.  Under FEW_LABELS labels the folds are drawn FEW_LABELS_REPEATS
       times; the fit is shrunk toward a prior that is not fitted to the dataset
       (right as often as the winning class's spread share, on the unlabeled images,
       worth PRIOR_LABELS labels, so it fades as labels come): a dozen held-out
       labels measure the rate only to about +-0.1.
    2. P(the image is of a labeled class).  Labels cannot measure this, since
       every labeled image is of a labeled class, so it comes from
       positive-unlabeled learning (see ``_in_labeled_classes``): with m of the C
       classes labeled, about m/C of the images belong to labeled classes, and
       the ones with the highest reach are the likeliest.  With every class
       labeled it is 1; with one class of ten labeled, images outside the
       labeled neighborhood get almost nothing, where the old share said 1.0,
       and none reaches ONE_CLASS_CEILING until a second class has labels.

    `other` is 1 minus part 2; `probabilities` are the spread shares scaled by part 2.
    A labeled image's confidence stays the (sharpened) share of its neighbors
    that say its suggested class, as in ``suggest_spreading``: the review queue
    reads it as the chance that the label is a mistake.
    """
    graph = _spreading_graph(codes, labels, n_classes, k, graph)
    if isinstance(graph, Suggestions):
        return graph
    labels, n_classes, labeled, w, s = graph.labels, graph.n_classes, graph.labeled, graph.w, graph.s
    n = len(labels)
    ones = np.ones((n, 1))

    total = _spread(s, ones, alpha, iterations)[:, 0]

    def reach_of(lab: np.ndarray) -> np.ndarray:
        # The share of labeled images in each image's spread neighborhood (the
        # all-ones spread normalizes away the degree).  A labeled image, like its
        # class share, gets its neighbors' view, its own label left out, so it
        # looks the way the held-out images of the cross-validation looked.
        is_labeled = lab != UNLABELED
        indicator = is_labeled.astype(np.float64)[:, None]
        reach = np.divide(_spread(s, indicator, alpha, iterations)[:, 0], total, out=np.zeros(n), where=total > 0)
        rows = np.flatnonzero(is_labeled)
        opinion = np.where(is_labeled, 1.0, reach)
        weight = np.asarray(w[rows].sum(axis=1)).ravel()
        reach[rows] = np.divide(
            np.asarray(w[rows] @ opinion).ravel(), weight, out=np.zeros(len(rows)), where=weight > 0
        )
        return reach

    shares = _spread_shares(w, s, labels, n_classes, alpha, iterations)
    reach = reach_of(labels)
    classes_labeled = np.unique(labels[labeled])
    calibrator = None
    right_if_labeled_class = 1.0  # one labeled class: a suggestion of a labeled class cannot be wrong
    if len(classes_labeled) > 1:
        # Ten folds hide a tenth of the labels each.  With few labels, which labels share a
        # fold decides whether a class keeps one, so the folds are drawn several times and
        # every draw's held-out images kept (1 % of digits and photos labeled, tuning seeds
        # 10-19: mean ECE 0.075 and 0.050 with ten folds once, 0.069 and 0.042 with five folds
        # three times; leaving one out gave 0.070 and 0.047 at up to 100 spreads).
        n_folds, repeats = (FEW_LABELS_FOLDS, FEW_LABELS_REPEATS) if len(labeled) < FEW_LABELS else (folds, 1)
        n_folds = max(2, min(n_folds, len(labeled)))
        rng = np.random.default_rng(seed)
        orders = [rng.permutation(labeled) for _ in range(repeats)]
        feats, hits = [], []
        for held in (order[f::n_folds] for order in orders for f in range(n_folds)):
            partial = labels.copy()
            partial[held] = UNLABELED
            if not (partial != UNLABELED).any():
                continue
            # A held-out image whose class has no label left in the fold measures an
            # unlabeled class, which part 2 accounts for, not part 1.
            held = held[np.isin(labels[held], partial[partial != UNLABELED])]
            if len(held) == 0:
                continue
            fold_shares = _spread_shares(w, s, partial, n_classes, alpha, iterations)[held]
            feats.append(_calibration_features(fold_shares, reach_of(partial)[held]))
            hits.append((fold_shares.max(axis=1) > 0) & (fold_shares.argmax(axis=1) == labels[held]))
        x = np.concatenate(feats) if feats else np.zeros((0, 2))
        y = np.concatenate(hits).astype(np.float64) if hits else np.zeros(0)
        open_ = np.flatnonzero(labels == UNLABELED)
        if len(y) and len(open_):
            # Each label is held out once per repeat, so the prior counts once per repeat
            # too.  Shrink toward a prior that knows nothing of the dataset: a suggestion is as often right as its
            # class's share among the spread labels, worth PRIOR_LABELS labeled images spread
            # over the unlabeled ones.  A dozen held-out labels say the rate within +-0.1; the
            # prior steadies that and fades as labels come (20 % of digits: 360 labels).
            x = np.concatenate([x, _calibration_features(shares[open_], reach[open_])])
            weight = np.concatenate([np.ones(len(y)), np.full(len(open_), repeats * PRIOR_LABELS / len(open_))])
            y = np.concatenate([y, shares[open_].max(axis=1)])
            calibrator = _fit_monotone(x, y, weight)
        elif 0 < y.sum() < len(y):
            calibrator = _fit_monotone(x, y)
        else:
            # All right (or all wrong): nothing to regress on; Laplace's rule of succession.
            right_if_labeled_class = (y.sum() + 1.0) / (len(y) + 2.0)

    if calibrator is not None:
        right = _predict_logistic(calibrator, _calibration_features(shares, reach))
    else:
        right = np.full(n, right_if_labeled_class)

    in_labeled_class = np.ones(n)
    if len(classes_labeled) < n_classes:
        in_labeled_class = _in_labeled_classes(reach, labels, len(classes_labeled), n_classes)

    reached = shares.sum(axis=1) > 0
    classes = np.where(reached, shares.argmax(axis=1), UNLABELED).astype(np.int64)
    confidence = np.where(reached, right * in_labeled_class, 0.0)
    # A labeled image's "suggestion" is what its neighbors say about a label someone
    # set, read by the review queue as the chance the label is a mistake; it keeps
    # the sharpened neighbor share (calibrating it would need known mistakes).
    votes = shares[labeled] ** 2.0
    vote_total = votes.sum(axis=1)
    confidence[labeled] = np.divide(votes.max(axis=1), vote_total, out=np.zeros(len(labeled)), where=vote_total > 0)
    confidence = confidence.astype(np.float32)
    probabilities = (shares * in_labeled_class[:, None]).astype(np.float32)
    other = np.where(reached, 1.0 - in_labeled_class, 0.0).astype(np.float32)
    return Suggestions(classes, confidence, probabilities, other)


METHODS = {"calibrated": suggest_calibrated, "spreading": suggest_spreading, "knn": suggest_knn}


def suggest_classes(
    codes: np.ndarray, labels: np.ndarray, n_classes: int | None = None, method: str = "calibrated", k: int = 10
) -> Suggestions:
    """Suggested class and confidence for every image (see module docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown suggestion method {method!r}; one of {sorted(METHODS)}")
    return METHODS[method](codes, labels, n_classes=n_classes, k=k)
