"""Writes for datasets, their members and their classes.

Callers (API views, pages) have already checked the user's role with
core.permissions.dataset_for_user; these functions check the state of the
data (unique names, the last admin, classes in use) and do the writes.
"""

from __future__ import annotations

import logging
import re
import unicodedata

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q

from core.errors import Conflict, NotFound, ValidationFailed
from embeddings.services.artifacts import dataset_artifacts_delete
from labeling.models import Annotation, AnnotationHistory, Dataset, LabelClass, Membership, Role

# New classes cycle through the palette when no color is given.
from labeling.palette import CLASS_PALETTE

logger = logging.getLogger(__name__)

COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
DATASET_NAME_MAX = Dataset._meta.get_field("name").max_length
CLASS_NAME_MAX = LabelClass._meta.get_field("name").max_length


# --- validation helpers -------------------------------------------------------------


def _clean_text(value, *, field: str, max_length: int, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be text.", field=field)
    # Control characters (NUL included) cannot be stored by PostgreSQL and have
    # no business in a name.
    value = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C" or ch in "\n\t").strip()
    if required and not value:
        raise ValidationFailed(f"{field} must not be empty.", field=field)
    if len(value) > max_length:
        raise ValidationFailed(f"{field} must be at most {max_length} characters.", field=field)
    return value


def clean_color(color) -> str:
    if not isinstance(color, str) or not COLOR_RE.match(color.strip()):
        raise ValidationFailed("color must be a hex color like #1f77b4.", field="color")
    return color.strip().lower()


def clean_shortcut(shortcut) -> str:
    if shortcut is None:
        return ""
    if not isinstance(shortcut, str):
        raise ValidationFailed("shortcut must be a single character.", field="shortcut")
    if shortcut == "":
        return ""
    if len(shortcut) != 1 or not shortcut.isprintable() or shortcut.isspace():
        raise ValidationFailed("shortcut must be a single printable, non-space character.", field="shortcut")
    return shortcut


def clean_role(role) -> str:
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of: {', '.join(Role.values)}.", field="role")
    return role


# --- datasets ---------------------------------------------------------------------------


@transaction.atomic
def dataset_create(*, user, name: str, description: str = "") -> Dataset:
    name = _clean_text(name, field="name", max_length=DATASET_NAME_MAX)
    description = _clean_text(description, field="description", max_length=10_000, required=False)
    dataset = Dataset.objects.create(name=name, description=description, created_by=user)
    Membership.objects.create(dataset=dataset, user=user, role=Role.ADMIN)
    return dataset


@transaction.atomic
def dataset_update(*, dataset: Dataset, **fields) -> Dataset:
    allowed = {"name", "description", "auto_retrain"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationFailed(f"Cannot change: {', '.join(sorted(unknown))}.")
    if "auto_retrain" in fields:
        if not isinstance(fields["auto_retrain"], bool):
            raise ValidationFailed("auto_retrain must be true or false.", field="auto_retrain")
        dataset.auto_retrain = fields["auto_retrain"]
    if "name" in fields:
        dataset.name = _clean_text(fields["name"], field="name", max_length=DATASET_NAME_MAX)
    if "description" in fields:
        dataset.description = _clean_text(fields["description"], field="description", max_length=10_000, required=False)
    dataset.save(update_fields=[*fields.keys(), "updated_at"])
    return dataset


@transaction.atomic
def dataset_delete(*, dataset: Dataset) -> None:
    # Annotations and history protect their classes (on_delete=PROTECT), so the
    # rows that point at classes go first; images' files are removed after commit.
    # The dataset row first: label writes hold it FOR KEY SHARE while they write (see
    # labeling.services.annotations.dataset_lock_for_labels), so none is half-way
    # through writing rows for images this deletes.
    Dataset.objects.select_for_update().filter(pk=dataset.pk).exists()
    file_names = list(dataset.images.values_list("file", "thumbnail").iterator(chunk_size=2000))
    dataset_id = dataset.pk
    AnnotationHistory.objects.filter(dataset=dataset).delete()
    Annotation.objects.filter(dataset=dataset).delete()
    dataset.delete()

    def remove_files():
        for pair in file_names:
            for name in pair:
                if name:
                    try:
                        default_storage.delete(name)
                    except Exception:  # a missing file must not undo a delete that committed
                        pass
        # The runs' models and codes rebuild the images: they go too
        # (cleanup_orphan_media removes whatever this could not, or a worker wrote later).
        try:
            dataset_artifacts_delete(dataset_id=dataset_id)
        except Exception:
            logger.exception("could not delete the run artifacts of deleted dataset %s", dataset_id)

    transaction.on_commit(remove_files)


# --- members ------------------------------------------------------------------------------


@transaction.atomic
def member_add(*, dataset: Dataset, username: str, role: str) -> Membership:
    role = clean_role(role)
    if not isinstance(username, str) or not username.strip():
        raise ValidationFailed("username is required.", field="username")
    user = get_user_model().objects.filter(username=username.strip(), is_active=True).first()
    if user is None:
        raise ValidationFailed(f"No active user named {username.strip()!r}.", field="username")
    if Membership.objects.filter(dataset=dataset, user=user).exists():
        raise Conflict(f"{user.username} is already a member of this dataset.", field="username")
    try:
        with transaction.atomic():
            return Membership.objects.create(dataset=dataset, user=user, role=role)
    except IntegrityError:
        raise Conflict(f"{user.username} is already a member of this dataset.", field="username") from None


def _member_user_id(user_id) -> int:
    try:
        user_id = int(user_id)
    except (TypeError, ValueError):
        raise NotFound("No such member.") from None
    if not 0 < user_id < 2**63:
        raise NotFound("No such member.")
    return user_id


def _other_admins_exist(dataset: Dataset, user_id: int) -> bool:
    return Membership.objects.filter(dataset=dataset, role=Role.ADMIN).exclude(user_id=user_id).exists()


@transaction.atomic
def member_update_role(*, dataset: Dataset, user_id: int, role: str) -> Membership:
    role = clean_role(role)
    user_id = _member_user_id(user_id)
    # Lock the dataset's admin rows so two concurrent demotions cannot both pass
    # the "another admin remains" check.
    list(Membership.objects.select_for_update().filter(dataset=dataset, role=Role.ADMIN).order_by("id"))
    membership = Membership.objects.select_for_update().filter(dataset=dataset, user_id=user_id).first()
    if membership is None:
        raise NotFound("No such member.")
    if membership.role == Role.ADMIN and role != Role.ADMIN and not _other_admins_exist(dataset, user_id):
        raise Conflict("A dataset needs at least one admin: promote someone else first.")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, dataset: Dataset, user_id: int) -> None:
    user_id = _member_user_id(user_id)
    list(Membership.objects.select_for_update().filter(dataset=dataset, role=Role.ADMIN).order_by("id"))
    membership = Membership.objects.filter(dataset=dataset, user_id=user_id).first()
    if membership is None:
        raise NotFound("No such member.")
    if membership.role == Role.ADMIN and not _other_admins_exist(dataset, user_id):
        raise Conflict("Cannot remove the last admin of a dataset.")
    membership.delete()


# --- classes --------------------------------------------------------------------------------


def _check_class_unique(dataset: Dataset, *, name: str | None, shortcut: str | None, exclude_id=None) -> None:
    others = LabelClass.objects.filter(dataset=dataset)
    if exclude_id is not None:
        others = others.exclude(pk=exclude_id)
    if name is not None and others.filter(name__iexact=name).exists():
        raise ValidationFailed(f"A class named {name!r} already exists in this dataset.", field="name")
    if shortcut and others.filter(shortcut=shortcut).exists():
        raise ValidationFailed(f"Shortcut {shortcut!r} is already used by another class.", field="shortcut")


@transaction.atomic
def label_class_create(*, dataset: Dataset, name: str, color: str | None = None, shortcut: str = "") -> LabelClass:
    name = _clean_text(name, field="name", max_length=CLASS_NAME_MAX)
    shortcut = clean_shortcut(shortcut)
    if color in (None, ""):
        color = CLASS_PALETTE[LabelClass.objects.filter(dataset=dataset).count() % len(CLASS_PALETTE)]
    else:
        color = clean_color(color)
    _check_class_unique(dataset, name=name, shortcut=shortcut)
    try:
        with transaction.atomic():
            return LabelClass.objects.create(dataset=dataset, name=name, color=color, shortcut=shortcut)
    except IntegrityError:  # a concurrent create won the race
        raise ValidationFailed("A class with this name or shortcut already exists in this dataset.") from None


@transaction.atomic
def label_class_update(*, label_class: LabelClass, **fields) -> LabelClass:
    allowed = {"name", "color", "shortcut"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationFailed(f"Cannot change: {', '.join(sorted(unknown))}.")
    name = shortcut = None
    if "name" in fields:
        name = label_class.name = _clean_text(fields["name"], field="name", max_length=CLASS_NAME_MAX)
    if "color" in fields:
        label_class.color = clean_color(fields["color"])
    if "shortcut" in fields:
        shortcut = label_class.shortcut = clean_shortcut(fields["shortcut"])
    _check_class_unique(label_class.dataset, name=name, shortcut=shortcut, exclude_id=label_class.pk)
    try:
        with transaction.atomic():
            label_class.save(update_fields=list(fields.keys()))
    except IntegrityError:
        raise ValidationFailed("A class with this name or shortcut already exists in this dataset.") from None
    return label_class


@transaction.atomic
def label_class_delete(*, label_class: LabelClass) -> None:
    in_use = Annotation.objects.filter(label_class=label_class).count()
    if in_use:
        raise Conflict(
            f"Class {label_class.name!r} is the label of {in_use} image(s): relabel or clear them first.",
            images=in_use,
        )
    in_history = AnnotationHistory.objects.filter(dataset_id=label_class.dataset_id).filter(
        Q(old_class_id=label_class.pk) | Q(new_class_id=label_class.pk)
    )
    if in_history.exists():
        raise Conflict(
            f"Class {label_class.name!r} appears in the label history, which is kept for audit and undo; "
            "rename it instead of deleting it."
        )
    label_class.delete()
