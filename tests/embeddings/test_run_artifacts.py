"""A deleted dataset's run artifacts (model, codes, layout: enough to rebuild its images) are deleted
with it, after the commit; cleanup_orphan_media removes run folders whose run or dataset is gone.
Real files in the test's media storage, written and checked through the storage API."""

from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from embeddings import storage
from embeddings.models import RunStatus, TrainingRun

NAMES = (storage.MODEL, storage.CODES, storage.LAYOUT, storage.CLUSTERS, "chunks/0-abc.npz")


def _write_artifacts(run):
    storage.write_bytes(run, storage.MODEL, b"weights of the decoder")
    storage.write_array(run, storage.CODES, np.ones((6, 4), np.float32))
    storage.write_array(run, storage.LAYOUT, np.zeros((6, 2), np.float32))
    storage.write_array(run, storage.CLUSTERS, np.arange(6, dtype=np.int32))
    storage.write_bytes(run, "chunks/0-abc.npz", b"helper chunk")


def _files(prefix):
    return sorted(storage.walk(prefix))


@pytest.fixture(autouse=True)
def _own_media_root(settings, tmp_path):
    # The session's media root holds other tests' run folders (ids repeat between tests on SQLite).
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def two_datasets(make_user, make_dataset):
    admin = make_user("alice")
    doomed = make_dataset("Doomed", admin=admin)
    kept = make_dataset("Kept", admin=admin)
    runs = {}
    for dataset in (doomed, kept):
        runs[dataset.name] = [TrainingRun.objects.create(dataset=dataset, status=RunStatus.SUCCEEDED) for _ in range(2)]
        for run in runs[dataset.name]:
            _write_artifacts(run)
    return admin, doomed, kept, runs


def test_deleting_a_dataset_deletes_its_run_artifacts_after_the_commit(
    two_datasets, django_capture_on_commit_callbacks
):
    admin, doomed, kept, runs = two_datasets
    doomed_prefix = storage.dataset_artifacts_prefix(doomed.pk)
    assert len(_files(doomed_prefix)) == 2 * len(NAMES)
    client = APIClient()
    client.force_authenticate(admin)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client.delete(reverse("dataset-detail", kwargs={"dataset_id": doomed.pk})).status_code == 204
        # Nothing is deleted before the commit: a rolled-back delete keeps its files.
        assert len(_files(doomed_prefix)) == 2 * len(NAMES)
    for callback in callbacks:
        callback()
    assert _files(doomed_prefix) == []
    assert not Path(settings.MEDIA_ROOT, doomed_prefix).exists()  # no empty folders left either
    for run in runs["Kept"]:
        assert all(default_storage.exists(storage.artifact_name(run, name)) for name in NAMES)


def test_cleanup_orphan_media_removes_run_folders_without_a_run_or_dataset(two_datasets):
    admin, doomed, kept, runs = two_datasets
    gone_run, live_run = runs["Kept"]
    gone_run_files = _files(gone_run.artifact_prefix)
    TrainingRun.objects.filter(pk=gone_run.pk).delete()
    doomed_files = _files(storage.dataset_artifacts_prefix(doomed.pk))
    doomed_id = doomed.pk
    doomed.delete()  # the rows only: as if the storage was unreachable when it was deleted
    not_ours = f"{settings.SIMLABEL_ARTIFACTS_PREFIX}/README.txt"
    default_storage.save(not_ours, ContentFile(b"x"))

    out = StringIO()
    call_command("cleanup_orphan_media", stdout=out)
    report = out.getvalue()
    for name in gone_run_files + doomed_files:
        assert not default_storage.exists(name) and f"removed {name}" in report
    assert _files(storage.dataset_artifacts_prefix(doomed_id)) == []
    assert all(default_storage.exists(storage.artifact_name(live_run, name)) for name in NAMES)
    assert default_storage.exists(not_ours)
