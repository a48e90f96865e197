"""One bulk-label request over every image of a 100,000-image dataset, split into Python and PostgreSQL CPU.

    nice .venv/bin/python bench/bulk_label.py [--n 100000] [--rounds 3]
        [--database-url postgres://postgres@127.0.0.1:5432/simlabel_bench]
        [--compare-with OLD_ANNOTATIONS.py [--compare-history-constraints]]

Reuses bench/api_speed.py's dataset (built when missing; labels reset after),
then times `POST /api/datasets/{id}/annotations/bulk/` with all N ids through
DRF's APIClient, alternating two classes so every request changes every image.
The machine this runs on is shared, so besides wall time it reports the CPU
the request cost: this process's (time.process_time) and, on PostgreSQL, the
serving backend's (utime + stime from /proc/<pg_backend_pid()>/stat; the
server must run on this machine). Their sum is about what the request takes
on an idle machine, less the WAL flush at commit.

--compare-with times another version of labeling/services/annotations.py in
the same run, alternating with the current one (e.g. `git show
HEAD:labeling/services/annotations.py > /tmp/old.py`);
--compare-history-constraints gives that version back the three history
foreign-key constraints migration labeling 0006 dropped (NOT VALID, so only
new rows are checked), removed again before each current-version request.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

# The repository root, not bench/: bench/datasets.py must not hide Hugging Face `datasets` from an importer.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._django import load_average, setup_django  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/simlabel_bench"
# (column, referenced table) of the AnnotationHistory constraints migration labeling 0006 dropped.
DROPPED_HISTORY_CONSTRAINTS = [
    ("dataset_id", "labeling_dataset"),
    ("action_id", "labeling_labelaction"),
    ("new_class_id", "labeling_labelclass"),
]


def _load_module(path: str):
    spec = importlib.util.spec_from_file_location("compared_annotations", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def _set_history_constraints(present: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for column, table in DROPPED_HISTORY_CONSTRAINTS:
            name = f"bench_bulk_{column}"
            cursor.execute(f"ALTER TABLE labeling_annotationhistory DROP CONSTRAINT IF EXISTS {name}")
            if present:
                cursor.execute(
                    f"ALTER TABLE labeling_annotationhistory ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
                    f"REFERENCES {table}(id) DEFERRABLE INITIALLY DEFERRED NOT VALID"
                )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="images in the dataset, all labeled per request")
    parser.add_argument("--database-url", default=DEFAULT_DB, help=f"benchmark database (default {DEFAULT_DB})")
    parser.add_argument("--rounds", type=int, default=3, help="requests per version")
    parser.add_argument("--compare-with", help="another labeling/services/annotations.py to time in the same run")
    parser.add_argument(
        "--compare-history-constraints",
        action="store_true",
        help="run the compared version with the dropped history constraints restored (PostgreSQL)",
    )
    args = parser.parse_args()

    setup_django(database_url=args.database_url)
    from django.db import connection
    from rest_framework.test import APIClient

    import labeling.services.annotations as current_module
    from bench import api_speed
    from labeling.models import Image, LabelClass

    postgres = connection.vendor == "postgresql"
    versions = {"current": current_module.annotations_apply_bulk}
    if args.compare_with:
        versions = {"compared": _load_module(args.compare_with).annotations_apply_bulk, **versions}
    dataset = api_speed.build_dataset(args.n, seed=1)
    client = APIClient()
    client.force_login(api_speed._bench_user())
    classes = [LabelClass.objects.get_or_create(dataset=dataset, name=name)[0] for name in ("bulk A", "bulk B")]
    ids = list(Image.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True))
    url = f"/api/datasets/{dataset.pk}/annotations/bulk/"
    backend_pid = None
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend_pid = cursor.fetchone()[0]

    def postgres_cpu() -> float:
        if backend_pid is None:
            return 0.0
        fields = Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    print(f"{len(ids):,} images on {connection.vendor}; load average {load_average()}", flush=True)
    results = {name: [] for name in versions}
    requests_made = 0
    try:
        for _ in range(args.rounds):
            for name, function in versions.items():
                current_module.annotations_apply_bulk = function  # the view calls it through the module
                if postgres and args.compare_history_constraints:
                    _set_history_constraints(name == "compared")
                label_class = classes[requests_made % 2]
                requests_made += 1
                cpu0, wall0, pg0 = time.process_time(), time.perf_counter(), postgres_cpu()
                response = client.post(url, {"class": label_class.pk, "image_ids": ids}, format="json")
                cpu1, wall1, pg1 = time.process_time(), time.perf_counter(), postgres_cpu()
                if response.status_code != 200 or response.json()["updated"] != len(ids):
                    raise SystemExit(f"{name}: {response.status_code} {response.content[:300]!r}")
                results[name].append((wall1 - wall0, cpu1 - cpu0, pg1 - pg0))
                print(
                    f"  {name}: wall {wall1 - wall0:.2f} s, Python CPU {cpu1 - cpu0:.2f} s, "
                    f"PostgreSQL CPU {pg1 - pg0:.2f} s; load average {load_average()}",
                    flush=True,
                )
    finally:
        current_module.annotations_apply_bulk = versions["current"]
        if postgres and args.compare_history_constraints:
            _set_history_constraints(False)
        api_speed.reset_labels(dataset, args.n, seed=1)
    for name, rows in results.items():
        wall, python, pg = (statistics.median(column) for column in zip(*rows))
        print(f"{name}: median wall {wall:.2f} s; CPU {python + pg:.2f} s (Python {python:.2f} + PostgreSQL {pg:.2f})")


if __name__ == "__main__":
    main()
