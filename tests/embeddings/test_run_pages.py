"""The map, cluster and training pages: what they show per run state and role."""

import pytest

from embeddings.models import TrainingRun
from tests.factories import ImageFactory, LabelClassFactory, build_map


@pytest.fixture
def team(make_user, make_dataset):
    admin = make_user("alice")
    annotator = make_user("anna")
    outsider = make_user("oscar")
    dataset = make_dataset("Digits", admin=admin, members={annotator: "annotator"})
    make_dataset("Other", admin=outsider)
    LabelClassFactory(dataset=dataset, name="cat", color="#ff0000", shortcut="c")
    images = ImageFactory.create_batch(6, dataset=dataset, width=8, height=8)
    return dataset, {"admin": admin, "annotator": annotator, "outsider": outsider}, images


def finished_run(dataset, images, **fields):
    return build_map(
        dataset, positions={image: (i, i, i % 2) for i, image in enumerate(images)}, cluster_count=2, **fields
    ).run


def test_map_page_without_a_run_offers_to_start_one(client, team):
    dataset, users, _ = team
    client.force_login(users["admin"])
    html = client.get(f"/datasets/{dataset.pk}/map/").content.decode()
    assert "No map yet" in html and "Start a run" in html
    client.force_login(users["annotator"])
    html = client.get(f"/datasets/{dataset.pk}/map/").content.decode()
    assert "No map yet" in html and "Start a run" not in html and "An admin starts a run" in html


def test_map_page_shows_the_run_and_placed_count_with_rerun_for_admins(client, team):
    dataset, users, images = team
    finished_run(dataset, images, placed_count=7)
    client.force_login(users["admin"])
    html = client.get(f"/datasets/{dataset.pk}/map/?cluster=1").content.decode()
    assert "6 images, 2 clusters" in html
    assert '<span id="placed-count">7</span> placed without retraining' in html
    assert "re-run" in html
    assert '"initial": {"cluster": 1' in html
    assert "/static/vendor/plotly/plotly-strict.min.js" in html and "/static/js/map.js" in html
    client.force_login(users["annotator"])
    html = client.get(f"/datasets/{dataset.pk}/map/").content.decode()
    assert "placed without retraining" in html and "re-run" not in html


def test_runs_page_lists_runs_with_metrics_errors_and_durations(client, team):
    dataset, users, images = team
    finished_run(dataset, images, metrics={"final_loss": 0.01234}, stage_timings={"training": 2.0, "layout": 1.5})
    TrainingRun.objects.create(dataset=dataset, status="failed", error="worker stopped responding (killed)")
    client.force_login(users["annotator"])
    html = client.get(f"/datasets/{dataset.pk}/runs/").content.decode()
    assert "0.0123" in html and "training 2.0 s" in html and "layout 1.5 s" in html
    assert "worker stopped responding" in html
    assert "start-run-form" not in html
    client.force_login(users["admin"])
    html = client.get(f"/datasets/{dataset.pk}/runs/").content.decode()
    assert 'id="start-run-form"' in html and 'name="layout_method"' in html


def test_start_button_is_disabled_while_a_run_is_active(client, team):
    dataset, users, _ = team
    TrainingRun.objects.create(dataset=dataset, status="running", stage="training", progress=0.3)
    client.force_login(users["admin"])
    html = client.get(f"/datasets/{dataset.pk}/runs/").content.decode()
    assert 'id="start-run-button" disabled' in html and "one run at a time" in html


def test_reconstructions_json_only_for_members_and_finished_runs(client, team):
    dataset, users, images = team
    running = TrainingRun.objects.create(dataset=dataset, status="running")
    client.force_login(users["outsider"])
    assert client.get(f"/datasets/{dataset.pk}/runs/{running.pk}/reconstructions.json").status_code == 404
    client.force_login(users["annotator"])
    response = client.get(f"/datasets/{dataset.pk}/runs/{running.pk}/reconstructions.json")
    assert response.status_code == 409 and response.json()["items"] == []
    assert client.get(f"/datasets/{dataset.pk}/runs/999999/reconstructions.json").status_code == 404


def test_cluster_page_without_a_map(client, team):
    dataset, users, _ = team
    client.force_login(users["annotator"])
    html = client.get(f"/datasets/{dataset.pk}/clusters/").content.decode()
    assert "No map yet, so no clusters" in html and "clusters.js" not in html


def test_runs_form_offers_the_datasets_backbones_by_name(client, team, make_dataset):
    from embeddings.services.backbones import backbone_register
    from tests.embeddings.backbone_models import MEAN, SIZE, STD, torchscript_bytes

    dataset, users, _ = team
    client.force_login(users["admin"])
    html = client.get(f"/datasets/{dataset.pk}/runs/").content.decode()
    assert '<select id="p-backbone" name="backbone"' in html and "tiny-cnn" not in html

    def register(target, name):
        return backbone_register(
            dataset=target,
            user=users["admin"],
            name=name,
            data=torchscript_bytes(),
            fmt="torchscript",
            input_size=(SIZE, SIZE),
            mean=MEAN,
            std=STD,
        )

    mine = register(dataset, "tiny-cnn")
    register(make_dataset("Elsewhere", admin=users["admin"]), "not-this-one")
    html = client.get(f"/datasets/{dataset.pk}/runs/").content.decode()
    assert f'<option value="{mine.pk}">tiny-cnn (7 values, #{mine.pk})</option>' in html
    assert "not-this-one" not in html
