"""A run on uploaded vectors, executed in this process: no training, and the map, clusters, suggestions,
similar images and near-duplicates all follow the vectors; what it cannot do degrades instead of failing."""

import numpy as np
import pytest

from embeddings import selectors, storage
from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
from embeddings.selectors.images import image_similar
from embeddings.services import images_place_execute, run_params_validate, suggestions_recompute, training_run_execute
from embeddings.services.embeddings_upload import uploaded_embeddings_store
from embeddings.services.preview import run_reconstruction_preview
from labeling.models import Annotation, Image
from labeling.selectors.review import review_queue_for_dataset
from tests.factories import LabelClassFactory, bulk_images

# The run's heartbeat thread writes through its own connection: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

GROUPS, PER_GROUP, DIM = 3, 20, 16
PARAMS = {"embedding": "uploaded", "n_clusters": 3, "cluster_method": "kmeans", "tsne_iterations": 60, "seed": 1}


@pytest.fixture
def photos(make_user, make_dataset):
    """60 file-less images (a run on uploaded vectors reads no image) and vectors in three tight groups."""
    admin = make_user()
    dataset = make_dataset("Photos", admin=admin)
    images = bulk_images(dataset, GROUPS * PER_GROUP)
    rng = np.random.default_rng(7)
    centers = rng.normal(0, 10, size=(GROUPS, DIM))
    group = np.repeat(np.arange(GROUPS), PER_GROUP)
    rng.shuffle(group)  # groups interleaved over the ids: nothing follows from the order
    vectors = (centers[group] + rng.normal(0, 1, size=(len(images), DIM))).astype(np.float32)
    ids = np.asarray([image.pk for image in images], dtype=np.int64)
    uploaded_embeddings_store(dataset=dataset, user=admin, image_ids=ids, vectors=vectors)
    return dataset, admin, ids, group, vectors


def queued_run(dataset, **params):
    return TrainingRun.objects.create(dataset=dataset, params=run_params_validate({**PARAMS, **params}))


def test_a_run_on_uploaded_vectors_maps_clusters_and_suggests_from_them(photos):
    dataset, admin, ids, group, vectors = photos
    group_of = dict(zip(ids.tolist(), group.tolist()))
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.image_count == 60 and run.cluster_count == 3
    # No training, no embedding: straight from preparing to the map.
    assert set(run.stage_timings) == {"preparing", "layout", "clustering", "storing"}
    assert run.loss_curve == [] and (run.input_size, run.channels) == (None, None)
    metrics = run.metrics
    assert metrics["embedding"] == "uploaded" and metrics["code_size"] == DIM
    assert metrics["uploaded_embedding"]["dim"] == DIM and metrics["uploaded_embedding"]["count"] == 60
    assert metrics["final_loss"] is None and metrics["mean_reconstruction_error"] is None
    assert "near_duplicate_pairs" in metrics

    # The codes are the uploaded vectors; there is no model and no reconstruction error.
    np.testing.assert_array_equal(storage.read_array(run, storage.CODES), vectors)
    assert not storage.exists(run, storage.MODEL)
    rows = ImageEmbedding.objects.filter(run=run).order_by("image_id")
    assert rows.count() == 60 and all(row.reconstruction_error is None for row in rows)
    assert np.array_equal(np.frombuffer(bytes(rows[0].code), dtype=np.float32), vectors[0])
    assert run_reconstruction_preview(run=run) == []

    # Map and clusters: one cluster per group, every point placed.
    points = selectors.dataset_map_points(dataset)
    assert points["run"] == run.pk and len(points["x"]) == 60 and np.isfinite(points["x"]).all()
    clusters = {}
    for image_id, cluster in zip(points["image_ids"], points["cluster"]):
        clusters.setdefault(cluster, set()).add(group_of[image_id])
    assert len(clusters) == 3 and all(len(groups) == 1 for groups in clusters.values())

    # Similar images: the image's own group, by the uploaded vectors.
    for image in Image.objects.filter(pk__in=ids[:5].tolist()):
        similar = image_similar(image, k=10)
        assert len(similar) == 10 and {group_of[s["id"]] for s in similar} == {group_of[image.pk]}

    # Suggestions: two labels per group spread to the rest of it.
    classes = [LabelClassFactory(dataset=dataset, name=f"kind {g}") for g in range(GROUPS)]
    for g in range(GROUPS):
        for image_id in ids[group == g][:2]:
            Annotation.objects.create(dataset=dataset, image_id=int(image_id), label_class=classes[g])
    suggestions_recompute(dataset=dataset)
    suggested = dict(ImageEmbedding.objects.filter(run=run).values_list("image_id", "suggested_class_id"))
    assert all(suggested[i] == classes[group_of[i]].pk for i in ids.tolist())

    # The review queue reads the run without reconstruction errors: nothing is called an outlier.
    queue = review_queue_for_dataset(dataset)
    assert all("outlier" not in item["codes"] for item in queue)


def test_images_added_after_the_run_cannot_be_placed_and_the_run_says_so(photos):
    dataset, _, _, _, _ = photos
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    bulk_images(dataset, 2)
    assert images_place_execute(run_id=run.pk) == 0
    run.refresh_from_db()
    assert run.metrics["unplaced_images"] == 2 and "no vector" in run.metrics["unplaced_reason"]
    assert run.status == RunStatus.SUCCEEDED and ImageEmbedding.objects.filter(run=run).count() == 60


def test_a_run_fails_with_the_count_of_images_without_a_vector(photos):
    dataset, _, _, _, _ = photos
    bulk_images(dataset, 3)  # added after the upload, before the run
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "3 image(s) have no uploaded vector" in run.error
    assert not ImageEmbedding.objects.filter(run=run).exists()
