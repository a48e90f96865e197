"""A run's artifacts (model weights, codes, layout, chunk results) in default storage.

Everything goes through Django's storage API, so the same code writes to the
local media folder and to S3-compatible storage.  Artifacts live under the
run's id (``runs/<dataset>/<run>/``): a rerun of the same run overwrites its own
files and never touches another run's.
"""

from __future__ import annotations

import io
import os

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from project.storage import walk_storage

MODEL = "model.pt"
CODES = "codes.npy"
LAYOUT = "layout.npy"
CLUSTERS = "clusters.npy"
RECONSTRUCTION_ERRORS = "reconstruction_errors.npy"
IMAGE_IDS = "image_ids.npy"


def artifact_name(run, name: str) -> str:
    return f"{run.artifact_prefix}/{name}"


def write_bytes(run, name: str, data: bytes) -> str:
    """Store data under the run, replacing an earlier file of the same name."""
    path = artifact_name(run, name)
    # Storages keep both files on a name clash (file_overwrite=False on S3 and
    # FileSystemStorage's default): delete first so the name stays stable.
    if default_storage.exists(path):
        default_storage.delete(path)
    saved = default_storage.save(path, ContentFile(data))
    return saved


def read_bytes(run, name: str) -> bytes:
    with default_storage.open(artifact_name(run, name), "rb") as fh:
        return fh.read()


def exists(run, name: str) -> bool:
    return default_storage.exists(artifact_name(run, name))


def write_array(run, name: str, array: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return write_bytes(run, name, buf.getvalue())


def read_array(run, name: str) -> np.ndarray:
    return np.load(io.BytesIO(read_bytes(run, name)), allow_pickle=False)


def write_model(run, model) -> str:
    from embeddings.ml.inference import save_model  # torch: only the worker writes and reads models

    buf = io.BytesIO()
    save_model(model, buf)
    return write_bytes(run, MODEL, buf.getvalue())


def read_model(run, device=None):
    """The run's autoencoder, loaded with torch.load(weights_only=True)."""
    from embeddings.ml.inference import load_model  # torch: deferred so web processes never import it

    return load_model(io.BytesIO(read_bytes(run, MODEL)), device=device)


def dataset_artifacts_prefix(dataset_id: int) -> str:
    return f"{settings.SIMLABEL_ARTIFACTS_PREFIX}/{int(dataset_id)}"


def walk(prefix: str):
    """Every stored file name under prefix (a "folder") in the default storage."""
    return walk_storage(default_storage, prefix)


def delete_tree(prefix: str) -> list[str]:
    """Delete every file under prefix; returns their names.

    S3 has no folders: once its files are gone, the prefix is gone.  A local
    storage keeps empty directories, which hold nothing; they are removed too
    where the storage has local paths, so an emptied dataset leaves no trace.
    """
    removed = []
    for name in list(walk(prefix)):
        default_storage.delete(name)
        removed.append(name)
    try:
        root = default_storage.path(prefix)
    except NotImplementedError:  # remote storage: no directories to remove
        return removed
    for current, _dirs, _files in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(current)  # only empty ones: a file written meanwhile stays
        except OSError:
            pass
    return removed


def open_image_file(name: str):
    """A readable file object for a stored image (a local path when there is one: faster)."""
    try:
        return open(default_storage.path(name), "rb")
    except NotImplementedError:  # remote storage (S3): no local path
        return default_storage.open(name, "rb")
