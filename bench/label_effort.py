"""How many actions does it take to label a dataset with simlabel?

A simulated annotator who knows every image's true class works a dataset the
way a person would, through the REST API (``--through-api``: DRF's APIClient
against the real endpoints) or the services those endpoints call (the
default).  First the images are uploaded and a run with default parameters
(and the given seed) is executed synchronously in this process.  Then each
strategy starts from no labels on that same map, with these steps:

- clusters: label every cluster, largest first, with the class most of its
  images show (``POST …/annotations/bulk/ {class, cluster}``);
- one per class: label clusters largest first until every class seen has one;
- accept: preview the suggestions at the API's default floor
  (``POST …/suggestions/accept/ {dry_run: true}``, settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE)
  and accept them one class per action, most numerous first; again while a
  preview still offers some;
- review: work the review queue from the top (``GET …/review/?limit=1``,
  ``POST …/review/resolve/``): relabel the wrong images of the item, one action
  per true class, or accept the item's suggestion when that fixes more, or mark
  it reviewed when nothing in it is wrong (a "review mark", counted apart);
- retrain: on reaching 100 and again 200 actions per 1,000 images, start a run
  with default parameters (``POST …/runs/``, counted as one action), execute it
  here, accept again (if the strategy accepts) and carry on on the new map.

When a strategy's steps run out (the queue is empty or it has none) the
annotator labels the images still unlabeled one by one.  An action is one
request that applies a class to an image, a selection or a cluster, or starts a
run.  Clicks are counted too: one per action, plus, for a review relabel, the
clicks that select its images in the item (each image, or "select all" and
click off the rest, whichever is fewer).  Each strategy stops at 400 actions
per 1,000 images.  Printed per
dataset: the share of ALL images labeled correctly (unlabeled count as wrong)
after 50, 100, 200 and 400 actions per 1,000 images, and the actions per 1,000
to reach 80, 90, 95 and 98 %, beside one-by-one labeling (accuracy = actions/1,000).
Before the strategies, the one-class check: each class's largest cluster labeled alone, and
the highest confidence any unlabeled image of another class then gets (the issue: <= 0.5).

    .venv/bin/python bench/label_effort.py --through-api                        # digits, 1,797 images
    .venv/bin/python bench/label_effort.py --through-api --dataset photos --n 1000
    .venv/bin/python bench/label_effort.py --through-api --dataset fashion --n 1000
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHECKPOINTS = (50, 100, 200, 400)  # actions per 1,000 images
GOALS = (0.80, 0.90, 0.95, 0.98)
RETRAIN_AT = (100, 200)  # actions per 1,000 images
STRATEGIES = {
    # name: (first step, accept suggestions, work the review queue, retrain)
    "clusters": ("every", False, False, False),
    "one-per-class+accept": ("one", True, False, False),
    "clusters+review": ("every", False, True, False),
    "one-per-class+accept+review": ("one", True, True, False),
    "clusters+review+retrain": ("every", False, True, True),
    "one-per-class+accept+review+retrain": ("one", True, True, True),
}
STRATEGY_WORDS = {
    "clusters": "(a) label every cluster",
    "one-per-class+accept": "(b) one cluster per class, accept suggestions per class (floor)",
    "clusters+review": "(a)+(c) every cluster, review queue",
    "one-per-class+accept+review": "(b)+(c) one per class, accept (floor), review queue",
    "clusters+review+retrain": "(a)+(c)+(d) every cluster, review queue, runs at 100 and 200 (done-when)",
    "one-per-class+accept+review+retrain": "(b)+(c)+(d) one per class, accept, review, runs at 100 and 200",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        default="digits",
        help="digits | mnist5k | mnist10k | mnist-heldout (10,000 MNIST training digits no other set holds) | mnist | fashion | fashion10k | photos (held-out 5,000) | photos10k "
        "(bench/datasets.py)",
    )
    p.add_argument("--n", type=int, default=None, help="a seeded sample of this many images (default: the whole set)")
    p.add_argument("--seed", type=int, default=0, help="the sample's and the runs' seed")
    p.add_argument("--through-api", action="store_true", help="every read and action through the REST endpoints")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help=f"comma-separated, of {', '.join(STRATEGIES)}")
    p.add_argument("--budget", type=int, default=400, help="actions per 1,000 images after which a strategy stops")
    p.add_argument("--database-url", default=None, help="default: a fresh SQLite file in a temp dir")
    p.add_argument("--workdir", default=None, help="default: a temp dir, deleted afterwards")
    return p.parse_args(argv)


def setup_django(workdir: Path, database_url: str | None):
    os.environ["SIMLABEL_VAR_DIR"] = str(workdir / "var")
    os.environ["MEDIA_ROOT"] = str(workdir / "media")
    os.environ["SQLITE_PATH"] = str(workdir / "bench.sqlite3")
    os.environ.pop("CELERY_BROKER_URL", None)  # filesystem broker under the temp dir: tasks go nowhere
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def write_pngs(images: np.ndarray, folder: Path) -> list[str]:
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, img in enumerate(images):
        name = f"img{i:06d}.png"
        pixels = (img * 255).round().astype(np.uint8)
        # (1, H, W) gray or (3, H, W) colour, as PIL wants them: (H, W) or (H, W, 3).
        PILImage.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0)).save(folder / name)
        names.append(name)
    return names


def execute_run(run_id: int) -> float:
    """Does what an ml worker would, here and now; then what a succeeded run's follow-up task does."""
    from embeddings.models import RunStatus, TrainingRun
    from embeddings.services import training_run_execute

    t = time.perf_counter()
    outcome = training_run_execute(run_id=run_id, worker_name="label-effort bench")
    run = TrainingRun.objects.get(pk=run_id)
    if run.status != RunStatus.SUCCEEDED:
        raise SystemExit(f"run {run_id} {outcome}: {run.error}")
    return time.perf_counter() - t


class OutOfBudget(Exception):
    pass


class Annotator:
    """Knows the truth; acts only through its backend (API or services); counts actions."""

    def __init__(self, backend, dataset, truth: dict[int, int], class_of: dict[int, int], budget: int, params: dict):
        self.backend = backend
        self.dataset = dataset
        self.truth = truth  # image id -> true class id
        self.class_of = class_of  # true label -> class id
        self.n = len(truth)
        self.budget = budget
        self.params = params
        self.retrain_due = [math.ceil(k * self.n / 1000) for k in RETRAIN_AT]
        self.retrain = False
        self.accepts = False
        self.actions = 0
        self.review_marks = 0
        self.runs_started: list[int] = []
        self.run_seconds = 0.0
        self.clicks = 0  # an action's clicks: 1, or 1 + the clicks that select a relabel's images in the item
        self.curve: list[tuple[int, float, int]] = [(0, 0.0, 0)]

    # --- the measurement (not an action: the bench reads the database) -------------------------
    def accuracy(self) -> float:
        from labeling.models import Annotation

        labels = dict(Annotation.objects.filter(dataset=self.dataset).values_list("image_id", "label_class_id"))
        return sum(1 for i, c in self.truth.items() if labels.get(i) == c) / self.n

    def labels(self) -> dict[int, int | None]:
        from labeling.models import Annotation

        return dict(Annotation.objects.filter(dataset=self.dataset).values_list("image_id", "label_class_id"))

    def refresh_suggestions(self):
        # A person waits the few seconds the debounced recompute takes; the bench has no worker to run it.
        from embeddings.services.suggestions import suggestions_recompute

        suggestions_recompute(dataset=self.dataset)

    def acted(self, clicks: int = 1):
        self.actions += 1
        self.clicks += clicks
        self.curve.append((self.actions, self.accuracy(), self.clicks))
        if self.actions >= self.budget:
            raise OutOfBudget

    def checkpoint(self):
        """Between two requests: start the run that is due, if this strategy retrains."""
        if not (self.retrain and self.retrain_due and self.actions >= self.retrain_due[0]):
            return
        self.retrain_due.pop(0)
        run_id = self.backend.start_run(dict(self.params))
        self.runs_started.append(run_id)
        self.run_seconds += execute_run(run_id)
        self.refresh_suggestions()
        self.acted()
        if self.accepts:
            self.accept_per_class()

    # --- steps --------------------------------------------------------------------------------
    def label_clusters(self, every: bool):
        covered = Counter()
        for cluster in self.backend.clusters():
            votes = Counter(self.truth[i] for i in cluster["image_ids"] if i in self.truth)
            if not votes:
                continue
            majority = votes.most_common(1)[0][0]
            if not every and covered[majority]:
                continue  # looking at a cluster is free; this class is covered already
            self.checkpoint()
            self.backend.label_cluster(cluster["id"], majority)
            covered[majority] += 1
            self.acted()

    def accept_per_class(self):
        """The Suggestions card: preview at the default floor, accept class by class; again while it offers more."""
        for _ in range(10):
            self.refresh_suggestions()
            offered = self.backend.accept_preview()
            if not offered:
                return
            for class_id, _count in offered:
                self.checkpoint()
                self.backend.accept_class(class_id)
                self.acted()

    def work_review_queue(self):
        marks_left = self.n  # an endless run of items with nothing wrong would stop here
        while self.accuracy() < 1.0:
            self.checkpoint()
            self.refresh_suggestions()
            item = self.backend.review_top()
            if item is None:
                return
            labels = self.labels()
            ids = [i for i in item["image_ids"] if i in self.truth]
            wrong = [i for i in ids if labels.get(i) != self.truth[i]]
            if not wrong:
                self.backend.resolve(item, "reviewed")
                self.review_marks += 1
                marks_left -= 1
                if marks_left <= 0:
                    return
                continue
            suggested = self.backend.suggestions()
            fixed_by_accept = sum(1 for i in wrong if suggested.get(i) == self.truth[i])
            broken_by_accept = sum(1 for i in ids if i not in wrong and suggested.get(i) not in (None, labels.get(i)))
            groups = Counter(self.truth[i] for i in wrong)
            if fixed_by_accept - broken_by_accept > groups.most_common(1)[0][1]:
                self.backend.resolve(item, "accepted")
                self.acted()
                continue
            # Lasso the item, deselect what is right: one action per true class among the wrong
            # ones, biggest first.  In a cluster item a lone stray of some class is left for later
            # (a cluster relabelled in part returns to the queue while it holds unchecked images,
            # and a stray its neighbors disagree with is an image item): one click for one image
            # is the most expensive fix there is.
            for rank, (class_id, size) in enumerate(groups.most_common()):
                if rank and size == 1 and item["kind"] == "cluster":
                    continue
                selection = [i for i in wrong if self.truth[i] == class_id]
                self.backend.resolve(item, "relabelled", class_id=class_id, image_ids=selection)
                # Click each image, or "select all" and click off the others, whichever is fewer; then the class.
                self.acted(clicks=1 + min(len(selection), 1 + len(item["image_ids"]) - len(selection)))

    def label_one_by_one(self):
        """When the strategy's steps run out: the images still unlabeled, one request each."""
        for image_id in self.backend.unlabeled_ids():
            self.checkpoint()
            self.backend.label_image(image_id, self.truth[image_id])
            self.acted()

    def work(self, strategy: str):
        first, accepts, reviews, retrains = STRATEGIES[strategy]
        self.accepts, self.retrain = accepts, retrains
        try:
            self.label_clusters(every=first == "every")
            if accepts:
                self.accept_per_class()
            if reviews:
                self.work_review_queue()
            self.label_one_by_one()
        except OutOfBudget:
            pass

    # --- the report ---------------------------------------------------------------------------
    def accuracy_at(self, per_1000: int) -> float:
        limit = per_1000 * self.n / 1000
        return [acc for a, acc, _ in self.curve if a <= limit][-1]

    def per_1000_to(self, goal: float, clicks: bool = False) -> float | None:
        return next((1000 * (c if clicks else a) / self.n for a, acc, c in self.curve if acc >= goal), None)


def reset_dataset(dataset, keep_run_id: int):
    """Back to an unlabeled dataset on the first map, so strategies compare on equal terms."""
    from embeddings.models import ImageEmbedding, TrainingRun
    from labeling.models import Annotation, AnnotationHistory, LabelAction, ReviewResolution

    TrainingRun.objects.filter(dataset=dataset, id__gt=keep_run_id).delete()  # a retraining strategy's runs
    AnnotationHistory.objects.filter(dataset=dataset).delete()
    Annotation.objects.filter(dataset=dataset).delete()
    LabelAction.objects.filter(dataset=dataset).delete()
    ReviewResolution.objects.filter(dataset=dataset).delete()
    ImageEmbedding.objects.filter(run__dataset=dataset).update(suggested_class=None, suggestion_confidence=None)


def one_class_check(backend, dataset, truth: dict[int, int], keep_run_id: int) -> dict:
    """The demo's failure, on this map: for each class in turn, its largest cluster (by that class's
    images) labeled with it, nothing else; read every suggestion's confidence as the map page does.

    Returns the highest confidence of an unlabeled image of another class ("worst"), how many of
    those were above 0.5 and at 0.4 or more, how many were checked, the mean confidence of the
    labeled class's unlabeled images, and how many classes were checked."""
    clusters = backend.clusters()
    worst, above, near, checked, classes, same = 0.0, 0, 0, 0, 0, []
    for true_class in sorted(set(truth.values())):
        best = max(clusters, key=lambda c: sum(1 for i in c["image_ids"] if truth.get(i) == true_class))
        if not any(truth.get(i) == true_class for i in best["image_ids"]):
            continue
        reset_dataset(dataset, keep_run_id)
        backend.label_cluster(best["id"], true_class)
        from embeddings.services.suggestions import suggestions_recompute

        suggestions_recompute(dataset=dataset)
        labeled = set(best["image_ids"])
        confidence = backend.suggestion_confidences()
        others = [confidence.get(i, 0.0) for i, c in truth.items() if c != true_class and i not in labeled]
        same += [confidence.get(i, 0.0) for i, c in truth.items() if c == true_class and i not in labeled]
        worst = max([worst, *others])
        above += sum(1 for v in others if v > 0.5)
        near += sum(1 for v in others if v >= 0.4)
        checked += len(others)
        classes += 1
    reset_dataset(dataset, keep_run_id)
    rest = sum(same) / len(same) if same else float("nan")
    return {"worst": worst, "above": above, "near": near, "checked": checked, "rest": rest, "classes": classes}


def main(argv=None):
    args = parse_args(argv)
    from bench.datasets import load_dataset

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; one of {list(STRATEGIES)}")
    x, y = load_dataset(args.dataset, args.n, args.seed)
    tmp = tempfile.TemporaryDirectory(prefix="simlabel-bench-") if args.workdir is None else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    setup_django(workdir, args.database_url)

    from django.conf import settings
    from django.contrib.auth import get_user_model

    from bench._effort_backends import ApiBackend, ServiceBackend
    from embeddings.ml.run_params import run_param_defaults
    from embeddings.models import TrainingRun
    from labeling.models import Image
    from labeling.services.datasets import dataset_create, label_class_create
    from labeling.services.images import images_ingest_path

    user = get_user_model().objects.create_user(username=f"bench{int(time.time())}", password="x-Bench-123")
    dataset = dataset_create(user=user, name=f"{args.dataset} label-effort bench")
    truths = sorted(set(int(v) for v in y))
    class_of = {t: label_class_create(dataset=dataset, name=str(t)).pk for t in truths}
    backend = (ApiBackend if args.through_api else ServiceBackend)(dataset, user)

    names = write_pngs(x, workdir / "images")
    truth_by_name = {name: class_of[int(label)] for name, label in zip(names, y)}
    t = time.perf_counter()
    report = images_ingest_path(dataset=dataset, user=user, path=workdir / "images")
    t_ingest = time.perf_counter() - t
    truth = {
        image_id: truth_by_name[Path(original_name).name]
        for image_id, original_name in Image.objects.filter(dataset=dataset).values_list("id", "original_name")
    }
    n = len(truth)

    params = {"seed": args.seed}  # everything else the run form's defaults
    first_run = backend.start_run(params)
    t_pipeline = execute_run(first_run)
    run = TrainingRun.objects.get(pk=first_run)
    learns_from_labels = "use_labels" in run_param_defaults()
    print(
        f"\ndataset {args.dataset}: {n} images ({len(report.skipped)} duplicates skipped), {len(truths)} classes, "
        f"{run.cluster_count} clusters on the first map; ingest {t_ingest:.0f} s, first run {t_pipeline:.0f} s; "
        f"seed {args.seed}; through the {backend.name}; accept floor "
        f"{settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE}; runs {'learn' if learns_from_labels else 'do NOT learn'} "
        f"from labels (use_labels {'present' if learns_from_labels else 'absent'})",
        flush=True,
    )
    t = time.perf_counter()
    check = one_class_check(backend, dataset, truth, first_run)
    print(
        f"one class labeled (each class's largest cluster in turn, {check['classes']} classes, suggestions read "
        f"through the {backend.name}): highest confidence of an unlabeled image of another class "
        f"{check['worst']:.3f}; {check['above']} of {check['checked']} above 0.5, {check['near']} at 0.4 or more; "
        f"mean confidence of the labeled class's unlabeled images {check['rest']:.3f}; "
        f"{time.perf_counter() - t:.0f} s",
        flush=True,
    )
    budget = math.ceil(args.budget * n / 1000)
    results = []
    for strategy in strategies:
        reset_dataset(dataset, first_run)
        annotator = Annotator(backend, dataset, truth, class_of, budget, params)
        t = time.perf_counter()
        annotator.work(strategy)
        print(
            f"  {strategy}: {annotator.actions} actions, {100 * annotator.accuracy():.1f} % correct, "
            f"{annotator.clicks} clicks, {annotator.review_marks} review marks, {len(annotator.runs_started)} runs ({annotator.run_seconds:.0f} s); "
            f"{time.perf_counter() - t:.0f} s",
            flush=True,
        )
        results.append((strategy, annotator))

    def pct(v):
        return f"{100 * v:.1f}"

    def per_k(v):
        return f"> {args.budget}" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"

    head = " | ".join(f"@{k}" for k in CHECKPOINTS if k <= args.budget)
    goals = " | ".join(f"to {round(100 * g)} %" for g in GOALS) + " | clicks to 95 %"
    print(f"\n| {args.dataset}, {n} images, seed {args.seed} | {head} | {goals} |")
    print("|---" * (2 + len([k for k in CHECKPOINTS if k <= args.budget]) + len(GOALS)) + "|")
    for strategy, a in results:
        cells = [pct(a.accuracy_at(k)) for k in CHECKPOINTS if k <= args.budget]
        cells += [per_k(a.per_1000_to(g)) for g in GOALS]
        clicks95 = a.per_1000_to(0.95, clicks=True)
        cells.append("-" if clicks95 is None else per_k(clicks95))
        print(f"| {STRATEGY_WORDS[strategy]} | {' | '.join(cells)} |")
    cells = [f"{k / 10:.1f}" for k in CHECKPOINTS if k <= args.budget] + [f"{1000 * g:.0f}" for g in GOALS] + ["950"]
    print(f"| one-by-one labeling | {' | '.join(cells)} |")
    print(
        f"\n(accuracy in % of all images after N actions per 1,000; then actions per 1,000 to reach each goal; "
        f"total {time.perf_counter() - t_start:.0f} s)"
    )
    if tmp is not None:
        tmp.cleanup()
    return results


if __name__ == "__main__":
    main()
