"""HTTP endpoints for a dataset's pretrained backbones: register (multipart), list, show, delete.

Registering a model is adding data to the dataset, like uploading images or
vectors: the `upload` action (admins).  Members see the list.  Bodies up to
SIMLABEL_MAX_BACKBONE_BYTES; the service checks the file (embeddings.services.backbones).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from core.api.contract import ApiView
from core.api.serializers import ErrorSerializer, error_responses, upload_error_responses
from core.errors import NotFound, PayloadTooLarge, ValidationFailed
from embeddings.selectors.backbones import backbone_describe, backbone_of_dataset, dataset_backbones
from embeddings.services.backbones import backbone_delete, backbone_register, max_backbone_bytes

FORM_FIELDS = {"file", "name", "format", "input_size", "mean", "std", "channels"}


class BackboneSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    format = serializers.ChoiceField(choices=["pt2", "torchscript"])
    input_size = serializers.ListField(child=serializers.IntegerField(), help_text="[height, width] in pixels")
    channels = serializers.IntegerField(help_text="1 (gray) or 3 (RGB)")
    mean = serializers.ListField(child=serializers.FloatField(), help_text="per channel, of values in 0..1")
    std = serializers.ListField(child=serializers.FloatField(), help_text="per channel, of values in 0..1")
    dim = serializers.IntegerField(help_text="values in each image's vector (measured at registration)")
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)


class BackboneFormSerializer(serializers.Serializer):
    """The multipart form of a registration (documentation: the service checks every field)."""

    file = serializers.FileField(help_text="torch.export.save (.pt2) or torch.jit.save output")
    name = serializers.CharField(max_length=100)
    format = serializers.ChoiceField(choices=["pt2", "torchscript"], required=False, help_text="inferred if absent")
    input_size = serializers.CharField(help_text='"224,224" (height, width) or "224"')
    mean = serializers.CharField(help_text='"0.485,0.456,0.406": one per channel')
    std = serializers.CharField(help_text='"0.229,0.224,0.225": one per channel')
    channels = serializers.IntegerField(required=False, help_text="1 or 3; default: as many as mean has values")


class BackboneListView(ApiView):
    actions = {"get": "view", "post": "upload"}
    parser_classes = [MultiPartParser, FormParser]
    request_body_limit_setting = "SIMLABEL_MAX_BACKBONE_BYTES"  # read by ApiRequestBodyLimitMiddleware

    @extend_schema(responses={200: BackboneSerializer(many=True), **error_responses(401, 404)}, tags=["backbones"])
    def get(self, request, dataset):
        return Response([BackboneSerializer(backbone_describe(b)).data for b in dataset_backbones(dataset)])

    @extend_schema(
        request={"multipart/form-data": BackboneFormSerializer},
        responses={
            201: BackboneSerializer,
            **upload_error_responses("Larger than SIMLABEL_MAX_BACKBONE_BYTES"),
        },
        tags=["backbones"],
        description="Register a pretrained model for runs with embedding=backbone. The file must load with "
        "torch.export.load (.pt2) or torch.jit.load (TorchScript) without unpickling Python objects, and a "
        "batch of the declared input size must give an (N, D) tensor of finite floats; otherwise a 400 and "
        "nothing is stored.",
    )
    def post(self, request, dataset):
        unknown = sorted((set(request.data) | set(request.FILES)) - FORM_FIELDS)
        if unknown:
            raise ValidationFailed(f"Unknown field(s): {', '.join(unknown)}.", fields=unknown)
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationFailed("Send the model as a file field named file.", field="file")
        if upload.size > max_backbone_bytes():
            raise PayloadTooLarge(f"A backbone file may be at most {max_backbone_bytes()} bytes.")
        missing = [f for f in ("name", "input_size", "mean", "std") if not request.data.get(f)]
        if missing:
            raise ValidationFailed(f"Missing field(s): {', '.join(missing)}.", fields=missing)
        upload.seek(0)
        backbone = backbone_register(
            dataset=dataset,
            user=request.user,
            name=request.data["name"],
            data=upload.read(),
            fmt=request.data.get("format"),
            input_size=request.data["input_size"],
            mean=request.data["mean"],
            std=request.data["std"],
            channels=request.data.get("channels"),
        )
        return Response(BackboneSerializer(backbone_describe(backbone)).data, status=status.HTTP_201_CREATED)


class BackboneDetailView(ApiView):
    actions = {"get": "view", "delete": "upload"}

    def _backbone(self, dataset, backbone_id):
        backbone = backbone_of_dataset(dataset, backbone_id)
        if backbone is None:
            raise NotFound("No such backbone.")
        return backbone

    @extend_schema(responses={200: BackboneSerializer, **error_responses(401, 404)}, tags=["backbones"])
    def get(self, request, dataset, backbone_id):
        return Response(BackboneSerializer(backbone_describe(self._backbone(dataset, backbone_id))).data)

    @extend_schema(
        responses={
            204: None,
            **error_responses(401, 403, 404),
            409: OpenApiResponse(ErrorSerializer, description="A queued or running run uses it (run_id)"),
        },
        tags=["backbones"],
    )
    def delete(self, request, dataset, backbone_id):
        backbone_delete(backbone=self._backbone(dataset, backbone_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
