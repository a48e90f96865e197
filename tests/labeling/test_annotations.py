"""The annotation service: versions, bulk writes, history and undo."""

import pytest

from core.errors import Conflict, NotFound, PermissionRefused, StaleVersions, ValidationFailed, VersionConflict
from labeling.models import Annotation, AnnotationHistory, LabelAction, LabelClass
from labeling.services.annotations import (
    annotation_set,
    annotations_apply_bulk,
    label_action_undo,
    last_undoable_action,
)
from tests.factories import ImageFactory


def _images(dataset, n):
    return ImageFactory.create_batch(n, dataset=dataset, width=4, height=4)


@pytest.fixture
def world(make_user, make_dataset):
    admin, ann, ann2 = make_user("admin"), make_user("ann"), make_user("ann2")
    dataset = make_dataset("A", admin=admin, members={ann: "annotator", ann2: "annotator"})
    other = make_dataset("B", admin=admin)
    classes = {name: LabelClass.objects.create(dataset=dataset, name=name) for name in ("cat", "dog", "bird")}
    foreign_class = LabelClass.objects.create(dataset=other, name="cat")
    return dict(
        admin=admin,
        ann=ann,
        ann2=ann2,
        dataset=dataset,
        other=other,
        images=_images(dataset, 6),
        other_images=_images(other, 2),
        foreign_class=foreign_class,
        **classes,
    )


def _classes(images):
    return [Annotation.objects.filter(image=i).values_list("label_class__name", flat=True).first() for i in images]


def test_set_bumps_version_and_records_history(world):
    image = world["images"][0]
    first = annotation_set(image=image, label_class=world["cat"], user=world["ann"])
    assert first.version == 1 and first.label_class == world["cat"] and first.action.image_count == 1
    second = annotation_set(image=image, label_class=world["dog"], user=world["ann2"], expected_version=1)
    assert second.version == 2 and second.author == world["ann2"]
    same = annotation_set(image=image, label_class=world["dog"], user=world["ann2"])
    assert same.version == 2 and same.action is None  # no change, no history
    cleared = annotation_set(image=image, label_class=None, user=world["ann"])
    assert cleared.version == 3 and cleared.label_class is None
    history = list(
        AnnotationHistory.objects.filter(image=image).values_list(
            "old_class__name", "new_class__name", "new_version", "user__username"
        )
    )
    assert history == [(None, "cat", 1, "ann"), ("cat", "dog", 2, "ann2"), ("dog", None, 3, "ann")]


def test_stale_version_is_refused_with_current_state(world):
    image = world["images"][0]
    annotation_set(image=image, label_class=world["cat"], user=world["ann"], expected_version=0)
    with pytest.raises(VersionConflict) as caught:
        annotation_set(image=image, label_class=world["dog"], user=world["ann2"], expected_version=0)
    assert caught.value.details == {"current_version": 1, "current_class": world["cat"].pk}
    assert _classes([image]) == ["cat"]
    assert AnnotationHistory.objects.filter(image=image).count() == 1


def test_class_of_another_dataset_is_refused(world):
    with pytest.raises(ValidationFailed):
        annotation_set(image=world["images"][0], label_class=world["foreign_class"], user=world["ann"])
    with pytest.raises(ValidationFailed):
        annotations_apply_bulk(
            dataset=world["dataset"],
            user=world["ann"],
            label_class=world["foreign_class"],
            image_ids=[world["images"][0].pk],
        )
    assert not Annotation.objects.filter(label_class__isnull=False).exists()


def test_bulk_applies_once_and_skips_unchanged(world):
    images = world["images"]
    annotation_set(image=images[0], label_class=world["cat"], user=world["ann"])
    action = annotations_apply_bulk(
        dataset=world["dataset"],
        user=world["ann"],
        label_class=world["cat"],
        image_ids=[i.pk for i in images[:4]] + [images[1].pk],
    )
    assert action.image_count == 3
    assert _classes(images) == ["cat", "cat", "cat", "cat", None, None]
    assert AnnotationHistory.objects.filter(action=action).count() == 3
    versions = dict(Annotation.objects.values_list("image_id", "version"))
    assert versions[images[0].pk] == 1 and versions[images[1].pk] == 1


def test_bulk_with_ids_of_another_dataset_changes_nothing(world):
    ids = [world["images"][0].pk, world["other_images"][0].pk]
    with pytest.raises(ValidationFailed) as caught:
        annotations_apply_bulk(dataset=world["dataset"], user=world["ann"], label_class=world["cat"], image_ids=ids)
    assert caught.value.details["invalid_image_ids"] == [world["other_images"][0].pk]
    assert not Annotation.objects.filter(label_class__isnull=False).exists()
    assert not LabelAction.objects.exists()


def test_undo_restores_previous_classes_and_reports_later_changes(world):
    images = world["images"]
    annotation_set(image=images[0], label_class=world["dog"], user=world["ann"])
    bulk = annotations_apply_bulk(
        dataset=world["dataset"], user=world["ann"], label_class=world["cat"], image_ids=[i.pk for i in images[:4]]
    )
    # Someone relabels one of the images after the bulk action.
    annotation_set(image=images[2], label_class=world["bird"], user=world["ann2"])
    result = label_action_undo(dataset=world["dataset"], user=world["ann"], action_id=bulk.pk)
    assert result["action_id"] == bulk.pk
    assert result["restored"] == 3 and result["conflicts"] == [images[2].pk]
    assert _classes(images[:4]) == ["dog", None, "bird", None]
    undo = LabelAction.objects.get(pk=result["undo_action_id"])
    assert undo.kind == "undo" and undo.undo_of_id == bulk.pk and undo.image_count == 3
    assert AnnotationHistory.objects.filter(action=undo).count() == 3
    with pytest.raises(Conflict):
        label_action_undo(dataset=world["dataset"], user=world["ann"], action_id=bulk.pk)
    # Undoing the undo is a redo, with the same conflict rule.
    redo = label_action_undo(dataset=world["dataset"], user=world["ann"], action_id=undo.pk)
    assert redo["restored"] == 3 and _classes(images[:4]) == ["cat", "cat", "bird", "cat"]


def test_only_author_or_admin_may_undo(world):
    action = annotations_apply_bulk(
        dataset=world["dataset"], user=world["ann"], label_class=world["cat"], image_ids=[world["images"][0].pk]
    )
    with pytest.raises(PermissionRefused):
        label_action_undo(dataset=world["dataset"], user=world["ann2"], action_id=action.pk)
    with pytest.raises(NotFound):
        label_action_undo(dataset=world["other"], user=world["admin"], action_id=action.pk)
    assert label_action_undo(dataset=world["dataset"], user=world["admin"], action_id=action.pk)["restored"] == 1


def test_last_undoable_action(world):
    assert last_undoable_action(dataset=world["dataset"], user=world["ann"]) is None
    first = annotations_apply_bulk(
        dataset=world["dataset"], user=world["ann"], label_class=world["cat"], image_ids=[world["images"][0].pk]
    )
    second = annotations_apply_bulk(
        dataset=world["dataset"], user=world["ann"], label_class=world["dog"], image_ids=[world["images"][1].pk]
    )
    assert last_undoable_action(dataset=world["dataset"], user=world["ann"]) == second
    label_action_undo(dataset=world["dataset"], user=world["ann"], action_id=second.pk)
    assert last_undoable_action(dataset=world["dataset"], user=world["ann"]) == first


def test_labels_changed_at_is_bumped_after_commit(world, django_capture_on_commit_callbacks):
    world["dataset"].refresh_from_db()
    assert world["dataset"].labels_changed_at is None
    with django_capture_on_commit_callbacks(execute=True):
        annotation_set(image=world["images"][0], label_class=world["cat"], user=world["ann"])
    world["dataset"].refresh_from_db()
    assert world["dataset"].labels_changed_at is not None


def _state(images):
    """(class name, version, author, source, reviewer) of each image's annotation; None where it has none."""
    rows = {
        image_id: rest
        for image_id, *rest in Annotation.objects.filter(image__in=images).values_list(
            "image_id", "label_class__name", "version", "author__username", "source", "reviewed_by__username"
        )
    }
    return [tuple(rows[i.pk]) if i.pk in rows else None for i in images]


@pytest.mark.parametrize("target", ["cat", None])
def test_bulk_over_a_mix_writes_exact_history_and_undoes_exactly(world, target):
    """The set-based bulk write (PostgreSQL) and the ORM one (SQLite) agree row for row:
    no annotation row yet, cleared (version 2, no class), the target class already,
    and other classes; versions, history and undo are per image."""
    images = world["images"]
    never, cleared, same, other_a, other_b, untouched = images
    annotation_set(image=cleared, label_class=world["dog"], user=world["ann2"])
    annotation_set(image=cleared, label_class=None, user=world["ann2"])
    if target is not None:
        annotation_set(image=same, label_class=world[target], user=world["ann2"])
    else:
        # For a clear, "already that class" is an image without one.
        annotation_set(image=same, label_class=world["bird"], user=world["ann2"])
        annotation_set(image=same, label_class=None, user=world["ann2"])
    annotation_set(image=other_a, label_class=world["dog"], user=world["ann2"])
    annotation_set(image=other_b, label_class=world["bird"], user=world["ann2"])
    annotation_set(image=other_b, label_class=world["dog"], user=world["ann2"])
    annotation_set(image=untouched, label_class=world["bird"], user=world["ann2"])
    before = _state(images)
    selection = [never, cleared, same, other_a, other_b]
    label_class = world[target] if target else None

    action = annotations_apply_bulk(
        dataset=world["dataset"],
        user=world["ann"],
        label_class=label_class,
        image_ids=[i.pk for i in reversed(selection)],
        expected={str(other_a.pk): 1, same.pk: 99},  # `same` changes nothing, so its version is no conflict
        mark_reviewed=True,
    )

    changed = [never, cleared, other_a, other_b] if target else [other_a, other_b]
    assert action.image_count == len(changed)
    assert action.kind == ("set" if target else "clear") and action.label_class == label_class
    old_version = {never.pk: 0, cleared.pk: 2, other_a.pk: 1, other_b.pk: 2}
    assert action.versions == {other_a.pk: 2, same.pk: before[2][1]}
    history = list(
        AnnotationHistory.objects.filter(action=action)
        .order_by("id")
        .values_list("image_id", "old_class__name", "new_class__name", "new_version", "user__username", "dataset_id")
    )
    old_name = {never.pk: None, cleared.pk: None, other_a.pk: "dog", other_b.pk: "dog"}
    assert history == [
        (i.pk, old_name[i.pk], target, old_version[i.pk] + 1, "ann", world["dataset"].pk) for i in changed
    ]
    after = _state(images)
    for image in changed:
        assert after[images.index(image)] == (target, old_version[image.pk] + 1, "ann", "bulk", "ann")
    # Unchanged images keep class, version and author, but the reviewer confirmed them.
    assert after[2] == (*before[2][:4], "ann")
    if not target:
        assert after[0] == (None, 0, None, "manual", "ann")
        assert after[1] == (*before[1][:4], "ann")
    assert after[5] == before[5]

    result = label_action_undo(dataset=world["dataset"], user=world["ann"], action_id=action.pk)
    assert result["restored"] == len(changed) and result["conflicts"] == []
    assert result["versions"] == {str(i.pk): old_version[i.pk] + 2 for i in changed}
    restored = _state(images)
    assert [r[0] if r else None for r in restored] == [b[0] if b else None for b in before]
    undo_history = list(
        AnnotationHistory.objects.filter(action_id=result["undo_action_id"])
        .order_by("image_id")
        .values_list("image_id", "old_class__name", "new_class__name", "new_version")
    )
    assert undo_history == sorted((i.pk, target, old_name[i.pk], old_version[i.pk] + 2) for i in changed)


def test_bulk_set_of_never_labeled_images_writes_each_row_once_with_exact_history(world):
    """Without `expected` or a reviewer, images with no annotation row are inserted carrying the class
    (PostgreSQL; SQLite inserts and updates): the same versions, history and undo as the general path."""
    images = world["images"]
    never_a, never_b, same, other, cleared, untouched = images
    annotation_set(image=same, label_class=world["cat"], user=world["ann2"])
    annotation_set(image=other, label_class=world["dog"], user=world["ann2"])
    annotation_set(image=cleared, label_class=world["dog"], user=world["ann2"])
    annotation_set(image=cleared, label_class=None, user=world["ann2"])
    before = _state(images)
    assert before[0] is None and before[1] is None

    action = annotations_apply_bulk(
        dataset=world["dataset"],
        user=world["ann"],
        label_class=world["cat"],
        image_ids=[i.pk for i in (other, never_b, same, cleared, never_a)],
    )

    changed = [never_a, never_b, other, cleared]
    old_version = {never_a.pk: 0, never_b.pk: 0, other.pk: 1, cleared.pk: 2}
    old_name = {never_a.pk: None, never_b.pk: None, other.pk: "dog", cleared.pk: None}
    assert action.image_count == 4 and LabelAction.objects.get(pk=action.pk).image_count == 4
    history = list(
        AnnotationHistory.objects.filter(action=action)
        .order_by("image_id")
        .values_list("image_id", "old_class__name", "new_class__name", "new_version", "user__username")
    )
    assert history == sorted((i.pk, old_name[i.pk], "cat", old_version[i.pk] + 1, "ann") for i in changed)
    after = _state(images)
    for image in changed:
        assert after[images.index(image)] == ("cat", old_version[image.pk] + 1, "ann", "bulk", None)
    assert after[2] == before[2] and after[5] == before[5]

    result = label_action_undo(dataset=world["dataset"], user=world["ann"], action_id=action.pk)
    assert result["restored"] == 4 and result["conflicts"] == []
    assert [r[0] if r else None for r in _state(images)] == [b[0] if b else None for b in before]


def test_bulk_stale_expected_changes_nothing_and_lists_conflicts_in_id_order(world):
    images = world["images"]
    for image in images[:4]:
        annotation_set(image=image, label_class=world["dog"], user=world["ann2"])
    before = _state(images)
    with pytest.raises(StaleVersions) as caught:
        annotations_apply_bulk(
            dataset=world["dataset"],
            user=world["ann"],
            label_class=world["cat"],
            image_ids=[i.pk for i in images],
            expected={str(images[3].pk): 0, str(images[1].pk): 0, str(images[5].pk): 0},
        )
    assert caught.value.details["conflicts"] == [
        {"image": images[1].pk, "class": world["dog"].pk, "version": 1},
        {"image": images[3].pk, "class": world["dog"].pk, "version": 1},
    ]
    assert _state(images) == before
    assert not LabelAction.objects.filter(user=world["ann"]).exists()
