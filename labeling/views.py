"""Pages: datasets, the dataset overview and its admin forms, upload, grid labeling,
review and the image page.

Pages render what is cheap to render on the server (at most one page of rows,
with a fixed number of queries) and leave the interactive parts to the JS
modules in static/js, which talk to the REST API. Form posts call the services.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from core.errors import ServiceError
from core.page_params import choice_param, class_param, int_param
from core.pages import dataset_classes, dataset_page, image_page, page_context
from embeddings.selectors import current_run, dataset_runs, image_map_position

from . import selectors
from .api import serializers as api_serializers
from .forms import DatasetForm, LabelClassForm, MemberAddForm, MemberRoleForm
from .models import AnnotationSource, Dataset, Role
from .selectors.predictions import image_predictions
from .selectors.webhooks import webhooks_overview
from .services.datasets import (
    CLASS_PALETTE,
    dataset_create,
    dataset_delete,
    dataset_update,
    label_class_create,
    label_class_delete,
    label_class_update,
    member_add,
    member_remove,
    member_update_role,
)

THUMBNAILS_PER_PAGE = 60
HISTORY_ROWS = 100


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
        form = DatasetForm(request.POST)
        if form.is_valid():
            dataset = _service_call(
                request,
                dataset_create,
                "Dataset created. Upload images next.",
                user=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
            )
            if dataset is not None:
                return redirect("labeling:dataset-upload", dataset.id)
        else:
            _form_errors(request, form)
    datasets = selectors.datasets_for_user(request.user).order_by("name", "id")
    return render(request, "labeling/dataset_list.html", {"datasets": datasets, "form": form, "page_data": {}})


# --- dataset overview -------------------------------------------------------------------------------


@dataset_page("view")
def dataset_detail(request, dataset):
    classes = dataset_classes(dataset)
    show = "unlabeled" if request.GET.get("show", "").strip() == "unlabeled" else ""
    if not show:
        show_class = class_param(request.GET, "show", classes)
        show = "" if show_class is None else str(show_class)
    images = selectors.dataset_images(
        dataset,
        class_id=int(show) if show and show != "unlabeled" else None,
        unlabeled=show == "unlabeled",
    ).select_related("annotation__label_class")  # the thumbnails show each image's class
    # Past the last page shows the last page (get_page); a malformed number is a 400.
    page = Paginator(images, THUMBNAILS_PER_PAGE).get_page(int_param(request.GET, "page", default=1, min_value=1))

    image_count = selectors.dataset_images(dataset).count()
    labeled_count = sum(cls["count"] for cls in classes)
    members = selectors.dataset_members(dataset)
    context = page_context(
        dataset,
        "overview",
        classes=classes,
        page=page,
        show=show,
        image_count=image_count,
        labeled_count=labeled_count,
        unlabeled_count=image_count - labeled_count,
        members=members,
        latest_run=dataset_runs(dataset).first(),
        current_run=current_run(dataset),
        dataset_form=DatasetForm(
            initial={"name": dataset.name, "description": dataset.description, "auto_retrain": dataset.auto_retrain}
        ),
        auto_retrain_minutes=f"{settings.SIMLABEL_AUTO_RETRAIN_MIN_MINUTES:g}",
        member_form=MemberAddForm(),
        class_form=LabelClassForm(),
        roles=Role.choices,
        next_class_color=CLASS_PALETTE[len(classes) % len(CLASS_PALETTE)],
        webhooks=webhooks_overview(dataset) if "manage_webhooks" in dataset.allowed else None,
    )
    return render(request, "labeling/dataset_detail.html", context)


@require_POST
@dataset_page("edit_dataset")
def dataset_edit(request, dataset):
    form = DatasetForm(request.POST)
    if form.is_valid():
        _service_call(request, dataset_update, "Dataset updated.", dataset=dataset, **form.cleaned_data)
    else:
        _form_errors(request, form)
    return redirect("labeling:dataset-detail", dataset.id)


@require_POST
@dataset_page("delete_dataset")
def dataset_delete_view(request, dataset):
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
    form = MemberAddForm(request.POST)
    if form.is_valid():
        _service_call(
            request,
            member_add,
            f"{form.cleaned_data['username']} added as {form.cleaned_data['role']}.",
            dataset=dataset,
            username=form.cleaned_data["username"],
            role=form.cleaned_data["role"],
        )
    else:
        _form_errors(request, form)
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#members")


@require_POST
@dataset_page("manage_members")
def member_role_view(request, dataset, user_id):
    form = MemberRoleForm(request.POST)
    if form.is_valid():
        _service_call(
            request,
            member_update_role,
            "Role changed.",
            dataset=dataset,
            user_id=user_id,
            role=form.cleaned_data["role"],
        )
    else:
        _form_errors(request, form)
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#members")


@require_POST
@dataset_page("manage_members")
def member_remove_view(request, dataset, user_id):
    _service_call(request, member_remove, "Member removed.", dataset=dataset, user_id=user_id)
    if user_id == request.user.id:
        return redirect("labeling:dataset-list")
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#members")


@require_POST
@dataset_page("manage_classes")
def class_add_view(request, dataset):
    form = LabelClassForm(request.POST)
    if form.is_valid():
        _service_call(
            request,
            label_class_create,
            f"Class “{form.cleaned_data['name']}” added.",
            dataset=dataset,
            **form.cleaned_fields(),
        )
    else:
        _form_errors(request, form)
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#classes")


@require_POST
@dataset_page("manage_classes")
def class_edit_view(request, dataset, class_id):
    label_class = selectors.label_class_for_update(dataset, class_id)
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
    label_class = selectors.label_class_for_update(dataset, class_id)
    _service_call(request, label_class_delete, f"Class “{label_class.name}” deleted.", label_class=label_class)
    return redirect(reverse("labeling:dataset-detail", args=[dataset.id]) + "#classes")


# --- upload, grid labeling, review ------------------------------------------------------------------


@dataset_page("upload")
def dataset_upload(request, dataset):
    limits = {
        "max_files_per_request": settings.SIMLABEL_MAX_FILES_PER_REQUEST,
        "max_file_bytes": settings.SIMLABEL_MAX_FILE_BYTES,
        "max_upload_bytes": settings.SIMLABEL_MAX_UPLOAD_BYTES,
    }
    return render(
        request, "labeling/upload.html", page_context(dataset, "upload", limits=limits, page_data={"limits": limits})
    )


@dataset_page("label")
def dataset_label(request, dataset):
    order = choice_param(request.GET, "order", ("map", "cluster", "upload"), default="map")
    return render(
        request, "labeling/label_grid.html", page_context(dataset, "label", order=order, page_data={"order": order})
    )


@dataset_page("view")
def dataset_review(request, dataset):
    # Every member may read the queue (as in the API); only reviewers and admins act on it.
    return render(request, "labeling/review.html", page_context(dataset, "review"))


# --- image page ---------------------------------------------------------------------------------------


@image_page("view")
def image_detail(request, image):
    dataset = image.dataset
    annotation = selectors.image_annotation(image)
    classes = dataset_classes(dataset)
    class_names = {cls["id"]: cls["name"] for cls in classes}
    sources = dict(AnnotationSource.choices)
    history = selectors.image_history(image, limit=HISTORY_ROWS)
    for row in history:
        row["old_name"] = class_names.get(row["old_class"], "unlabeled")
        row["new_name"] = class_names.get(row["new_class"], "unlabeled")
        row["source_label"] = "Undo" if row["undo_of"] else sources.get(row["source"], row["source"])
    previous_id, next_id = selectors.image_neighbors(image)

    position = image_map_position(image)
    suggested = None
    if position and position.get("suggestion") is not None:
        suggested = next((c for c in classes if c["id"] == position["suggestion"]), None)
    image_data = {
        **api_serializers.image_data(request, image, position),  # the API's shape of an image
        "previous": previous_id,
        "next": next_id,
        # For the history card that image.js rebuilds after each change.
        "sources": sources,
        "history_rows": HISTORY_ROWS,
    }
    context = page_context(
        dataset,
        "image",
        classes=classes,
        image=image,
        annotation=annotation,
        history=history,
        previous_id=previous_id,
        next_id=next_id,
        position=position,
        suggested=suggested,
        predictions=image_predictions(image),
        page_data={"image": image_data},
    )
    return render(request, "labeling/image_detail.html", context)
