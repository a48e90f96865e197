"""Runs, the map, clusters and similar images through the API."""

import pytest
from django.urls import reverse

from embeddings.models import TrainingRun
from labeling.services.annotations import annotations_apply_bulk


def test_start_run_then_conflict_then_cancel(mapped, client_for, settings):
    settings.SIMLABEL_MIN_RUN_IMAGES = 2
    client = client_for(mapped.admin)
    url = reverse("run-list", kwargs={"dataset_id": mapped.dataset.pk})
    response = client.post(url, {"epochs": 2, "code_size": 4, "n_clusters": 2, "layout_method": "umap"}, format="json")
    assert response.status_code == 202, response.json()
    started = response.json()
    assert started["status"] == "queued"
    run = TrainingRun.objects.get(pk=started["id"])
    assert run.params["epochs"] == 2 and run.params["layout_method"] == "umap" and run.created_by == mapped.admin
    again = client.post(url, {}, format="json")
    assert again.status_code == 409 and again.json()["run_id"] == run.pk
    detail = client.get(reverse("run-detail", kwargs={"run_id": run.pk})).json()
    for key in (
        "id",
        "dataset",
        "status",
        "stage",
        "progress",
        "metrics",
        "error",
        "created",
        "started",
        "finished",
        "params",
        "loss_curve",
        "stage_timings",
        "placed_count",
    ):
        assert key in detail
    cancelled = client.post(reverse("run-cancel", kwargs={"run_id": run.pk}))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    listed = client.get(url).json()
    assert [r["id"] for r in listed["results"]] == [run.pk, mapped.run.pk]


@pytest.mark.parametrize(
    "body",
    [
        {"epochs": 0},
        {"epochs": 1001},
        {"code_size": 1},
        {"code_size": 513},
        {"n_clusters": 1},
        {"n_clusters": 5001},
        {"channels": 2},
        {"layout_method": "pca"},
        {"cluster_method": "dbscan"},
        {"epochs": "many"},
        {"bogus": 1},
    ],
)
def test_run_params_are_validated(mapped, client_for, body, settings):
    settings.SIMLABEL_MIN_RUN_IMAGES = 2  # refused for the parameter, not for the dataset's size
    url = reverse("run-list", kwargs={"dataset_id": mapped.dataset.pk})
    response = client_for(mapped.admin).post(url, body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"]
    assert TrainingRun.objects.count() == 1


def test_run_of_another_dataset_is_404(mapped, client_for):
    client = client_for(mapped.outsider)
    assert client.get(reverse("run-detail", kwargs={"run_id": mapped.run.pk})).status_code == 404
    assert client.post(reverse("run-cancel", kwargs={"run_id": mapped.run.pk})).status_code == 404
    assert client.get(reverse("dataset-map", kwargs={"dataset_id": mapped.dataset.pk})).status_code == 404


def test_map_columns(mapped, client_for):
    annotations_apply_bulk(
        dataset=mapped.dataset, user=mapped.admin, label_class=mapped.one, image_ids=[mapped.images[3].pk]
    )
    body = client_for(mapped.annotator).get(reverse("dataset-map", kwargs={"dataset_id": mapped.dataset.pk})).json()
    assert body["run"] == mapped.run.pk
    assert body["image_ids"] == [i.pk for i in mapped.images]
    assert body["cluster"] == [0, 0, 0, 1, 1, 1]
    assert body["x"][4] == 11.0 and body["y"][5] == 11.0
    assert body["class"] == [None, None, None, mapped.one.pk, None, None]
    assert body["suggestion"] == [mapped.zero.pk] * 3 + [mapped.one.pk] * 3
    assert body["confidence"][0] == pytest.approx(0.9)


def test_map_before_any_run_is_empty(mapped, client_for):
    body = client_for(mapped.outsider).get(reverse("dataset-map", kwargs={"dataset_id": mapped.other.pk})).json()
    assert body["run"] is None and body["image_ids"] == [] and body["x"] == []


def test_clusters(mapped, client_for):
    annotations_apply_bulk(
        dataset=mapped.dataset, user=mapped.admin, label_class=mapped.zero, image_ids=[mapped.images[0].pk]
    )
    client = client_for(mapped.annotator)
    url = reverse("dataset-clusters", kwargs={"dataset_id": mapped.dataset.pk})
    clusters = client.get(url).json()
    assert {c["id"]: c["size"] for c in clusters} == {0: 3, 1: 3}
    first = next(c for c in clusters if c["id"] == 0)
    assert first["class_counts"] == {str(mapped.zero.pk): 1} and first["suggested_class"] == mapped.zero.pk
    assert sorted(first["image_ids"]) == [i.pk for i in mapped.images[:3]]
    by_doubt = client.get(url, {"order": "uncertainty"}).json()
    assert by_doubt[0]["id"] == 1  # lower confidence, more doubt
    assert client.get(url, {"order": "random"}).status_code == 400


def test_similar_images(mapped, client_for):
    client = client_for(mapped.annotator)
    url = reverse("image-similar", kwargs={"image_id": mapped.images[0].pk})
    similar = client.get(url, {"k": 2}).json()
    assert [s["id"] for s in similar] == [mapped.images[1].pk, mapped.images[2].pk]
    assert similar[0]["distance"] == pytest.approx(1.0) and "class" in similar[0]
    assert len(client.get(url).json()) == 5
    for k in (0, 201, "x"):
        assert client.get(url, {"k": k}).status_code == 400
