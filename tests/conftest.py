"""Shared fixtures: users, datasets, image files, and a real Celery worker.

The suite runs on SQLite by default and on PostgreSQL + Redis when
DATABASE_URL / CELERY_BROKER_URL are set (as .ci/run does for its second pass).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parent.parent


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    on_pg = (os.environ.get("DATABASE_URL") or "").startswith("postgres")
    for item in items:
        if "postgres" in item.keywords and not on_pg:
            item.add_marker(skip_pg)


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path_factory):
    settings.MEDIA_ROOT = str(_session_media_root(tmp_path_factory))
    # Password hashing is deliberately slow; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


_MEDIA = {}


def _session_media_root(tmp_path_factory) -> Path:
    # One media root per test session, shared with the worker subprocess.
    if "root" not in _MEDIA:
        _MEDIA["root"] = tmp_path_factory.mktemp("media")
    return _MEDIA["root"]


# --- data: thin fixtures over tests/factories.py ------------------------------------------------
# Factories import the models, so they are imported inside the fixtures: the pure-ML tests
# also run without pytest-django (-p no:django), where no model can be imported.


@pytest.fixture
def make_user(db):
    """make_user(username=None, password=..., **fields): user1, user2, ... unless named."""
    from tests.factories import PASSWORD, UserFactory

    UserFactory.reset_sequence(1)

    def make(username=None, password=PASSWORD, **extra):
        if username is not None:
            extra["username"] = username
        return UserFactory(password=password, **extra)

    return make


@pytest.fixture
def make_dataset(db):
    """make_dataset(name, admin=None, members={user: role}, **fields); the admin also creates it."""
    from tests.factories import DatasetFactory

    def make(name="Digits", admin=None, members=None, **extra):
        return DatasetFactory(name=name, created_by=admin, members=members, **extra)

    return make


@pytest.fixture
def make_png():
    from tests.factories import png_bytes

    return png_bytes


@pytest.fixture
def add_image(db):
    """add_image(dataset, data=None, name=None, user=None, size=(8, 6)): an image stored as
    ingest leaves it; without data, a PNG of `size` whose pixels differ per image."""
    from tests.factories import ImageFactory, png_bytes

    counter = {"n": 0}

    def add(dataset, data=None, name=None, user=None, size=(8, 6)):
        counter["n"] += 1
        if data is None:
            data = png_bytes(size=size, seed=dataset.pk * 100_000 + counter["n"])
        return ImageFactory(
            dataset=dataset, data=data, original_name=name or f"img{counter['n']}.png", uploaded_by=user
        )

    return add


@pytest.fixture
def client_for(db):
    """client_for(user): a DRF APIClient authenticated with the user's token (anonymous for None)."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(user=None):
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def map_of(db):
    """The map builder, tests.factories.build_map: map_of(dataset, blob_sizes=..., ...) or
    map_of(dataset, {image: (x, y, cluster)}, suggestions={image: (class, confidence)})."""
    from tests.factories import build_map

    def build(dataset, positions=None, **options):
        return build_map(dataset, positions=positions, **options)

    return build


# --- a real Celery worker ---------------------------------------------------------------------


def _worker_env() -> dict:
    env = dict(os.environ)
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = (
            f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    else:
        env.pop("DATABASE_URL", None)
        env["SQLITE_PATH"] = str(db["NAME"])
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def subprocess_env(transactional_db):
    """Environment for a child process that must see this test's database and media."""
    return _worker_env()


class WorkerProcess:
    def __init__(self, queues="default,ml", extra_args=(), env=None):
        self.queues = queues
        self.extra_args = list(extra_args)
        self.env = env or _worker_env()
        self.log = tempfile.NamedTemporaryFile(prefix="celery-worker-", suffix=".log", delete=False)
        self.proc = None

    def start(self, wait_ready=True):
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "project",
            "worker",
            "-Q",
            self.queues,
            "--pool=solo",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if wait_ready:
            self.wait_for("ready", timeout=60)
        return self

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.output()[-4000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"worker never printed {text!r}:\n{self.output()[-4000:]}")

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def celery_worker_process(transactional_db):
    """Starts `celery worker` as a real subprocess against the test database.

    Tests that use it must commit their data (transactional_db) so the worker sees it.
    Call .start() is already done; .kill() sends SIGKILL to the whole process group.
    """
    worker = WorkerProcess().start()
    yield worker
    worker.stop()


@pytest.fixture
def worker_factory(transactional_db):
    workers = []

    def make(**kwargs):
        worker = WorkerProcess(**kwargs)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()
