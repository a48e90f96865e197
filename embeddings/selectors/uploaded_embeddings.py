"""Reads of a dataset's uploaded vectors (embeddings.models.UploadedEmbedding): the current upload, what it
covers, and its arrays."""

from __future__ import annotations

import io

import numpy as np
from django.core.files.storage import default_storage

from embeddings.models import UploadedEmbedding
from labeling.models import Image

VECTORS = "vectors.npy"
IMAGE_IDS = "image_ids.npy"


def uploaded_embedding_current(dataset) -> UploadedEmbedding | None:
    """The dataset's latest upload of vectors, or None."""
    dataset_id = getattr(dataset, "pk", dataset)
    return UploadedEmbedding.objects.filter(dataset_id=dataset_id).order_by("-id").first()


def _read_array(upload: UploadedEmbedding, name: str) -> np.ndarray:
    with default_storage.open(f"{upload.folder}/{name}", "rb") as fh:
        return np.load(io.BytesIO(fh.read()), allow_pickle=False)


def uploaded_embedding_image_ids(upload: UploadedEmbedding) -> np.ndarray:
    """The upload's image ids (int64, ascending)."""
    return _read_array(upload, IMAGE_IDS).astype(np.int64, copy=False)


def uploaded_embedding_arrays(upload: UploadedEmbedding) -> tuple[np.ndarray, np.ndarray]:
    """(image ids int64 ascending, vectors float32 N x dim) of an upload."""
    return uploaded_embedding_image_ids(upload), _read_array(upload, VECTORS).astype(np.float32, copy=False)


def images_without_uploaded_vector(dataset, upload: UploadedEmbedding | None) -> np.ndarray:
    """Ids (ascending) of the dataset's images that the upload has no vector for: every image without one."""
    dataset_id = getattr(dataset, "pk", dataset)
    image_ids = np.fromiter(
        Image.objects.filter(dataset_id=dataset_id).order_by("id").values_list("id", flat=True), dtype=np.int64
    )
    if upload is None:
        return image_ids
    return image_ids[~np.isin(image_ids, uploaded_embedding_image_ids(upload))]


def uploaded_embedding_describe(upload: UploadedEmbedding) -> dict:
    """What GET …/embeddings/ answers: the upload, and how many of the dataset's images it leaves out."""
    missing = images_without_uploaded_vector(upload.dataset_id, upload)
    return {
        "id": upload.pk,
        "count": upload.count,
        "dim": upload.dim,
        "created_at": upload.created_at,
        "created_by": upload.created_by.username if upload.created_by_id else None,
        "images_without_vector": int(len(missing)),
    }
