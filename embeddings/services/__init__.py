"""Writes for the pipeline: runs (start, cancel, execute, reap) and placing new images.

The contract names live here; the modules behind them hold one idea each.
"""
from .params import run_params_validate
from .near_duplicates import run_near_duplicates_add, run_near_duplicates_store
from .pipeline import embedding_chunk_execute, run_map_cache_warm, training_run_execute
from .placement import images_place_execute, images_place_on_current_map
from .runs import (
    runs_fail_stale,
    training_run_cancel,
    training_run_check_liveness,
    training_run_start,
)

__all__ = [
    "embedding_chunk_execute",
    "images_place_execute",
    "images_place_on_current_map",
    "run_map_cache_warm",
    "run_near_duplicates_add",
    "run_near_duplicates_store",
    "run_params_validate",
    "runs_fail_stale",
    "training_run_cancel",
    "training_run_check_liveness",
    "training_run_execute",
    "training_run_start",
]
