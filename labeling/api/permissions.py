"""Which role each endpoint needs, read from the views that declare it.

The roles x actions table itself is core.permissions.ACTION_MIN_ROLE. Each API
view declares the action each of its HTTP methods needs (`actions` on
core.api.contract.ApiView), and ApiView resolves the dataset, image or run of
the URL with it: 404 for non-members, 403 for members whose role is too low.
DRF's IsAuthenticated (the default permission class) answers 401 to anonymous
requests before any of that. This module only lists those declarations for
the tests that try every role against every endpoint.
"""

from core.api.contract import ApiView
from core.permissions import OPEN_ACTIONS
from core.routes import routes


def endpoint_actions() -> dict[tuple[str, str], str | None]:
    """{(HTTP method, route name): action} for every named API endpoint; None where no dataset is involved."""
    table = {}
    for route in routes():
        view = route.view_class
        if route.name and view is not None and issubclass(view, ApiView):
            for method, action in view.actions.items():
                table[(method.upper(), route.name)] = None if action in OPEN_ACTIONS else action
    return table


ENDPOINT_ACTIONS = endpoint_actions()
