"""Stored suggestion confidence is calibrated: one labeled class is not "100 % confident" everywhere."""

import pytest
from django.core.cache import cache

from embeddings.models import ImageEmbedding
from embeddings.services.suggestions import suggestions_recompute
from labeling.services.annotations import annotations_apply_bulk
from tests.factories import build_map


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def stored(run, image_ids):
    return dict(
        ImageEmbedding.objects.filter(run=run, image_id__in=image_ids).values_list("image_id", "suggestion_confidence")
    )


def test_one_labeled_class_leaves_the_other_images_unsure(make_user, make_dataset):
    """The demo: one cluster labeled, ten classes defined; the other clusters were all
    suggested that class at confidence 1.0."""
    admin = make_user("admin")
    dataset = make_dataset(admin=admin)
    names = [str(d) for d in range(10)]
    # Wide blobs that touch, so the one label reaches every image.
    run, classes, blobs = build_map(dataset, blob_sizes=(30, 30, 30, 30), spread=3.0, class_names=names)
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=classes[0], image_ids=blobs[0])
    stats = suggestions_recompute(dataset=dataset)
    assert stats["labeled"] == 30
    others = [i for blob in blobs[1:] for i in blob]
    rows = ImageEmbedding.objects.filter(run=run, image_id__in=others)
    assert rows.exclude(suggested_class=None).count() > 0  # the class reaches them...
    confidences = [c for c in rows.values_list("suggestion_confidence", flat=True) if c is not None]
    assert max(confidences) <= 0.5  # ...but not as a sure thing
    assert sum(confidences) / len(confidences) < 0.2


def test_every_class_labeled_gives_confident_suggestions(make_user, make_dataset):
    admin = make_user("admin")
    dataset = make_dataset(admin=admin)
    run, (cat, dog), (blob_a, blob_b) = build_map(dataset)
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=blob_a[:4])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=blob_b[:4])
    suggestions_recompute(dataset=dataset)
    conf = stored(run, blob_a[4:] + blob_b[4:])
    assert min(conf.values()) > 0.75
