"""Reading uploaded vectors from a request: multipart `.npy` / `.csv`, a JSON body, or a CSV body.

Only the formats are read here, into (image ids, vectors) arrays; what the
numbers must satisfy (dimension, finiteness, unique ids of this dataset) is
checked by the service (embeddings.services.embeddings_upload), whatever the
format.  A `.npy` file is never unpickled: its header is read and checked
(plain numbers of the right kind, a size that matches the bytes sent) before
the data is, and the data is read as raw numbers, which is also what
`np.load(allow_pickle=False)` would accept.
"""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
from django.conf import settings
from rest_framework.parsers import BaseParser

from core.api.parsers import BoundedJSONParser
from core.errors import PayloadTooLarge, ValidationFailed

NPY_MAGIC = b"\x93NUMPY"
JSON_KEYS = {"image_ids", "vectors"}


def _limit() -> int:
    return settings.SIMLABEL_MAX_EMBEDDING_BYTES


def _read_bounded(stream) -> bytes:
    # The body-size middleware has refused a larger Content-Length already;
    # reading one byte past the limit still bounds memory if a stream lies.
    limit = _limit()
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise PayloadTooLarge(f"Uploaded vectors may be at most {limit} bytes (SIMLABEL_MAX_EMBEDDING_BYTES).")
    return raw


class EmbeddingJSONParser(BoundedJSONParser):
    """`{"image_ids": [...], "vectors": [[...], ...]}` up to SIMLABEL_MAX_EMBEDDING_BYTES, not the API's
    usual JSON limit; nesting and non-finite constants (NaN, Infinity) are refused as everywhere."""

    limit_setting = "SIMLABEL_MAX_EMBEDDING_BYTES"
    strict = True  # NaN / Infinity are a parse error, whatever STRICT_JSON says


class CSVBody(bytes):
    """A CSV request body, unparsed: the view reads it as a table (read_csv)."""


class CSVParser(BaseParser):
    """`text/csv`: `image_id,v0,v1,…`, one image a line (a header line is optional)."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        return CSVBody(_read_bounded(stream))


# --- the formats --------------------------------------------------------------------------------------


def read_npy(fh, *, field: str, kinds: str) -> np.ndarray:
    """The array of a `.npy` file whose dtype kind is one of `kinds` ("f": floats, "iu": integers)."""
    what = "floating-point numbers" if kinds == "f" else "whole numbers"
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran_order, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran_order, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise ValidationFailed(f"{field}: not a readable .npy file ({exc}).", field=field) from None
    # Object arrays would need unpickling, structured ones are not a table of numbers.
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in kinds:
        raise ValidationFailed(f"{field}: the .npy file must hold {what}; it holds {dtype}.", field=field)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = fh.read(nbytes + 1)
    if len(data) != nbytes:
        raise ValidationFailed(
            f"{field}: the .npy header announces {shape} values of {dtype}, which the file does not hold.",
            field=field,
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


def read_csv(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, vectors) of `image_id,v0,v1,…` lines; a first line that does not start with a number is a
    header and is skipped."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("The CSV must be UTF-8 text.", field="csv") from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    head = first.split(",", 1)[0].strip()
    has_header = bool(first) and not _is_number(head)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": answered below
            table = np.loadtxt(
                io.StringIO(text), delimiter=",", dtype=np.float64, skiprows=int(has_header), ndmin=2, comments=None
            )
    except ValueError as exc:
        raise ValidationFailed(f"CSV: {exc}", field="csv") from None
    if table.shape[0] == 0:
        raise ValidationFailed("No vectors: the CSV has no rows.", field="csv")
    if table.shape[1] < 2:
        raise ValidationFailed("CSV rows must be image_id,v0,v1,…", field="csv")
    return whole_numbers(table[:, 0], field="image_id"), table[:, 1:]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def whole_numbers(values: np.ndarray, *, field: str) -> np.ndarray:
    """Float ids (from CSV) as int64, refusing fractions and values an int64 or a float cannot hold exactly."""
    values = np.asarray(values, dtype=np.float64)
    if not (np.isfinite(values).all() and (values == np.round(values)).all() and (np.abs(values) < 2**53).all()):
        raise ValidationFailed(f"{field} must be whole numbers (image ids).", field=field)
    return values.astype(np.int64)


def json_arrays(data) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, vectors) of a JSON body {"image_ids": [...], "vectors": [[...], ...]}."""
    if not isinstance(data, dict) or set(data) != JSON_KEYS:
        raise ValidationFailed('The JSON body must be {"image_ids": [...], "vectors": [[...], ...]}.')
    return ids_array(data["image_ids"]), numbers_array(data["vectors"], field="vectors")


def ids_array(ids) -> np.ndarray:
    if not isinstance(ids, list):
        raise ValidationFailed("image_ids must be a list of image ids.", field="image_ids")
    try:
        array = np.asarray(ids)
    except (ValueError, OverflowError):
        raise ValidationFailed("image_ids must be a list of image ids.", field="image_ids") from None
    if array.ndim != 1 or (len(array) and array.dtype.kind not in "iu"):
        raise ValidationFailed("image_ids must be a list of whole numbers (image ids).", field="image_ids")
    return array.astype(np.int64)


def numbers_array(rows, *, field: str) -> np.ndarray:
    if not isinstance(rows, list):
        raise ValidationFailed(f"{field} must be a list of lists of numbers.", field=field)
    try:
        array = np.asarray(rows)
    except (ValueError, OverflowError):  # rows of different lengths
        raise ValidationFailed(f"{field}: every vector must have the same number of values.", field=field) from None
    if array.size and array.dtype.kind not in "iuf":
        raise ValidationFailed(f"{field} must hold only numbers.", field=field)
    if array.ndim != 2:
        raise ValidationFailed(f"{field} must be a list of vectors (lists of numbers), one per image.", field=field)
    return array.astype(np.float64)


def multipart_arrays(data, files) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, vectors) of a form: `vectors` a .npy (with `image_ids`: a JSON list or a .npy of
    integers) or a .csv file (ids in its first column)."""
    unknown = sorted((set(data) | set(files)) - JSON_KEYS)
    if unknown:
        raise ValidationFailed(f"Unknown field(s): {', '.join(unknown)}. Send vectors and image_ids.", fields=unknown)
    upload = files.get("vectors")
    if upload is None:
        raise ValidationFailed("Send the vectors as a file field named vectors (.npy or .csv).", field="vectors")
    upload.seek(0)
    is_npy = upload.read(len(NPY_MAGIC)) == NPY_MAGIC
    upload.seek(0)
    if not is_npy:
        if "image_ids" in data or "image_ids" in files:
            raise ValidationFailed("A CSV carries its image ids in its first column: send no image_ids.")
        if upload.size > _limit():
            raise PayloadTooLarge(f"Uploaded vectors may be at most {_limit()} bytes.")
        return read_csv(upload.read())
    vectors = read_npy(upload, field="vectors", kinds="f")
    if "image_ids" in files:
        ids_file = files["image_ids"]
        ids_file.seek(0)
        image_ids = read_npy(ids_file, field="image_ids", kinds="iu")
    elif "image_ids" in data:
        try:
            image_ids = ids_array(json.loads(data["image_ids"]))
        except ValueError:
            raise ValidationFailed(
                "image_ids must be a JSON list of image ids, or a .npy file.", field="image_ids"
            ) from None
    else:
        raise ValidationFailed(
            "Send image_ids with a .npy of vectors: a JSON list or a .npy of integers.", field="image_ids"
        )
    return image_ids, vectors


def request_arrays(request) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, vectors) of an upload request in any of the accepted formats."""
    data = request.data
    if isinstance(data, CSVBody):
        return read_csv(bytes(data))
    if request.content_type.startswith("multipart/form-data"):
        return multipart_arrays(data, request.FILES)
    return json_arrays(data)
