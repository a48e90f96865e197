"""The retrain offer (embeddings.selectors.retrain), its endpoint and pages, the auto_retrain setting, and
auto-retrain (embeddings.services.retrain): counts, roles, and a run started once, not twice."""

import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from embeddings.models import RunStatus, TrainingRun
from embeddings.selectors.retrain import retrain_advice, retrain_new_labels_needed
from embeddings.services.retrain import retrain_schedule_auto, training_run_start_auto
from labeling.models import Dataset
from labeling.services.annotations import annotations_apply_bulk
from tests.factories import bulk_images


@pytest.fixture
def team(make_user, make_dataset):
    admin = make_user("ada")
    reviewer = make_user("rey")
    annotator = make_user("ann")
    outsider = make_user("otto")
    dataset = make_dataset("Pets", admin=admin, members={reviewer: "reviewer", annotator: "annotator"})
    return dataset, admin, reviewer, annotator, outsider


@pytest.fixture
def mapped(team, map_of):
    """120 images in two blobs (cat, dog) on a map whose run learned from labels and started now."""
    dataset = team[0]
    built = map_of(dataset, blob_sizes=(60, 60), metrics={"labels_used": 30})
    TrainingRun.objects.filter(pk=built.run.pk).update(started_at=timezone.now())
    built.run.refresh_from_db()
    return built


def label(dataset, user, cls, image_ids):
    return annotations_apply_bulk(dataset=dataset, user=user, label_class=cls, image_ids=list(image_ids))


def restart_run_now(run):
    time.sleep(0.002)  # labels written before this instant are older than the run
    TrainingRun.objects.filter(pk=run.pk).update(started_at=timezone.now())


# --- the selector ---------------------------------------------------------------------------------


def test_counts_labels_changed_since_the_run_started(team, mapped):
    dataset, admin = team[0], team[1]
    cat, dog = mapped.classes
    cats, dogs = mapped.blobs
    label(dataset, admin, cat, cats[:20])  # before the run: the map learned from these
    label(dataset, admin, dog, dogs[:20])
    restart_run_now(mapped.run)
    label(dataset, admin, cat, cats[20:45])  # 25 new
    label(dataset, admin, dog, dogs[20:45])  # 25 new
    label(dataset, admin, cat, dogs[:3])  # 3 relabeled: changed since, counted once each
    label(dataset, admin, dog, dogs[:3])
    label(dataset, admin, None, cats[:2])  # cleared: no label to learn from, not counted

    advice = retrain_advice(dataset)
    assert advice["last_run_id"] == mapped.run.pk and advice["last_run_used_labels"] is True
    assert advice["labels_since_last_run"] == 53
    assert advice["labels_new_to_map"] == 53
    assert advice["labeled_total"] == 18 + 45 + 20 + 5  # cats 2..44, dogs 0..44
    assert advice["image_count"] == 120
    assert advice["would_use_labels"] is True and "88 labeled images in 2 classes" in advice["labels_reason"]
    assert advice["new_labels_needed"] == 50  # max(50, 5 % of 120)
    assert advice["suggested"] is True
    assert advice["active_run"] is None and advice["auto_retrain"] is False


def test_not_suggested_below_the_floor_or_when_a_run_would_not_use_the_labels(team, mapped):
    dataset, admin = team[0], team[1]
    cat, dog = mapped.classes
    cats, dogs = mapped.blobs
    label(dataset, admin, cat, cats[:49])  # 49 new labels, all one class
    advice = retrain_advice(dataset)
    assert advice["labels_since_last_run"] == 49
    assert (
        advice["would_use_labels"] is False
        and "needs 50 labeled images in 2 or more classes" in (advice["labels_reason"])
    )
    assert advice["suggested"] is False
    label(dataset, admin, dog, dogs[:4])  # a second class, but under 5 labels: still one class counts
    assert retrain_advice(dataset)["would_use_labels"] is False
    label(dataset, admin, dog, dogs[4:5])  # 5 dogs: the labels would be used, and 54 >= 50 are new
    advice = retrain_advice(dataset)
    assert (advice["would_use_labels"], advice["labels_since_last_run"], advice["suggested"]) == (True, 54, True)


def test_a_map_that_did_not_learn_from_labels_has_every_label_new(team, map_of):
    dataset, admin = team[0], team[1]
    built = map_of(dataset, blob_sizes=(40, 40), metrics={"labels_used": 0, "labels_reason": "auto: no labels"})
    cat, dog = built.classes
    label(dataset, admin, cat, built.blobs[0][:30])
    label(dataset, admin, dog, built.blobs[1][:30])
    restart_run_now(built.run)
    advice = retrain_advice(dataset)
    assert advice["labels_since_last_run"] == 0 and advice["last_run_used_labels"] is False
    assert advice["labels_new_to_map"] == 60 and advice["suggested"] is True


def test_without_a_map_nothing_is_suggested(team, make_user):
    dataset = team[0]
    bulk_images(dataset, 12)
    advice = retrain_advice(dataset)
    assert advice["last_run_id"] is None and advice["last_run_used_labels"] is None
    assert (advice["labels_since_last_run"], advice["labeled_total"], advice["suggested"]) == (0, 0, False)


def test_new_labels_needed_grows_with_the_dataset(settings):
    assert [retrain_new_labels_needed(n) for n in (0, 1000, 1001, 20_000)] == [50, 50, 51, 1000]
    settings.SIMLABEL_RETRAIN_MIN_NEW_LABELS = 10
    assert retrain_new_labels_needed(100) == 10


def test_an_active_run_is_reported(team, mapped):
    dataset = team[0]
    active = TrainingRun.objects.create(dataset=dataset, status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    assert retrain_advice(dataset)["active_run"] == {"id": active.pk, "status": "running"}
    assert retrain_advice(dataset)["last_run_id"] == mapped.run.pk


# --- the API --------------------------------------------------------------------------------------


def advice_url(dataset):
    return reverse("dataset-retrain", kwargs={"dataset_id": dataset.pk})


def test_every_member_reads_the_advice_and_only_admins_may_start(team, mapped, client_for):
    dataset, admin, reviewer, annotator, outsider = team
    label(dataset, admin, mapped.classes[0], mapped.blobs[0][:30])
    label(dataset, admin, mapped.classes[1], mapped.blobs[1][:30])
    for user, can_start in ((admin, True), (reviewer, False), (annotator, False)):
        response = client_for(user).get(advice_url(dataset))
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["can_start_run"] is can_start
        assert (body["labels_since_last_run"], body["suggested"], body["last_run_id"]) == (60, True, mapped.run.pk)
    assert client_for(outsider).get(advice_url(dataset)).status_code == 404
    assert client_for(None).get(advice_url(dataset)).status_code == 401
    assert client_for(admin).get(advice_url(dataset) + "?x=1").status_code == 400  # undeclared query parameter


def test_only_admins_toggle_auto_retrain(team, client_for):
    dataset, admin, reviewer, annotator, _ = team
    url = reverse("dataset-detail", kwargs={"dataset_id": dataset.pk})
    assert client_for(annotator).get(url).json()["auto_retrain"] is False
    for user in (reviewer, annotator):
        response = client_for(user).patch(url, {"auto_retrain": True}, format="json")
        assert response.status_code == 403
    assert Dataset.objects.get(pk=dataset.pk).auto_retrain is False
    bad = client_for(admin).patch(url, {"auto_retrain": "sometimes", "name": "Renamed"}, format="json")
    assert bad.status_code == 400 and "auto_retrain" in str(bad.json())
    assert Dataset.objects.values_list("name", "auto_retrain").get(pk=dataset.pk) == ("Pets", False)
    response = client_for(admin).patch(url, {"auto_retrain": True}, format="json")
    assert response.status_code == 200 and response.json()["auto_retrain"] is True
    assert Dataset.objects.get(pk=dataset.pk).auto_retrain is True
    assert client_for(admin).get(advice_url(dataset)).json()["auto_retrain"] is True


def test_the_settings_card_turns_auto_retrain_on_and_off(team, client):
    dataset, admin = team[0], team[1]
    client.force_login(admin)
    page = client.get(reverse("labeling:dataset-detail", args=[dataset.pk])).content.decode()
    assert 'name="auto_retrain"' in page and "Retrain automatically" in page
    edit = reverse("labeling:dataset-edit", args=[dataset.pk])
    client.post(edit, {"name": "Pets", "description": "", "auto_retrain": "on"})
    assert Dataset.objects.get(pk=dataset.pk).auto_retrain is True
    client.post(edit, {"name": "Pets", "description": ""})  # an unticked box is not sent
    assert Dataset.objects.get(pk=dataset.pk).auto_retrain is False


def test_map_and_cluster_pages_carry_the_offer(team, mapped, client):
    dataset, admin, _, annotator, _ = team
    label(dataset, admin, mapped.classes[0], mapped.blobs[0][:30])
    label(dataset, admin, mapped.classes[1], mapped.blobs[1][:30])
    for user, can_start in ((admin, "true"), (annotator, "false")):
        client.force_login(user)
        for name in ("embeddings:dataset-map", "embeddings:dataset-clusters"):
            page = client.get(reverse(name, args=[dataset.pk])).content.decode()
            assert 'id="retrain-offer"' in page and "js/retrain.js" in page
            assert '"labels_since_last_run": 60' in page and f'"can_start_run": {can_start}' in page


# --- auto-retrain ---------------------------------------------------------------------------------


@pytest.fixture
def ready(team, mapped, settings):
    """A dataset with 60 labels new to its map: a retrain is suggested."""
    settings.SIMLABEL_MIN_RUN_IMAGES = 2
    dataset, admin = team[0], team[1]
    label(dataset, admin, mapped.classes[0], mapped.blobs[0][:30])
    label(dataset, admin, mapped.classes[1], mapped.blobs[1][:30])
    return dataset


def test_auto_retrain_starts_one_run_then_waits(ready, settings):
    dataset = ready
    assert retrain_schedule_auto(dataset_id=dataset.pk) is False  # off: nothing is queued
    assert training_run_start_auto(dataset_id=dataset.pk) == "off"
    assert not TrainingRun.objects.filter(started_automatically=True).exists()
    Dataset.objects.filter(pk=dataset.pk).update(auto_retrain=True)
    assert training_run_start_auto(dataset_id=dataset.pk) == "started"
    run = TrainingRun.objects.get(dataset=dataset, started_automatically=True)
    assert run.status == RunStatus.QUEUED and run.created_by is None and run.params["use_labels"] == "auto"
    assert training_run_start_auto(dataset_id=dataset.pk) == "active"  # never two runs at once
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)
    assert training_run_start_auto(dataset_id=dataset.pk) == "too_soon"  # one per SIMLABEL_AUTO_RETRAIN_MIN_MINUTES
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=31))
    assert training_run_start_auto(dataset_id=dataset.pk) == "started"
    assert TrainingRun.objects.filter(dataset=dataset, started_automatically=True).count() == 2


def test_auto_retrain_waits_for_enough_new_labels(team, mapped, settings):
    dataset = team[0]
    Dataset.objects.filter(pk=dataset.pk).update(auto_retrain=True)
    label(dataset, team[1], mapped.classes[0], mapped.blobs[0][:30])
    assert training_run_start_auto(dataset_id=dataset.pk) == "not_suggested"
    assert training_run_start_auto(dataset_id=10**9) == "missing"
    assert TrainingRun.objects.filter(dataset=dataset).count() == 1


def test_the_runs_api_and_page_say_a_run_started_automatically(ready, team, client_for, client):
    dataset, admin = team[0], team[1]
    Dataset.objects.filter(pk=dataset.pk).update(auto_retrain=True)
    assert training_run_start_auto(dataset_id=dataset.pk) == "started"
    runs = client_for(admin).get(reverse("run-list", kwargs={"dataset_id": dataset.pk})).json()["results"]
    assert [r["started_automatically"] for r in runs] == [True, False]
    client.force_login(admin)
    page = client.get(reverse("embeddings:dataset-runs", args=[dataset.pk])).content.decode()
    assert page.count("started automatically") == 1


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.worker
@pytest.mark.slow
def test_labels_changed_queue_one_automatic_run_not_two_and_none_when_off(
    transactional_db, make_user, make_dataset, map_of, client_for, worker_factory, settings
):
    """Through a real worker (queue `default` only, so the run itself stays queued): labels written
    through the API reach dataset_labels_changed after commit, which queues the auto-retrain check."""
    settings.SIMLABEL_MIN_RUN_IMAGES = 2
    admin = make_user("ada")
    on = make_dataset("On", admin=admin, auto_retrain=True)
    off = make_dataset("Off", admin=admin)
    maps = {}
    for dataset in (on, off):
        maps[dataset.pk] = built = map_of(dataset, blob_sizes=(40, 40), metrics={"labels_used": 10})
        TrainingRun.objects.filter(pk=built.run.pk).update(started_at=timezone.now())
    worker = worker_factory(queues="default").start()
    client = client_for(admin)

    def bulk(dataset, cls, ids):
        url = reverse("annotation-bulk", kwargs={"dataset_id": dataset.pk})
        response = client.post(url, {"class": cls.pk, "image_ids": ids}, format="json")
        assert response.status_code == 200, response.content

    for dataset in (on, off):
        built = maps[dataset.pk]
        bulk(dataset, built.classes[0], built.blobs[0][:30])
        bulk(dataset, built.classes[1], built.blobs[1][:30])
    wait_for(lambda: TrainingRun.objects.filter(dataset=on, started_automatically=True).exists(), 60, "the run")
    run = TrainingRun.objects.get(dataset=on, started_automatically=True)
    assert run.status == RunStatus.QUEUED and run.created_by is None
    assert worker.output().count("embeddings.tasks.auto_retrain[") >= 2  # received, succeeded
    # More labels while it is queued: the check runs again and finds the run active.
    built = maps[on.pk]
    time.sleep(4.5)  # past the scheduling window (SCHEDULE_WINDOW_S): this change queues a new check
    bulk(on, built.classes[0], built.blobs[0][30:35])
    wait_for(lambda: "'active'" in worker.output(), 60, "the second check")
    assert TrainingRun.objects.filter(dataset=on).count() == 2  # the map's run and one automatic run
    # The dataset with auto-retrain off had its suggestions recomputed, and no check and no run.
    wait_for(lambda: worker.output().count("recompute_suggestions[") >= 4, 60, "the suggestion recomputes")
    assert TrainingRun.objects.filter(dataset=off).count() == 1
    assert worker.output().count("'started'") == 1
