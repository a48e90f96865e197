"""Every URL route declares the permission it needs, from the roles x actions table.

Walks the project's URL resolver, so a new API view method or dataset page
cannot ship without an action of core.permissions.ACTION_MIN_ROLE (or, for an
endpoint that concerns no dataset, an explicit ANYONE / SIGNED_IN).
"""

import re

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from core.api.contract import ApiView
from core.permissions import ACTION_MIN_ROLE, OPEN_ACTIONS
from core.routes import routes

HANDLERS = ("get", "post", "put", "patch", "delete")
ID_KEYWORDS = ("dataset_id", "image_id", "run_id")


def _keywords(route: str) -> set[str]:
    return set(re.findall(r"<(?:\w+:)?(\w+)>", route))


ALL = list(routes())
API = [
    r
    for r in ALL
    if r.view_class is not None
    and issubclass(r.view_class, APIView)
    and not r.view_class.__module__.startswith("drf_spectacular")
]
PAGES = [
    r
    for r in ALL
    if r not in API and not r.route.startswith(("api/", "admin/")) and _keywords(r.route) & set(ID_KEYWORDS)
]


def test_the_walk_sees_the_routes():
    assert len(API) >= 20
    assert {r.name for r in PAGES} >= {
        "dataset-detail",
        "dataset-map",
        "dataset-label",
        "image-detail",
        "run-reconstructions",
    }


@pytest.mark.parametrize("route", API, ids=lambda r: r.route)
def test_every_api_method_declares_an_action(route):
    view = route.view_class
    assert issubclass(view, ApiView), f"{view.__name__} must subclass core.api.contract.ApiView"
    handlers = {m for m in HANDLERS if hasattr(view, m)}
    assert handlers, view
    assert handlers == set(view.actions), f"{view.__name__}.actions must name exactly its methods {sorted(handlers)}"
    for method, action in view.actions.items():
        assert action in ACTION_MIN_ROLE or action in OPEN_ACTIONS, f"{view.__name__}.{method}: {action!r}"
        if action in OPEN_ACTIONS:
            # An open action resolves nothing: it may not sit on a URL that names a dataset's object.
            assert not _keywords(route.route) & set(view.url_objects), f"{view.__name__}.{method}"


@pytest.mark.parametrize("route", API, ids=lambda r: r.route)
def test_every_object_of_an_api_url_is_resolved_through_the_table(route):
    missing = _keywords(route.route) & set(ID_KEYWORDS) - set(route.view_class.url_objects)
    assert not missing, f"{route.view_class.__name__} does not resolve {missing}"


@pytest.mark.parametrize("route", PAGES, ids=lambda r: r.route)
def test_every_dataset_page_declares_an_action(route):
    action = getattr(route.callback, "dataset_action", None)
    assert action in ACTION_MIN_ROLE, f"{route.route}: wrap the view in core.pages.dataset_page / image_page"


def test_a_handler_without_a_declared_action_does_not_run():
    class Undeclared(ApiView):
        def get(self, request, dataset_id):
            raise AssertionError("ran unchecked")

    request = APIRequestFactory().get("/anything/")
    force_authenticate(request, user=User(username="someone"))
    with pytest.raises(ImproperlyConfigured, match="declares no action"):
        Undeclared.as_view()(request, dataset_id=1)
