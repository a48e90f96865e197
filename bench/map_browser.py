"""How fast the map page becomes interactive with 100,000 (or 1,000,000) points, in headless Chromium.

Builds a dataset of N images with a finished run (fake embeddings: points in
Gaussian blobs, a third of them labeled), serves the app from a thread, and
measures the time from navigation to "map interactive" (map.js sets
window.simlabelMap.readyAt after Plotly's first render). The baseline, in the
same run and browser, is the straightforward page: the same JSON turned into one
object per point and drawn as SVG `scatter` traces.

It also prints the map endpoint's JSON and binary formats side by side (server
seconds first call / warm, bytes on the wire) and the time a lasso over one
cluster takes to open the selection panel.

    .venv/bin/python bench/map_browser.py [--points 100000] [--repeat 3] [--no-baseline]
        [--classes 8] [--clusters 40]   (--classes 0 --clusters 224: a fresh run's map, colored by cluster)
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

BASELINE_HTML = """<!doctype html><html><head><meta charset="utf-8">
<script src="/static/vendor/plotly/plotly-strict.min.js"></script></head>
<body><div id="plot" style="width:1000px;height:760px"></div><script>
(async () => {
  const r = await fetch("/api/datasets/%(dataset)d/map/", {credentials: "same-origin"});
  const m = await r.json();
  // One object per point, then one filter per class: the obvious way.
  const points = m.image_ids.map((id, i) => ({id, x: m.x[i], y: m.y[i], cls: m["class"][i], cluster: m.cluster[i]}));
  const keys = [...new Set(points.map(p => p.cls))];
  const traces = keys.map(k => {
    const ps = points.filter(p => p.cls === k);
    return {type: "scatter", mode: "markers", name: String(k), x: ps.map(p => p.x), y: ps.map(p => p.y),
            customdata: ps.map(p => p.id), marker: {size: 3}};
  });
  await Plotly.newPlot("plot", traces, {dragmode: "lasso", hovermode: "closest"});
  window.simlabelMap = {ready: true, readyAt: performance.now(), points: points.length};
  document.body.dataset.mapReady = "true";
})();
</script></body></html>"""


def setup_django(db_path: Path):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.pop("DATABASE_URL", None)
    os.environ["SQLITE_PATH"] = str(db_path)
    os.environ.setdefault("SIMLABEL_VAR_DIR", str(OUT / "var"))
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs a loop in this thread
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build_dataset(n_points: int, n_classes: int = 8, n_clusters: int = 40):
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from embeddings.models import ImageEmbedding, TrainingRun
    from labeling.models import Annotation, Dataset, Image, LabelClass, Membership

    User = get_user_model()
    # A fresh run on an unlabeled dataset (no classes) is drawn colored by cluster, one trace per cluster.
    name = f"bench map {n_points}" + ("" if (n_classes, n_clusters) == (8, 40) else f" {n_classes}c {n_clusters}k")
    user, _ = User.objects.get_or_create(username="bench")
    dataset = Dataset.objects.filter(name=name).first()
    if dataset and TrainingRun.objects.filter(dataset=dataset, status="succeeded").exists():
        return user, dataset
    rng = np.random.default_rng(0)
    with transaction.atomic():
        dataset = Dataset.objects.create(name=name, created_by=user)
        Membership.objects.create(dataset=dataset, user=user, role="admin")
        classes = [
            LabelClass.objects.create(dataset=dataset, name=f"class {k}", color=f"#{(k * 2654435761) & 0xFFFFFF:06x}")
            for k in range(n_classes)
        ]
        run = TrainingRun.objects.create(
            dataset=dataset,
            created_by=user,
            status="succeeded",
            stage="done",
            progress=1,
            image_count=n_points,
            cluster_count=n_clusters,
        )
        centers = rng.normal(0, 30 * max(1.0, (n_points / 100_000) ** 0.5), size=(n_clusters, 2))
        cluster = rng.integers(0, n_clusters, n_points)
        xy = centers[cluster] + rng.normal(0, 3, size=(n_points, 2))
        code = np.zeros(8, np.float32).tobytes()
        # In chunks: a million model objects at once would take gigabytes.
        chunk = 50_000
        for start in range(0, n_points, chunk):
            stop = min(n_points, start + chunk)
            images = Image.objects.bulk_create(
                [
                    Image(
                        dataset=dataset,
                        file=f"bench/{i}.png",
                        thumbnail=f"bench/{i}.webp",
                        sha256=f"{i:064x}",
                        width=28,
                        height=28,
                        format="PNG",
                        mode="L",
                        original_name=f"img-{i}.png",
                    )
                    for i in range(start, stop)
                ],
                batch_size=5000,
            )
            ImageEmbedding.objects.bulk_create(
                [
                    ImageEmbedding(
                        run=run,
                        image=image,
                        code=code,
                        x=float(xy[i, 0]),
                        y=float(xy[i, 1]),
                        cluster=int(cluster[i]),
                        suggested_class=classes[int(cluster[i]) % n_classes] if classes else None,
                        suggestion_confidence=0.8 if classes else None,
                    )
                    for i, image in zip(range(start, stop), images, strict=True)
                ],
                batch_size=5000,
            )
            Annotation.objects.bulk_create(
                [
                    Annotation(
                        image=image, dataset=dataset, label_class=classes[int(cluster[i]) % n_classes], version=1
                    )
                    for i, image in zip(range(start, stop), images, strict=True)
                    if i % 3 == 0 and classes
                ],
                batch_size=5000,
            )
    return user, dataset


def serve():
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=False)
    server.set_app(StaticFilesHandler(get_wsgi_application()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def session_cookie(user, base_url):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}


def map_api_timings(client, url: str, repeat: int = 3) -> dict[str, tuple[float, float, int]]:
    """The map endpoint as JSON and binary: (server seconds of the first call with empty caches,
    median warm seconds, bytes on the wire with gzip)."""
    from django.core.cache import cache

    from embeddings.selectors import clear_run_cache

    api = {}
    for label, query in (("JSON", {}), ("binary", {"format": "binary"})):
        clear_run_cache()  # as a new web process finds it (the Django cache here is per-process memory)
        cache.clear()
        t0 = time.perf_counter()
        response = client.get(url, query, HTTP_ACCEPT_ENCODING="gzip")
        if response.status_code != 200:
            raise SystemExit(f"{url} {query}: HTTP {response.status_code}")
        first = time.perf_counter() - t0
        warm = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            response = client.get(url, query, HTTP_ACCEPT_ENCODING="gzip")
            warm.append(time.perf_counter() - t0)
        api[label] = (first, statistics.median(warm), len(response.content))
    return api


def lasso_seconds(page) -> float:
    """Seconds from releasing a lasso around the middle of the map to the selection panel showing."""
    box = page.eval_on_selector(
        "#map-plot .nsewdrag",
        "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }",
    )
    left, top, width, height = box
    cx, cy, r = left + width / 2, top + height / 2, min(width, height) / 8
    page.mouse.move(cx - r, cy - r)
    page.mouse.down()
    for x, y in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r + 1)):
        page.mouse.move(x, y, steps=6)
    t0 = time.perf_counter()
    page.mouse.up()
    page.wait_for_selector("#selection-panel:not(.hidden)", timeout=120_000)
    return time.perf_counter() - t0


def measure(browser, base_url, cookie, url, repeat, route_html=None, fetched=None, lasso=None, shot=None, drawn=None):
    times = []
    fetched = fetched if fetched is not None else []
    for _ in range(repeat):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_cookies([cookie])
        page = context.new_page()
        if route_html is not None:
            page.route(
                f"{base_url}/bench-baseline/", lambda route: route.fulfill(body=route_html, content_type="text/html")
            )
        page.goto(base_url + url, wait_until="commit")
        # A selector wait, not wait_for_function: the page's CSP forbids eval.
        page.wait_for_selector("body[data-map-ready=true]", state="attached", timeout=180_000)
        marks = page.evaluate(
            "({ready: window.simlabelMap.readyAt, fetched: window.simlabelMap.fetchedAt || null,"
            " drawn: window.simlabelMap.drawnAt || null})"
        )
        times.append(marks["ready"] / 1000)
        if marks["fetched"]:
            fetched.append(marks["fetched"] / 1000)
        if marks["drawn"] and drawn is not None:
            drawn.append(marks["drawn"] / 1000)
        if shot and not Path(shot).exists():
            page.screenshot(path=shot)
        if lasso is not None:
            lasso.append(lasso_seconds(page))
        context.close()
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true", help="skip the SVG baseline (slow at 1,000,000 points)")
    parser.add_argument("--classes", type=int, default=8, help="label classes (0: unlabeled, colored by cluster)")
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--chromium", default=os.environ.get("SIMLABEL_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    setup_django(OUT / "map_browser.sqlite3")
    started = time.perf_counter()
    user, dataset = build_dataset(args.points, args.classes, args.clusters)
    print(f"dataset ready ({args.points} points) in {time.perf_counter() - started:.1f} s")

    server, base_url = serve()
    cookie = session_cookie(user, base_url)
    from django.test import Client

    client = Client()
    client.force_login(user)

    api = map_api_timings(client, f"/api/datasets/{dataset.pk}/map/")
    print(f"map API, {args.points} points (server time; first call with empty caches / warm; gzip bytes):")
    for label, (first, warm, size) in api.items():
        print(f"  {label:6s}: {first:6.3f} s / {warm:6.3f} s   {size / 1e6:6.2f} MB")
    print(
        f"  target at 1M: <= 2 s, <= 12 MB: binary {'met' if api['binary'][0] <= 2 and api['binary'][2] <= 12e6 else 'NOT met'}"
    )

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        fetched, lasso, drawn = [], [], []
        shot = str(OUT / f"map_{args.points}.png")
        ours = measure(
            browser,
            base_url,
            cookie,
            f"/datasets/{dataset.pk}/map/",
            args.repeat,
            fetched=fetched,
            lasso=lasso,
            shot=shot,
            drawn=drawn,
        )
        baseline = (
            []
            if args.no_baseline
            else measure(
                browser,
                base_url,
                cookie,
                "/bench-baseline/",
                args.repeat,
                route_html=BASELINE_HTML % {"dataset": dataset.pk},
            )
        )
        browser.close()
    server.shutdown()
    print(f"map page interactive, {args.points} points (median of {args.repeat}):")
    print(
        f"  simlabel map.js (binary map, typed arrays, scattergl): {statistics.median(ours):6.2f} s   runs {', '.join(f'{t:.2f}' for t in ours)}"
    )
    if baseline:
        print(
            f"  baseline (objects per point, SVG scatter): {statistics.median(baseline):6.2f} s   runs {', '.join(f'{t:.2f}' for t in baseline)}"
        )
    if fetched:
        print(
            f"  (of which waiting for the map data: {statistics.median(fetched):.2f} s; drawing after it: "
            f"{statistics.median(ours) - statistics.median(fetched):.2f} s)"
        )
    if drawn:
        print(
            f"  (drawn, before the first frame is painted and the Suggestions card's model list is in: "
            f"{statistics.median(drawn):.2f} s; pages before 2026-12-04 marked themselves ready there)"
        )
    print(f"  lasso to selection panel: {statistics.median(lasso):.2f} s   runs {', '.join(f'{t:.2f}' for t in lasso)}")
    print(f"  target <= 5 s interactive: {'met' if statistics.median(ours) <= 5 else 'NOT met'}; screenshot {shot}")


if __name__ == "__main__":
    main()
