"""Refuse an oversize API request body from its Content-Length, before anything reads it.

DRF reads the body only when a view touches request.data, and then in full:
Django's DATA_UPLOAD_MAX_MEMORY_SIZE guards request.body and request.POST,
which DRF's parsers do not use. So a 60 MB JSON body was read, decoded and
parsed for an anonymous caller before the first field was checked.
"""

from django.conf import settings
from django.http import JsonResponse

API_PREFIX = "/api/"
# The setting that bounds a request body, unless the view names another
# (the image upload names SIMLABEL_MAX_UPLOAD_BYTES; labeling/uploads.py counts its files).
DEFAULT_LIMIT_SETTING = "SIMLABEL_MAX_JSON_BYTES"


def request_body_limit(view_class) -> int:
    return getattr(settings, getattr(view_class, "request_body_limit_setting", DEFAULT_LIMIT_SETTING))


class ApiRequestBodyLimitMiddleware:
    """413 in the API's error shape for a Content-Length above the view's limit; the view never runs.

    Runs in process_view (the URL is resolved, so the view's own limit is known)
    and before CsrfViewMiddleware, which may read request.POST. A request
    without a Content-Length has no body as far as Django is concerned: WSGI
    gives the view an empty stream.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not request.path_info.startswith(API_PREFIX):
            return None
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None  # Django reads no body either
        limit = request_body_limit(getattr(view_func, "view_class", None) or getattr(view_func, "cls", None))
        if length <= limit:
            return None
        return JsonResponse(
            {
                "detail": f"The request body is {length} bytes; this endpoint takes at most {limit}.",
                "code": "too_large",
            },
            status=413,
        )
