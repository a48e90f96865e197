"""The annotation service: versions, bulk writes, history and undo."""

import pytest

from core.errors import Conflict, NotFound, PermissionRefused, ValidationFailed, VersionConflict
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
