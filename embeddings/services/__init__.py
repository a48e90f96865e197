"""Writes for the pipeline: runs (start, cancel, execute, reap), placing new images, and suggestions.

The contract names live here; the modules behind them hold one idea each.
"""

from .helper_chunks import neighbor_chunk_execute
from .near_duplicates import run_near_duplicates_add, run_near_duplicates_store
from .params import run_params_validate
from .pipeline import embedding_chunk_execute, run_map_cache_warm, training_run_execute
from .placement import images_place_execute, images_place_on_current_map
from .retrain import retrain_schedule_auto, training_run_start_auto
from .runs import (
    runs_fail_stale,
    training_run_cancel,
    training_run_check_liveness,
    training_run_start,
)
from .suggestions import (
    dataset_labels_changed,
    suggestions_recompute,
    suggestions_recompute_if_stale,
    suggestions_schedule_recompute,
)

__all__ = [
    "dataset_labels_changed",
    "embedding_chunk_execute",
    "images_place_execute",
    "images_place_on_current_map",
    "neighbor_chunk_execute",
    "retrain_schedule_auto",
    "run_map_cache_warm",
    "run_near_duplicates_add",
    "run_near_duplicates_store",
    "run_params_validate",
    "runs_fail_stale",
    "suggestions_recompute",
    "suggestions_recompute_if_stale",
    "suggestions_schedule_recompute",
    "training_run_cancel",
    "training_run_check_liveness",
    "training_run_execute",
    "training_run_start",
    "training_run_start_auto",
]
