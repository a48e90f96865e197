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
that (migrated) database and deletes its benchmark datasets afterwards.
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
    import django

    django.setup()
    from django.core.management import call_command

    if not os.environ.get("DATABASE_URL"):
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--png", type=int, default=10_000, help="PNGs in the zip (default 10,000)")
    parser.add_argument("--jpeg", type=int, default=1_000, help="1024x768 JPEGs (default 1,000)")
    parser.add_argument(
        "--baseline-png", type=int, default=1_000, help="PNGs the baseline ingests (its rate is per image)"
    )
    parser.add_argument("--baseline-jpeg", type=int, default=100, help="JPEGs the baseline ingests")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="simlabel-bench-ingest-"))
    var_dir = Path(os.environ.get("SIMLABEL_VAR_DIR") or work / "var")
    try:
        setup_django(var_dir)
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
