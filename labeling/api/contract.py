"""The query-parameter rule every API endpoint keeps, read from the OpenAPI schema.

A query parameter is accepted only where /api/schema/ declares it for that
path and method; an undeclared one, one given twice (`?version=2&version=`) or
one given empty (`?version=`) is a 400 `invalid`, and nothing is done. QueryDict
hands a serializer the *last* of repeated values and an empty value reads as
"not given", so `DELETE …/annotation/?version=2&version=` cleared a label
unconditionally; some lists refused unknown parameters and others ignored them.

The schema is the one declaration: drf-spectacular builds it from each view's
@extend_schema(parameters=…), and the same schema tells clients what they may
send. It is generated once per process (a fraction of a second) on first use.
"""
from __future__ import annotations

import functools
import re

from rest_framework.views import APIView

from labeling.errors import ValidationFailed

API_PREFIX = "/api/"
_ROUTE_PARAMETER = re.compile(r"<(?:[^>:]+:)?([^>]+)>")


@functools.cache
def _declared_query_parameters() -> dict[tuple[str, str], frozenset[str]]:
    """{(OpenAPI path, METHOD): names of its query parameters} for every operation of the schema."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (path, method.upper()): frozenset(p["name"] for p in operation.get("parameters", ()) if p["in"] == "query")
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }


def declared_query_parameters(route: str, method: str) -> frozenset[str]:
    """The query parameters the schema declares for a Django route ("api/datasets/<int:dataset_id>/")."""
    path = "/" + _ROUTE_PARAMETER.sub(r"{\1}", route)
    method = "GET" if method == "HEAD" else method
    return _declared_query_parameters().get((path, method), frozenset())


def check_query_parameters(query_params, allowed) -> None:
    """400 for a query parameter that is undeclared, repeated or empty."""
    unknown = sorted(set(query_params) - set(allowed))
    if unknown:
        listed = ", ".join(sorted(allowed)) or "none"
        raise ValidationFailed(f"Unknown query parameter(s): {', '.join(unknown)}. Allowed: {listed}.",
                               fields=unknown)
    for name in sorted(query_params):
        values = query_params.getlist(name)
        if len(values) > 1:
            raise ValidationFailed(f"{name}: give this query parameter once.", field=name)
        if values[0] == "":
            raise ValidationFailed(f"{name}: may not be empty; leave the parameter out instead.", field=name)


class ApiView(APIView):
    """Every API view: after authentication, permissions and throttling, the query-parameter rule."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        match = getattr(request, "resolver_match", None)
        if match is not None:  # None only for a view called directly, outside URL routing
            check_query_parameters(request.query_params, declared_query_parameters(match.route, request.method))


# --- what the schema says about it --------------------------------------------------------------------

_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
RULES = (
    "\n\nQuery parameters: only those listed for an operation are accepted; any other, one given twice or "
    "one given empty is a 400. Lists take `page` (1, 2, …) and `page_size` (1–500): a malformed value is "
    "a 400, a page past the last a 404. Request bodies other than uploads may be at most "
    "SIMLABEL_MAX_JSON_BYTES (default 5 MiB; else 413) and nest at most 32 levels (400). Every error is "
    '`{"detail": …, "code": …}`, including a 404 for an unknown URL under /api/.'
)


def document_rules(result, generator, request, public):
    """drf-spectacular postprocessing hook: the rule above, and its 400/413 answers, on every operation."""
    result.setdefault("info", {})["description"] = result.get("info", {}).get("description", "") + RULES
    for path, operations in result.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("400", {"description": "Invalid input (also: an undeclared, repeated or empty "
                                                        "query parameter)", "content": _ERROR_CONTENT})
            if any(p.get("name") == "page" and p.get("in") == "query" for p in operation.get("parameters", ())):
                responses.setdefault("404", {"description": "No such object, or a page past the last",
                                             "content": _ERROR_CONTENT})
            if "requestBody" in operation:
                responses.setdefault("413", {"description": "Request body too large", "content": _ERROR_CONTENT})
    return result
