import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def test_browser_login_is_throttled_after_repeated_failures(client, make_user, settings):
    settings.SIMLABEL_LOGIN_FAILURE_LIMIT = 3
    make_user("alice", password="right-Password-1")
    for _ in range(3):
        response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 200  # the form again, with an error
    blocked = client.post("/accounts/login/", {"username": "alice", "password": "right-Password-1"})
    assert blocked.status_code == 429
    assert "Too many sign-in attempts" in blocked.content.decode()
    assert "_auth_user_id" not in client.session


def test_successful_login_below_the_limit(client, make_user, settings):
    settings.SIMLABEL_LOGIN_FAILURE_LIMIT = 3
    make_user("bob", password="right-Password-1")
    client.post("/accounts/login/", {"username": "bob", "password": "wrong"})
    response = client.post("/accounts/login/", {"username": "bob", "password": "right-Password-1"})
    assert response.status_code == 302
    assert client.session["_auth_user_id"]


def test_throttle_counts_per_username_across_addresses(client, make_user, settings):
    settings.SIMLABEL_LOGIN_FAILURE_LIMIT = 2
    make_user("carol", password="right-Password-1")
    for address in ("10.0.0.1", "10.0.0.2"):
        client.post("/accounts/login/", {"username": "carol", "password": "x"}, REMOTE_ADDR=address)
    response = client.post("/accounts/login/", {"username": "carol", "password": "right-Password-1"},
                           REMOTE_ADDR="10.0.0.3")
    assert response.status_code == 429
