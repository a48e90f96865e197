"""Who may do what in a dataset. Every page and endpoint goes through here.

A user who is not a member of a dataset must not learn that it exists, so a
missing membership is a 404, never a 403; a member whose role is too low for
an action gets a 403.
"""

from django.http import Http404

from core.errors import PermissionRefused
from labeling.models import ROLE_RANK, Dataset, Image, Membership, Role

MAX_DB_INT = 2**63 - 1

# The roles x actions table. Tests are generated from it.
ACTION_MIN_ROLE = {
    "view": Role.ANNOTATOR,
    "label": Role.ANNOTATOR,
    "upload": Role.ADMIN,
    "review": Role.REVIEWER,
    "manage_members": Role.ADMIN,
    "manage_classes": Role.ADMIN,
    "start_run": Role.ADMIN,
    "cancel_run": Role.ADMIN,
    "edit_dataset": Role.ADMIN,
    "delete_dataset": Role.ADMIN,
    "export": Role.ANNOTATOR,
    "manage_storages": Role.ADMIN,
    "manage_webhooks": Role.ADMIN,
    "upload_predictions": Role.ANNOTATOR,  # the bulk-labeling role: predictions only suggest labels
}

# Declared instead of an action by endpoints that concern no dataset: the role table does not apply.
ANYONE = "anyone"  # no sign-in needed (exchanging a password for a token)
SIGNED_IN = "signed_in"  # any signed-in user (the own-datasets list, creating a dataset, revoking one's token)
OPEN_ACTIONS = frozenset({ANYONE, SIGNED_IN})


def membership_role(user, dataset_id: int) -> str | None:
    if not user or not user.is_authenticated:
        return None
    return Membership.objects.filter(dataset_id=dataset_id, user=user).values_list("role", flat=True).first()


def role_allows(role: str | None, action: str) -> bool:
    if role is None:
        return False
    return ROLE_RANK[Role(role)] >= ROLE_RANK[ACTION_MIN_ROLE[action]]


def dataset_for_user(user, dataset_id, action: str = "view") -> Dataset:
    """The dataset if `user` may do `action` in it; 404 for non-members, 403 for too low a role."""
    try:
        dataset_id = int(dataset_id)
    except (TypeError, ValueError):
        raise Http404("No such dataset.") from None
    if not 0 < dataset_id < 2**63:  # beyond any id; SQLite cannot even bind it
        raise Http404("No such dataset.")
    role = membership_role(user, dataset_id)
    if role is None:
        raise Http404("No such dataset.")
    if not role_allows(role, action):
        raise PermissionRefused(f"Your role ({role}) may not {action.replace('_', ' ')} in this dataset.")
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        raise Http404("No such dataset.")
    dataset.user_role = role  # for templates and serializers: hide actions the role may not take
    return dataset


def as_id(value) -> int | None:
    """`value` as a row id, or None when it cannot be one (not an integer, or beyond any id)."""
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if 0 < value <= MAX_DB_INT else None


def dataset_object_for_user(user, queryset, object_id, action: str = "view", *, noun: str):
    """The row of `queryset` (anything with a dataset) if `user` may do `action` in its dataset.

    One query for the row before the permission check: image and run requests are frequent. A
    non-member gets the same 404 as for an id that does not exist.
    """
    pk = as_id(object_id)
    obj = queryset.filter(pk=pk).first() if pk else None
    if obj is None:
        raise Http404(f"No such {noun}.")
    try:
        dataset = dataset_for_user(user, obj.dataset_id, action)
    except Http404:
        raise Http404(f"No such {noun}.") from None
    obj.dataset = dataset  # carries user_role
    return obj


def image_for_user(user, image_id, action: str = "view") -> Image:
    """The image (with its annotation) if the user may do `action` in its dataset; 404 otherwise."""
    return dataset_object_for_user(user, Image.objects.select_related("annotation"), image_id, action, noun="image")


def allowed_actions(role: str | None) -> set[str]:
    return {action for action in ACTION_MIN_ROLE if role_allows(role, action)}
