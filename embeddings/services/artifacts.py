"""Removing run artifacts (model, codes, layout, clusters) that no run owns any more.

A run's decoder and its codes rebuild the dataset's images, so they must not
outlive the dataset: deleting a dataset deletes `runs/<dataset>/` after the
commit, and `manage.py cleanup_orphan_media` removes run folders whose run or
dataset row is gone (e.g. written by a worker that finished a step after the
dataset was deleted, or left when the storage was unreachable at delete time).
Everything goes through the storage API, so it works on S3 as on local disk.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.files.storage import default_storage

from embeddings import storage
from embeddings.models import TrainingRun
from labeling.models import Dataset

logger = logging.getLogger(__name__)


def dataset_artifacts_delete(*, dataset_id: int) -> list[str]:
    """Delete every run artifact of a dataset (call after its rows are deleted and committed)."""
    removed = storage.delete_tree(storage.dataset_artifacts_prefix(dataset_id))
    if removed:
        logger.info("deleted %d run artifact file(s) of dataset %s", len(removed), dataset_id)
    return removed


def run_artifacts_cleanup_orphans(*, dataset_id: int | None = None) -> list[str]:
    """Delete the artifact folders under `runs/` whose run (or dataset) no longer exists; returns the files.

    A run's row is committed before its task is published, so a folder without
    a row is never one still being created by a live run.
    """
    root = settings.SIMLABEL_ARTIFACTS_PREFIX
    if dataset_id is not None:
        dataset_dirs = [str(dataset_id)]
    else:
        try:
            dataset_dirs, _ = default_storage.listdir(root)
        except (FileNotFoundError, NotADirectoryError):
            return []
    removed = []
    for dataset_dir in dataset_dirs:
        if not dataset_dir.isdigit():
            continue  # not ours: leave it
        prefix = f"{root}/{dataset_dir}"
        if not Dataset.objects.filter(pk=int(dataset_dir)).exists():
            removed += storage.delete_tree(prefix)
            continue
        try:
            run_dirs, _ = default_storage.listdir(prefix)
        except (FileNotFoundError, NotADirectoryError):
            continue
        run_ids = [int(name) for name in run_dirs if name.isdigit()]
        # One query per dataset folder: the runs of this dataset that still exist.
        alive = set(
            TrainingRun.objects.filter(dataset_id=int(dataset_dir), pk__in=run_ids).values_list("pk", flat=True)
        )
        for run_id in run_ids:
            if run_id not in alive:
                removed += storage.delete_tree(f"{prefix}/{run_id}")
    if removed:
        logger.info("deleted %d orphaned run artifact file(s)", len(removed))
    return removed
