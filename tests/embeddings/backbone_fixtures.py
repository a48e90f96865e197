"""Fixtures and helpers shared by the backbone API, run and worker tests: a dataset of photos in three color
groups, and registering a backbone through the API."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage

from embeddings import storage
from embeddings.models import BACKBONES_PREFIX
from tests.embeddings.backbone_models import SIZE

GROUPS, PER_GROUP = 3, 12
COLORS = ((220, 40, 40), (40, 200, 60), (50, 60, 230))


@pytest.fixture(autouse=True)
def _no_stored_backbones():
    """The media folder lives for the session: each test starts and ends without backbone files."""
    storage.delete_tree(BACKBONES_PREFIX)
    yield
    storage.delete_tree(BACKBONES_PREFIX)


def color_png(color, seed) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(color) + rng.normal(0, 12, size=(24, 20, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def team(make_user, make_dataset):
    """An admin, an annotator and an outsider; 36 real photos, every third of the same color group."""
    from tests.factories import ImageFactory

    admin, annotator, outsider = make_user("alice"), make_user("anna"), make_user("oscar")
    dataset = make_dataset("Photos", admin=admin, members={annotator: "annotator"})
    group = np.arange(GROUPS * PER_GROUP) % GROUPS
    images = [
        ImageFactory(dataset=dataset, data=color_png(COLORS[g], i), original_name=f"p{i}.png")
        for i, g in enumerate(group)
    ]
    return SimpleNamespace(
        admin=admin,
        annotator=annotator,
        outsider=outsider,
        dataset=dataset,
        images=images,
        group_of={image.pk: int(g) for image, g in zip(images, group)},
    )


def backbones_url(dataset):
    return reverse("dataset-backbones", kwargs={"dataset_id": dataset.pk})


def register(client, dataset, data, name="tiny", **fields):
    form = {
        "file": SimpleUploadedFile("model.bin", data, content_type="application/octet-stream"),
        "name": name,
        "input_size": f"{SIZE},{SIZE}",
        "mean": "0.5,0.5,0.5",
        "std": "0.25,0.25,0.25",
        **fields,
    }
    return client.post(backbones_url(dataset), form, format="multipart")


def groups_per_cluster(points, group_of) -> dict:
    clusters = {}
    for image_id, cluster in zip(points["image_ids"], points["cluster"]):
        clusters.setdefault(cluster, set()).add(group_of[image_id])
    return clusters
