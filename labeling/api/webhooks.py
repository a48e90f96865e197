"""HTTP endpoints for a dataset's webhooks (dataset admins): list, create, delete.

The events, their body and signature, retries and the SSRF rules are described
in labeling.services.webhooks; here the input is checked for shape and handed on.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core.api.contract import ApiView, validated
from core.api.pagination import PAGE_PARAMETERS, StandardPagination, paginate
from core.api.serializers import error_responses
from labeling.selectors.webhooks import dataset_webhooks, webhook_in_dataset
from labeling.services.webhooks import EVENTS, MAX_URL_LENGTH, webhook_create, webhook_delete

from .serializers import BoundedListField


class WebhookWriteSerializer(serializers.Serializer):
    url = serializers.CharField(
        max_length=MAX_URL_LENGTH, help_text="http:// or https:// URL; its host must resolve to public addresses"
    )
    events = BoundedListField(
        child=serializers.ChoiceField(choices=EVENTS),
        min_length=1,
        max_length=len(EVENTS) * 2,
        help_text="the events to send: " + ", ".join(EVENTS),
    )


class WebhookSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENTS))
    created = serializers.DateTimeField(source="created_at")
    created_by = serializers.CharField(source="created_by.username", allow_null=True)


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        help_text="Signs every delivery (X-Simlabel-Signature: sha256=<HMAC-SHA256 of the body>); shown only once"
    )


class WebhookListView(ApiView):
    pagination_class = StandardPagination  # also tells the schema these lists are paginated
    actions = {"get": "manage_webhooks", "post": "manage_webhooks"}

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: WebhookSerializer(many=True), **error_responses(401, 403, 404)},
        tags=["webhooks"],
    )
    def get(self, request, dataset):
        return paginate(self, request, dataset_webhooks(dataset), lambda page: WebhookSerializer(page, many=True).data)

    @extend_schema(
        request=WebhookWriteSerializer,
        responses={201: WebhookCreatedSerializer, **error_responses(400, 401, 403, 404)},
        tags=["webhooks"],
        description="Events: labels.changed, run.succeeded, run.failed, export.ready. The answer carries the "
        "secret that signs each delivery; it is not shown again. A URL whose host resolves to a loopback, private, "
        "link-local, multicast or reserved address is refused (400) unless SIMLABEL_WEBHOOK_ALLOWED_NETWORKS "
        "allows it.",
    )
    def post(self, request, dataset):
        data = validated(WebhookWriteSerializer, request.data)
        webhook, secret = webhook_create(dataset=dataset, user=request.user, url=data["url"], events=data["events"])
        webhook.secret = secret
        return Response(WebhookCreatedSerializer(webhook).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(ApiView):
    actions = {"delete": "manage_webhooks"}

    @extend_schema(responses={204: None, **error_responses(401, 403, 404)}, tags=["webhooks"])
    def delete(self, request, dataset, webhook_id):
        webhook_delete(webhook=webhook_in_dataset(dataset, webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
