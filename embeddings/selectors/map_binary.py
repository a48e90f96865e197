"""The map as typed arrays (`GET …/map/?format=binary`): what the map page reads at a million points.

The JSON map spells every number in decimal; at 1,000,000 points that is
about 40 MB before gzip and most of a second of JSON.parse in the browser.
This format sends the same columns as little-endian typed arrays the browser
wraps without copying (`new Float32Array(buffer, offset, length)`):

    bytes 0-7    magic b"SLMAP01\\0"
    bytes 8-11   uint32: H, the length of the JSON header (a multiple of 8; space-padded)
    bytes 12-15  uint32: 0 (reserved)
    bytes 16-    the JSON header: run, placed_count, count, etag, classes, clusters, and
                 columns: [{name, dtype, offset, length, null?, encoding?, scale?}]
    then each column at its `offset` (from byte 0, a multiple of 8), zero-padded.

Integer columns take the smallest dtype that holds their values (class ids
int16 in practice, versions uint8); image ids are int32 deltas (sorted ids
deflate to almost nothing that way); confidence is uint16 thousandths, the
JSON's three decimals exactly.  x and y are float32 (the JSON rounds them to
three decimals: float32 is finer than that over the map's range).

As for the JSON, a run's unchanging columns (ids, x, y, cluster) are encoded
and deflated once per run version; a request deflates only the header and the
label and suggestion columns and splices the three into one gzip member.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .map import DYNAMIC_GZIP_LEVEL, STATIC_GZIP_LEVEL, EncodedMap, _encoded_column
from .run_arrays import RunArrays, current_map_columns, shared_get, shared_set

MAGIC = b"SLMAP01\0"
PREFIX_BYTES = 16
ALIGN = 8
CONFIDENCE_SCALE = 1000
CONFIDENCE_NULL = 0xFFFF
MEDIA_TYPE = "application/vnd.simlabel.map"
# Smallest first: the first dtype whose range holds a column's values is sent.
_INT_DTYPES = ("uint8", "int8", "uint16", "int16", "int32")


def _padded(raw: bytes) -> bytes:
    return raw + b"\0" * (-len(raw) % ALIGN)


def smallest_int_dtype(values: np.ndarray) -> str:
    """The smallest little-endian integer dtype holding every value; float64 (exact to 2**53) past int32."""
    if len(values) == 0:
        return "uint8"
    lo, hi = int(values.min()), int(values.max())
    for name in _INT_DTYPES:
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            return name
    return "float64"


@dataclass
class _Block:
    """Columns laid end to end, each aligned; offsets are relative to the block's start."""

    raw: bytes
    columns: list[dict]

    @classmethod
    def build(cls, named: list[tuple[dict, np.ndarray]]) -> _Block:
        parts, columns, offset = [], [], 0
        for spec, values in named:
            data = _padded(np.ascontiguousarray(values, dtype=np.dtype(spec["dtype"]).newbyteorder("<")).tobytes())
            columns.append({**spec, "offset": offset, "length": int(len(values))})
            parts.append(data)
            offset += len(data)
        return cls(raw=b"".join(parts), columns=columns)


def _int_column(name: str, values: np.ndarray, **extra) -> tuple[dict, np.ndarray]:
    return {"name": name, "dtype": smallest_int_dtype(values), **extra}, values


def _image_id_column(image_ids: np.ndarray) -> tuple[dict, np.ndarray]:
    if len(image_ids) and int(image_ids.max()) >= 2**31:
        return {"name": "image_ids", "dtype": "float64"}, image_ids.astype(np.float64)
    deltas = np.diff(image_ids, prepend=np.int64(0))
    return {"name": "image_ids", "dtype": "int32", "encoding": "delta"}, deltas


def _counts(values: np.ndarray, *, skip: int | None = None) -> list[list[int]]:
    ids, counts = np.unique(values, return_counts=True)
    return [[int(i), int(c)] for i, c in zip(ids, counts, strict=True) if skip is None or i != skip]


@dataclass
class StaticBinary:
    """A run version's ids, x, y and cluster as one aligned block, deflated once.

    `deflated` is raw deflate ending in a full flush: no reference to earlier
    bytes and byte-aligned, so it can follow any other full-flushed deflate
    data in one stream.
    """

    block: _Block
    deflated: bytes
    crc: int
    clusters: list[list[int]]

    @classmethod
    def build(cls, arrays: RunArrays) -> StaticBinary:
        block = _Block.build(
            [
                _image_id_column(arrays.image_ids),
                ({"name": "x", "dtype": "float32"}, arrays.x),
                ({"name": "y", "dtype": "float32"}, arrays.y),
                _int_column("cluster", arrays.cluster),
            ]
        )
        compressor = zlib.compressobj(STATIC_GZIP_LEVEL, zlib.DEFLATED, -15)
        deflated = compressor.compress(block.raw) + compressor.flush(zlib.Z_FULL_FLUSH)
        return cls(block=block, deflated=deflated, crc=zlib.crc32(block.raw), clusters=_counts(arrays.cluster))


def _static_binary(arrays: RunArrays) -> StaticBinary:
    static = getattr(arrays, "static_binary", None)
    if static is None:
        static = shared_get(f"{arrays.key}:static-binary")
        if static is None:
            static = StaticBinary.build(arrays)
            shared_set(f"{arrays.key}:static-binary", static)
        arrays.static_binary = static
    return static


def _dynamic_block(columns) -> _Block:
    confidence = np.round(columns.confidence, 3) * CONFIDENCE_SCALE
    confidence = np.where(np.isfinite(confidence), np.rint(confidence), CONFIDENCE_NULL).astype(np.uint16)
    return _Block.build(
        [
            _int_column("class", columns.label, null=-1),
            _int_column("version", columns.version),
            _int_column("suggestion", columns.suggestion, null=-1),
            (
                {"name": "confidence", "dtype": "uint16", "scale": 1 / CONFIDENCE_SCALE, "null": CONFIDENCE_NULL},
                confidence,
            ),
        ]
    )


def _header(head: dict, blocks: list[_Block]) -> bytes:
    """The JSON header, padded, with each block's column offsets made absolute.

    The offsets depend on the header's own length, so it is encoded until the
    padded length stops changing (twice at most in practice).
    """
    length = 0
    while True:
        start = PREFIX_BYTES + length
        columns = []
        for block in blocks:
            columns.extend({**c, "offset": c["offset"] + start} for c in block.columns)
            start += len(block.raw)
        text = json.dumps({**head, "columns": columns}, separators=(",", ":"), allow_nan=False).encode()
        padded = text + b" " * (-len(text) % ALIGN)
        if len(padded) == length:
            return MAGIC + struct.pack("<II", length, 0) + padded
        length = len(padded)


def _empty_arrays() -> RunArrays:
    empty = np.zeros(0, dtype=np.int64)
    return RunArrays(run_id=0, image_ids=empty, x=np.zeros(0), y=np.zeros(0), cluster=np.zeros(0, dtype=np.int32))


def dataset_map_binary(dataset, *, gzip: bool = False) -> EncodedMap:
    """The map's columns as the binary layout above (gzipped when asked), with a weak ETag of its own."""
    columns = current_map_columns(dataset)
    if columns is None:
        head = {"format": "simlabel-map", "version": 1, "run": None, "placed_count": 0, "count": 0}
        empty = _empty_arrays()
        static = StaticBinary.build(empty)
        dynamic = _Block.build(
            [
                ({"name": "class", "dtype": "uint8", "null": -1}, np.zeros(0)),
                ({"name": "version", "dtype": "uint8"}, np.zeros(0)),
                ({"name": "suggestion", "dtype": "uint8", "null": -1}, np.zeros(0)),
                (
                    {"name": "confidence", "dtype": "uint16", "scale": 1 / CONFIDENCE_SCALE, "null": CONFIDENCE_NULL},
                    np.zeros(0),
                ),
            ]
        )
        etag = 'W/"mapb-none"'
        head.update(etag=etag, classes=[], clusters=[])
    else:
        static = _static_binary(columns.arrays)
        dynamic_key, dynamic = _encoded_column(
            "binary",
            (columns.label, columns.version, columns.suggestion, columns.confidence),
            lambda: _dynamic_block(columns),
        )
        digest = hashlib.blake2b(f"{columns.arrays.key}|{dynamic_key}".encode(), digest_size=12).hexdigest()
        etag = f'W/"mapb-{digest}"'
        head = {
            "format": "simlabel-map",
            "version": 1,
            "run": columns.run.pk,
            "placed_count": columns.run.placed_count,
            "count": len(columns.arrays.image_ids),
            "etag": etag,
            "classes": _counts(columns.label, skip=-1),
            "clusters": static.clusters,
        }
    header = _header(head, [static.block, dynamic])
    if not gzip:
        return EncodedMap(header + static.block.raw + dynamic.raw, etag, False)
    head_deflate = zlib.compressobj(DYNAMIC_GZIP_LEVEL, zlib.DEFLATED, -15)
    tail_deflate = zlib.compressobj(DYNAMIC_GZIP_LEVEL, zlib.DEFLATED, -15)
    crc = zlib.crc32(dynamic.raw, zlib.crc32(static.block.raw, zlib.crc32(header)))
    size = (len(header) + len(static.block.raw) + len(dynamic.raw)) & 0xFFFFFFFF
    content = b"".join(
        [
            # The gzip header: deflate, no mtime, no flags (RFC 1952).
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff",
            head_deflate.compress(header) + head_deflate.flush(zlib.Z_FULL_FLUSH),
            static.deflated,
            tail_deflate.compress(dynamic.raw) + tail_deflate.flush(),
            struct.pack("<II", crc, size),
        ]
    )
    return EncodedMap(content, etag, True)
