"""The run resource's top-level `objective` (which objective trained the run, from its metrics; null before
it ran) and `embedding` (where its codes came from)."""

import pytest
from django.urls import reverse

from embeddings.models import RunStatus, TrainingRun
from embeddings.services import run_params_validate

pytestmark = pytest.mark.django_db


def test_objective_and_embedding_are_top_level_fields_of_a_run(make_user, make_dataset, client_for):
    admin = make_user("alice")
    dataset = make_dataset("Photos", admin=admin)
    trained = TrainingRun.objects.create(
        dataset=dataset,
        status=RunStatus.SUCCEEDED,
        params=run_params_validate({"objective": "auto"}),
        metrics={"objective": "contrastive", "objective_reason": "auto: 3-channel photos"},
    )
    queued = TrainingRun.objects.create(dataset=dataset, params=run_params_validate({"embedding": "uploaded"}))
    legacy = TrainingRun.objects.create(dataset=dataset, status=RunStatus.FAILED, params={"epochs": 3})
    client = client_for(admin)

    def shown(run):
        body = client.get(reverse("run-detail", kwargs={"run_id": run.pk})).json()
        return body["objective"], body["embedding"]

    assert shown(trained) == ("contrastive", "autoencoder")
    assert shown(queued) == (None, "uploaded")
    assert shown(legacy) == (None, "autoencoder")  # runs from before the parameter existed trained one
    listed = client.get(reverse("run-list", kwargs={"dataset_id": dataset.pk})).json()["results"]
    assert {run["id"]: run["objective"] for run in listed} == {
        trained.pk: "contrastive",
        queued.pk: None,
        legacy.pk: None,
    }
