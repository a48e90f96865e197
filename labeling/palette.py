"""Class colors: the one palette new classes take their color from, and the gray of unlabeled images.

The map draws unlabeled points in UNLABELED_COLOR (static/js/map.js and common.js
use the same value), so no palette color may look like it: Tableau 10's gray
(#7f7f7f, the demo's class 7) and #636363 are out. The first ten (the demo's
digits) are pairwise at least 25 apart in CIELAB, every color at least 30 from
the unlabeled gray (tests/labeling/test_palette.py).
"""

UNLABELED_COLOR = "#adb5bd"

CLASS_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#393b79",
    "#bcbd22",
    "#17becf",
    "#e7ba52",
    "#637939",
    "#7b4173",
    "#0b5d5e",
    "#f032e6",
    "#5c2a00",
    "#00b37e",
    "#4b0082",
    "#c2185b",
    "#ff9da7",
]

# Grays earlier versions gave classes automatically; seed_demo recolors demo classes still wearing them.
RETIRED_GRAYS = frozenset({"#7f7f7f", "#636363"})
