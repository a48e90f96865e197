"""Two real `ml` workers share a run's neighbor queries (the points placed beyond the map's sample):
the helper answers chunks the coordinator then reads, and the map equals a one-worker run's."""

import numpy as np
import pytest
from django.urls import reverse

from embeddings import storage
from tests.embeddings.worker_runs import run_through_worker
from tests.factories import bulk_images

pytestmark = [pytest.mark.worker, pytest.mark.slow]

N_IMAGES = 1000
# t-SNE on a 100-point sample, the other 900 placed by their neighbors: 36 chunks of 25 queries.
PARAMS = {
    "embedding": "uploaded",
    "n_clusters": 3,
    "cluster_method": "kmeans",
    "layout_max_points": 100,
    "tsne_iterations": 300,
}
CHUNKED = {"SIMLABEL_NEIGHBOR_CHUNK_SIZE": "25", "SIMLABEL_NEIGHBOR_PARALLEL_MIN_QUERIES": "1"}


def test_two_workers_share_the_layout_neighbor_queries_and_the_map_equals_one_workers(
    transactional_db, make_user, make_dataset, client_for, worker_factory
):
    admin = make_user("owner")
    dataset = make_dataset("Vectors", admin=admin)
    ids = [image.pk for image in bulk_images(dataset, N_IMAGES)]
    rng = np.random.default_rng(5)
    vectors = rng.normal(0, 10, (3, 16))[np.arange(N_IMAGES) % 3] + rng.normal(0, 1, (N_IMAGES, 16))
    client = client_for(admin)
    uploaded = client.post(
        reverse("dataset-embeddings", kwargs={"dataset_id": dataset.pk}),
        {"image_ids": ids, "vectors": vectors.tolist()},
        format="json",
    )
    assert uploaded.status_code == 201, uploaded.json()

    workers = []
    for _ in range(2):
        worker = worker_factory(queues="ml")
        worker.env.update(CHUNKED)
        workers.append(worker.start())
    shared = run_through_worker(client, dataset, PARAMS)
    chunks = shared.metrics["neighbor_chunks"]["layout"]
    assert chunks["queries"] == N_IMAGES - 100 and chunks["count"] == 36 and chunks["helpers_asked"]
    # The helper answers while the coordinator lays out the sample; the coordinator reads its chunks.
    assert 1 <= chunks["from_helpers"] <= 36, chunks
    assert "'done'" in "".join(w.output() for w in workers)  # embeddings.tasks.neighbor_chunk returned done
    # The job and its chunk files are gone once the layout has its answers.
    leftovers = [name for name in storage.walk(shared.artifact_prefix) if "/chunks/" in name]
    assert leftovers == []

    workers[1].stop()
    alone = run_through_worker(client, dataset, PARAMS)
    assert alone.pk != shared.pk
    alone_chunks = alone.metrics["neighbor_chunks"]["layout"]
    assert alone_chunks["helpers_asked"] and alone_chunks["from_helpers"] == 0
    for name in (storage.LAYOUT, storage.CLUSTERS, storage.CODES):
        assert np.array_equal(storage.read_array(shared, name), storage.read_array(alone, name)), name
