"""What every /datasets/<id>/... page shares: the access decorator (login, membership 404, role
403), the refusal and bad-option pages, and the context the base template needs."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import render

from core.errors import PermissionRefused
from core.page_params import PageParameterError
from core.permissions import allowed_actions, dataset_for_user, image_for_user
from labeling.models import LabelClass


def render_refusal(request, exc: PermissionRefused, dataset=None):
    return render(request, "403.html", {"reason": exc.message, "dataset": dataset}, status=403)


def render_bad_parameter(request, exc: PageParameterError, dataset=None):
    reason = f"The “{exc.name}” option in this address is not valid: {exc.message}"
    context = {"reason": reason, "dataset": dataset}
    if dataset is not None:  # the top bar as on the page itself
        context.update(role=dataset.user_role, allowed_actions=dataset.allowed)
    return render(request, "400.html", context, status=400)


def _member_page(action: str, url_kwarg: str, resolve, dataset_of):
    """A page decorator: login, then `resolve(user, <url_kwarg>, action)` (404 for non-members, PermissionRefused for
    too low a role, shown as a page that says why), then the view with the resolved object.

    The wrapped view keeps `action` as `dataset_action`, which a test checks on every route.
    """

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            object_id = kwargs.pop(url_kwarg)
            try:
                obj = resolve(request.user, object_id, action)
            except PermissionRefused as exc:
                # Members may see that the page exists; say why they cannot use it.
                member_obj = resolve(request.user, object_id, "view")
                return render_refusal(request, exc, dataset=with_actions(dataset_of(member_obj)))
            with_actions(dataset_of(obj))
            try:
                return view(request, obj, *args, **kwargs)
            except PageParameterError as exc:
                return render_bad_parameter(request, exc, dataset=dataset_of(obj))

        wrapper.dataset_action = action
        return wrapper

    return decorate


def dataset_page(action: str = "view"):
    """Decorator for /datasets/<dataset_id>/... pages: login, membership (404) and role (403).

    `action` is one of the roles x actions table (core.permissions.ACTION_MIN_ROLE).
    """
    return _member_page(action, "dataset_id", dataset_for_user, lambda dataset: dataset)


def image_page(action: str = "view"):
    """Decorator for /images/<image_id>/... pages: as dataset_page, through the image's dataset.

    The view gets the image, whose `dataset` carries the role and what it allows;
    an unknown image and one of a dataset the user is not a member of are the same 404.
    """
    return _member_page(action, "image_id", image_for_user, lambda image: image.dataset)


def with_actions(dataset):
    """The dataset with `allowed`: what its user's role may do (the top bar shows only those)."""
    dataset.allowed = allowed_actions(dataset.user_role)
    return dataset


def dataset_classes(dataset) -> list[dict]:
    """The dataset's classes with their image counts, as plain dicts for templates and page JSON."""
    classes = LabelClass.objects.filter(dataset=dataset).annotate(image_count=Count("annotations")).order_by("id")
    return [
        {"id": c.id, "name": c.name, "color": c.color, "shortcut": c.shortcut, "count": c.image_count} for c in classes
    ]


def page_context(dataset, section: str, **extra) -> dict:
    """What every dataset page's template needs: the dataset, the role, and what it may do."""
    classes = extra.pop("classes", None)
    if classes is None:
        classes = dataset_classes(dataset)
    data = {
        "dataset": {"id": dataset.id, "name": dataset.name},
        "role": dataset.user_role,
        "allowed_actions": sorted(dataset.allowed),
        "classes": classes,
    }
    data.update(extra.pop("page_data", {}))
    return {
        "dataset": dataset,
        "role": dataset.user_role,
        "allowed_actions": dataset.allowed,
        "nav_section": section,
        "classes": classes,
        "page_data": data,
        **extra,
    }
