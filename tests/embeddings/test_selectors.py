"""Map, clusters, lasso selection and similar images over a run's stored rows."""
import sys
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from embeddings import selectors
from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
from labeling.models import Annotation, LabelClass
# The factories sit beside the tests; importable whether or not tests/ is a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import add_image, kind_png  # noqa: E402

pytestmark = pytest.mark.django_db


@pytest.fixture
def mapped(make_user, make_dataset):
    """A dataset with a succeeded run: 30 images on a 6x5 grid, clusters by column."""
    ds = make_dataset("Grid", admin=make_user())
    images = [add_image(ds, kind_png("blob", seed), f"img{seed}.png") for seed in range(30)]
    run = TrainingRun.objects.create(dataset=ds, status=RunStatus.SUCCEEDED, image_count=30, cluster_count=3)
    rows = []
    for i, image in enumerate(images):
        col, row = i % 6, i // 6
        code = np.array([col, row, 0.5 * i], dtype=np.float32)
        rows.append(ImageEmbedding(run=run, image=image, code=code.tobytes(), x=float(col * 10), y=float(row * 10),
                                   cluster=col // 2, reconstruction_error=0.01 * i))
    ImageEmbedding.objects.bulk_create(rows)
    selectors.clear_run_cache()
    return ds, run, images


def test_current_run_is_the_newest_succeeded(mapped):
    ds, run, _ = mapped
    TrainingRun.objects.create(dataset=ds, status=RunStatus.FAILED)
    assert selectors.current_run(ds) == run
    newer = TrainingRun.objects.create(dataset=ds, status=RunStatus.SUCCEEDED)
    assert selectors.current_run(ds) == newer


def test_map_points_are_columns_with_classes_and_suggestions(mapped):
    ds, run, images = mapped
    cat = LabelClass.objects.create(dataset=ds, name="cat")
    dog = LabelClass.objects.create(dataset=ds, name="dog")
    Annotation.objects.create(image=images[3], dataset=ds, label_class=cat)
    ImageEmbedding.objects.filter(run=run, image=images[4]).update(suggested_class=dog, suggestion_confidence=0.8)
    points = selectors.dataset_map_points(ds)
    assert points["run"] == run.pk and points["count"] == 30
    assert points["image_ids"] == [im.pk for im in images]
    i3, i4 = 3, 4
    assert points["x"][i3] == 30.0 and points["y"][i3] == 0.0 and points["cluster"][i3] == 1
    assert points["class"][i3] == cat.pk and points["class"][i4] is None
    assert points["suggestion"][i4] == dog.pk and points["confidence"][i4] == pytest.approx(0.8)
    assert points["suggestion"][i3] is None and points["confidence"][i3] is None


def test_map_points_take_a_bounded_number_of_queries(mapped):
    ds, _, _ = mapped
    selectors.clear_run_cache()
    with CaptureQueriesContext(connection) as cold:
        selectors.dataset_map_points(ds)
    with CaptureQueriesContext(connection) as warm:
        selectors.dataset_map_points(ds)
    assert len(cold) <= 4 and len(warm) <= 3


def test_map_of_a_dataset_without_run_is_empty(make_dataset):
    points = selectors.dataset_map_points(make_dataset("Empty"))
    assert points["run"] is None and points["image_ids"] == []


def test_clusters_report_counts_majority_and_uncertainty(mapped):
    ds, run, images = mapped
    cat = LabelClass.objects.create(dataset=ds, name="cat")
    dog = LabelClass.objects.create(dataset=ds, name="dog")
    # cluster 0 holds columns 0 and 1: images 0,1,6,7,12,13,...
    Annotation.objects.create(image=images[0], dataset=ds, label_class=cat)
    Annotation.objects.create(image=images[1], dataset=ds, label_class=cat)
    Annotation.objects.create(image=images[6], dataset=ds, label_class=dog)
    ImageEmbedding.objects.filter(run=run, image__in=[images[7], images[12]]).update(
        suggested_class=cat, suggestion_confidence=0.9)
    clusters = {c["id"]: c for c in selectors.dataset_clusters(ds)}
    assert set(clusters) == {0, 1, 2} and all(c["size"] == 10 for c in clusters.values())
    c0 = clusters[0]
    assert c0["class_counts"] == {cat.pk: 2, dog.pk: 1} and c0["labelled"] == 3
    assert c0["suggested_class"] == cat.pk
    assert 0 < c0["uncertainty"] < 1
    assert sorted(c0["image_ids"]) == sorted(im.pk for i, im in enumerate(images) if (i % 6) // 2 == 0)
    assert clusters[1]["suggested_class"] is None and clusters[1]["uncertainty"] == 1.0
    by_doubt = selectors.dataset_clusters(ds, order="uncertainty")
    assert by_doubt[-1]["id"] == 0
    assert selectors.cluster_image_ids(ds, 2) == clusters[2]["image_ids"]


def test_polygon_selects_points_inside_even_when_concave(mapped):
    ds, _, images = mapped
    # an L shape covering column 0 (x=0) on all rows, and row 0 (y=0) on all columns
    polygon = [[-5, -5], [55, -5], [55, 5], [5, 5], [5, 45], [-5, 45]]
    inside = set(selectors.image_ids_in_polygon(ds, polygon))
    expected = {im.pk for i, im in enumerate(images) if i % 6 == 0 or i // 6 == 0}
    assert inside == expected
    assert selectors.image_ids_in_polygon(ds, [[100, 100], [110, 100], [110, 110]]) == []


@pytest.mark.parametrize("polygon", [[[0, 0], [1, 1]], "abc", [[0, 0], [1, "x"], [2, 2]], [[0, 0, 0]] * 3,
                                     [[0, 0], [1, float("inf")], [2, 2]]])
def test_bad_polygons_are_refused(mapped, polygon):
    from labeling.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        selectors.image_ids_in_polygon(mapped[0], polygon)


def test_points_in_polygon_matches_a_brute_force_check():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-1, 1, 5000), rng.uniform(-1, 1, 5000)
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    hexagon = np.c_[0.8 * np.cos(angles), 0.8 * np.sin(angles)]
    inside = selectors.points_in_polygon(x, y, hexagon)
    # inside a regular hexagon = on the inner side of all six edges
    expected = np.ones_like(inside)
    for i in range(6):
        (x1, y1), (x2, y2) = hexagon[i], hexagon[(i + 1) % 6]
        expected &= (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) > 0
    assert (inside == expected).mean() > 0.999


def test_similar_images_are_nearest_codes_without_itself(mapped):
    ds, run, images = mapped
    cat = LabelClass.objects.create(dataset=ds, name="cat")
    Annotation.objects.create(image=images[1], dataset=ds, label_class=cat)
    similar = selectors.image_similar(images[0], k=3)
    assert [s["id"] for s in similar][0] == images[1].pk
    assert images[0].pk not in [s["id"] for s in similar]
    assert similar[0]["class"] == cat.pk
    assert [s["distance"] for s in similar] == sorted(s["distance"] for s in similar)


def test_cache_follows_placed_images(mapped):
    ds, run, images = mapped
    assert selectors.dataset_map_points(ds)["count"] == 30
    extra = add_image(ds, kind_png("vertical", 99), "late.png")
    ImageEmbedding.objects.create(run=run, image=extra, code=np.zeros(3, np.float32).tobytes(), x=1, y=1, cluster=0,
                                  placed_after_run=True)
    TrainingRun.objects.filter(pk=run.pk).update(placed_count=1)
    assert selectors.dataset_map_points(ds)["count"] == 31
    pos = selectors.image_map_position(extra)
    assert pos["placed_after_run"] and pos["run"] == run.pk
