"""Request and response shapes of the labeling API.

Input serializers only check types and bounds; the services check the rules
(unique names, the last admin, classes of the right dataset). Output
serializers describe exactly what the views return, so the OpenAPI schema and
Schemathesis see the real shapes.
"""

import math

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from rest_framework import serializers

from core.api.serializers import ErrorSerializer, KeywordFieldsMixin
from embeddings.ml.geometry import MAX_POLYGON_VERTICES
from labeling.models import Role
from labeling.selectors import image_annotation
from labeling.services.annotations import MAX_BULK_IMAGES
from labeling.services.exports import EXPORT_FORMATS

MAX_ID = 2**63 - 1


def IdField(**kwargs):
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


def _plain_integers(child, data) -> list[int] | None:
    """`data` itself when it is a list of JSON integers an IntegerField `child` accepts unchanged, else None.

    Validating 100,000 ids one by one through IntegerField took 0.44 s of a bulk
    label's ~5 s; ints within the field's bounds need no per-element work. Anything
    else (strings, floats, null, bools, values out of bounds) takes DRF's path and
    its messages.
    """
    if type(child) is not serializers.IntegerField or not data:
        return None
    if not all(isinstance(v, (MinValueValidator, MaxValueValidator)) for v in child.validators):
        return None
    if not all(type(item) is int for item in data):
        return None
    if (child.min_value is not None and min(data) < child.min_value) or (
        child.max_value is not None and max(data) > child.max_value
    ):
        return None
    return list(data)


class BoundedListField(serializers.ListField):
    """A ListField that checks its length before validating any element.

    DRF validates every element first and applies max_length afterwards: a
    polygon of 10**6 points cost seconds of CPU (and an error per element)
    before "at most 10,000" was said.
    """

    def to_internal_value(self, data):
        if isinstance(data, list) and self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)

    def run_child_validation(self, data):
        plain = _plain_integers(self.child, data)
        if plain is not None:
            return plain
        # Like DRF's, but stops at the 100th bad element: 100,000 bad ids need not cost 100,000 messages.
        result, errors = [], {}
        for index, item in enumerate(data):
            try:
                result.append(self.child.run_validation(item))
            except serializers.ValidationError as exc:
                errors[index] = exc.detail
                if len(errors) >= 100:
                    break
        if errors:
            raise serializers.ValidationError(errors)
        return result


class BoundedDictField(serializers.DictField):
    """A DictField with a maximum number of keys, checked before any value is validated."""

    default_error_messages = {"max_length": "Ensure this field has no more than {max_length} items."}

    def __init__(self, *, max_length: int, **kwargs):
        self.max_length = max_length
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, dict) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)

    def run_child_validation(self, data):
        result, errors = {}, {}
        for key, value in data.items():
            try:
                result[str(key)] = self.child.run_validation(value)
            except serializers.ValidationError as exc:
                errors[str(key)] = exc.detail
                if len(errors) >= 100:  # as BoundedListField: a bounded answer
                    break
        if errors:
            raise serializers.ValidationError(errors)
        return result


# --- auth ------------------------------------------------------------------------------


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires = serializers.DateTimeField(allow_null=True, help_text="When the token stops working (null: never).")


# --- datasets ---------------------------------------------------------------------------


class DatasetWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")


class DatasetPatchSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True)
    auto_retrain = serializers.BooleanField(
        required=False, help_text="start a default run by itself when a retrain is suggested (admins)"
    )


class DatasetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, source="user_role")
    image_count = serializers.IntegerField()
    labeled_count = serializers.IntegerField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    labels_changed_at = serializers.DateTimeField(allow_null=True)
    auto_retrain = serializers.BooleanField()


# --- members -------------------------------------------------------------------------------


class MemberWriteSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberPatchSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    user_id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()


# --- classes -----------------------------------------------------------------------------------


class LabelClassWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    color = serializers.RegexField(
        r"^#[0-9a-fA-F]{6}$",
        required=False,
        allow_null=True,
        max_length=7,
        error_messages={"invalid": "Enter a color like #1f77b4."},
    )
    shortcut = serializers.CharField(max_length=1, required=False, allow_blank=True, trim_whitespace=False)


class LabelClassPatchSerializer(LabelClassWriteSerializer):
    name = serializers.CharField(max_length=100, required=False)
    color = serializers.RegexField(
        r"^#[0-9a-fA-F]{6}$", required=False, max_length=7, error_messages={"invalid": "Enter a color like #1f77b4."}
    )


class LabelClassSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    color = serializers.CharField()
    shortcut = serializers.CharField(allow_blank=True)
    image_count = serializers.IntegerField(required=False)


# --- images --------------------------------------------------------------------------------------


class ImageListQuerySerializer(KeywordFieldsMixin, serializers.Serializer):
    class_ = IdField(required=False, help_text="only images labeled with this class id")
    cluster = serializers.IntegerField(
        required=False, min_value=-1, max_value=10**9, help_text="only images in this cluster of the current map"
    )
    unlabeled = serializers.BooleanField(required=False, default=False, help_text="only images without a class")
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500)


class ImageSerializer(KeywordFieldsMixin, serializers.Serializer):
    id = serializers.IntegerField()
    dataset = serializers.IntegerField()
    name = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    url = serializers.CharField()
    thumbnail_url = serializers.CharField()
    class_ = serializers.IntegerField(allow_null=True)
    annotation_version = serializers.IntegerField()
    cluster = serializers.IntegerField(allow_null=True)
    x = serializers.FloatField(allow_null=True)
    y = serializers.FloatField(allow_null=True)
    suggestion = serializers.IntegerField(allow_null=True)
    confidence = serializers.FloatField(allow_null=True)
    reviewed = serializers.BooleanField()


class ImageDetailSerializer(ImageSerializer):
    format = serializers.CharField()
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    uploaded_at = serializers.DateTimeField()
    author = serializers.IntegerField(allow_null=True)
    updated = serializers.DateTimeField(allow_null=True)
    reviewed_by = serializers.IntegerField(allow_null=True)
    reviewed_at = serializers.DateTimeField(allow_null=True)
    run = serializers.IntegerField(allow_null=True)


def image_data(request, image, position: dict | None, *, detail: bool = False) -> dict:
    """One image as ImageSerializer (with detail, ImageDetailSerializer) describes it.

    The one place an image's payload is built: the image list, the image endpoint
    and the image page's data. `position` is the image's row on the current map
    (labeling.selectors.image_positions, embeddings.selectors.image_map_position),
    None when it is not on one.
    """
    annotation = image_annotation(image)
    position = position or {}
    data = {
        "id": image.pk,
        "dataset": image.dataset_id,
        "name": image.original_name,
        "width": image.width,
        "height": image.height,
        "url": request.build_absolute_uri(f"/images/{image.pk}/file/"),
        "thumbnail_url": request.build_absolute_uri(f"/images/{image.pk}/thumbnail/"),
        "class": annotation.label_class_id if annotation else None,
        "annotation_version": annotation.version if annotation else 0,
        "cluster": position.get("cluster"),
        "x": position.get("x"),
        "y": position.get("y"),
        "suggestion": position.get("suggestion"),
        "confidence": position.get("confidence"),
        "reviewed": bool(annotation and annotation.reviewed_by_id),
    }
    if detail:
        data.update(
            format=image.format,
            sha256=image.sha256,
            size_bytes=image.size_bytes,
            uploaded_at=image.uploaded_at,
            author=annotation.author_id if annotation else None,
            updated=annotation.updated_at if annotation and annotation.version else None,
            reviewed_by=annotation.reviewed_by_id if annotation else None,
            reviewed_at=annotation.reviewed_at if annotation else None,
            run=position.get("run"),
        )
    return data


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), help_text="images or .zip archives")


class UploadCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class UploadSkippedSerializer(serializers.Serializer):
    name = serializers.CharField()
    reason = serializers.CharField()


class UploadRejectedSerializer(serializers.Serializer):
    name = serializers.CharField()
    error = serializers.CharField()


class UploadReportSerializer(serializers.Serializer):
    created = UploadCreatedSerializer(many=True)
    skipped = UploadSkippedSerializer(many=True)
    rejected = UploadRejectedSerializer(many=True)


# --- annotations -----------------------------------------------------------------------------------


class AnnotationSetSerializer(KeywordFieldsMixin, serializers.Serializer):
    class_ = IdField(allow_null=True, help_text="class id, or null to clear")
    version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=2**31 - 1,
        help_text="the annotation_version you saw; a stale one is a 409",
    )


class AnnotationDeleteQuerySerializer(serializers.Serializer):
    version = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)


class AnnotationSerializer(KeywordFieldsMixin, serializers.Serializer):
    image = serializers.IntegerField()
    class_ = serializers.IntegerField(allow_null=True)
    annotation_version = serializers.IntegerField()
    action_id = serializers.IntegerField(allow_null=True)
    author = serializers.IntegerField(allow_null=True)
    updated = serializers.DateTimeField(allow_null=True)


def annotation_data(annotation) -> dict:
    """An image's annotation after a write, as AnnotationSerializer describes it."""
    action = getattr(annotation, "action", None)  # the LabelAction of the write that returned it
    return {
        "image": annotation.image_id,
        "class": annotation.label_class_id,
        "annotation_version": annotation.version,
        "action_id": action.pk if action else None,
        "author": annotation.author_id,
        "updated": annotation.updated_at,
    }


class VersionConflictSerializer(ErrorSerializer):
    current_version = serializers.IntegerField()
    current_class = serializers.IntegerField(allow_null=True)


def ExpectedField():
    return BoundedDictField(
        max_length=MAX_BULK_IMAGES,
        child=serializers.IntegerField(min_value=0, max_value=2**31 - 1),
        required=False,
        help_text="{image id: the annotation_version you saw} (the map's `version` column): a listed image this "
        "write would change that someone changed since is a 409 and nothing is written. Optional; images not "
        "listed are not checked.",
    )


class StaleImageSerializer(KeywordFieldsMixin, serializers.Serializer):
    image = serializers.IntegerField()
    class_ = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField()


class StaleVersionsSerializer(ErrorSerializer):
    conflict_count = serializers.IntegerField()
    conflicts = StaleImageSerializer(many=True, help_text="the changed images (at most 1,000), as they are now")


class BulkSerializer(KeywordFieldsMixin, serializers.Serializer):
    class_ = IdField(allow_null=True, help_text="class id, or null to clear")
    image_ids = BoundedListField(child=IdField(), required=False, max_length=MAX_BULK_IMAGES, allow_empty=True)
    cluster = serializers.IntegerField(required=False, min_value=-1, max_value=10**9)
    polygon = BoundedListField(
        child=BoundedListField(child=serializers.FloatField(), min_length=2, max_length=2),
        required=False,
        min_length=3,
        max_length=MAX_POLYGON_VERTICES,
        help_text="[[x, y], ...] in map coordinates",
    )
    exclude_image_ids = BoundedListField(child=IdField(), required=False, max_length=MAX_BULK_IMAGES, default=list)
    expected = ExpectedField()

    def validate(self, attrs):
        given = [key for key in ("image_ids", "cluster", "polygon") if key in attrs]
        if len(given) != 1:
            raise serializers.ValidationError("Give exactly one of image_ids, cluster or polygon.")
        return attrs


class BulkResultSerializer(serializers.Serializer):
    updated = serializers.IntegerField()
    action_id = serializers.IntegerField()
    skipped = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        help_text="accepting suggestions: images left alone because they were labeled or changed meanwhile",
    )
    versions = serializers.DictField(
        child=serializers.IntegerField(),
        required=False,
        help_text="with `expected`: the new annotation_version of each listed image",
    )


class AcceptPreviewClassSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    count = serializers.IntegerField(help_text="images that would take this class")


class SuggestionsAcceptPreviewSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(help_text="always true: nothing was changed")
    total = serializers.IntegerField(help_text="images whose class the accept would change")
    unlabeled = serializers.IntegerField(help_text="of those, images without a class now")
    relabeled = serializers.IntegerField(help_text="of those, labeled images that would change class (include_labeled)")
    classes = AcceptPreviewClassSerializer(many=True, help_text="per class, most images first")
    min_confidence = serializers.FloatField(help_text="the floor used: the one sent, else the default")
    default_min_confidence = serializers.FloatField(help_text="SIMLABEL_ACCEPT_MIN_CONFIDENCE")
    expected = serializers.DictField(
        child=serializers.IntegerField(),
        allow_null=True,
        help_text="{image id: annotation_version} of exactly these images: send it with the same body (without "
        "dry_run) to accept this plan; a 409 if one changed meanwhile. Null above the expected limit.",
    )


class UndoResultSerializer(serializers.Serializer):
    action_id = serializers.IntegerField()
    undo_action_id = serializers.IntegerField()
    restored = serializers.IntegerField()
    conflicts = serializers.ListField(child=serializers.IntegerField())
    versions = serializers.DictField(
        child=serializers.IntegerField(), help_text="the new annotation_version of each restored image"
    )


class LabelActionSerializer(KeywordFieldsMixin, serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    source = serializers.CharField()
    class_ = serializers.IntegerField(source="label_class_id", allow_null=True)
    image_count = serializers.IntegerField()
    user = serializers.IntegerField(source="user_id", allow_null=True)
    username = serializers.CharField(source="user.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    undo_of = serializers.IntegerField(source="undo_of_id", allow_null=True)
    undone_by = serializers.IntegerField(source="undone_by_id", allow_null=True)


class ActionListQuerySerializer(serializers.Serializer):
    mine = serializers.BooleanField(required=False, default=False)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500)


class HistoryEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    action_id = serializers.IntegerField()
    kind = serializers.CharField()
    source = serializers.CharField()
    undo_of = serializers.IntegerField(allow_null=True)
    old_class = serializers.IntegerField(allow_null=True)
    new_class = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField()
    user = serializers.IntegerField(allow_null=True)
    username = serializers.CharField(allow_null=True)
    created = serializers.DateTimeField()


# --- review --------------------------------------------------------------------------------------------


class ReviewQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=500)


class ReviewItemSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["cluster", "image"])
    id = serializers.IntegerField()
    reason = serializers.CharField()
    score = serializers.FloatField()
    image_ids = serializers.ListField(child=serializers.IntegerField())
    image_versions = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        help_text="the annotation version of each of image_ids, for a resolve's `expected`",
    )
    suggested_class = serializers.IntegerField(allow_null=True)
    label_class = serializers.IntegerField(allow_null=True, help_text="an image item's current class (null: unlabeled)")
    confidence = serializers.FloatField(
        allow_null=True,
        help_text="an image item's suggestion confidence: for an unlabeled image the calibrated chance it is "
        "right; for a labeled one the share of its neighbors that say the suggested class",
    )


class ReviewResolveSerializer(KeywordFieldsMixin, serializers.Serializer):
    kind = serializers.ChoiceField(choices=["cluster", "image"])
    id = serializers.IntegerField(min_value=-1, max_value=MAX_ID)
    outcome = serializers.ChoiceField(choices=["accepted", "relabelled", "reviewed"])
    class_ = IdField(required=False, allow_null=True)
    image_ids = BoundedListField(child=IdField(), required=False, allow_null=True, max_length=MAX_BULK_IMAGES)
    expected = ExpectedField()


class ReviewResolveResultSerializer(serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.IntegerField()
    outcome = serializers.CharField()
    action_id = serializers.IntegerField(allow_null=True)
    updated = serializers.IntegerField()
    skipped = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        help_text="images left alone because someone changed them meanwhile",
    )


class SuggestionsAcceptSerializer(KeywordFieldsMixin, serializers.Serializer):
    image_ids = BoundedListField(child=IdField(), required=False, max_length=MAX_BULK_IMAGES)
    cluster = serializers.IntegerField(required=False, min_value=-1, max_value=10**9)
    class_ = IdField(
        required=False,
        help_text="Only images suggested this class id take it; alone, every such suggestion on the map.",
    )
    min_confidence = serializers.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="Only images whose suggestion has at least this confidence (0..1, the calibrated chance it is "
        f"right) take it. Default {settings.SIMLABEL_ACCEPT_MIN_CONFIDENCE} (SIMLABEL_ACCEPT_MIN_CONFIDENCE); "
        "0 takes every suggestion.",
    )
    include_labeled = serializers.BooleanField(
        required=False,
        default=False,
        help_text="also relabel labeled images whose suggestion is another class (default: unlabeled images only)",
    )
    dry_run = serializers.BooleanField(
        required=False,
        default=False,
        help_text="change nothing: answer what the accept would change (per class, total) and the `expected` "
        "that accepts exactly that",
    )
    expected = ExpectedField()
    source = serializers.CharField(
        required=False,
        default="spreading",
        max_length=120,
        help_text='whose suggestions: "spreading" (the neighbors\', default) or "model:<name>" (an uploaded '
        "model's predictions, see /predictions/)",
    )

    def validate_min_confidence(self, value):
        if not math.isfinite(value):  # FloatField takes "NaN", and NaN passes both bounds
            raise serializers.ValidationError("Must be a number between 0 and 1.")
        return value

    def validate(self, attrs):
        if "image_ids" in attrs and "cluster" in attrs:
            raise serializers.ValidationError("Give image_ids or cluster, not both.")
        if not {"image_ids", "cluster", "class"} & attrs.keys():
            raise serializers.ValidationError("Give image_ids, cluster or class.")
        return attrs


# --- label import ---------------------------------------------------------------------------------------


class LabelImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="CSV (name or sha256, class), COCO JSON, or a Label Studio JSON export")
    format = serializers.ChoiceField(choices=["csv", "coco", "labelstudio"])
    create_classes = serializers.BooleanField(
        required=False, default=False, help_text="create the classes the file names that the dataset lacks (admins)"
    )
    only_unlabeled = serializers.BooleanField(
        required=False, default=False, help_text="leave images that already have a class alone"
    )

    def validate(self, attrs):
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(f"Unknown field(s): {', '.join(unknown)}.")
        return attrs


class LabelImportRowSerializer(KeywordFieldsMixin, serializers.Serializer):
    row = serializers.IntegerField(help_text="CSV line, COCO annotation or Label Studio task, from 1")
    name = serializers.CharField()
    sha256 = serializers.CharField()
    class_ = serializers.CharField()
    reason = serializers.CharField()
    image_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="ambiguous rows: (some of) the images named so"
    )


class LabelImportResultSerializer(serializers.Serializer):
    format = serializers.CharField()
    action_id = serializers.IntegerField(allow_null=True, help_text="the one undoable action; null if nothing matched")
    rows = serializers.IntegerField()
    matched = serializers.IntegerField(help_text="images the file gives a class")
    updated = serializers.IntegerField(help_text="images whose class changed")
    unchanged = serializers.IntegerField(help_text="images that already had that class")
    kept = serializers.IntegerField(help_text="only_unlabeled: images left alone because they had a class")
    created_classes = serializers.ListField(child=serializers.CharField())
    unmatched_count = serializers.IntegerField()
    unmatched = LabelImportRowSerializer(many=True, help_text="the first 50 rows that matched no image, with why")
    ambiguous_count = serializers.IntegerField()
    ambiguous = LabelImportRowSerializer(many=True, help_text="the first 50 rows whose name several images share")


# --- export ---------------------------------------------------------------------------------------------


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=list(EXPORT_FORMATS), default="json")
    include_unlabeled = serializers.BooleanField(required=False, default=False)
    val_fraction = serializers.FloatField(
        required=False, help_text="yolo only: the share of each class's images that goes to val/ (0 <= x < 1)."
    )
    seed = serializers.IntegerField(
        required=False, min_value=0, max_value=2**31 - 1, help_text="yolo only: the seed of the val/ split."
    )

    def validate_val_fraction(self, value):
        if not (math.isfinite(value) and 0 <= value < 1):
            raise serializers.ValidationError("Must be a number from 0 up to (not including) 1.")
        return value

    def validate(self, attrs):
        if attrs["format"] != "yolo":
            for name in ("val_fraction", "seed"):
                if name in attrs:
                    raise serializers.ValidationError({name: "Applies only to format=yolo."})
        return attrs


class ExportRowSerializer(KeywordFieldsMixin, serializers.Serializer):
    image_id = serializers.IntegerField()
    name = serializers.CharField()
    sha256 = serializers.CharField()
    class_ = serializers.CharField(allow_null=True)
    class_id = serializers.IntegerField(allow_null=True)
    author = serializers.CharField(allow_null=True)
    updated = serializers.DateTimeField(allow_null=True)
