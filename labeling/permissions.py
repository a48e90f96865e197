"""Who may do what in a dataset. Every page and endpoint goes through here.

A user who is not a member of a dataset must not learn that it exists, so a
missing membership is a 404, never a 403; a member whose role is too low for
an action gets a 403.
"""
from django.http import Http404

from .errors import PermissionRefused
from .models import ROLE_RANK, Dataset, Membership, Role

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
}


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
        raise Http404("No such dataset.")
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


def allowed_actions(role: str | None) -> set[str]:
    return {action for action in ACTION_MIN_ROLE if role_allows(role, action)}
