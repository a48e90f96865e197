"""Bucket sync speed: objects listed, fetched, checked and thumbnailed per second, and peak memory.

    .venv/bin/python bench/storage_sync.py [--objects 1000] [--size 64] [--threads 8]

Puts N distinct PNGs (size x size px, RGB) under a prefix of a bucket on a local S3
API (moto's server, tests/s3_server.py: real HTTP, credentials checked), connects it
to a new dataset and runs one sync (labeling.services.storages, in this process as a
worker runs it), then a re-sync of the unchanged bucket. Prints wall time, objects
per second and the peak memory of the process (Python allocations, tracemalloc, and
the resident set's high-water mark). The S3 server runs in this process, so its work
is counted too: a real endpoint makes fetching slower (latency) and this process
lighter.

Runs on a fresh SQLite database in a temporary folder unless DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import setup_django  # noqa: E402


def pngs(n: int, size: int):
    import numpy as np
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    for i in range(n):
        buf = io.BytesIO()
        PILImage.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(buf, "PNG")
        yield f"bench/{i // 100:03d}/{i:05d}.png", buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="side of each PNG in pixels")
    parser.add_argument("--threads", type=int, default=8, help="SIMLABEL_STORAGE_FETCH_THREADS")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also measure peak Python allocations (slows every allocation, the in-process S3 server's too)",
    )
    args = parser.parse_args()
    os.environ["SIMLABEL_STORAGE_FETCH_THREADS"] = str(args.threads)
    os.environ["SIMLABEL_STORAGE_ALLOWED_NETWORKS"] = "127.0.0.1/32"  # the S3 server below listens there
    with tempfile.TemporaryDirectory(prefix="simlabel-storage-bench-") as tmp:
        setup_django(Path(tmp))
        run(args)


def run(args) -> None:
    from django.contrib.auth import get_user_model

    from labeling.models import Dataset, Image, Membership, Role, StorageSync
    from labeling.services.storages import storage_connect, storage_sync_execute, storage_sync_start
    from tests.s3_server import s3_client, s3_server

    server = s3_server()
    client = s3_client(server)
    bucket = f"bench-{int(time.time())}"
    client.create_bucket(Bucket=bucket)
    started = time.perf_counter()
    total_bytes = 0
    for key, data in pngs(args.objects, args.size):
        client.put_object(Bucket=bucket, Key=key, Body=data)
        total_bytes += len(data)
    print(
        f"put {args.objects:,} PNGs ({args.size}x{args.size}, {total_bytes / 1e6:.1f} MB) in "
        f"{time.perf_counter() - started:.1f} s"
    )

    user = get_user_model().objects.create(username=f"bench-{bucket}")
    dataset = Dataset.objects.create(name=f"Storage bench {bucket}", created_by=user)
    Membership.objects.create(dataset=dataset, user=user, role=Role.ADMIN)
    storage = storage_connect(
        dataset=dataset,
        user=user,
        endpoint_url=server["endpoint_url"],
        bucket=bucket,
        prefix="bench",
        region=server["region"],
        access_key_id=server["access_key_id"],
        secret_access_key=server["secret_access_key"],
    )

    def one_sync(label: str) -> StorageSync:
        sync = storage_sync_start(storage=storage, user=user)
        if args.tracemalloc:
            tracemalloc.start()
        t0 = time.perf_counter()
        outcome = storage_sync_execute(sync_id=sync.pk)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
        tracemalloc.stop()
        sync = StorageSync.objects.get(pk=sync.pk)
        counts = sync.report.get("counts", {})
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(
            f"{label}: {outcome} in {elapsed:.2f} s = {counts.get('listed', 0) / elapsed:,.0f} objects/s listed, "
            f"{counts.get('added', 0) + counts.get('updated', 0):,} fetched; process peak RSS {rss:.0f} MiB"
            + (f", peak Python allocations {peak / 2**20:.1f} MiB" if args.tracemalloc else "")
            + f"; counts {counts}"
        )
        if outcome != "succeeded":
            print(sync.error)
        return sync

    one_sync("first sync")
    assert Image.objects.filter(storage=storage).count() == args.objects
    one_sync("re-sync, nothing changed")
    if os.environ.get("DATABASE_URL"):
        dataset.delete()
        user.delete()


if __name__ == "__main__":
    main()
