import numpy as np
import pytest

from embeddings.ml.geometry import (
    MAX_POLYGON_VERTICES,
    PolygonError,
    points_in_polygon,
    polygon_points,
)


def test_polygon_points_accepts_lists_of_pairs():
    points = polygon_points([[0, 0], [1, 0], [0.5, 2]])
    assert points.dtype == np.float64 and points.shape == (3, 2)


@pytest.mark.parametrize(
    "polygon",
    [
        [[0, 0], [1, 1]],  # too few points
        "abc",
        None,
        [[0, 0], [1, "x"], [2, 2]],
        [[0, 0, 0]] * 3,
        [[0, 0], [1, float("inf")], [2, 2]],
        [[0, 0], [1, float("nan")], [2, 2]],
        [[0, 0]] * (MAX_POLYGON_VERTICES + 1),
    ],
)
def test_polygon_points_refuses_what_is_not_a_polygon(polygon):
    with pytest.raises(PolygonError):
        polygon_points(polygon)


def test_concave_polygon_selects_only_its_inside():
    # an L shape: the bottom row and the left column of a 3x3 grid
    polygon = np.array([[-0.5, -0.5], [2.5, -0.5], [2.5, 0.5], [0.5, 0.5], [0.5, 2.5], [-0.5, 2.5]])
    gx, gy = np.meshgrid(np.arange(3.0), np.arange(3.0))
    x, y = gx.ravel(), gy.ravel()
    inside = points_in_polygon(x, y, polygon)
    assert inside.dtype == bool and inside.shape == (9,)
    assert set(zip(x[inside].tolist(), y[inside].tolist())) == {(0, 0), (1, 0), (2, 0), (0, 1), (0, 2)}


def test_points_outside_the_bounding_box_and_empty_input():
    triangle = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert not points_in_polygon(np.array([5.0, -3.0]), np.array([5.0, 0.2]), triangle).any()
    assert points_in_polygon(np.zeros(0), np.zeros(0), triangle).shape == (0,)


def test_points_in_polygon_matches_a_brute_force_check():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-1, 1, 5000), rng.uniform(-1, 1, 5000)
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    hexagon = np.c_[0.8 * np.cos(angles), 0.8 * np.sin(angles)]
    inside = points_in_polygon(x, y, hexagon)
    # inside a regular hexagon = on the inner side of all six edges
    expected = np.ones_like(inside)
    for i in range(6):
        (x1, y1), (x2, y2) = hexagon[i], hexagon[(i + 1) % 6]
        expected &= (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) > 0
    assert (inside == expected).mean() > 0.999
