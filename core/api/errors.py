"""Every API error is JSON: {"detail": message, "code": code, ...}."""

from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import ServiceError


def _first_message(errors, prefix="") -> str:
    """'field: message' for the first error in a DRF error structure."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            label = (
                "" if key in ("non_field_errors", "detail") else (f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
            )
            return _first_message(value, label)
    if isinstance(errors, list):
        for index, value in enumerate(errors):
            if isinstance(value, (dict, list)):
                return _first_message(value, f"{prefix}[{index}]" if prefix else f"[{index}]")
            return f"{prefix}: {value}" if prefix else str(value)
    return f"{prefix}: {errors}" if prefix else str(errors)


@csrf_exempt  # no view here: a POST to a wrong URL is a 404, not a CSRF failure
def api_not_found(request, *args, **kwargs):
    """Every /api/ URL no endpoint matches (`/api/datasets/abc/`, `/api/nope/`): a 404 in the error shape.

    Routed as the last /api/ pattern, so it answers with DEBUG on too (handler404
    is only consulted with DEBUG off). Matching every /api/ path also hides a
    missing trailing slash from CommonMiddleware, so that redirect is made here.
    """
    with_slash = request.path_info + "/"
    if not request.path_info.endswith("/") and _is_endpoint(with_slash):
        if request.method in ("GET", "HEAD"):
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
        detail = f"No such endpoint; did you mean {with_slash}?"
    else:
        detail = "No such endpoint."
    return JsonResponse({"detail": detail, "code": "not_found"}, status=status.HTTP_404_NOT_FOUND)


def _is_endpoint(path: str) -> bool:
    try:
        return resolve(path).func is not api_not_found
    except Resolver404:
        return False


def not_found(request, exception=None):
    """handler404: JSON under /api/ (a view raising Http404 outside DRF), Django's page elsewhere."""
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=status.HTTP_404_NOT_FOUND)
    return page_not_found(request, exception)


def json_exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        body = {"detail": exc.message, "code": exc.code}
        body.update(exc.details)
        return Response(body, status=exc.status_code)
    if isinstance(exc, (TooManyFilesSent, TooManyFieldsSent, RequestDataTooBig)):
        # Django refuses to parse such a request body at all.
        return Response(
            {"detail": str(exc) or "Request too large.", "code": "too_large"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "code" not in response.data:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        if isinstance(codes, str):
            response.data["code"] = codes
        elif response.status_code == status.HTTP_400_BAD_REQUEST:
            response.data = {
                "detail": _first_message(response.data) or "Invalid input.",
                "code": "invalid",
                "errors": response.data,
            }
    elif response is not None and isinstance(response.data, list):
        response.data = {
            "detail": _first_message(response.data) or "Invalid input.",
            "code": "invalid",
            "errors": response.data,
        }
    return response
