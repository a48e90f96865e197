"""Every URL route of the project, straight from the URL resolver: what the permission checks walk."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver


@dataclass(frozen=True)
class Route:
    route: str  # "api/datasets/<int:dataset_id>/", as Django writes it
    name: str | None
    callback: object

    @property
    def view_class(self):
        """The class of a class-based view (DRF's as_view sets `cls`, Django's `view_class`), else None."""
        return getattr(self.callback, "view_class", None) or getattr(self.callback, "cls", None)


def routes(patterns=None, prefix: str = "") -> Iterator[Route]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield Route(route, entry.name, entry.callback)
