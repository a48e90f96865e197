"""Pages: datasets, the dataset overview and its admin forms, upload, grid labeling,
review and the image page.

Pages render what is cheap to render on the server (at most one page of rows,
with a fixed number of queries) and leave the interactive parts to the JS
modules in static/js, which talk to the REST API. Form posts call the services.
"""
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from .errors import PermissionRefused, ServiceError
from .forms import DatasetForm, LabelClassForm, MemberAddForm, MemberRoleForm
from .models import Annotation, AnnotationSource, Dataset, Image, LabelClass, Role
from .page_params import PageParameterError, choice_param, class_param, int_param
from .permissions import allowed_actions, dataset_for_user
from .services.datasets import CLASS_PALETTE

THUMBNAILS_PER_PAGE = 60
HISTORY_ROWS = 100


# --- helpers shared with embeddings.views ------------------------------------------------


def render_refusal(request, exc: PermissionRefused, dataset=None):
    return render(request, "403.html", {"reason": exc.message, "dataset": dataset}, status=403)


def render_bad_parameter(request, exc: PageParameterError, dataset=None):
    reason = f"The “{exc.name}” option in this address is not valid: {exc.message}"
    context = {"reason": reason, "dataset": dataset}
    if dataset is not None:  # the top bar as on the page itself
        context.update(role=dataset.user_role, allowed_actions=dataset.allowed)
    return render(request, "400.html", context, status=400)


def dataset_page(action: str = "view"):
    """Decorator for /datasets/<dataset_id>/... pages: login, membership (404) and role (403)."""

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapper(request, dataset_id, *args, **kwargs):
            try:
                dataset = dataset_for_user(request.user, dataset_id, action)
            except PermissionRefused as exc:
                # Members may see that the page exists; say why they cannot use it.
                member_dataset = dataset_for_user(request.user, dataset_id, "view")
                return render_refusal(request, exc, dataset=_with_actions(member_dataset))
            dataset = _with_actions(dataset)
            try:
                return view(request, dataset, *args, **kwargs)
            except PageParameterError as exc:
                return render_bad_parameter(request, exc, dataset=dataset)

        return wrapper

    return decorate


def _with_actions(dataset):
    dataset.allowed = allowed_actions(dataset.user_role)
    return dataset


def dataset_classes(dataset) -> list[dict]:
    """The dataset's classes with their image counts, as plain dicts for templates and page JSON."""
    from .selectors.datasets import dataset_classes as classes_with_counts

    return [
        {"id": c.id, "name": c.name, "color": c.color, "shortcut": c.shortcut, "count": c.image_count}
        for c in classes_with_counts(dataset)
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


def _service_call(request, func, success: str, **kwargs):
    """Run a service for a form post; its errors become messages on the next page."""
    try:
        result = func(**kwargs)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return None
    messages.success(request, success)
    return result


def _form_errors(request, form):
    for field, errors in form.errors.items():
        label = "" if field == "__all__" else f"{form.fields[field].label or field.capitalize()}: "
        for error in errors:
            messages.error(request, f"{label}{error}")


# --- dataset list ---------------------------------------------------------------------------------


@login_required
def dataset_list(request):
    form = DatasetForm()
    if request.method == "POST":
        from .services.datasets import dataset_create

        form = DatasetForm(request.POST)
        if form.is_valid():
            dataset = _service_call(
                request, dataset_create, "Dataset created. Upload images next.",
                user=request.user, name=form.cleaned_data["name"], description=form.cleaned_data["description"],
            )
            if dataset is not None:
                return redirect("labeling:dataset-upload", dataset.id)
        else:
            _form_errors(request, form)
    from .selectors.datasets import datasets_for_user

    datasets = datasets_for_user(request.user).order_by("name", "id")
    return render(request, "labeling/dataset_list.html", {"datasets": datasets, "form": form, "page_data": {}})


# --- dataset overview -------------------------------------------------------------------------------


@dataset_page("view")
def dataset_detail(request, dataset):
    images = Image.objects.filter(dataset=dataset).select_related("annotation__label_class").only(
        "id", "original_name", "width", "height", "annotation__label_class__name", "annotation__label_class__color",
        "annotation__id", "annotation__label_class__id",
    ).order_by("id")
    classes = dataset_classes(dataset)
    show = "unlabeled" if request.GET.get("show", "").strip() == "unlabeled" else ""
    if not show:
        show_class = class_param(request.GET, "show", classes)
        show = "" if show_class is None else str(show_class)
    if show == "unlabeled":
        images = images.filter(Q(annotation__isnull=True) | Q(annotation__label_class__isnull=True))
    elif show:
        images = images.filter(annotation__label_class_id=int(show))
    # Past the last page shows the last page (get_page); a malformed number is a 400.
    page = Paginator(images, THUMBNAILS_PER_PAGE).get_page(int_param(request.GET, "page", default=1, min_value=1))

    from .selectors.datasets import dataset_members

    image_count = Image.objects.filter(dataset=dataset).count()
    labeled_count = sum(cls["count"] for cls in classes)
    members = dataset_members(dataset)

    from embeddings.models import TrainingRun

    latest_run = TrainingRun.objects.filter(dataset=dataset).order_by("-id").only(
        "id", "status", "stage", "progress", "created_at", "finished_at", "placed_count", "dataset_id"
    ).first()
    current_run = TrainingRun.objects.filter(dataset=dataset, status="succeeded").order_by("-id").only(
        "id", "finished_at", "image_count", "cluster_count", "placed_count", "dataset_id"
    ).first()
    context = page_context(
        dataset, "overview", classes=classes,
        page=page, show=show, image_count=image_count, labeled_count=labeled_count,
        unlabeled_count=image_count - labeled_count, members=members, latest_run=latest_run, current_run=current_run,
        dataset_form=DatasetForm(initial={"name": dataset.name, "description": dataset.description}),
        member_form=MemberAddForm(), class_form=LabelClassForm(), roles=Role.choices,
        next_class_color=CLASS_PALETTE[len(classes) % len(CLASS_PALETTE)],
    )
    return render(request, "labeling/dataset_detail.html", context)


@require_POST
@dataset_page("edit_dataset")
def dataset_edit(request, dataset):
    from .services.datasets import dataset_update

    form = DatasetForm(request.POST)
    if form.is_valid():
        _service_call(request, dataset_update, "Dataset updated.", dataset=dataset, **form.cleaned_data)
    else:
        _form_errors(request, form)
    return redirect("labeling:dataset-detail", dataset.id)


@require_POST
@dataset_page("delete_dataset")
def dataset_delete_view(request, dataset):
    from .services.datasets import dataset_delete

    if request.POST.get("confirm_name", "") != dataset.name:
        messages.error(request, "Type the dataset's name exactly to delete it.")
        return redirect("labeling:dataset-detail", dataset.id)
    name = dataset.name
    if _service_call(request, dataset_delete, f"Dataset “{name}” deleted.", dataset=dataset) is None and (
        Dataset.objects.filter(pk=dataset.pk).exists()
    ):
        return redirect("labeling:dataset-detail", dataset.id)
    return redirect("labeling:dataset-list")


@require_POST
@dataset_page("manage_members")
def member_add_view(request, dataset):
    from .services.datasets import member_add

    form = MemberAddForm(request.POST)
    if form.is_valid():
        _service_call(
            request, member_add, f"{form.cleaned_data['username']} added as {form.cleaned_data['role']}.",
            dataset=dataset, username=form.cleaned_data["username"], role=form.cleaned_data["role"],
        )
    else:
        _form_errors(request, form)
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#members")


@require_POST
@dataset_page("manage_members")
def member_role_view(request, dataset, user_id):
    from .services.datasets import member_update_role

    form = MemberRoleForm(request.POST)
    if form.is_valid():
        _service_call(request, member_update_role, "Role changed.", dataset=dataset, user_id=user_id,
                      role=form.cleaned_data["role"])
    else:
        _form_errors(request, form)
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#members")


@require_POST
@dataset_page("manage_members")
def member_remove_view(request, dataset, user_id):
    from .services.datasets import member_remove

    _service_call(request, member_remove, "Member removed.", dataset=dataset, user_id=user_id)
    if user_id == request.user.id:
        return redirect("labeling:dataset-list")
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#members")


@require_POST
@dataset_page("manage_classes")
def class_add_view(request, dataset):
    from .services.datasets import label_class_create

    form = LabelClassForm(request.POST)
    if form.is_valid():
        _service_call(request, label_class_create, f"Class “{form.cleaned_data['name']}” added.",
                      dataset=dataset, **form.cleaned_fields())
    else:
        _form_errors(request, form)
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#classes")


def _class_of(dataset, class_id) -> LabelClass:
    label_class = LabelClass.objects.filter(dataset=dataset, pk=class_id).select_related("dataset").first()
    if label_class is None:
        raise Http404("No such class.")
    return label_class


@require_POST
@dataset_page("manage_classes")
def class_edit_view(request, dataset, class_id):
    from .services.datasets import label_class_update

    label_class = _class_of(dataset, class_id)
    form = LabelClassForm(request.POST)
    if form.is_valid():
        fields = form.cleaned_fields()
        if fields["color"] is None:
            fields.pop("color")
        _service_call(request, label_class_update, "Class updated.", label_class=label_class, **fields)
    else:
        _form_errors(request, form)
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#classes")


@require_POST
@dataset_page("manage_classes")
def class_delete_view(request, dataset, class_id):
    from .services.datasets import label_class_delete

    label_class = _class_of(dataset, class_id)
    _service_call(request, label_class_delete, f"Class “{label_class.name}” deleted.", label_class=label_class)
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#classes")


# --- upload, grid labeling, review ------------------------------------------------------------------


@dataset_page("upload")
def dataset_upload(request, dataset):
    from django.conf import settings

    limits = {
        "max_files_per_request": settings.SIMLABEL_MAX_FILES_PER_REQUEST,
        "max_file_bytes": settings.SIMLABEL_MAX_FILE_BYTES,
        "max_upload_bytes": settings.SIMLABEL_MAX_UPLOAD_BYTES,
    }
    return render(request, "labeling/upload.html", page_context(dataset, "upload", limits=limits, page_data={"limits": limits}))


@dataset_page("label")
def dataset_label(request, dataset):
    order = choice_param(request.GET, "order", ("map", "cluster", "upload"), default="map")
    return render(request, "labeling/label_grid.html", page_context(dataset, "label", order=order, page_data={"order": order}))


@dataset_page("view")
def dataset_review(request, dataset):
    # Every member may read the queue (as in the API); only reviewers and admins act on it.
    return render(request, "labeling/review.html", page_context(dataset, "review"))


# --- image page ---------------------------------------------------------------------------------------


@login_required
def image_detail(request, image_id):
    dataset_id = Image.objects.filter(pk=image_id).values_list("dataset_id", flat=True).first()
    if dataset_id is None:
        raise Http404("No such image.")
    dataset = _with_actions(dataset_for_user(request.user, dataset_id, "view"))
    image = Image.objects.select_related("uploaded_by").get(pk=image_id)
    annotation = (
        Annotation.objects.filter(image=image).select_related("label_class", "author", "reviewed_by").first()
    )
    from .selectors.datasets import image_history

    classes = dataset_classes(dataset)
    class_names = {cls["id"]: cls["name"] for cls in classes}
    sources = dict(AnnotationSource.choices)
    history = image_history(image, limit=HISTORY_ROWS)
    for row in history:
        row["old_name"] = class_names.get(row["old_class"], "unlabeled")
        row["new_name"] = class_names.get(row["new_class"], "unlabeled")
        row["source_label"] = "Undo" if row["undo_of"] else sources.get(row["source"], row["source"])
    siblings = Image.objects.filter(dataset_id=dataset_id)
    previous_id = siblings.filter(pk__lt=image.pk).order_by("-pk").values_list("pk", flat=True).first()
    next_id = siblings.filter(pk__gt=image.pk).order_by("pk").values_list("pk", flat=True).first()

    from embeddings.selectors import image_map_position

    position = image_map_position(image)
    suggested = None
    if position and position.get("suggested_class") is not None:
        suggested = next((c for c in classes if c["id"] == position["suggested_class"]), None)
    image_data = {
        "id": image.id,
        "class": annotation.label_class_id if annotation else None,
        "version": annotation.version if annotation else 0,
        "previous": previous_id,
        "next": next_id,
        "suggested_class": suggested["id"] if suggested else None,
        "confidence": position.get("confidence") if position else None,
        # For the history card that image.js rebuilds after each change.
        "sources": sources,
        "history_rows": HISTORY_ROWS,
    }
    context = page_context(
        dataset, "image", classes=classes, image=image, annotation=annotation, history=history,
        previous_id=previous_id, next_id=next_id, position=position, suggested=suggested,
        page_data={"image": image_data},
    )
    return render(request, "labeling/image_detail.html", context)
