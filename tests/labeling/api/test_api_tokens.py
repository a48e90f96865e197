"""API tokens: lifetime, revoking, and revoking on every way a password changes."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.management.commands import changepassword
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

PASSWORD = "pw-Secret-123"
NEW_PASSWORD = "another-Secret-456"


def _token(username="alice", password=PASSWORD, **extra):
    response = APIClient().post(
        "/api/auth/token/", {"username": username, "password": password}, format="json", **extra
    )
    assert response.status_code == 200, response.content
    return response.json()


def _status_with(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/datasets/")


def test_token_says_when_it_expires(team, settings):
    settings.SIMLABEL_TOKEN_TTL_DAYS = 30
    body = _token()
    expires = parse_datetime(body["expires"])
    assert timedelta(days=29, hours=23) < expires - timezone.now() <= timedelta(days=30)
    # Asking again gives the same token while it is valid (one token per user, shared by a user's scripts).
    assert _token()["token"] == body["token"]


def test_an_expired_token_is_a_401_that_says_so(team, settings):
    settings.SIMLABEL_TOKEN_TTL_DAYS = 30
    key = _token()["token"]
    assert _status_with(key).status_code == 200
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(days=30, seconds=1))
    response = _status_with(key)
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert "expired" in response.json()["detail"] and "/api/auth/token/" in response.json()["detail"]
    # Signing in again issues a new token, even with the expired one still in the header.
    fresh = _token(HTTP_AUTHORIZATION=f"Token {key}")["token"]
    assert fresh != key
    assert _status_with(fresh).status_code == 200
    assert _status_with(key).status_code == 401


def test_image_files_refuse_expired_and_revoked_tokens(team, settings):
    settings.SIMLABEL_TOKEN_TTL_DAYS = 30
    key = _token()["token"]
    url = f"/images/{team.images[0].pk}/thumbnail/"
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(days=31))
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
    fresh = _token()["token"]
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {fresh}").status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {fresh}")
    assert client.delete("/api/auth/token/").status_code == 204
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {fresh}").status_code == 401


def test_a_lifetime_of_zero_days_never_expires(team, settings):
    settings.SIMLABEL_TOKEN_TTL_DAYS = 0
    body = _token()
    assert body["expires"] is None
    Token.objects.filter(key=body["token"]).update(created=timezone.now() - timedelta(days=3650))
    assert _status_with(body["token"]).status_code == 200


def test_delete_revokes_the_callers_token(team):
    key = _token()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.delete("/api/auth/token/")
    assert response.status_code == 204
    assert _status_with(key).status_code == 401
    assert client.delete("/api/auth/token/").status_code == 401
    # Other users' tokens are untouched.
    rita = _token("rita")["token"]
    assert _status_with(rita).status_code == 200


def test_delete_needs_credentials(team):
    key = _token()["token"]
    response = APIClient().delete("/api/auth/token/")
    assert response.status_code == 401
    assert response.json()["detail"]
    assert _status_with(key).status_code == 200


def test_delete_from_a_signed_in_browser_needs_csrf_and_revokes(team):
    key = _token()["token"]
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(team.admin)
    assert client.delete("/api/auth/token/").status_code == 403  # no CSRF token
    assert _status_with(key).status_code == 200
    client.get("/datasets/")  # sets the CSRF cookie
    response = client.delete("/api/auth/token/", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert response.status_code == 204
    assert _status_with(key).status_code == 401


def _change_with_set_password(user):
    user.set_password(NEW_PASSWORD)
    user.save()


def _change_on_the_password_page(user):
    client = Client()
    client.force_login(user)
    response = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302, response.content[:2000]


def _change_in_the_admin(user):
    boss = get_user_model().objects.create_superuser("boss", password=PASSWORD)
    client = Client()
    client.force_login(boss)
    response = client.post(
        f"/admin/auth/user/{user.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content[:2000]


def _change_with_the_command(user, monkeypatch):
    monkeypatch.setattr(changepassword.Command, "_get_pass", lambda self, prompt="Password: ": NEW_PASSWORD)
    call_command("changepassword", user.username)


@pytest.mark.parametrize("change", ["set_password", "password page", "admin", "changepassword command"])
def test_a_password_change_revokes_the_token(team, change, monkeypatch):
    key = _token()["token"]
    other = _token("rita")["token"]
    user = get_user_model().objects.get(username="alice")
    if change == "set_password":
        _change_with_set_password(user)
    elif change == "password page":
        _change_on_the_password_page(user)
    elif change == "admin":
        _change_in_the_admin(user)
    else:
        _change_with_the_command(user, monkeypatch)
    assert get_user_model().objects.get(username="alice").check_password(NEW_PASSWORD)
    assert _status_with(key).status_code == 401
    assert _status_with(other).status_code == 200
    # The new password gets a new token.
    assert _status_with(_token(password=NEW_PASSWORD)["token"]).status_code == 200


def test_signing_in_again_keeps_the_token(team):
    key = _token()["token"]
    assert Client().login(username="alice", password=PASSWORD)  # saves last_login, not the password
    assert _status_with(key).status_code == 200
