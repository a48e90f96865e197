"""Writes for the pipeline: runs (start, cancel, execute, reap) and placing new images.

The contract names live here; the modules behind them hold one idea each.
"""
from .params import run_params_validate
from .pipeline import embedding_chunk_execute, training_run_execute
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
    "run_params_validate",
    "runs_fail_stale",
    "training_run_cancel",
    "training_run_check_liveness",
    "training_run_execute",
    "training_run_start",
]
