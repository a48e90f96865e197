"""HTTP endpoints for runs, the map, clusters and similar images.

Thin: validate, resolve the dataset or run through labeling.permissions
(404 for non-members), call one embeddings service or selector.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from labeling import selectors as labeling_selectors
from labeling.api.contract import ApiView
from labeling.api.pagination import PAGE_PARAMETERS, StandardPagination
from labeling.api.serializers import ErrorSerializer
from labeling.api.views import _query, _validated, errors
from labeling.permissions import dataset_for_user

from . import serializers as s


def sees_run_detail(user, dataset_id: int) -> bool:
    """A failure's traceback and worker (host, pid) are for the dataset's admins, who start runs."""
    from labeling.permissions import membership_role, role_allows

    return role_allows(membership_role(user, dataset_id), "start_run")


def run_payload(run, *, with_detail: bool, with_curve: bool = True) -> dict:
    from embeddings.selectors import run_status

    state = run_status(run, with_detail=with_detail)
    payload = {
        **state,
        "created": state["created_at"],
        "started": state["started_at"],
        "finished": state["finished_at"],
    }
    if not with_curve:
        payload.pop("loss_curve", None)
    return payload


class RunListView(ApiView):
    pagination_class = StandardPagination  # also tells the schema the list is paginated
    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: s.RunSerializer(many=True), **errors(401, 404)},
        tags=["runs"],
    )
    def get(self, request, dataset_id):
        from embeddings.selectors import dataset_runs

        dataset = dataset_for_user(request.user, dataset_id, "view")
        paginator = StandardPagination()
        page = paginator.paginate_queryset(dataset_runs(dataset), request, view=self)
        with_detail = sees_run_detail(request.user, dataset.pk)
        return paginator.get_paginated_response([run_payload(run, with_detail=with_detail) for run in page])

    @extend_schema(
        request=s.RunStartSerializer,
        responses={
            202: s.RunCreatedSerializer,
            **errors(400, 401, 403, 404),
            409: OpenApiResponse(ErrorSerializer, description="A run is already queued or running (run_id)"),
            503: OpenApiResponse(ErrorSerializer, description="The task queue is unreachable"),
        },
        tags=["runs"],
    )
    def post(self, request, dataset_id):
        from embeddings.services import training_run_start

        dataset = dataset_for_user(request.user, dataset_id, "start_run")
        params = dict(_validated(s.RunStartSerializer, request.data))
        run = training_run_start(dataset=dataset, user=request.user, params=params)
        return Response({"id": run.pk, "status": run.status}, status=status.HTTP_202_ACCEPTED)


class RunDetailView(ApiView):
    @extend_schema(responses={200: s.RunSerializer, **errors(401, 404)}, tags=["runs"])
    def get(self, request, run_id):
        run = labeling_selectors.run_for_user(request.user, run_id, "view")
        return Response(run_payload(run, with_detail=sees_run_detail(request.user, run.dataset_id)))


class RunCancelView(ApiView):
    @extend_schema(request=None, responses={200: s.RunSerializer, **errors(401, 403, 404)}, tags=["runs"])
    def post(self, request, run_id):
        from embeddings.services import training_run_cancel

        run = labeling_selectors.run_for_user(request.user, run_id, "cancel_run")
        run = training_run_cancel(run=run, user=request.user)
        return Response(run_payload(run, with_detail=sees_run_detail(request.user, run.dataset_id)))


class MapView(ApiView):
    @extend_schema(
        responses={200: s.MapSerializer, **errors(401, 404)},
        tags=["map"],
        description="The current map's points as columns; run is null and the columns empty before the first run.",
    )
    def get(self, request, dataset_id):
        # Sent as pre-encoded JSON (and pre-gzipped, which GZipMiddleware then
        # leaves alone): at 100,000 points re-encoding and compressing the
        # unchanging columns on every request would cost most of a second.
        from django.http import HttpResponse, HttpResponseNotModified
        from django.utils.cache import patch_vary_headers
        from django.utils.http import parse_etags

        from embeddings.selectors import dataset_map_encoded

        dataset = dataset_for_user(request.user, dataset_id, "view")
        wants_gzip = "gzip" in request.headers.get("Accept-Encoding", "").lower()
        encoded = dataset_map_encoded(dataset, gzip=wants_gzip)
        seen = [tag.removeprefix("W/") for tag in parse_etags(request.headers.get("If-None-Match", ""))]
        if encoded.etag.removeprefix("W/") in seen or "*" in seen:
            response = HttpResponseNotModified()
        else:
            response = HttpResponse(encoded.content, content_type="application/json")
            if encoded.gzipped:
                response["Content-Encoding"] = "gzip"
        response["ETag"] = encoded.etag
        response["Cache-Control"] = "private, no-cache"
        patch_vary_headers(response, ("Accept-Encoding",))
        return response


class ClusterListView(ApiView):
    @extend_schema(parameters=[s.ClusterQuerySerializer],
                   responses={200: s.ClusterSerializer(many=True), **errors(400, 401, 404)}, tags=["map"])
    def get(self, request, dataset_id):
        from embeddings.selectors import dataset_clusters

        dataset = dataset_for_user(request.user, dataset_id, "view")
        query = _query(s.ClusterQuerySerializer, request)
        clusters = dataset_clusters(dataset, order=query["order"])
        for cluster in clusters:
            cluster["class_counts"] = {str(k): v for k, v in cluster["class_counts"].items()}
        return Response(clusters)


class SimilarImagesView(ApiView):
    @extend_schema(parameters=[s.SimilarQuerySerializer],
                   responses={200: s.SimilarImageSerializer(many=True), **errors(400, 401, 404)}, tags=["map"])
    def get(self, request, image_id):
        from embeddings.selectors import image_similar

        image = labeling_selectors.image_for_user(request.user, image_id, "view")
        query = _query(s.SimilarQuerySerializer, request)
        return Response(image_similar(image, k=query["k"]))
