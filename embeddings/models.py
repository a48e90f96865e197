"""Pipeline runs and their per-image results."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
# A run's error as members see it: one line of at most this many characters.
ERROR_REASON_MAX = 300


class RunStage(models.TextChoices):
    PREPARING = "preparing", "Preparing"
    TRAINING = "training", "Training"
    EMBEDDING = "embedding", "Embedding"
    LAYOUT = "layout", "Layout"
    CLUSTERING = "clustering", "Clustering"
    DONE = "done", "Done"


class TrainingRun(models.Model):
    """One execution of the pipeline for a dataset; the UI polls this row."""

    dataset = models.ForeignKey("labeling.Dataset", on_delete=models.CASCADE, related_name="runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    stage = models.CharField(max_length=12, choices=RunStage.choices, default=RunStage.PREPARING)
    progress = models.FloatField(default=0.0)  # 0..1 over the whole run
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    loss_curve = models.JSONField(default=list, blank=True)
    stage_timings = models.JSONField(default=dict, blank=True)  # stage -> seconds
    # error: one line every member sees.  error_detail: the traceback and the
    # worker (host, pid), shown only to the dataset's admins (and in the logs).
    error = models.TextField(blank=True, default="")
    error_detail = models.TextField(blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Filled by the run: the preprocessing used, so new images are embedded alike.
    input_size = models.PositiveIntegerField(null=True, blank=True)
    channels = models.PositiveSmallIntegerField(null=True, blank=True)
    image_count = models.PositiveIntegerField(default=0)
    cluster_count = models.PositiveIntegerField(default=0)
    # Images embedded and placed on this map after the run, without retraining.
    placed_count = models.PositiveIntegerField(default=0)
    # Started by auto-retrain (embeddings.services.retrain), not by a person: created_by is None then.
    started_automatically = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_run_per_dataset",
            )
        ]
        indexes = [models.Index(fields=["dataset", "status", "-id"])]

    def __str__(self):
        return f"run {self.pk} of dataset {self.dataset_id} ({self.status})"

    @property
    def error_reason(self) -> str:
        """The error's first line: runs failed before error_detail existed kept the traceback in error."""
        first = (self.error or "").strip().splitlines()
        return first[0][:ERROR_REASON_MAX] if first else ""

    @property
    def artifact_prefix(self) -> str:
        return f"{settings.SIMLABEL_ARTIFACTS_PREFIX}/{self.dataset_id}/{self.pk}"


class ImageEmbedding(models.Model):
    """Where one image sits in one run: its code, map position and cluster."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="embeddings")
    image = models.ForeignKey("labeling.Image", on_delete=models.CASCADE, related_name="embeddings")
    code = models.BinaryField()  # float32 little-endian, code_size values
    x = models.FloatField()
    y = models.FloatField()
    cluster = models.IntegerField()
    # None: unknown.  Runs on uploaded vectors have no decoder, so no reconstruction to measure.
    reconstruction_error = models.FloatField(null=True, blank=True, default=0.0)
    placed_after_run = models.BooleanField(default=False)
    suggested_class = models.ForeignKey(
        "labeling.LabelClass", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    suggestion_confidence = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "image"], name="one_embedding_per_image_and_run")]
        indexes = [models.Index(fields=["run", "cluster"])]


# Uploaded vectors live under embeddings/<dataset>/<folder>/ in the default storage (local or S3).
UPLOADED_EMBEDDINGS_PREFIX = "embeddings"


class UploadedEmbedding(models.Model):
    """Vectors a dataset's admin uploaded, one per image, for runs with `embedding: "uploaded"`.

    The vectors themselves are files (`vectors.npy` float32 N x dim and
    `image_ids.npy` int64 N, sorted by image id) under `folder`, a fresh name
    per upload, so a new upload never overwrites files a run is reading.  A
    dataset keeps only its latest upload.
    """

    dataset = models.ForeignKey("labeling.Dataset", on_delete=models.CASCADE, related_name="uploaded_embeddings")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    dim = models.PositiveIntegerField()
    count = models.PositiveIntegerField()
    folder = models.CharField(max_length=200, unique=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"{self.count} uploaded vectors of {self.dim} for dataset {self.dataset_id}"


# Backbone files live under backbones/<dataset>/ in the default storage (local or S3).
BACKBONES_PREFIX = "backbones"


class Backbone(models.Model):
    """A pretrained image model a dataset's admin registered, for runs with `embedding: "backbone"`.

    The file (a torch.export program or TorchScript, loaded without unpickling
    Python objects: embeddings.ml.backbone) is checked at registration: it loads,
    and a batch of the declared input size gives one finite vector of `dim`
    values per image.
    """

    FORMATS = (("pt2", "torch.export (.pt2)"), ("torchscript", "TorchScript"))

    dataset = models.ForeignKey("labeling.Dataset", on_delete=models.CASCADE, related_name="backbones")
    name = models.CharField(max_length=100)
    format = models.CharField(max_length=12, choices=FORMATS)
    file = models.CharField(max_length=300, unique=True)  # its name in the default storage
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    input_height = models.PositiveIntegerField()
    input_width = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    mean = models.JSONField()
    std = models.JSONField()
    dim = models.PositiveIntegerField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "name"], name="one_backbone_name_per_dataset")]

    def __str__(self):
        return f"backbone {self.name!r} ({self.format}, {self.dim} values) of dataset {self.dataset_id}"
