import pytest
from django.conf import settings

from project.celery import health_check


@pytest.mark.worker
def test_health_check_round_trip_through_a_real_worker(celery_worker_process):
    result = health_check.delay(41)
    assert result.get(timeout=30) == {"ok": True, "echo": 41}
    assert "simlabel.health_check" in celery_worker_process.output()


def test_celery_uses_json_only():
    assert settings.CELERY_TASK_SERIALIZER == "json"
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
