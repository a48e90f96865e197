"""Every role against every endpoint, generated from one table.

The table is labeling.api.permissions.ENDPOINT_ACTIONS (endpoint -> action)
joined with core.permissions.ACTION_MIN_ROLE (action -> lowest role).
A member whose role is high enough gets the endpoint's success status; a
lower role gets 403, a user of another dataset 404 and an anonymous client
401, and none of those three changes anything.
"""

import uuid

import numpy as np
import pytest
from django.urls import reverse

from core.permissions import role_allows
from embeddings.models import TrainingRun
from labeling.api.permissions import ENDPOINT_ACTIONS
from labeling.models import Role
from labeling.services.annotations import annotations_apply_bulk

ROLES = ["admin", "reviewer", "annotator", "outsider", "anonymous"]


def _url(name, **kwargs):
    return reverse(name, kwargs=kwargs)


def _image_upload(team, actor, make_png):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return {"files": [SimpleUploadedFile("new.png", make_png(size=(9, 9), seed=424242), content_type="image/png")]}


def _label_file(team):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("labels.csv", f"name,class\n{team.images[2].original_name},dog\n".encode())


# (method, route) -> (url(team, actor), body(team, actor, make_png), success status, request format)
REQUESTS = {
    ("GET", "dataset-detail"): (lambda t, u: _url("dataset-detail", dataset_id=t.dataset.pk), None, 200, None),
    ("PATCH", "dataset-detail"): (
        lambda t, u: _url("dataset-detail", dataset_id=t.dataset.pk),
        lambda t, u, p: {"name": "Renamed"},
        200,
        "json",
    ),
    ("DELETE", "dataset-detail"): (lambda t, u: _url("dataset-detail", dataset_id=t.dataset.pk), None, 204, None),
    ("GET", "member-list"): (lambda t, u: _url("member-list", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "member-list"): (
        lambda t, u: _url("member-list", dataset_id=t.dataset.pk),
        lambda t, u, p: {"username": "newbie", "role": "annotator"},
        201,
        "json",
    ),
    ("PATCH", "member-detail"): (
        lambda t, u: _url("member-detail", dataset_id=t.dataset.pk, user_id=t.extra.pk),
        lambda t, u, p: {"role": "reviewer"},
        200,
        "json",
    ),
    ("DELETE", "member-detail"): (
        lambda t, u: _url("member-detail", dataset_id=t.dataset.pk, user_id=t.extra.pk),
        None,
        204,
        None,
    ),
    ("GET", "class-list"): (lambda t, u: _url("class-list", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "class-list"): (
        lambda t, u: _url("class-list", dataset_id=t.dataset.pk),
        lambda t, u, p: {"name": "bird", "color": "#123456", "shortcut": "b"},
        201,
        "json",
    ),
    ("GET", "class-detail"): (
        lambda t, u: _url("class-detail", dataset_id=t.dataset.pk, class_id=t.spare.pk),
        None,
        200,
        None,
    ),
    ("PATCH", "class-detail"): (
        lambda t, u: _url("class-detail", dataset_id=t.dataset.pk, class_id=t.spare.pk),
        lambda t, u, p: {"name": "spare parts"},
        200,
        "json",
    ),
    ("DELETE", "class-detail"): (
        lambda t, u: _url("class-detail", dataset_id=t.dataset.pk, class_id=t.spare.pk),
        None,
        204,
        None,
    ),
    ("GET", "image-list"): (lambda t, u: _url("image-list", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "image-list"): (lambda t, u: _url("image-list", dataset_id=t.dataset.pk), _image_upload, 201, "multipart"),
    ("GET", "image-detail"): (lambda t, u: _url("image-detail", image_id=t.images[0].pk), None, 200, None),
    ("GET", "image-history"): (lambda t, u: _url("image-history", image_id=t.images[0].pk), None, 200, None),
    ("PUT", "image-annotation"): (
        lambda t, u: _url("image-annotation", image_id=t.images[0].pk),
        lambda t, u, p: {"class": t.cat.pk},
        200,
        "json",
    ),
    ("DELETE", "image-annotation"): (lambda t, u: _url("image-annotation", image_id=t.images[1].pk), None, 200, None),
    ("POST", "annotation-bulk"): (
        lambda t, u: _url("annotation-bulk", dataset_id=t.dataset.pk),
        lambda t, u, p: {"class": t.dog.pk, "image_ids": [i.pk for i in t.images[2:]]},
        200,
        "json",
    ),
    ("POST", "annotation-import"): (
        lambda t, u: _url("annotation-import", dataset_id=t.dataset.pk),
        lambda t, u, p: {"file": _label_file(t), "format": "csv"},
        200,
        "multipart",
    ),
    ("GET", "action-list"): (lambda t, u: _url("action-list", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "action-undo"): (
        lambda t, u: _url("action-undo", dataset_id=t.dataset.pk, action_id=t.own_action.pk),
        None,
        200,
        None,
    ),
    ("GET", "review-queue"): (lambda t, u: _url("review-queue", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "review-resolve"): (
        lambda t, u: _url("review-resolve", dataset_id=t.dataset.pk),
        lambda t, u, p: {"kind": "image", "id": t.images[1].pk, "outcome": "reviewed"},
        200,
        "json",
    ),
    ("POST", "suggestions-accept"): (
        lambda t, u: _url("suggestions-accept", dataset_id=t.dataset.pk),
        lambda t, u, p: {"image_ids": [t.images[3].pk]},
        200,
        "json",
    ),
    ("GET", "export"): (lambda t, u: _url("export", dataset_id=t.dataset.pk) + "?format=csv", None, 200, None),
    ("GET", "webhook-list"): (lambda t, u: _url("webhook-list", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "webhook-list"): (
        lambda t, u: _url("webhook-list", dataset_id=t.dataset.pk),
        # A public address literal: creating a webhook resolves its host but sends nothing.
        lambda t, u, p: {"url": "https://93.184.215.14/hook", "events": ["labels.changed"]},
        201,
        "json",
    ),
    ("DELETE", "webhook-detail"): (
        lambda t, u: _url("webhook-detail", dataset_id=t.dataset.pk, webhook_id=t.webhook.pk),
        lambda t, u, p: _with_webhook(t),
        204,
        None,
    ),
    ("GET", "dataset-backbones"): (lambda t, u: _url("dataset-backbones", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "dataset-backbones"): (
        lambda t, u: _url("dataset-backbones", dataset_id=t.dataset.pk),
        lambda t, u, p: _backbone_upload(),
        201,
        "multipart",
    ),
    ("GET", "dataset-backbone"): (
        lambda t, u: _url("dataset-backbone", dataset_id=t.dataset.pk, backbone_id=t.backbone.pk),
        lambda t, u, p: _with_backbone(t),
        200,
        None,
    ),
    ("DELETE", "dataset-backbone"): (
        lambda t, u: _url("dataset-backbone", dataset_id=t.dataset.pk, backbone_id=t.backbone.pk),
        lambda t, u, p: _with_backbone(t),
        204,
        None,
    ),
    ("GET", "storage-list"): (lambda t, u: _url("storage-list", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "storage-list"): (
        lambda t, u: _url("storage-list", dataset_id=t.dataset.pk),
        lambda t, u, p: _bucket_to_connect(),
        201,
        "json",
    ),
    ("GET", "storage-detail"): (
        lambda t, u: _url("storage-detail", dataset_id=t.dataset.pk, storage_id=t.storage.pk),
        lambda t, u, p: _with_storage(t),
        200,
        None,
    ),
    ("POST", "storage-sync"): (
        lambda t, u: _url("storage-sync", dataset_id=t.dataset.pk, storage_id=t.storage.pk),
        lambda t, u, p: _with_storage(t),
        202,
        None,
    ),
    ("GET", "prediction-list"): (lambda t, u: _url("prediction-list", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "prediction-list"): (
        lambda t, u: _url("prediction-list", dataset_id=t.dataset.pk),
        lambda t, u, p: {"model": "resnet", "items": [{"image_id": t.images[0].pk, "class": "cat", "confidence": 0.9}]},
        200,
        "json",
    ),
    ("GET", "prediction-detail"): (
        lambda t, u: _url("prediction-detail", dataset_id=t.dataset.pk, model="resnet"),
        lambda t, u, p: _with_predictions(t),
        200,
        None,
    ),
    ("DELETE", "prediction-detail"): (
        lambda t, u: _url("prediction-detail", dataset_id=t.dataset.pk, model="resnet"),
        lambda t, u, p: _with_predictions(t),
        204,
        None,
    ),
    ("GET", "run-list"): (lambda t, u: _url("run-list", dataset_id=t.dataset.pk), None, 200, None),
    ("POST", "run-list"): (
        lambda t, u: _url("run-list", dataset_id=t.dataset.pk),
        lambda t, u, p: {"epochs": 1, "code_size": 4},
        202,
        "json",
    ),
    ("GET", "run-detail"): (lambda t, u: _url("run-detail", run_id=t.run.pk), None, 200, None),
    ("POST", "run-cancel"): (lambda t, u: _url("run-cancel", run_id=t.run.pk), None, 200, None),
    ("GET", "dataset-map"): (lambda t, u: _url("dataset-map", dataset_id=t.dataset.pk), None, 200, None),
    ("GET", "dataset-clusters"): (lambda t, u: _url("dataset-clusters", dataset_id=t.dataset.pk), None, 200, None),
    ("GET", "dataset-retrain"): (lambda t, u: _url("dataset-retrain", dataset_id=t.dataset.pk), None, 200, None),
    ("GET", "image-similar"): (lambda t, u: _url("image-similar", image_id=t.images[0].pk), None, 200, None),
    ("GET", "dataset-embeddings"): (
        lambda t, u: _url("dataset-embeddings", dataset_id=t.dataset.pk),
        lambda t, u, p: _with_uploaded_vectors(t),
        200,
        None,
    ),
    ("POST", "dataset-embeddings"): (
        lambda t, u: _url("dataset-embeddings", dataset_id=t.dataset.pk),
        lambda t, u, p: {
            "image_ids": [i.pk for i in t.images],
            "vectors": [[float(i), 1.0] for i in range(len(t.images))],
        },
        201,
        "json",
    ),
}


def _backbone_upload() -> dict:
    """A tiny TorchScript model and its declared input: the body that registers a backbone."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.embeddings.backbone_models import MEAN, SIZE, STD, torchscript_bytes

    return {
        "file": SimpleUploadedFile("tiny.pt", torchscript_bytes()),
        "name": f"tiny-{uuid.uuid4().hex[:8]}",
        "input_size": f"{SIZE},{SIZE}",
        "mean": ",".join(map(str, MEAN)),
        "std": ",".join(map(str, STD)),
    }


def _with_backbone(team):
    """A registered backbone of the dataset, made before the request (no body: None)."""
    from embeddings.services.backbones import backbone_register
    from tests.embeddings.backbone_models import MEAN, SIZE, STD, torchscript_bytes

    team.backbone = backbone_register(
        dataset=team.dataset,
        user=team.admin,
        name=f"tiny-{uuid.uuid4().hex[:8]}",
        data=torchscript_bytes(),
        fmt="torchscript",
        input_size=(SIZE, SIZE),
        mean=MEAN,
        std=STD,
    )


def _with_webhook(team):
    """A webhook of the dataset, made before the request (a DELETE sends no body: None)."""
    from labeling.models import Webhook

    team.webhook = Webhook.objects.create(dataset=team.dataset, url="https://93.184.215.14/hook", secret="s")


def _with_predictions(team):
    """Model "resnet"'s predictions for the dataset, stored before the request (no body: None)."""
    from labeling.services.predictions import predictions_upload

    items = [{"image_id": image.pk, "class": "dog", "confidence": 0.8} for image in team.images]
    predictions_upload(dataset=team.dataset, model="resnet", items=items)


def _bucket_to_connect() -> dict:
    """A new bucket on the tests' S3 server (tests/s3_server.py) and the body that connects it."""
    import uuid

    from tests.s3_server import s3_client, s3_server

    server, name = s3_server(), f"roles-{uuid.uuid4().hex[:12]}"
    s3_client(server).create_bucket(Bucket=name)
    return {key: server[key] for key in ("endpoint_url", "region", "access_key_id", "secret_access_key")} | {
        "bucket": name
    }


def _with_storage(team):
    """A connected storage of the dataset, made before the request (no body: None)."""
    from core.object_storage import credentials_encrypt
    from labeling.models import Storage

    team.storage = Storage.objects.create(
        dataset=team.dataset, bucket="some-bucket", credentials=credentials_encrypt("id", "secret")
    )


def _with_uploaded_vectors(team):
    """The dataset's vectors, stored before the request (a GET sends no body: None)."""
    from embeddings.services.embeddings_upload import uploaded_embeddings_store

    ids = [image.pk for image in team.images]
    uploaded_embeddings_store(
        dataset=team.dataset, user=team.admin, image_ids=np.asarray(ids), vectors=np.eye(len(ids), 2)
    )


DATASET_ENDPOINTS = sorted(key for key, action in ENDPOINT_ACTIONS.items() if action is not None)


def test_every_dataset_endpoint_has_a_request():
    assert set(DATASET_ENDPOINTS) == set(REQUESTS)


def expected_status(action: str, role: str, success: int) -> int:
    if role == "anonymous":
        return 401
    if role == "outsider":
        return 404
    return success if role_allows(Role(role), action) else 403


@pytest.fixture
def prepared(team, make_user, settings, map_of):
    """The team plus what some endpoints need: a user to add, a map with suggestions, few images per run."""
    make_user("newbie")
    settings.SIMLABEL_MIN_RUN_IMAGES = 2
    settings.SIMLABEL_STORAGE_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # the tests' S3 server (_bucket_to_connect)
    map_of(
        team.dataset,
        {image: (float(i), 0.0, i % 2) for i, image in enumerate(team.images)},
        suggestions={image: (team.dog, 0.9) for image in team.images},
    )
    return team


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", DATASET_ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
def test_role_against_endpoint(endpoint, role, prepared, client_for, make_png, snapshot):
    team = prepared
    action = ENDPOINT_ACTIONS[endpoint]
    url_of, body_of, success, fmt = REQUESTS[endpoint]
    actor = team.users[role]
    # The undo endpoint needs an action made by the actor (a member) or, for
    # outsiders and anonymous clients, by someone of the dataset.
    author = actor if role in ("admin", "reviewer", "annotator") else team.admin
    team.own_action = annotations_apply_bulk(
        dataset=team.dataset, user=author, label_class=team.cat, image_ids=[team.images[1].pk]
    )
    if endpoint == ("POST", "run-list"):
        team.run = None
    else:
        team.run = TrainingRun.objects.create(dataset=team.dataset, created_by=team.admin, status="queued")
    method, _ = endpoint
    body = body_of(team, actor, make_png) if body_of else None
    before = snapshot()
    client = client_for(actor)
    response = getattr(client, method.lower())(url_of(team, actor), body, format=fmt)
    expected = expected_status(action, role, success)
    assert response.status_code == expected, (response.status_code, getattr(response, "data", None))
    if expected >= 400:
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["detail"]
        assert snapshot() == before, "a refused request changed the database"


@pytest.mark.parametrize("role", ROLES)
def test_dataset_list_shows_only_own_datasets(role, team, client_for):
    response = client_for(team.users[role]).get(reverse("dataset-list"))
    if role == "anonymous":
        assert response.status_code == 401
        return
    assert response.status_code == 200
    names = {d["name"] for d in response.json()["results"]}
    assert names == ({"Other team"} if role == "outsider" else {"Digits"})


def test_role_table_shape():
    # The rules, spelled out: reads any role, labeling annotator+,
    # review reviewer+, members/classes/runs/delete/upload admin.
    allowed = lambda action: {r for r in ("admin", "reviewer", "annotator") if role_allows(Role(r), action)}  # noqa
    assert allowed("view") == allowed("label") == allowed("export") == {"admin", "reviewer", "annotator"}
    assert allowed("review") == {"admin", "reviewer"}
    for action in (
        "manage_members",
        "manage_classes",
        "start_run",
        "cancel_run",
        "delete_dataset",
        "upload",
        "edit_dataset",
        "manage_webhooks",
    ):
        assert allowed(action) == {"admin"}
