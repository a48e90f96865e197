"""The map as ready-to-send JSON: columnar, gzip, ETag, and the caches that make it cheap.

A run's unchanging columns (ids, x, y, cluster) are encoded and compressed once
per run version (selectors.run_arrays keys them); labels and suggestions are
read fresh on every request and their encoding is reused while their values
are unchanged.  So a request at 100,000 images costs a few database reads and
the encoding of what changed.  bench/api_speed.py measures it.
"""

from __future__ import annotations

import gzip as gzip_module
import hashlib
import json
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from embeddings.models import TrainingRun

from .run_arrays import (
    RunArrays,
    current_map_columns,
    forget_run_arrays,
    run_arrays,
    run_near_duplicates,
    shared_get,
    shared_set,
)

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
    def build(cls, run: TrainingRun, arrays: RunArrays) -> StaticMap:
        head = {"run": run.pk, "placed_count": run.placed_count, "count": len(arrays.image_ids)}
        text = b"".join(
            [
                _json(head)[:-1],
                b',"image_ids":',
                _json(arrays.image_ids.tolist()),
                b',"x":',
                _fixed_json(arrays.x, COORDINATE_DECIMALS),
                b',"y":',
                _fixed_json(arrays.y, COORDINATE_DECIMALS),
                b',"cluster":',
                _json(arrays.cluster.tolist()),
            ]
        )
        compressor = zlib.compressobj(STATIC_GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header and trailer
        gzip_head = compressor.compress(text) + compressor.flush(zlib.Z_FULL_FLUSH)
        return cls(text=text, gzip_head=gzip_head, crc=zlib.crc32(text))

    def gzip(self, rest: bytes) -> bytes:
        compressor = zlib.compressobj(DYNAMIC_GZIP_LEVEL, zlib.DEFLATED, -15)  # raw deflate: no second header
        body = compressor.compress(rest) + compressor.flush()
        size = (len(self.text) + len(rest)) & 0xFFFFFFFF
        return self.gzip_head + body + struct.pack("<II", zlib.crc32(rest, self.crc), size)


def _static_map(run: TrainingRun, arrays: RunArrays) -> StaticMap:
    if arrays.static_map is None:
        static = shared_get(f"{arrays.key}:static-map")
        if static is None:
            static = StaticMap.build(run, arrays)
            shared_set(f"{arrays.key}:static-map", static)
        arrays.static_map = static
    return arrays.static_map


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


_EMPTY_MAP = {
    "run": None,
    "placed_count": 0,
    "count": 0,
    "image_ids": [],
    "x": [],
    "y": [],
    "cluster": [],
    "class": [],
    "version": [],
    "suggestion": [],
    "confidence": [],
}


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
        "class",
        (columns.label, columns.version),
        lambda: b"".join([_json(_ids_or_null(columns.label)), b',"version":', _json(columns.version.tolist())]),
    )
    suggestion_key, suggestion_text = _encoded_column(
        "suggestion",
        (columns.suggestion, columns.confidence),
        lambda: b"".join(
            [
                _json(_ids_or_null(columns.suggestion)),
                b',"confidence":',
                _fixed_json(columns.confidence, CONFIDENCE_DECIMALS),
            ]
        ),
    )
    rest = b"".join([b',"class":', class_text, b',"suggestion":', suggestion_text, b"}"])
    etag = 'W/"map-{}"'.format(
        hashlib.blake2b(f"{columns.arrays.key}|{class_key}|{suggestion_key}".encode(), digest_size=12).hexdigest()
    )
    if gzip:
        return EncodedMap(static.gzip(rest), etag, True)
    return EncodedMap(static.text + rest, etag, False)


def dataset_map_points(dataset) -> dict:
    """Every image on the dataset's current map, as columns (cheap to send and draw).

    Keys: run, placed_count, count, image_ids, x, y, cluster, class (id or None),
    version (the annotation version a write must send; 0 if never labeled),
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
        "count": len(arrays.image_ids),
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
    from .map_binary import _static_binary  # map_binary builds on this module

    arrays = run_arrays(run)
    _static_map(run, arrays)
    _static_binary(arrays)
    arrays.codes()
    arrays.reconstruction_errors()
    run_near_duplicates(run)


def clear_run_cache() -> None:
    """Forgets the in-process copies of runs' arrays and encoded columns, as a new process starts.

    The Django cache keys carry the run's version, so they need no clearing.
    """
    forget_run_arrays()
    with _encoded_lock:
        _encoded.clear()
