"""HTTP endpoints for a dataset's model predictions: upload (replacing a model's), list models, read one
model's predictions, delete one model's.

The checks and the all-or-nothing write are labeling.services.predictions; accepting predictions as labels
is POST /api/datasets/{id}/suggestions/accept/ with source "model:<name>".
"""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core.api.contract import ApiView, validated
from core.api.parsers import BoundedJSONParser
from core.api.serializers import KeywordFieldsMixin, error_responses, upload_error_responses
from core.errors import PermissionRefused, ValidationFailed
from core.permissions import role_allows
from labeling.selectors.predictions import dataset_prediction_models, model_predictions_columns
from labeling.services.predictions import MODEL_NAME_RULE, model_name_clean, predictions_delete, predictions_upload


class PredictionJSONParser(BoundedJSONParser):
    """Prediction uploads up to SIMLABEL_MAX_PREDICTION_BYTES; NaN and Infinity are a parse error."""

    limit_setting = "SIMLABEL_MAX_PREDICTION_BYTES"
    strict = True


class PredictionItemSerializer(KeywordFieldsMixin, serializers.Serializer):
    image_id = serializers.IntegerField(help_text="an image of this dataset")
    class_ = serializers.CharField(help_text="a class name of this dataset (matched as label imports match them)")
    confidence = serializers.FloatField(min_value=0.0, max_value=1.0)


class PredictionItemsField(serializers.ListField):
    """The items as sent: the service checks them all at once (one 400 naming every bad item), which is
    also far cheaper than a serializer per item for 100,000 of them."""

    child = PredictionItemSerializer()

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return data


class PredictionUploadSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=100, help_text=f"the model's name: {MODEL_NAME_RULE}")
    items = PredictionItemsField(help_text="one item per image; at most SIMLABEL_MAX_PREDICTION_ITEMS")
    create_classes = serializers.BooleanField(
        required=False, default=False, help_text="create the classes the items name that the dataset lacks (admins)"
    )

    def validate(self, attrs):
        unknown = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if unknown:
            raise serializers.ValidationError(f"Unknown field(s): {', '.join(unknown)}.")
        return attrs


class PredictionUploadResultSerializer(serializers.Serializer):
    model = serializers.CharField()
    stored = serializers.IntegerField(help_text="predictions stored")
    replaced = serializers.IntegerField(help_text="the model's earlier predictions, now replaced")
    created_classes = serializers.ListField(child=serializers.CharField())


class PredictionModelSerializer(serializers.Serializer):
    model = serializers.CharField()
    count = serializers.IntegerField(help_text="images it predicts a class for")
    uploaded = serializers.DateTimeField(help_text="when its predictions were last uploaded")


class PredictionModelListSerializer(serializers.Serializer):
    models = PredictionModelSerializer(many=True)


class PredictionColumnsSerializer(KeywordFieldsMixin, serializers.Serializer):
    model = serializers.CharField()
    image_ids = serializers.ListField(child=serializers.IntegerField(), help_text="by image id")
    class_ = serializers.ListField(child=serializers.IntegerField(), help_text="the predicted class id of each image")
    confidence = serializers.ListField(child=serializers.FloatField())


class PredictionListView(ApiView):
    actions = {"get": "view", "post": "upload_predictions"}
    parser_classes = [PredictionJSONParser]
    request_body_limit_setting = "SIMLABEL_MAX_PREDICTION_BYTES"  # read by ApiRequestBodyLimitMiddleware

    @extend_schema(
        operation_id="datasets_predictions_list",  # the model's own GET is datasets_predictions_retrieve
        responses={200: PredictionModelListSerializer, **error_responses(401, 404)},
        tags=["predictions"],
        description="The models with predictions in this dataset: how many images each predicts, and when its "
        "predictions were last uploaded.",
    )
    def get(self, request, dataset):
        return Response({"models": PredictionModelSerializer(dataset_prediction_models(dataset), many=True).data})

    @extend_schema(
        request=PredictionUploadSerializer,
        responses={
            200: PredictionUploadResultSerializer,
            **upload_error_responses("Larger than SIMLABEL_MAX_PREDICTION_BYTES"),
        },
        tags=["predictions"],
        description="Stores a model's class for images of this dataset as suggestions, replacing that model's "
        "earlier predictions. Every image must be in this dataset and listed once, every confidence a number "
        "from 0 to 1; classes the dataset lacks are a 400 listing them (`unknown_classes`) unless "
        "create_classes=true (admins). A bad upload is a 400 and nothing changes. Accept them as labels with "
        "POST suggestions/accept/ and source `model:<name>`.",
    )
    def post(self, request, dataset):
        data = validated(PredictionUploadSerializer, request.data)
        if data["create_classes"] and not role_allows(dataset.user_role, "manage_classes"):
            raise PermissionRefused(
                f"Your role ({dataset.user_role}) may not create classes; upload without create_classes, "
                "or ask an admin to add the classes."
            )
        report = predictions_upload(
            dataset=dataset, model=data["model"], items=data["items"], create_classes=data["create_classes"]
        )
        return Response(report.as_dict())


class PredictionDetailView(ApiView):
    actions = {"get": "view", "delete": "upload_predictions"}

    @extend_schema(
        responses={200: PredictionColumnsSerializer, **error_responses(401, 404)},
        tags=["predictions"],
        description="One model's predictions as columns (image_ids, class, confidence), by image id.",
    )
    def get(self, request, dataset, model):
        return Response(model_predictions_columns(dataset, _model_or_404(model)))

    @extend_schema(responses={204: None, **error_responses(401, 403, 404)}, tags=["predictions"])
    def delete(self, request, dataset, model):
        if not predictions_delete(dataset=dataset, model=_model_or_404(model)):
            raise Http404(NO_SUCH_MODEL)
        return Response(status=status.HTTP_204_NO_CONTENT)


NO_SUCH_MODEL = "This dataset has no predictions of that model."


def _model_or_404(model: str) -> str:
    """The model name of the URL; one that no model can have is not found, like a model without predictions."""
    try:
        return model_name_clean(model)
    except ValidationFailed:
        raise Http404(NO_SUCH_MODEL) from None
