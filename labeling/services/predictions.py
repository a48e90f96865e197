"""Model predictions: classes an outside model gives a dataset's images, stored as suggestions.

An upload names a model and lists {image_id, class, confidence}; every item is checked before
anything is written (each image a member of this dataset, one item per image, each class known or,
when asked, created, each confidence a finite number in [0, 1]), and the model's previous
predictions are replaced in the same transaction: a bad upload is a 400 and nothing changes.
Predictions label nothing by themselves; accepting them goes through
labeling.services.suggestions (source "model:<name>") like the neighbors' suggestions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from core.errors import ValidationFailed
from labeling.models import Dataset, Prediction
from labeling.services.annotations import images_check_in_dataset

# The label import's class rules, shared so that a class name means the same in both.
from labeling.services.label_import import label_classes_for_names

# Model names appear in URLs (/predictions/<model>/) and in the accept source "model:<name>".
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MODEL_NAME_RULE = "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
ITEM_KEYS = frozenset({"image_id", "class", "confidence"})
MAX_REPORTED = 20  # ids or positions listed in an error; the count says how many there were
INSERT_BATCH = 5000


@dataclass
class PredictionUploadReport:
    model: str
    stored: int = 0
    replaced: int = 0  # the model's predictions that were there before
    created_classes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "stored": self.stored,
            "replaced": self.replaced,
            "created_classes": list(self.created_classes),
        }


def model_name_clean(name) -> str:
    """`name` if it is a valid model name, else a 400."""
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise ValidationFailed(f"model must be {MODEL_NAME_RULE}.", field="model")
    return name


def _listed(values) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:MAX_REPORTED])
    return shown + (f", … ({len(values)} in all)" if len(values) > MAX_REPORTED else "")


def _items_that(positions: list[int], one: str, many: str) -> str:
    """ "item 3 is not" / "items 3, 5 are not": the items (by position) that make a mistake."""
    if len(positions) == 1:
        return f"item {positions[0]} {one}"
    return f"items {_listed(positions)} {many}"


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _clean_items(items) -> list[tuple[int, str, float]]:
    """(image id, class name, confidence) of each item; the first kind of mistake found is a 400 naming
    the items (by position, from 0) that make it."""
    limit = settings.SIMLABEL_MAX_PREDICTION_ITEMS
    if not isinstance(items, list) or not items:
        raise ValidationFailed("items must be a non-empty list of {image_id, class, confidence}.", field="items")
    if len(items) > limit:
        raise ValidationFailed(
            f"One upload may hold at most {limit} items (SIMLABEL_MAX_PREDICTION_ITEMS); this one has {len(items)}.",
            field="items",
        )
    shape, ids, names, confidences = [], [], [], []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != ITEM_KEYS:
            shape.append(n)
            continue
        image_id, name, confidence = item["image_id"], item["class"], item["confidence"]
        if not isinstance(image_id, int) or isinstance(image_id, bool) or not 0 < image_id < 2**63:
            ids.append(n)
        elif not isinstance(name, str) or not name.strip() or len(name) > 100:
            names.append(n)
        elif not _is_number(confidence) or not math.isfinite(confidence) or not 0.0 <= confidence <= 1.0:
            confidences.append(n)
    if shape:
        raise ValidationFailed(
            f"Each item must be an object with exactly image_id, class and confidence; {_items_that(shape, 'is not', 'are not')}.",
            field="items",
        )
    if ids:
        raise ValidationFailed(
            f"image_id must be a positive integer; {_items_that(ids, 'has none', 'have none')}.", field="items"
        )
    if names:
        raise ValidationFailed(
            f"class must be a class name; {_items_that(names, 'has none', 'have none')}.", field="items"
        )
    if confidences:
        raise ValidationFailed(
            f"confidence must be a finite number from 0 to 1; {_items_that(confidences, 'is not', 'are not')}.",
            field="items",
        )
    return [(item["image_id"], item["class"].strip(), float(item["confidence"])) for item in items]


def predictions_upload(*, dataset: Dataset, model: str, items, create_classes: bool = False) -> PredictionUploadReport:
    """Stores `model`'s predictions for the dataset's images, replacing that model's earlier ones.

    All or nothing: any bad item, an image of another dataset (or none), an image listed twice, or
    (without `create_classes`) a class the dataset lacks is a 400 and nothing changes. Whether the
    user may create classes is the caller's check (manage_classes).
    """
    model = model_name_clean(model)
    rows = _clean_items(items)
    seen: set[int] = set()
    repeated: set[int] = set()
    for image_id, _, _ in rows:
        (repeated if image_id in seen else seen).add(image_id)
    if repeated:
        raise ValidationFailed(
            f"One item per image: images {_listed(sorted(repeated))} are listed more than once.", field="items"
        )
    # The check every list-taking write uses: one query on PostgreSQL, chunks within SQLite's parameter limit.
    images_check_in_dataset(dataset_id=dataset.pk, image_ids=sorted(seen))

    report = PredictionUploadReport(model=model)
    with transaction.atomic():
        # Two uploads of one dataset's predictions take turns: each replaces a model's rows as a whole.
        Dataset.objects.select_for_update().filter(pk=dataset.pk).values_list("pk", flat=True).first()
        known, report.created_classes = label_classes_for_names(
            dataset=dataset,
            names={name for _, name, _ in rows},
            create_classes=create_classes,
            named_by="The predictions name",
            write="upload",
        )
        report.replaced, _ = Prediction.objects.filter(dataset=dataset, model=model).delete()
        Prediction.objects.bulk_create(
            (
                Prediction(
                    dataset=dataset, image_id=image_id, model=model, label_class_id=known[name], confidence=confidence
                )
                for image_id, name, confidence in rows
            ),
            batch_size=INSERT_BATCH,
        )
        report.stored = len(rows)
    return report


def predictions_delete(*, dataset: Dataset, model: str) -> int:
    """Deletes `model`'s predictions for the dataset; how many there were (0: the caller answers 404)."""
    deleted, _ = Prediction.objects.filter(dataset=dataset, model=model).delete()
    return deleted
