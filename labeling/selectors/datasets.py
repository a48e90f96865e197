"""Reads for datasets, members, classes, images, label history and exports.

Every function that takes a user resolves membership through
core.permissions, so a non-member gets a 404 and never learns whether the
object exists.
"""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404

from core.errors import ValidationFailed
from core.permissions import as_id
from embeddings.models import ImageEmbedding
from embeddings.selectors import current_run
from labeling.models import (
    Annotation,
    AnnotationHistory,
    Dataset,
    Image,
    LabelAction,
    LabelClass,
    Membership,
)

# --- datasets ------------------------------------------------------------------------------


def datasets_for_user(user):
    """The user's datasets with their role and image / labeled counts."""
    role = Membership.objects.filter(dataset=OuterRef("pk"), user=user).values("role")[:1]
    images = (
        Image.objects.filter(dataset=OuterRef("pk")).order_by().values("dataset").annotate(n=Count("id")).values("n")
    )
    labeled = (
        Annotation.objects.filter(dataset=OuterRef("pk"), label_class__isnull=False)
        .order_by()
        .values("dataset")
        .annotate(n=Count("id"))
        .values("n")
    )
    return (
        Dataset.objects.filter(memberships__user=user)
        .annotate(
            user_role=Subquery(role),
            image_count=Coalesce(Subquery(images, output_field=IntegerField()), Value(0)),
            labeled_count=Coalesce(Subquery(labeled, output_field=IntegerField()), Value(0)),
        )
        .order_by("id")
    )


def dataset_with_counts(dataset: Dataset) -> Dataset:
    """Adds image_count / labeled_count to a dataset fetched by dataset_for_user."""
    dataset.image_count = Image.objects.filter(dataset=dataset).count()
    dataset.labeled_count = Annotation.objects.filter(dataset=dataset, label_class__isnull=False).count()
    return dataset


def dataset_members(dataset: Dataset):
    return Membership.objects.filter(dataset=dataset).select_related("user").order_by("id")


def dataset_classes(dataset: Dataset):
    return LabelClass.objects.filter(dataset=dataset).annotate(image_count=Count("annotations")).order_by("id")


def label_class_in_dataset(dataset: Dataset, class_id, *, field: str = "class") -> LabelClass | None:
    """The class with this id in `dataset`; None for None; 400 if it is not one of its classes."""
    if class_id is None:
        return None
    pk = as_id(class_id)
    label_class = LabelClass.objects.filter(dataset=dataset, pk=pk).first() if pk else None
    if label_class is None:
        raise ValidationFailed(f"{class_id!r} is not a class of this dataset.", field=field)
    return label_class


def label_class_for_update(dataset: Dataset, class_id) -> LabelClass:
    label_class = LabelClass.objects.filter(dataset=dataset, pk=as_id(class_id) or 0).first()
    if label_class is None:
        raise Http404("No such class.")
    return label_class


# --- images -----------------------------------------------------------------------------------

IMAGE_LIST_FILTERS = ("class", "cluster", "unlabeled")


def dataset_images(dataset: Dataset, *, class_id: int | None = None, cluster: int | None = None, unlabeled=False):
    """The dataset's images by id, filtered by class, current-map cluster or unlabeled."""
    images = Image.objects.filter(dataset=dataset).select_related("annotation").order_by("id")
    if class_id is not None:
        images = images.filter(annotation__label_class_id=class_id)
    if unlabeled:
        images = images.filter(Q(annotation__isnull=True) | Q(annotation__label_class__isnull=True))
    if cluster is not None:
        run = current_run(dataset)
        if run is None:
            return images.none()
        in_cluster = ImageEmbedding.objects.filter(run=run, cluster=cluster).values("image_id")
        images = images.filter(id__in=in_cluster)
    return images


def image_positions(dataset: Dataset, image_ids) -> dict[int, dict]:
    """Map position, cluster and suggestion of the given images in the current map."""
    run = current_run(dataset)
    if run is None or not image_ids:
        return {}
    rows = ImageEmbedding.objects.filter(run=run, image_id__in=list(image_ids)).values_list(
        "image_id", "x", "y", "cluster", "suggested_class_id", "suggestion_confidence"
    )
    return {
        image_id: {"run": run.pk, "x": x, "y": y, "cluster": cluster, "suggestion": sugg, "confidence": conf}
        for image_id, x, y, cluster, sugg, conf in rows
    }


def image_annotation(image: Image) -> Annotation | None:
    try:
        return image.annotation
    except Annotation.DoesNotExist:
        return None


def image_neighbors(image: Image) -> tuple[int | None, int | None]:
    """The ids of the images just before and just after this one in its dataset (by id), or None."""
    siblings = Image.objects.filter(dataset_id=image.dataset_id)
    previous_id = siblings.filter(pk__lt=image.pk).order_by("-pk").values_list("pk", flat=True).first()
    next_id = siblings.filter(pk__gt=image.pk).order_by("pk").values_list("pk", flat=True).first()
    return previous_id, next_id


def image_history(image: Image, limit: int = 200) -> list[dict]:
    """The image's label changes, newest first."""
    rows = (
        AnnotationHistory.objects.filter(image=image)
        .order_by("-id")
        .values(
            "id",
            "action_id",
            "action__kind",
            "action__source",
            "action__undo_of_id",
            "old_class_id",
            "new_class_id",
            "new_version",
            "user_id",
            "user__username",
            "created_at",
        )[:limit]
    )
    return [
        {
            "id": r["id"],
            "action_id": r["action_id"],
            "kind": r["action__kind"],
            "source": r["action__source"],
            "undo_of": r["action__undo_of_id"],
            "old_class": r["old_class_id"],
            "new_class": r["new_class_id"],
            "version": r["new_version"],
            "user": r["user_id"],
            "username": r["user__username"],
            "created": r["created_at"],
        }
        for r in rows
    ]


# --- actions -----------------------------------------------------------------------------------


def label_actions(dataset: Dataset, *, user=None):
    """The dataset's label actions, newest first (only `user`'s when given)."""
    actions = (
        LabelAction.objects.filter(dataset=dataset)
        .select_related("user")
        .annotate(undone_by_id=Subquery(LabelAction.objects.filter(undo_of=OuterRef("pk")).values("id")[:1]))
    )
    if user is not None:
        actions = actions.filter(user=user)
    return actions.order_by("-id")
