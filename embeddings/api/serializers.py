"""Request and response shapes of the runs, map, clusters and similar-images API."""
from rest_framework import serializers

from embeddings.models import RunStage, RunStatus


class RunStartSerializer(serializers.Serializer):
    """The run parameters a user may set; every one is optional and bounded.

    The pipeline's own validation (embeddings.services.params) checks them
    again and fills in defaults.
    """

    epochs = serializers.IntegerField(required=False, min_value=1, max_value=200)
    code_size = serializers.IntegerField(required=False, min_value=2, max_value=256)
    n_clusters = serializers.IntegerField(required=False, allow_null=True, min_value=2, max_value=1000)
    input_size = serializers.IntegerField(required=False, allow_null=True, min_value=8, max_value=256)
    channels = serializers.ChoiceField(required=False, allow_null=True, choices=[1, 3])
    layout_method = serializers.ChoiceField(required=False, choices=["tsne", "umap"])
    cluster_method = serializers.ChoiceField(
        required=False, choices=["auto", "umap_kmeans", "umap_gmm", "kmeans", "layout_kmeans"]
    )
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=8192)
    learning_rate = serializers.FloatField(required=False, min_value=1e-6, max_value=1.0)
    depth = serializers.IntegerField(required=False, min_value=1, max_value=6)
    base_channels = serializers.IntegerField(required=False, min_value=4, max_value=256)
    patience = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1000)
    min_delta = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    noise_std = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    max_shift = serializers.IntegerField(required=False, min_value=0, max_value=16)
    max_train_images = serializers.IntegerField(required=False, allow_null=True, min_value=10, max_value=10_000_000)
    max_train_seconds = serializers.FloatField(required=False, allow_null=True, min_value=1, max_value=7 * 24 * 3600)
    perplexity = serializers.FloatField(required=False, min_value=2.0, max_value=200.0)
    layout_max_points = serializers.IntegerField(required=False, allow_null=True, min_value=100, max_value=10_000_000)

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
    error = serializers.CharField(allow_blank=True)
    created = serializers.DateTimeField()
    started = serializers.DateTimeField(allow_null=True)
    finished = serializers.DateTimeField(allow_null=True)
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


class MapSerializer(serializers.Serializer):
    run = serializers.IntegerField(allow_null=True)
    placed_count = serializers.IntegerField()
    count = serializers.IntegerField()
    image_ids = serializers.ListField(child=serializers.IntegerField())
    x = serializers.ListField(child=serializers.FloatField())
    y = serializers.ListField(child=serializers.FloatField())
    cluster = serializers.ListField(child=serializers.IntegerField())
    locals()["class"] = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    suggestion = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    confidence = serializers.ListField(child=serializers.FloatField(allow_null=True))


class ClusterQuerySerializer(serializers.Serializer):
    order = serializers.ChoiceField(choices=["size", "uncertainty", "id"], default="size")


class ClusterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    size = serializers.IntegerField()
    labelled = serializers.IntegerField()
    class_counts = serializers.DictField(child=serializers.IntegerField(), help_text="class id -> labelled images")
    suggested_class = serializers.IntegerField(allow_null=True)
    uncertainty = serializers.FloatField()
    image_ids = serializers.ListField(child=serializers.IntegerField())


class SimilarQuerySerializer(serializers.Serializer):
    k = serializers.IntegerField(required=False, default=20, min_value=1, max_value=200)


class SimilarImageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    distance = serializers.FloatField()
    locals()["class"] = serializers.IntegerField(allow_null=True)
