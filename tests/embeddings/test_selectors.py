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
from pipeline_factories import kind_png  # noqa: E402

from tests.factories import ImageFactory, bulk_images  # noqa: E402

pytestmark = pytest.mark.django_db


@pytest.fixture
def mapped(make_user, make_dataset):
    """A dataset with a succeeded run: 30 images on a 6x5 grid, clusters by column."""
    ds = make_dataset("Grid", admin=make_user())
    images = [
        ImageFactory(dataset=ds, data=kind_png("blob", seed), original_name=f"img{seed}.png") for seed in range(30)
    ]
    run = TrainingRun.objects.create(dataset=ds, status=RunStatus.SUCCEEDED, image_count=30, cluster_count=3)
    rows = []
    for i, image in enumerate(images):
        col, row = i % 6, i // 6
        code = np.array([col, row, 0.5 * i], dtype=np.float32)
        rows.append(
            ImageEmbedding(
                run=run,
                image=image,
                code=code.tobytes(),
                x=float(col * 10),
                y=float(row * 10),
                cluster=col // 2,
                reconstruction_error=0.01 * i,
            )
        )
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
        suggested_class=cat, suggestion_confidence=0.9
    )
    clusters = {c["id"]: c for c in selectors.dataset_clusters(ds)}
    assert set(clusters) == {0, 1, 2} and all(c["size"] == 10 for c in clusters.values())
    c0 = clusters[0]
    # "labelled" is the cluster summary's API field name (ClusterSerializer), kept as it is.
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


@pytest.mark.parametrize(
    "polygon",
    [[[0, 0], [1, 1]], "abc", [[0, 0], [1, "x"], [2, 2]], [[0, 0, 0]] * 3, [[0, 0], [1, float("inf")], [2, 2]]],
)
def test_bad_polygons_are_refused(mapped, polygon):
    from core.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        selectors.image_ids_in_polygon(mapped[0], polygon)


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
    extra = ImageFactory(dataset=ds, data=kind_png("vertical", 99), original_name="late.png")
    ImageEmbedding.objects.create(
        run=run, image=extra, code=np.zeros(3, np.float32).tobytes(), x=1, y=1, cluster=0, placed_after_run=True
    )
    TrainingRun.objects.filter(pk=run.pk).update(placed_count=1)
    assert selectors.dataset_map_points(ds)["count"] == 31
    pos = selectors.image_map_position(extra)
    assert pos["placed_after_run"] and pos["run"] == run.pk


# --- scale: fixed query counts, the encoded map, the shared cache -----------------------------------


def _fake_map(dataset, n: int, seed: int = 0):
    """n Image rows (no files) on a succeeded run: 5-d codes, 4 clusters, suggestions for half, labels for a third."""
    from labeling.models import Image

    rng = np.random.default_rng(seed)
    classes = [LabelClass.objects.create(dataset=dataset, name=f"c{k}") for k in range(3)]
    bulk_images(dataset, n)
    images = list(Image.objects.filter(dataset=dataset).order_by("id"))
    run = TrainingRun.objects.create(dataset=dataset, status=RunStatus.SUCCEEDED, image_count=n, cluster_count=4)
    xy = rng.uniform(-50, 50, size=(n, 2))
    codes = rng.normal(size=(n, 5)).astype(np.float32)
    ImageEmbedding.objects.bulk_create(
        [
            ImageEmbedding(
                run=run,
                image=image,
                code=codes[i].tobytes(),
                x=float(xy[i, 0]),
                y=float(xy[i, 1]),
                cluster=i % 4,
                suggested_class=classes[i % 3] if i % 2 else None,
                suggestion_confidence=float(rng.uniform(0.3, 1)) if i % 2 else None,
            )
            for i, image in enumerate(images)
        ]
    )
    Annotation.objects.bulk_create(
        [
            Annotation(image=image, dataset=dataset, label_class=classes[i % 3], version=1)
            for i, image in enumerate(images)
            if i % 3 == 0
        ]
    )
    return run, images, codes


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured)


def test_map_cluster_and_similar_reads_take_the_same_queries_at_any_size(make_dataset):
    from django.core.cache import cache

    small, big = make_dataset("small"), make_dataset("big")
    first = {small.pk: _fake_map(small, 12)[1][0], big.pk: _fake_map(big, 600, seed=1)[1][0]}
    everything = [[-100, -100], [100, -100], [100, 100], [-100, 100]]
    readers = {
        "map points": lambda ds: selectors.dataset_map_points(ds),
        "encoded map": lambda ds: selectors.dataset_map_encoded(ds, gzip=True),
        "clusters": lambda ds: selectors.dataset_clusters(ds),
        "cluster image ids": lambda ds: selectors.cluster_image_ids(ds, 1),
        "polygon": lambda ds: selectors.image_ids_in_polygon(ds, everything),
        "similar": lambda ds: selectors.image_similar(first[ds.pk], k=5),
    }
    for name, read in readers.items():
        counts = []
        for ds in (small, big):
            selectors.clear_run_cache()
            cache.clear()
            cold = _queries(lambda: read(ds))
            warm = _queries(lambda: read(ds))
            counts.append((cold, warm))
        assert counts[0] == counts[1], (name, counts)
        assert counts[1][1] <= 3, (name, counts)
    assert len(selectors.image_ids_in_polygon(big, everything)) == 600


def test_encoded_map_is_the_points_as_json_and_as_valid_gzip(make_dataset):
    import gzip
    import json
    import zlib

    ds = make_dataset("Encoded")
    _fake_map(ds, 300, seed=2)
    points = selectors.dataset_map_points(ds)
    plain = selectors.dataset_map_encoded(ds)
    assert not plain.gzipped and json.loads(plain.content) == points
    packed = selectors.dataset_map_encoded(ds, gzip=True)
    assert packed.gzipped and packed.etag == plain.etag
    # gzip.decompress checks the CRC and length in the trailer of the spliced member
    assert gzip.decompress(packed.content) == plain.content
    inflater = zlib.decompressobj(31)
    assert inflater.decompress(packed.content) == plain.content and inflater.eof and not inflater.unused_data
    assert points["x"][5] == round(points["x"][5], 3) and points["class"].count(None) == 200


def test_encoded_map_etag_follows_labels_suggestions_and_placed_images(mapped):
    ds, run, images = mapped
    cat = LabelClass.objects.create(dataset=ds, name="cat")
    first = selectors.dataset_map_encoded(ds).etag
    assert selectors.dataset_map_encoded(ds).etag == first
    Annotation.objects.create(image=images[2], dataset=ds, label_class=cat)
    labeled = selectors.dataset_map_encoded(ds).etag
    assert labeled != first
    ImageEmbedding.objects.filter(run=run, image=images[7]).update(suggested_class=cat, suggestion_confidence=0.5)
    suggested = selectors.dataset_map_encoded(ds).etag
    assert suggested != labeled
    extra = ImageFactory(dataset=ds, data=kind_png("vertical", 77), original_name="late.png")
    ImageEmbedding.objects.create(
        run=run, image=extra, code=np.zeros(3, np.float32).tobytes(), x=1, y=1, cluster=0, placed_after_run=True
    )
    TrainingRun.objects.filter(pk=run.pk).update(placed_count=1)
    placed = selectors.dataset_map_encoded(ds)
    assert placed.etag != suggested and b'"count":31' in placed.content


def test_a_new_process_reads_run_columns_from_the_shared_cache(mapped):
    from django.core.cache import cache

    ds, _, images = mapped
    cache.clear()
    cold = _queries(lambda: selectors.dataset_map_points(ds))
    selectors.image_similar(images[0], k=3)
    selectors.clear_run_cache()  # what a new process starts with; the Django cache survives
    shared = _queries(lambda: selectors.dataset_map_points(ds))
    assert shared == cold - 1  # positions come from the cache; labels and suggestions are read fresh
    assert _queries(lambda: selectors.image_similar(images[0], k=3)) == 2  # codes too: current run + classes


def test_map_and_similar_work_when_the_cache_is_down(mapped, settings):
    ds, _, images = mapped
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }  # nothing listens there
    selectors.clear_run_cache()
    assert selectors.dataset_map_points(ds)["count"] == 30
    assert selectors.dataset_map_encoded(ds, gzip=True).gzipped
    assert selectors.image_similar(images[0], k=3)[0]["id"] == images[1].pk


def test_similar_images_match_a_brute_force_scan(make_dataset):
    ds = make_dataset("Brute")
    _, images, codes = _fake_map(ds, 400, seed=3)
    for row in (0, 17, 399):
        distances = np.sqrt(((codes - codes[row]) ** 2).sum(axis=1))
        distances[row] = np.inf
        expected = [images[i].pk for i in np.argsort(distances, kind="stable")[:10]]
        found = selectors.image_similar(images[row], k=10)
        assert [s["id"] for s in found] == expected
        assert [s["distance"] for s in found] == pytest.approx(np.sort(distances)[:10], abs=1e-4)


def test_similar_images_skip_an_embedding_deleted_after_the_cache_was_filled(make_dataset):
    ds = make_dataset("Deleted")
    _, images, _ = _fake_map(ds, 50, seed=4)
    selectors.clear_run_cache()
    run_arrays = selectors.run_arrays(selectors.current_run(ds))  # positions cached, codes not yet read
    ImageEmbedding.objects.filter(image=images[10]).delete()
    assert run_arrays.row_of(images[10].pk) is not None
    ids = [s["id"] for s in selectors.image_similar(images[11], k=49)]
    assert images[10].pk not in ids and len(ids) == 48


def test_warming_the_cache_after_a_run_leaves_only_fresh_reads_for_the_first_visitor(mapped):
    from django.core.cache import cache

    ds, run, images = mapped
    cache.clear()
    selectors.map_cache_warm(run)
    selectors.clear_run_cache()  # the web process is not the one that warmed the cache
    assert _queries(lambda: selectors.dataset_map_encoded(ds, gzip=True)) == 3  # run, labels, suggestions
    assert _queries(lambda: selectors.image_similar(images[0])) == 2  # run, classes of the neighbors
