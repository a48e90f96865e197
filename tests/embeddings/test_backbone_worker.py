"""A backbone registered through the API, then a run on it through a real Celery worker: the images are embedded
by the backbone on the `ml` queue and the map, clusters and similar images follow its vectors."""

import pytest
from django.urls import reverse

from tests.embeddings import backbone_fixtures
from tests.embeddings.backbone_fixtures import GROUPS, PER_GROUP, groups_per_cluster, register
from tests.embeddings.backbone_models import pt2_bytes
from tests.embeddings.worker_runs import run_through_worker

# The shared fixtures, by name: pytest finds fixtures among a module's names.
team = backbone_fixtures.team
_no_stored_backbones = backbone_fixtures._no_stored_backbones

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def test_a_run_on_a_backbone_through_a_worker(transactional_db, team, client_for, celery_worker_process):
    client = client_for(team.admin)
    backbone = register(client, team.dataset, pt2_bytes(dynamic_batch=True))
    assert backbone.status_code == 201, backbone.json()
    run = run_through_worker(
        client,
        team.dataset,
        {
            "embedding": "backbone",
            "backbone": backbone.json()["id"],
            "n_clusters": 3,
            "cluster_method": "kmeans",
            "tsne_iterations": 60,
        },
    )
    assert run.metrics["backbone"]["device"] in ("cpu", "cuda:0", "cuda") and run.cluster_count == 3
    assert "embedding" in run.stage_timings
    points = client.get(reverse("dataset-map", kwargs={"dataset_id": team.dataset.pk})).json()
    assert len(points["image_ids"]) == GROUPS * PER_GROUP
    assert all(len(groups) == 1 for groups in groups_per_cluster(points, team.group_of).values())
    first = team.images[0].pk
    similar = client.get(reverse("image-similar", kwargs={"image_id": first}) + "?k=5").json()
    assert {team.group_of[s["id"]] for s in similar} == {team.group_of[first]}
