"""Ingest speed: stored, hashed and thumbnailed images per second.

    .venv/bin/python bench/ingest.py [--png 10000] [--jpeg 1000] [--baseline-png 1000] [--baseline-jpeg 100]

Two workloads from issue 8, each measured with simlabel's ingest
(labeling.services.images) and with a straightforward implementation in the
same run (per image: read the whole member, open with Pillow, decode at full
size, thumbnail, save both files through the FileField, one INSERT and one
transaction per image):

- a .zip of 10,000 PNGs of 28x28 px (MNIST-sized digits)   target >= 1,000 images/s
- 1,000 JPEGs of 1024x768 px in a folder                     target >=   100 images/s

By default it runs on a fresh SQLite database and media folder in a temporary
directory (set SIMLABEL_VAR_DIR to keep them); with DATABASE_URL set it uses
that database (created and migrated when needed) and deletes its benchmark
datasets afterwards.

Ingest as the tables grow (issue 17: 1,000,000 images uploaded at >= 1,000/s
from the first file to the last):

    .venv/bin/python bench/ingest.py --existing 0,500000,1000000 [--api-png 10000] [--per-request 1000]

fills one dataset with that many image rows before each measurement (COPY on
PostgreSQL, bulk_create on SQLite; real-looking rows with distinct SHA-256
values, all pointing at one stored file, so every index and the (dataset,
sha256) unique constraint hold as many entries as after real uploads; the
planner statistics stay as the server leaves them, --analyze refreshes them), then
uploads --api-png fresh PNGs through the REST API (POST
/api/datasets/{id}/images/ through Django's test client, one .zip of
--per-request PNGs per request) and prints images/s at each size beside the
rate at the first size, measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(var_dir: Path) -> None:
    """Django on this var folder (media under it), migrated when it is a fresh SQLite one (no DATABASE_URL)."""
    os.environ.setdefault("SIMLABEL_VAR_DIR", str(var_dir))
    os.environ["MEDIA_ROOT"] = str(var_dir / "bench-media")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_DEBUG", "false")  # as in production: no query log
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        from bench._django import ensure_postgres_database

        ensure_postgres_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def digit_pngs(n: int, seed: int = 0):
    """n distinct 28x28 grayscale PNGs: scikit-learn's digits upscaled, with per-image noise."""
    import numpy as np
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    digits = load_digits()
    base = [
        np.asarray(PILImage.fromarray((img * 15).astype(np.uint8)).resize((24, 24), PILImage.Resampling.BILINEAR))
        for img in digits.images
    ]
    rng = np.random.default_rng(seed)
    for i in range(n):
        canvas = np.zeros((28, 28), np.int16)
        canvas[2:26, 2:26] = base[i % len(base)]
        canvas += rng.integers(-12, 13, size=(28, 28), dtype=np.int16)
        buf = io.BytesIO()
        PILImage.fromarray(canvas.clip(0, 255).astype(np.uint8)).save(buf, "PNG")
        yield f"digits/{digits.target[i % len(base)]}/{i:05d}.png", buf.getvalue()


def photo_jpegs(n: int, seed: int = 0):
    """n distinct 1024x768 JPEGs with photo-like content (smooth shapes plus grain)."""
    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    bases = []
    for _b in range(8):
        img = PILImage.new("RGB", (1024, 768), tuple(int(v) for v in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(40):
            x, y = rng.integers(0, 1024), rng.integers(0, 768)
            r = int(rng.integers(20, 250))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        bases.append(np.asarray(img.filter(ImageFilter.GaussianBlur(6)), dtype=np.int16))
    for i in range(n):
        arr = bases[i % len(bases)] + rng.integers(-10, 11, size=(768, 1024, 1), dtype=np.int16)
        buf = io.BytesIO()
        PILImage.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        yield f"photo_{i:04d}.jpg", buf.getvalue()


def baseline_ingest(dataset, user, items) -> int:
    """The straightforward way: one file at a time, full decode, one transaction each."""
    from django.core.files.base import ContentFile
    from PIL import Image as PILImage

    from labeling.models import Image

    stored = 0
    for name, data in items:
        sha = hashlib.sha256(data).hexdigest()
        if Image.objects.filter(dataset=dataset, sha256=sha).exists():
            continue
        img = PILImage.open(io.BytesIO(data))
        img.load()
        thumb = img.convert("RGB")
        thumb.thumbnail((128, 128))
        out = io.BytesIO()
        thumb.save(out, "WEBP")
        row = Image(
            dataset=dataset,
            sha256=sha,
            width=img.width,
            height=img.height,
            format=img.format,
            mode=img.mode,
            size_bytes=len(data),
            original_name=os.path.basename(name),
            uploaded_by=user,
        )
        row.file.save(os.path.basename(name), ContentFile(data), save=False)
        row.thumbnail.save("thumb.webp", ContentFile(out.getvalue()), save=False)
        row.save()
        stored += 1
    return stored


def _zip_members(path: Path, limit: int):
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist()[:limit]:
            yield info.filename, zf.read(info)


def _folder_files(path: Path, limit: int):
    for file in sorted(path.iterdir())[:limit]:
        yield file.name, file.read_bytes()


# --- ingest as the tables grow ---------------------------------------------------------------------------

PREFILL_NAME = "bench-prefill"  # original_name prefix of the rows put in without an upload


def prefill_images(dataset, user, count: int, start: int) -> None:
    """Adds `count` image rows to the dataset without uploading: what `count` earlier uploads would leave.

    Each row has its own SHA-256 (of a counter, so distinct from every real
    image's), so the (dataset, sha256) unique index and the dataset and
    uploader indexes grow exactly as with real uploads; the rows all point at
    one small stored PNG and its thumbnail.
    """
    from django.core.files.base import ContentFile
    from django.db import connection
    from django.utils import timezone

    from labeling.models import Image

    if count <= 0:
        return
    storage = Image._meta.get_field("file").storage
    file_name = f"datasets/{dataset.pk}/images/{PREFILL_NAME}.png"
    thumb_name = f"datasets/{dataset.pk}/thumbs/{PREFILL_NAME}.png"
    if not storage.exists(file_name):
        _name, data = next(digit_pngs(1, seed=999))
        storage.save(file_name, ContentFile(data))
        storage.save(thumb_name, ContentFile(data))
    now = timezone.now()

    def rows():
        for i in range(start, start + count):
            sha = hashlib.sha256(f"{PREFILL_NAME} {dataset.pk} {i}".encode()).hexdigest()
            yield (dataset.pk, file_name, thumb_name, sha, 28, 28, "PNG", "L", 700, f"{PREFILL_NAME}-{i}.png", user.pk)

    if connection.vendor == "postgresql":
        columns = "dataset_id, file, thumbnail, sha256, width, height, format, mode, size_bytes, original_name, "
        columns += "uploaded_by_id, uploaded_at"
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {Image._meta.db_table} ({columns}) FROM STDIN") as copy:
                for row in rows():
                    copy.write_row((*row, now))
        return
    fields = ("dataset_id", "file", "thumbnail", "sha256", "width", "height", "format", "mode", "size_bytes")
    fields += ("original_name", "uploaded_by_id")
    chunk = []
    for row in rows():
        chunk.append(Image(**dict(zip(fields, row))))
        if len(chunk) >= 50_000:
            Image.objects.bulk_create(chunk)
            chunk = []
    Image.objects.bulk_create(chunk)


def api_zips(n: int, per_request: int, seed: int) -> list[bytes]:
    """n fresh PNGs (distinct for each seed) as .zip archives of per_request PNGs each."""
    zips = []
    buf = zf = None
    for i, (name, data) in enumerate(digit_pngs(n, seed=seed)):
        if i % per_request == 0:
            if zf is not None:
                zf.close()
                zips.append(buf.getvalue())
            buf = io.BytesIO()
            zf = zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED)
        zf.writestr(name, data)
    if zf is not None:
        zf.close()
        zips.append(buf.getvalue())
    return zips


def upload_through_api(client, dataset, zips: list[bytes], per_request: int) -> list[tuple[int, float]]:
    """POSTs each zip to the upload endpoint; (images stored, seconds) of each request."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    timings = []
    for k, data in enumerate(zips):
        t0 = time.perf_counter()
        response = client.post(
            f"/api/datasets/{dataset.pk}/images/",
            {"files": [SimpleUploadedFile(f"part-{k:04d}.zip", data, "application/zip")]},
            format="multipart",
        )
        seconds = time.perf_counter() - t0
        assert response.status_code == 201, (response.status_code, response.content[:500])
        counts = response.json()["counts"]
        assert counts["skipped"] == 0 and counts["rejected"] == 0, counts
        timings.append((counts["created"], seconds))
    return timings


class SqlTimer:
    """Seconds spent in each kind of SQL statement (connection.execute_wrapper), to see which one grows."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, execute, sql, params, many, context):
        words = sql.replace('"', "").split()
        kind = words[0].upper() if words else "?"
        after = [words[i + 1] for i, w in enumerate(words[:-1]) if w.upper() in ("FROM", "INTO", "UPDATE")]
        table = after[0] if after else ""
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = f"{kind} {table}".strip()
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0


def quiet_database(analyze: bool) -> None:
    """Writes the pre-fill's dirty pages out now (CHECKPOINT), so that work is not measured as the upload's.

    The planner statistics are left as the server keeps them (after real uploads
    they lag behind a growing dataset just the same) unless `analyze`.
    """
    from django.db import connection

    from labeling.models import Image

    with connection.cursor() as cursor:
        if analyze:
            cursor.execute(f"ANALYZE {Image._meta.db_table}")
        if connection.vendor == "postgresql":
            cursor.execute("CHECKPOINT")


def bench_growth(sizes: list[int], n: int, per_request: int, analyze: bool = False) -> int:
    """Upload rate through the API with `sizes` images already in the dataset; 0 when all meet 1,000/s."""
    from django.contrib.auth import get_user_model
    from django.core.files.storage import FileSystemStorage
    from django.db import connection
    from rest_framework.test import APIClient

    from labeling.models import Dataset, Image, Membership
    from labeling.services.images import images_cleanup_orphans

    user, _ = get_user_model().objects.get_or_create(username="bench-ingest")
    dataset = Dataset.objects.create(name="bench ingest: growing dataset", created_by=user)
    Membership.objects.create(dataset=dataset, user=user, role="admin")
    warm_up = Dataset.objects.create(name="bench ingest: warm-up", created_by=user)
    Membership.objects.create(dataset=warm_up, user=user, role="admin")
    client = APIClient()
    client.force_login(user)
    # The first request of a process pays for imports and first-use set-up; none of the measured ones should.
    upload_through_api(client, warm_up, api_zips(200, 200, seed=999), 200)
    with connection.cursor() as cursor:  # every run starts from the same statistics: the dataset still empty
        cursor.execute(f"ANALYZE {Image._meta.db_table}")
    vendor = "PostgreSQL" if connection.vendor == "postgresql" else connection.vendor
    print(f"upload through the API, {n:,} fresh PNGs 28x28 in zips of {per_request:,}, {vendor}", flush=True)
    results = []
    prefilled = 0
    try:
        for k, size in enumerate(sorted(sizes)):
            have = Image.objects.filter(dataset=dataset).count()
            t0 = time.perf_counter()
            prefill_images(dataset, user, size - have, start=prefilled)
            prefilled += max(0, size - have)
            fill_s = time.perf_counter() - t0
            zips = api_zips(n, per_request, seed=1000 + k)
            quiet_database(analyze)
            load_before = os.getloadavg()[0]
            sql = SqlTimer()
            t0 = time.perf_counter()
            with connection.execute_wrapper(sql):
                timings = upload_through_api(client, dataset, zips, per_request)
            seconds = time.perf_counter() - t0
            stored = sum(c for c, _s in timings)
            assert stored == n, (stored, n)
            first = timings[0][0] / timings[0][1]
            last = timings[-1][0] / timings[-1][1]
            load = (load_before + os.getloadavg()[0]) / 2
            results.append((max(size, have), stored / seconds, seconds, first, last, load))
            print(
                f"  {max(size, have):>9,} existing: {stored / seconds:>6,.0f} images/s ({stored:,} in {seconds:.1f} s; "
                f"first request {first:,.0f}/s, last {last:,.0f}/s; pre-fill {fill_s:.1f} s; load {load:.1f})",
                flush=True,
            )
            top = sorted(sql.seconds.items(), key=lambda kv: -kv[1])[:4]
            print("      SQL: " + ", ".join(f"{key} {secs:.2f} s" for key, secs in top), flush=True)
    finally:
        with connection.cursor() as cursor:  # nothing refers to pre-filled rows; a plain DELETE is enough
            cursor.execute(
                f"DELETE FROM {Image._meta.db_table} WHERE dataset_id = %s AND original_name LIKE %s",
                [dataset.pk, PREFILL_NAME + "-%"],
            )
            if connection.vendor == "postgresql":
                # A server without autovacuum keeps a million dead rows otherwise, and the next run's plans see them.
                cursor.execute(f"VACUUM {Image._meta.db_table}")
        storage = Image._meta.get_field("file").storage
        for ds in (dataset, warm_up):
            Image.objects.filter(dataset=ds).delete()
            ds.delete()
            if isinstance(storage, FileSystemStorage):  # much faster than deleting file by file
                shutil.rmtree(Path(storage.location) / "datasets" / str(ds.pk), ignore_errors=True)
        images_cleanup_orphans(min_age_seconds=0)
    base = results[0][1]
    print()
    print(f"{'existing images':>16} {'images/s':>9} {'vs first':>9} {'first/last request':>19} {'load':>5}  >= 1,000/s")
    for existing, rate, _seconds, first, last, load in results:
        ok = "yes" if rate >= 1000 else "NO"
        print(f"{existing:>16,} {rate:>9,.0f} {rate / base:>8.0%} {first:>9,.0f} / {last:<7,.0f} {load:>5.1f}  {ok}")
    return 0 if all(rate >= 1000 for _e, rate, *_ in results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--png", type=int, default=10_000, help="PNGs in the zip (default 10,000)")
    parser.add_argument("--jpeg", type=int, default=1_000, help="1024x768 JPEGs (default 1,000)")
    parser.add_argument(
        "--baseline-png", type=int, default=1_000, help="PNGs the baseline ingests (its rate is per image)"
    )
    parser.add_argument("--baseline-jpeg", type=int, default=100, help="JPEGs the baseline ingests")
    parser.add_argument(
        "--existing",
        help="instead of the workloads above: upload rate through the API with this many images already in the "
        "dataset, e.g. 0,500000,1000000",
    )
    parser.add_argument("--api-png", type=int, default=10_000, help="PNGs uploaded at each --existing size")
    parser.add_argument("--per-request", type=int, default=1_000, help="PNGs per uploaded .zip (one per request)")
    parser.add_argument(
        "--analyze", action="store_true", help="ANALYZE the images table after each pre-fill (fresh planner statistics)"
    )
    args = parser.parse_args()
    sizes = None
    if args.existing is not None:
        try:
            sizes = [int(v.replace("_", "")) for v in args.existing.split(",") if v.strip()]
        except ValueError:
            parser.error("--existing takes comma-separated image counts, e.g. 0,500000,1000000")
        if not sizes or min(sizes) < 0:
            parser.error("--existing takes comma-separated image counts >= 0")

    work = Path(tempfile.mkdtemp(prefix="simlabel-bench-ingest-"))
    var_dir = Path(os.environ.get("SIMLABEL_VAR_DIR") or work / "var")
    try:
        setup_django(var_dir)
        if sizes is not None:
            return bench_growth(sizes, args.api_png, args.per_request, args.analyze)
        from django.contrib.auth import get_user_model

        from labeling.models import Dataset, Image
        from labeling.services.images import images_cleanup_orphans, images_ingest_path

        user, _ = get_user_model().objects.get_or_create(username="bench-ingest")
        datasets = []

        def new_dataset(name):
            ds = Dataset.objects.create(name=f"bench ingest: {name}", created_by=user)
            datasets.append(ds)
            return ds

        print(f"building inputs in {work} ...", flush=True)
        png_zip = work / "digits.zip"
        with zipfile.ZipFile(png_zip, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in digit_pngs(args.png):
                zf.writestr(name, data)
        jpeg_dir = work / "photos"
        jpeg_dir.mkdir()
        for name, data in photo_jpegs(args.jpeg):
            (jpeg_dir / name).write_bytes(data)

        results = []

        def measure(label, target, count_expected, fast, slow, slow_n):
            ds = new_dataset(label + " (simlabel)")
            t0, c0 = time.perf_counter(), time.process_time()
            report = fast(ds)
            fast_s, fast_cpu = time.perf_counter() - t0, time.process_time() - c0
            assert len(report.created) == count_expected, report.summary()
            assert Image.objects.filter(dataset=ds).count() == count_expected
            ds_base = new_dataset(label + " (baseline)")
            t0, c0 = time.perf_counter(), time.process_time()
            stored = slow(ds_base, slow_n)
            slow_s, slow_cpu = time.perf_counter() - t0, time.process_time() - c0
            results.append(
                (
                    label,
                    count_expected / fast_s,
                    fast_s,
                    count_expected,
                    stored / slow_s,
                    stored,
                    target,
                    count_expected / fast_cpu,
                    stored / slow_cpu,
                )
            )

        measure(
            f"zip of {args.png:,} PNGs 28x28",
            1000,
            args.png,
            lambda ds: images_ingest_path(dataset=ds, user=user, path=png_zip),
            lambda ds, n: baseline_ingest(ds, user, _zip_members(png_zip, n)),
            args.baseline_png,
        )
        measure(
            f"{args.jpeg:,} JPEGs 1024x768",
            100,
            args.jpeg,
            lambda ds: images_ingest_path(dataset=ds, user=user, path=jpeg_dir),
            lambda ds, n: baseline_ingest(ds, user, _folder_files(jpeg_dir, n)),
            args.baseline_jpeg,
        )

        cpu = os.cpu_count()
        print()
        print(
            f"Ingest benchmark ({cpu} CPUs, {'PostgreSQL' if os.environ.get('DATABASE_URL') else 'SQLite'}, "
            f"local file storage)"
        )
        print(f"{'workload':34} {'simlabel':>14} {'baseline':>14} {'speed-up':>9} {'target':>9}  ok")
        ok_all = True
        for label, rate, secs, n, base_rate, base_n, target, cpu_rate, base_cpu_rate in results:
            ok = rate >= target
            ok_all &= ok
            print(
                f"{label:34} {rate:>9,.0f} im/s {base_rate:>9,.0f} im/s {rate / base_rate:>8.1f}x {target:>6,} /s  "
                f"{'yes' if ok else 'NO'}"
            )
            print(
                f"{'':34} ({n:,} in {secs:.2f} s; baseline {base_n:,} images; per CPU-second: "
                f"{cpu_rate:,.0f} vs {base_cpu_rate:,.0f})"
            )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        print(
            f"load average during the run: {load:.1f} (numbers are wall-clock; on a busy machine the "
            "per-CPU-second rates are the fairer comparison)"
        )
        for ds in datasets:
            Image.objects.filter(dataset=ds).delete()
            ds.delete()
        images_cleanup_orphans(min_age_seconds=0)
        return 0 if ok_all else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
