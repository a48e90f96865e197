"""A run started through the API and finished by a real Celery worker (the worker tests' shared steps)."""

import time

import numpy as np
from django.urls import reverse

from embeddings import storage
from embeddings.models import ImageEmbedding, RunStatus, TrainingRun


def run_through_worker(client, dataset, params: dict, timeout: float = 180) -> TrainingRun:
    """POSTs the run's params, waits until the worker has finished it, and returns it, succeeded."""
    started = client.post(reverse("run-list", kwargs={"dataset_id": dataset.pk}), params, format="json")
    assert started.status_code == 202, started.json()
    deadline = time.monotonic() + timeout
    while (run := TrainingRun.objects.get(pk=started.json()["id"])).status not in (
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
    ):
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.3)
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def assert_codes_as_one_process(run: TrainingRun, dataset) -> None:
    """The run's stored codes equal what one process computes with its model from the same images in the
    same batches: however many workers embedded chunks, the result is the same."""
    # Deferred: inference imports torch.
    from embeddings.ml.inference import embed_images
    from embeddings.services.pipeline import load_run_images

    ids = storage.read_array(run, storage.IMAGE_IDS)
    rows = list(dataset.images.order_by("id").values_list("id", "file"))
    images, loaded_ids, _ = load_run_images(rows, run.input_size, run.channels)
    assert np.array_equal(ids, loaded_ids)
    single, _ = embed_images(storage.read_model(run), images, batch_size=8)
    stored = dict(ImageEmbedding.objects.filter(run=run).values_list("image_id", "code"))
    chunked = np.stack([np.frombuffer(bytes(stored[int(i)]), dtype=np.float32) for i in ids])
    assert np.array_equal(chunked, single)
