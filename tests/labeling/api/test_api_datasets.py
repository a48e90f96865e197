"""Auth, datasets, members and classes through the REST API."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from labeling.models import Annotation, LabelClass, Membership

# --- auth ---------------------------------------------------------------------------------------


def test_token_for_valid_credentials_then_authenticated_requests(team):
    client = APIClient()
    response = client.post(reverse("api-token"), {"username": "alice", "password": "pw-Secret-123"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(reverse("dataset-list")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"username": "alice", "password": "wrong"}, {"username": "nobody", "password": "x"}, {"username": "alice"}, {}],
)
def test_token_refused_is_a_400_json(team, body):
    response = APIClient().post(reverse("api-token"), body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"]


def test_token_endpoint_is_throttled(team):
    client = APIClient()
    statuses = [
        client.post(reverse("api-token"), {"username": "alice", "password": "wrong"}, format="json").status_code
        for _ in range(25)
    ]
    assert statuses[0] == 400
    assert statuses[-1] == 429
    # Even the right password is refused while throttled.
    response = client.post(reverse("api-token"), {"username": "alice", "password": "pw-Secret-123"}, format="json")
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"


def test_bad_token_is_401(team):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get(reverse("dataset-list"))
    assert response.status_code == 401
    assert response.json()["detail"]


def test_session_writes_need_csrf(team):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="pw-Secret-123")
    assert client.get(reverse("dataset-list")).status_code == 200  # reads need no token
    response = client.post(reverse("dataset-list"), {"name": "Forged"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    response = client.put(
        reverse("image-annotation", kwargs={"image_id": team.images[0].pk}), {"class": team.cat.pk}, format="json"
    )
    assert response.status_code == 403
    assert not Annotation.objects.filter(label_class__isnull=False).exists()
    # With the token from the cookie, as the pages send it, the write goes through.
    client.get("/accounts/login/")
    csrf = client.cookies["csrftoken"].value
    response = client.post(reverse("dataset-list"), {"name": "Real"}, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201


# --- datasets ------------------------------------------------------------------------------------


def test_create_dataset_makes_creator_admin_and_lists_counts(team, client_for, make_user):
    carol = make_user("carol")
    client = client_for(carol)
    response = client.post(reverse("dataset-list"), {"name": "  Birds  ", "description": "<b>x</b>"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Birds" and body["role"] == "admin" and body["image_count"] == 0
    assert Membership.objects.get(dataset_id=body["id"], user=carol).role == "admin"
    listed = client_for(team.admin).get(reverse("dataset-list")).json()
    assert listed["count"] == 1
    (digits,) = listed["results"]
    assert digits["image_count"] == 4 and digits["labeled_count"] == 0 and digits["role"] == "admin"


@pytest.mark.parametrize("body", [{"name": ""}, {"name": "   "}, {"name": "x" * 201}, {}, {"name": ["a"]}])
def test_create_dataset_invalid(team, client_for, body):
    response = client_for(team.admin).post(reverse("dataset-list"), body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_patch_and_delete_dataset(team, client_for):
    client = client_for(team.admin)
    url = reverse("dataset-detail", kwargs={"dataset_id": team.dataset.pk})
    response = client.patch(url, {"description": "handwritten"}, format="json")
    assert response.status_code == 200 and response.json()["description"] == "handwritten"
    Annotation.objects.create(image=team.images[0], dataset=team.dataset, label_class=team.cat, version=1)
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    # The other team's data is untouched.
    assert LabelClass.objects.filter(dataset=team.other).count() == 1


def test_malformed_json_is_400(team, client_for):
    response = client_for(team.admin).generic(
        "POST", reverse("dataset-list"), "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["detail"]


def test_page_size_is_capped(team, client_for):
    LabelClass.objects.bulk_create(LabelClass(dataset=team.dataset, name=f"c{i}") for i in range(520))
    client = client_for(team.annotator)
    url = reverse("class-list", kwargs={"dataset_id": team.dataset.pk})
    body = client.get(url + "?page_size=500").json()
    assert body["count"] == 523 and len(body["results"]) == 500 and body["next"]
    assert len(client.get(url).json()["results"]) == 50
    assert client.get(url + "?page_size=100000").status_code == 400  # refused, not silently capped
    assert client.get(url + "?page=99").status_code == 404


# --- members ----------------------------------------------------------------------------------------


def test_members_add_change_remove(team, client_for, make_user):
    bob = make_user("bob")
    client = client_for(team.admin)
    url = reverse("member-list", kwargs={"dataset_id": team.dataset.pk})
    response = client.post(url, {"username": "bob", "role": "reviewer"}, format="json")
    assert response.status_code == 201
    assert response.json()["user_id"] == bob.pk and response.json()["role"] == "reviewer"
    assert client.post(url, {"username": "bob", "role": "annotator"}, format="json").status_code == 409
    assert client.post(url, {"username": "ghost", "role": "annotator"}, format="json").status_code == 400
    assert client.post(url, {"username": "bob", "role": "owner"}, format="json").status_code == 400
    detail = reverse("member-detail", kwargs={"dataset_id": team.dataset.pk, "user_id": bob.pk})
    assert client.patch(detail, {"role": "annotator"}, format="json").json()["role"] == "annotator"
    assert client.delete(detail).status_code == 204
    assert client.delete(detail).status_code == 404
    # A user of another dataset cannot be reached through this one.
    other = reverse("member-detail", kwargs={"dataset_id": team.dataset.pk, "user_id": team.outsider.pk})
    assert client.patch(other, {"role": "admin"}, format="json").status_code == 404
    assert Membership.objects.get(dataset=team.other, user=team.outsider).role == "admin"


def test_last_admin_cannot_leave_or_be_demoted(team, client_for):
    client = client_for(team.admin)
    detail = reverse("member-detail", kwargs={"dataset_id": team.dataset.pk, "user_id": team.admin.pk})
    assert client.delete(detail).status_code == 409
    assert client.patch(detail, {"role": "annotator"}, format="json").status_code == 409
    promote = reverse("member-detail", kwargs={"dataset_id": team.dataset.pk, "user_id": team.reviewer.pk})
    assert client.patch(promote, {"role": "admin"}, format="json").status_code == 200
    assert client.patch(detail, {"role": "annotator"}, format="json").status_code == 200


# --- classes ---------------------------------------------------------------------------------------------


def test_class_create_and_validation(team, client_for):
    client = client_for(team.admin)
    url = reverse("class-list", kwargs={"dataset_id": team.dataset.pk})
    response = client.post(url, {"name": "  bird ", "color": "#AABBCC", "shortcut": "b"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("name", "color", "shortcut")} == {"name": "bird", "color": "#aabbcc", "shortcut": "b"}
    no_color = client.post(url, {"name": "fish"}, format="json").json()
    assert no_color["color"].startswith("#") and len(no_color["color"]) == 7
    for bad in [
        {"name": "x", "color": "red"},
        {"name": "x", "color": "#12345"},
        {"name": "x", "shortcut": "ab"},
        {"name": "x", "shortcut": " "},
        {"name": "x", "shortcut": "\n"},
        {"name": ""},
        {"name": "BIRD"},
        {"name": "y", "shortcut": "c"},
    ]:
        response = client.post(url, bad, format="json")
        assert response.status_code == 400, bad
        assert response.json()["detail"]


def test_class_patch_and_delete_rules(team, client_for):
    client = client_for(team.admin)
    cat = reverse("class-detail", kwargs={"dataset_id": team.dataset.pk, "class_id": team.cat.pk})
    assert client.patch(cat, {"name": "dog"}, format="json").status_code == 400
    assert client.patch(cat, {"color": "#000000"}, format="json").json()["color"] == "#000000"
    Annotation.objects.create(image=team.images[0], dataset=team.dataset, label_class=team.cat, version=1)
    response = client.delete(cat)
    assert response.status_code == 409
    assert LabelClass.objects.filter(pk=team.cat.pk).exists()
    spare = reverse("class-detail", kwargs={"dataset_id": team.dataset.pk, "class_id": team.spare.pk})
    assert client.delete(spare).status_code == 204
    other = reverse("class-detail", kwargs={"dataset_id": team.dataset.pk, "class_id": team.other_class.pk})
    assert client.get(other).status_code == 404
    assert client.delete(other).status_code == 404
    assert LabelClass.objects.filter(pk=team.other_class.pk).exists()
