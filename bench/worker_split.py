"""One large run on one `ml` worker, then on two: the embedding stage and the neighbor stages, side by side.

    nice .venv/bin/python bench/worker_split.py                 # 100,000 28x28 digits (MNIST topped up by warps)
    nice .venv/bin/python bench/worker_split.py --n 30000       # a few minutes
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/simlabel_bench CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \\
        nice .venv/bin/python bench/worker_split.py --n 30000

The images (bench.datasets.load_scaled: MNIST's 70,000 digits, topped up with random warps of them, all
different) are written as PNGs and ingested into one dataset (not timed).  Then the same run is started
twice through the app's services and executed by real Celery workers (`celery worker -Q ml
--concurrency 1`), each pinned to one core (`taskset -c <core>`, OMP_NUM_THREADS=1, so torch, numpy and
scikit-learn use one thread): (i) one worker on core 0, (ii) two workers on cores 0 and 1, on the broker
and database the environment names (CELERY_BROKER_URL, DATABASE_URL; default: the embedded filesystem
broker and SQLite in a fresh folder).  Datasets of SIMLABEL_EMBED_PARALLEL_MIN_IMAGES images or more are
embedded in chunks the idle worker helps with; the layout's neighbor queries (the points placed beyond
its t-SNE sample) likewise (SIMLABEL_NEIGHBOR_PARALLEL_MIN_QUERIES).

Printed, per setting: each stage's seconds from the run's row (stage_timings), the chunks the helper
answered, and the speed-up of (ii) over (i).  Goal (issue 17): embedding stage >= 1.7x faster with two
workers.  "clustering" includes storing the run (near-duplicates, rows).  Timings on a busy machine are
inflated: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_SPEEDUP = 1.7
STAGES = ("preparing", "training", "embedding", "layout", "clustering")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="images in the dataset (default 100000)")
    p.add_argument("--dataset", default="mnist70k", help="bench.datasets name, topped up by warps to --n")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cores", default="0,1", help="the two cores the workers are pinned to")
    p.add_argument("--epochs", type=int, default=1, help="training epochs (not measured; keeps the run short)")
    p.add_argument("--tsne-iterations", type=int, default=50)
    p.add_argument("--layout-sample", type=int, default=None, help="layout_max_points (default: the app's)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    p.add_argument("--keep", action="store_true", help="keep the work folder (images, SQLite, media)")
    return p.parse_args(argv)


def start_workers(cores: list[int], log_dir: Path, tag: str) -> list[subprocess.Popen]:
    """Real `celery worker -Q ml --concurrency 1` processes, one per core, one thread each."""
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "NUMBA_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    workers = []
    for core in cores:
        log = open(log_dir / f"worker-{tag}-core{core}.log", "w")
        cmd = ["taskset", "-c", str(core), sys.executable, "-m", "celery", "-A", "project", "worker"]
        cmd += ["-Q", "ml", "--concurrency", "1", "--loglevel", "INFO", "-n", f"bench-{tag}-{core}@%h"]
        cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        workers.append(
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
    for worker, core in zip(workers, cores):
        wait_ready(worker, log_dir / f"worker-{tag}-core{core}.log")
    return workers


def wait_ready(worker: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in log.read_text(errors="replace"):
            return
        if worker.poll() is not None:
            raise SystemExit(f"a worker exited early:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)
    raise SystemExit(f"a worker was not ready after {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGTERM)  # the main process: a warm shutdown stops its pool child
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def purge_ml_queue() -> int:
    """Drops the chunk tasks a finished run left on the `ml` queue (a lone worker was busy with the run
    itself), so the next setting's helpers do not spend the broker's round trips skipping them."""
    from project.celery import app

    with app.connection_for_write() as connection:
        return connection.default_channel.queue_purge("ml") or 0


def run_on_workers(dataset, user, params: dict, cores: list[int], log_dir: Path, timeout: float) -> dict:
    """Starts the run with `cores` workers up, waits for it; returns its row's timings and chunk metrics."""
    from embeddings.models import RunStatus, TrainingRun
    from embeddings.services import training_run_start

    tag = f"{len(cores)}w"
    purge_ml_queue()
    workers = start_workers(cores, log_dir, tag)
    try:
        started = time.perf_counter()
        run = training_run_start(dataset=dataset, user=user, params=params)
        deadline = time.monotonic() + timeout
        while (run := TrainingRun.objects.get(pk=run.pk)).status not in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            if time.monotonic() > deadline:
                raise SystemExit(f"run {run.pk} not finished after {timeout:.0f} s (stage {run.stage})")
            time.sleep(1.0)
        seconds = time.perf_counter() - started
    finally:
        stop_workers(workers)
    if run.status != RunStatus.SUCCEEDED:
        raise SystemExit(f"run {run.pk} failed: {run.error}")
    metrics = run.metrics or {}
    return {
        "workers": len(cores),
        "total": seconds,
        "stages": dict(run.stage_timings or {}),
        "embedding_chunks": metrics.get("embedding_chunks") or {},
        "neighbor_chunks": metrics.get("neighbor_chunks") or {},
        "near_duplicate_pairs": metrics.get("near_duplicate_pairs"),
    }


def neighbor_summary(chunks: dict) -> str:
    parts = [
        f"{purpose} {info.get('from_helpers', 0)}/{info.get('count', 0)}" for purpose, info in sorted(chunks.items())
    ]
    return ", ".join(parts) or "none"


def main(argv=None) -> None:
    args = parse_args(argv)
    cores = [int(c) for c in args.cores.split(",")][:2]
    if len(cores) != 2:
        raise SystemExit("--cores names two cores")
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the workers to one core each")
    from bench._django import database_description, load_average, machine_description, setup_django
    from bench.datasets import load_scaled
    from bench.label_effort import write_pngs

    workdir = Path(tempfile.mkdtemp(prefix="simlabel-worker-split-"))
    database_url = os.environ.get("DATABASE_URL")
    setup_django(database_url=database_url, recreate=bool(database_url), var_dir=str(workdir / "var"))
    # The workers inherit this process's environment (SIMLABEL_VAR_DIR, DATABASE_URL, CELERY_BROKER_URL):
    # the same database, media folder and broker.
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from labeling.services.datasets import dataset_create
    from labeling.services.images import images_ingest_path

    x, _ = load_scaled(args.dataset, args.n, seed=args.seed)
    write_pngs(x, workdir / "images")
    user = get_user_model().objects.create_user(username=f"bench{int(time.time())}", password="x-Bench-123")
    dataset = dataset_create(user=user, name=f"worker split {args.n}")
    started = time.perf_counter()
    report = images_ingest_path(dataset=dataset, user=user, path=workdir / "images")
    print(f"ingested {len(report.created)} images in {time.perf_counter() - started:.0f} s (not timed below)")
    shape = tuple(x.shape[1:])
    del x

    params = {"epochs": args.epochs, "tsne_iterations": args.tsne_iterations, "seed": args.seed}
    if args.layout_sample:
        params["layout_max_points"] = args.layout_sample
    log_dir = workdir / "logs"
    log_dir.mkdir()
    results, loads = [], []
    for setting in ([cores[0]], cores):
        print(f"run on {len(setting)} worker(s) pinned to core(s) {setting} ...", flush=True)
        results.append(run_on_workers(dataset, user, params, setting, log_dir, args.timeout))
        loads.append(load_average())

    one, two = results
    print(f"\n{len(report.created)} images {shape}; params {params}")
    print(f"{machine_description()}; {database_description()}; broker {settings.CELERY_BROKER_URL.split('://')[0]}")
    print(f"load average after each run: {loads[0]} | {loads[1]}")
    print(f"{'stage (s)':14s} {'1 worker':>9s} {'2 workers':>10s} {'speed-up':>9s}")
    for stage in (*STAGES, "total"):
        a = one["total"] if stage == "total" else one["stages"].get(stage)
        b = two["total"] if stage == "total" else two["stages"].get(stage)
        if a is None or b is None:
            continue
        print(f"{stage:14s} {a:9.1f} {b:10.1f} {a / max(b, 1e-9):8.2f}x")
    for result in results:
        emb = result["embedding_chunks"]
        print(
            f"{result['workers']} worker(s): embedding chunks from the helper {emb.get('from_helpers', 0)}"
            f"/{emb.get('count', 0)}; neighbor chunks from the helper {neighbor_summary(result['neighbor_chunks'])}"
        )
    speedup = one["stages"]["embedding"] / max(two["stages"]["embedding"], 1e-9)
    verdict = "meets" if speedup >= GOAL_SPEEDUP else "MISSES"
    print(f"embedding stage speed-up with 2 workers: {speedup:.2f}x ({verdict} the >= {GOAL_SPEEDUP}x goal)")
    if args.keep:
        print(f"work folder kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
