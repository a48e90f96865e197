"""HTTP endpoints for images kept in S3-compatible buckets: connect a bucket, sync it, read the sync's report.

All of them are for the dataset's admins (`manage_storages`). Credentials go in and
never come out: no answer includes the access key id or the secret.
"""

from __future__ import annotations

import re

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core.api.contract import ApiView, validated
from core.api.pagination import PAGE_PARAMETERS, StandardPagination, paginate
from core.api.serializers import ErrorSerializer, error_responses
from labeling.selectors.storages import storage_in_dataset, storage_last_sync, storages_for_dataset
from labeling.services.storages import storage_connect, storage_sync_start

# S3's bucket naming rules (3-63 lower-case letters, digits, dots and hyphens), which other services share.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


# --- shapes ----------------------------------------------------------------------------------------------------


class StorageCreateSerializer(serializers.Serializer):
    endpoint_url = serializers.URLField(
        required=False, allow_blank=True, default="", max_length=500, help_text="empty for AWS S3 itself"
    )
    bucket = serializers.CharField(max_length=63)
    prefix = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)
    region = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    access_key_id = serializers.CharField(max_length=256, write_only=True)
    secret_access_key = serializers.CharField(max_length=512, write_only=True, trim_whitespace=False)
    copy = serializers.BooleanField(
        required=False, default=False, help_text="also copy each original into the project's storage"
    )

    def validate_endpoint_url(self, value):
        if value and not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("Must be an http:// or https:// URL.")
        return value.rstrip("/")

    def validate_bucket(self, value):
        if not BUCKET_NAME.match(value) or ".." in value:
            raise serializers.ValidationError("Not a bucket name: 3-63 lower-case letters, digits, dots and hyphens.")
        return value

    def validate_region(self, value):
        if value and not re.fullmatch(r"[a-z0-9\-]+", value):
            raise serializers.ValidationError("Not a region name (e.g. eu-west-1).")
        return value

    def validate_prefix(self, value):
        if any(ord(ch) < 32 for ch in value):
            raise serializers.ValidationError("May not contain control characters.")
        return value


class StorageSyncSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    progress = serializers.FloatField()
    objects_done = serializers.IntegerField(help_text="new or changed objects fetched so far")
    objects_total = serializers.IntegerField(help_text="new or changed objects to fetch")
    error = serializers.CharField()
    report = serializers.JSONField(
        help_text="counts (listed, added, updated, unchanged, restored, removed, still_missing, rejected, skipped, "
        "ignored) and, for each of added/updated/restored/removed/rejected/skipped, up to 1,000 keys"
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class StorageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    dataset = serializers.IntegerField(source="dataset_id")
    endpoint_url = serializers.CharField()
    bucket = serializers.CharField()
    prefix = serializers.CharField()
    region = serializers.CharField()
    copy = serializers.BooleanField(source="copy_originals")
    created_at = serializers.DateTimeField()
    image_count = serializers.IntegerField()
    missing_count = serializers.IntegerField(help_text="images whose object the last syncs no longer listed")
    last_sync = StorageSyncSerializer(allow_null=True)


class SyncStartedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()


def storage_data(storage, *, with_report: bool) -> dict:
    storage.last_sync = sync = storage_last_sync(storage)
    data = StorageSerializer(storage).data
    if sync is not None and not with_report:
        data["last_sync"]["report"] = {"counts": (sync.report or {}).get("counts", {})}
    return data


# --- endpoints ---------------------------------------------------------------------------------------------------


class StorageListView(ApiView):
    pagination_class = StandardPagination
    actions = {"get": "manage_storages", "post": "manage_storages"}

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: StorageSerializer(many=True), **error_responses(401, 403, 404)},
        tags=["storages"],
        description="The dataset's connected buckets; each last sync with its report's counts only.",
    )
    def get(self, request, dataset):
        return paginate(
            self,
            request,
            storages_for_dataset(dataset).order_by("id"),
            lambda page: [storage_data(storage, with_report=False) for storage in page],
        )

    @extend_schema(
        request=StorageCreateSerializer,
        responses={201: StorageSerializer, **error_responses(400, 401, 403, 404)},
        tags=["storages"],
        description="Connect an S3-compatible bucket and prefix (read-only: list and get). The credentials are "
        "checked by listing the prefix (a clear 400 when the bucket or credentials are wrong), stored "
        "encrypted, and never returned. Then POST …/sync/ to create the images. An endpoint_url whose host "
        "resolves to a loopback, private, link-local, multicast or reserved address is refused (400 "
        "`endpoint_refused`) unless SIMLABEL_STORAGE_ALLOWED_NETWORKS lists it; every request to the bucket is "
        "checked again, so a sync of an endpoint no longer allowed fails.",
    )
    def post(self, request, dataset):
        data = validated(StorageCreateSerializer, request.data)
        storage = storage_connect(
            dataset=dataset,
            user=request.user,
            endpoint_url=data["endpoint_url"],
            bucket=data["bucket"],
            prefix=data["prefix"],
            region=data["region"],
            access_key_id=data["access_key_id"],
            secret_access_key=data["secret_access_key"],
            copy_originals=data["copy"],
        )
        storage = storage_in_dataset(dataset, storage.pk)
        return Response(storage_data(storage, with_report=True), status=status.HTTP_201_CREATED)


class StorageDetailView(ApiView):
    actions = {"get": "manage_storages"}

    @extend_schema(
        responses={200: StorageSerializer, **error_responses(401, 403, 404)},
        tags=["storages"],
        description="The storage and its last sync with the full report (poll this while a sync runs).",
    )
    def get(self, request, dataset, storage_id):
        return Response(storage_data(storage_in_dataset(dataset, storage_id), with_report=True))


class StorageSyncView(ApiView):
    actions = {"post": "manage_storages"}

    @extend_schema(
        request=None,
        responses={
            202: SyncStartedSerializer,
            **error_responses(401, 403, 404),
            409: OpenApiResponse(ErrorSerializer, description="A sync of this storage is queued or running (sync_id)"),
            503: OpenApiResponse(ErrorSerializer, description="The task queue is unreachable"),
        },
        tags=["storages"],
        description="Queue a sync (Celery, queue `default`): new image objects become images by reference, "
        "changed ETags are re-read, objects no longer listed are reported and their images marked missing.",
    )
    def post(self, request, dataset, storage_id):
        storage = storage_in_dataset(dataset, storage_id)
        sync = storage_sync_start(storage=storage, user=request.user)
        return Response({"id": sync.pk, "status": sync.status}, status=status.HTTP_202_ACCEPTED)
