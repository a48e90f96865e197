"""Removing run artifacts (model, codes, layout, clusters) that no run owns any more.

A run's decoder and its codes rebuild the dataset's images, so they must not
outlive the dataset: deleting a dataset deletes `runs/<dataset>/` after the
commit, and `manage.py cleanup_orphan_media` removes run folders whose run or
dataset row is gone (e.g. written by a worker that finished a step after the
dataset was deleted, or left when the storage was unreachable at delete time).
Everything goes through the storage API, so it works on S3 as on local disk.

Uploaded vectors (`embeddings/<dataset>/<folder>/`) are the dataset's content
too: they go with the dataset, and folders no upload row names (a replaced
upload whose delete failed, a request killed between writing and committing)
are removed by the same command once they are an hour old.  Backbone files (`backbones/<dataset>/`) likewise.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from embeddings import storage
from embeddings.models import BACKBONES_PREFIX, UPLOADED_EMBEDDINGS_PREFIX, Backbone, TrainingRun, UploadedEmbedding
from labeling.models import Dataset

logger = logging.getLogger(__name__)


def dataset_artifacts_delete(*, dataset_id: int) -> list[str]:
    """Delete every run artifact of a dataset (call after its rows are deleted and committed)."""
    removed = storage.delete_tree(storage.dataset_artifacts_prefix(dataset_id))
    removed += storage.delete_tree(f"{UPLOADED_EMBEDDINGS_PREFIX}/{int(dataset_id)}")
    removed += storage.delete_tree(f"{BACKBONES_PREFIX}/{int(dataset_id)}")
    if removed:
        logger.info("deleted %d run artifact file(s) of dataset %s", len(removed), dataset_id)
    return removed


def _live_dataset_folders(root: str, dataset_id: int | None, removed: list[str]):
    """(dataset id, folder prefix, its subfolders) for each dataset folder under `root` whose dataset exists.

    Folders of deleted datasets are deleted on the way (their files appended to
    `removed`); names that are not dataset ids are not ours and are left alone.
    """
    if dataset_id is not None:
        dataset_dirs = [str(dataset_id)]
    else:
        try:
            dataset_dirs, _ = default_storage.listdir(root)
        except (FileNotFoundError, NotADirectoryError):
            return
    for dataset_dir in dataset_dirs:
        if not dataset_dir.isdigit():
            continue
        prefix = f"{root}/{dataset_dir}"
        if not Dataset.objects.filter(pk=int(dataset_dir)).exists():
            removed += storage.delete_tree(prefix)
            continue
        try:
            subfolders, _ = default_storage.listdir(prefix)
        except (FileNotFoundError, NotADirectoryError):
            continue
        yield int(dataset_dir), prefix, subfolders


def run_artifacts_cleanup_orphans(*, dataset_id: int | None = None) -> list[str]:
    """Delete the artifact folders under `runs/` whose run (or dataset) no longer exists; returns the files.

    A run's row is committed before its task is published, so a folder without
    a row is never one still being created by a live run.
    """
    removed: list[str] = []
    for owner, prefix, run_dirs in _live_dataset_folders(settings.SIMLABEL_ARTIFACTS_PREFIX, dataset_id, removed):
        run_ids = [int(name) for name in run_dirs if name.isdigit()]
        # One query per dataset folder: the runs of this dataset that still exist.
        alive = set(TrainingRun.objects.filter(dataset_id=owner, pk__in=run_ids).values_list("pk", flat=True))
        for run_id in run_ids:
            if run_id not in alive:
                removed += storage.delete_tree(f"{prefix}/{run_id}")
    removed += _uploaded_embeddings_cleanup_orphans(dataset_id=dataset_id)
    removed += _backbones_cleanup_orphans(dataset_id=dataset_id)
    if removed:
        logger.info("deleted %d orphaned run artifact file(s)", len(removed))
    return removed


# An upload writes its files before its row commits: younger folders may still be on their way.
UPLOAD_ORPHAN_MIN_AGE = timedelta(hours=1)


def _uploaded_embeddings_cleanup_orphans(*, dataset_id: int | None = None) -> list[str]:
    """Upload folders whose dataset is gone, or that no upload row names and are over an hour old."""
    removed: list[str] = []
    for owner, prefix, folders in _live_dataset_folders(UPLOADED_EMBEDDINGS_PREFIX, dataset_id, removed):
        known = set(UploadedEmbedding.objects.filter(dataset_id=owner).values_list("folder", flat=True))
        cutoff = timezone.now() - UPLOAD_ORPHAN_MIN_AGE
        for folder in folders:
            path = f"{prefix}/{folder}"
            if path in known:
                continue
            files = list(storage.walk(path))
            if all(default_storage.get_modified_time(name) < cutoff for name in files):
                removed += storage.delete_tree(path)
    return removed


def _backbones_cleanup_orphans(*, dataset_id: int | None = None) -> list[str]:
    """Backbone files whose dataset is gone, or that no backbone row names and are over an hour old (a
    registration is written before its row commits)."""
    removed: list[str] = []
    for owner, prefix, _ in _live_dataset_folders(BACKBONES_PREFIX, dataset_id, removed):
        known = set(Backbone.objects.filter(dataset_id=owner).values_list("file", flat=True))
        cutoff = timezone.now() - UPLOAD_ORPHAN_MIN_AGE
        try:
            _, files = default_storage.listdir(prefix)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in files:
            path = f"{prefix}/{name}"
            if path not in known and default_storage.get_modified_time(path) < cutoff:
                default_storage.delete(path)
                removed.append(path)
    return removed
