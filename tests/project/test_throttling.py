import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient


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


def test_a_strangers_failures_do_not_lock_the_user_out(client, make_user, settings):
    settings.SIMLABEL_LOGIN_FAILURE_LIMIT = 3
    make_user("carol", password="right-Password-1")
    stranger = Client()
    for _ in range(12):
        stranger.post("/accounts/login/", {"username": "carol", "password": "guess"}, REMOTE_ADDR="198.51.100.7")
    # The stranger is stopped ...
    assert (
        stranger.post(
            "/accounts/login/", {"username": "carol", "password": "right-Password-1"}, REMOTE_ADDR="198.51.100.7"
        ).status_code
        == 429
    )
    # ... carol, from her own address, is not.
    response = client.post(
        "/accounts/login/", {"username": "carol", "password": "right-Password-1"}, REMOTE_ADDR="203.0.113.20"
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"]


def test_guessing_one_user_from_many_addresses_stops_at_the_user_limit_but_not_where_she_signs_in(make_user, settings):
    settings.SIMLABEL_LOGIN_FAILURE_LIMIT = 3
    settings.SIMLABEL_LOGIN_USER_FAILURE_LIMIT = 5
    make_user("dana", password="right-Password-1")
    home = "203.0.113.20"
    assert (
        Client()
        .post("/accounts/login/", {"username": "dana", "password": "right-Password-1"}, REMOTE_ADDR=home)
        .status_code
        == 302
    )
    for n in range(5):  # a botnet: each address stays under its own limit
        Client().post("/accounts/login/", {"username": "dana", "password": f"guess{n}"}, REMOTE_ADDR=f"198.51.100.{n}")
    # A sixth address is refused even with the right password: the guessers learn nothing more.
    assert (
        Client()
        .post("/accounts/login/", {"username": "dana", "password": "right-Password-1"}, REMOTE_ADDR="198.51.100.99")
        .status_code
        == 429
    )
    # Dana signs in from where she signed in before.
    assert (
        Client()
        .post("/accounts/login/", {"username": "dana", "password": "right-Password-1"}, REMOTE_ADDR=home)
        .status_code
        == 302
    )


def test_per_address_limit_stops_a_guesser_spraying_usernames(make_user, settings):
    settings.SIMLABEL_LOGIN_ADDRESS_FAILURE_LIMIT = 5
    make_user("erin", password="right-Password-1")
    guesser = Client()
    statuses = [
        guesser.post(
            "/accounts/login/", {"username": f"user{n}", "password": "Summer2024!"}, REMOTE_ADDR="198.51.100.7"
        ).status_code
        for n in range(8)
    ]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3
    assert (
        guesser.post(
            "/accounts/login/", {"username": "erin", "password": "right-Password-1"}, REMOTE_ADDR="198.51.100.7"
        ).status_code
        == 429
    )
    assert (
        Client()
        .post("/accounts/login/", {"username": "erin", "password": "right-Password-1"}, REMOTE_ADDR="203.0.113.20")
        .status_code
        == 302
    )


def _attempt(path, username, password, **extra):
    if path == "/api/auth/token/":
        return APIClient().post(path, {"username": username, "password": password}, format="json", **extra)
    return Client().post(path, {"username": username, "password": password}, **extra)


LOGIN_PATHS = ["/accounts/login/", "/admin/login/", "/api/auth/token/"]


@pytest.mark.parametrize("path", LOGIN_PATHS)
def test_rotating_x_forwarded_for_does_not_bypass_the_throttle(path, make_user, settings):
    settings.SIMLABEL_LOGIN_FAILURE_LIMIT = 5
    make_user("frank", password="right-Password-1", is_staff=True)
    statuses = [
        _attempt(path, "frank", "guess", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=f"10.9.{n}.1").status_code
        for n in range(30)
    ]
    assert statuses[0] in (200, 400) and statuses[-1] == 429, statuses
    assert statuses.count(429) == 25
    response = _attempt(path, "frank", "right-Password-1", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="10.9.99.1")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("path", LOGIN_PATHS)
def test_behind_our_proxy_each_client_address_is_counted_on_its_own(path, make_user, settings):
    settings.SIMLABEL_NUM_PROXIES = 1
    settings.SIMLABEL_LOGIN_FAILURE_LIMIT = 3
    settings.SIMLABEL_LOGIN_ADDRESS_FAILURE_LIMIT = 3
    make_user("gina", password="right-Password-1", is_staff=True)
    proxy = "172.18.0.5"  # every request reaches the app from the proxy
    for n in range(6):  # the guesser also writes a header of their own; the proxy appends the real address
        _attempt(path, "gina", "guess", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"10.9.{n}.1, 198.51.100.7")
    assert (
        _attempt(
            path, "gina", "right-Password-1", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="10.9.99.1, 198.51.100.7"
        ).status_code
        == 429
    )
    assert _attempt(
        path, "gina", "right-Password-1", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.20"
    ).status_code in (200, 302)


def test_admin_login_is_throttled(make_user, settings):
    settings.SIMLABEL_LOGIN_FAILURE_LIMIT = 3
    make_user("hank", password="right-Password-1", is_staff=True, is_superuser=True)
    client = Client()
    statuses = [
        client.post("/admin/login/", {"username": "hank", "password": "guess", "next": "/admin/"}).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    blocked = client.post("/admin/login/", {"username": "hank", "password": "right-Password-1", "next": "/admin/"})
    assert blocked.status_code == 429
    assert "_auth_user_id" not in client.session
    # The admin's own form still works from an address that is not guessing.
    other = Client()
    response = other.post(
        "/admin/login/",
        {"username": "hank", "password": "right-Password-1", "next": "/admin/"},
        REMOTE_ADDR="203.0.113.20",
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert other.get("/admin/").status_code == 200


@pytest.mark.parametrize("path", ["/accounts/login/", "/api/auth/token/"])
@pytest.mark.parametrize("spelling", ["\uff56\uff49\uff43\uff54\uff49\uff4d", "VICTIM", "Victim"])
def test_look_alike_usernames_share_the_throttle(path, spelling, make_user, settings):
    settings.SIMLABEL_LOGIN_FAILURE_LIMIT = 3
    settings.SIMLABEL_LOGIN_USER_FAILURE_LIMIT = 3
    make_user("victim", password="right-Password-1")
    for n in range(3):
        _attempt(path, "victim", "guess", REMOTE_ADDR=f"198.51.100.{n}")
    # The fullwidth spelling signs in as "victim" on the form; it must count as "victim" too.
    response = _attempt(path, spelling, "right-Password-1", REMOTE_ADDR="198.51.100.50")
    assert response.status_code == 429
    # From one address, case and width variants share one count as well.
    settings.SIMLABEL_LOGIN_USER_FAILURE_LIMIT = 100
    for name in ("victim", spelling, "victim"):
        _attempt(path, name, "guess", REMOTE_ADDR="198.51.100.60")
    assert _attempt(path, spelling, "right-Password-1", REMOTE_ADDR="198.51.100.60").status_code == 429
