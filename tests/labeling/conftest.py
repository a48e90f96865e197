"""Fixtures for the labeling tests: a fresh cache for each, and for the ingest tests (file builders in
ingest_files.py) uploads and a media root of their own."""

import pytest
from django.core.cache import cache
from ingest_files import upload


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Suggestions, the map and the auth throttle's counts live in the cache; tests must not share them.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def uploads():
    return upload


@pytest.fixture
def fresh_media(settings, tmp_path):
    """A media root of this test's own, so storage listings compare exactly with rows."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def admin_dataset(fresh_media, make_user, make_dataset):
    admin = make_user("ingest-admin")
    return make_dataset("Ingest", admin=admin), admin
