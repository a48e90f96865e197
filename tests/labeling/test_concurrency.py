"""Concurrent annotators on PostgreSQL: no lost update, stale writes get 409, bulk actions serialize.

Each thread is its own client with its own database connection, against a
committed database (transactional_db), so the row locks and conditional
updates are exercised for real.
"""

import random
import threading
from collections import Counter, defaultdict

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.models import Annotation, AnnotationHistory, LabelClass
from labeling.services.annotations import annotations_apply_bulk
from tests.factories import bulk_images

pytestmark = [pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _images(dataset, n):
    return bulk_images(dataset, n)


def _run_threads(target, n):
    errors = []

    def wrapped(index):
        try:
            target(index)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client hung (deadlock?)"
    if errors:
        raise errors[0]


def test_ten_annotators_on_overlapping_images(transactional_db, make_user, make_dataset):
    admin = make_user("admin")
    users = [make_user(f"annotator{i}") for i in range(10)]
    dataset = make_dataset("Shared", admin=admin, members={u: "annotator" for u in users})
    classes = [LabelClass.objects.create(dataset=dataset, name=f"c{i}").pk for i in range(4)]
    images = [i.pk for i in _images(dataset, 6)]
    tokens = [Token.objects.create(user=u).key for u in users]
    requests_per_client = 12
    outcomes = defaultdict(Counter)  # image -> status -> count
    lock = threading.Lock()

    def annotate(index):
        rng = random.Random(index)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[index]}")
        for _ in range(requests_per_client):
            image_id = rng.choice(images)
            seen = client.get(f"/api/images/{image_id}/").json()
            new_class = rng.choice([c for c in classes if c != seen["class"]])
            response = client.put(
                f"/api/images/{image_id}/annotation/",
                {"class": new_class, "version": seen["annotation_version"]},
                format="json",
            )
            assert response.status_code in (200, 409), response.content
            if response.status_code == 409:
                body = response.json()
                assert body["current_version"] > seen["annotation_version"]
            with lock:
                outcomes[image_id][response.status_code] += 1

    _run_threads(annotate, 10)

    total_ok = sum(c[200] for c in outcomes.values())
    total = sum(sum(c.values()) for c in outcomes.values())
    assert total == 10 * requests_per_client
    assert total_ok >= len(images)  # everyone got some work done
    assert AnnotationHistory.objects.filter(dataset=dataset).count() == total_ok
    for image_id in images:
        annotation = Annotation.objects.filter(image_id=image_id).first()
        history = list(
            AnnotationHistory.objects.filter(image_id=image_id)
            .order_by("id")
            .values_list("old_class_id", "new_class_id", "new_version")
        )
        # Every accepted write is one link of an unbroken chain: none overwrote another.
        assert len(history) == outcomes[image_id][200]
        assert [v for _, _, v in history] == list(range(1, len(history) + 1))
        for (_, previous_new, _), (old, _, _) in zip(history, history[1:]):
            assert old == previous_new
        if history:
            assert annotation.version == len(history) and annotation.label_class_id == history[-1][1]


def test_two_bulk_actions_over_the_same_images_serialize(transactional_db, make_user, make_dataset):
    admin, other = make_user("admin"), make_user("other")
    dataset = make_dataset("Shared", admin=admin, members={other: "annotator"})
    first, second = (LabelClass.objects.create(dataset=dataset, name=n) for n in ("first", "second"))
    ids = [i.pk for i in _images(dataset, 3000)]
    barrier = threading.Barrier(2)
    actions = {}

    def apply(index):
        user, label_class = [(admin, first), (other, second)][index]
        # Opposite input orders: the service sorts, so the locks are taken alike.
        chosen = ids if index == 0 else list(reversed(ids))
        barrier.wait()
        actions[index] = annotations_apply_bulk(dataset=dataset, user=user, label_class=label_class, image_ids=chosen)

    _run_threads(apply, 2)
    assert actions[0].image_count == actions[1].image_count == len(ids)
    later = max(actions.values(), key=lambda a: a.pk)
    assert set(Annotation.objects.filter(dataset=dataset).values_list("label_class_id", flat=True)) == {
        later.label_class_id
    }
    assert set(Annotation.objects.filter(dataset=dataset).values_list("version", flat=True)) == {2}
    # One whole action ran after the other: every image saw them in the same order.
    orders = Counter(
        tuple(AnnotationHistory.objects.filter(image_id=i).order_by("id").values_list("action_id", flat=True))
        for i in ids[::100]
    )
    assert len(orders) == 1 and len(next(iter(orders))) == 2


def test_bulk_of_10000_images_uses_a_bounded_number_of_queries(transactional_db, make_user, make_dataset):
    """Speed is measured in bench/api_speed.py; here: no query per image, all history written."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    admin = make_user("admin")
    dataset = make_dataset("Big", admin=admin)
    cat, dog = (LabelClass.objects.create(dataset=dataset, name=n) for n in ("cat", "dog"))
    ids = [i.pk for i in _images(dataset, 10_000)]
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=ids)
    with CaptureQueriesContext(connection) as queries:
        action = annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=ids)
    assert action.image_count == 10_000
    # SQLite goes through the ORM in chunks; PostgreSQL uses a few array statements.
    assert len(queries) <= 60, len(queries)
    assert AnnotationHistory.objects.filter(action=action).count() == 10_000
    assert set(Annotation.objects.filter(dataset=dataset).values_list("label_class_id", flat=True)) == {dog.pk}


def test_a_bulk_label_and_the_deletion_of_its_dataset_do_not_overlap(transactional_db, make_user, make_dataset):
    """Annotations carry no database constraint on their image: the dataset row's lock keeps a label
    write from leaving rows for images a concurrent dataset deletion removed."""
    from django.db import transaction

    from core.errors import NotFound
    from labeling.models import Dataset
    from labeling.services.datasets import dataset_delete

    admin = make_user("admin")
    dataset = make_dataset("Doomed", admin=admin)
    cat = LabelClass.objects.create(dataset=dataset, name="cat")
    ids = [i.pk for i in _images(dataset, 50)]
    deleting = threading.Event()
    outcome = {}

    def delete(_):
        with transaction.atomic():
            dataset_delete(dataset=Dataset.objects.get(pk=dataset.pk))
            deleting.set()
            threading.Event().wait(1.0)  # the label write arrives while the deletion is uncommitted

    def label(_):
        deleting.wait(30)
        try:
            annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=ids)
            outcome["label"] = "written"
        except NotFound:
            outcome["label"] = "not found"

    def either(index):
        (delete if index == 0 else label)(index)

    _run_threads(either, 2)
    assert outcome["label"] == "not found"
    assert not Annotation.objects.filter(image_id__in=ids).exists()
    assert not AnnotationHistory.objects.filter(image_id__in=ids).exists()
