"""Starting, cancelling, claiming and reaping runs (services, no worker)."""

import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from core.errors import RunAlreadyActive, ValidationFailed
from embeddings.models import RunStatus, TrainingRun
from embeddings.services import (
    run_params_validate,
    runs_fail_stale,
    training_run_cancel,
    training_run_check_liveness,
    training_run_start,
)
from embeddings.services.runs import STALE_REASON, run_claim

# The factories sit beside the tests; importable whether or not tests/ is a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import FAST_PARAMS, add_kind_images  # noqa: E402

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(make_user, make_dataset):
    admin = make_user("owner")
    ds = make_dataset("Kinds", admin=admin)
    add_kind_images(ds, per_kind=4)
    return ds


def test_params_are_normalized_with_defaults():
    clean = run_params_validate({"epochs": "5", "layout_method": "UMAP", "n_clusters": None})
    assert clean["epochs"] == 5 and clean["layout_method"] == "umap" and clean["n_clusters"] is None
    from embeddings.ml.config import TrainConfig

    assert clean["code_size"] == TrainConfig().code_size and clean["seed"] == 0


@pytest.mark.parametrize(
    "images, trained_on, tsne_on, clustered_on",
    [
        (10_000, 20_000, None, None),
        (70_000, 20_000, 30_000, None),  # all 70,000 clustered: a sample clusters worse (bench/quality.py)
        (250_000, 20_000, 30_000, 100_000),
    ],
)
def test_large_datasets_train_and_lay_out_on_samples_but_cluster_all_up_to_100k(
    images, trained_on, tsne_on, clustered_on
):
    from embeddings.ml.config import recommended_configs
    from embeddings.services.params import cluster_config, layout_config, train_config

    params = run_params_validate({})
    assert train_config(params, input_size=28, channels=1).max_train_images == trained_on
    assert layout_config(params, image_count=images).max_points == tsne_on
    assert cluster_config(params, image_count=images).max_points == clustered_on
    train, layout, cluster = recommended_configs(images)
    assert (train.max_train_images, layout.max_points, cluster.max_points) == (trained_on, tsne_on, clustered_on)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"layout_method": "pca"}, "layout_method"),
        ({"channels": 2}, "channels"),
        ({"code_size": 10_000}, "code_size"),
        ({"learning_rate": float("nan")}, "learning_rate"),
    ],
)
def test_bad_params_are_refused(params, field):
    with pytest.raises(ValidationFailed) as err:
        run_params_validate(params)
    assert err.value.details.get("field") == field


def test_unknown_params_are_refused():
    with pytest.raises(ValidationFailed, match="unknown parameter"):
        run_params_validate({"epochs": 2, "rm_rf": 1})


def test_start_queues_one_run_and_a_second_start_conflicts(dataset):
    user = dataset.created_by
    run = training_run_start(dataset=dataset, user=user, params={"epochs": 2})
    assert run.status == RunStatus.QUEUED and run.params["epochs"] == 2 and run.image_count == 12
    assert run.celery_task_id
    with pytest.raises(RunAlreadyActive) as err:
        training_run_start(dataset=dataset, user=user, params={})
    assert err.value.details["run_id"] == run.pk
    assert TrainingRun.objects.filter(dataset=dataset).count() == 1


def test_start_needs_enough_images(make_user, make_dataset):
    ds = make_dataset("Tiny", admin=make_user())
    add_kind_images(ds, per_kind=1)
    with pytest.raises(ValidationFailed, match="at least"):
        training_run_start(dataset=ds, user=None, params={})
    assert not TrainingRun.objects.filter(dataset=ds).exists()


def test_start_refuses_more_clusters_than_images(dataset):
    with pytest.raises(ValidationFailed) as err:
        training_run_start(dataset=dataset, user=None, params={"n_clusters": 13})
    assert err.value.details["field"] == "n_clusters"


def test_cancel_of_a_queued_run_is_immediate_and_frees_the_dataset(dataset):
    run = training_run_start(dataset=dataset, user=None, params=FAST_PARAMS)
    run = training_run_cancel(run=run, user=None)
    assert run.status == RunStatus.CANCELLED and run.finished_at is not None
    # the claim of a cancelled run's message does nothing
    assert run_claim(run_id=run.pk, worker_name="w") is None
    assert training_run_start(dataset=dataset, user=None, params={}).status == RunStatus.QUEUED


def test_cancel_of_a_running_run_asks_the_worker(dataset):
    run = training_run_start(dataset=dataset, user=None, params={})
    assert run_claim(run_id=run.pk, worker_name="w") is not None
    run = training_run_cancel(run=run, user=None)
    assert run.status == RunStatus.RUNNING and run.cancel_requested


def test_claim_is_exclusive_and_a_stale_run_is_retried_once(dataset, settings):
    settings.SIMLABEL_RUN_HEARTBEAT_TIMEOUT = 60
    run = training_run_start(dataset=dataset, user=None, params={})
    first = run_claim(run_id=run.pk, worker_name="a")
    assert first.status == RunStatus.RUNNING and first.attempts == 1 and first.worker == "a"
    assert run_claim(run_id=run.pk, worker_name="b") is None  # redelivered while alive
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    second = run_claim(run_id=run.pk, worker_name="b")  # its worker died: retried
    assert second.attempts == 2 and second.worker == "b"
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    assert run_claim(run_id=run.pk, worker_name="c") is None  # only once


def test_runs_without_heartbeat_are_failed_with_a_reason(dataset, make_dataset, settings):
    settings.SIMLABEL_RUN_HEARTBEAT_TIMEOUT = 30
    run = training_run_start(dataset=dataset, user=None, params={})
    run_claim(run_id=run.pk, worker_name="w")
    other = make_dataset("Other")
    fresh = TrainingRun.objects.create(dataset=other, status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    assert runs_fail_stale() == 0
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=31))
    run.refresh_from_db()
    run = training_run_check_liveness(run=run)
    assert run.status == RunStatus.FAILED and STALE_REASON in run.error and run.finished_at
    fresh.refresh_from_db()
    assert fresh.status == RunStatus.RUNNING


def test_a_dead_run_does_not_block_a_new_start(dataset, settings):
    settings.SIMLABEL_RUN_HEARTBEAT_TIMEOUT = 30
    run = training_run_start(dataset=dataset, user=None, params={})
    run_claim(run_id=run.pk, worker_name="w")
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=300))
    again = training_run_start(dataset=dataset, user=None, params={})
    assert again.status == RunStatus.QUEUED
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED


def test_start_run_command_queues_a_run(dataset):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    call_command("start_run", dataset.name, "--epochs", "2", "--param", "code_size=6", stdout=out)
    run = TrainingRun.objects.get(dataset=dataset)
    assert f"run {run.pk} queued" in out.getvalue()
    assert run.params["epochs"] == 2 and run.params["code_size"] == 6
    with pytest.raises(CommandError, match="already"):
        call_command("start_run", str(dataset.pk), stdout=StringIO())
    with pytest.raises(CommandError, match="no dataset"):
        call_command("start_run", "nope", stdout=StringIO())


def test_fail_stale_runs_command(dataset, settings):
    from io import StringIO

    from django.core.management import call_command

    settings.SIMLABEL_RUN_HEARTBEAT_TIMEOUT = 30
    run = training_run_start(dataset=dataset, user=None, params={})
    run_claim(run_id=run.pk, worker_name="w")
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    out = StringIO()
    call_command("fail_stale_runs", stdout=out)
    assert "1 stale run(s)" in out.getvalue()
