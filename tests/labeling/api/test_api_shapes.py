"""One shape per resource, one check per input.

The image list, the image endpoint and the image page build an image in one
place (labeling.api.serializers.image_data); a run's payload is RunSerializer's
output everywhere; every write that takes image ids refuses foreign ones alike.
"""

import json
import re

import pytest
from django.urls import reverse

from embeddings.api.serializers import RunSerializer
from embeddings.models import TrainingRun
from labeling.api.serializers import ImageDetailSerializer, ImageSerializer
from labeling.models import LabelAction


def test_an_image_has_one_shape_in_the_list_the_endpoint_and_the_page(team, client_for, client, map_of):
    image = team.images[0]
    map_of(
        team.dataset, {i: (float(n), 0.0, 0) for n, i in enumerate(team.images)}, suggestions={image: (team.dog, 0.75)}
    )
    api = client_for(team.annotator)
    listed = api.get(reverse("image-list", kwargs={"dataset_id": team.dataset.pk})).json()["results"][0]
    detail = api.get(reverse("image-detail", kwargs={"image_id": image.pk})).json()
    assert set(listed) == set(ImageSerializer().fields)
    assert set(detail) == set(ImageDetailSerializer().fields)
    assert {k: detail[k] for k in listed} == listed
    assert listed["suggestion"] == team.dog.pk and listed["confidence"] == pytest.approx(0.75)

    client.force_login(team.annotator)
    html = client.get(f"/images/{image.pk}/").content.decode()
    page = json.loads(re.search(r'<script id="page-data" type="application/json">(.*?)</script>', html, re.S).group(1))[
        "image"
    ]
    assert {k: page[k] for k in listed} == listed
    # image.js reads the API's names; no second spelling of the same facts.
    assert "version" not in page and "suggested_class" not in page


def test_a_run_has_one_shape_and_created_is_an_alias(team, client_for):
    run = TrainingRun.objects.create(dataset=team.dataset, created_by=team.admin, status="queued")
    for user in (team.admin, team.annotator):
        body = client_for(user).get(reverse("run-detail", kwargs={"run_id": run.pk})).json()
        admin_only = {"error_detail", "worker"}
        assert set(body) | (admin_only if user is team.annotator else set()) == set(RunSerializer().fields)
        assert body["created"] == body["created_at"] and body["started"] == body["started_at"]
        assert body["finished"] == body["finished_at"]
    listed = client_for(team.admin).get(reverse("run-list", kwargs={"dataset_id": team.dataset.pk})).json()
    assert listed["results"][0] == client_for(team.admin).get(reverse("run-detail", kwargs={"run_id": run.pk})).json()


def test_the_schema_says_class_and_that_409_is_a_conflict(client):
    schema = client.get("/api/schema/?format=json").json()
    assert "class" in schema["components"]["schemas"]["Image"]["properties"]
    assert not any(
        name == "class_" for s in schema["components"]["schemas"].values() for name in s.get("properties", {})
    )
    for operations in schema["paths"].values():
        for operation in operations.values():
            conflict = operation.get("responses", {}).get("409")
            if conflict:
                assert "invalid input" not in conflict["description"].lower()
    assert "Alias of created_at" in schema["components"]["schemas"]["Run"]["properties"]["created"]["description"]


@pytest.mark.parametrize("write", ["bulk", "accept", "resolve"])
def test_every_write_taking_image_ids_names_the_foreign_ones(write, team, client_for, map_of):
    map_of(
        team.dataset,
        {i: (float(n), 0.0, 0) for n, i in enumerate(team.images)},
        suggestions={i: (team.dog, 0.9) for i in team.images},
    )
    foreign, unknown = team.other_images[0].pk, 10**9
    ids = [team.images[0].pk, foreign, unknown]
    url, body = {
        "bulk": ("annotation-bulk", {"class": team.cat.pk, "image_ids": ids}),
        "accept": ("suggestions-accept", {"image_ids": ids}),
        "resolve": (
            "review-resolve",
            {"kind": "image", "id": team.images[0].pk, "outcome": "relabelled", "class": team.cat.pk, "image_ids": ids},
        ),
    }[write]
    response = client_for(team.admin).post(reverse(url, kwargs={"dataset_id": team.dataset.pk}), body, format="json")
    assert response.status_code == 400
    answer = response.json()
    assert answer["code"] == "invalid" and answer["field"] == "image_ids"
    assert answer["invalid_image_ids"] == [foreign, unknown]
    assert f"{foreign}, {unknown}" in answer["detail"] and "not images of this dataset" in answer["detail"]
    assert not LabelAction.objects.exists()
