"""An ingest process killed mid-archive leaves files without rows at worst, never rows without files."""

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from ingest_files import image_bytes, row_names, storage_names

from labeling.models import Image
from labeling.services.images import images_cleanup_orphans, images_ingest_path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs the real ingest; the second batch stops after its files are written and
# before its rows are inserted, where the parent SIGKILLs it.
CHILD = r"""
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
import django
django.setup()
from labeling.models import Dataset
from labeling.services import images as service

service.BATCH_FILES = 50
insert = service._insert_images
batches = []

def insert_then_hang(rows):
    batches.append(len(rows))
    if len(batches) == 2:
        print("FILES-WRITTEN", flush=True)
        time.sleep(600)
    insert(rows)

service._insert_images = insert_then_hang
service.images_ingest_path(dataset=Dataset.objects.get(pk=int(sys.argv[1])), user=None, path=sys.argv[2])
print("FINISHED", flush=True)
"""


@pytest.mark.slow
def test_sigkill_mid_archive_then_cleanup(transactional_db, admin_dataset, tmp_path, subprocess_env):
    dataset, admin = admin_dataset
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(150):
            zf.writestr(f"d/{i:03d}.png", image_bytes(size=(8, 8), seed=i))

    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(dataset.pk), str(archive)],
        cwd=REPO_ROOT,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if "FILES-WRITTEN" in line:
                break
        assert "FILES-WRITTEN" in "".join(output), "".join(output)[-3000:]
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    rows = row_names(dataset.pk)
    files = storage_names(dataset.pk)
    assert Image.objects.filter(dataset=dataset).count() == 50  # the first batch committed
    assert rows <= files, "a row without its file"
    orphans = files - rows
    assert len(orphans) == 100  # the second batch's originals and thumbnails

    assert images_cleanup_orphans(dataset=dataset) == []  # too young to be judged orphans
    assert set(images_cleanup_orphans(dataset=dataset, min_age_seconds=0)) == orphans
    assert storage_names(dataset.pk) == rows

    # The same archive again completes the import and skips what is there.
    report = images_ingest_path(dataset=dataset, user=admin, path=archive)
    assert (len(report.created), len(report.skipped), len(report.rejected)) == (100, 50, 0)
    assert storage_names(dataset.pk) == row_names(dataset.pk)
