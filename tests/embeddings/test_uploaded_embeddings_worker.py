"""Uploaded vectors through the API, then a run on them through a real Celery worker: the map, clusters,
similar images and suggestions come from the vectors."""

import numpy as np
import pytest
from django.urls import reverse

from embeddings.services import suggestions_recompute
from labeling.models import Annotation
from tests.embeddings.worker_runs import run_through_worker
from tests.factories import LabelClassFactory, bulk_images

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def test_a_run_on_uploaded_vectors_through_a_worker(
    transactional_db, make_user, make_dataset, client_for, celery_worker_process
):
    admin = make_user("owner")
    dataset = make_dataset("Photos", admin=admin)
    ids = [image.pk for image in bulk_images(dataset, 60)]
    rng = np.random.default_rng(3)
    group = np.arange(60) % 3
    vectors = rng.normal(0, 10, (3, 32))[group] + rng.normal(0, 1, (60, 32))
    client = client_for(admin)
    uploaded = client.post(
        reverse("dataset-embeddings", kwargs={"dataset_id": dataset.pk}),
        {"image_ids": ids, "vectors": vectors.tolist()},
        format="json",
    )
    assert uploaded.status_code == 201, uploaded.json()
    run = run_through_worker(
        client, dataset, {"embedding": "uploaded", "n_clusters": 3, "cluster_method": "kmeans", "tsne_iterations": 60}
    )
    assert run.metrics["embedding"] == "uploaded" and run.cluster_count == 3

    group_of = dict(zip(ids, group.tolist()))
    points = client.get(reverse("dataset-map", kwargs={"dataset_id": dataset.pk})).json()
    assert points["run"] == run.pk and len(points["image_ids"]) == 60
    clusters = {}
    for image_id, cluster in zip(points["image_ids"], points["cluster"]):
        clusters.setdefault(cluster, set()).add(group_of[image_id])
    assert all(len(groups) == 1 for groups in clusters.values())
    similar = client.get(reverse("image-similar", kwargs={"image_id": ids[0]}) + "?k=10").json()
    assert {group_of[s["id"]] for s in similar} == {group_of[ids[0]]}

    # Labels of two images per group: suggestions spread them over the rest of the group.
    classes = [LabelClassFactory(dataset=dataset, name=f"kind {g}") for g in range(3)]
    labeled = [i for g in range(3) for i in [j for j in ids if group_of[j] == g][:2]]
    for image_id in labeled:
        Annotation.objects.create(dataset=dataset, image_id=image_id, label_class=classes[group_of[image_id]])
    suggestions_recompute(dataset=dataset)
    points = client.get(reverse("dataset-map", kwargs={"dataset_id": dataset.pk})).json()
    assert all(
        suggestion == classes[group_of[image_id]].pk
        for image_id, suggestion in zip(points["image_ids"], points["suggestion"])
    )
