"""A Redis cache (CACHE_URL, as in docker compose) that stops must not stop sign-in or labeling."""

from pathlib import Path

from tests.private_redis import free_port, run_through_an_outage, start_redis

APP_SCRIPT = r"""
import sys, time
import django
django.setup()
from django.test import Client
from rest_framework.test import APIClient

def browser(address, cls=Client):
    # A server error is reported as its status (500), as a browser would see it.
    return cls(raise_request_exception=False, REMOTE_ADDR=address)

DATASET, IMAGE, CLASS = DATASET_ID, IMAGE_ID, CLASS_ID
PAGES = ["/datasets/", f"/datasets/{DATASET}/", f"/datasets/{DATASET}/map/", f"/datasets/{DATASET}/clusters/",
         f"/datasets/{DATASET}/review/", f"/images/{IMAGE}/"]

def step(name):
    print("READY", name, flush=True)
    assert sys.stdin.readline().strip() == "go"

def report(label, address):
    started = time.monotonic()
    signed_in = browser(address)
    sign_in = signed_in.post("/accounts/login/", {"username": "alice", "password": "pw-Secret-123"})
    pages = [signed_in.get(url).status_code for url in PAGES]
    wrong = browser(address).post("/accounts/login/", {"username": "rita", "password": "wrong"})
    admin = browser(address).post("/admin/login/", {"username": "alice", "password": "pw-Secret-123", "next": "/admin/"})
    token = browser(address, APIClient).post("/api/auth/token/", {"username": "alice", "password": "pw-Secret-123"},
                                             format="json")
    api = browser(address, APIClient)
    api.credentials(HTTP_AUTHORIZATION="Token " + (token.json()["token"] if token.status_code == 200 else "none"))
    labeled = api.put(f"/api/images/{IMAGE}/annotation/", {"class": CLASS}, format="json")
    bulk = api.post(f"/api/datasets/{DATASET}/annotations/bulk/", {"class": None, "image_ids": [IMAGE]}, format="json")
    # The throttle keeps counting (in this process's memory while Redis is down): a guesser is still stopped.
    guesser = browser("198.51.100.7" if label == "down" else "198.51.100.8")
    guesses = [guesser.post("/accounts/login/", {"username": "anna", "password": f"guess{n}"}).status_code
               for n in range(4)]
    print("RESULT", label, sign_in.status_code, *pages, wrong.status_code, admin.status_code, token.status_code,
          labeled.status_code, bulk.status_code, *guesses, round(time.monotonic() - started, 1), flush=True)

step("up")
report("up", "203.0.113.1")
step("down")
report("down", "203.0.113.2")
step("back")
# Redis is asked again only RETRY_AFTER_S after the last failure: wait that out, so the whole "back" phase
# counts in Redis (a phase that straddled the switch would split the guesser's count in two).
from project.resilient_cache import RETRY_AFTER_S
time.sleep(RETRY_AFTER_S + 0.5)
report("back", "203.0.113.3")
"""


def test_sign_in_and_labeling_keep_working_while_the_redis_cache_is_down(subprocess_env, team, settings):
    # The app process hashes with the real settings' hashers, so alice's password must be stored that way.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    team.admin.set_password("pw-Secret-123")
    team.admin.is_staff = True
    team.admin.save()
    port = free_port()
    redis = start_redis(port)
    env = dict(subprocess_env)
    env.update(
        CACHE_URL=f"redis://127.0.0.1:{port}/0",
        DJANGO_SETTINGS_MODULE="project.settings",
        SIMLABEL_LOGIN_FAILURE_LIMIT="3",
        SIMLABEL_NUM_PROXIES="0",
    )
    script = (
        APP_SCRIPT.replace("DATASET_ID", str(team.dataset.pk))
        .replace("IMAGE_ID", str(team.images[0].pk))
        .replace("CLASS_ID", str(team.cat.pk))
    )
    up, down, back, out = run_through_an_outage(script, env, Path(__file__).resolve().parents[3], port, redis)
    # [RESULT, label, sign-in, 6 pages, wrong password, admin sign-in, token, label, bulk, 4 guesses, seconds]
    expected = [
        "302",
        "200",
        "200",
        "200",
        "200",
        "200",
        "200",
        "200",
        "302",
        "200",
        "200",
        "200",
        "200",
        "200",
        "200",
        "429",
    ]
    assert up[2:18] == expected, out
    assert down[2:18] == expected, out
    assert back[2:18] == expected, out
    # An outage costs seconds at most, not a connection timeout per request.
    assert float(down[18]) < 15, out
    assert "shared cache unreachable" in out, out
