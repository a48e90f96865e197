"""The API's JSON parser: bounded in size and in nesting depth.

DRF's JSONParser hands the body to json.load, whose C scanner recurses once
per nested array or object: 2 KB of "[" is a RecursionError and a 500. No
request of this API nests deeper than a polygon (object > list > point), so
anything beyond MAX_JSON_DEPTH is refused before json.loads sees it.
"""

import codecs
import re

import numpy as np
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

from core.errors import PayloadTooLarge

# The deepest request body (a bulk polygon) nests 3 levels; leave room, refuse the absurd.
MAX_JSON_DEPTH = 32

# A JSON string, its escapes skipped; possessive so that an unterminated string
# runs to the end of the body in one linear pass instead of being retried at
# every quote inside it.
_STRING = re.compile(r'"(?:[^"\\]|\\.?)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text's arrays/objects nest deeper than `limit`.

    Linear and at C speed throughout (about what json.loads itself costs): drop the
    strings, then everything but brackets; the running count of open brackets
    is the nesting json.loads would recurse to. Brackets that do not pair up
    are json.loads's to report, and it stops at the first one.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(brackets) <= limit:
        return False
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(steps, dtype=np.int32).max()) > limit


class BoundedJSONParser(JSONParser):
    """JSONParser that reads at most the `limit_setting` bytes and refuses deep nesting (400, not a 500)."""

    # A subclass for one endpoint's larger bodies names its own setting (e.g. uploaded vectors).
    limit_setting = "SIMLABEL_MAX_JSON_BYTES"

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = getattr(settings, self.limit_setting)
        # The body-size middleware has refused a larger Content-Length already;
        # reading one byte past the limit still bounds memory if a stream lies.
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"A JSON request body may be at most {limit} bytes ({self.limit_setting}).")
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if json_depth_exceeds(text):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        try:
            return json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
