"""What every API's serializers share: the error shape and its schema entries, and fields named with a keyword."""

import keyword

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


# Lets a serializer have a field named with a Python keyword: declare `class_`, the API says `class`.
# The rename happens in get_fields, before DRF binds each field to its name, so input, output, error
# keys and the OpenAPI schema all use `class`. (A comment, not a docstring: drf-spectacular would show
# a docstring as the description of every serializer that mixes this in.)
class KeywordFieldsMixin:
    def get_fields(self):
        return {_api_name(name): field for name, field in super().get_fields().items()}


def _api_name(name: str) -> str:
    stem = name[:-1]
    return stem if name.endswith("_") and keyword.iskeyword(stem) else name


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input"),
    401: OpenApiResponse(ErrorSerializer, description="Not signed in"),
    403: OpenApiResponse(ErrorSerializer, description="Role too low"),
    404: OpenApiResponse(ErrorSerializer, description="No such object, or not a member"),
    409: OpenApiResponse(ErrorSerializer, description="Conflicts with the current state; nothing was changed"),
}


def error_responses(*codes) -> dict:
    """The schema's responses for these error codes, for @extend_schema(responses={...})."""
    return {code: ERRORS[code] for code in codes}


def upload_error_responses(too_large: str) -> dict:
    """error_responses for a write that takes a bounded request body: 400, 401, 403, 404, and 413 described as
    `too_large` (which limit it passed: "Larger than SIMLABEL_MAX_BACKBONE_BYTES")."""
    return {**error_responses(400, 401, 403, 404), 413: OpenApiResponse(ErrorSerializer, description=too_large)}
