"""Reads for the map, clusters, similar images and run status.

Hot paths (the map, similar images, lasso selection) read each run's columns
once and keep them in memory and in the Django cache, keyed by (run id,
placed_count): a run's positions and codes never change after it succeeds,
except by placing new images, which bumps placed_count.  Labels and
suggestions are read fresh, with a fixed number of queries whatever the size
of the dataset.  The map's JSON is assembled from per-run pre-encoded (and
pre-compressed) text, so a request at 100,000 images costs a few database
reads and the encoding of what changed.  bench/api_speed.py measures it.
"""
from __future__ import annotations

import base64
import gzip as gzip_module
import hashlib
import io
import json
import logging
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.core.cache import cache
from django.db import connection

from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
from labeling.errors import ValidationFailed

log = logging.getLogger(__name__)

# --- runs -------------------------------------------------------------------------------------


def current_run(dataset) -> TrainingRun | None:
    """The dataset's current map: its newest succeeded run."""
    dataset_id = getattr(dataset, "pk", dataset)
    return TrainingRun.objects.filter(dataset_id=dataset_id, status=RunStatus.SUCCEEDED).order_by("-id").first()


def active_run(dataset) -> TrainingRun | None:
    from embeddings.services import runs_fail_stale

    dataset_id = getattr(dataset, "pk", dataset)
    runs_fail_stale(dataset_id=dataset_id)
    return TrainingRun.objects.filter(dataset_id=dataset_id, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).first()


def dataset_runs(dataset):
    """Runs of a dataset, newest first (dead workers' runs already marked failed)."""
    from embeddings.services import runs_fail_stale

    runs_fail_stale(dataset_id=dataset.pk)
    return TrainingRun.objects.filter(dataset=dataset).order_by("-id")


def run_status(run: TrainingRun, *, with_detail: bool = False) -> dict:
    """What a status poll shows.  Checks the worker is alive first (one cheap UPDATE).

    Every member sees the error's one-line reason; with_detail (the dataset's
    admins) adds the traceback and the worker's host and pid.
    """
    from embeddings.services import training_run_check_liveness

    run = training_run_check_liveness(run=run)
    current = current_run(run.dataset_id)
    detail = {}
    if with_detail:
        # Runs failed before error_detail existed kept their traceback in error.
        legacy = run.error if run.error.strip() != run.error_reason else ""
        detail = {"worker": run.worker, "error_detail": run.error_detail or legacy}
    return {
        **detail,
        "id": run.pk,
        "dataset": run.dataset_id,
        "status": run.status,
        "stage": run.stage,
        "progress": run.progress,
        "params": run.params,
        "metrics": run.metrics,
        "loss_curve": run.loss_curve,
        "stage_timings": run.stage_timings,
        "error": run.error_reason,
        "cancel_requested": run.cancel_requested,
        "attempts": run.attempts,
        "heartbeat_at": run.heartbeat_at,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "input_size": run.input_size,
        "channels": run.channels,
        "image_count": run.image_count,
        "cluster_count": run.cluster_count,
        "placed_count": run.placed_count,
        "is_current": current is not None and current.pk == run.pk,
    }


# --- reading columns fast ------------------------------------------------------------------------
# A run's columns are read with ONE value per query: on PostgreSQL the rows are
# packed server-side into a single bytea (int8send/float8send, big-endian) that
# numpy reads without creating a Python object per row.  At 100,000 images this
# is several times faster than fetching 100,000 tuples.  Other databases (SQLite
# in development) fetch plain rows.

_POSITIONS = np.dtype([("image_id", ">i8"), ("x", ">f8"), ("y", ">f8"), ("cluster", ">i4")])
_SUGGESTIONS = np.dtype([("image_id", ">i8"), ("suggestion", ">i8"), ("confidence", ">f8")])
_LABELS = np.dtype([("image_id", ">i8"), ("label", ">i8"), ("version", ">i4")])


def _on_postgres() -> bool:
    return connection.vendor == "postgresql"


def _packed(sql: str, params) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""


def _rows(sql: str, params) -> list:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _records(rows: list, dtype: np.dtype, missing: dict) -> np.ndarray:
    """Rows from a plain fetch as a record array; None becomes missing[field]."""
    out = np.zeros(len(rows), dtype=dtype.newbyteorder("="))
    for i, name in enumerate(dtype.names):
        default = missing.get(name)
        out[name] = np.fromiter((default if r[i] is None else r[i] for r in rows), dtype=out.dtype[name],
                                count=len(rows))
    return out


def _read_positions(run_id: int) -> np.ndarray:
    """(image_id, x, y, cluster) of the run's images, by image id."""
    table = ImageEmbedding._meta.db_table
    if _on_postgres():
        # Unordered: sorting 100,000 ids in numpy is cheaper than an ordered aggregate.
        blob = _packed(
            f"SELECT string_agg(int8send(image_id::int8) || float8send(x) || float8send(y) || int4send(cluster), "
            f"''::bytea) FROM {table} WHERE run_id = %s",
            [run_id],
        )
        records = np.frombuffer(blob, dtype=_POSITIONS)
        return records[np.argsort(records["image_id"], kind="stable")]
    rows = _rows(f"SELECT image_id, x, y, cluster FROM {table} WHERE run_id = %s ORDER BY image_id", [run_id])
    return _records(rows, _POSITIONS, {})


def _read_suggestions(run_id: int) -> np.ndarray:
    """(image_id, suggested class id, confidence) of the run's images that have a suggestion."""
    table = ImageEmbedding._meta.db_table
    if _on_postgres():
        blob = _packed(
            f"SELECT string_agg(int8send(image_id::int8) || int8send(suggested_class_id::int8) || "
            f"float8send(COALESCE(suggestion_confidence, 'NaN'::float8)), ''::bytea) "
            f"FROM {table} WHERE run_id = %s AND suggested_class_id IS NOT NULL",
            [run_id],
        )
        return np.frombuffer(blob, dtype=_SUGGESTIONS)
    rows = _rows(
        f"SELECT image_id, suggested_class_id, suggestion_confidence FROM {table} "
        f"WHERE run_id = %s AND suggested_class_id IS NOT NULL",
        [run_id],
    )
    return _records(rows, _SUGGESTIONS, {"confidence": np.nan})


def _read_labels(dataset_id: int) -> np.ndarray:
    """(image_id, class id or -1, annotation version) of the dataset's annotation rows.

    Unlabelled rows are read too: a cleared or undone image has a version above
    0, and a browser must send the version it saw to write it (409 otherwise).
    """
    from labeling.models import Annotation

    table = Annotation._meta.db_table
    if _on_postgres():
        blob = _packed(
            f"SELECT string_agg(int8send(image_id::int8) || int8send(COALESCE(label_class_id, -1)::int8) || "
            f"int4send(version::int4), ''::bytea) FROM {table} WHERE dataset_id = %s",
            [dataset_id],
        )
        return np.frombuffer(blob, dtype=_LABELS)
    rows = _rows(f"SELECT image_id, label_class_id, version FROM {table} WHERE dataset_id = %s", [dataset_id])
    return _records(rows, _LABELS, {"label": -1})


def _read_codes(run_id: int, image_ids: np.ndarray) -> np.ndarray:
    """The run's codes as float32 (N, D), row i for image_ids[i] (sorted).

    A row whose embedding is gone (its image was deleted since) is NaN, which
    sorts after every real distance.
    """
    table = ImageEmbedding._meta.db_table
    if _on_postgres():
        blob = _packed(f"SELECT string_agg(int8send(image_id::int8) || code, ''::bytea) FROM {table} WHERE run_id = %s",
                       [run_id])
        rows = _rows(f"SELECT octet_length(code) FROM {table} WHERE run_id = %s LIMIT 1", [run_id]) if blob else []
        code_bytes = int(rows[0][0]) if rows else 0
        records = np.frombuffer(blob, dtype=np.dtype([("image_id", ">i8"), ("code", "<f4", (code_bytes // 4,))]))
        ids, codes = records["image_id"].astype(np.int64), records["code"]
    else:
        fetched = _rows(f"SELECT image_id, code FROM {table} WHERE run_id = %s", [run_id])
        ids = np.fromiter((r[0] for r in fetched), dtype=np.int64, count=len(fetched))
        codes = np.stack([np.frombuffer(bytes(r[1]), dtype="<f4") for r in fetched]) if fetched else None
    if codes is None or len(ids) == 0:
        return np.zeros((len(image_ids), 0), dtype=np.float32)
    out = np.full((len(image_ids), codes.shape[1]), np.nan, dtype=np.float32)
    if len(image_ids):
        rows = np.clip(np.searchsorted(image_ids, ids), 0, len(image_ids) - 1)
        hit = image_ids[rows] == ids
        out[rows[hit]] = codes[hit]
    return out


def _read_reconstruction_errors(run_id: int, image_ids: np.ndarray) -> np.ndarray:
    table = ImageEmbedding._meta.db_table
    if _on_postgres():
        blob = _packed(
            f"SELECT string_agg(int8send(image_id::int8) || float8send(COALESCE(reconstruction_error, 'NaN'::float8)), "
            f"''::bytea) FROM {table} WHERE run_id = %s",
            [run_id],
        )
        records = np.frombuffer(blob, dtype=np.dtype([("image_id", ">i8"), ("error", ">f8")]))
        ids, errors = records["image_id"].astype(np.int64), records["error"].astype(np.float64)
    else:
        rows = _rows(f"SELECT image_id, reconstruction_error FROM {table} WHERE run_id = %s", [run_id])
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        errors = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=len(rows))
    out = np.full(len(image_ids), np.nan, dtype=np.float64)
    if len(image_ids) and len(ids):
        rows_ = np.clip(np.searchsorted(image_ids, ids), 0, len(image_ids) - 1)
        hit = image_ids[rows_] == ids
        out[rows_[hit]] = errors[hit]
    return out


# --- per-run arrays, cached in-process and in the Django cache ---------------------------------------
# A run's positions, clusters and codes never change after it succeeds, except
# by placing new images, which bumps placed_count: (run id, placed_count,
# created_at) identifies one version of them.  (created_at guards against a
# reused id, e.g. SQLite after a rollback.)  The Django cache shares them
# between web processes when it is Redis (CACHE_URL), so a new process does not
# go back to the database.

CACHED_RUNS = 4
CACHE_TIMEOUT_S = 24 * 3600
CACHE_PREFIX = "simlabel:run:v2"


def _run_key(run: TrainingRun) -> str:
    created = int(run.created_at.timestamp() * 1_000_000) if run.created_at else 0
    return f"{run.pk}:{run.placed_count}:{created}"


def _shared_get(key: str):
    try:
        return cache.get(f"{CACHE_PREFIX}:{key}")
    except Exception:  # a cache outage must not take the map down: read the database instead
        log.warning("cache read failed for %s", key, exc_info=True)
        return None


def _shared_set(key: str, value) -> None:
    try:
        cache.set(f"{CACHE_PREFIX}:{key}", value, timeout=CACHE_TIMEOUT_S)
    except Exception:
        log.warning("cache write failed for %s", key, exc_info=True)


@dataclass
class RunArrays:
    run_id: int
    image_ids: np.ndarray  # int64, sorted
    x: np.ndarray  # float64
    y: np.ndarray
    cluster: np.ndarray  # int32
    key: str = ""
    _codes: np.ndarray | None = None
    _errors: np.ndarray | None = None
    _duplicates: np.ndarray | None = None
    _index: object = None
    _static: "StaticMap | None" = None

    def row_of(self, image_id: int) -> int | None:
        i = int(np.searchsorted(self.image_ids, image_id))
        if i < len(self.image_ids) and self.image_ids[i] == image_id:
            return i
        return None

    def rows_of(self, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, hit): the row of each id in this run, and which ids are in it at all."""
        if len(self.image_ids) == 0 or len(image_ids) == 0:
            return np.zeros(len(image_ids), dtype=np.int64), np.zeros(len(image_ids), dtype=bool)
        rows = np.clip(np.searchsorted(self.image_ids, image_ids), 0, len(self.image_ids) - 1)
        return rows, self.image_ids[rows] == image_ids

    def codes(self) -> np.ndarray:
        if self._codes is None:
            codes = _shared_get(f"{self.key}:codes") if self.key else None
            if codes is None:
                codes = _read_codes(self.run_id, self.image_ids)
                if self.key:
                    _shared_set(f"{self.key}:codes", codes)
            self._codes = codes
        return self._codes

    def reconstruction_errors(self) -> np.ndarray:
        """float64 per row (NaN where unknown); like positions, fixed per run version."""
        if self._errors is None:
            errors = _shared_get(f"{self.key}:errors") if self.key else None
            if errors is None:
                errors = _read_reconstruction_errors(self.run_id, self.image_ids)
                if self.key:
                    _shared_set(f"{self.key}:errors", errors)
            self._errors = errors
        return self._errors

    def neighbour_index(self):
        if self._index is None:
            from embeddings.ml.neighbours import NeighbourIndex

            self._index = NeighbourIndex(self.codes())
        return self._index


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def run_arrays(run: TrainingRun) -> RunArrays:
    key = _run_key(run)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    shared = _shared_get(f"{key}:positions")
    if shared is None:
        records = _read_positions(run.pk)
        shared = {
            "image_ids": records["image_id"].astype(np.int64),
            "x": records["x"].astype(np.float64),
            "y": records["y"].astype(np.float64),
            "cluster": records["cluster"].astype(np.int32),
        }
        _shared_set(f"{key}:positions", shared)
    arrays = RunArrays(run_id=run.pk, key=key, **shared)
    with _cache_lock:
        # Older placed_count versions of the same run are dead weight now.
        for old in [k for k in _cache if k.split(":", 1)[0] == str(run.pk)]:
            del _cache[old]
        _cache[key] = arrays
        while len(_cache) > CACHED_RUNS:
            _cache.popitem(last=False)
    return arrays


def clear_run_cache() -> None:
    """Forgets the in-process copies (the Django cache keys carry the run's version, so they need no clearing)."""
    with _cache_lock:
        _cache.clear()
    with _encoded_lock:
        _encoded.clear()


# --- labels and suggestions aligned with a run's rows ---------------------------------------------------


@dataclass
class MapColumns:
    """The current map's rows with what changes between requests: labels and suggestions.

    label and suggestion are class ids, -1 for none; confidence is NaN for none;
    version is each image's annotation version (0 when it has never been labelled).
    """

    run: TrainingRun
    arrays: RunArrays
    label: np.ndarray
    suggestion: np.ndarray
    confidence: np.ndarray
    version: np.ndarray


def map_columns(run: TrainingRun, dataset_id: int) -> MapColumns:
    """The run's cached arrays plus fresh labels and suggestions (two queries)."""
    arrays = run_arrays(run)
    n = len(arrays.image_ids)
    label = np.full(n, -1, dtype=np.int64)
    suggestion = np.full(n, -1, dtype=np.int64)
    confidence = np.full(n, np.nan, dtype=np.float64)
    version = np.zeros(n, dtype=np.int64)
    labels = _read_labels(dataset_id)
    rows, hit = arrays.rows_of(labels["image_id"].astype(np.int64))
    label[rows[hit]] = labels["label"][hit]
    version[rows[hit]] = labels["version"][hit]
    suggestions = _read_suggestions(run.pk)
    rows, hit = arrays.rows_of(suggestions["image_id"].astype(np.int64))
    suggestion[rows[hit]] = suggestions["suggestion"][hit]
    confidence[rows[hit]] = suggestions["confidence"][hit]
    return MapColumns(run=run, arrays=arrays, label=label, suggestion=suggestion, confidence=confidence,
                      version=version)


def current_map_columns(dataset) -> MapColumns | None:
    run = current_run(dataset)
    if run is None:
        return None
    return map_columns(run, getattr(dataset, "pk", dataset))


# --- the map ------------------------------------------------------------------------------------
# Coordinates are sent with three decimals: the map spans about +-50 units, so
# that is far finer than a pixel even zoomed in 100 times.

COORDINATE_DECIMALS = 3
CONFIDENCE_DECIMALS = 3
# The static part is compressed once per run version, the rest on every request.
# Level 1: level 6 (GZipMiddleware's) takes ten times as long at 100,000 points
# for 15% fewer bytes, and the first request after a run pays for it.
STATIC_GZIP_LEVEL = 1
DYNAMIC_GZIP_LEVEL = 1


def _ids_or_null(values: np.ndarray) -> list:
    return [None if v < 0 else v for v in values.tolist()]


def _floats_or_null(values: np.ndarray, decimals: int) -> list:
    return [None if v != v else v for v in np.round(values, decimals).tolist()]


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _fixed_json(values: np.ndarray, decimals: int) -> bytes:
    """A JSON array of numbers with `decimals` decimals, NaN as null.

    One printf-style format over the whole column runs in C and is about twice
    as fast as json.dumps' shortest-repr floats.
    """
    if len(values) and np.isfinite(values).all():
        return ("[" + ",".join([f"%.{decimals}f"] * len(values)) % tuple(values.tolist()) + "]").encode()
    return _json(_floats_or_null(values, decimals))


@dataclass
class StaticMap:
    """The JSON text of a run's unchanging columns, and its gzip prefix.

    The prefix is a gzip header plus the deflated text ending in a full flush
    (byte-aligned, no reference to earlier data), so a request appends the
    deflated rest of the answer and the gzip trailer to get one valid gzip
    member without compressing the big columns again.
    """

    text: bytes
    gzip_head: bytes
    crc: int

    @classmethod
    def build(cls, run: TrainingRun, arrays: RunArrays) -> "StaticMap":
        head = {"run": run.pk, "placed_count": run.placed_count, "count": int(len(arrays.image_ids))}
        text = b"".join([
            _json(head)[:-1],
            b',"image_ids":', _json(arrays.image_ids.tolist()),
            b',"x":', _fixed_json(arrays.x, COORDINATE_DECIMALS),
            b',"y":', _fixed_json(arrays.y, COORDINATE_DECIMALS),
            b',"cluster":', _json(arrays.cluster.tolist()),
        ])
        compressor = zlib.compressobj(STATIC_GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header and trailer
        gzip_head = compressor.compress(text) + compressor.flush(zlib.Z_FULL_FLUSH)
        return cls(text=text, gzip_head=gzip_head, crc=zlib.crc32(text))

    def gzip(self, rest: bytes) -> bytes:
        compressor = zlib.compressobj(DYNAMIC_GZIP_LEVEL, zlib.DEFLATED, -15)  # raw deflate: no second header
        body = compressor.compress(rest) + compressor.flush()
        size = (len(self.text) + len(rest)) & 0xFFFFFFFF
        return self.gzip_head + body + struct.pack("<II", zlib.crc32(rest, self.crc), size)


def _static_map(run: TrainingRun, arrays: RunArrays) -> StaticMap:
    if arrays._static is None:
        static = _shared_get(f"{arrays.key}:static-map")
        if static is None:
            static = StaticMap.build(run, arrays)
            _shared_set(f"{arrays.key}:static-map", static)
        arrays._static = static
    return arrays._static


# Encoded label / suggestion columns by a digest of their values: while nobody
# labels, a reload re-encodes nothing; suggestions change only when recomputed.
_encoded: OrderedDict = OrderedDict()
_encoded_lock = threading.Lock()
ENCODED_KEPT = 16


def _encoded_column(tag: str, arrays: tuple, encode) -> tuple[str, bytes]:
    digest = hashlib.blake2b(tag.encode(), digest_size=16)
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    key = digest.hexdigest()
    with _encoded_lock:
        hit = _encoded.get(key)
        if hit is not None:
            _encoded.move_to_end(key)
            return key, hit
    text = encode()
    with _encoded_lock:
        _encoded[key] = text
        while len(_encoded) > ENCODED_KEPT:
            _encoded.popitem(last=False)
    return key, text


@dataclass(frozen=True)
class EncodedMap:
    """The map answer as JSON bytes (gzipped when asked) with a weak ETag."""

    content: bytes
    etag: str
    gzipped: bool


_EMPTY_MAP = {"run": None, "placed_count": 0, "count": 0, "image_ids": [], "x": [], "y": [], "cluster": [],
              "class": [], "version": [], "suggestion": [], "confidence": []}


def dataset_map_encoded(dataset, *, gzip: bool = False) -> EncodedMap:
    """dataset_map_points as ready-to-send JSON, built from cached per-run text.

    The columns that never change for a run version (ids, x, y, cluster) are
    encoded and compressed once; labels and suggestions are read fresh and
    their encoding is reused while their values are unchanged.
    """
    columns = current_map_columns(dataset)
    if columns is None:
        content = _json(_EMPTY_MAP)
        etag = 'W/"map-none"'
        return EncodedMap(gzip_module.compress(content, 1, mtime=0) if gzip else content, etag, gzip)
    static = _static_map(columns.run, columns.arrays)
    # Labels and versions change together (every label write bumps the version).
    class_key, class_text = _encoded_column(
        "class", (columns.label, columns.version),
        lambda: b"".join([_json(_ids_or_null(columns.label)), b',"version":', _json(columns.version.tolist())]),
    )
    suggestion_key, suggestion_text = _encoded_column(
        "suggestion", (columns.suggestion, columns.confidence),
        lambda: b"".join([_json(_ids_or_null(columns.suggestion)), b',"confidence":',
                          _fixed_json(columns.confidence, CONFIDENCE_DECIMALS)]),
    )
    rest = b"".join([b',"class":', class_text, b',"suggestion":', suggestion_text, b"}"])
    etag = 'W/"map-{}"'.format(hashlib.blake2b(
        f"{columns.arrays.key}|{class_key}|{suggestion_key}".encode(), digest_size=12).hexdigest())
    if gzip:
        return EncodedMap(static.gzip(rest), etag, True)
    return EncodedMap(static.text + rest, etag, False)


def dataset_map_points(dataset) -> dict:
    """Every image on the dataset's current map, as columns (cheap to send and draw).

    Keys: run, placed_count, count, image_ids, x, y, cluster, class (id or None),
    version (the annotation version a write must send; 0 if never labelled),
    suggestion (class id or None), confidence (0..1 or None).  A fixed number
    of queries: the current run, labels, suggestions and, on a cache miss, positions.
    """
    columns = current_map_columns(dataset)
    if columns is None:
        return {key: (list(value) if isinstance(value, list) else value) for key, value in _EMPTY_MAP.items()}
    arrays = columns.arrays
    return {
        "run": columns.run.pk,
        "placed_count": columns.run.placed_count,
        "count": int(len(arrays.image_ids)),
        "image_ids": arrays.image_ids.tolist(),
        "x": np.round(arrays.x, COORDINATE_DECIMALS).tolist(),
        "y": np.round(arrays.y, COORDINATE_DECIMALS).tolist(),
        "cluster": arrays.cluster.tolist(),
        "class": _ids_or_null(columns.label),
        "version": columns.version.tolist(),
        "suggestion": _ids_or_null(columns.suggestion),
        "confidence": _floats_or_null(columns.confidence, CONFIDENCE_DECIMALS),
    }


def map_cache_warm(run: TrainingRun) -> None:
    """Fills the shared cache for a run (positions, codes, reconstruction errors,
    near-duplicate pairs, the encoded map) so the first visitor after the run
    does not pay for it.  Call after a run succeeds or images are placed;
    harmless to call twice."""
    arrays = run_arrays(run)
    _static_map(run, arrays)
    arrays.codes()
    arrays.reconstruction_errors()
    run_near_duplicates(run)


# --- near-duplicates ---------------------------------------------------------------------------------
# Computed once per run by the pipeline (embeddings.services.near_duplicates)
# and stored as an artifact; placement adds the pairs new images make.  A run
# from before the artifact existed gets it computed on its first read.

NEAR_DUPLICATES = "near_duplicates.npy"


def run_near_duplicates(run: TrainingRun) -> np.ndarray:
    """The run's near-duplicate pairs as a record array (a, b: image ids, a < b;
    distance), closest first.  Cached with the run's other arrays."""
    arrays = run_arrays(run)
    if arrays._duplicates is not None:
        return arrays._duplicates
    pairs = _shared_get(f"{arrays.key}:near-duplicates")
    if pairs is None:
        pairs = _load_near_duplicates(run, arrays)
        _shared_set(f"{arrays.key}:near-duplicates", pairs)
    arrays._duplicates = pairs
    return pairs


def _load_near_duplicates(run: TrainingRun, arrays: RunArrays) -> np.ndarray:
    from embeddings import storage
    from embeddings.ml.review_ranking import PAIR_DTYPE, near_duplicates

    try:
        if storage.exists(run, NEAR_DUPLICATES):
            return storage.read_array(run, NEAR_DUPLICATES).astype(PAIR_DTYPE, copy=False)
    except Exception:  # unreadable artifact: recompute below, as for an old run
        log.warning("run %s: could not read %s; recomputing", run.pk, NEAR_DUPLICATES, exc_info=True)
    codes = arrays.codes()
    present = np.flatnonzero(np.isfinite(codes).all(axis=1)) if codes.size else np.zeros(0, dtype=np.int64)
    found, _ = near_duplicates(codes[present]) if len(present) >= 2 else (np.zeros(0, dtype=PAIR_DTYPE), 0.0)
    pairs = np.zeros(len(found), dtype=PAIR_DTYPE)
    pairs["a"] = arrays.image_ids[present[found["a"]]]
    pairs["b"] = arrays.image_ids[present[found["b"]]]
    pairs["distance"] = found["distance"]
    try:
        # Stored so the next process (or the next version of this run's cache) reads it.
        storage.write_array(run, NEAR_DUPLICATES, pairs)
    except Exception:
        log.warning("run %s: could not store %s", run.pk, NEAR_DUPLICATES, exc_info=True)
    return pairs


def image_map_position(image) -> dict | None:
    run = current_run(image.dataset_id)
    if run is None:
        return None
    row = (
        ImageEmbedding.objects.filter(run=run, image_id=image.pk)
        .values_list("x", "y", "cluster", "suggested_class_id", "suggestion_confidence", "reconstruction_error",
                     "placed_after_run")
        .first()
    )
    if row is None:
        return None
    return {"run": run.pk, "x": row[0], "y": row[1], "cluster": row[2], "suggested_class": row[3],
            "confidence": row[4], "reconstruction_error": row[5], "placed_after_run": row[6]}


# --- clusters -------------------------------------------------------------------------------------


def cluster_image_ids(dataset, cluster: int) -> list[int]:
    run = current_run(dataset)
    if run is None:
        return []
    arrays = run_arrays(run)
    return arrays.image_ids[arrays.cluster == int(cluster)].tolist()


def _entropy(counts: dict) -> float:
    total = sum(counts.values())
    if total <= 0 or len(counts) <= 1:
        return 0.0
    p = np.asarray(list(counts.values()), dtype=np.float64) / total
    return float(-(p * np.log(p)).sum() / np.log(len(p)))


def dataset_clusters(dataset, order: str = "size", include_image_ids: bool = True) -> list[dict]:
    """The current map's clusters with what is known about their classes.

    class_counts: {class id: labelled images}; suggested_class: the majority of
    labels and (for unlabelled images) suggestions; uncertainty 0..1: the mean of
    the normalised entropy of those votes and the mean (1 - confidence) of the
    suggestions (1 when nothing is known).  order: "size", "uncertainty" or "id".
    """
    if order not in ("size", "uncertainty", "id"):
        raise ValidationFailed("order must be size, uncertainty or id.", field="order")
    columns = current_map_columns(dataset)
    if columns is None:
        return []
    arrays = columns.arrays
    label_col, suggestion_col, confidence_col = columns.label, columns.suggestion, columns.confidence
    result = []
    order_idx = np.argsort(arrays.cluster, kind="stable")
    sorted_clusters = arrays.cluster[order_idx]
    cluster_ids, starts = np.unique(sorted_clusters, return_index=True)
    bounds = list(starts) + [len(sorted_clusters)]
    for j, cluster in enumerate(cluster_ids.tolist()):
        members = order_idx[bounds[j]:bounds[j + 1]]
        member_labels = label_col[members]
        labelled = member_labels[member_labels >= 0]
        class_counts = {int(c): int(n) for c, n in zip(*np.unique(labelled, return_counts=True))}
        unlabelled = members[member_labels < 0]
        votes = dict(class_counts)
        suggested = suggestion_col[unlabelled]
        for c, n in zip(*np.unique(suggested[suggested >= 0], return_counts=True)):
            votes[int(c)] = votes.get(int(c), 0) + int(n)
        confidences = confidence_col[unlabelled]
        confidences = confidences[~np.isnan(confidences)]
        if votes:
            suggested_class = max(votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]
            doubt = float((1.0 - confidences).mean()) if len(confidences) else 0.0
            uncertainty = 0.5 * _entropy(votes) + 0.5 * doubt
        else:
            suggested_class, uncertainty = None, 1.0
        entry = {
            "id": int(cluster),
            "size": int(len(members)),
            "labelled": int(len(labelled)),
            "class_counts": class_counts,
            "suggested_class": suggested_class,
            "uncertainty": round(uncertainty, 4),
        }
        if include_image_ids:
            entry["image_ids"] = arrays.image_ids[members].tolist()
        result.append(entry)
    if order == "size":
        result.sort(key=lambda c: (-c["size"], c["id"]))
    elif order == "uncertainty":
        result.sort(key=lambda c: (-c["uncertainty"], -c["size"], c["id"]))
    return result


# --- lasso selection ------------------------------------------------------------------------------


def _validate_polygon(polygon) -> np.ndarray:
    try:
        points = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationFailed("polygon must be a list of [x, y] points.", field="polygon")
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValidationFailed("polygon needs at least 3 [x, y] points.", field="polygon")
    if len(points) > 10_000:
        raise ValidationFailed("polygon has too many points (at most 10000).", field="polygon")
    if not np.isfinite(points).all():
        raise ValidationFailed("polygon coordinates must be finite numbers.", field="polygon")
    return points


def points_in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, vectorised over the points, one edge at a time."""
    inside = np.zeros(len(x), dtype=bool)
    px, py = polygon[:, 0], polygon[:, 1]
    j = len(polygon) - 1
    for i in range(len(polygon)):
        xi, yi, xj, yj = px[i], py[i], px[j], py[j]
        crosses = (yi > y) != (yj > y)
        if crosses.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = (xj - xi) * (y - yi) / (yj - yi) + xi
            inside ^= crosses & (x < x_at)
        j = i
    return inside


def image_ids_in_polygon(dataset, polygon) -> list[int]:
    """Images of the current map inside a polygon drawn on the map (map coordinates)."""
    points = _validate_polygon(polygon)
    run = current_run(dataset)
    if run is None:
        return []
    arrays = run_arrays(run)
    (xmin, ymin), (xmax, ymax) = points.min(axis=0), points.max(axis=0)
    in_box = np.flatnonzero((arrays.x >= xmin) & (arrays.x <= xmax) & (arrays.y >= ymin) & (arrays.y <= ymax))
    if len(in_box) == 0:
        return []
    hit = points_in_polygon(arrays.x[in_box].astype(np.float64), arrays.y[in_box].astype(np.float64), points)
    return arrays.image_ids[in_box[hit]].tolist()


# --- similar images ---------------------------------------------------------------------------------


def image_similar(image, k: int = 20) -> list[dict]:
    """The k images nearest to this one in code space on the current map (itself excluded)."""
    from labeling.models import Annotation

    k = max(1, min(int(k), 200))
    run = current_run(image.dataset_id)
    if run is None:
        return []
    arrays = run_arrays(run)
    row = arrays.row_of(image.pk)
    if row is None or len(arrays.image_ids) < 2:
        return []
    index = arrays.neighbour_index()
    indices, distances = index.query(row, min(k, len(arrays.image_ids) - 1))
    # NaN: an embedding deleted since the run's codes were cached.
    found = np.isfinite(distances)
    indices, distances = np.asarray(indices, dtype=np.int64)[found], np.asarray(distances)[found]
    ids = arrays.image_ids[indices].tolist()
    classes = dict(Annotation.objects.filter(image_id__in=ids).values_list("image_id", "label_class_id"))
    return [{"id": i, "distance": round(float(d), 5), "class": classes.get(i)} for i, d in zip(ids, distances)]


# --- training page ------------------------------------------------------------------------------------


def _png_data_url(array: np.ndarray) -> str:
    from PIL import Image as PILImage

    arr = np.clip(np.asarray(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = PILImage.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def run_reconstruction_preview(run: TrainingRun, n: int = 16) -> list[dict]:
    """Originals beside the autoencoder's reconstructions, as small PNG data URLs.

    Picks images spread over the range of reconstruction error (best to worst),
    so the page shows both what the model learned well and what it did not.
    """
    import torch

    from embeddings import storage

    from embeddings.services.pipeline import load_run_images

    if run.status != RunStatus.SUCCEEDED or not storage.exists(run, storage.MODEL):
        return []
    n = max(1, min(int(n), 64))
    rows = list(ImageEmbedding.objects.filter(run=run).order_by("reconstruction_error", "image_id")
                .values_list("image_id", "reconstruction_error"))
    if not rows:
        return []
    picks = sorted({int(round(v)) for v in np.linspace(0, len(rows) - 1, min(n, len(rows)))})
    chosen = [rows[i] for i in picks]
    from labeling.models import Image

    files = dict(Image.objects.filter(pk__in=[c[0] for c in chosen]).values_list("id", "file"))
    load_rows = [(image_id, files[image_id]) for image_id, _ in chosen if image_id in files]
    images, ids, _ = load_run_images(load_rows, run.input_size, run.channels)
    if len(ids) == 0:
        return []
    model = storage.read_model(run, device=torch.device("cpu"))
    with torch.inference_mode():
        recon = model(torch.from_numpy(images)).numpy()
    errors = dict(chosen)
    return [
        {"image_id": int(image_id), "reconstruction_error": float(errors[int(image_id)]),
         "original": _png_data_url(images[i]), "reconstruction": _png_data_url(recon[i])}
        for i, image_id in enumerate(ids)
    ]
