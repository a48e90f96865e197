"""The review queue: ranking, resolving, who may resolve."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from core.errors import NotFound, PermissionRefused, ValidationFailed
from embeddings.services.suggestions import suggestions_recompute
from labeling.models import Annotation, AnnotationSource, LabelAction, ReviewResolution
from labeling.selectors.review import review_queue_for_dataset
from labeling.services.annotations import annotations_apply_bulk
from labeling.services.review import review_item_resolve
from tests.factories import build_map


@pytest.fixture(autouse=True)
def _fresh_cache(fresh_media):
    # fresh_media: run artifacts (near_duplicates.npy) are this test's own, whatever ids the runs get.
    cache.clear()


@pytest.fixture
def planted(make_user, make_dataset):
    """Three blobs = clusters 0, 1, 2.  Blob 0 is all 'cat' except one image labeled
    'dog' (the planted mistake); blob 1 is all 'dog'; blob 2 is one kind of image
    labeled half 'cat', half 'dog' (the planted mixed cluster)."""
    admin, reviewer, annotator = make_user("admin"), make_user("reviewer"), make_user("annotator")
    dataset = make_dataset(admin=admin, members={reviewer: "reviewer", annotator: "annotator"})
    run, (cat, dog), (blob_a, blob_b, blob_c) = build_map(dataset, blob_sizes=(20, 20, 20))
    mistake = blob_a[7]
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=[i for i in blob_a if i != mistake])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=blob_b + [mistake])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=blob_c[::2])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=blob_c[1::2])
    suggestions_recompute(dataset=dataset)
    return dict(
        dataset=dataset,
        admin=admin,
        reviewer=reviewer,
        annotator=annotator,
        run=run,
        cat=cat,
        dog=dog,
        blobs=(blob_a, blob_b, blob_c),
        mistake=mistake,
    )


def test_planted_mistake_and_mixed_cluster_come_first(planted):
    queue = review_queue_for_dataset(planted["dataset"], limit=10)
    assert {(item["kind"], item["id"]) for item in queue[:2]} == {("image", planted["mistake"]), ("cluster", 2)}, queue
    by_key = {(item["kind"], item["id"]): item for item in queue}
    mistake = by_key[("image", planted["mistake"])]
    assert mistake["suggested_class"] == planted["cat"].pk
    assert mistake["label_class"] == planted["dog"].pk
    assert "labeled 'dog'" in mistake["reason"] and "'cat'" in mistake["reason"]
    mixed = by_key[("cluster", 2)]
    assert "mixed classes" in mixed["reason"]
    assert sorted(mixed["image_ids"]) == sorted(planted["blobs"][2])
    for item in queue:
        assert set(item) >= {"kind", "id", "reason", "score", "image_ids", "suggested_class"}
        assert item["reason"]
    scores = [item["score"] for item in queue]
    assert scores == sorted(scores, reverse=True)
    assert ("cluster", 1) not in by_key  # a clean cluster needs no review
    assert len(review_queue_for_dataset(planted["dataset"], limit=1)) == 1


def test_relabelling_an_image_reviews_it_and_it_leaves_the_queue(planted):
    dataset, reviewer = planted["dataset"], planted["reviewer"]
    result = review_item_resolve(
        dataset=dataset,
        user=reviewer,
        kind="image",
        object_id=planted["mistake"],
        outcome="relabelled",
        label_class=planted["cat"],
    )
    assert result["updated"] == 1 and result["action_id"]
    annotation = Annotation.objects.get(image_id=planted["mistake"])
    assert annotation.label_class_id == planted["cat"].pk
    assert annotation.reviewed_by_id == reviewer.pk and annotation.reviewed_at is not None
    action = LabelAction.objects.get(pk=result["action_id"])
    assert action.source == AnnotationSource.REVIEW and action.user_id == reviewer.pk
    resolution = ReviewResolution.objects.get(pk=result["resolution_id"])
    assert (resolution.kind, resolution.object_id, resolution.outcome) == ("image", planted["mistake"], "relabelled")
    assert resolution.run_id == planted["run"].pk and resolution.resolved_by_id == reviewer.pk
    suggestions_recompute(dataset=dataset)
    keys = {(item["kind"], item["id"]) for item in review_queue_for_dataset(dataset)}
    assert ("image", planted["mistake"]) not in keys
    assert ("cluster", 2) in keys


def test_accepting_the_suggestion_fixes_the_mistake(planted):
    dataset, reviewer = planted["dataset"], planted["reviewer"]
    result = review_item_resolve(
        dataset=dataset, user=reviewer, kind="image", object_id=planted["mistake"], outcome="accepted"
    )
    assert result["updated"] == 1
    annotation = Annotation.objects.get(image_id=planted["mistake"])
    assert annotation.label_class_id == planted["cat"].pk and annotation.reviewed_by_id == reviewer.pk
    assert LabelAction.objects.get(pk=result["action_id"]).source == AnnotationSource.REVIEW


def test_relabelling_a_selection_of_a_cluster(planted):
    dataset, reviewer, blob_c = planted["dataset"], planted["reviewer"], planted["blobs"][2]
    selection = blob_c[1::2]
    before = LabelAction.objects.count()
    result = review_item_resolve(
        dataset=dataset,
        user=reviewer,
        kind="cluster",
        object_id=2,
        outcome="relabelled",
        label_class=planted["cat"].pk,
        image_ids=selection,
    )
    assert LabelAction.objects.count() == before + 1 and result["updated"] == len(selection)
    assert set(Annotation.objects.filter(image_id__in=blob_c).values_list("label_class_id", flat=True)) == {
        planted["cat"].pk
    }
    assert Annotation.objects.filter(image_id__in=selection, reviewed_by=reviewer).count() == len(selection)
    # Relabelled in part: the other half was never checked, so the cluster stays until someone looks at the rest.
    assert ("cluster", 2) in {(i["kind"], i["id"]) for i in review_queue_for_dataset(dataset)}
    review_item_resolve(dataset=dataset, user=reviewer, kind="cluster", object_id=2, outcome="reviewed")
    assert ("cluster", 2) not in {(i["kind"], i["id"]) for i in review_queue_for_dataset(dataset)}


def test_a_cluster_relabelled_in_full_leaves_the_queue(planted):
    dataset, reviewer = planted["dataset"], planted["reviewer"]
    review_item_resolve(
        dataset=dataset, user=reviewer, kind="cluster", object_id=2, outcome="relabelled", label_class=planted["cat"]
    )
    suggestions_recompute(dataset=dataset)
    assert ("cluster", 2) not in {(i["kind"], i["id"]) for i in review_queue_for_dataset(dataset)}


def test_a_lone_stray_left_in_a_relabelled_cluster_comes_back_through_the_api(make_user, make_dataset):
    """Eight dogs hide in a cluster of cats, all labeled 'cat' by labeling the cluster, so their
    neighbors agree with the wrong label.  The reviewer relabels six of them from the cluster's
    item and leaves two for later: the cluster returns, after the items nobody has looked at yet,
    the two among its images, until they are fixed and the cluster marked reviewed."""
    admin, reviewer = make_user("admin"), make_user("reviewer")
    dataset = make_dataset(admin=admin, members={reviewer: "reviewer"})
    _run, (cat, dog), (cats, dogs) = build_map(dataset, blob_sizes=(24, 20))
    hidden_dogs, strays = cats[:6], cats[6:8]
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=cats + dogs[:1])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=dogs[1:])
    # The reviewer's first look at the cluster.
    review_item_resolve(
        dataset=dataset,
        user=admin,
        kind="cluster",
        object_id=0,
        outcome="relabelled",
        label_class=dog,
        image_ids=hidden_dogs,
    )
    client = APIClient()
    client.force_authenticate(reviewer)

    def queue():
        suggestions_recompute(dataset=dataset)
        response = client.get(f"/api/datasets/{dataset.pk}/review/?limit=50")
        assert response.status_code == 200, response.content
        return {(i["kind"], i["id"]): i for i in response.json()}

    def resolve(body):
        response = client.post(
            f"/api/datasets/{dataset.pk}/review/resolve/", {"kind": "cluster", "id": 0, **body}, format="json"
        )
        assert response.status_code == 200, response.content

    items = queue()
    for stray in strays:  # their neighbors say 'cat' as their labels do: no neighbor test flags them
        assert ("image", stray) not in items
        assert stray in items[("cluster", 0)]["image_ids"]
    # Items nobody has looked at (the cat among the dogs, ...) come first, though the cluster scores more.
    assert ("image", dogs[0]) in items and list(items)[-1] == ("cluster", 0), list(items)
    assert items[("cluster", 0)]["score"] > min(item["score"] for item in items.values())
    resolve({"outcome": "relabelled", "class": dog.pk, "image_ids": strays})
    assert set(Annotation.objects.filter(image_id__in=strays).values_list("label_class_id", flat=True)) == {dog.pk}
    assert ("cluster", 0) in queue()  # the cats in it are still unchecked
    resolve({"outcome": "reviewed"})
    assert ("cluster", 0) not in queue()
    assert Annotation.objects.filter(image_id__in=cats, reviewed_at__isnull=False).count() == len(cats)


def test_marking_a_cluster_reviewed_changes_no_label(planted):
    dataset, reviewer, blob_c = planted["dataset"], planted["reviewer"], planted["blobs"][2]
    before = dict(Annotation.objects.filter(image_id__in=blob_c).values_list("image_id", "label_class_id"))
    actions = LabelAction.objects.count()
    result = review_item_resolve(dataset=dataset, user=reviewer, kind="cluster", object_id=2, outcome="reviewed")
    assert result["action_id"] is None and result["reviewed"] == 20
    assert LabelAction.objects.count() == actions
    assert dict(Annotation.objects.filter(image_id__in=blob_c).values_list("image_id", "label_class_id")) == before
    assert Annotation.objects.filter(image_id__in=blob_c, reviewed_by=reviewer, reviewed_at__isnull=False).count() == 20
    queue = review_queue_for_dataset(dataset)
    assert ("cluster", 2) not in {(i["kind"], i["id"]) for i in queue}
    # Its images are now trusted, so none of them shows up on its own either.
    assert not [i for i in queue if i["kind"] == "image" and i["id"] in blob_c]


def test_fixing_labels_by_hand_makes_the_reason_disappear(planted):
    dataset, admin = planted["dataset"], planted["admin"]
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=planted["cat"], image_ids=[planted["mistake"]])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=planted["dog"], image_ids=planted["blobs"][2])
    suggestions_recompute(dataset=dataset)
    assert review_queue_for_dataset(dataset) == []


def test_annotators_may_not_resolve_reviewers_and_admins_may(planted):
    dataset = planted["dataset"]
    with pytest.raises(PermissionRefused):
        review_item_resolve(
            dataset=dataset, user=planted["annotator"], kind="image", object_id=planted["mistake"], outcome="reviewed"
        )
    assert not ReviewResolution.objects.exists()
    review_item_resolve(
        dataset=dataset, user=planted["reviewer"], kind="image", object_id=planted["mistake"], outcome="reviewed"
    )
    review_item_resolve(dataset=dataset, user=planted["admin"], kind="cluster", object_id=2, outcome="reviewed")
    assert ReviewResolution.objects.count() == 2


def test_bad_requests_are_refused(planted, make_dataset, make_user):
    dataset, reviewer = planted["dataset"], planted["reviewer"]
    with pytest.raises(ValidationFailed):
        review_item_resolve(dataset=dataset, user=reviewer, kind="galaxy", object_id=1, outcome="reviewed")
    with pytest.raises(ValidationFailed):
        review_item_resolve(
            dataset=dataset, user=reviewer, kind="image", object_id=planted["mistake"], outcome="deleted"
        )
    with pytest.raises(ValidationFailed):
        review_item_resolve(
            dataset=dataset, user=reviewer, kind="image", object_id=planted["mistake"], outcome="relabelled"
        )  # no class
    with pytest.raises(NotFound):
        review_item_resolve(dataset=dataset, user=reviewer, kind="cluster", object_id=42, outcome="reviewed")
    other = make_dataset(name="Other", admin=make_user("other-admin"))
    _, (other_cat, _), (other_blob, _) = build_map(other)
    with pytest.raises(NotFound):
        review_item_resolve(dataset=dataset, user=reviewer, kind="image", object_id=other_blob[0], outcome="reviewed")
    with pytest.raises(ValidationFailed):
        review_item_resolve(
            dataset=dataset,
            user=reviewer,
            kind="image",
            object_id=planted["mistake"],
            outcome="relabelled",
            label_class=other_cat,
        )
    with pytest.raises(ValidationFailed):
        review_item_resolve(
            dataset=dataset,
            user=reviewer,
            kind="cluster",
            object_id=2,
            outcome="relabelled",
            label_class=planted["cat"],
            image_ids=[other_blob[0]],
        )
    assert not ReviewResolution.objects.exists()


def test_no_map_means_an_empty_queue(make_user, make_dataset):
    dataset = make_dataset(admin=make_user("admin"))
    assert review_queue_for_dataset(dataset) == []


def test_review_through_the_api(planted):
    dataset = planted["dataset"]
    client = APIClient()
    client.force_authenticate(planted["annotator"])
    response = client.get(f"/api/datasets/{dataset.pk}/review/?limit=5")
    assert response.status_code == 200, response.content
    assert {(i["kind"], i["id"]) for i in response.json()[:2]} == {("image", planted["mistake"]), ("cluster", 2)}
    body = {"kind": "image", "id": planted["mistake"], "outcome": "relabelled", "class": planted["cat"].pk}
    response = client.post(f"/api/datasets/{dataset.pk}/review/resolve/", body, format="json")
    assert response.status_code == 403
    assert Annotation.objects.get(image_id=planted["mistake"]).label_class_id == planted["dog"].pk
    client.force_authenticate(planted["reviewer"])
    response = client.post(f"/api/datasets/{dataset.pk}/review/resolve/", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["updated"] == 1
    annotation = Annotation.objects.get(image_id=planted["mistake"])
    assert annotation.label_class_id == planted["cat"].pk and annotation.reviewed_by_id == planted["reviewer"].pk


# --- near-duplicates come from the run, not from the request ------------------------------------------


def _fresh_process():
    """As a new web process after a run: nothing of the run in memory or in the cache."""
    from embeddings.selectors import clear_run_cache

    clear_run_cache()
    cache.clear()


def test_the_queue_reads_the_runs_stored_near_duplicate_pairs(planted):
    import numpy as np

    from embeddings import storage
    from embeddings.ml.review_ranking import PAIR_DTYPE
    from embeddings.selectors import NEAR_DUPLICATES

    dataset, run, (blob_a, blob_b, _) = planted["dataset"], planted["run"], planted["blobs"]
    # Two images far apart in code space, labeled differently: no search would pair
    # them, so the item can only come from the stored artifact.
    a, b = blob_a[0], blob_b[0]
    storage.write_array(run, NEAR_DUPLICATES, np.array([(a, b, 0.0)], dtype=PAIR_DTYPE))
    _fresh_process()
    queue = review_queue_for_dataset(dataset, limit=100)
    conflicts = [i for i in queue if "near_duplicate_conflict" in i["codes"]]
    assert len(conflicts) == 1 and set(conflicts[0]["image_ids"]) == {a, b}, queue


def test_an_old_run_without_the_artifact_gets_its_pairs_computed_on_read(planted):
    from embeddings import storage
    from embeddings.models import ImageEmbedding
    from embeddings.selectors import NEAR_DUPLICATES

    dataset, run, _admin = planted["dataset"], planted["run"], planted["admin"]
    blob_a, blob_b, _ = planted["blobs"]
    # An exact copy in code space of a 'cat' image, labeled 'dog'.
    original, copy = blob_a[0], blob_b[3]
    code = ImageEmbedding.objects.get(run=run, image_id=original).code
    ImageEmbedding.objects.filter(run=run, image_id=copy).update(code=code)
    assert not storage.exists(run, NEAR_DUPLICATES)
    _fresh_process()
    queue = review_queue_for_dataset(dataset, limit=100)
    conflicts = [i for i in queue if "near_duplicate_conflict" in i["codes"]]
    assert len(conflicts) == 1 and set(conflicts[0]["image_ids"]) == {original, copy}
    # A read stores nothing: the pairs are kept in the caches, not written back as the run's artifact.
    assert not storage.exists(run, NEAR_DUPLICATES)


def test_warm_requests_read_no_per_image_rows_of_the_run(planted):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from embeddings.selectors import map_cache_warm

    dataset = planted["dataset"]
    _fresh_process()
    map_cache_warm(planted["run"])
    expected = review_queue_for_dataset(dataset, limit=100)
    with CaptureQueriesContext(connection) as queries:
        assert review_queue_for_dataset(dataset, limit=100) == expected
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    # Positions, clusters and reconstruction errors come from the run's cached
    # arrays; only labels, suggestions, reviews, resolutions and uploaded predictions are read fresh.
    assert "reconstruction_error" not in sql and '"cluster"' not in sql, sql
    assert len(queries) <= 7, [q["sql"] for q in queries.captured_queries]
