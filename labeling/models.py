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

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="unique_image_per_dataset")]

    def __str__(self):
        return self.original_name


class AnnotationSource(models.TextChoices):
    MANUAL = "manual", "Manual"
    BULK = "bulk", "Bulk selection"
    CLUSTER = "cluster", "Whole cluster"
    SUGGESTION = "suggestion", "Suggestion accepted"
    REVIEW = "review", "Review"
    IMPORT = "import", "Import"
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
    """The current class of one image."""

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="annotation")
    # No index of its own: the (dataset, label_class) index below serves dataset lookups,
    # and every index costs each bulk label change an extra entry (bench/api_speed.py).
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="annotations", db_index=False)
    label_class = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.PROTECT, related_name="annotations"
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
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
    """Append-only record of every label change (audit and undo)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+")
    # Indexed by (image, id) below, which also serves lookups by image alone.
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="history", db_index=False)
    old_class = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    new_class = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The annotation version this change produced; undo compares it to detect later edits.
    new_version = models.PositiveIntegerField(default=0)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.ForeignKey(LabelAction, on_delete=models.CASCADE, related_name="history")
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
