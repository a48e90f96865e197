"""Backbones through the API (register, list, show, delete, roles, bad files: nothing stored), the
register_backbone command, and runs with embedding=backbone executed in this process: the map, clusters,
suggestions and similar images follow the backbone's vectors, and a run can be cancelled while embedding."""

import threading
import time

import pytest
import torch
from django.core.management import CommandError, call_command
from django.urls import reverse

from embeddings import storage
from embeddings.models import BACKBONES_PREFIX, Backbone, ImageEmbedding, RunStage, RunStatus, TrainingRun
from embeddings.services import suggestions_recompute, training_run_cancel, training_run_execute
from labeling.models import Annotation
from tests.embeddings import backbone_fixtures
from tests.embeddings.backbone_fixtures import GROUPS, PER_GROUP, backbones_url, groups_per_cluster, register
from tests.embeddings.backbone_models import DIM, SIZE, pickle_bomb_bytes, pt2_bytes, torchscript_bytes
from tests.factories import LabelClassFactory

# The run's heartbeat thread writes through its own connection: data must be committed.
# The shared fixtures, by name: pytest finds fixtures among a module's names.
team = backbone_fixtures.team
_no_stored_backbones = backbone_fixtures._no_stored_backbones

pytestmark = pytest.mark.django_db(transaction=True)

RUN = {"embedding": "backbone", "n_clusters": 3, "cluster_method": "kmeans", "tsne_iterations": 60}


def assert_nothing_stored(response, status=400):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["detail"], body
    assert not Backbone.objects.exists()
    assert list(storage.walk(BACKBONES_PREFIX)) == []
    return body


def start_run(client, dataset, backbone_id, **params):
    started = client.post(
        reverse("run-list", kwargs={"dataset_id": dataset.pk}), {**RUN, "backbone": backbone_id, **params}
    )
    assert started.status_code == 202, started.json()
    return TrainingRun.objects.get(pk=started.json()["id"])


@pytest.mark.parametrize(
    "make, fmt",
    [(pt2_bytes, "pt2"), (torchscript_bytes, "torchscript"), (lambda: torchscript_bytes(trace=True), "torchscript")],
)
def test_a_run_on_a_backbone_maps_clusters_suggests_and_finds_similar_images(team, client_for, make, fmt):
    client = client_for(team.admin)
    created = register(client, team.dataset, make())
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["format"] == fmt and body["dim"] == DIM and body["input_size"] == [SIZE, SIZE]
    assert body["channels"] == 3 and body["mean"] == [0.5] * 3 and body["created_by"] == "alice"
    assert [b["id"] for b in client_for(team.annotator).get(backbones_url(team.dataset)).json()] == [body["id"]]

    run = start_run(client, team.dataset, body["id"])
    # No worker in this test: the run is executed here, as the worker would.
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert set(run.stage_timings) == {"preparing", "embedding", "layout", "clustering", "storing"}
    assert run.metrics["backbone"]["id"] == body["id"] and run.metrics["backbone"]["device"] == "cpu"
    assert run.metrics["code_size"] == DIM and run.metrics["embedding"] == "backbone"
    assert run.loss_curve == [] and run.metrics["mean_reconstruction_error"] is None
    assert storage.read_array(run, storage.CODES).shape == (GROUPS * PER_GROUP, DIM)
    shown = client.get(reverse("run-detail", kwargs={"run_id": run.pk})).json()
    assert shown["embedding"] == "backbone" and shown["objective"] is None

    points = client.get(reverse("dataset-map", kwargs={"dataset_id": team.dataset.pk})).json()
    assert points["run"] == run.pk and sorted(points["image_ids"]) == sorted(team.group_of)
    clusters = groups_per_cluster(points, team.group_of)
    assert len(clusters) == 3 and all(len(groups) == 1 for groups in clusters.values())
    listed = client.get(reverse("dataset-clusters", kwargs={"dataset_id": team.dataset.pk})).json()
    assert sorted(c["size"] for c in listed) == [PER_GROUP] * 3

    first = team.images[0].pk
    similar = client.get(reverse("image-similar", kwargs={"image_id": first}) + "?k=5").json()
    assert len(similar) == 5 and {team.group_of[s["id"]] for s in similar} == {team.group_of[first]}

    classes = [LabelClassFactory(dataset=team.dataset, name=f"kind {g}") for g in range(GROUPS)]
    for image in team.images[: GROUPS * 2]:
        Annotation.objects.create(dataset=team.dataset, image=image, label_class=classes[team.group_of[image.pk]])
    suggestions_recompute(dataset=team.dataset)
    points = client.get(reverse("dataset-map", kwargs={"dataset_id": team.dataset.pk})).json()
    assert all(s == classes[team.group_of[i]].pk for i, s in zip(points["image_ids"], points["suggestion"]))


def test_roles_an_annotator_cannot_register_or_delete_and_a_non_member_sees_nothing(team, client_for):
    assert_nothing_stored(register(client_for(team.annotator), team.dataset, pt2_bytes()), status=403)
    assert_nothing_stored(register(client_for(team.outsider), team.dataset, pt2_bytes()), status=404)
    assert client_for(team.outsider).get(backbones_url(team.dataset)).status_code == 404
    assert client_for(None).get(backbones_url(team.dataset)).status_code in (401, 403)
    backbone_id = register(client_for(team.admin), team.dataset, pt2_bytes()).json()["id"]
    detail = reverse("dataset-backbone", kwargs={"dataset_id": team.dataset.pk, "backbone_id": backbone_id})
    assert client_for(team.annotator).get(detail).json()["id"] == backbone_id
    assert client_for(team.outsider).get(detail).status_code == 404
    assert client_for(team.annotator).delete(detail).status_code == 403
    assert client_for(team.outsider).delete(detail).status_code == 404
    assert Backbone.objects.count() == 1
    assert client_for(team.admin).delete(detail).status_code == 204
    assert not Backbone.objects.exists() and list(storage.walk(BACKBONES_PREFIX)) == []
    assert client_for(team.admin).get(detail).status_code == 404


def test_bad_files_and_fields_are_refused_and_nothing_is_stored(team, client_for, tmp_path, settings):
    client = client_for(team.admin)
    marker = tmp_path / "ran"
    body = assert_nothing_stored(register(client, team.dataset, pickle_bomb_bytes(marker)))
    assert "pickled" in body["detail"] and not marker.exists()
    assert_nothing_stored(register(client, team.dataset, pickle_bomb_bytes(marker), format="torchscript"))
    assert_nothing_stored(register(client, team.dataset, pickle_bomb_bytes(marker), format="pt2"))
    assert not marker.exists()
    assert_nothing_stored(register(client, team.dataset, b"not a model at all"))
    body = assert_nothing_stored(register(client, team.dataset, pt2_bytes(), input_size="32,32"))
    assert "failed on a batch of 1 x 3 x 32 x 32" in body["detail"]  # the export takes 16 x 16
    assert_nothing_stored(register(client, team.dataset, pt2_bytes(), mean="0.5,0.5"))
    assert_nothing_stored(register(client, team.dataset, pt2_bytes(), std="0.25,0,0.25"))
    assert_nothing_stored(register(client, team.dataset, pt2_bytes(), input_size="a,b"))
    assert_nothing_stored(register(client, team.dataset, pt2_bytes(), format="onnx"))
    body = assert_nothing_stored(register(client, team.dataset, torchscript_bytes(), format="pt2"))
    assert "torchscript file, not pt2" in body["detail"]
    assert_nothing_stored(register(client, team.dataset, pt2_bytes(), name=""))
    assert_nothing_stored(register(client, team.dataset, pt2_bytes(), colour="red"))
    settings.SIMLABEL_MAX_BACKBONE_BYTES = 1000
    assert_nothing_stored(register(client, team.dataset, pt2_bytes()), status=413)


def test_a_name_is_used_once_per_dataset(team, client_for):
    client = client_for(team.admin)
    assert register(client, team.dataset, pt2_bytes()).status_code == 201
    again = register(client, team.dataset, torchscript_bytes())
    assert again.status_code == 400 and "already has a backbone named" in again.json()["detail"]
    assert Backbone.objects.count() == 1 and len(list(storage.walk(BACKBONES_PREFIX))) == 1


def test_a_run_needs_a_backbone_of_its_own_dataset(team, client_for, make_dataset):
    client = client_for(team.admin)
    runs = reverse("run-list", kwargs={"dataset_id": team.dataset.pk})
    missing = client.post(runs, {"embedding": "backbone"}, format="json")
    assert missing.status_code == 400 and "needs a backbone" in missing.json()["detail"]
    other = make_dataset("Other", admin=team.admin)
    foreign = register(client, other, pt2_bytes()).json()["id"]
    refused = client.post(runs, {"embedding": "backbone", "backbone": foreign}, format="json")
    assert refused.status_code == 400 and "not a backbone of this dataset" in refused.json()["detail"]
    stray = client.post(runs, {"backbone": foreign}, format="json")
    assert stray.status_code == 400 and "only used with" in stray.json()["detail"]
    assert not TrainingRun.objects.filter(dataset=team.dataset).exists()


def test_a_backbone_in_use_by_an_active_run_cannot_be_deleted(team, client_for):
    client = client_for(team.admin)
    backbone_id = register(client, team.dataset, pt2_bytes()).json()["id"]
    run = start_run(client, team.dataset, backbone_id)
    detail = reverse("dataset-backbone", kwargs={"dataset_id": team.dataset.pk, "backbone_id": backbone_id})
    refused = client.delete(detail)
    assert refused.status_code == 409 and refused.json()["run_id"] == run.pk
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)
    assert client.delete(detail).status_code == 204


class Slow(torch.nn.Module):
    """A model that takes `steps` small matrix products per batch: slow on purpose, so that the cancel arrives
    while the run embeds."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def forward(self, x):
        y = x.flatten(1)[:, :64]
        w = torch.eye(64) * 0.999
        for _ in range(self.steps):
            y = y @ w
        return y


def test_a_run_is_cancelled_while_it_embeds(team, client_for):
    client = client_for(team.admin)
    backbone_id = register(client, team.dataset, torchscript_bytes(model=Slow(20000))).json()["id"]
    run = start_run(client, team.dataset, backbone_id)

    def cancel_when_embedding():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # From the embedding stage on (a very fast embedding could pass between two looks).
            stages = [RunStage.EMBEDDING, RunStage.LAYOUT, RunStage.CLUSTERING]
            if TrainingRun.objects.filter(pk=run.pk, stage__in=stages).exists():
                training_run_cancel(run=TrainingRun.objects.get(pk=run.pk), user=None)
                return
            time.sleep(0.05)

    canceller = threading.Thread(target=cancel_when_embedding)
    canceller.start()
    assert training_run_execute(run_id=run.pk, worker_name="test") == "cancelled"
    canceller.join()
    run.refresh_from_db()
    # The run looks at its row at most once a second: on a fast machine the cancel may be seen only once the
    # layout started (tests/embeddings/ml/test_backbone.py checks that embedding stops between batches).
    assert run.status == RunStatus.CANCELLED and "embedding" in run.stage_timings
    assert not ImageEmbedding.objects.filter(run=run).exists()


def test_register_backbone_command(team, tmp_path):
    path = tmp_path / "tiny.pt2"
    path.write_bytes(pt2_bytes())
    common = ["--input-size", str(SIZE), "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]
    call_command("register_backbone", str(team.dataset.pk), str(path), "--name", "cli", *common)
    backbone = Backbone.objects.get()
    assert (backbone.name, backbone.format, backbone.dim, backbone.input_height) == ("cli", "pt2", DIM, SIZE)
    bomb = tmp_path / "bomb.pt"
    bomb.write_bytes(pickle_bomb_bytes(tmp_path / "ran"))
    with pytest.raises(CommandError, match="pickled"):
        call_command("register_backbone", "Photos", str(bomb), "--name", "bomb", *common)
    assert not (tmp_path / "ran").exists() and Backbone.objects.count() == 1


def test_deleting_the_dataset_deletes_its_backbone_files(team, client_for, django_capture_on_commit_callbacks):
    client = client_for(team.admin)
    assert register(client, team.dataset, pt2_bytes()).status_code == 201
    assert len(list(storage.walk(BACKBONES_PREFIX))) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(reverse("dataset-detail", kwargs={"dataset_id": team.dataset.pk})).status_code == 204
    assert list(storage.walk(BACKBONES_PREFIX)) == [] and not Backbone.objects.exists()


def test_images_added_after_the_run_are_placed_with_its_backbone_until_it_is_deleted(team, client_for):
    from embeddings.services import images_place_execute
    from tests.embeddings.backbone_fixtures import COLORS, color_png
    from tests.factories import ImageFactory

    client = client_for(team.admin)
    backbone_id = register(client, team.dataset, torchscript_bytes()).json()["id"]
    run = start_run(client, team.dataset, backbone_id)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    cluster_of_group = {
        team.group_of[row.image_id]: row.cluster
        for row in ImageEmbedding.objects.filter(run=run, placed_after_run=False)
    }
    late = [
        ImageFactory(dataset=team.dataset, data=color_png(COLORS[g], 1000 + g), original_name=f"late{g}.png")
        for g in range(GROUPS)
    ]
    assert images_place_execute(run_id=run.pk) == GROUPS
    placed = {row.image_id: row for row in ImageEmbedding.objects.filter(run=run, placed_after_run=True)}
    assert [placed[image.pk].cluster for image in late] == [cluster_of_group[g] for g in range(GROUPS)]
    assert all(row.reconstruction_error is None for row in placed.values())

    detail = reverse("dataset-backbone", kwargs={"dataset_id": team.dataset.pk, "backbone_id": backbone_id})
    assert client.delete(detail).status_code == 204
    ImageFactory(dataset=team.dataset, data=color_png(COLORS[0], 2000), original_name="later.png")
    assert images_place_execute(run_id=run.pk) == 0
    run.refresh_from_db()
    assert run.metrics["unplaced_images"] == 1 and "backbone has been deleted" in run.metrics["unplaced_reason"]
