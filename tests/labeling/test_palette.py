"""Class colors: none looks like the map's unlabeled gray, the demo's ten are told apart,
and the pages draw unlabeled points in the same gray the palette is checked against."""

import io
import itertools
from pathlib import Path

import pytest
from django.core.management import call_command

from labeling.palette import CLASS_PALETTE, UNLABELED_COLOR

REPO = Path(__file__).resolve().parents[2]
# CIE76 ΔE in CIELAB: about 2.3 is just noticeable; under about 20 two map dots read as the same color.
MIN_FROM_UNLABELED = 30
MIN_DEMO_PAIR = 25
MIN_ANY_PAIR = 20


def lab(hex_color: str) -> tuple[float, float, float]:
    """sRGB hex → CIELAB (D65)."""
    rgb = [int(hex_color.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t):
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def delta_e(a: str, b: str) -> float:
    return sum((p - q) ** 2 for p, q in zip(lab(a), lab(b))) ** 0.5


@pytest.mark.parametrize("color", CLASS_PALETTE)
def test_no_class_color_looks_unlabeled(color):
    assert delta_e(color, UNLABELED_COLOR) >= MIN_FROM_UNLABELED, color


def test_palette_colors_are_told_apart():
    assert len(set(CLASS_PALETTE)) == len(CLASS_PALETTE)
    for a, b in itertools.combinations(CLASS_PALETTE[:10], 2):
        assert delta_e(a, b) >= MIN_DEMO_PAIR, (a, b)
    for a, b in itertools.combinations(CLASS_PALETTE, 2):
        assert delta_e(a, b) >= MIN_ANY_PAIR, (a, b)


def test_pages_draw_unlabeled_in_the_checked_gray():
    for script in ("static/js/map.js", "static/js/common.js"):
        text = (REPO / script).read_text()
        assert UNLABELED_COLOR in text, script


def test_new_classes_take_palette_colors(db, make_user, make_dataset):
    from labeling.services.datasets import label_class_create
    from labeling.services.images import CLASS_COLORS

    assert CLASS_COLORS == CLASS_PALETTE
    dataset = make_dataset("Colors", admin=make_user())
    made = [label_class_create(dataset=dataset, name=str(i)) for i in range(10)]
    assert [c.color for c in made] == CLASS_PALETTE[:10]


def test_seed_demo_recolors_a_gray_demo_class(db, fresh_media, settings, tmp_path):
    from labeling.models import LabelClass

    settings.VAR_DIR = tmp_path / "var"
    call_command("seed_demo", "--limit", "3", "--no-progress", stdout=io.StringIO())
    classes = {c.name: c for c in LabelClass.objects.filter(dataset__name="Handwritten digits (demo)")}
    assert [classes[str(d)].color for d in range(10)] == CLASS_PALETTE[:10]
    # A demo seeded by an older version kept Tableau's gray for class 7; a user's own color stays.
    LabelClass.objects.filter(pk=classes["7"].pk).update(color="#7f7f7f")
    LabelClass.objects.filter(pk=classes["3"].pk).update(color="#123456")
    call_command("seed_demo", "--limit", "3", "--no-progress", stdout=io.StringIO())
    assert LabelClass.objects.get(pk=classes["7"].pk).color == CLASS_PALETTE[7]
    assert LabelClass.objects.get(pk=classes["3"].pk).color == "#123456"
