"""Reads of a dataset's registered backbones (embeddings.models.Backbone)."""

from __future__ import annotations

from django.core.files.storage import default_storage

from embeddings.models import Backbone


def dataset_backbones(dataset):
    """The dataset's backbones, newest first."""
    return Backbone.objects.filter(dataset_id=getattr(dataset, "pk", dataset)).select_related("created_by")


def backbone_of_dataset(dataset, backbone_id) -> Backbone | None:
    """The backbone with this id if it belongs to the dataset, else None."""
    try:
        backbone_id = int(backbone_id)
    except (TypeError, ValueError):
        return None
    return dataset_backbones(dataset).filter(pk=backbone_id).first()


def backbone_file_bytes(backbone: Backbone) -> bytes:
    with default_storage.open(backbone.file, "rb") as fh:
        return fh.read()


def backbone_describe(backbone: Backbone) -> dict:
    """What GET …/backbones/ answers for one backbone."""
    return {
        "id": backbone.pk,
        "name": backbone.name,
        "format": backbone.format,
        "input_size": [backbone.input_height, backbone.input_width],
        "channels": backbone.channels,
        "mean": backbone.mean,
        "std": backbone.std,
        "dim": backbone.dim,
        "size_bytes": backbone.size_bytes,
        "sha256": backbone.sha256,
        "created_at": backbone.created_at,
        "created_by": backbone.created_by.username if backbone.created_by_id else None,
    }
