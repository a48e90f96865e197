"""Seconds and peak memory of a run's preparing and embedding stages: streamed, against the whole-dataset
decode the worker did before (issue 17), in the same bench run.

    nice .venv/bin/python bench/prepare_memory.py                      # 100,000 gray 28x28 images
    nice .venv/bin/python bench/prepare_memory.py --n 20000 --database-url postgres://postgres@127.0.0.1:5432/simlabel_bench

N synthetic 28x28 gray PNG files are written into storage and their image rows created (not
timed).  Then each variant runs in a fresh process, through the worker's own services on a claimed
run with the default parameters (max_train_images 20,000, SIMLABEL_EMBED_CHUNK_SIZE chunks):

- whole dataset: preparing as it was before, every image decoded into one (N, 1, 28, 28) array
  (one row tuple per image for the input size), then embedding from that array;
- streamed: preparing reads sizes and modes counted by the database and decodes the training
  sample only; embedding reads and decodes one chunk at a time (RunImageReader).

Printed per variant: preparing and embedding seconds, and the process's peak resident memory
(ru_maxrss) after Django and torch are loaded, after preparing and after embedding.  Training,
layout and clustering are left out: the same in both (training holds the sample either way).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ("whole", "streamed")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    p.add_argument("--var-dir", default=None, help="default: a new temp dir")
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # the child process
    p.add_argument("--dataset-id", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def build_dataset(n: int) -> int:
    """A dataset of n synthetic 28x28 gray PNGs (a bright blob on noise), files written straight into storage."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.files.storage import default_storage
    from PIL import Image as PILImage

    from labeling.models import Image
    from labeling.services.datasets import dataset_create

    user = get_user_model().objects.create_user(username=f"prepare{time.time_ns()}", password="x-Bench-123")
    dataset = dataset_create(user=user, name=f"prepare memory {n}")
    folder = Path(default_storage.location) / "bench" / str(dataset.pk)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    batch = []
    for i in range(n):
        cy, cx, r = rng.uniform(6, 22), rng.uniform(6, 22), rng.uniform(2, 6)
        pixels = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) * 200 + rng.uniform(0, 40, (28, 28))
        name = f"bench/{dataset.pk}/{i:07d}.png"
        PILImage.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:07d}.png")
        batch.append(
            Image(
                dataset=dataset,
                file=name,
                thumbnail=name,
                sha256=f"{dataset.pk:08x}{i:056x}",
                width=28,
                height=28,
                format="PNG",
                mode="L",
                size_bytes=300,
                original_name=f"{i:07d}.png",
            )
        )
        if len(batch) == 5000:
            Image.objects.bulk_create(batch)
            batch = []
    Image.objects.bulk_create(batch)
    return dataset.pk


def prepare_whole(run, params, reporter):
    """The preparing stage as the worker ran it before streaming: one row tuple per image, every image
    decoded into one array; returns (images, image ids)."""
    from embeddings import storage
    from embeddings.ml.preprocess import choose_input_spec
    from embeddings.models import RunStage, TrainingRun
    from embeddings.services.pipeline import _dataset_images, image_classes, load_run_images

    reporter.enter_stage(RunStage.PREPARING)
    rows = _dataset_images(run.dataset_id)
    input_size, channels = choose_input_spec([(r[2], r[3]) for r in rows], [r[4] for r in rows])
    TrainingRun.objects.filter(pk=run.pk).update(input_size=input_size, channels=channels, image_count=len(rows))
    run.input_size, run.channels = input_size, channels
    images, image_ids, _ = load_run_images(rows, input_size, channels, should_stop=reporter.check)
    storage.write_array(run, storage.IMAGE_IDS, image_ids)
    image_classes(run.dataset_id, image_ids)
    return images, image_ids


def child(args) -> None:
    """One variant in this fresh process; prints one JSON line."""
    from bench._django import setup_django

    setup_django(database_url=args.database_url, var_dir=args.var_dir)
    import torch  # noqa: F401  (loaded before the first measurement, as a worker has it)

    from embeddings.ml.training import build_model
    from embeddings.models import RunStage, TrainingRun
    from embeddings.services import pipeline, run_params_validate
    from embeddings.services.params import train_config
    from embeddings.services.runs import RunReporter, run_claim

    params = run_params_validate({})
    run = TrainingRun.objects.create(dataset_id=args.dataset_id, params=params)
    run = run_claim(run_id=run.pk, worker_name=f"prepare-memory bench ({args.variant})")
    out = {"variant": args.variant, "rss_loaded_mb": peak_rss_mb()}
    with RunReporter(run) as reporter:
        started = time.perf_counter()
        if args.variant == "whole":
            images, image_ids = prepare_whole(run, params, reporter)
        else:
            prepared = pipeline._prepare(run, params, reporter)
            image_ids, streamed = prepared.image_ids, prepared.streamed
            out["decoded_for_training"] = len(prepared.images)
            images = None if streamed else prepared.hand_over()  # a dataset within the sample: kept, as the worker does
            del prepared
        out["preparing_s"] = round(time.perf_counter() - started, 2)
        out["rss_after_preparing_mb"] = peak_rss_mb()
        config = train_config(params, input_size=run.input_size, channels=run.channels)
        model = build_model(config, "reconstruction").eval()  # untrained: embedding costs the same
        reporter.enter_stage(RunStage.EMBEDDING)
        started = time.perf_counter()
        if images is not None:
            codes, _, _ = pipeline.embed_run_images(run, model, images, reporter)
            del images
        else:
            reader = pipeline.RunImageReader(image_ids, run.input_size, run.channels, [], reporter.check)
            codes, _, _ = pipeline.embed_run_images(run, model, reader, reporter)
        out["embedding_s"] = round(time.perf_counter() - started, 2)
        out["rss_after_embedding_mb"] = peak_rss_mb()
        out["codes"] = list(codes.shape)
    TrainingRun.objects.filter(pk=run.pk).delete()
    print(json.dumps(out), flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.variant:
        return child(args)
    from bench._django import load_average, machine_description, setup_django

    var_dir = args.var_dir or tempfile.mkdtemp(prefix="simlabel-prepare-memory-")
    setup_django(database_url=args.database_url, recreate=bool(args.database_url), var_dir=var_dir)
    started = time.perf_counter()
    dataset_id = build_dataset(args.n)
    print(f"{args.n} images written and their rows created in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"machine: {machine_description()}; load average before: {load_average()}", flush=True)
    results = []
    for variant in VARIANTS:
        command = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--dataset-id",
            str(dataset_id),
            "--var-dir",
            var_dir,
        ]
        if args.database_url:
            command += ["--database-url", args.database_url]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "LOG_LEVEL": "WARNING"})
        if done.returncode:
            raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print(f"\n{args.n} images 28x28, load average after: {load_average()}")
    print("| variant | preparing s | embedding s | peak RSS loaded MB | after preparing MB | after embedding MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['variant']} | {r['preparing_s']} | {r['embedding_s']} | {r['rss_loaded_mb']:.0f} | "
            f"{r['rss_after_preparing_mb']:.0f} | {r['rss_after_embedding_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
