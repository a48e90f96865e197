"""Uploads into a mapped dataset: one placement per upload request vs. coalesced placements (issue 17).

    nice .venv/bin/python bench/placement.py [--n 100000] [--uploads 5] [--per-upload 1000]
        [--database-url postgres://postgres@127.0.0.1:5432/simlabel_bench_placement] [--before-ref 45ef4e9]

Builds (or reuses) bench/api_speed.py's dataset of N images with a succeeded run, and writes the
run's codes, layout and clusters artifacts.  Then U upload requests of P images each arrive while
the worker is busy (the case that made the queue fall behind), twice:

- before: the placement service as it was at --before-ref (git show, loaded beside the current
  one), run the way its queue ran it: one task per request, with that request's image ids;
- after: each request calls images_place_on_current_map after its commit, as uploads do; the
  place_images messages then on the broker (this process's broker: the filesystem one unless
  CELERY_BROKER_URL) are executed in this process, as a worker would.

Each phase's images are deleted afterwards, so both start from the same N-point map.  The bench's
images are fake files: image decoding and the autoencoder are replaced by random codes near the
map's (a cost per image, the same in both phases); everything else (reading the map, the neighbor
search, near-duplicates, the row writes, the map cache warm) is the real code.  Prints tasks
executed and worker seconds per phase, the cost of a task that finds nothing to place, and the
load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

# The repository root, not bench/: bench/datasets.py must not hide Hugging Face `datasets` from an importer.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._django import database_description, load_average, setup_django  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/simlabel_bench_placement"
UPLOAD_PREFIX = "bench-upload-"
PLACE = "embeddings.tasks.place_images"


def load_before(ref: str):
    """The placement service module as it was at git ref `ref`, importable beside today's."""
    source = subprocess.run(
        ["git", "show", f"{ref}:embeddings/services/placement.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    spec = importlib.util.spec_from_loader("embeddings.services._placement_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "embeddings.services"
    exec(compile(source, f"{ref}:embeddings/services/placement.py", "exec"), module.__dict__)
    return module


def write_map_artifacts(run, n: int, seed: int) -> None:
    """codes/layout/clusters of api_speed's run (its builder stores only the rows)."""
    import numpy as np

    from bench.api_speed import _layout
    from embeddings import storage

    xy, cluster, codes, *_ = _layout(n, seed)
    storage.write_array(run, storage.CODES, codes.astype(np.float32))
    storage.write_array(run, storage.LAYOUT, xy.astype(np.float32))
    storage.write_array(run, storage.CLUSTERS, cluster.astype(np.int32))


def stub_embedding(code_size: int, seed: int) -> None:
    """Images 'load' instantly and embed to random codes near the map's cluster centers."""
    import numpy as np

    import embeddings.ml.inference as inference
    from embeddings.services import pipeline

    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(seed).normal(0, 3.0, size=(100, code_size))

    def load_run_images(rows, input_size, channels):
        return np.zeros((len(rows), 1), dtype=np.float32), np.asarray([r[0] for r in rows], dtype=np.int64), []

    def embed_images(model, images, batch_size=None):
        picks = rng.integers(0, len(centers), len(images))
        codes = (centers[picks] + rng.normal(0, 1.0, size=(len(images), code_size))).astype(np.float32)
        return codes, np.full(len(images), 0.01, dtype=np.float32)

    pipeline.load_run_images = load_run_images
    inference.embed_images = embed_images


def add_images(dataset, count: int, tag: str) -> list[int]:
    from bench.api_speed import _copy_rows
    from labeling.models import Image

    start = Image.objects.order_by("-id").values_list("id", flat=True).first() or 0
    _copy_rows(
        Image,
        (
            Image(
                dataset=dataset,
                file=f"bench/up/{tag}-{i}.png",
                thumbnail=f"bench/up/{tag}-{i}.webp",
                sha256=f"{start + i + 1:064x}",
                width=28,
                height=28,
                format="PNG",
                mode="L",
                size_bytes=300,
                original_name=f"{UPLOAD_PREFIX}{tag}-{i}.png",
            )
            for i in range(count)
        ),
    )
    return list(
        Image.objects.filter(dataset=dataset, original_name__startswith=f"{UPLOAD_PREFIX}{tag}-").values_list(
            "id", flat=True
        )
    )


def remove_uploads(dataset, run) -> None:
    from embeddings.models import ImageEmbedding, TrainingRun
    from labeling.models import Image

    uploads = Image.objects.filter(dataset=dataset, original_name__startswith=UPLOAD_PREFIX)
    ImageEmbedding.objects.filter(run=run, image__in=uploads).delete()
    uploads.delete()
    TrainingRun.objects.filter(pk=run.pk).update(placed_count=0)


def take_queued(task_name: str) -> list[list]:
    """Removes every message from the default queue; the args of those for task_name."""
    from project.celery import app

    taken = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(app.conf.task_default_queue)
        try:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                message.ack()
                if message.headers.get("task") == task_name:
                    taken.append(list(message.decode()[0]))
        finally:
            queue.close()
    return taken


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="images on the map")
    parser.add_argument("--uploads", type=int, default=5, help="upload requests")
    parser.add_argument("--per-upload", type=int, default=1000, help="images per request")
    parser.add_argument("--database-url", default=DEFAULT_DB, help="'' for SQLite in SIMLABEL_VAR_DIR")
    parser.add_argument("--before-ref", default="45ef4e9", help="git ref of the per-request placement")
    args = parser.parse_args()
    setup_django(database_url=args.database_url or None)

    from django.core.cache import cache
    from django.db import transaction

    from bench.api_speed import CODE_SIZE, build_dataset
    from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
    from embeddings.services import placement

    print(f"database: {database_description()}; load average before: {load_average()}", flush=True)
    for leftover in TrainingRun.objects.filter(dataset__name=f"bench api {args.n}"):  # an interrupted bench's
        remove_uploads(leftover.dataset, leftover)
    dataset, seconds = timed(lambda: build_dataset(args.n, seed=0))
    run = TrainingRun.objects.get(dataset=dataset, status=RunStatus.SUCCEEDED)
    remove_uploads(dataset, run)
    write_map_artifacts(run, args.n, seed=0)
    print(f"map of {args.n:,} images ready in {seconds:.1f} s", flush=True)
    stub_embedding(CODE_SIZE, seed=1)
    before = load_before(args.before_ref)
    before._run_model = placement._run_model = lambda run: None  # no model.pt: the codes are stubbed
    total = args.uploads * args.per_upload
    results = {}

    # Warm-up (imports, numba's compiled neighbor search), so neither phase pays for it.
    add_images(dataset, args.per_upload, "w")
    placement.images_place_execute(run_id=run.pk)
    remove_uploads(dataset, run)

    # before: one task per request, each with its own ids.
    take_queued(PLACE)
    requests = [add_images(dataset, args.per_upload, f"b{r}") for r in range(args.uploads)]
    worker = 0.0
    for ids in requests:
        _, seconds = timed(lambda ids=ids: before.images_place_execute(run_id=run.pk, image_ids=ids))
        worker += seconds
        print(f"  before: a task placed {len(ids)} in {seconds:.1f} s", flush=True)
    placed = ImageEmbedding.objects.filter(run=run, placed_after_run=True).count()
    results["before"] = (args.uploads, worker, placed)
    remove_uploads(dataset, run)
    take_queued(PLACE)

    # after: the requests go through the coalescing schedule; then the broker's messages run.
    cache.clear()
    requests = []
    for r in range(args.uploads):
        with transaction.atomic():
            ids = add_images(dataset, args.per_upload, f"a{r}")
            placement.images_place_on_current_map(dataset=dataset, image_ids=ids)
        requests.append(ids)
    messages = take_queued(PLACE)
    worker = 0.0
    for run_id, image_ids in messages:
        count, seconds = timed(lambda: placement.images_place_execute(run_id=run_id, image_ids=image_ids))
        worker += seconds
        print(f"  after: a task placed {count} in {seconds:.1f} s", flush=True)
    placed = ImageEmbedding.objects.filter(run=run, placed_after_run=True).count()
    results["after"] = (len(messages), worker, placed)
    # The old per-request messages still in a queue at the upgrade: each now finds nothing.
    _, noop = timed(lambda: placement.images_place_execute(run_id=run.pk, image_ids=requests[-1]))
    _, noop_all = timed(lambda: placement.images_place_execute(run_id=run.pk, image_ids=None))
    remove_uploads(dataset, run)
    take_queued(PLACE)

    print(f"\n{args.uploads} uploads x {args.per_upload:,} images into a {args.n:,}-point map")
    print("| | placement tasks executed | worker seconds | images placed |")
    print("|---|---|---|---|")
    for name, (tasks, seconds, placed) in results.items():
        print(f"| {name} | {tasks} | {seconds:.1f} | {placed:,} of {total:,} |")
    b, a = results["before"][1], results["after"][1]
    print(f"worker time ratio before/after: {b / a:.1f}x")
    print(f"a task with nothing to place: {noop * 1000:.0f} ms (its ids), {noop_all * 1000:.0f} ms (whole dataset)")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
