"""Registering a dataset's pretrained backbone (a model file), deleting one, and checking a run that uses one.

Checked whole before anything is stored (embeddings.ml.backbone): the file is
at most SIMLABEL_MAX_BACKBONE_BYTES, loads with the loader of its format
without unpickling Python objects, and a batch of the declared input size
gives one finite float vector per image; the vector length is recorded.  The
file goes to a fresh name under `backbones/<dataset>/` and the row is created
in one transaction; a failure at any step leaves no file and no row.

Runs with `embedding: "backbone"` embed every image with it (embeddings.services.pipeline).
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from core.errors import Conflict, PayloadTooLarge, ValidationFailed
from embeddings.models import ACTIVE_RUN_STATUSES, BACKBONES_PREFIX, Backbone, TrainingRun
from embeddings.selectors.backbones import backbone_of_dataset
from labeling.models import Dataset

logger = logging.getLogger(__name__)

NAME_MAX = 100
EXTENSIONS = {"pt2": "pt2", "torchscript": "pt"}


def max_backbone_bytes() -> int:
    return int(settings.SIMLABEL_MAX_BACKBONE_BYTES)


def _numbers(value, *, field: str, count: int | None = None) -> tuple:
    """A list of numbers from a list, or a string "0.5,0.5,0.5" / "[0.5, 0.5, 0.5]" (multipart forms)."""
    if isinstance(value, str):
        value = [part for part in value.strip().strip("[]()").replace(" ", ",").split(",") if part]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValidationFailed(f"{field} must be a list of numbers.", field=field)
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValidationFailed(f"{field} must be a list of numbers.", field=field) from None
    if not all(math.isfinite(v) for v in numbers):
        raise ValidationFailed(f"{field} must hold finite numbers.", field=field)
    if count is not None and len(numbers) != count:
        raise ValidationFailed(f"{field} must have {count} value(s).", field=field)
    return numbers


def backbone_spec_validate(*, input_size, mean, std, channels=None):
    """(BackboneSpec) from the request's fields; channels default to len(mean)."""
    from embeddings.ml.backbone import BackboneError, BackboneSpec

    size = _numbers(input_size, field="input_size")
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or any(v != int(v) or not 1 <= v <= 2048 for v in size):
        raise ValidationFailed(
            "input_size must be the model's input height and width, whole numbers from 1 to 2048 (e.g. 224,224).",
            field="input_size",
        )
    mean = _numbers(mean, field="mean")
    std = _numbers(std, field="std")
    if channels in (None, ""):
        channels = len(mean)
    try:
        channels = int(channels)
    except (TypeError, ValueError):
        raise ValidationFailed("channels must be 1 or 3.", field="channels") from None
    if channels not in (1, 3):
        raise ValidationFailed("channels must be 1 or 3.", field="channels")
    for field, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise ValidationFailed(f"{field} must have one value per channel ({channels}).", field=field)
    if not all(v > 0 for v in std):
        raise ValidationFailed("std values must be above 0.", field="std")
    try:
        return BackboneSpec(int(size[0]), int(size[1]), channels, mean, std)
    except BackboneError as exc:
        raise ValidationFailed(str(exc)) from None


def backbone_register(
    *, dataset: Dataset, user, name: str, data: bytes, fmt: str | None, input_size, mean, std, channels=None
) -> Backbone:
    """Check the model file and store it as a backbone of the dataset; returns the new row.

    All or nothing: a file that does not load safely or does not give (N, D)
    finite vectors for the declared input is refused with a 400 and nothing stored.
    """
    # torch: deferred so web processes import it only when a backbone is registered.
    from embeddings.ml.backbone import FORMATS, BackboneError, detect_format, load_backbone, probe_backbone

    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise ValidationFailed(f"name is required (at most {NAME_MAX} characters).", field="name")
    if Backbone.objects.filter(dataset=dataset, name=name).exists():
        raise ValidationFailed(f"This dataset already has a backbone named {name!r}.", field="name")
    if len(data) > max_backbone_bytes():
        raise PayloadTooLarge(
            f"A backbone file may be at most {max_backbone_bytes()} bytes (SIMLABEL_MAX_BACKBONE_BYTES)."
        )
    if not data:
        raise ValidationFailed("The file is empty.", field="file")
    spec = backbone_spec_validate(input_size=input_size, mean=mean, std=std, channels=channels)
    fmt = (fmt or "").strip().lower() or None
    if fmt is not None and fmt not in FORMATS:
        raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}.", field="format")
    try:
        fmt = fmt or detect_format(data)
        # Checked on the CPU: a registration must not take a GPU the workers are using.
        loaded = load_backbone(data, fmt, device="cpu")
        dim = probe_backbone(loaded, spec)
    except BackboneError as exc:
        raise ValidationFailed(str(exc), field="file") from None
    del loaded
    path = f"{BACKBONES_PREFIX}/{int(dataset.pk)}/{uuid.uuid4().hex}.{EXTENSIONS[fmt]}"
    saved = default_storage.save(path, ContentFile(data))
    try:
        with transaction.atomic():
            backbone = Backbone.objects.create(
                dataset=dataset,
                name=name,
                format=fmt,
                file=saved,
                size_bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                input_height=spec.height,
                input_width=spec.width,
                channels=spec.channels,
                mean=list(spec.mean),
                std=list(spec.std),
                dim=dim,
                created_by=user,
            )
    except IntegrityError:
        _delete_file(saved)
        raise ValidationFailed(f"This dataset already has a backbone named {name!r}.", field="name") from None
    except Exception:
        _delete_file(saved)
        raise
    logger.info("dataset %s: backbone %r registered (%s, %s values, %s bytes)", dataset.pk, name, fmt, dim, len(data))
    return backbone


def backbone_delete(*, backbone: Backbone) -> None:
    """Delete a backbone and its file; 409 while a queued or running run uses it.  Finished runs keep
    their results (their metrics name the backbone)."""
    with transaction.atomic():
        Backbone.objects.select_for_update().filter(pk=backbone.pk).first()
        active = TrainingRun.objects.filter(
            dataset_id=backbone.dataset_id, status__in=ACTIVE_RUN_STATUSES, params__backbone=backbone.pk
        ).first()
        if active is not None:
            raise Conflict(
                f"Run {active.pk} is using this backbone; cancel it or wait for it to finish.", run_id=active.pk
            )
        name = backbone.file
        backbone.delete()
        transaction.on_commit(lambda: _delete_file(name))


def _delete_file(name: str) -> None:
    try:
        default_storage.delete(name)
    except Exception:  # cleanup_orphan_media finds it later
        logger.exception("could not delete backbone file %s", name)


def backbone_check_run(*, dataset, params: dict) -> None:
    """Refuses (400) a run with `embedding: "backbone"` without a backbone of this dataset, and a backbone
    given for another embedding (it would be silently ignored)."""
    params = params or {}
    backbone_id = params.get("backbone")
    if params.get("embedding") != "backbone":
        if backbone_id is not None:
            raise ValidationFailed('backbone is only used with embedding "backbone".', field="backbone")
        return
    if backbone_id is None:
        raise ValidationFailed(
            f'embedding "backbone" needs a backbone: register one at /api/datasets/{dataset.pk}/backbones/ and '
            "pass its id as backbone.",
            field="backbone",
        )
    if backbone_of_dataset(dataset, backbone_id) is None:
        raise ValidationFailed(f"Backbone {backbone_id} is not a backbone of this dataset.", field="backbone")
