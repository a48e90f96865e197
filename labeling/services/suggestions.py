"""Accepting label suggestions: each image takes its suggested class, as one label action.

The suggestions themselves (computing, storing, scheduling) belong to embeddings
(embeddings.services.suggestions); this module reads them from the current map
and writes labels through labeling.services.annotations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from core.errors import ValidationFailed
from embeddings.models import ImageEmbedding
from embeddings.selectors import current_run
from labeling.models import Annotation, AnnotationSource, Dataset, LabelAction, LabelClass
from labeling.selectors.predictions import dataset_has_model, model_of_source, prediction_suggestions
from labeling.services import annotations


@dataclass(frozen=True)
class AcceptPlan:
    """What accepting suggestions would write, and the state it was computed on.

    class_by_image: the suggested class of each image to change; seen_versions:
    each of those images' annotation version when it was read (0 without a
    row).  The read takes no locks, so annotations_apply_mapping re-checks both
    against the locked rows.
    """

    class_by_image: dict[int, int]
    seen_versions: dict[int, int]
    only_unlabeled: bool
    class_now: dict[int, int | None]  # each of those images' class when read (None: unlabeled)


def suggestions_accept_plan(
    *,
    dataset: Dataset,
    image_ids=None,
    cluster: int | None = None,
    label_class: LabelClass | None = None,
    min_confidence: float = 0.0,
    include_labeled: bool = False,
    expected=None,
    suggestion_source: str | None = None,
) -> AcceptPlan:
    """The read half of suggestions_accept (see there); writes nothing."""
    if image_ids is not None and cluster is not None:
        raise ValidationFailed("Give image_ids or cluster, not both.")
    try:
        min_confidence = float(min_confidence)
    except (TypeError, ValueError):
        raise ValidationFailed("min_confidence must be a number between 0 and 1.", field="min_confidence") from None
    if not 0.0 <= min_confidence <= 1.0:
        raise ValidationFailed("min_confidence must be a number between 0 and 1.", field="min_confidence")
    expected = annotations.clean_expected(expected)
    model = model_of_source(suggestion_source)  # None: the neighbors' suggestions (label spreading)
    if model is not None and not (model and dataset_has_model(dataset, model)):
        raise ValidationFailed(
            'source must be "spreading" or "model:<name>" of a model with predictions in this dataset.',
            field="source",
        )
    run = current_run(dataset)
    if run is None and (model is None or cluster is not None):
        raise ValidationFailed("This dataset has no map yet, so there are no suggestions.")
    rows = ImageEmbedding.objects.filter(run=run)
    if model is None:
        rows = rows.filter(suggested_class__isnull=False, suggestion_confidence__gte=min_confidence)
    wanted = None
    if image_ids is not None:
        try:
            wanted = {int(i) for i in image_ids}
        except (TypeError, ValueError):
            raise ValidationFailed("image_ids must be a list of integers.", field="image_ids") from None
        if not wanted:
            raise ValidationFailed("image_ids is empty.", field="image_ids")
        annotations.images_check_in_dataset(dataset_id=dataset.pk, image_ids=sorted(wanted))
    if cluster is not None:
        try:
            cluster = int(cluster)
        except (TypeError, ValueError):
            raise ValidationFailed("cluster must be an integer.", field="cluster") from None
        if not ImageEmbedding.objects.filter(run=run, cluster=cluster).exists():
            raise ValidationFailed(f"The current map has no cluster {cluster}.", field="cluster")
        rows = rows.filter(cluster=cluster)
    if label_class is not None:
        if label_class.dataset_id != dataset.pk:
            raise ValidationFailed("That class belongs to another dataset.", field="class")
        rows = rows.filter(suggested_class=label_class) if model is None else rows
    if model is None:
        suggested = dict(rows.values_list("image_id", "suggested_class_id"))
    else:
        suggested = prediction_suggestions(
            dataset=dataset, model=model, min_confidence=min_confidence, label_class=label_class
        )
        if cluster is not None:
            in_cluster = set(rows.values_list("image_id", flat=True))
            suggested = {i: c for i, c in suggested.items() if i in in_cluster}
    if wanted is not None:
        suggested = {i: c for i, c in suggested.items() if i in wanted}
    if expected is not None:
        # The client accepts what it saw: only the images it lists, each checked against its version.
        suggested = {i: c for i, c in suggested.items() if i in expected}
    current = {
        image_id: (class_id, version)
        for image_id, class_id, version in Annotation.objects.filter(dataset=dataset).values_list(
            "image_id", "label_class_id", "version"
        )
    }
    if include_labeled or expected is not None:
        # Labeled images the client listed stay in: the locked rows decide (409 if
        # changed since the client saw them, else left alone when only_unlabeled).
        mapping = suggested
    else:
        mapping = {i: c for i, c in suggested.items() if current.get(i, (None, 0))[0] is None}
    seen = {i: current.get(i, (None, 0))[1] for i in mapping}
    class_now = {i: current.get(i, (None, 0))[0] for i in mapping}
    return AcceptPlan(
        class_by_image=mapping, seen_versions=seen, only_unlabeled=not include_labeled, class_now=class_now
    )


def suggestions_accept(
    *,
    dataset: Dataset,
    user,
    image_ids=None,
    cluster: int | None = None,
    label_class: LabelClass | None = None,
    min_confidence: float = 0.0,
    include_labeled: bool = False,
    mark_reviewed: bool = False,
    source: str | None = None,
    expected=None,
    suggestion_source: str | None = None,
) -> LabelAction:
    """Applies each image's suggested class as ONE LabelAction.

    Scope: the given images, or a cluster of the current map, or (neither) the
    whole map; label_class narrows any scope to the images suggested that class
    (one class applied to a selection: "accept every 'seven'").  By default only unlabeled images take their suggestion;
    include_labeled also changes labeled images whose neighbors suggest
    another class (a reviewer accepting "this label is a mistake").  Images
    without a suggestion or below min_confidence are left alone.

    The suggestions and labels are read first, without locks; the write then
    locks the rows and changes only images still in the state the accept was
    computed on (still unlabeled, or for include_labeled, not changed
    since): someone's label set a moment earlier is never overwritten.  Those
    left alone are in action.skipped.  `expected` ({image id: version}, what the
    client saw) narrows the scope to the images it lists and makes the accept
    conditional: a listed image changed since is a 409, nothing changed.
    `suggestion_source` "model:<name>" takes the classes of that model's uploaded predictions
    (labeling.services.predictions) instead of the neighbors' ("spreading", the default); the
    labels' source is then `prediction` unless `source` says otherwise.
    """
    if source is None:
        model = model_of_source(suggestion_source)
        source = AnnotationSource.SUGGESTION if model is None else AnnotationSource.PREDICTION
    plan = suggestions_accept_plan(
        dataset=dataset,
        image_ids=image_ids,
        cluster=cluster,
        label_class=label_class,
        min_confidence=min_confidence,
        include_labeled=include_labeled,
        expected=expected,
        suggestion_source=suggestion_source,
    )
    return annotations.annotations_apply_mapping(
        dataset=dataset,
        user=user,
        class_by_image=plan.class_by_image,
        source=source,
        mark_reviewed=mark_reviewed,
        expected=expected,
        if_versions=plan.seen_versions,
        only_unlabeled=plan.only_unlabeled,
    )


@dataclass(frozen=True)
class AcceptPreview:
    """What an accept would change now, computed as suggestions_accept would, written nowhere.

    counts: (class id, class name, images that would take it), most first;
    unlabeled / relabeled: how many of those have no class now / another one;
    expected: {image id: annotation version} of exactly those images, to send
    back as the accept's `expected` (None when more than clean_expected takes):
    the accept then changes only them and is a 409 if one changed meanwhile.
    """

    min_confidence: float
    counts: list[tuple[int, str, int]]
    unlabeled: int
    relabeled: int
    expected: dict[int, int] | None

    @property
    def total(self) -> int:
        return self.unlabeled + self.relabeled


def suggestions_accept_preview(*, dataset: Dataset, min_confidence: float = 0.0, **scope) -> AcceptPreview:
    """The accept's dry run: the same plan, less what the write would leave alone (images that
    already have the suggested class, and labeled ones unless include_labeled).  Reads only.

    Takes exactly suggestions_accept_plan's arguments (`scope`: image_ids, cluster, label_class,
    include_labeled, expected, suggestion_source), so a preview and its accept cannot drift apart.
    """
    plan = suggestions_accept_plan(dataset=dataset, min_confidence=min_confidence, **scope)
    changes = {
        image_id: class_id
        for image_id, class_id in plan.class_by_image.items()
        if plan.class_now[image_id] != class_id and not (plan.only_unlabeled and plan.class_now[image_id] is not None)
    }
    per_class = Counter(changes.values())
    names = dict(LabelClass.objects.filter(dataset=dataset, id__in=per_class).values_list("id", "name"))
    counts = sorted(((c, names[c], n) for c, n in per_class.items()), key=lambda row: (-row[2], row[1]))
    unlabeled = sum(1 for image_id in changes if plan.class_now[image_id] is None)
    fits = len(changes) <= annotations.MAX_BULK_IMAGES
    return AcceptPreview(
        min_confidence=float(min_confidence),
        counts=counts,
        unlabeled=unlabeled,
        relabeled=len(changes) - unlabeled,
        expected={i: plan.seen_versions[i] for i in sorted(changes)} if fits else None,
    )
