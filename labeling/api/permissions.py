"""Which role each endpoint needs, in one place.

The roles x actions table itself is labeling.permissions.ACTION_MIN_ROLE;
views name an action from it and resolve the dataset with
`dataset_for_user`, which answers 404 to non-members and 403 to members
whose role is too low. DRF's IsAuthenticated (the default permission class)
answers 401 to anonymous requests before any of that.
"""
from labeling.permissions import ACTION_MIN_ROLE, dataset_for_user  # noqa: F401

# (HTTP method, route name) -> action in ACTION_MIN_ROLE. Tests iterate over it.
ENDPOINT_ACTIONS = {
    ("GET", "dataset-list"): None,  # lists only the user's own datasets
    ("POST", "dataset-list"): None,  # any signed-in user may create a dataset
    ("GET", "dataset-detail"): "view",
    ("PATCH", "dataset-detail"): "edit_dataset",
    ("DELETE", "dataset-detail"): "delete_dataset",
    ("GET", "member-list"): "view",
    ("POST", "member-list"): "manage_members",
    ("PATCH", "member-detail"): "manage_members",
    ("DELETE", "member-detail"): "manage_members",
    ("GET", "class-list"): "view",
    ("POST", "class-list"): "manage_classes",
    ("GET", "class-detail"): "view",
    ("PATCH", "class-detail"): "manage_classes",
    ("DELETE", "class-detail"): "manage_classes",
    ("GET", "image-list"): "view",
    ("POST", "image-list"): "upload",
    ("GET", "image-detail"): "view",
    ("GET", "image-history"): "view",
    ("PUT", "image-annotation"): "label",
    ("DELETE", "image-annotation"): "label",
    ("POST", "annotation-bulk"): "label",
    ("GET", "action-list"): "view",
    ("POST", "action-undo"): "label",  # and only the action's author or an admin
    ("GET", "review-queue"): "view",
    ("POST", "review-resolve"): "review",
    ("POST", "suggestions-accept"): "label",
    ("GET", "export"): "export",
    ("GET", "run-list"): "view",
    ("POST", "run-list"): "start_run",
    ("GET", "run-detail"): "view",
    ("POST", "run-cancel"): "cancel_run",
    ("GET", "dataset-map"): "view",
    ("GET", "dataset-clusters"): "view",
    ("GET", "image-similar"): "view",
}

for _action in ENDPOINT_ACTIONS.values():
    assert _action is None or _action in ACTION_MIN_ROLE, _action
