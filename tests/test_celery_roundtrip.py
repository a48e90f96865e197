import pytest
from django.conf import settings

from project.celery import health_check


@pytest.mark.worker
def test_health_check_round_trip_through_a_real_worker(celery_worker_process):
    result = health_check.delay(41)
    assert result.get(timeout=30)["echo"] == 41
    assert "simlabel.health_check" in celery_worker_process.output()


def test_celery_uses_json_only():
    assert settings.CELERY_TASK_SERIALIZER == "json"
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]


@pytest.mark.worker
@pytest.mark.parametrize("queues, loaded", [("default,ml", True), ("default", False)])
def test_ml_workers_load_torch_when_their_pool_starts(worker_factory, queues, loaded):
    # A helper worker that imported torch in its first embedding chunk lost chunks to the coordinator.
    worker = worker_factory(queues=queues, extra_args=["--pool=prefork", "--concurrency=1"]).start()
    assert health_check.delay(1).get(timeout=60)["torch_loaded"] is loaded, worker.output()[-2000:]
