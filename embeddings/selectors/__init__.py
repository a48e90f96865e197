"""Reads for the map, clusters, similar images and runs (HackSoft-style selectors: no writes).

One module per idea; callers import the names from here:

- runs: the current map's run, the active run, a dataset's runs, a run's status;
- columns: reading a run's columns with one value per query (SQL);
- run_arrays: a run's arrays cached in-process and in the Django cache, the
  labels and suggestions aligned with them, and the run's near-duplicate pairs;
- map: the map's columnar JSON, gzip and ETag, and the caches that keep it cheap;
- clusters: the current map's clusters;
- images: the lasso selection, one image's place on the map, similar images.

Writes (reaping stale runs, storing artifacts) are services in
embeddings.services; the reconstruction preview, which runs the model, is
embeddings.services.preview.
"""

from .clusters import cluster_image_ids, dataset_clusters
from .images import (
    clean_polygon,
    image_ids_in_polygon,
    image_map_position,
    image_similar,
)
from .map import (
    EncodedMap,
    clear_run_cache,
    dataset_map_encoded,
    dataset_map_points,
    map_cache_warm,
)
from .map_binary import dataset_map_binary
from .run_arrays import (
    CACHE_PREFIX,
    NEAR_DUPLICATES,
    MapColumns,
    RunArrays,
    current_map_columns,
    map_columns,
    run_arrays,
    run_cache_key,
    run_near_duplicates,
)
from .runs import active_run, current_run, dataset_runs, run_status

__all__ = [
    "CACHE_PREFIX",
    "NEAR_DUPLICATES",
    "EncodedMap",
    "MapColumns",
    "RunArrays",
    "active_run",
    "clean_polygon",
    "clear_run_cache",
    "cluster_image_ids",
    "current_map_columns",
    "current_run",
    "dataset_clusters",
    "dataset_map_binary",
    "dataset_map_encoded",
    "dataset_map_points",
    "dataset_runs",
    "image_ids_in_polygon",
    "image_map_position",
    "image_similar",
    "map_cache_warm",
    "map_columns",
    "run_arrays",
    "run_cache_key",
    "run_near_duplicates",
    "run_status",
]
