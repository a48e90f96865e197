"""Fixtures for the REST API tests: token clients, a team dataset and stored images."""
import hashlib
import io
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 costs ~0.3 s per user on this machine; these tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    # The auth throttle counts in the cache; tests must not share its budget.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def client_for(db):
    """An APIClient authenticated with the user's token (anonymous for None)."""

    def make(user=None):
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


def store_image(dataset, data: bytes, name: str, user=None):
    """An Image row with its file and thumbnail in storage, as ingest leaves them."""
    from labeling.models import Image

    sha = hashlib.sha256(data).hexdigest()
    with PILImage.open(io.BytesIO(data)) as img:
        width, height, fmt, mode = img.width, img.height, img.format or "PNG", img.mode
    file_name = default_storage.save(f"datasets/{dataset.pk}/images/{sha[:2]}/{sha}.png", ContentFile(data))
    thumb_name = default_storage.save(f"datasets/{dataset.pk}/thumbs/{sha[:2]}/{sha}.webp", ContentFile(data))
    return Image.objects.create(
        dataset=dataset, file=file_name, thumbnail=thumb_name, sha256=sha, width=width, height=height,
        format=fmt, mode=mode, size_bytes=len(data), original_name=name, uploaded_by=user,
    )


@pytest.fixture
def add_image(db, make_png):
    counter = {"n": 0}

    def add(dataset, name=None, user=None, size=(8, 6)):
        counter["n"] += 1
        seed = dataset.pk * 100_000 + counter["n"]
        return store_image(dataset, make_png(size=size, seed=seed), name or f"img{counter['n']}.png", user)

    return add


@pytest.fixture
def team(make_user, make_dataset, add_image):
    """A dataset with one user per role, a second dataset, classes and images in both."""
    from labeling.models import LabelClass

    admin = make_user("alice")
    reviewer = make_user("rita")
    annotator = make_user("anna")
    extra = make_user("ed")
    outsider = make_user("oscar")
    dataset = make_dataset("Digits", admin=admin, members={reviewer: "reviewer", annotator: "annotator",
                                                            extra: "annotator"})
    other = make_dataset("Other team", admin=outsider)
    cat = LabelClass.objects.create(dataset=dataset, name="cat", color="#ff0000", shortcut="c")
    dog = LabelClass.objects.create(dataset=dataset, name="dog", color="#00ff00", shortcut="d")
    spare = LabelClass.objects.create(dataset=dataset, name="spare", color="#0000ff")
    other_class = LabelClass.objects.create(dataset=other, name="other-cat", color="#ff00ff")
    images = [add_image(dataset, user=admin) for _ in range(4)]
    other_images = [add_image(other, user=outsider) for _ in range(2)]
    users = {"admin": admin, "reviewer": reviewer, "annotator": annotator, "outsider": outsider, "anonymous": None}
    return SimpleNamespace(
        admin=admin, reviewer=reviewer, annotator=annotator, extra=extra, outsider=outsider, users=users,
        dataset=dataset, other=other, cat=cat, dog=dog, spare=spare, other_class=other_class,
        images=images, other_images=other_images,
    )


def db_snapshot() -> dict:
    """Everything an unauthorised request must leave untouched."""
    from embeddings.models import TrainingRun
    from labeling.models import (Annotation, AnnotationHistory, Dataset, Image, LabelAction, LabelClass,
                                 Membership, ReviewResolution)

    return {
        "datasets": list(Dataset.objects.order_by("id").values_list("id", "name", "description")),
        "members": list(Membership.objects.order_by("id").values_list("id", "dataset_id", "user_id", "role")),
        "classes": list(LabelClass.objects.order_by("id").values_list("id", "name", "color", "shortcut")),
        "images": list(Image.objects.order_by("id").values_list("id", "dataset_id")),
        "annotations": list(Annotation.objects.order_by("id").values_list("image_id", "label_class_id", "version",
                                                                          "reviewed_by_id")),
        "actions": LabelAction.objects.count(),
        "history": AnnotationHistory.objects.count(),
        "runs": list(TrainingRun.objects.order_by("id").values_list("id", "status", "cancel_requested")),
        "resolutions": ReviewResolution.objects.count(),
    }


@pytest.fixture
def snapshot():
    return db_snapshot


@pytest.fixture(autouse=True)
def _fresh_run_cache():
    # The map selectors cache arrays per run id; ids repeat after a test's rollback.
    from embeddings.selectors import clear_run_cache

    clear_run_cache()
    yield
    clear_run_cache()


def make_map(dataset, points, *, suggestions=None, user=None):
    """A succeeded run placing images at given points: {image: (x, y, cluster)}.

    suggestions: {image: (class, confidence)}. Codes are the points themselves
    padded to four numbers, so nearest neighbours in code space are nearest on the map.
    """
    import numpy as np

    from embeddings.models import ImageEmbedding, TrainingRun

    run = TrainingRun.objects.create(dataset=dataset, created_by=user, status="succeeded", stage="done", progress=1.0,
                                     image_count=len(points))
    suggestions = suggestions or {}
    rows = []
    for image, (x, y, cluster) in points.items():
        suggested, confidence = suggestions.get(image, (None, None))
        rows.append(ImageEmbedding(
            run=run, image=image, code=np.asarray([x, y, 0, 0], dtype=np.float32).tobytes(), x=x, y=y,
            cluster=cluster, suggested_class=suggested, suggestion_confidence=confidence,
        ))
    ImageEmbedding.objects.bulk_create(rows)
    return run


@pytest.fixture
def map_of():
    return make_map
