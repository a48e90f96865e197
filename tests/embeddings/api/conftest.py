"""Fixtures for the runs / map / clusters / similar API tests."""
import numpy as np
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_run_cache():
    from embeddings.selectors import clear_run_cache

    clear_run_cache()
    yield
    clear_run_cache()


@pytest.fixture
def client_for(db):
    def make(user=None):
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def mapped(make_user, make_dataset):
    """A dataset of 6 images on a succeeded map: two clusters of three, one suggestion each."""
    from types import SimpleNamespace

    from embeddings.models import ImageEmbedding, TrainingRun
    from labeling.models import Image, LabelClass

    admin, annotator, outsider = make_user("alice"), make_user("anna"), make_user("oscar")
    dataset = make_dataset("Digits", admin=admin, members={annotator: "annotator"})
    other = make_dataset("Other", admin=outsider)
    zero = LabelClass.objects.create(dataset=dataset, name="zero")
    one = LabelClass.objects.create(dataset=dataset, name="one")
    images = [
        Image.objects.create(dataset=dataset, file=f"f{i}.png", thumbnail=f"t{i}.webp", sha256=f"{i:064d}", width=4,
                             height=4, format="PNG", original_name=f"{i}.png")
        for i in range(6)
    ]
    run = TrainingRun.objects.create(dataset=dataset, created_by=admin, status="succeeded", stage="done",
                                     progress=1.0, image_count=6, metrics={"final_loss": 0.1},
                                     loss_curve=[0.5, 0.2, 0.1], params={"epochs": 3})
    points = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (10.0, 10.0), (11.0, 10.0), (10.0, 11.0)]
    ImageEmbedding.objects.bulk_create([
        ImageEmbedding(run=run, image=image, code=np.asarray([x, y, 0, 0], dtype=np.float32).tobytes(), x=x, y=y,
                       cluster=0 if i < 3 else 1, suggested_class=zero if i < 3 else one,
                       suggestion_confidence=0.9 if i < 3 else 0.4)
        for i, (image, (x, y)) in enumerate(zip(images, points))
    ])
    return SimpleNamespace(admin=admin, annotator=annotator, outsider=outsider, dataset=dataset, other=other,
                           zero=zero, one=one, images=images, run=run)
