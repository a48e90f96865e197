from django.contrib import admin

from .models import (
    Annotation,
    AnnotationHistory,
    Dataset,
    Image,
    LabelAction,
    LabelClass,
    Membership,
    ReviewResolution,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


class LabelClassInline(admin.TabularInline):
    model = LabelClass
    extra = 0


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "created_by", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline, LabelClassInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "user", "role"]
    list_filter = ["role"]
    raw_id_fields = ["dataset", "user"]


@admin.register(LabelClass)
class LabelClassAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "name", "color", "shortcut"]
    raw_id_fields = ["dataset"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "original_name", "width", "height", "format", "uploaded_at"]
    search_fields = ["original_name", "sha256"]
    raw_id_fields = ["dataset", "uploaded_by"]
    list_select_related = ["dataset"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["image", "label_class", "author", "source", "version", "updated_at", "reviewed_by"]
    list_filter = ["source"]
    raw_id_fields = ["image", "dataset", "label_class", "author", "reviewed_by"]


@admin.register(AnnotationHistory)
class AnnotationHistoryAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "old_class", "new_class", "user", "action", "created_at"]
    raw_id_fields = ["dataset", "image", "old_class", "new_class", "user", "action"]

    def has_change_permission(self, request, obj=None):
        return False  # append-only


@admin.register(LabelAction)
class LabelActionAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "user", "kind", "source", "label_class", "image_count", "created_at"]
    raw_id_fields = ["dataset", "user", "label_class", "undo_of"]


@admin.register(ReviewResolution)
class ReviewResolutionAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "kind", "object_id", "outcome", "resolved_by", "resolved_at"]
    raw_id_fields = ["dataset", "run", "resolved_by"]
