"""Fixtures for the REST API tests: a team dataset and a snapshot of what refused requests must not change."""

from types import SimpleNamespace

import pytest


@pytest.fixture
def team(make_user, make_dataset, add_image):
    """A dataset with one user per role, a second dataset, classes and images in both."""
    from tests.factories import LabelClassFactory

    admin = make_user("alice")
    reviewer = make_user("rita")
    annotator = make_user("anna")
    extra = make_user("ed")
    outsider = make_user("oscar")
    dataset = make_dataset(
        "Digits", admin=admin, members={reviewer: "reviewer", annotator: "annotator", extra: "annotator"}
    )
    other = make_dataset("Other team", admin=outsider)
    cat = LabelClassFactory(dataset=dataset, name="cat", color="#ff0000", shortcut="c")
    dog = LabelClassFactory(dataset=dataset, name="dog", color="#00ff00", shortcut="d")
    spare = LabelClassFactory(dataset=dataset, name="spare", color="#0000ff")
    other_class = LabelClassFactory(dataset=other, name="other-cat", color="#ff00ff")
    images = [add_image(dataset, user=admin) for _ in range(4)]
    other_images = [add_image(other, user=outsider) for _ in range(2)]
    users = {"admin": admin, "reviewer": reviewer, "annotator": annotator, "outsider": outsider, "anonymous": None}
    return SimpleNamespace(
        admin=admin,
        reviewer=reviewer,
        annotator=annotator,
        extra=extra,
        outsider=outsider,
        users=users,
        dataset=dataset,
        other=other,
        cat=cat,
        dog=dog,
        spare=spare,
        other_class=other_class,
        images=images,
        other_images=other_images,
    )


def db_snapshot() -> dict:
    """Everything an unauthorised request must leave untouched."""
    from embeddings.models import TrainingRun
    from labeling.models import (
        Annotation,
        AnnotationHistory,
        Dataset,
        Image,
        LabelAction,
        LabelClass,
        Membership,
        Prediction,
        ReviewResolution,
        Webhook,
    )

    return {
        "datasets": list(Dataset.objects.order_by("id").values_list("id", "name", "description")),
        "members": list(Membership.objects.order_by("id").values_list("id", "dataset_id", "user_id", "role")),
        "classes": list(LabelClass.objects.order_by("id").values_list("id", "name", "color", "shortcut")),
        "images": list(Image.objects.order_by("id").values_list("id", "dataset_id")),
        "annotations": list(
            Annotation.objects.order_by("id").values_list("image_id", "label_class_id", "version", "reviewed_by_id")
        ),
        "actions": LabelAction.objects.count(),
        "history": AnnotationHistory.objects.count(),
        "runs": list(TrainingRun.objects.order_by("id").values_list("id", "status", "cancel_requested")),
        "resolutions": ReviewResolution.objects.count(),
        "webhooks": list(Webhook.objects.order_by("id").values_list("id", "url")),
        "predictions": list(
            Prediction.objects.order_by("id").values_list("id", "image_id", "model", "label_class_id", "confidence")
        ),
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
