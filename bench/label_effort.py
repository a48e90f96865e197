"""How many actions does it take to label a dataset with simlabel?

A simulated annotator who knows every image's true class works a labeled
dataset only through the app's own services, the way a person would:

1. upload the images (images_ingest_path) and run the pipeline
   (training_run_start + training_run_execute, synchronously);
2. label whole clusters, largest first, with the class most of their images
   show: every cluster (strategy 'none'), or until every class it has seen has
   a labeled cluster (the others);
3. accept the suggestions (strategy 'class': one class at a time, the class
   with most pending suggestions first, as the map's Suggestions card does;
   'cluster': one cluster at a time, most confident first; 'all': everything
   in one request), or none;
4. work the review queue from the top: for each item, select the images that
   are wrong and share one true class and relabel them (one action per class
   fixed, biggest group first; a lone stray in a cluster item is left for
   later), or accept the item's suggestions when that fixes more, or mark the
   item reviewed when nothing in it is wrong (a "review mark").

An action is one request that applies one class to one image, a selection or
a cluster (review marks change no label and are counted separately).  It
prints the actions per 1,000 images needed to reach 95 % and 98 % correct
labels over ALL images, beside one-by-one labelling (1,000 per 1,000).

    .venv/bin/python bench/label_effort.py                  # digits, 1,797 images
    .venv/bin/python bench/label_effort.py --dataset mnist5k    # 5,000 MNIST digits
    .venv/bin/python bench/label_effort.py --dataset photos     # 5,000 colour photos (held-out half)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        default="digits",
        help="digits | mnist5k | mnist10k | mnist | fashion10k | photos (held-out 5,000) | photos10k | synthetic "
        "(bench/datasets.py)",
    )
    p.add_argument("--n", type=int, default=None, help="use this many images (default: the whole set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="default: the pipeline's")
    p.add_argument("--batch-size", type=int, default=None, help="default: the pipeline's")
    p.add_argument("--n-clusters", type=int, default=None, help="default: the pipeline's choice (about sqrt(N/2))")
    p.add_argument("--layout", default="umap", choices=["tsne", "umap"])
    p.add_argument(
        "--clusters-per-class",
        type=int,
        default=1,
        help="phase 2 labels clusters until each class seen has this many labeled clusters",
    )
    p.add_argument(
        "--accept-scope",
        default="none,class,cluster,all",
        help="comma-separated strategies, each run on the same map: 'none' labels every cluster and "
        "accepts no suggestion; 'class' accepts suggestions one class per action, 'cluster' one "
        "cluster per action, 'all' every suggestion in one action",
    )
    p.add_argument("--max-review-actions", type=int, default=400)
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


SCOPE_WORDS = {
    "class": "one class per action",
    "cluster": "one cluster per action",
    "all": "all in one action",
    "none": "none (every cluster labeled instead)",
}


class Annotator:
    """Knows the truth; acts only through the app's services; counts actions."""

    def __init__(self, dataset, user, truth_by_image: dict[int, int], class_by_digit: dict):
        self.dataset = dataset
        self.user = user
        self.truth = truth_by_image
        self.class_by_digit = class_by_digit
        self.digit_by_class = {c.pk: d for d, c in class_by_digit.items()}
        self.actions = 0
        self.review_marks = 0
        self.milestones: dict[float, int] = {}
        self.log: list[tuple[int, float, str]] = []

    # --- what the annotator sees ---------------------------------------------------------
    def labels(self) -> dict[int, int | None]:
        from labeling.models import Annotation

        return dict(Annotation.objects.filter(dataset=self.dataset).values_list("image_id", "label_class_id"))

    def accuracy(self) -> float:
        labels = self.labels()
        correct = sum(1 for i, d in self.truth.items() if labels.get(i) == self.class_by_digit[d].pk)
        return correct / len(self.truth)

    def refresh_suggestions(self):
        # A person waits the few seconds the debounced recompute takes.
        from embeddings.services.suggestions import suggestions_recompute

        suggestions_recompute(dataset=self.dataset)

    def acted(self, what: str):
        self.actions += 1
        acc = self.accuracy()
        self.log.append((self.actions, acc, what))
        for goal in (0.95, 0.98):
            if acc >= goal and goal not in self.milestones:
                self.milestones[goal] = self.actions

    # --- phases ----------------------------------------------------------------------------------
    def label_clusters(self, clusters_per_class: int | None):
        """Largest first, each with the class most of its images show; None: every cluster."""
        from embeddings.selectors import dataset_clusters
        from labeling.services.annotations import annotations_apply_to_cluster

        labeled_per_digit = Counter()
        for cluster in dataset_clusters(self.dataset, order="size"):
            digits = Counter(self.truth[i] for i in cluster["image_ids"] if i in self.truth)
            if not digits:
                continue
            majority = digits.most_common(1)[0][0]
            if clusters_per_class is not None and labeled_per_digit[majority] >= clusters_per_class:
                continue  # looking at a cluster is free; this class is covered already
            annotations_apply_to_cluster(
                dataset=self.dataset, user=self.user, label_class=self.class_by_digit[majority], cluster=cluster["id"]
            )
            labeled_per_digit[majority] += 1
            self.acted(f"label cluster {cluster['id']} as {majority}")

    def accept_suggestions(self, scope: str):
        from embeddings.models import ImageEmbedding
        from embeddings.selectors import current_run
        from labeling.services.suggestions import suggestions_accept

        self.refresh_suggestions()
        if scope == "none":
            return
        if scope == "all":
            suggestions_accept(dataset=self.dataset, user=self.user)
            self.acted("accept all suggestions")
            return
        run = current_run(self.dataset)
        labels = self.labels()
        if scope == "class":
            # The map's suggestion panel: "accept 412 x seven", most numerous first.
            pending = Counter(
                class_id
                for image_id, class_id in ImageEmbedding.objects.filter(
                    run=run, suggested_class__isnull=False
                ).values_list("image_id", "suggested_class_id")
                if labels.get(image_id) is None
            )
            for class_id, _ in pending.most_common():
                suggestions_accept(
                    dataset=self.dataset, user=self.user, label_class=self.class_by_digit[self.digit_by_class[class_id]]
                )
                self.acted(f"accept suggestions of class {self.digit_by_class[class_id]}")
            return
        by_cluster = defaultdict(list)
        for image_id, cluster, conf in ImageEmbedding.objects.filter(
            run=run, suggested_class__isnull=False
        ).values_list("image_id", "cluster", "suggestion_confidence"):
            if labels.get(image_id) is None:
                by_cluster[cluster].append(conf)
        order = sorted(by_cluster, key=lambda c: -float(np.mean(by_cluster[c])))
        for cluster in order:
            suggestions_accept(dataset=self.dataset, user=self.user, cluster=cluster)
            self.acted(f"accept suggestions of cluster {cluster}")

    def work_review_queue(self, max_actions: int, goal: float = 0.98):
        from embeddings.models import ImageEmbedding
        from embeddings.selectors import current_run
        from labeling.selectors.review import review_queue_for_dataset
        from labeling.services.review import review_item_resolve

        run = current_run(self.dataset)
        spent = 0
        while spent < max_actions and self.accuracy() < goal:
            self.refresh_suggestions()
            queue = review_queue_for_dataset(self.dataset, limit=1)
            if not queue:
                break
            item = queue[0]
            labels = self.labels()
            ids = [i for i in item["image_ids"] if i in self.truth]
            wrong = [i for i in ids if labels.get(i) != self.class_by_digit[self.truth[i]].pk]
            if not wrong:
                review_item_resolve(
                    dataset=self.dataset, user=self.user, kind=item["kind"], object_id=item["id"], outcome="reviewed"
                )
                self.review_marks += 1
                continue
            suggested = dict(
                ImageEmbedding.objects.filter(run=run, image_id__in=ids).values_list("image_id", "suggested_class_id")
            )
            fixed_by_accept = sum(1 for i in wrong if suggested.get(i) == self.class_by_digit[self.truth[i]].pk)
            broken_by_accept = sum(1 for i in ids if i not in wrong and suggested.get(i) not in (None, labels.get(i)))
            groups = Counter(self.truth[i] for i in wrong)
            digit, size = groups.most_common(1)[0]
            if fixed_by_accept - broken_by_accept > size:
                review_item_resolve(
                    dataset=self.dataset, user=self.user, kind=item["kind"], object_id=item["id"], outcome="accepted"
                )
                spent += 1
                self.acted(f"accept {item['kind']} {item['id']} ({item['reason'][:60]})")
                continue
            # Lasso the item, deselect what is right: one action per true class among the wrong
            # ones, biggest first.  In a cluster item a lone stray of some class is left for later
            # (it comes back as an image item if its neighbors disagree): one click for one image
            # is the most expensive fix there is.
            for rank, (digit, size) in enumerate(groups.most_common()):
                if rank and size == 1 and item["kind"] == "cluster":
                    continue
                selection = [i for i in wrong if self.truth[i] == digit]
                review_item_resolve(
                    dataset=self.dataset,
                    user=self.user,
                    kind=item["kind"],
                    object_id=item["id"],
                    outcome="relabelled",
                    label_class=self.class_by_digit[digit],
                    image_ids=selection,
                )
                spent += 1
                self.acted(f"relabel {len(selection)} of {item['kind']} {item['id']} as {digit}")
                if spent >= max_actions:
                    break


def main(argv=None):
    args = parse_args(argv)
    from bench.datasets import load_dataset

    x, y = load_dataset(args.dataset, args.n, args.seed)
    tmp = tempfile.TemporaryDirectory(prefix="simlabel-bench-") if args.workdir is None else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    setup_django(workdir, args.database_url)

    from django.contrib.auth import get_user_model

    from embeddings.models import RunStatus, TrainingRun
    from embeddings.services import training_run_execute, training_run_start
    from labeling.models import Image
    from labeling.services.datasets import dataset_create, label_class_create
    from labeling.services.images import images_ingest_path

    user = get_user_model().objects.create_user(username=f"bench{int(time.time())}", password="x-Bench-123")
    dataset = dataset_create(user=user, name=f"{args.dataset} label-effort bench")
    digits = sorted(set(int(v) for v in y))
    class_by_digit = {d: label_class_create(dataset=dataset, name=str(d)) for d in digits}

    names = write_pngs(x, workdir / "images")
    truth_by_name = {name: int(label) for name, label in zip(names, y)}
    t = time.perf_counter()
    report = images_ingest_path(dataset=dataset, user=user, path=workdir / "images")
    t_ingest = time.perf_counter() - t
    truth = {}
    for image_id, original_name in Image.objects.filter(dataset=dataset).values_list("id", "original_name"):
        truth[image_id] = truth_by_name[Path(original_name).name]
    n = len(truth)

    params = {"layout_method": args.layout, "seed": args.seed}
    if args.epochs:
        params["epochs"] = args.epochs
    if args.batch_size:
        params["batch_size"] = args.batch_size
    if args.n_clusters:
        params["n_clusters"] = args.n_clusters
    run = training_run_start(dataset=dataset, user=user, params=params)
    t = time.perf_counter()
    outcome = training_run_execute(run_id=run.pk, worker_name="label-effort bench")
    t_pipeline = time.perf_counter() - t
    run = TrainingRun.objects.get(pk=run.pk)
    if run.status != RunStatus.SUCCEEDED:
        raise SystemExit(f"pipeline {outcome}: {run.error}")

    per_k = lambda a: f"{1000.0 * a / n:.1f}" if a is not None else "not reached"  # noqa: E731
    print()
    print(
        f"dataset {args.dataset}: {n} images ({len(report.skipped)} duplicates skipped), {len(digits)} classes, "
        f"{run.cluster_count} clusters; ingest {t_ingest:.0f} s, pipeline {t_pipeline:.0f} s"
    )
    rows = []
    annotators = []
    for scope in [s.strip() for s in args.accept_scope.split(",") if s.strip()]:
        reset_labels(dataset)
        annotator = Annotator(dataset, user, truth, class_by_digit)
        t = time.perf_counter()
        annotator.label_clusters(None if scope == "none" else args.clusters_per_class)
        after_clusters = (annotator.actions, annotator.accuracy())
        annotator.accept_suggestions(scope)
        after_accept = (annotator.actions, annotator.accuracy())
        annotator.work_review_queue(args.max_review_actions)
        final = (annotator.actions, annotator.accuracy())
        print(f"\nstrategy: accept suggestions {SCOPE_WORDS[scope]} (labelling {time.perf_counter() - t:.0f} s)")
        print(f"  after labelling clusters:    {after_clusters[0]:4d} actions, {100 * after_clusters[1]:.1f} % correct")
        print(f"  after accepting suggestions: {after_accept[0]:4d} actions, {100 * after_accept[1]:.1f} % correct")
        print(
            f"  after the review queue:      {final[0]:4d} actions, {100 * final[1]:.1f} % correct "
            f"(+ {annotator.review_marks} review marks, which change no label)"
        )
        rows.append((scope, annotator))
        annotators.append(annotator)
    print()
    print(f"| {args.dataset}, {n} images | actions to 95 % | per 1,000 images | actions to 98 % | per 1,000 images |")
    print("|---|---|---|---|---|")
    for scope, annotator in rows:
        a95, a98 = annotator.milestones.get(0.95), annotator.milestones.get(0.98)
        name = f"simlabel, accept suggestions {SCOPE_WORDS[scope]}"
        print(f"| {name} | {a95 or 'not reached'} | {per_k(a95)} | {a98 or 'not reached'} | {per_k(a98)} |")
    print(f"| one-by-one labelling | {int(np.ceil(0.95 * n))} | 950 | {int(np.ceil(0.98 * n))} | 980 |")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    if tmp is not None:
        tmp.cleanup()
    return annotators


def reset_labels(dataset):
    """Back to an unlabeled dataset on the same map, so strategies compare on equal terms."""
    from embeddings.models import ImageEmbedding
    from labeling.models import Annotation, AnnotationHistory, LabelAction, ReviewResolution

    AnnotationHistory.objects.filter(dataset=dataset).delete()
    Annotation.objects.filter(dataset=dataset).delete()
    LabelAction.objects.filter(dataset=dataset).delete()
    ReviewResolution.objects.filter(dataset=dataset).delete()
    ImageEmbedding.objects.filter(run__dataset=dataset).update(suggested_class=None, suggestion_confidence=None)


if __name__ == "__main__":
    main()
