"""Polygons drawn on the map: checking that one is usable, and which points lie inside it.

Pure numpy.  The one check of a lasso polygon is polygon_points; callers that
answer HTTP turn its PolygonError into a 400 naming the polygon field.
"""

from __future__ import annotations

import numpy as np

# A lasso on a map of 100,000 points needs far fewer; the cap bounds the work one request can ask for.
MAX_POLYGON_VERTICES = 10_000


class PolygonError(ValueError):
    """The polygon cannot be used; the message says why, in the API's words."""


def polygon_points(polygon, *, max_vertices: int = MAX_POLYGON_VERTICES) -> np.ndarray:
    """The polygon as float64 (N, 2): at least 3 [x, y] points of finite numbers, at most max_vertices.

    The length is checked before any conversion, so a huge input costs nothing.
    """
    if isinstance(polygon, (str, bytes)) or not hasattr(polygon, "__len__"):
        raise PolygonError("polygon must be a list of [x, y] points.")
    if len(polygon) > max_vertices:
        raise PolygonError(f"polygon has too many points (at most {max_vertices}).")
    try:
        points = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError):
        raise PolygonError("polygon must be a list of [x, y] points.") from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise PolygonError("polygon needs at least 3 [x, y] points.")
    if not np.isfinite(points).all():
        raise PolygonError("polygon coordinates must be finite numbers.")
    return points


def points_in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of the points (x[i], y[i]) inside the polygon (even-odd rule).

    Only points inside the polygon's bounding box are tested against its edges,
    vectorised over those points, one edge at a time.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    polygon = np.asarray(polygon, dtype=np.float64)
    mask = np.zeros(len(x), dtype=bool)
    (xmin, ymin), (xmax, ymax) = polygon.min(axis=0), polygon.max(axis=0)
    in_box = np.flatnonzero((x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax))
    if len(in_box) == 0:
        return mask
    bx, by = x[in_box], y[in_box]
    inside = np.zeros(len(in_box), dtype=bool)
    px, py = polygon[:, 0], polygon[:, 1]
    j = len(polygon) - 1
    for i in range(len(polygon)):
        xi, yi, xj, yj = px[i], py[i], px[j], py[j]
        crosses = (yi > by) != (yj > by)
        if crosses.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = (xj - xi) * (by - yi) / (yj - yi) + xi
            inside ^= crosses & (bx < x_at)
        j = i
    mask[in_box[inside]] = True
    return mask
