"""Reads of a dataset's connected buckets and their syncs."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import Http404

from core.permissions import as_id
from labeling.models import Dataset, Storage, StorageSync


def storages_for_dataset(dataset: Dataset):
    return Storage.objects.filter(dataset=dataset).annotate(
        image_count=Count("images"), missing_count=Count("images", filter=Q(images__missing_since__isnull=False))
    )


def storage_in_dataset(dataset: Dataset, storage_id) -> Storage:
    """The dataset's storage with its counts; 404 for an id of another dataset or none."""
    pk = as_id(storage_id)
    storage = storages_for_dataset(dataset).filter(pk=pk).first() if pk else None
    if storage is None:
        raise Http404("No such storage.")
    return storage


def storage_last_sync(storage: Storage) -> StorageSync | None:
    return StorageSync.objects.filter(storage=storage).order_by("-id").first()
