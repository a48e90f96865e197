from django.contrib import admin

from .models import ImageEmbedding, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "status", "stage", "progress", "created_at", "finished_at"]
    list_filter = ["status"]
    raw_id_fields = ["dataset", "created_by"]


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "image", "x", "y", "cluster", "reconstruction_error"]
    raw_id_fields = ["run", "image", "suggested_class"]
