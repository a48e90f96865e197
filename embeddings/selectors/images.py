"""Reads about images on the current map: which a lasso polygon selects, where one is, which are like it."""

from __future__ import annotations

import numpy as np

from core.errors import ValidationFailed
from embeddings.ml.geometry import PolygonError, points_in_polygon, polygon_points
from embeddings.models import ImageEmbedding
from labeling.models import Annotation

from .run_arrays import run_arrays
from .runs import current_run


def clean_polygon(polygon) -> np.ndarray:
    """The one check of a lasso polygon for the API: float64 (N, 2), or ValidationFailed (400) on "polygon"."""
    try:
        return polygon_points(polygon)
    except PolygonError as exc:
        raise ValidationFailed(str(exc), field="polygon") from None


def image_ids_in_polygon(dataset, polygon) -> list[int]:
    """Images of the current map inside a polygon drawn on the map (map coordinates)."""
    points = clean_polygon(polygon)
    run = current_run(dataset)
    if run is None:
        return []
    arrays = run_arrays(run)
    return arrays.image_ids[points_in_polygon(arrays.x, arrays.y, points)].tolist()


def image_map_position(image) -> dict | None:
    run = current_run(image.dataset_id)
    if run is None:
        return None
    row = (
        ImageEmbedding.objects.filter(run=run, image_id=image.pk)
        .values_list(
            "x",
            "y",
            "cluster",
            "suggested_class_id",
            "suggestion_confidence",
            "reconstruction_error",
            "placed_after_run",
        )
        .first()
    )
    if row is None:
        return None
    # The keys of labeling.selectors.image_positions (the API's names), and two the image page shows.
    return {
        "run": run.pk,
        "x": row[0],
        "y": row[1],
        "cluster": row[2],
        "suggestion": row[3],
        "confidence": row[4],
        "reconstruction_error": row[5],
        "placed_after_run": row[6],
    }


def image_similar(image, k: int = 20) -> list[dict]:
    """The k images nearest to this one in code space on the current map (itself excluded)."""
    k = max(1, min(int(k), 200))
    run = current_run(image.dataset_id)
    if run is None:
        return []
    arrays = run_arrays(run)
    row = arrays.row_of(image.pk)
    if row is None or len(arrays.image_ids) < 2:
        return []
    index = arrays.neighbor_index()
    indices, distances = index.query(row, min(k, len(arrays.image_ids) - 1))
    # NaN: an embedding deleted since the run's codes were cached.
    found = np.isfinite(distances)
    indices, distances = np.asarray(indices, dtype=np.int64)[found], np.asarray(distances)[found]
    ids = arrays.image_ids[indices].tolist()
    classes = dict(Annotation.objects.filter(image_id__in=ids).values_list("image_id", "label_class_id"))
    return [{"id": i, "distance": round(float(d), 5), "class": classes.get(i)} for i, d in zip(ids, distances)]
