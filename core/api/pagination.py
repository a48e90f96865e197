"""One pagination rule for every list of the API.

`page` and `page_size` must be integers (page >= 1, 1 <= page_size <= 500);
anything else is a 400 `invalid`. A well-formed page past the last one is a 404
`not_found` ("Invalid page."); page 1 of an empty list is an empty page.
DRF's own PageNumberPagination answered 404 for page=abc, 0 or -1 and
silently used the default for page_size=abc, while lists whose query
serializer named the two answered 400.
"""

from drf_spectacular.utils import OpenApiParameter
from rest_framework.pagination import PageNumberPagination
from rest_framework.views import APIView

from core.errors import ValidationFailed

MAX_PAGE_SIZE = 500


def _positive_int(request, name: str, maximum: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    well_formed = raw.isascii() and raw.isdigit() and len(raw) <= 18  # "²".isdigit() is True
    if not well_formed or int(raw) < 1 or (maximum is not None and int(raw) > maximum):
        bound = f" of at most {maximum}" if maximum is not None else ""
        raise ValidationFailed(f"{name}: must be a positive integer{bound}.", field=name)
    return int(raw)


class StandardPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        return _positive_int(request, self.page_size_query_param, self.max_page_size) or self.page_size

    def get_page_number(self, request, paginator):
        return _positive_int(request, self.page_query_param) or 1


def paginate(view: APIView, request, queryset, to_data):
    """One page of `queryset` as the paginated response; `to_data` turns the page's rows into data."""
    paginator = getattr(view, "pagination_class", StandardPagination)()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(to_data(page))


# The same rule for the schema: every paginated list declares these (or a query serializer with the same bounds).
PAGE_PARAMETERS = [
    OpenApiParameter(
        "page", {"type": "integer", "minimum": 1}, description="1, 2, …; malformed is a 400, past the last page a 404"
    ),
    OpenApiParameter(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        description=f"results per page (default 50, at most {MAX_PAGE_SIZE})",
    ),
]
