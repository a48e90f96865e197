"""Fixtures for the ingest tests; the file builders live in ingest_files.py."""

import pytest
from ingest_files import upload


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
