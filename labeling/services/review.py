"""Resolving review-queue items: accept the suggestion, relabel, or mark reviewed.

Every outcome records a ReviewResolution (so the item leaves the queue on this
map; a cluster relabelled in part may return, see labeling.selectors.review)
and marks the affected annotations reviewed (who and when).  Label
changes go through the annotation services, so they are ordinary LabelActions
with history and undo.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from core.errors import NotFound, PermissionRefused, ValidationFailed
from core.permissions import membership_role, role_allows
from embeddings.models import ImageEmbedding
from embeddings.selectors import current_run
from labeling.models import Annotation, AnnotationSource, Dataset, Image, LabelClass, ReviewResolution
from labeling.services.annotations import (
    annotations_apply_bulk,
    annotations_lock_unchanged,
    images_check_in_dataset,
)
from labeling.services.suggestions import suggestions_accept

KINDS = tuple(ReviewResolution.Kind.values)
OUTCOMES = tuple(ReviewResolution.Outcome.values)


def _item_image_ids(dataset: Dataset, run, kind: str, object_id: int) -> list[int]:
    if kind == ReviewResolution.Kind.CLUSTER:
        ids = list(
            ImageEmbedding.objects.filter(run=run, cluster=object_id)
            .order_by("image_id")
            .values_list("image_id", flat=True)
        )
        if not ids:
            raise NotFound(f"The current map has no cluster {object_id}.")
        return ids
    if not Image.objects.filter(dataset=dataset, pk=object_id).exists():
        raise NotFound("No such image in this dataset.")
    return [object_id]


def _label_class(dataset: Dataset, label_class) -> LabelClass:
    if label_class is None:
        raise ValidationFailed("Relabelling needs a class.", field="class")
    if not isinstance(label_class, LabelClass):
        try:
            label_class = LabelClass.objects.filter(dataset=dataset, pk=int(label_class)).first()
        except (TypeError, ValueError):
            label_class = None
        if label_class is None:
            raise ValidationFailed("No such class in this dataset.", field="class")
    if label_class.dataset_id != dataset.pk:
        raise ValidationFailed("That class belongs to another dataset.", field="class")
    return label_class


def _clean_ids(dataset: Dataset, image_ids) -> list[int]:
    try:
        ids = sorted({int(i) for i in image_ids})
    except (TypeError, ValueError):
        raise ValidationFailed("image_ids must be a list of integers.", field="image_ids") from None
    if not ids:
        raise ValidationFailed("image_ids is empty.", field="image_ids")
    images_check_in_dataset(dataset_id=dataset.pk, image_ids=ids)
    return ids


@transaction.atomic
def review_item_resolve(
    *,
    dataset: Dataset,
    user,
    kind: str,
    object_id: int,
    outcome: str,
    label_class=None,
    image_ids=None,
    reason: str = "",
    expected=None,
) -> dict:
    """Resolves one review item (see the module docstring).

    accepted: each of the item's images (or of image_ids) takes its suggested
    class, labeled ones included; relabelled: label_class goes to image_ids
    (one image, a selection) or, without image_ids, to all the item's images;
    reviewed: the item's labeled images are marked reviewed as they are.
    `expected` ({image id: version}, what the reviewer saw) makes accepting and
    relabelling conditional: an image changed since is a 409 and nothing,
    the resolution included, is stored.  Images that changed between the
    suggestions being read and written are left alone and listed in `skipped`.
    Returns {resolution_id, kind, id, outcome, action_id, updated, reviewed, skipped}.
    """
    if not role_allows(membership_role(user, dataset.pk), "review"):
        raise PermissionRefused("Only reviewers and admins can resolve review items.")
    if kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}.", field="kind")
    if outcome not in OUTCOMES:
        raise ValidationFailed(f"outcome must be one of {', '.join(OUTCOMES)}.", field="outcome")
    try:
        object_id = int(object_id)
    except (TypeError, ValueError):
        raise ValidationFailed("id must be an integer.", field="id") from None
    run = current_run(dataset)
    if run is None:
        raise ValidationFailed("This dataset has no map yet, so there is no review queue.")
    item_ids = _item_image_ids(dataset, run, kind, object_id)
    targets = _clean_ids(dataset, image_ids) if image_ids is not None else item_ids

    action = None
    if outcome == ReviewResolution.Outcome.ACCEPTED:
        action = suggestions_accept(
            dataset=dataset,
            user=user,
            image_ids=targets,
            include_labeled=True,
            mark_reviewed=True,
            source=AnnotationSource.REVIEW,
            expected=expected,
        )
    elif outcome == ReviewResolution.Outcome.RELABELED:
        action = annotations_apply_bulk(
            dataset=dataset,
            user=user,
            label_class=_label_class(dataset, label_class),
            image_ids=targets,
            source=AnnotationSource.REVIEW,
            mark_reviewed=True,
            expected=expected,
        )
    elif expected is not None:
        # Marking reviewed vouches for the labels the reviewer saw: if one changed since, 409 and nothing stored.
        annotations_lock_unchanged(image_ids=targets, expected=expected)
    now = timezone.now()
    reviewed = 0
    # Images someone changed meanwhile (skipped) were not checked by this reviewer.
    skipped = set(getattr(action, "skipped", None) or ())
    targets = [image_id for image_id in targets if image_id not in skipped]
    for start in range(0, len(targets), 900):
        reviewed += Annotation.objects.filter(
            dataset=dataset, image_id__in=targets[start : start + 900], label_class__isnull=False
        ).update(reviewed_by=user, reviewed_at=now)
    resolution = ReviewResolution.objects.create(
        dataset=dataset,
        run=run,
        kind=kind,
        object_id=object_id,
        outcome=outcome,
        reason=str(reason)[:200],
        resolved_by=user,
    )
    return {
        "resolution_id": resolution.pk,
        "kind": kind,
        "id": object_id,
        "outcome": outcome,
        "action_id": action.pk if action is not None else None,
        "updated": action.image_count if action is not None else 0,
        "reviewed": reviewed,
        "skipped": list(getattr(action, "skipped", None) or []),
    }
