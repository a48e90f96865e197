"""A failed run tells members one line of why; the traceback and the worker (host, pid) are for admins.

The run fails for real (its images are unreadable) through the worker's code path.
"""

import sys
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from rest_framework.test import APIClient

from embeddings.models import RunStatus, TrainingRun
from embeddings.services import run_params_validate, training_run_execute

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import FAST_PARAMS, add_kind_images  # noqa: E402

# The run's heartbeat thread writes through its own connection: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "celery@gpu-host-7 pid 4242"


@pytest.fixture
def failed(make_user, make_dataset):
    admin, annotator, reviewer = make_user("alice"), make_user("anna"), make_user("rita")
    dataset = make_dataset("Broken", admin=admin, members={annotator: "annotator", reviewer: "reviewer"})
    add_kind_images(dataset, per_kind=4)
    for image in dataset.images.all():
        default_storage.delete(image.file.name)
        default_storage.save(image.file.name, ContentFile(b"<html>not a png</html>"))
    run = TrainingRun.objects.create(dataset=dataset, params=run_params_validate(FAST_PARAMS))
    assert training_run_execute(run_id=run.pk, worker_name=WORKER) == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    return run, {"admin": admin, "annotator": annotator, "reviewer": reviewer}


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _short(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text and "gpu-host-7" not in text and "4242" not in text


def test_members_see_a_one_line_reason_and_admins_the_detail_through_the_api(failed):
    run, users = failed
    detail_url = reverse("run-detail", kwargs={"run_id": run.pk})
    list_url = reverse("run-list", kwargs={"dataset_id": run.dataset_id})
    for role in ("annotator", "reviewer"):
        client = _api(users[role])
        for body in (client.get(detail_url).json(), client.get(list_url).json()["results"][0]):
            assert body["error"].startswith("ValueError: 12 of 12 images could not be read"), body["error"]
            assert _short(body["error"]), body["error"]
            assert "error_detail" not in body and "worker" not in body
            assert "gpu-host-7" not in str(body)
    client = _api(users["admin"])
    for body in (client.get(detail_url).json(), client.get(list_url).json()["results"][0]):
        assert _short(body["error"])
        assert body["worker"] == WORKER
        assert body["error_detail"].startswith(f"worker: {WORKER}")
        assert "Traceback (most recent call last)" in body["error_detail"]
        assert "12 of 12 images could not be read" in body["error_detail"]


def test_the_runs_page_shows_members_only_the_reason(client, failed):
    run, users = failed
    client.force_login(users["annotator"])
    html = client.get(f"/datasets/{run.dataset_id}/runs/").content.decode()
    assert "12 of 12 images could not be read" in html
    assert "Traceback" not in html and "gpu-host-7" not in html


def test_runs_failed_before_the_detail_existed_show_members_their_first_line(failed):
    run, users = failed
    TrainingRun.objects.filter(pk=run.pk).update(
        error='ValueError: boom\n\nTraceback (most recent call last):\n  File "/srv/app/x.py", line 1', error_detail=""
    )
    member = _api(users["annotator"]).get(reverse("run-detail", kwargs={"run_id": run.pk})).json()
    assert member["error"] == "ValueError: boom" and "error_detail" not in member
    admin = _api(users["admin"]).get(reverse("run-detail", kwargs={"run_id": run.pk})).json()
    assert "/srv/app/x.py" in admin["error_detail"]
