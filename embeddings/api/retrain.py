"""`GET /api/datasets/{id}/retrain/`: whether retraining the map would help (embeddings.selectors.retrain).

Every member may read it (the map and cluster pages show it to everyone); starting the run is the
existing `POST /api/datasets/{id}/runs/` (admins), and turning auto-retrain on or off is
`PATCH /api/datasets/{id}/` `{auto_retrain}` (admins).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api.contract import ApiView
from core.api.serializers import error_responses
from core.permissions import role_allows
from embeddings.selectors.retrain import retrain_advice
from embeddings.services import runs_fail_stale


class ActiveRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()


class RetrainAdviceSerializer(serializers.Serializer):
    last_run_id = serializers.IntegerField(allow_null=True, help_text="the current map's run (null: no map yet)")
    last_run_started_at = serializers.DateTimeField(allow_null=True)
    last_run_used_labels = serializers.BooleanField(
        allow_null=True, help_text="whether that run learned from labels (its labels_used metric)"
    )
    labels_since_last_run = serializers.IntegerField(
        help_text="images labeled or relabeled since the current map's run started (all labels without a map)"
    )
    labels_new_to_map = serializers.IntegerField(
        help_text="labels the map has not learned from: labels_since_last_run, or every label when "
        "the map's run did not use labels"
    )
    labeled_total = serializers.IntegerField()
    image_count = serializers.IntegerField()
    would_use_labels = serializers.BooleanField(help_text="a default run now would learn from the labels")
    labels_reason = serializers.CharField(help_text="why it would or would not, as the run would record it")
    new_labels_needed = serializers.IntegerField(help_text="max(50, 5 % of the images)")
    suggested = serializers.BooleanField(
        help_text="a map exists, a run would use the labels, and labels_new_to_map >= new_labels_needed"
    )
    active_run = ActiveRunSerializer(allow_null=True, help_text="the queued or running run, if any")
    auto_retrain = serializers.BooleanField(help_text="the dataset starts such a run by itself")
    can_start_run = serializers.BooleanField(help_text="the caller may start runs (admins)")


class RetrainAdviceView(ApiView):
    actions = {"get": "view"}

    @extend_schema(responses={200: RetrainAdviceSerializer, **error_responses(401, 404)}, tags=["runs"])
    def get(self, request, dataset):
        runs_fail_stale(dataset_id=dataset.pk)  # a dead worker's run must not read as active
        advice = retrain_advice(dataset)
        advice["can_start_run"] = role_allows(dataset.user_role, "start_run")
        return Response(RetrainAdviceSerializer(advice).data)
