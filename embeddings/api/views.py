"""HTTP endpoints for runs, the map, clusters and similar images.

Thin: each view declares the action each method needs (`actions`), ApiView
resolves the dataset, image or run of the URL with it (404 for non-members,
403 for too low a role); the handler validates, calls one embeddings service
or selector and answers in the resource's one shape (embeddings.api.serializers).
"""

from __future__ import annotations

from types import SimpleNamespace

from django.http import HttpResponse, HttpResponseNotModified
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from core.api.contract import ApiView, validated, validated_query
from core.api.pagination import PAGE_PARAMETERS, StandardPagination, paginate
from core.api.serializers import ErrorSerializer, error_responses, upload_error_responses
from core.errors import NotFound
from core.permissions import dataset_object_for_user, role_allows
from embeddings.models import TrainingRun
from embeddings.selectors import dataset_clusters, dataset_map_binary, dataset_map_encoded, dataset_runs, image_similar
from embeddings.selectors.map_binary import MEDIA_TYPE as MAP_BINARY_MEDIA_TYPE
from embeddings.selectors.uploaded_embeddings import uploaded_embedding_current, uploaded_embedding_describe
from embeddings.services import runs_fail_stale, training_run_cancel, training_run_check_liveness, training_run_start
from embeddings.services.embeddings_upload import uploaded_embeddings_store

from . import serializers as s
from .vectors import CSVParser, EmbeddingJSONParser, request_arrays


def run_for_user(user, run_id, action: str = "view") -> TrainingRun:
    """The run if the user may do `action` in its dataset; 404 for non-members and unknown ids."""
    return dataset_object_for_user(user, TrainingRun.objects, run_id, action, noun="run")


def sees_run_detail(dataset) -> bool:
    """A failure's traceback and worker (host, pid) are for the dataset's admins, who start runs."""
    return role_allows(dataset.user_role, "start_run")


def run_payload(run, *, with_detail: bool) -> dict:
    """The run as it is now: a run whose worker died is marked failed before it is shown."""
    return s.run_data(training_run_check_liveness(run=run), with_detail=with_detail)


class RunListView(ApiView):
    pagination_class = StandardPagination  # also tells the schema the list is paginated
    actions = {"get": "view", "post": "start_run"}

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: s.RunSerializer(many=True), **error_responses(401, 404)},
        tags=["runs"],
    )
    def get(self, request, dataset):
        runs_fail_stale(dataset_id=dataset.pk)
        with_detail = sees_run_detail(dataset)
        return paginate(
            self,
            request,
            dataset_runs(dataset),
            lambda page: [run_payload(run, with_detail=with_detail) for run in page],
        )

    @extend_schema(
        request=s.RunStartSerializer,
        responses={
            202: s.RunCreatedSerializer,
            **error_responses(400, 401, 403, 404),
            409: OpenApiResponse(ErrorSerializer, description="A run is already queued or running (run_id)"),
            503: OpenApiResponse(ErrorSerializer, description="The task queue is unreachable"),
        },
        tags=["runs"],
    )
    def post(self, request, dataset):
        params = dict(validated(s.RunStartSerializer, request.data))
        run = training_run_start(dataset=dataset, user=request.user, params=params)
        return Response({"id": run.pk, "status": run.status}, status=status.HTTP_202_ACCEPTED)


class UploadedEmbeddingView(ApiView):
    """The dataset's own vectors, one per image, for runs with `embedding: "uploaded"`.

    Uploading vectors is adding data to the dataset, like uploading images: the
    `upload` action (admins).  Bodies up to SIMLABEL_MAX_EMBEDDING_BYTES.
    """

    actions = {"get": "view", "post": "upload"}
    parser_classes = [EmbeddingJSONParser, CSVParser, MultiPartParser]
    request_body_limit_setting = "SIMLABEL_MAX_EMBEDDING_BYTES"  # read by ApiRequestBodyLimitMiddleware

    @extend_schema(
        responses={200: s.UploadedEmbeddingSerializer, **error_responses(401, 404)},
        tags=["embeddings"],
        description="The current upload (404 when the dataset has none).",
    )
    def get(self, request, dataset):
        upload = uploaded_embedding_current(dataset)
        if upload is None:
            raise NotFound("This dataset has no uploaded vectors.")
        return Response(s.UploadedEmbeddingSerializer(uploaded_embedding_describe(upload)).data)

    @extend_schema(
        request={
            "multipart/form-data": s.EmbeddingUploadFormSerializer,
            "application/json": s.EmbeddingUploadJSONSerializer,
            "text/csv": OpenApiTypes.STR,
        },
        responses={
            201: s.UploadedEmbeddingSerializer,
            **upload_error_responses("Larger than SIMLABEL_MAX_EMBEDDING_BYTES"),
        },
        tags=["embeddings"],
        description="One vector per image, replacing the dataset's earlier upload: a .npy (N x D floats) with "
        "image_ids (a JSON list or a .npy of integers), JSON {image_ids, vectors}, or CSV image_id,v0,v1,…. "
        "D is 2–4096, every value finite, every id an image of this dataset and given once; otherwise a 400 "
        "and nothing is stored.",
    )
    def post(self, request, dataset):
        image_ids, vectors = request_arrays(request)
        upload = uploaded_embeddings_store(dataset=dataset, user=request.user, image_ids=image_ids, vectors=vectors)
        return Response(
            s.UploadedEmbeddingSerializer(uploaded_embedding_describe(upload)).data, status=status.HTTP_201_CREATED
        )


class RunApiView(ApiView):
    """An endpoint under /api/runs/<run_id>/: the run is resolved like a dataset, through its dataset."""

    url_objects = {**ApiView.url_objects, "run_id": ("run", run_for_user)}


class RunDetailView(RunApiView):
    actions = {"get": "view"}

    @extend_schema(responses={200: s.RunSerializer, **error_responses(401, 404)}, tags=["runs"])
    def get(self, request, run):
        return Response(run_payload(run, with_detail=sees_run_detail(run.dataset)))


class RunCancelView(RunApiView):
    actions = {"post": "cancel_run"}

    @extend_schema(request=None, responses={200: s.RunSerializer, **error_responses(401, 403, 404)}, tags=["runs"])
    def post(self, request, run):
        with_detail = sees_run_detail(run.dataset)  # the resolved dataset carries the caller's role
        run = training_run_cancel(run=run, user=request.user)
        return Response(run_payload(run, with_detail=with_detail))


class MapBinaryRenderer(BaseRenderer):
    """Lets DRF's negotiation accept `?format=binary` and the binary media type; MapView sends the bytes itself."""

    media_type = MAP_BINARY_MEDIA_TYPE
    format = "binary"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class MapOctetStreamRenderer(MapBinaryRenderer):
    media_type = "application/octet-stream"


class MapNegotiation(DefaultContentNegotiation):
    """Chooses by the Accept header only: `?format=` is MapView's own query parameter, checked with the
    others (400 when unknown, repeated or empty), where DRF's own reading would answer 404."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:  # as before the binary format: an Accept naming neither gets the JSON
            return renderers[0], renderers[0].media_type


class MapView(ApiView):
    actions = {"get": "view"}
    renderer_classes = [JSONRenderer, MapBinaryRenderer, MapOctetStreamRenderer]
    content_negotiation_class = MapNegotiation

    @extend_schema(
        parameters=[s.MapQuerySerializer],
        responses={
            (200, "application/json"): s.MapSerializer,
            (200, MAP_BINARY_MEDIA_TYPE): OpenApiTypes.BINARY,
            **error_responses(400, 401, 404),
        },
        tags=["map"],
        description="The current map's points as columns; run is null and the columns empty before the first run. "
        "`?format=binary` (or `Accept: application/vnd.simlabel.map`) sends them as typed arrays (README).",
    )
    def get(self, request, dataset):
        query = validated_query(s.MapQuerySerializer, request)
        binary = query.get("format", request.accepted_renderer.format) == "binary"
        # Sent pre-encoded (and pre-gzipped, which GZipMiddleware then leaves
        # alone): at 100,000 points re-encoding and compressing the unchanging
        # columns on every request would cost most of a second.
        wants_gzip = "gzip" in request.headers.get("Accept-Encoding", "").lower()
        encode = dataset_map_binary if binary else dataset_map_encoded
        encoded = encode(dataset, gzip=wants_gzip)
        seen = [tag.removeprefix("W/") for tag in parse_etags(request.headers.get("If-None-Match", ""))]
        if encoded.etag.removeprefix("W/") in seen or "*" in seen:
            response = HttpResponseNotModified()
        else:
            content_type = MAP_BINARY_MEDIA_TYPE if binary else "application/json"
            response = HttpResponse(encoded.content, content_type=content_type)
            if encoded.gzipped:
                response["Content-Encoding"] = "gzip"
        response["ETag"] = encoded.etag
        response["Cache-Control"] = "private, no-cache"
        patch_vary_headers(response, ("Accept", "Accept-Encoding"))
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        # Errors (404, 400) are JSON whatever format was asked for.
        if isinstance(response, Response) and getattr(request, "accepted_renderer", None) is not None:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


class ClusterListView(ApiView):
    actions = {"get": "view"}

    @extend_schema(
        parameters=[s.ClusterQuerySerializer],
        responses={200: s.ClusterSerializer(many=True), **error_responses(400, 401, 404)},
        tags=["map"],
    )
    def get(self, request, dataset):
        query = validated_query(s.ClusterQuerySerializer, request)
        clusters = dataset_clusters(dataset, order=query["order"])
        for cluster in clusters:
            cluster["class_counts"] = {str(k): v for k, v in cluster["class_counts"].items()}
        return Response(clusters)


class SimilarImagesView(ApiView):
    actions = {"get": "view"}

    @extend_schema(
        parameters=[s.SimilarQuerySerializer],
        responses={200: s.SimilarImageSerializer(many=True), **error_responses(400, 401, 404)},
        tags=["map"],
    )
    def get(self, request, image):
        query = validated_query(s.SimilarQuerySerializer, request)
        return Response(image_similar(image, k=query["k"]))
