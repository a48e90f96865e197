"""HTTP endpoints for datasets, members, classes, images, labels, review and export.

Each view declares the action of the roles x actions table each HTTP method
needs (`actions`); core.api.contract.ApiView resolves the dataset or image of
the URL with it (404 for non-members, 403 for too low a role) and hands it to
the handler, which validates its input with a serializer, calls one service or
selector and answers in the resource's one shape (labeling.api.serializers).
"""

from __future__ import annotations

import unicodedata

from django.conf import settings
from django.contrib.auth import authenticate
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.exceptions import Throttled
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from core.api.authentication import token_expires_at
from core.api.contract import ApiView, validated, validated_query
from core.api.pagination import PAGE_PARAMETERS, StandardPagination, paginate
from core.api.serializers import ERRORS, ErrorSerializer, error_responses, upload_error_responses
from core.errors import PayloadTooLarge, PermissionRefused, ValidationFailed
from core.permissions import ANYONE, SIGNED_IN, dataset_for_user, role_allows
from labeling import selectors
from labeling.models import LabelAction
from labeling.selectors.review import review_queue_for_dataset
from labeling.services import annotations as annotation_services
from labeling.services import datasets as dataset_services
from labeling.services.exports import labels_export
from labeling.services.images import images_ingest
from labeling.services.label_import import labels_import
from labeling.services.review import review_item_resolve
from labeling.services.suggestions import suggestions_accept, suggestions_accept_preview
from labeling.services.tokens import token_issue, tokens_revoke
from labeling.services.webhooks import export_ready_notify
from project.throttling import login_failed, login_succeeded, login_wait_seconds

from . import serializers as s

# --- auth -----------------------------------------------------------------------------------------


class TokenView(ApiView):
    """POST exchanges a username and password for an API token (behind the sign-in throttle);
    DELETE revokes the caller's token."""

    # Signing in needs no credentials (ApiView then ignores any sent along); revoking needs the token.
    actions = {"post": ANYONE, "delete": SIGNED_IN}

    @extend_schema(
        request=s.TokenRequestSerializer,
        responses={200: s.TokenSerializer, 400: ERRORS[400], 429: OpenApiResponse(ErrorSerializer)},
        auth=[],
        tags=["auth"],
        description="A token lasts SIMLABEL_TOKEN_TTL_DAYS (30) days from when it was issued; asking again returns "
        "the same token until it expires. Failed attempts are throttled per address and username (429).",
    )
    def post(self, request):
        data = validated(s.TokenRequestSerializer, request.data)
        # NFKC, as Django's login form reads a username, so both paths know the same users.
        username = unicodedata.normalize("NFKC", data["username"])
        wait = login_wait_seconds(request._request, username)
        if wait:
            raise Throttled(wait=wait)
        user = authenticate(request=request._request, username=username, password=data["password"])
        if user is None or not user.is_active:
            login_failed(request._request, username)
            raise ValidationFailed("Unable to sign in with these credentials.", code="invalid_credentials")
        login_succeeded(request._request, username)
        token = token_issue(user=user)
        expires = token_expires_at(token)
        return Response({"token": token.key, "expires": expires.isoformat() if expires else None})

    @extend_schema(request=None, responses={204: None, **error_responses(401)}, tags=["auth"])
    def delete(self, request):
        tokens_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- datasets ----------------------------------------------------------------------------------------


class DatasetListView(ApiView):
    pagination_class = StandardPagination  # also tells the schema these lists are paginated
    actions = {"get": SIGNED_IN, "post": SIGNED_IN}  # lists only the user's own datasets; anyone may create one

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: s.DatasetSerializer(many=True), **error_responses(401)},
        tags=["datasets"],
    )
    def get(self, request):
        return paginate(
            self,
            request,
            selectors.datasets_for_user(request.user),
            lambda page: s.DatasetSerializer(page, many=True).data,
        )

    @extend_schema(
        request=s.DatasetWriteSerializer,
        responses={201: s.DatasetSerializer, **error_responses(400, 401)},
        tags=["datasets"],
    )
    def post(self, request):
        data = validated(s.DatasetWriteSerializer, request.data)
        dataset = dataset_services.dataset_create(user=request.user, **data)
        dataset = dataset_for_user(request.user, dataset.pk, "view")  # with the creator's role, for `role`
        return Response(
            s.DatasetSerializer(selectors.dataset_with_counts(dataset)).data, status=status.HTTP_201_CREATED
        )


class DatasetDetailView(ApiView):
    actions = {"get": "view", "patch": "edit_dataset", "delete": "delete_dataset"}

    @extend_schema(responses={200: s.DatasetSerializer, **error_responses(401, 404)}, tags=["datasets"])
    def get(self, request, dataset):
        return Response(s.DatasetSerializer(selectors.dataset_with_counts(dataset)).data)

    @extend_schema(
        request=s.DatasetPatchSerializer,
        responses={200: s.DatasetSerializer, **error_responses(400, 401, 403, 404)},
        tags=["datasets"],
    )
    def patch(self, request, dataset):
        data = validated(s.DatasetPatchSerializer, request.data)
        dataset_services.dataset_update(dataset=dataset, **data)
        return Response(s.DatasetSerializer(selectors.dataset_with_counts(dataset)).data)

    @extend_schema(responses={204: None, **error_responses(401, 403, 404)}, tags=["datasets"])
    def delete(self, request, dataset):
        dataset_services.dataset_delete(dataset=dataset)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- members ------------------------------------------------------------------------------------------


class MemberListView(ApiView):
    pagination_class = StandardPagination  # also tells the schema these lists are paginated
    actions = {"get": "view", "post": "manage_members"}

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: s.MemberSerializer(many=True), **error_responses(401, 404)},
        tags=["members"],
    )
    def get(self, request, dataset):
        return paginate(
            self, request, selectors.dataset_members(dataset), lambda page: s.MemberSerializer(page, many=True).data
        )

    @extend_schema(
        request=s.MemberWriteSerializer,
        responses={201: s.MemberSerializer, **error_responses(400, 401, 403, 404), 409: ERRORS[409]},
        tags=["members"],
    )
    def post(self, request, dataset):
        data = validated(s.MemberWriteSerializer, request.data)
        membership = dataset_services.member_add(dataset=dataset, username=data["username"], role=data["role"])
        return Response(s.MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(ApiView):
    actions = {"patch": "manage_members", "delete": "manage_members"}

    @extend_schema(
        request=s.MemberPatchSerializer,
        responses={200: s.MemberSerializer, **error_responses(400, 401, 403, 404), 409: ERRORS[409]},
        tags=["members"],
    )
    def patch(self, request, dataset, user_id):
        data = validated(s.MemberPatchSerializer, request.data)
        membership = dataset_services.member_update_role(dataset=dataset, user_id=user_id, role=data["role"])
        return Response(s.MemberSerializer(membership).data)

    @extend_schema(responses={204: None, **error_responses(401, 403, 404), 409: ERRORS[409]}, tags=["members"])
    def delete(self, request, dataset, user_id):
        dataset_services.member_remove(dataset=dataset, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- classes ---------------------------------------------------------------------------------------------


class LabelClassListView(ApiView):
    pagination_class = StandardPagination  # also tells the schema these lists are paginated
    actions = {"get": "view", "post": "manage_classes"}

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: s.LabelClassSerializer(many=True), **error_responses(401, 404)},
        tags=["classes"],
    )
    def get(self, request, dataset):
        return paginate(
            self, request, selectors.dataset_classes(dataset), lambda page: s.LabelClassSerializer(page, many=True).data
        )

    @extend_schema(
        request=s.LabelClassWriteSerializer,
        responses={201: s.LabelClassSerializer, **error_responses(400, 401, 403, 404)},
        tags=["classes"],
    )
    def post(self, request, dataset):
        data = validated(s.LabelClassWriteSerializer, request.data)
        label_class = dataset_services.label_class_create(dataset=dataset, **data)
        return Response(s.LabelClassSerializer(label_class).data, status=status.HTTP_201_CREATED)


class LabelClassDetailView(ApiView):
    actions = {"get": "view", "patch": "manage_classes", "delete": "manage_classes"}

    @extend_schema(responses={200: s.LabelClassSerializer, **error_responses(401, 404)}, tags=["classes"])
    def get(self, request, dataset, class_id):
        label_class = (
            selectors.dataset_classes(dataset).filter(pk=selectors.label_class_for_update(dataset, class_id).pk).get()
        )
        return Response(s.LabelClassSerializer(label_class).data)

    @extend_schema(
        request=s.LabelClassPatchSerializer,
        responses={200: s.LabelClassSerializer, **error_responses(400, 401, 403, 404)},
        tags=["classes"],
    )
    def patch(self, request, dataset, class_id):
        label_class = selectors.label_class_for_update(dataset, class_id)
        data = validated(s.LabelClassPatchSerializer, request.data)
        label_class = dataset_services.label_class_update(label_class=label_class, **data)
        return Response(s.LabelClassSerializer(label_class).data)

    @extend_schema(responses={204: None, **error_responses(401, 403, 404), 409: ERRORS[409]}, tags=["classes"])
    def delete(self, request, dataset, class_id):
        label_class = selectors.label_class_for_update(dataset, class_id)
        dataset_services.label_class_delete(label_class=label_class)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- images ------------------------------------------------------------------------------------------------


class ImageListView(ApiView):
    pagination_class = StandardPagination  # also tells the schema these lists are paginated
    actions = {"get": "view", "post": "upload"}
    parser_classes = [MultiPartParser, FormParser]
    request_body_limit_setting = "SIMLABEL_MAX_UPLOAD_BYTES"  # read by ApiRequestBodyLimitMiddleware

    @extend_schema(
        parameters=[s.ImageListQuerySerializer],
        responses={200: s.ImageSerializer(many=True), **error_responses(400, 401, 404)},
        tags=["images"],
        description="The dataset's images by id. Only the listed query parameters are accepted; any other is a 400.",
    )
    def get(self, request, dataset):
        query = validated_query(s.ImageListQuerySerializer, request)
        class_id = query.get("class")
        if class_id is not None:
            selectors.label_class_in_dataset(dataset, class_id)
        images = selectors.dataset_images(
            dataset, class_id=class_id, cluster=query.get("cluster"), unlabeled=query.get("unlabeled", False)
        )

        def to_data(page):
            positions = selectors.image_positions(dataset, [image.pk for image in page])
            return [s.image_data(request, image, positions.get(image.pk)) for image in page]

        return paginate(self, request, images, to_data)

    @extend_schema(
        request={"multipart/form-data": s.UploadSerializer},
        responses={
            201: s.UploadReportSerializer,
            **upload_error_responses("Too many or too large files"),
        },
        tags=["images"],
    )
    def post(self, request, dataset):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.SIMLABEL_MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"An upload may be at most {settings.SIMLABEL_MAX_UPLOAD_BYTES} bytes.")
        files = request.FILES.getlist("files")
        if not files:
            raise ValidationFailed("Send one or more files in the multipart field 'files'.", field="files")
        if len(files) > settings.SIMLABEL_MAX_FILES_PER_REQUEST:
            raise PayloadTooLarge(f"At most {settings.SIMLABEL_MAX_FILES_PER_REQUEST} files per request.")
        report = images_ingest(dataset=dataset, user=request.user, files=files)
        return Response(report.as_dict(), status=status.HTTP_201_CREATED)


class ImageDetailView(ApiView):
    actions = {"get": "view"}

    @extend_schema(responses={200: s.ImageDetailSerializer, **error_responses(401, 404)}, tags=["images"])
    def get(self, request, image):
        position = selectors.image_positions(image.dataset, [image.pk]).get(image.pk)
        return Response(s.image_data(request, image, position, detail=True))


class ImageHistoryView(ApiView):
    actions = {"get": "view"}

    @extend_schema(
        responses={200: s.HistoryEntrySerializer(many=True), **error_responses(401, 404)},
        tags=["annotations"],
        description="The image's label changes, newest first (at most 200).",
    )
    def get(self, request, image):
        return Response(s.HistoryEntrySerializer(selectors.image_history(image), many=True).data)


# --- annotations -----------------------------------------------------------------------------------------------


class AnnotationView(ApiView):
    actions = {"put": "label", "delete": "label"}

    @extend_schema(
        request=s.AnnotationSetSerializer,
        responses={
            200: s.AnnotationSerializer,
            **error_responses(400, 401, 403, 404),
            409: OpenApiResponse(s.VersionConflictSerializer, description="Stale version"),
        },
        tags=["annotations"],
    )
    def put(self, request, image):
        data = validated(s.AnnotationSetSerializer, request.data)
        label_class = selectors.label_class_in_dataset(image.dataset, data["class"])
        annotation = annotation_services.annotation_set(
            image=image, label_class=label_class, user=request.user, expected_version=data.get("version")
        )
        return Response(s.annotation_data(annotation))

    @extend_schema(
        parameters=[s.AnnotationDeleteQuerySerializer],
        responses={
            200: s.AnnotationSerializer,
            **error_responses(400, 401, 403, 404),
            409: OpenApiResponse(s.VersionConflictSerializer, description="Stale version"),
        },
        tags=["annotations"],
        description="Clears the image's class. `?version=` makes it conditional like PUT.",
    )
    def delete(self, request, image):
        query = validated_query(s.AnnotationDeleteQuerySerializer, request)
        annotation = annotation_services.annotation_set(
            image=image, label_class=None, user=request.user, expected_version=query.get("version")
        )
        return Response(s.annotation_data(annotation))


class BulkAnnotationView(ApiView):
    actions = {"post": "label"}

    @extend_schema(
        request=s.BulkSerializer,
        responses={
            200: s.BulkResultSerializer,
            **error_responses(400, 401, 403, 404),
            409: OpenApiResponse(s.StaleVersionsSerializer, description="Stale `expected` versions"),
        },
        tags=["annotations"],
        description="Applies one class (null clears) to a selection, a cluster of the current map, or the images "
        "inside a lasso polygon, as one undoable action. Give exactly one of image_ids, cluster, polygon. "
        "Optional `expected` {image id: version}: 409 and nothing changed if a listed image changed since.",
    )
    def post(self, request, dataset):
        data = validated(s.BulkSerializer, request.data)
        label_class = selectors.label_class_in_dataset(dataset, data["class"])
        exclude = data.get("exclude_image_ids") or []
        if "image_ids" in data:
            ids = set(data["image_ids"]) - set(exclude)
            action = annotation_services.annotations_apply_bulk(
                dataset=dataset,
                user=request.user,
                label_class=label_class,
                image_ids=ids,
                expected=data.get("expected"),
            )
        elif "cluster" in data:
            action = annotation_services.annotations_apply_to_cluster(
                dataset=dataset,
                user=request.user,
                label_class=label_class,
                cluster=data["cluster"],
                exclude_image_ids=exclude,
                expected=data.get("expected"),
            )
        else:
            action = annotation_services.annotations_apply_polygon(
                dataset=dataset,
                user=request.user,
                label_class=label_class,
                polygon=data["polygon"],
                exclude_image_ids=exclude,
                expected=data.get("expected"),
            )
        payload = {"updated": action.image_count, "action_id": action.pk}
        if getattr(action, "versions", None) is not None:
            payload["versions"] = {str(i): v for i, v in action.versions.items()}
        return Response(payload)


class LabelImportView(ApiView):
    actions = {"post": "label"}  # the bulk-labeling role; creating classes also needs manage_classes
    parser_classes = [MultiPartParser, FormParser]
    request_body_limit_setting = "SIMLABEL_MAX_LABEL_IMPORT_BYTES"  # read by ApiRequestBodyLimitMiddleware

    @extend_schema(
        request={"multipart/form-data": s.LabelImportSerializer},
        responses={
            200: s.LabelImportResultSerializer,
            **upload_error_responses("Larger than SIMLABEL_MAX_LABEL_IMPORT_BYTES"),
        },
        tags=["annotations"],
        description="Labels images already in the dataset from a file: CSV with a name or sha256 column and a "
        "class column, COCO (images, categories, annotations) or a Label Studio JSON export (each task's "
        "data.image file name and its latest non-cancelled annotation's first choice). Images are matched by "
        "sha256, else file name; rows that match no image, or whose name several images share, are reported "
        "and left out. Classes the dataset lacks are a 400 listing them (`unknown_classes`) unless "
        "create_classes=true (admins). Everything is one undoable action; a bad file is a 400 and nothing "
        "changes.",
    )
    def post(self, request, dataset):
        data = validated(s.LabelImportSerializer, request.data)
        if data["create_classes"] and not role_allows(dataset.user_role, "manage_classes"):
            raise PermissionRefused(
                f"Your role ({dataset.user_role}) may not create classes; import without create_classes, "
                "or ask an admin to add the classes."
            )
        report = labels_import(
            dataset=dataset,
            user=request.user,
            file=data["file"],
            format=data["format"],
            create_classes=data["create_classes"],
            only_unlabeled=data["only_unlabeled"],
        )
        return Response(report.as_dict())


class ActionListView(ApiView):
    pagination_class = StandardPagination  # also tells the schema these lists are paginated
    actions = {"get": "view"}

    @extend_schema(
        parameters=[s.ActionListQuerySerializer],
        responses={200: s.LabelActionSerializer(many=True), **error_responses(400, 401, 404)},
        tags=["annotations"],
        description="Label actions, newest first; `mine=true` for your own (what you can undo).",
    )
    def get(self, request, dataset):
        query = validated_query(s.ActionListQuerySerializer, request)
        actions = selectors.label_actions(dataset, user=request.user if query.get("mine") else None)
        return paginate(self, request, actions, lambda page: s.LabelActionSerializer(page, many=True).data)


class UndoView(ApiView):
    actions = {"post": "label"}  # and only the action's author or a dataset admin (the service checks)

    @extend_schema(
        request=None,
        responses={
            200: s.UndoResultSerializer,
            **error_responses(401, 403, 404),
            409: OpenApiResponse(ErrorSerializer, description="Already undone"),
        },
        tags=["annotations"],
        description="Restores each image's class before the action unless it changed since; those are listed "
        "in `conflicts` and left alone. Only the action's author or a dataset admin may undo it.",
    )
    def post(self, request, dataset, action_id):
        result = annotation_services.label_action_undo(dataset=dataset, user=request.user, action_id=action_id)
        return Response(result)


# --- review ----------------------------------------------------------------------------------------------------


class ReviewQueueView(ApiView):
    actions = {"get": "view"}

    @extend_schema(
        parameters=[s.ReviewQuerySerializer],
        responses={200: s.ReviewItemSerializer(many=True), **error_responses(400, 401, 404)},
        tags=["review"],
    )
    def get(self, request, dataset):
        query = validated_query(s.ReviewQuerySerializer, request)
        items = review_queue_for_dataset(dataset, limit=query["limit"])
        return Response(s.ReviewItemSerializer(items, many=True).data)


def _resolution_payload(result, data) -> dict:
    """review_item_resolve may return a LabelAction, a ReviewResolution or a dict; answer one shape."""
    payload = {"kind": data["kind"], "id": data["id"], "outcome": data["outcome"], "action_id": None, "updated": 0}
    if isinstance(result, dict):
        payload.update({k: result[k] for k in ("action_id", "updated", "skipped") if k in result})
    elif isinstance(result, LabelAction):
        payload.update(action_id=result.pk, updated=result.image_count)
    elif result is not None:
        action = getattr(result, "action", None)
        if isinstance(action, LabelAction):
            payload.update(action_id=action.pk, updated=action.image_count)
    return payload


class ReviewResolveView(ApiView):
    actions = {"post": "review"}

    @extend_schema(
        request=s.ReviewResolveSerializer,
        responses={
            200: s.ReviewResolveResultSerializer,
            **error_responses(400, 401, 403, 404),
            409: OpenApiResponse(s.StaleVersionsSerializer, description="Stale `expected` versions"),
        },
        tags=["review"],
        description="accepted applies the item's suggestion; relabelled applies `class` to `image_ids` "
        "(default: the item's images); reviewed marks it checked. The item leaves the queue.",
    )
    def post(self, request, dataset):
        data = validated(s.ReviewResolveSerializer, request.data)
        label_class = selectors.label_class_in_dataset(dataset, data.get("class"))
        if data["outcome"] == "relabelled" and label_class is None:
            raise ValidationFailed("Relabelling needs a class.", field="class")
        result = review_item_resolve(
            dataset=dataset,
            user=request.user,
            kind=data["kind"],
            object_id=data["id"],
            outcome=data["outcome"],
            label_class=label_class,
            image_ids=data.get("image_ids"),
            expected=data.get("expected"),
        )
        return Response(_resolution_payload(result, data))


class SuggestionsAcceptView(ApiView):
    actions = {"post": "label"}

    @extend_schema(
        request=s.SuggestionsAcceptSerializer,
        responses={
            200: PolymorphicProxySerializer(
                component_name="SuggestionsAcceptResult",
                serializers=[s.BulkResultSerializer, s.SuggestionsAcceptPreviewSerializer],
                resource_type_field_name=None,
            ),
            **error_responses(400, 401, 403, 404),
            409: OpenApiResponse(s.StaleVersionsSerializer, description="Stale `expected` versions"),
        },
        tags=["review"],
        description="Applies each image's suggested class as one action: for the images given, a whole "
        "cluster, or every image suggested `class` (which also narrows the other two); unlabeled images only "
        "unless include_labeled; images whose suggestion is below min_confidence (0..1, default "
        f"{settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE}) are left alone. `source` "
        "\"model:<name>\" takes an uploaded model's predictions as the suggestions instead of the neighbors'. "
        "`dry_run: true` changes nothing and answers the would-be changes (per class, total, the floor used) "
        "with the `expected` that accepts exactly them.",
    )
    def post(self, request, dataset):
        data = validated(s.SuggestionsAcceptSerializer, request.data)
        label_class = selectors.label_class_in_dataset(dataset, data.get("class"))
        scope = {
            "dataset": dataset,
            "image_ids": data.get("image_ids"),
            "cluster": data.get("cluster"),
            "label_class": label_class,
            "min_confidence": data.get("min_confidence", settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE),
            "include_labeled": data["include_labeled"],
            "expected": data.get("expected"),
            "suggestion_source": data["source"],
        }
        if data["dry_run"]:
            preview = suggestions_accept_preview(**scope)
            return Response(
                {
                    "dry_run": True,
                    "total": preview.total,
                    "unlabeled": preview.unlabeled,
                    "relabeled": preview.relabeled,
                    "classes": [{"id": c, "name": name, "count": n} for c, name, n in preview.counts],
                    "min_confidence": preview.min_confidence,
                    "default_min_confidence": settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE,
                    "expected": None if preview.expected is None else {str(i): v for i, v in preview.expected.items()},
                }
            )
        action = suggestions_accept(user=request.user, **scope)
        payload = {"updated": action.image_count, "action_id": action.pk, "skipped": list(action.skipped)}
        if action.versions is not None:
            payload["versions"] = {str(i): v for i, v in action.versions.items()}
        return Response(payload)


# --- export -----------------------------------------------------------------------------------------------------

EXPORT_JSON_SCHEMA = {
    "oneOf": [
        {
            "type": "array",
            "description": "json: one row per image",
            "items": {
                "type": "object",
                "properties": {
                    "image_id": {"type": "integer"},
                    "name": {"type": "string"},
                    "sha256": {"type": "string"},
                    "class": {"type": "string", "nullable": True},
                    "class_id": {"type": "integer", "nullable": True},
                    "author": {"type": "string", "nullable": True},
                    "updated": {"type": "string", "format": "date-time", "nullable": True},
                },
                "required": ["image_id", "name", "sha256", "class", "class_id", "author", "updated"],
            },
        },
        {
            "type": "object",
            "description": "COCO: images, categories and one whole-image annotation per labeled image",
            "properties": {
                "info": {"type": "object"},
                "images": {"type": "array", "items": {"type": "object"}},
                "categories": {"type": "array", "items": {"type": "object"}},
                "annotations": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["images", "categories", "annotations"],
        },
    ]
}


class FormatParamIsNotARenderer(DefaultContentNegotiation):
    """`?format=` names the export format here, not a DRF renderer; errors render as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ExportView(ApiView):
    content_negotiation_class = FormatParamIsNotARenderer
    actions = {"get": "export"}

    @extend_schema(
        parameters=[s.ExportQuerySerializer],
        responses={
            (200, "application/json"): OpenApiResponse(EXPORT_JSON_SCHEMA, description="json, coco or labelstudio"),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="csv"),
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="imagefolder or yolo"),
            (200, "application/vnd.apache.parquet"): OpenApiResponse(OpenApiTypes.BINARY, description="hf"),
            **error_responses(400, 401, 403, 404),
        },
        tags=["export"],
        description="All current labels, streamed as an attachment. JSON and CSV rows: image_id, name, sha256, "
        "class (name), class_id, author, updated. COCO: images, categories, one whole-image annotation each. "
        "imagefolder: a zip with one folder per class (and unlabeled/ with include_unlabeled=true). "
        "yolo: an Ultralytics classification zip, <root>/train/<class>/ and, with val_fraction, <root>/val/<class>/ "
        "(labeled images only). hf: Parquet that Hugging Face datasets loads with image, label (a ClassLabel; "
        "-1 unlabeled), image_id, file_name, sha256. labelstudio: Label Studio JSON tasks with a choices result "
        "per labeled image (unlabeled ones as tasks without annotations).",
    )
    def get(self, request, dataset):
        query = validated_query(s.ExportQuerySerializer, request)
        export = labels_export(
            dataset=dataset,
            format=query["format"],
            include_unlabeled=query["include_unlabeled"],
            val_fraction=query.get("val_fraction"),
            seed=query.get("seed"),
            site_url=request.build_absolute_uri("/"),
        )
        response = StreamingHttpResponse(export.chunks, content_type=export.content_type)
        export_ready_notify(dataset=dataset, user=request.user, query=query, filename=export.filename)
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        response["Cache-Control"] = "private, no-store"
        return response
