"""Reading uploaded model predictions: the models of a dataset, one model's columns, one image's list."""

from __future__ import annotations

import numpy as np
from django.db.models import Count, Max
from django.http import Http404

from labeling.models import Dataset, Image, LabelClass, Prediction

MODEL_SOURCE_PREFIX = "model:"
SPREADING = "spreading"


def dataset_prediction_models(dataset: Dataset) -> list[dict]:
    """[{model, count, uploaded}] of the dataset's models, by name; uploaded: the latest upload's time."""
    rows = (
        Prediction.objects.filter(dataset=dataset)
        .values("model")
        .annotate(count=Count("id"), uploaded=Max("created_at"))
        .order_by("model")
    )
    return [{"model": r["model"], "count": r["count"], "uploaded": r["uploaded"]} for r in rows]


def model_predictions_columns(dataset: Dataset, model: str) -> dict:
    """{model, image_ids, class, confidence}: one model's predictions as columns, by image id; 404 if none."""
    rows = list(
        Prediction.objects.filter(dataset=dataset, model=model)
        .order_by("image_id")
        .values_list("image_id", "label_class_id", "confidence")
    )
    if not rows:
        raise Http404("This dataset has no predictions of that model.")
    image_ids, classes, confidences = zip(*rows, strict=True)
    return {
        "model": model,
        "image_ids": list(image_ids),
        "class": list(classes),
        "confidence": [round(c, 4) for c in confidences],
    }


def image_predictions(image: Image) -> list[dict]:
    """Each model's prediction for the image: [{model, class, class_name, color, confidence, created}]."""
    rows = (
        Prediction.objects.filter(image=image)
        .order_by("model")
        .values_list("model", "label_class_id", "label_class__name", "label_class__color", "confidence", "created_at")
    )
    return [
        {"model": m, "class": c, "class_name": name, "color": color, "confidence": conf, "created": created}
        for m, c, name, color, conf, created in rows
    ]


def prediction_suggestions(
    *, dataset: Dataset, model: str, min_confidence: float = 0.0, label_class: LabelClass | None = None
) -> dict[int, int]:
    """{image id: predicted class id} of `model`'s predictions at or above min_confidence (and of
    `label_class` when given); a model without predictions in the dataset is a 400 for the caller."""
    rows = Prediction.objects.filter(dataset=dataset, model=model, confidence__gte=min_confidence)
    if label_class is not None:
        rows = rows.filter(label_class=label_class)
    return dict(rows.values_list("image_id", "label_class_id"))


def model_of_source(source) -> str | None:
    """The model a suggestion source names ("model:<name>"), or None for the neighbors' ("spreading")."""
    if source is None or source == SPREADING:
        return None
    if isinstance(source, str) and source.startswith(MODEL_SOURCE_PREFIX):
        return source[len(MODEL_SOURCE_PREFIX) :]
    return ""  # neither: the caller's 400


def dataset_has_model(dataset: Dataset, model: str) -> bool:
    return Prediction.objects.filter(dataset=dataset, model=model).exists()


def prediction_columns_for_images(dataset: Dataset, image_ids: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per model: (name, class id per row of `image_ids` (-1: none), confidence per row (0: none)).

    The review queue reads these against the map's rows; images off the map are left out.
    """
    image_ids = np.asarray(image_ids, dtype=np.int64)
    order = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[order]
    by_model: dict[str, list[tuple[int, int, float]]] = {}
    rows = (
        Prediction.objects.filter(dataset=dataset)
        .order_by()
        .values_list("model", "image_id", "label_class_id", "confidence")
    )
    for model, image_id, class_id, confidence in rows.iterator(chunk_size=10000):
        by_model.setdefault(model, []).append((image_id, class_id, confidence))
    out = []
    for model in sorted(by_model):
        ids, classes, confidences = (np.asarray(col) for col in zip(*by_model[model], strict=True))
        classes_col = np.full(len(image_ids), -1, dtype=np.int64)
        confidence_col = np.zeros(len(image_ids), dtype=np.float64)
        if len(sorted_ids):
            at = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
            hit = sorted_ids[at] == ids
            rows_hit = order[at[hit]]
            classes_col[rows_hit] = classes[hit]
            confidence_col[rows_hit] = confidences[hit]
        out.append((model, classes_col, confidence_col))
    return out
