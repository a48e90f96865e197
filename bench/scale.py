"""Scale: N unique images through the REST API, a default run, and every figure issue 17 asks for.

    nice .venv/bin/python bench/scale.py --n 100000 \\
        [--database-url postgres://postgres@127.0.0.1:5432/simlabel_scale] [--in-process] [--no-browser]

1. Generates N unique 28x28 gray images (random warps of MNIST digits, bench/datasets.py, each with
   its index written into three corner pixels, so no two are the same file) into zips of --batch
   images, a batch at a time on disk (never N images' pixels in memory), then uploads the zips
   through `POST /api/datasets/{id}/images/` as a user would: images/s over the upload requests'
   own time (each zip is generated before its request, not during it).
2. Starts a run with default parameters (`POST …/runs/ {}`) and waits for it through
   `GET /api/runs/{id}/`.  A real worker executes it: `celery -A project worker -Q default,ml
   --concurrency 2` as a subprocess on the configured broker, its process tree's resident memory
   sampled from /proc (peak of the sum).  With --in-process the run is executed in this process
   as a worker would (training_run_execute) and this process's peak RSS is reported instead.
   Prints each stage's seconds (the run's stage_timings) and start -> map.
3. The map endpoint, JSON and `?format=binary`: bytes on the wire (gzip), server seconds first call
   (empty caches) / warm; the map page's time to interactive in headless Chromium (map_browser's
   code).
4. Bulk label --bulk (100,000) images by ids in one request; `similar/?k=10` p95 over --similar
   random images; the full CSV export (include_unlabeled, streamed) in seconds.

Requests go through DRF's APIClient in this process with a token: server time, no sockets (the
browser uses a threaded server).  The database is the benchmark's own and is dropped and recreated
on every run, except with --reuse-dataset ID: the images an earlier call uploaded are kept and steps
2-4 measured again on them (the media stay under SIMLABEL_VAR_DIR).  Each figure is printed beside the issue's goal at 1,000,000 images and today's
number from README's "Measurements" at 100,000 (where one exists); below 1,000,000 the verdict is
against today's number where there is one, else against the 1,000,000 goal.  Results also go to
bench/out/scale.json.  Last, any statement of another session still running on the database is
printed ("STILL RUNNING"): it shared the cores with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import database_description, load_average, machine_description, setup_django  # noqa: E402
from bench.api_speed import check, percentile, timed  # noqa: E402

OUT = ROOT / "bench" / "out"
DEFAULT_DB = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/simlabel_scale"
SIMILAR_K = 10
RUN_POLL_SECONDS = 0.5
FINISHED = ("succeeded", "failed", "cancelled")
STAGE_ORDER = ["preparing", "training", "embedding", "layout", "clustering", "storing"]


# --- figures: the goal at 1,000,000 and today's number at 100,000 -----------------------------------


@dataclass(frozen=True)
class Figure:
    what: str
    unit: str  # "/s", "s", "ms", "MB", "GB"
    goal: float | None  # the goal at 1,000,000 images
    higher_is_better: bool = False
    today: float | None = None  # README "Measurements" at 100,000 images
    today_source: str = ""


FIGURES = {
    "upload": Figure(
        "upload, zips through the API", "/s", 1000, True, 1659, "bench/ingest.py, one 10,000-PNG zip, PostgreSQL"
    ),
    "start_to_map": Figure("start run -> map (run succeeded)", "s", 900),
    "peak_memory": Figure("peak worker memory (RSS)", "GB", 8),
    "map_binary_bytes": Figure("map ?format=binary, bytes (gzip)", "MB", 12, False, 0.89, "bench/map_browser.py"),
    "map_binary_first": Figure("map ?format=binary, first call (empty caches)", "s", 2),
    "map_binary_warm": Figure("map ?format=binary, warm (median)", "s", 2),
    "map_json_bytes": Figure("map JSON, bytes (gzip)", "MB", None, False, 1.36, "bench/api_speed.py"),
    "map_json_first": Figure("map JSON, first call (empty caches)", "s", None, False, 0.30, "bench/api_speed.py"),
    "map_json_warm": Figure("map JSON, warm (median)", "s", None, False, 0.09, "bench/api_speed.py"),
    "map_page": Figure("map page interactive (Chromium, median)", "s", 5, False, 1.94, "bench/map_browser.py"),
    "bulk": Figure("bulk label by ids, one request", "s", 5),
    "similar_p95": Figure(f"similar/?k={SIMILAR_K} p95", "ms", 50, False, 13, "bench/api_speed.py, k=20"),
    "export_csv": Figure("full CSV export, streamed", "s", 20, False, 1.6, "bench/api_speed.py"),
}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f} /s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit in ("MB", "GB"):
        return f"{value:.2f} {unit}"
    return f"{value:.2f} s"


def _meets(value: float, limit: float, higher_is_better: bool) -> bool:
    return value >= limit if higher_is_better else value <= limit


def verdict(figure: Figure, value: float | None, n: int) -> str:
    """At 1,000,000 images against the goal; below, against today's number (else the goal)."""
    if value is None:
        return "not measured"
    if n < 1_000_000 and figure.today is not None:
        return "as good as today" if _meets(value, figure.today, figure.higher_is_better) else "WORSE than today"
    if figure.goal is None:
        return "-"
    met = _meets(value, figure.goal, figure.higher_is_better)
    return ("meets" if met else "MISSES") + (" the 1M goal" if n < 1_000_000 else " the goal")


def report_rows(results: dict, n: int) -> list[dict]:
    rows = []
    for key, figure in FIGURES.items():
        value = results.get(key)
        goal = (
            "-" if figure.goal is None else ("≥ " if figure.higher_is_better else "≤ ") + _fmt(figure.goal, figure.unit)
        )
        today = f"{_fmt(figure.today, figure.unit)} ({figure.today_source})" if figure.today is not None else "none"
        what = figure.what
        if key == "bulk" and results.get("bulk_images"):
            what = f"bulk label {results['bulk_images']:,} images by ids, one request"
        rows.append(
            {"key": key, "what": what, "value": _fmt(value, figure.unit), "goal": goal, "today": today,
             "verdict": verdict(figure, value, n)}
        )  # fmt: skip
    stages = results.get("stages") or {}
    for stage in sorted(stages, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER)):
        seconds = stages[stage]
        rows.append(
            {"key": f"stage:{stage}", "what": f"  stage {stage}", "value": _fmt(seconds, "s"), "goal": "-",
             "today": "none", "verdict": "-"}
        )  # fmt: skip
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| figure | measured | goal at 1,000,000 | today at 100,000 (README) | verdict |", "|---|---|---|---|---|"]
    out += [f"| {r['what'].strip()} | {r['value']} | {r['goal']} | {r['today']} | {r['verdict']} |" for r in rows]
    return "\n".join(out)


# --- 1. unique images, in zips, through the API ---------------------------------------------------------------------


def write_upload_zips(n: int, batch: int, folder: Path, seed: int = 0, base: str = "mnist"):
    """Yields (path, count) of zips of PNGs, `batch` images each, n unique images in all.

    Only one batch's pixels are in memory at a time; the base images are a bench/datasets.py set
    of 28x28 digits: "mnist" (10,000 MNIST digits; scikit-learn's 1,797 when they cannot be had)
    or "digits" (scikit-learn's, nothing fetched).
    """
    import numpy as np
    from PIL import Image as PILImage

    from bench.datasets import load_dataset, synthetic_like

    try:
        base_x, base_y = load_dataset(base)
    except Exception:
        base_x, base_y = load_dataset("digits")
    if n >= 1 << 24:
        raise ValueError("the index written into the pixels covers at most 16,777,215 images")
    folder.mkdir(parents=True, exist_ok=True)
    for number, start in enumerate(range(0, n, batch)):
        count = min(batch, n - start)
        x, _ = synthetic_like(base_x, base_y, count, seed=seed * 1_000_003 + number)
        pixels = (x[:, 0] * 255).round().astype(np.uint8)
        index = np.arange(start, start + count)
        # The image's index in three corner pixels: unique content without a uniqueness check.
        pixels[:, 27, 25], pixels[:, 27, 26], pixels[:, 27, 27] = index & 255, (index >> 8) & 255, index >> 16
        path = folder / f"batch-{number:05d}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for i, image in zip(index, pixels):
                buffer = io.BytesIO()
                PILImage.fromarray(image).save(buffer, "PNG")
                archive.writestr(f"img-{i:07d}.png", buffer.getvalue())
        yield path, count


def upload_zips(client, dataset_id: int, zips) -> tuple[float, list[int]]:
    """Uploads each (path, count) zip in one request and deletes it; (seconds of the requests, image ids)."""
    import numpy as np

    ids = []
    seconds = 0.0
    for path, count in zips:
        with open(path, "rb") as fh:
            started = time.perf_counter()
            response = check(client.post(f"/api/datasets/{dataset_id}/images/", {"files": fh}), status=201)
            seconds += time.perf_counter() - started
        path.unlink()
        body = response.json()
        if body["counts"]["created"] != count:
            raise SystemExit(f"{path.name}: {body['counts']} (expected {count} created)")
        ids.append(np.fromiter((c["id"] for c in body["created"]), dtype=np.int64, count=count))
    return seconds, np.concatenate(ids).tolist() if ids else []


# --- 2. the run, on a worker, with its peak memory -------------------------------------------------------------------


def _rss_and_parent(pid: int) -> tuple[int, int] | None:
    """(resident bytes, parent pid) from /proc, None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except (OSError, IndexError):
        return None
    parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces and ')'
    return int(statm[1]) * os.sysconf("SC_PAGE_SIZE"), parent


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants (prefork children included)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _rss_and_parent(int(entry.name))
            if found is not None:
                table[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, (_, parent) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][0]
            todo.extend(children.get(pid, ()))
    return total


class PeakMemory:
    """Samples a process tree's resident memory in a thread; .peak is the largest sum seen, in bytes."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(self.pid))


class Worker:
    """`celery -A project worker -Q default,ml --concurrency N` as a subprocess of this process."""

    def __init__(self, concurrency: int, log: Path):
        self.concurrency, self.log, self.proc = concurrency, log, None

    def __enter__(self):
        cmd = [sys.executable, "-m", "celery", "-A", "project", "worker", "-Q", "default,ml"]
        cmd += ["--concurrency", str(self.concurrency), "--loglevel=INFO", "--without-gossip", "--without-mingle"]
        # Tasks an earlier bench left queued (a reused dataset's suggestion updates) must not run before the run.
        cmd += ["--purge"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 180
        while "ready." not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _own_peak_rss_bytes(fn):
    """Runs fn; this process's peak RSS while it ran (Linux: the high-water mark, reset first)."""
    from bench.api_speed import _status_kb

    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    result = fn()
    return _status_kb()["VmHWM"] * 1024, result


def run_to_map(client, dataset_id: int, *, in_process: bool, concurrency: int = 2, timeout: float = 6 * 3600):
    """Starts a default run through the API and waits for it; (seconds, run as the API shows it, peak bytes)."""

    def start():
        return check(client.post(f"/api/datasets/{dataset_id}/runs/", {}, format="json"), status=202).json()["id"]

    def poll(run_id, worker=None):
        deadline = time.monotonic() + timeout
        while True:
            run = check(client.get(f"/api/runs/{run_id}/")).json()
            if run["status"] in FINISHED:
                return run
            if worker is not None and worker.proc.poll() is not None:
                raise SystemExit(f"the worker died:\n{worker.log.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"run {run_id} still {run['status']} after {timeout:.0f} s")
            time.sleep(RUN_POLL_SECONDS)

    if in_process:
        from embeddings.services import training_run_execute

        def execute():
            started = time.perf_counter()
            run_id = start()
            training_run_execute(run_id=run_id, worker_name="scale bench (in process)")
            return time.perf_counter() - started, poll(run_id)

        peak, (seconds, run) = _own_peak_rss_bytes(execute)
    else:
        log = Path(tempfile.mkstemp(prefix="scale-worker-", suffix=".log")[1])
        with Worker(concurrency, log) as worker, PeakMemory(worker.proc.pid) as memory:
            started = time.perf_counter()
            run = poll(start(), worker)
            seconds = time.perf_counter() - started
        peak = memory.peak
        print(f"  worker log: {log}", flush=True)
    if run["status"] != "succeeded":
        raise SystemExit(f"run {run['id']} {run['status']}: {run.get('error')}")
    return seconds, run, peak


# --- 3. and 4. the map, the page, labeling, similar images, export -------------------------------------------------


def map_page_seconds(user, dataset_id: int, repeat: int, chromium: str) -> tuple[float, float | None]:
    """Median seconds to the map page's interactive mark in headless Chromium (bench/map_browser.py), and
    the median of when its map data had arrived (None when the page did not say)."""
    from playwright.sync_api import sync_playwright

    from bench.map_browser import measure, serve, session_cookie

    server, base_url = serve()
    try:
        cookie = session_cookie(user, base_url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            OUT.mkdir(parents=True, exist_ok=True)
            shot = OUT / f"scale_map_{dataset_id}.png"
            shot.unlink(missing_ok=True)
            fetched = []
            url = f"/datasets/{dataset_id}/map/"
            times = measure(browser, base_url, cookie, url, repeat, fetched=fetched, shot=str(shot))
            browser.close()
    finally:
        server.shutdown()
    return statistics.median(times), (statistics.median(fetched) if fetched else None)


def bulk_label(client, dataset_id: int, image_ids: list[int], count: int, seed: int = 0) -> tuple[float, int]:
    """One bulk request labeling `count` of the images (all if fewer), picked at random; (seconds, updated)."""
    import numpy as np

    name = f"scale {time.time():.0f}"  # a fresh class each time, so a reused dataset's images all change
    cls = check(client.post(f"/api/datasets/{dataset_id}/classes/", {"name": name}, format="json"), status=201)
    chosen = np.random.default_rng(seed).choice(image_ids, min(count, len(image_ids)), replace=False)
    body = {"class": cls.json()["id"], "image_ids": sorted(int(i) for i in chosen)}
    url = f"/api/datasets/{dataset_id}/annotations/bulk/"
    seconds, response = timed(lambda: check(client.post(url, body, format="json")))
    updated = response.json()["updated"]
    if updated != len(chosen):
        raise SystemExit(f"bulk label: {updated} updated of {len(chosen)}")
    return seconds, updated


def similar_p95(client, image_ids: list[int], queries: int, seed: int = 0) -> tuple[float, float]:
    """(first call, p95 of the next `queries`) seconds of similar/?k=10 for random images."""
    import numpy as np

    sample = np.random.default_rng(seed + 1).choice(image_ids, min(queries + 1, len(image_ids)), replace=False)
    times = []
    for image_id in sample:
        seconds, response = timed(lambda: check(client.get(f"/api/images/{int(image_id)}/similar/?k={SIMILAR_K}")))
        if len(response.json()) != min(SIMILAR_K, len(image_ids) - 1):
            raise SystemExit(f"similar/ of {image_id}: {len(response.json())} answers")
        times.append(seconds)
    return times[0], percentile(times[1:] or times, 95)


def export_csv(client, dataset_id: int) -> tuple[float, int, int]:
    """The full CSV export (unlabeled images too), streamed and read to the end; (seconds, bytes, rows)."""

    def read():
        response = check(client.get(f"/api/datasets/{dataset_id}/export/?format=csv&include_unlabeled=true"))
        size = lines = 0
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
        return size, lines - 1

    seconds, (size, rows) = timed(read)
    return seconds, size, rows


# --- the whole benchmark -------------------------------------------------------------------------------------------


def bench_user(username: str = "scale-bench"):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_active": True})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return user, client


def run_scale(
    n: int,
    *,
    batch: int = 10_000,
    in_process: bool = False,
    concurrency: int = 2,
    browser: bool = True,
    browser_repeat: int = 3,
    bulk: int = 100_000,
    similar: int = 200,
    seed: int = 0,
    base: str = "mnist",
    chromium: str = "/usr/bin/chromium",
    reuse_dataset: int | None = None,
    skip_run: bool = False,
    log=print,
) -> dict:
    """Every figure for n images, on the database Django is set up with; a dict of numbers.

    With reuse_dataset (the id of a dataset an earlier call uploaded) the upload is skipped and
    its figure left unmeasured: the run and everything after it are measured again (with skip_run,
    only what comes after the run, on the dataset's current map)."""
    from bench.map_browser import map_api_timings

    results: dict = {"n": n, "loads": [load_average()]}
    user, client = bench_user()
    if reuse_dataset is not None:
        from labeling.models import Image

        dataset_id = reuse_dataset
        ids = list(Image.objects.filter(dataset_id=dataset_id).order_by("id").values_list("id", flat=True))
        if len(ids) != n:
            raise SystemExit(f"dataset {dataset_id} holds {len(ids):,} images, not {n:,}")
        log(f"reusing dataset {dataset_id}'s {n:,} images: the upload is not measured")
    else:
        dataset_id = check(client.post("/api/datasets/", {"name": f"scale {n} {time.time():.0f}"}, format="json"), 201)
        dataset_id = dataset_id.json()["id"]
        log(f"dataset {dataset_id} (--reuse-dataset {dataset_id} measures the run again without uploading)")
        with tempfile.TemporaryDirectory(prefix="simlabel-scale-") as tmp:
            log(f"uploading {n:,} images in zips of {batch:,} (load {load_average()})")
            # Each zip is generated just before its upload and deleted after it (disk and memory hold
            # one batch), so the rate is the upload requests' own time.
            seconds, ids = upload_zips(client, dataset_id, write_upload_zips(n, batch, Path(tmp), seed, base))
        results["upload"] = n / seconds
        results["upload_seconds"] = seconds
        results["loads"].append(load_average())
        log(f"  {n:,} images in {seconds:.1f} s: {n / seconds:,.0f} /s (load {load_average()})")

    if skip_run:
        if reuse_dataset is None:
            raise SystemExit("--skip-run measures a reused dataset's current map: give --reuse-dataset")
        log("the run is not measured: the figures after it are, on the dataset's current map")
        results["peak_memory_of"] = "no run"
    else:
        log(f"run with default parameters ({'in process' if in_process else f'worker, concurrency {concurrency}'})")
        seconds, run, peak = run_to_map(client, dataset_id, in_process=in_process, concurrency=concurrency)
        results.update(start_to_map=seconds, peak_memory=peak / 1e9, stages=dict(run.get("stage_timings") or {}))
        results["peak_memory_of"] = "this process (in process)" if in_process else "worker process tree"
        results["loads"].append(load_average())
        log(
            f"  map ready in {seconds:.1f} s, stages {results['stages']}, peak {peak / 1e9:.2f} GB (load {load_average()})"
        )

    api = map_api_timings(client, f"/api/datasets/{dataset_id}/map/")
    for label, key in (("JSON", "json"), ("binary", "binary")):
        first, warm, size = api[label]
        results.update({f"map_{key}_first": first, f"map_{key}_warm": warm, f"map_{key}_bytes": size / 1e6})
    log(f"  map JSON / binary: {api} (load {load_average()})")
    if browser:
        results["map_page"], results["map_page_fetched"] = map_page_seconds(user, dataset_id, browser_repeat, chromium)
        fetched = results["map_page_fetched"]
        log(
            f"  map page interactive {results['map_page']:.2f} s"
            + (f" (map data in at {fetched:.2f} s)" if fetched is not None else "")
            + f" (load {load_average()})"
        )
    results["loads"].append(load_average())

    results["bulk"], results["bulk_images"] = bulk_label(client, dataset_id, ids, bulk, seed)
    log(f"  bulk label {results['bulk_images']:,} images: {results['bulk']:.2f} s (load {load_average()})")
    first, p95 = similar_p95(client, ids, similar, seed)
    results.update(similar_first_ms=first * 1000, similar_p95=p95 * 1000)
    log(f"  similar/?k={SIMILAR_K}: first {first * 1000:.0f} ms, p95 {p95 * 1000:.1f} ms (load {load_average()})")
    results["export_csv"], results["export_bytes"], rows = export_csv(client, dataset_id)
    if rows != n:
        raise SystemExit(f"CSV export: {rows} rows for {n} images")
    log(f"  CSV export of {rows:,} rows: {results['export_csv']:.2f} s (load {load_average()})")
    results["loads"].append(load_average())
    results["long_queries"] = long_running_queries()
    for seconds, query in results["long_queries"]:
        log(f"  STILL RUNNING on the database for {seconds:.0f} s (it shares the cores with every figure): {query}")
    return results


def long_running_queries(older_than_s: float = 30.0) -> list[tuple[float, str]]:
    """Other sessions' statements on this database running longer than `older_than_s` (PostgreSQL; else none).

    A query the run's worker left behind keeps a core busy while the figures are taken: a run's
    "is any image missing from it" check once ran for hours on statistics that did not know the run."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM now() - query_start), left(query, 200) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() "
            "AND now() - query_start > make_interval(secs => %s) ORDER BY query_start",
            [older_than_s],
        )
        return [(float(seconds), query) for seconds, query in cursor.fetchall()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="unique images (default 100000)")
    parser.add_argument("--batch", type=int, default=10_000, help="images per uploaded zip (default 10000)")
    parser.add_argument("--database-url", default=DEFAULT_DB, help=f"dropped and recreated (default {DEFAULT_DB})")
    parser.add_argument("--in-process", action="store_true", help="execute the run here instead of on a worker")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's --concurrency (default 2)")
    parser.add_argument("--no-browser", action="store_true", help="skip the map page in Chromium")
    parser.add_argument("--browser-repeat", type=int, default=3)
    parser.add_argument("--bulk", type=int, default=100_000, help="images labeled in one bulk request")
    parser.add_argument("--similar", type=int, default=200, help="similar/ requests for the p95")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", default="mnist", choices=["mnist", "digits"], help="digits the images are warps of")
    parser.add_argument("--chromium", default=os.environ.get("SIMLABEL_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument(
        "--reuse-dataset",
        type=int,
        metavar="ID",
        help="measure again on a dataset an earlier call uploaded (kept database)",
    )
    parser.add_argument("--skip-run", action="store_true", help="with --reuse-dataset: measure the map and after only")
    args = parser.parse_args(argv)
    if args.skip_run and args.reuse_dataset is None:
        parser.error("--skip-run measures a reused dataset's current map: give --reuse-dataset ID")

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs a loop in this thread
    recreate = bool(args.database_url) and args.reuse_dataset is None
    setup_django(database_url=args.database_url or None, recreate=recreate)
    results = run_scale(
        args.n,
        batch=args.batch,
        in_process=args.in_process,
        concurrency=args.concurrency,
        browser=not args.no_browser,
        browser_repeat=args.browser_repeat,
        bulk=args.bulk,
        similar=args.similar,
        seed=args.seed,
        base=args.base,
        chromium=args.chromium,
        reuse_dataset=args.reuse_dataset,
        skip_run=args.skip_run,
        log=lambda text: print(text, flush=True),
    )
    rows = report_rows(results, args.n)
    print(f"\nsimlabel at {args.n:,} images on {database_description()}; {machine_description()}")
    print(f"load average (1/5/15 min) at each phase: {' | '.join(results['loads'])}; peak memory of the "
          f"{results['peak_memory_of']}")  # fmt: skip
    width = max(len(r["what"]) for r in rows)
    for r in rows:
        print(f"{r['what']:<{width}}  {r['value']:>12}  goal {r['goal']:<12}  today {r['today']:<60}  {r['verdict']}")
    print()
    print(markdown(rows))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps({"results": results, "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
