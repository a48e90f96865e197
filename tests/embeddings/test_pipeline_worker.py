"""Runs through a real Celery worker: success, placement, redelivery, cancel,
failure, a SIGKILLed worker, chunked embedding across two workers, a broker
that cannot be reached, and Redis stopped and restarted under a running app."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from embeddings import selectors
from embeddings.models import ImageEmbedding, RunStage, RunStatus, TrainingRun
from embeddings.services import (
    images_place_on_current_map,
    training_run_cancel,
    training_run_check_liveness,
    training_run_start,
)
from embeddings.services.runs import STALE_REASON

# The factories sit beside the tests; importable whether or not tests/ is a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import FAST_PARAMS, add_kind_images  # noqa: E402

from tests.embeddings.worker_runs import assert_codes_as_one_process  # noqa: E402
from tests.private_redis import free_port, run_through_an_outage, start_redis  # noqa: E402

pytestmark = [pytest.mark.worker, pytest.mark.slow]

PARAMS = {**FAST_PARAMS, "tsne_iterations": 60}
LONG_TRAINING = {**PARAMS, "epochs": 1000}


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_row(run_id):
    return TrainingRun.objects.get(pk=run_id)


def wait_for_status(run_id, statuses, timeout=180):
    return wait_until(lambda: (r := run_row(run_id)).status in statuses and r, timeout, f"run in {statuses}")


@pytest.fixture
def dataset(transactional_db, make_user, make_dataset):
    admin = make_user("owner")
    ds = make_dataset("Kinds", admin=admin)
    add_kind_images(ds, per_kind=20)
    return ds


def test_run_through_a_worker_then_new_images_are_placed(dataset, celery_worker_process):
    run = training_run_start(dataset=dataset, user=dataset.created_by, params=PARAMS)
    seen = set()

    def finished():
        row = run_row(run.pk)
        seen.add((row.status, row.stage))
        return row.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) and row

    run = wait_until(finished, 180, "the run to finish")
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (RunStatus.QUEUED, RunStage.PREPARING) in seen or (RunStatus.RUNNING, RunStage.PREPARING) in seen
    assert ImageEmbedding.objects.filter(run=run).count() == 60
    points = selectors.dataset_map_points(dataset)
    assert points["run"] == run.pk and len(points["x"]) == 60 and set(points["cluster"]) == {0, 1, 2}

    # the same message delivered again (redelivery, or a double publish) executes nothing
    from embeddings.tasks import run_pipeline

    run_pipeline.apply_async(args=[run.pk])
    celery_worker_process.wait_for("skipped", timeout=60)
    assert run_row(run.pk).attempts == 1 and ImageEmbedding.objects.filter(run=run).count() == 60

    new = add_kind_images(dataset, per_kind=2, start_seed=900)
    assert images_place_on_current_map(dataset=dataset, image_ids=list(new)) == run
    wait_until(lambda: run_row(run.pk).placed_count == 6, 60, "new images to be placed")
    placed = ImageEmbedding.objects.filter(run=run, image_id__in=list(new))
    assert placed.count() == 6 and all(p.placed_after_run for p in placed)
    assert selectors.dataset_map_points(dataset)["count"] == 66


def test_cancel_stops_a_running_run_and_a_broken_dataset_fails(dataset, celery_worker_process, make_dataset):
    run = training_run_start(dataset=dataset, user=None, params=LONG_TRAINING)
    wait_until(lambda: (r := run_row(run.pk)).stage == RunStage.TRAINING and r.progress > 0.1, 120, "training")
    asked = time.monotonic()
    training_run_cancel(run=run_row(run.pk), user=None)
    run = wait_for_status(run.pk, {RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.SUCCEEDED}, timeout=30)
    assert run.status == RunStatus.CANCELLED and time.monotonic() - asked < 15
    assert run.loss_curve and not ImageEmbedding.objects.filter(run=run).exists()

    broken = make_dataset("Broken")
    add_kind_images(broken, per_kind=4)
    for image in broken.images.all():
        default_storage.delete(image.file.name)
        default_storage.save(image.file.name, ContentFile(b"\x89PNG\r\n\x1a\n truncated"))
    failed = training_run_start(dataset=broken, user=None, params=PARAMS)
    failed = wait_for_status(failed.pk, {RunStatus.FAILED, RunStatus.SUCCEEDED}, timeout=120)
    assert failed.status == RunStatus.FAILED and "could not be read" in failed.error


def test_a_killed_worker_leaves_a_failed_run_not_a_running_one(dataset, worker_factory, settings):
    settings.SIMLABEL_RUN_HEARTBEAT_TIMEOUT = 3
    worker = worker_factory()
    worker.env["SIMLABEL_RUN_HEARTBEAT_TIMEOUT"] = "3"
    worker.start()
    run = training_run_start(dataset=dataset, user=None, params=LONG_TRAINING)
    wait_until(lambda: run_row(run.pk).stage == RunStage.TRAINING, 120, "training")
    worker.kill()
    killed = time.monotonic()
    # what a status poll does: the liveness check fails the run once heartbeats stop
    status = wait_until(
        lambda: (
            (s := selectors.run_status(training_run_check_liveness(run=run_row(run.pk))))["status"] != RunStatus.RUNNING
            and s
        ),
        30,
        "reaping",
    )
    assert status["status"] == RunStatus.FAILED and STALE_REASON in status["error"]
    assert time.monotonic() - killed < 15


def test_chunked_embedding_across_two_workers_equals_one_worker(dataset, worker_factory):
    for _ in range(2):
        worker = worker_factory()
        worker.env.update({"SIMLABEL_EMBED_CHUNK_SIZE": "8", "SIMLABEL_EMBED_PARALLEL_MIN_IMAGES": "1"})
        worker.start()
    run = training_run_start(dataset=dataset, user=None, params=PARAMS)
    run = wait_for_status(run.pk, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=180)
    assert run.status == RunStatus.SUCCEEDED, run.error
    chunks = run.metrics["embedding_chunks"]
    assert chunks["count"] == 8 and chunks["helpers_asked"]

    assert_codes_as_one_process(run, dataset)


BROKER_DOWN_SCRIPT = r"""
import time, django
django.setup()
from labeling.models import Dataset, Image, LabelClass, Annotation
from embeddings.models import TrainingRun
from embeddings.services import training_run_start
from core.errors import ServiceUnavailable
dataset = Dataset.objects.get(pk=DATASET_ID)
started = time.monotonic()
try:
    training_run_start(dataset=dataset, user=None, params={})
    print("RESULT started")
except ServiceUnavailable as exc:
    run = TrainingRun.objects.get(dataset=dataset)
    print("RESULT unavailable", round(time.monotonic() - started, 1), exc.status_code, run.status, "|", run.error[:80])
# labeling needs no broker
image = Image.objects.filter(dataset=dataset).first()
cls = LabelClass.objects.create(dataset=dataset, name="kind")
from labeling.services.annotations import annotation_set
annotation_set(image=image, label_class=cls, user=None)
print("LABELED", Annotation.objects.get(image=image).label_class_id == cls.pk)
"""


def test_an_unreachable_broker_gives_a_clear_error_quickly_and_labeling_works(dataset, worker_factory):
    env = dict(worker_factory().env)  # the test database, as a worker would see it (not started)
    env["CELERY_BROKER_URL"] = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    script = BROKER_DOWN_SCRIPT.replace("DATASET_ID", str(dataset.pk))
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    out = done.stdout + done.stderr
    result = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
    assert result[1] == "unavailable", out
    assert float(result[2]) < 10 and result[3] == "503" and result[4] == RunStatus.FAILED
    assert "could not reach the task queue" in out
    assert "LABELED True" in out


# The web app's side of a Redis outage, in its own process so its broker is a
# private redis-server the test can stop and start: the steps wait for the
# test's go-ahead on stdin and print what the browser and API clients got.
REDIS_OUTAGE_SCRIPT = r"""
import sys, time, django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from embeddings.models import TrainingRun
from labeling.models import Dataset, Image, LabelClass, Membership

dataset = Dataset.objects.get(pk=DATASET_ID)
user = get_user_model().objects.create_user("outage-admin", password="x-Outage-123")
Membership.objects.create(dataset=dataset, user=user, role="admin")
cls = LabelClass.objects.create(dataset=dataset, name="kind")
images = list(Image.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True))
client = Client()
client.force_login(user)

def step(name):
    print("READY", name, flush=True)
    assert sys.stdin.readline().strip() == "go"

def report(label):
    pages = [client.get(url).status_code for url in (f"/datasets/{dataset.pk}/", f"/datasets/{dataset.pk}/clusters/",
                                                       f"/datasets/{dataset.pk}/review/", f"/images/{images[0]}/")]
    label_one = client.put(f"/api/images/{images[1]}/annotation/", {"class": cls.pk}, content_type="application/json")
    bulk = client.post(f"/api/datasets/{dataset.pk}/annotations/bulk/", {"class": cls.pk, "image_ids": images[2:12]},
                       content_type="application/json")
    started = time.monotonic()
    run = client.post(f"/api/datasets/{dataset.pk}/runs/", {"epochs": 1}, content_type="application/json")
    seconds = time.monotonic() - started
    body = run.json()
    print("RESULT", label, *pages, label_one.status_code, bulk.status_code, run.status_code, round(seconds, 1),
          "|", body.get("detail", body.get("status", "")), flush=True)
    latest = TrainingRun.objects.filter(dataset=dataset).order_by("-id").first()
    if latest is not None and latest.status == "queued":  # free the dataset for the next step
        client.post(f"/api/runs/{latest.pk}/cancel/")

step("up")
report("up")
step("down")
report("down")
step("back")
report("back")
"""


def test_redis_stopped_while_the_app_runs_then_back(dataset, worker_factory):
    port = free_port()
    redis = start_redis(port)
    env = dict(worker_factory().env)  # the test database, as a worker would see it (not started)
    env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    script = REDIS_OUTAGE_SCRIPT.replace("DATASET_ID", str(dataset.pk))
    up, down, back, out = run_through_an_outage(script, env, Path(__file__).resolve().parents[2], port, redis)
    # [RESULT, label, 4 pages, label one, bulk, run start, seconds, |, detail...]
    assert up[2:9] == ["200", "200", "200", "200", "200", "200", "202"], out
    # Pages and labeling keep working; starting a run is a clear 503, quickly.
    assert down[2:9] == ["200", "200", "200", "200", "200", "200", "503"], out
    assert float(down[9]) < 10 and "task queue" in out, out
    # With Redis back, runs start again.
    assert back[2:9] == ["200", "200", "200", "200", "200", "200", "202"], out
    statuses = list(TrainingRun.objects.filter(dataset=dataset).order_by("id").values_list("status", flat=True))
    assert statuses == [RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.CANCELLED], statuses
