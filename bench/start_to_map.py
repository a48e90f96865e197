"""From "start run" to a ready map, through the app's own services, with default settings.

    .venv/bin/python bench/start_to_map.py                       # 10,000 photos (photos10k)
    .venv/bin/python bench/start_to_map.py --dataset mnist10k --n 10000
    .venv/bin/python bench/start_to_map.py --database-url postgres://postgres@127.0.0.1:5432/simlabel_bench

The images are written as PNG files and ingested (not timed); then a run with the default
parameters is started (training_run_start) and executed in this process as a worker executes
it (training_run_execute: read the images from storage, train, embed, lay out, cluster, store
the rows).  Printed: each stage's seconds from the run's row and the total from the start
request to the run's success, beside the baseline measured in the same process: the same run
with `patch_features: off` (the contrastive codes alone, before patch features) and with
`objective: reconstruction` (what photos trained before issue 14).  Goal (issue 14):
10,000 32x32 photos map-ready in <= 120 s on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_SECONDS = 120.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="photos10k")
    p.add_argument("--n", type=int, default=None, help="use this many images (default: the whole set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    p.add_argument("--no-baseline", action="store_true", help="skip the reconstruction run")
    return p.parse_args(argv)


def timed_run(dataset, user, params: dict) -> tuple[float, dict, dict]:
    """(seconds from start to success, stage seconds, metrics) of one run executed here."""
    from embeddings.models import TrainingRun
    from embeddings.services import training_run_execute, training_run_start

    started = time.perf_counter()
    run = training_run_start(dataset=dataset, user=user, params=params)
    outcome = training_run_execute(run_id=run.pk, worker_name="start-to-map bench")
    seconds = time.perf_counter() - started
    run = TrainingRun.objects.get(pk=run.pk)
    if outcome != "succeeded" or run.status != "succeeded":
        raise SystemExit(f"run {run.pk} ended {run.status}: {run.error}")
    return seconds, dict(run.stage_timings or {}), dict(run.metrics or {})


def main(argv=None) -> None:
    args = parse_args(argv)
    from bench._django import load_average, machine_description, setup_django
    from bench.datasets import load_dataset
    from bench.label_effort import write_pngs

    x, _ = load_dataset(args.dataset, args.n, args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="simlabel-start-to-map-"))
    setup_django(database_url=args.database_url, recreate=bool(args.database_url), var_dir=str(workdir / "var"))

    from django.contrib.auth import get_user_model

    from labeling.services.datasets import dataset_create
    from labeling.services.images import images_ingest_path

    user = get_user_model().objects.create_user(username=f"bench{int(time.time())}", password="x-Bench-123")
    write_pngs(x, workdir / "images")
    rows = []
    for name, params in [
        ("default (auto objective)", {}),
        ("baseline: no patch features", {"patch_features": "off"}),
        ("baseline: reconstruction", {"objective": "reconstruction"}),
    ]:
        if args.no_baseline and params:
            continue
        dataset = dataset_create(user=user, name=f"{args.dataset} {name}")
        report = images_ingest_path(dataset=dataset, user=user, path=workdir / "images")
        print(f"{name}: ingested {len(report.created)} images", flush=True)
        seconds, stages, metrics = timed_run(dataset, user, params)
        rows.append((name, seconds, stages, metrics))

    print(f"\n{args.dataset}: {len(x)} images {tuple(x.shape[1:])}; goal <= {GOAL_SECONDS:.0f} s start to map")
    print(f"{machine_description()}; load average {load_average()} at the end")
    stage_names = sorted({s for _, _, stages, _ in rows for s in stages})
    print(f"{'run':28s} {'total s':>8s}  " + "  ".join(f"{s:>10s}" for s in stage_names) + "  objective, patches")
    for name, seconds, stages, metrics in rows:
        cells = "  ".join(f"{stages.get(s, 0.0):10.1f}" for s in stage_names)
        verdict = "meets" if seconds <= GOAL_SECONDS else "MISSES"
        objective, patches = metrics.get("objective", "?"), metrics.get("patch_features")
        print(f"{name:28s} {seconds:8.1f}  {cells}  {objective}, {patches}  ({verdict} the goal)")


if __name__ == "__main__":
    main()
