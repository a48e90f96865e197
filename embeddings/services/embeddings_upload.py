"""Storing a dataset's own embeddings: one vector per image, from a model the team has (CLIP, DINOv2, …).

Checked whole before anything is stored: a 2-D array of finite numbers of
MIN_DIM..MAX_DIM columns, one row per listed image id, no id twice, every id
an image of this dataset.  The arrays go to new files under a fresh folder
(`embeddings/<dataset>/<random>/`) and the row is created in one transaction
that also drops the dataset's earlier upload; its files go after the commit.
A failure at any step leaves the previous upload in place and no new file.

Runs with `embedding: "uploaded"` read the latest upload (embeddings.services.pipeline).
"""

from __future__ import annotations

import io
import logging
import uuid

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from core.errors import ValidationFailed
from embeddings import storage
from embeddings.models import UPLOADED_EMBEDDINGS_PREFIX, UploadedEmbedding
from embeddings.selectors.uploaded_embeddings import (
    IMAGE_IDS,
    VECTORS,
    images_without_uploaded_vector,
    uploaded_embedding_current,
)
from labeling.models import Dataset, Image

logger = logging.getLogger(__name__)

MIN_DIM = 2
# Above this, t-SNE's and UMAP's exact neighbor searches and every similar-images query slow down for little
# gain: the widest common image models (CLIP ViT-bigG, DINOv2 giant) give 1,280 and 1,536 values.
MAX_DIM = 4096
# How many offending ids an error names.
SHOWN_IDS = 5


def _listed(ids) -> str:
    ids = [int(i) for i in ids]
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(str(i) for i in ids[:SHOWN_IDS]) + more


def uploaded_vectors_validate(*, dataset_id: int, image_ids: np.ndarray, vectors: np.ndarray) -> tuple:
    """(image ids int64, vectors float32), sorted by id, or ValidationFailed naming the first problem."""
    vectors = np.asarray(vectors)
    image_ids = np.asarray(image_ids)
    if vectors.ndim != 2:
        raise ValidationFailed(
            f"vectors must be a table of one row per image (2-D); got {vectors.ndim} dimension(s).", field="vectors"
        )
    count, dim = vectors.shape
    if count == 0:
        raise ValidationFailed("No vectors: upload one per image.", field="vectors")
    if not MIN_DIM <= dim <= MAX_DIM:
        raise ValidationFailed(
            f"Each vector must have {MIN_DIM} to {MAX_DIM} values; these have {dim}.", field="vectors", dim=int(dim)
        )
    if vectors.dtype.kind not in "iuf":
        raise ValidationFailed("vectors must hold numbers.", field="vectors")
    if image_ids.ndim != 1 or image_ids.dtype.kind not in "iu":
        raise ValidationFailed("image_ids must be a list of whole numbers (image ids).", field="image_ids")
    if len(image_ids) != count:
        raise ValidationFailed(
            f"{len(image_ids)} image id(s) for {count} vector(s): give one id per vector, in the same order.",
            field="image_ids",
        )
    image_ids = image_ids.astype(np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        # Cast first: a float64 beyond float32's range becomes inf here, and is refused with the rest.
        vectors = vectors.astype(np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValidationFailed(
            f"{len(bad)} vector(s) hold values that are not finite numbers (NaN, infinite, or beyond float32), "
            f"first for image {int(image_ids[bad[0]])}.",
            field="vectors",
        )
    order = np.argsort(image_ids, kind="stable")
    image_ids, vectors = image_ids[order], vectors[order]
    repeated = np.unique(image_ids[1:][image_ids[1:] == image_ids[:-1]])
    if len(repeated):
        raise ValidationFailed(
            f"{len(repeated)} image id(s) are given more than once: {_listed(repeated)}.",
            field="image_ids",
            repeated=[int(i) for i in repeated[:SHOWN_IDS]],
        )
    # Every id of the dataset, not an `IN` of the uploaded ones: 100,000 ids are fewer bytes than such a query.
    members = np.fromiter(Image.objects.filter(dataset_id=dataset_id).values_list("id", flat=True), dtype=np.int64)
    foreign = image_ids[~np.isin(image_ids, members)]
    if len(foreign):
        raise ValidationFailed(
            f"{len(foreign)} image id(s) are not images of this dataset: {_listed(foreign)}.",
            field="image_ids",
            unknown=[int(i) for i in foreign[:SHOWN_IDS]],
        )
    return image_ids, np.ascontiguousarray(vectors)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def uploaded_embeddings_store(*, dataset: Dataset, user, image_ids: np.ndarray, vectors: np.ndarray):
    """Validate and store one vector per image as the dataset's current upload; returns the new row.

    All or nothing: invalid input stores nothing (ValidationFailed), and files
    written before a failed commit are deleted again.
    """
    image_ids, vectors = uploaded_vectors_validate(dataset_id=dataset.pk, image_ids=image_ids, vectors=vectors)
    folder = f"{UPLOADED_EMBEDDINGS_PREFIX}/{int(dataset.pk)}/{uuid.uuid4().hex}"
    try:
        default_storage.save(f"{folder}/{IMAGE_IDS}", ContentFile(_npy_bytes(image_ids)))
        default_storage.save(f"{folder}/{VECTORS}", ContentFile(_npy_bytes(vectors)))
        with transaction.atomic():
            # One upload at a time per dataset: the lock orders concurrent ones, the later one stays.
            Dataset.objects.select_for_update().filter(pk=dataset.pk).values_list("pk").first()
            earlier = list(UploadedEmbedding.objects.filter(dataset=dataset).values_list("folder", flat=True))
            UploadedEmbedding.objects.filter(dataset=dataset).delete()
            upload = UploadedEmbedding.objects.create(
                dataset=dataset,
                created_by=user,
                dim=int(vectors.shape[1]),
                count=int(len(image_ids)),
                folder=folder,
            )
            transaction.on_commit(lambda: _delete_folders(earlier))
    except Exception:
        _delete_folders([folder])
        raise
    logger.info(
        "dataset %s: %s uploaded vector(s) of %s values stored in %s", dataset.pk, upload.count, upload.dim, folder
    )
    return upload


def _delete_folders(folders) -> None:
    for folder in folders:
        try:
            storage.delete_tree(folder)
        except Exception:  # cleanup_orphan_media finds them later
            logger.exception("could not delete uploaded vectors in %s", folder)


def uploaded_embeddings_check_run(*, dataset, params: dict) -> None:
    """Refuses (400) a run with `embedding: "uploaded"` when the dataset has no upload, or images without a vector.

    Every image must have one: the map, clusters and review queue are how a
    team covers a dataset, and an image silently left off them is never
    labeled from the map nor reviewed.  The answer names how many are missing.
    """
    if (params or {}).get("embedding") != "uploaded":
        return
    upload = uploaded_embedding_current(dataset)
    if upload is None:
        raise ValidationFailed(
            f"This dataset has no uploaded vectors: POST them to /api/datasets/{dataset.pk}/embeddings/ first, "
            "or start the run with another embedding.",
            field="embedding",
        )
    missing = images_without_uploaded_vector(dataset, upload)
    if len(missing):
        raise ValidationFailed(
            uploaded_vectors_missing_message(len(missing), missing),
            field="embedding",
            missing_count=int(len(missing)),
        )


def uploaded_vectors_missing_message(count: int, missing) -> str:
    return (
        f"{count} image(s) have no uploaded vector (first: {_listed(missing)}): upload vectors that cover "
        "every image of the dataset, or delete those images, then start the run."
    )
