"""The lasso polygon has one check (embeddings.ml.geometry via embeddings.selectors.clean_polygon), and a
label write reports a bad polygon before it reports that the dataset has no map."""

import pytest

from core.errors import ValidationFailed
from embeddings.ml.geometry import MAX_POLYGON_VERTICES
from labeling.services.annotations import annotations_apply_polygon


@pytest.mark.parametrize(
    "polygon",
    [
        "not a list",
        [[0, 0], [1, 1]],
        [[0, 0, 1], [1, 1], [2, 2]],
        [[0, 0], [1, "x"], [2, 2]],
        [[0, 0], [1, float("nan")], [2, 2]],
        [[0, 0]] * (MAX_POLYGON_VERTICES + 1),
    ],
)
def test_a_bad_polygon_is_refused_before_the_missing_map(polygon, make_user, make_dataset):
    admin = make_user("alice")
    dataset = make_dataset("no map yet", admin=admin)
    with pytest.raises(ValidationFailed) as caught:
        annotations_apply_polygon(dataset=dataset, user=admin, label_class=None, polygon=polygon)
    assert caught.value.details.get("field") == "polygon"


def test_a_good_polygon_without_a_map_says_so(make_user, make_dataset):
    admin = make_user("alice")
    dataset = make_dataset("no map yet", admin=admin)
    with pytest.raises(ValidationFailed, match="no map yet"):
        annotations_apply_polygon(dataset=dataset, user=admin, label_class=None, polygon=[[0, 0], [1, 0], [0, 1]])
