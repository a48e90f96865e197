"""Datasets, their members, classes, images and annotations.

Business rules live in labeling.services; these are plain tables.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    REVIEWER = "reviewer", "Reviewer"
    ANNOTATOR = "annotator", "Annotator"


# A higher rank can do everything a lower one can.
ROLE_RANK = {Role.ANNOTATOR: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


class Dataset(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Bumped whenever labels change, so suggestion recomputation can be debounced.
    labels_changed_at = models.DateTimeField(null=True, blank=True)
    # When the last suggestion recompute read the labels; a scheduled recompute
    # requested before this is already covered and skips (debouncing).
    suggestions_computed_at = models.DateTimeField(null=True, blank=True)
    # Start a default run by itself when enough new labels arrived since the last one
    # (embeddings.services.retrain; the dataset's admins turn it on).
    auto_retrain = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "user"], name="one_membership_per_user")]

    def __str__(self):
        return f"{self.user} is {self.role} of {self.dataset}"


class LabelClass(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="classes")
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#1f77b4")  # #rrggbb
    shortcut = models.CharField(max_length=1, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "name"], name="unique_class_name_per_dataset"),
            models.UniqueConstraint(
                fields=["dataset", "shortcut"], condition=~Q(shortcut=""), name="unique_class_shortcut_per_dataset"
            ),
        ]

    def __str__(self):
        return self.name


def image_upload_path(instance, filename):
    return f"datasets/{instance.dataset_id}/images/{instance.sha256[:2]}/{instance.sha256}{_ext(filename)}"


def thumbnail_upload_path(instance, filename):
    return f"datasets/{instance.dataset_id}/thumbs/{instance.sha256[:2]}/{instance.sha256}.webp"


def _ext(filename: str) -> str:
    dot = filename.rfind(".")
    return filename[dot:].lower() if dot >= 0 else ""


class Image(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to=image_upload_path, max_length=255)
    thumbnail = models.FileField(upload_to=thumbnail_upload_path, max_length=255)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)  # Pillow format name: PNG, JPEG, ...
    mode = models.CharField(max_length=8, default="")  # Pillow mode of the original: L, RGB, ...
    size_bytes = models.PositiveBigIntegerField(default=0)
    original_name = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)
    # An image synced from a bucket (labeling.services.storages) is kept there by reference: `file` stays
    # empty unless the storage copies originals, and the original is read from (storage, storage_key).
    storage = models.ForeignKey(
        "Storage", null=True, blank=True, on_delete=models.RESTRICT, related_name="images", db_index=False
    )
    # Defaults in the database too: ingest inserts rows with raw SQL that names only its own columns.
    storage_key = models.CharField(max_length=1024, blank=True, default="", db_default="")
    storage_etag = models.CharField(max_length=200, blank=True, default="", db_default="")
    # Set when a sync no longer lists the object; the row stays (labels are kept) until it comes back.
    missing_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "sha256"], name="unique_image_per_dataset"),
            models.UniqueConstraint(
                fields=["storage", "storage_key"], condition=Q(storage__isnull=False), name="one_image_per_object"
            ),
        ]

    def __str__(self):
        return self.original_name


class AnnotationSource(models.TextChoices):
    MANUAL = "manual", "Manual"
    BULK = "bulk", "Bulk selection"
    CLUSTER = "cluster", "Whole cluster"
    SUGGESTION = "suggestion", "Suggestion accepted"
    REVIEW = "review", "Review"
    IMPORT = "import", "Import"
    PREDICTION = "prediction", "Model prediction accepted"
    UNDO = "undo", "Undo"


class LabelAction(models.Model):
    """One user action that changed labels; all images it touched share its id."""

    class Kind(models.TextChoices):
        SET = "set", "Set class"
        CLEAR = "clear", "Clear class"
        UNDO = "undo", "Undo"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="actions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.SET)
    source = models.CharField(max_length=16, choices=AnnotationSource.choices, default=AnnotationSource.MANUAL)
    label_class = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    image_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    undo_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="undone_by_action"
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["dataset", "user", "-id"])]


class Annotation(models.Model):
    """The current class of one image.

    image, dataset and author carry no database constraint (db_constraint=False; Django
    still cascades and sets null on delete). Every label write checks that its images are
    the dataset's and holds the dataset row while it writes; images are deleted only with
    their dataset, which locks that row first (labeling.services.annotations.
    dataset_lock_for_labels). A row per image checked by PostgreSQL's trigger at commit
    cost a 100,000-image bulk label of a million-image dataset 2.5 s of its 5 s budget
    (README, scale benchmark). label_class keeps its constraint: one class row, cheap to
    check, and what PROTECT guards.
    """

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="annotation", db_constraint=False)
    # No index of its own: the (dataset, label_class) index below serves dataset lookups,
    # and every index costs each bulk label change an extra entry (bench/api_speed.py).
    dataset = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, related_name="annotations", db_index=False, db_constraint=False
    )
    label_class = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.PROTECT, related_name="annotations"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    source = models.CharField(max_length=16, choices=AnnotationSource.choices, default=AnnotationSource.MANUAL)
    updated_at = models.DateTimeField(auto_now=True)
    # Optimistic concurrency: a writer sends the version it saw; a mismatch is a 409.
    version = models.PositiveIntegerField(default=0)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["dataset", "label_class"])]


class AnnotationHistory(models.Model):
    """Append-only record of every label change (audit and undo).

    No foreign key here is a database constraint (db_constraint=False; Django still
    cascades, protects and sets null on delete): each history row is written in the
    transaction that checks them anyway -- the write checks its images are the dataset's
    and holds the dataset row (see Annotation), the classes are the annotation's old and
    new ones, and the action is inserted just before. Each constraint cost PostgreSQL a
    check per row at commit: with the image, old class and user constraints, relabeling
    100,000 images of a million-image dataset spent 3.0 s checking, without them 0.6 s.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    # Indexed by (image, id) below, which also serves lookups by image alone.
    image = models.ForeignKey(
        Image, on_delete=models.CASCADE, related_name="history", db_index=False, db_constraint=False
    )
    old_class = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    new_class = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    # The annotation version this change produced; undo compares it to detect later edits.
    new_version = models.PositiveIntegerField(default=0)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    action = models.ForeignKey(LabelAction, on_delete=models.CASCADE, related_name="history", db_constraint=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["image", "id"])]  # action has its foreign key's index


class ReviewResolution(models.Model):
    """A review-queue item a reviewer has dealt with; resolved items leave the queue."""

    class Kind(models.TextChoices):
        CLUSTER = "cluster", "Cluster"
        IMAGE = "image", "Image"

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Suggestion accepted"
        # British spelling kept on purpose: "relabelled" is the stored value and the REST API's outcome value,
        # and the label is captured in migration 0001; renaming either would need a data migration.
        RELABELED = "relabelled", "Relabelled"
        REVIEWED = "reviewed", "Marked reviewed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="review_resolutions")
    run = models.ForeignKey("embeddings.TrainingRun", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    object_id = models.BigIntegerField()  # cluster number within the run, or image id
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    reason = models.CharField(max_length=200, blank=True, default="")
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["dataset", "kind", "object_id"])]


class Webhook(models.Model):
    """A URL outside simlabel that is told about a dataset's events (labeling.services.webhooks)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)  # event names, e.g. ["labels.changed", "run.succeeded"]
    # Signs each body (HMAC-SHA256); kept as is because signing needs it, shown once when created.
    secret = models.CharField(max_length=128)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class WebhookDelivery(models.Model):
    """One attempt to deliver one event to one webhook; retries of an event share its delivery_id."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.UUIDField()
    event = models.CharField(max_length=40)
    body = models.TextField()  # the exact bytes signed and sent, so every attempt sends the same
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["delivery_id", "attempt"], name="one_row_per_delivery_attempt")]


class Storage(models.Model):
    """An S3-compatible bucket and prefix whose images a dataset uses where they live (read-only)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="storages")
    endpoint_url = models.URLField(max_length=500, blank=True, default="")  # empty: AWS itself
    bucket = models.CharField(max_length=63)
    prefix = models.CharField(max_length=1024, blank=True, default="")  # "" or ending with "/"
    region = models.CharField(max_length=64, blank=True, default="")
    # Access key id and secret as one Fernet token (core.object_storage): never stored or shown in clear.
    credentials = models.TextField()
    copy_originals = models.BooleanField(default=False)  # copy originals into the project's storage too
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"s3://{self.bucket}/{self.prefix}"


class StorageSync(models.Model):
    """One sync of a storage: its state, progress and report live here; the API polls this row."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    storage = models.ForeignKey(Storage, on_delete=models.CASCADE, related_name="syncs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)  # 0..1 over the objects to fetch
    objects_done = models.PositiveIntegerField(default=0)
    objects_total = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["storage"], condition=Q(status__in=["queued", "running"]), name="one_active_sync_per_storage"
            )
        ]


class Prediction(models.Model):
    """One model's class for one image, uploaded from outside (labeling.services.predictions).

    A suggestion like the neighbors' label spreading: it labels nothing until someone accepts it.
    Re-uploading a model replaces all of that model's rows.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="predictions")
    # Indexed by (image, model) below, which also serves lookups by image alone.
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="predictions", db_index=False)
    model = models.CharField(max_length=100)
    # A class deleted takes its predictions along: they name a class that no longer exists.
    label_class = models.ForeignKey(LabelClass, on_delete=models.CASCADE, related_name="predictions")
    confidence = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model"], name="one_prediction_per_image_and_model"),
            models.CheckConstraint(
                condition=Q(confidence__gte=0.0) & Q(confidence__lte=1.0), name="prediction_confidence_in_0_1"
            ),
        ]
        indexes = [models.Index(fields=["dataset", "model"])]
