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
import threading

from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.generators import SchemaGenerator
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from core.errors import ValidationFailed
from core.permissions import ANYONE, OPEN_ACTIONS, dataset_for_user, image_for_user

API_PREFIX = "/api/"
_ROUTE_PARAMETER = re.compile(r"<(?:[^>:]+:)?([^>]+)>")


# drf-spectacular's generator is not thread-safe: two requests building the schema at once on a fresh
# threaded server (a page that loads clusters and the map together) crash one of them with a 500.
_schema_lock = threading.Lock()


@functools.cache
def _declared_query_parameters() -> dict[tuple[str, str], frozenset[str]]:
    """{(OpenAPI path, METHOD): names of its query parameters} for every operation of the schema."""
    with _schema_lock:
        return _schema_query_parameters()


def _schema_query_parameters() -> dict[tuple[str, str], frozenset[str]]:
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
        raise ValidationFailed(f"Unknown query parameter(s): {', '.join(unknown)}. Allowed: {listed}.", fields=unknown)
    for name in sorted(query_params):
        values = query_params.getlist(name)
        if len(values) > 1:
            raise ValidationFailed(f"{name}: give this query parameter once.", field=name)
        if values[0] == "":
            raise ValidationFailed(f"{name}: may not be empty; leave the parameter out instead.", field=name)


def validated(serializer_class, data, **kwargs) -> dict:
    """`data` checked by the serializer; its errors are a 400."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def validated_query(serializer_class, request, allowed_extra=()) -> dict:
    """Query parameters checked against an allow-list: unknown, repeated or empty ones are a 400."""
    allowed = set(serializer_class().fields) | set(allowed_extra)
    check_query_parameters(request.query_params, allowed)
    # A plain dict, not the QueryDict: a serializer reads a QueryDict like an HTML form, where an
    # empty value means "not given".
    return validated(serializer_class, request.query_params.dict())


class ApiView(APIView):
    """Every API view: declared permissions, then the query-parameter rule, then the objects of its URL.

    `actions` declares, for each HTTP method the view answers, the action of the
    roles x actions table (core.permissions.ACTION_MIN_ROLE) it needs, or ANYONE /
    SIGNED_IN for endpoints that concern no dataset. Before the handler runs, each
    id of the URL named in `url_objects` is resolved once with that action (404 for
    non-members and unknown ids, 403 for too low a role) and handed to the handler
    in its place: `dataset_id` becomes `dataset`, `image_id` becomes `image`.
    A test walks every route and fails on a handler without a declared action.
    """

    actions: dict[str, str] = {}
    # URL keyword -> (handler keyword, resolve(user, id, action) -> the object, or 404 / 403)
    url_objects = {"dataset_id": ("dataset", dataset_for_user), "image_id": ("image", image_for_user)}

    @classmethod
    def action_for(cls, method: str) -> str | None:
        """The declared action of an HTTP method (HEAD is a GET); None where none is declared."""
        method = method.lower()
        return cls.actions.get("get" if method == "head" else method)

    def _open_to_anyone(self) -> bool:
        request = getattr(self, "request", None)  # None while the schema is generated
        return request is not None and self.action_for(request.method) == ANYONE

    def get_authenticators(self):
        # No credentials are needed, and a stale token sent along must not stop the request.
        return [] if self._open_to_anyone() else super().get_authenticators()

    def get_permissions(self):
        return [AllowAny()] if self._open_to_anyone() else super().get_permissions()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        match = getattr(request, "resolver_match", None)
        if match is not None:  # None only for a view called directly, outside URL routing
            check_query_parameters(request.query_params, declared_query_parameters(match.route, request.method))
        self._resolve_url_objects(request)

    def _resolve_url_objects(self, request) -> None:
        method = request.method.lower()
        action = self.action_for(method)
        if action is None:
            if method not in ("options", "head") and hasattr(self, method):
                # Fail closed: a handler nobody declared an action for must not run unchecked.
                raise ImproperlyConfigured(f"{type(self).__name__}.{method} declares no action in `actions`.")
            return  # OPTIONS, or a method without a handler: DRF answers it (405) with nothing resolved
        if action in OPEN_ACTIONS:
            return
        # DRF hands this same dict to the handler (APIView.dispatch keeps it as self.kwargs).
        for keyword, (name, resolve) in self.url_objects.items():
            if keyword in self.kwargs:
                self.kwargs[name] = resolve(request.user, self.kwargs.pop(keyword), action)


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
            responses.setdefault(
                "400",
                {
                    "description": "Invalid input (also: an undeclared, repeated or empty query parameter)",
                    "content": _ERROR_CONTENT,
                },
            )
            if any(p.get("name") == "page" and p.get("in") == "query" for p in operation.get("parameters", ())):
                responses.setdefault(
                    "404", {"description": "No such object, or a page past the last", "content": _ERROR_CONTENT}
                )
            if "requestBody" in operation:
                responses.setdefault("413", {"description": "Request body too large", "content": _ERROR_CONTENT})
    return result
