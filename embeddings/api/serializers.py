"""Request and response shapes of the runs, map, clusters and similar-images API."""

from rest_framework import serializers

from core.api.serializers import KeywordFieldsMixin
from embeddings.ml.run_params import RUN_PARAMS, RunParam
from embeddings.models import RunStage, RunStatus
from embeddings.selectors import run_status


def run_param_field(spec: RunParam) -> serializers.Field:
    """The serializer field of one declared run parameter (embeddings/ml/run_params.py)."""
    default = spec.describe_default()
    options = {
        "required": False,
        "allow_null": spec.nullable,
        "help_text": f"{spec.help} Default: {default}." if default else spec.help,
    }
    if spec.choices is not None:
        return serializers.ChoiceField(choices=list(spec.choices), **options)
    bounds = {"min_value": spec.low, "max_value": spec.high}
    if spec.kind is int:
        return serializers.IntegerField(**bounds, **options)
    return serializers.FloatField(**bounds, **options)


class RunStartSerializer(serializers.Serializer):
    """The run parameters a user may set; every one is optional and bounded.

    The fields are generated from the one declaration of the run parameters, so
    the API accepts exactly what the form, the CLI and the worker do.  The
    service (embeddings.services.params) checks them again and fills in defaults.
    """

    locals().update({spec.name: run_param_field(spec) for spec in RUN_PARAMS})

    def validate(self, attrs):
        unknown = sorted(set(self.initial_data) - set(self.fields)) if hasattr(self.initial_data, "keys") else []
        if unknown:
            raise serializers.ValidationError(f"Unknown parameter(s): {', '.join(unknown)}.")
        return attrs


class RunCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RunStatus.choices)


class RunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    dataset = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    stage = serializers.ChoiceField(choices=RunStage.choices)
    progress = serializers.FloatField()
    metrics = serializers.DictField()
    error = serializers.CharField(allow_blank=True, help_text="why the run failed or was cancelled, in one line")
    error_detail = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="dataset admins only: the failure's traceback and the worker it ran on",
    )
    worker = serializers.CharField(
        required=False, allow_blank=True, help_text="dataset admins only: the worker's host and pid"
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    # The short names came first and scripts read them: kept, filled from the same values here.
    created = serializers.DateTimeField(source="created_at", help_text="Alias of created_at.")
    started = serializers.DateTimeField(source="started_at", allow_null=True, help_text="Alias of started_at.")
    finished = serializers.DateTimeField(source="finished_at", allow_null=True, help_text="Alias of finished_at.")
    attempts = serializers.IntegerField(help_text="how many times a worker has taken the run up")
    heartbeat_at = serializers.DateTimeField(allow_null=True, help_text="the worker's last sign of life")
    params = serializers.DictField()
    loss_curve = serializers.ListField(child=serializers.JSONField())
    stage_timings = serializers.DictField()
    placed_count = serializers.IntegerField()
    cancel_requested = serializers.BooleanField()
    image_count = serializers.IntegerField()
    cluster_count = serializers.IntegerField()
    input_size = serializers.IntegerField(allow_null=True)
    channels = serializers.IntegerField(allow_null=True)
    is_current = serializers.BooleanField()
    objective = serializers.CharField(
        allow_null=True, help_text="the objective that trained the run's encoder (metrics.objective); null before"
    )
    embedding = serializers.CharField(help_text="where the codes came from: autoencoder, uploaded or backbone")
    started_automatically = serializers.BooleanField(
        help_text="started by the dataset's auto-retrain, not by a person (created_by is none then)"
    )


def run_data(run, *, with_detail: bool) -> dict:
    """A run as RunSerializer describes it: what the run endpoints answer and the run pages' data hold.

    with_detail (the dataset's admins) adds the failure's traceback and the worker.
    The caller checks the run's liveness first where the run may be active.
    """
    return RunSerializer(run_status(run, with_detail=with_detail)).data


class MapSerializer(KeywordFieldsMixin, serializers.Serializer):
    run = serializers.IntegerField(allow_null=True)
    placed_count = serializers.IntegerField()
    count = serializers.IntegerField()
    image_ids = serializers.ListField(child=serializers.IntegerField())
    x = serializers.ListField(child=serializers.FloatField())
    y = serializers.ListField(child=serializers.FloatField())
    cluster = serializers.ListField(child=serializers.IntegerField())
    class_ = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    version = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        help_text="each image's annotation version: send it back with a write (409 if someone changed it since)",
    )
    suggestion = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    confidence = serializers.ListField(child=serializers.FloatField(allow_null=True))


class MapQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=["json", "binary"],
        required=False,
        help_text="binary: typed arrays for the map page (README: the map's binary format); json by default",
    )


class ClusterQuerySerializer(serializers.Serializer):
    order = serializers.ChoiceField(choices=["size", "uncertainty", "id"], default="size")


class ClusterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    size = serializers.IntegerField()
    labelled = serializers.IntegerField()  # the API field name (British, kept for scripts): labeled images
    class_counts = serializers.DictField(child=serializers.IntegerField(), help_text="class id -> labeled images")
    suggested_class = serializers.IntegerField(allow_null=True)
    uncertainty = serializers.FloatField()
    image_ids = serializers.ListField(child=serializers.IntegerField())


class SimilarQuerySerializer(serializers.Serializer):
    k = serializers.IntegerField(required=False, default=20, min_value=1, max_value=200)


class SimilarImageSerializer(KeywordFieldsMixin, serializers.Serializer):
    id = serializers.IntegerField()
    distance = serializers.FloatField()
    class_ = serializers.IntegerField(allow_null=True)


class UploadedEmbeddingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    count = serializers.IntegerField(help_text="vectors stored: one per listed image")
    dim = serializers.IntegerField(help_text="values in each vector")
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True, help_text="the admin who uploaded them (username)")
    images_without_vector = serializers.IntegerField(
        help_text="the dataset's images this upload has no vector for; a run with embedding=uploaded needs 0"
    )


class EmbeddingUploadJSONSerializer(serializers.Serializer):
    """The JSON form of an upload (documentation: the view reads the arrays itself, at numpy speed)."""

    image_ids = serializers.ListField(child=serializers.IntegerField(), help_text="one image id per vector")
    vectors = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="one vector per image id, in the same order; every vector of the same length (2–4096)",
    )


class EmbeddingUploadFormSerializer(serializers.Serializer):
    """The multipart form of an upload (documentation, as above)."""

    vectors = serializers.FileField(
        help_text=".npy of N x D floats (float32 or float64; loaded without pickle), or a .csv of image_id,v0,v1,…"
    )
    image_ids = serializers.CharField(
        required=False, help_text="with a .npy: a JSON list of N image ids, or a .npy file of N integers"
    )
