"""Label writes: one image, a selection, a cluster, a lasso polygon, and undo.

Concurrency rules (they hold on PostgreSQL and on SQLite):
- every write locks the annotation rows it touches with SELECT ... FOR UPDATE,
  always in ascending image id, so two bulk actions over overlapping images
  queue behind each other instead of deadlocking (SQLite's IMMEDIATE
  transactions serialize writers outright);
- a single-image write that carries the version the client saw is applied with
  a conditional UPDATE ... WHERE version = <seen>; a mismatch is a 409 with the
  current version and class, so no annotator silently overwrites another;
- a bulk write may carry `expected` ({image id: version seen}); under the same
  row locks, any listed image the write would change whose version moved on is
  a 409 listing those images with their current class and version, and
  nothing is written (images the write leaves alone, or that already carry the
  class it sets, are no conflict);
- every change appends one AnnotationHistory row per image (old and new class,
  the version it produced, the user and the LabelAction), which is what undo
  and the image history read.
Bulk writes issue a fixed number of statements per chunk of ids (lock, one
UPDATE, one multi-row INSERT of history), never one query per image. On
PostgreSQL an id list travels as one array literal (`_pg_array`), and a bulk
write of one class never loads its rows into Python: the lock counts what will
change, and one UPDATE ... RETURNING feeds the history INSERT in the database.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from core.db import chunks, on_postgres
from core.errors import (
    Conflict,
    NotFound,
    PermissionRefused,
    StaleVersions,
    ValidationFailed,
    VersionConflict,
)
from core.permissions import membership_role
from embeddings.selectors import clean_polygon, cluster_image_ids, current_run, image_ids_in_polygon
from embeddings.services import dataset_labels_changed
from labeling.models import (
    Annotation,
    AnnotationHistory,
    AnnotationSource,
    Dataset,
    Image,
    LabelAction,
    LabelClass,
    Role,
)
from labeling.services.webhooks import labels_changed_notify

MAX_BULK_IMAGES = 100_000
HISTORY_BATCH = 2000
# A stale bulk write reports this many of its conflicting images (and the total count).
MAX_CONFLICTS_REPORTED = 1000
# A write naming images of another dataset (or none) is told this many of them.
MAX_INVALID_IDS_REPORTED = 20
MAX_VERSION = 2**31 - 1


def _pg_array(values) -> str:
    """An int list as a PostgreSQL array literal ('{1,2,NULL}') for a `%s::bigint[]` parameter.

    psycopg adapts a Python list element by element (most of a second of CPU for the
    seven 100,000-id arrays of one bulk write); a joined string costs ~20 ms.
    """
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


@dataclass(frozen=True)
class _Current:
    annotation_id: int
    class_id: int | None
    version: int


def _check_class(dataset_id: int, label_class: LabelClass | None) -> int | None:
    if label_class is None:
        return None
    if label_class.dataset_id != dataset_id:
        raise ValidationFailed("That class belongs to another dataset.", field="class")
    return label_class.pk


def images_check_in_dataset(*, dataset_id: int, image_ids: list[int]) -> None:
    """The one check that distinct `image_ids` are images of the dataset, for every write that takes a list.

    A 400 on "image_ids" naming (up to MAX_INVALID_IDS_REPORTED of) the unknown or
    foreign ids, in the message and as `invalid_image_ids`; nothing is written.
    It also takes dataset_lock_for_labels, so the images checked stay until the write commits.
    """
    dataset_lock_for_labels(dataset_id)
    if on_postgres():
        ids_array = _pg_array(image_ids)
        missing = []
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {Image._meta.db_table} WHERE id = ANY(%s::bigint[]) AND dataset_id = %s",
                [ids_array, dataset_id],
            )
            found = cursor.fetchone()[0]
        if found != len(image_ids):
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT t.i FROM unnest(%s::bigint[]) AS t(i) WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {Image._meta.db_table} im WHERE im.id = t.i AND im.dataset_id = %s)",
                    [ids_array, dataset_id],
                )
                missing = sorted(row[0] for row in cursor.fetchall())
        bad = len(missing)
    else:
        missing = []
        bad = 0
        for chunk in chunks(image_ids):
            present = set(Image.objects.filter(dataset_id=dataset_id, id__in=chunk).values_list("id", flat=True))
            bad += len(chunk) - len(present)
            if len(present) != len(chunk) and len(missing) < MAX_INVALID_IDS_REPORTED:
                missing.extend(i for i in chunk if i not in present)
        missing.sort()
    if bad:
        shown = missing[:MAX_INVALID_IDS_REPORTED]
        listed = ", ".join(map(str, shown)) + (", …" if bad > len(shown) else "")
        raise ValidationFailed(
            f"{bad} image id(s) are not images of this dataset ({listed}); nothing was changed.",
            field="image_ids",
            invalid_image_ids=shown,
        )


def dataset_lock_for_labels(dataset_id: int) -> None:
    """Holds the dataset row FOR KEY SHARE until the transaction ends (PostgreSQL), or NotFound.

    Annotation and AnnotationHistory carry no database constraint on their image: images
    are deleted only with their dataset, and dataset_delete locks the dataset row FOR
    UPDATE first, so a label write and a deletion of its images never overlap. One row,
    where locking each image FOR KEY SHARE (what the constraint's check did) dirtied the
    pages of 100,000 image rows per bulk label of a million-image dataset.
    """
    if not on_postgres():
        return  # SQLite writes one transaction at a time
    with connection.cursor() as cursor:
        # KEY SHARE: label writers do not wait for each other, nor for updates of the dataset's fields.
        cursor.execute(f"SELECT 1 FROM {Dataset._meta.db_table} WHERE id = %s FOR KEY SHARE", [dataset_id])
        if cursor.fetchone() is None:
            raise NotFound("That dataset was deleted.")


def _ensure_annotation_rows(dataset_id: int, image_ids: list[int]) -> None:
    """Every image gets an Annotation row (version 0, no class) before it is locked.

    A concurrent writer may insert the same rows: ON CONFLICT DO NOTHING waits
    for it and then keeps its row. It is also the only filter of the rows that
    exist: a `WHERE NOT EXISTS` pre-filter, with statistics saying the table is
    empty (a new dataset, autovacuum behind), was planned as a sequential scan per
    row over the rows the statement itself was inserting: 80 s for 100,000 images.
    """
    if on_postgres():
        table = Annotation._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (image_id, dataset_id, label_class_id, author_id, source, updated_at, version, "
                f"reviewed_by_id, reviewed_at) "
                f"SELECT t.i, %s, NULL, NULL, %s, %s, 0, NULL, NULL FROM unnest(%s::bigint[]) AS t(i) "
                f"ON CONFLICT (image_id) DO NOTHING",
                [dataset_id, AnnotationSource.MANUAL, timezone.now(), _pg_array(image_ids)],
            )
        return
    for chunk in chunks(image_ids):
        existing = set(Annotation.objects.filter(image_id__in=chunk).values_list("image_id", flat=True))
        missing = [i for i in chunk if i not in existing]
        if missing:
            Annotation.objects.bulk_create(
                [Annotation(image_id=i, dataset_id=dataset_id, version=0) for i in missing],
                batch_size=HISTORY_BATCH,
                ignore_conflicts=True,
            )


def _lock_annotations(image_ids: list[int]) -> dict[int, _Current]:
    """Locks the annotation rows of sorted `image_ids` in ascending order."""
    current: dict[int, _Current] = {}
    if on_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, image_id, label_class_id, version FROM {Annotation._meta.db_table} "
                f"WHERE image_id = ANY(%s::bigint[]) ORDER BY image_id FOR UPDATE",
                [_pg_array(image_ids)],
            )
            for ann_id, image_id, class_id, version in cursor.fetchall():
                current[image_id] = _Current(ann_id, class_id, version)
        return current
    for chunk in chunks(image_ids):
        rows = (
            Annotation.objects.select_for_update()
            .filter(image_id__in=chunk)
            .order_by("image_id")
            .values_list("id", "image_id", "label_class_id", "version")
        )
        for ann_id, image_id, class_id, version in rows:
            current[image_id] = _Current(ann_id, class_id, version)
    return current


def _after_labels_changed(dataset_id: int, action: LabelAction) -> None:
    """After commit: mark the dataset's labels as changed, tell embeddings (suggestions) and the
    dataset's webhooks (labels.changed, with `action`): every recorded label change passes here.

    Done after commit, not inside the transaction, so label writes never queue
    on the dataset row.
    """

    def run():
        Dataset.objects.filter(pk=dataset_id).update(labels_changed_at=timezone.now())
        dataset_labels_changed(dataset_id=dataset_id)

    transaction.on_commit(run)
    labels_changed_notify(action=action)


def _write_changes(
    *,
    dataset_id: int,
    user,
    action: LabelAction,
    changes: list[tuple[int, _Current]],
    new_class_id: int | None,
    source: str,
    mark_reviewed: bool,
    now,
) -> None:
    """Sets `new_class_id` on the locked rows in `changes` and appends their history."""
    reviewer_id = user.pk if (mark_reviewed and user is not None) else None
    reviewed_at = now if mark_reviewed else None
    user_id = user.pk if user is not None else None
    annotation_ids = [cur.annotation_id for _, cur in changes]
    if on_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Annotation._meta.db_table} SET label_class_id = %s, version = version + 1, author_id = %s, "
                f"source = %s, updated_at = %s, reviewed_by_id = %s, reviewed_at = %s WHERE id = ANY(%s::bigint[])",
                [new_class_id, user_id, source, now, reviewer_id, reviewed_at, _pg_array(annotation_ids)],
            )
            cursor.execute(
                f"INSERT INTO {AnnotationHistory._meta.db_table} (dataset_id, image_id, old_class_id, new_class_id, "
                f"new_version, user_id, action_id, created_at) "
                f"SELECT %s, t.image_id, t.old_class, %s, t.new_version, %s, %s, %s "
                f"FROM unnest(%s::bigint[], %s::bigint[], %s::int[]) AS t(image_id, old_class, new_version) "
                f"ORDER BY t.image_id",
                [
                    dataset_id,
                    new_class_id,
                    user_id,
                    action.pk,
                    now,
                    _pg_array(i for i, _ in changes),
                    _pg_array(c.class_id for _, c in changes),
                    _pg_array(c.version + 1 for _, c in changes),
                ],
            )
        return
    for chunk in chunks(annotation_ids):
        Annotation.objects.filter(id__in=chunk).update(
            label_class_id=new_class_id,
            version=F("version") + 1,
            author_id=user_id,
            source=source,
            updated_at=now,
            reviewed_by_id=reviewer_id,
            reviewed_at=reviewed_at,
        )
    AnnotationHistory.objects.bulk_create(
        [
            AnnotationHistory(
                dataset_id=dataset_id,
                image_id=image_id,
                old_class_id=cur.class_id,
                new_class_id=new_class_id,
                new_version=cur.version + 1,
                user_id=user_id,
                action=action,
                created_at=now,
            )
            for image_id, cur in changes
        ],
        batch_size=HISTORY_BATCH,
    )


# --- one image ------------------------------------------------------------------------------


@transaction.atomic
def annotation_set(
    *,
    image: Image,
    label_class: LabelClass | None,
    user,
    expected_version: int | None = None,
    source: str = AnnotationSource.MANUAL,
    mark_reviewed: bool = False,
) -> Annotation:
    """Sets (or, with label_class None, clears) one image's class.

    The returned annotation carries `.action` (the LabelAction, or None when
    the class was already that one).
    """
    new_class_id = _check_class(image.dataset_id, label_class)
    dataset_lock_for_labels(image.dataset_id)
    _ensure_annotation_rows(image.dataset_id, [image.pk])
    annotation = Annotation.objects.select_for_update().get(image_id=image.pk)
    if expected_version is not None and annotation.version != expected_version:
        raise VersionConflict(
            "Someone changed this image's class since you loaded it; reload and try again.",
            current_version=annotation.version,
            current_class=annotation.label_class_id,
        )
    now = timezone.now()
    if annotation.label_class_id == new_class_id:
        if mark_reviewed:
            Annotation.objects.filter(pk=annotation.pk).update(reviewed_by=user, reviewed_at=now)
            annotation.refresh_from_db()
        annotation.action = None
        return annotation
    action = LabelAction.objects.create(
        dataset_id=image.dataset_id,
        user=user,
        kind=LabelAction.Kind.SET if new_class_id else LabelAction.Kind.CLEAR,
        source=source,
        label_class_id=new_class_id,
        image_count=1,
    )
    # Conditional on the version we locked: even without row locks (or if a
    # backend ignored FOR UPDATE) a concurrent change cannot be overwritten.
    updated = Annotation.objects.filter(pk=annotation.pk, version=annotation.version).update(
        label_class_id=new_class_id,
        version=annotation.version + 1,
        author=user,
        source=source,
        updated_at=now,
        reviewed_by=user if mark_reviewed else None,
        reviewed_at=now if mark_reviewed else None,
    )
    if updated != 1:
        raise VersionConflict("Someone changed this image's class at the same moment; reload and try again.")
    AnnotationHistory.objects.create(
        dataset_id=image.dataset_id,
        image_id=image.pk,
        old_class_id=annotation.label_class_id,
        new_class_id=new_class_id,
        new_version=annotation.version + 1,
        user=user,
        action=action,
    )
    _after_labels_changed(image.dataset_id, action)
    annotation.refresh_from_db()
    annotation.action = action
    return annotation


# --- many images ------------------------------------------------------------------------------


def _clean_image_ids(image_ids, field="image_ids") -> list[int]:
    try:
        ids = sorted({int(i) for i in image_ids})
    except (TypeError, ValueError):
        raise ValidationFailed(f"{field} must be a list of integers.", field=field) from None
    if len(ids) > MAX_BULK_IMAGES:
        raise ValidationFailed(f"At most {MAX_BULK_IMAGES} images per action.", field=field)
    return ids


def clean_expected(expected) -> dict[int, int] | None:
    """`expected` as {image id: annotation version}; None when the client sent none.

    JSON object keys are strings, so ids come as decimal strings (or ints from Python callers).
    """
    if expected is None:
        return None
    message = 'expected must map image ids to the annotation_version you saw, e.g. {"12": 3}.'
    if not isinstance(expected, dict):
        raise ValidationFailed(message, field="expected")
    if len(expected) > MAX_BULK_IMAGES:
        raise ValidationFailed(f"expected may list at most {MAX_BULK_IMAGES} images.", field="expected")
    out: dict[int, int] = {}
    for key, value in expected.items():
        if isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 19:
            image_id = int(key)
        elif isinstance(key, int) and not isinstance(key, bool):
            image_id = key
        else:
            raise ValidationFailed(message, field="expected")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VERSION:
            raise ValidationFailed(message, field="expected")
        if not 0 < image_id < 2**63:
            raise ValidationFailed(message, field="expected")
        out[image_id] = value
    return out


def _raise_if_stale(expected: dict[int, int] | None, current: dict[int, _Current], new_class_of) -> None:
    """409 when an image this write would change is no longer at the version the client saw.

    Only locked images (this write's) are compared; one that already carries
    the class it would get is no conflict: nothing of anyone's would be lost.
    """
    if not expected:
        return
    stale = [
        image_id
        for image_id, cur in current.items()
        if image_id in expected and cur.version != expected[image_id] and cur.class_id != new_class_of(image_id)
    ]
    if stale:
        raise StaleVersions(
            f"Someone else changed {len(stale)} of these images since you loaded them, so nothing was changed. "
            "Their current classes are shown now; choose again if needed.",
            conflict_count=len(stale),
            conflicts=[
                {"image": image_id, "class": current[image_id].class_id, "version": current[image_id].version}
                for image_id in stale[:MAX_CONFLICTS_REPORTED]
            ],
        )


def annotations_lock_unchanged(*, image_ids, expected) -> None:
    """Locks the annotations of `image_ids` and raises StaleVersions if one listed
    in `expected` is no longer at that version (the caller vouches for what it saw,
    e.g. a reviewer marking labels reviewed). Call inside a transaction."""
    expected = clean_expected(expected)
    if not expected:
        return
    ids = sorted({int(i) for i in image_ids})
    # Any change is a conflict here: nothing is written that could make it moot.
    _raise_if_stale(expected, _lock_annotations(ids), lambda _image_id: _NO_CLASS_MATCHES)


_NO_CLASS_MATCHES = object()


def _versions_after(expected: dict[int, int] | None, current: dict[int, _Current], changed: set[int]) -> dict | None:
    """The new version of each listed image of the write, so a client can write them again without reloading."""
    if expected is None:
        return None
    return {
        image_id: cur.version + (1 if image_id in changed else 0)
        for image_id, cur in current.items()
        if image_id in expected
    }


def _bulk_action(dataset, user, new_class_id, source, image_count: int) -> LabelAction:
    """The one undoable action a bulk label (or clear) records."""
    return LabelAction.objects.create(
        dataset=dataset,
        user=user,
        kind=LabelAction.Kind.SET if new_class_id else LabelAction.Kind.CLEAR,
        source=source,
        label_class_id=new_class_id,
        image_count=image_count,
    )


@transaction.atomic
def annotations_apply_bulk(
    *,
    dataset: Dataset,
    user,
    label_class: LabelClass | None,
    image_ids,
    source: str = AnnotationSource.BULK,
    mark_reviewed: bool = False,
    expected=None,
) -> LabelAction:
    """Applies one class (None clears) to the given images as one LabelAction.

    All ids must be images of `dataset`, else nothing changes. Images that
    already carry the class are left alone; action.image_count is the number
    whose class changed. `expected` ({image id: version seen}) makes the write
    conditional: StaleVersions (409) and nothing changed when a listed image it
    would change has moved on; action.versions then gives the listed images'
    new versions.
    """
    new_class_id = _check_class(dataset.pk, label_class)
    ids = _clean_image_ids(image_ids)
    expected = clean_expected(expected)
    images_check_in_dataset(dataset_id=dataset.pk, image_ids=ids)
    if on_postgres():
        return _apply_bulk_postgres(
            dataset=dataset,
            user=user,
            new_class_id=new_class_id,
            ids=ids,
            source=source,
            mark_reviewed=mark_reviewed,
            expected=expected,
        )
    _ensure_annotation_rows(dataset.pk, ids)
    current = _lock_annotations(ids)
    _raise_if_stale(expected, current, lambda _image_id: new_class_id)
    changes = [(image_id, current[image_id]) for image_id in ids if current[image_id].class_id != new_class_id]
    if mark_reviewed:
        # Images already carrying the class are confirmed by the reviewer too.
        same = [current[i].annotation_id for i in ids if current[i].class_id == new_class_id]
        now = timezone.now()
        for chunk in chunks(same):
            Annotation.objects.filter(id__in=chunk).update(reviewed_by=user, reviewed_at=now)
    action = _bulk_action(dataset, user, new_class_id, source, len(changes))
    action.versions = _versions_after(expected, current, {image_id for image_id, _ in changes})
    if changes:
        _write_changes(
            dataset_id=dataset.pk,
            user=user,
            action=action,
            changes=changes,
            new_class_id=new_class_id,
            source=source,
            mark_reviewed=mark_reviewed,
            now=timezone.now(),
        )
        _after_labels_changed(dataset.pk, action)
    return action


def _apply_bulk_postgres(
    *,
    dataset: Dataset,
    user,
    new_class_id: int | None,
    ids: list[int],
    source: str,
    mark_reviewed: bool,
    expected: dict[int, int] | None,
) -> LabelAction:
    """annotations_apply_bulk's writes on PostgreSQL, for checked, sorted `ids`.

    The same rules as the portable path, without a row per image in Python: the
    lock (ascending image id) counts the rows whose class changes; only the
    images listed in `expected` are read back; one UPDATE ... FROM (the table
    itself, read at the statement's snapshot, i.e. the old values) RETURNING
    each changed image's old class and new version feeds the history INSERT.

    Images never labeled have no annotation row yet.  Setting a class without
    `expected`, they are inserted already carrying it (version 1, with their
    history rows) instead of inserted blank and then updated: labeling 100,000
    fresh images of a million-image dataset wrote every row twice (1.2 s of
    INSERT, then 2.8 s of UPDATE and history).
    """
    table = Annotation._meta.db_table
    ids_array = _pg_array(ids)
    user_id = user.pk if user is not None else None
    # (The review queue's mark_reviewed writes and `expected` checks keep the general path.)
    insert_fresh = new_class_id is not None and expected is None and not mark_reviewed
    if not insert_fresh:
        _ensure_annotation_rows(dataset.pk, ids)
    now = timezone.now()
    lock_sql = (
        f"SELECT count(*), count(*) FILTER (WHERE l.label_class_id IS DISTINCT FROM %s::bigint) FROM "
        f"(SELECT label_class_id FROM {table} WHERE image_id = ANY(%s::bigint[]) "
        f"ORDER BY image_id FOR UPDATE) AS l"
    )
    with connection.cursor() as cursor:
        cursor.execute(lock_sql, [new_class_id, ids_array])
        locked, change_count = cursor.fetchone()
        fresh_ids: list[int] = []  # rows this write inserted already carrying the class (history follows)
        if insert_fresh and locked != len(ids):
            # ON CONFLICT alone skips the rows that exist (see _ensure_annotation_rows: no NOT EXISTS).
            cursor.execute(
                f"INSERT INTO {table} (image_id, dataset_id, label_class_id, author_id, source, updated_at, version, "
                f"reviewed_by_id, reviewed_at) "
                f"SELECT t.i, %s, %s, %s, %s, %s, 1, NULL, NULL FROM unnest(%s::bigint[]) AS t(i) "
                f"ON CONFLICT (image_id) DO NOTHING RETURNING image_id",
                [dataset.pk, new_class_id, user_id, source, now, ids_array],
            )
            fresh_ids = sorted(row[0] for row in cursor.fetchall())
            if locked + len(fresh_ids) != len(ids):
                # Another writer inserted some rows meanwhile (ON CONFLICT waited for it and skipped them): lock
                # them too, in order.  Our fresh rows carry the class already, so the count to change leaves them out.
                cursor.execute(lock_sql, [new_class_id, ids_array])
                locked, change_count = cursor.fetchone()
            else:
                locked += len(fresh_ids)
        if locked != len(ids):
            raise RuntimeError(f"bulk label: {locked} annotation rows locked for {len(ids)} images")
        current: dict[int, _Current] = {}
        if expected:
            cursor.execute(
                f"SELECT image_id, id, label_class_id, version FROM {table} WHERE image_id = ANY(%s::bigint[]) "
                f"ORDER BY image_id",
                [_pg_array(i for i in ids if i in expected)],
            )
            current = {image_id: _Current(ann_id, cls, ver) for image_id, ann_id, cls, ver in cursor.fetchall()}
        _raise_if_stale(expected, current, lambda _image_id: new_class_id)
        if mark_reviewed:
            # Images already carrying the class are confirmed by the reviewer too.
            cursor.execute(
                f"UPDATE {table} SET reviewed_by_id = %s, reviewed_at = %s "
                f"WHERE image_id = ANY(%s::bigint[]) AND label_class_id IS NOT DISTINCT FROM %s::bigint",
                [user_id, now, ids_array, new_class_id],
            )
        # The action is numbered only now, with every row locked or inserted: of two writers over the same images
        # the one that applies later has the later action (undo and the activity list go by that order).
        action = _bulk_action(dataset, user, new_class_id, source, change_count + len(fresh_ids))
        if fresh_ids:
            cursor.execute(
                f"INSERT INTO {AnnotationHistory._meta.db_table} (dataset_id, image_id, old_class_id, new_class_id, "
                f"new_version, user_id, action_id, created_at) "
                f"SELECT %s, t.i, NULL, %s, 1, %s, %s, %s FROM unnest(%s::bigint[]) AS t(i)",
                [dataset.pk, new_class_id, user_id, action.pk, now, _pg_array(fresh_ids)],
            )
        changed = {image_id for image_id, cur in current.items() if cur.class_id != new_class_id}
        action.versions = _versions_after(expected, current, changed)
        if not change_count:
            if fresh_ids:
                _after_labels_changed(dataset.pk, action)
            return action
        cursor.execute(
            f"WITH changed AS ("
            f"UPDATE {table} AS a SET label_class_id = %s, version = a.version + 1, author_id = %s, source = %s, "
            f"updated_at = %s, reviewed_by_id = %s, reviewed_at = %s "
            f"FROM {table} AS old WHERE old.id = a.id AND old.image_id = ANY(%s::bigint[]) "
            f"AND old.label_class_id IS DISTINCT FROM %s::bigint "
            f"RETURNING a.image_id, old.label_class_id AS old_class_id, a.version AS new_version) "
            f"INSERT INTO {AnnotationHistory._meta.db_table} (dataset_id, image_id, old_class_id, new_class_id, "
            f"new_version, user_id, action_id, created_at) "
            f"SELECT %s, image_id, old_class_id, %s, new_version, %s, %s, %s FROM changed ORDER BY image_id",
            [
                new_class_id,
                user_id,
                source,
                now,
                user_id if mark_reviewed else None,
                now if mark_reviewed else None,
                ids_array,
                new_class_id,
                dataset.pk,
                new_class_id,
                user_id,
                action.pk,
                now,
            ],
        )
        if cursor.rowcount != change_count:
            raise RuntimeError(f"bulk label: {cursor.rowcount} history rows for {change_count} locked changes")
    _after_labels_changed(dataset.pk, action)
    return action


def _require_map(dataset: Dataset):
    run = current_run(dataset)
    if run is None:
        raise ValidationFailed("This dataset has no map yet: start a run first.")
    return run


def annotations_apply_to_cluster(
    *,
    dataset: Dataset,
    user,
    label_class: LabelClass | None,
    cluster: int,
    exclude_image_ids=(),
    source: str = AnnotationSource.CLUSTER,
    mark_reviewed: bool = False,
    expected=None,
) -> LabelAction:
    _check_class(dataset.pk, label_class)
    _require_map(dataset)
    ids = set(cluster_image_ids(dataset, int(cluster)))
    if not ids:
        raise ValidationFailed(f"The current map has no cluster {cluster}.", field="cluster")
    ids -= set(_clean_image_ids(exclude_image_ids, field="exclude_image_ids"))
    return annotations_apply_bulk(
        dataset=dataset,
        user=user,
        label_class=label_class,
        image_ids=ids,
        source=source,
        mark_reviewed=mark_reviewed,
        expected=expected,
    )


def annotations_apply_polygon(
    *,
    dataset: Dataset,
    user,
    label_class: LabelClass | None,
    polygon,
    exclude_image_ids=(),
    source: str = AnnotationSource.BULK,
    expected=None,
) -> LabelAction:
    _check_class(dataset.pk, label_class)
    points = clean_polygon(polygon)
    _require_map(dataset)
    ids = set(image_ids_in_polygon(dataset, points))
    ids -= set(_clean_image_ids(exclude_image_ids, field="exclude_image_ids"))
    return annotations_apply_bulk(
        dataset=dataset, user=user, label_class=label_class, image_ids=ids, source=source, expected=expected
    )


# --- undo ----------------------------------------------------------------------------------------


@transaction.atomic
def label_action_undo(*, dataset: Dataset, user, action_id: int) -> dict:
    """Restores each image the action changed to its class before the action.

    An image whose annotation changed since (its version is no longer the one
    this action produced) is left alone and reported in `conflicts`. The undo
    is itself a LabelAction (kind undo) with history rows, so it can be
    undone in turn. Only the action's author or a dataset admin may undo it.
    """
    try:
        action_id = int(action_id)
    except (TypeError, ValueError):
        raise NotFound("No such action in this dataset.") from None
    if not 0 < action_id < 2**63:
        raise NotFound("No such action in this dataset.")
    # Undo writes annotations and history of the action's images like any label write.
    dataset_lock_for_labels(dataset.pk)
    # Locking the action row makes a concurrent second undo wait and then see the first.
    action = LabelAction.objects.select_for_update().filter(dataset=dataset, pk=action_id).first()
    if action is None:
        raise NotFound("No such action in this dataset.")
    if action.user_id != user.pk and membership_role(user, dataset.pk) != Role.ADMIN:
        raise PermissionRefused("Only the user who made an action, or a dataset admin, can undo it.")
    previous_undo = LabelAction.objects.filter(undo_of=action).values_list("id", flat=True).first()
    if previous_undo is not None:
        raise Conflict("This action has already been undone.", undo_action_id=previous_undo)

    history = list(
        AnnotationHistory.objects.filter(action=action)
        .order_by("image_id")
        .values_list("image_id", "old_class_id", "new_version")
    )
    ids = [image_id for image_id, _, _ in history]
    current = _lock_annotations(ids)
    by_old_class: dict[int | None, list[tuple[int, _Current]]] = defaultdict(list)
    conflicts: list[int] = []
    for image_id, old_class_id, new_version in history:
        cur = current.get(image_id)
        if cur is None or cur.version != new_version:
            conflicts.append(image_id)
        else:
            by_old_class[old_class_id].append((image_id, cur))
    restored = sum(len(v) for v in by_old_class.values())
    try:
        with transaction.atomic():
            undo = LabelAction.objects.create(
                dataset=dataset,
                user=user,
                kind=LabelAction.Kind.UNDO,
                source=AnnotationSource.UNDO,
                label_class=None,
                image_count=restored,
                undo_of=action,
            )
    except IntegrityError:
        raise Conflict("This action has already been undone.") from None
    now = timezone.now()
    for old_class_id, changes in by_old_class.items():
        _write_changes(
            dataset_id=dataset.pk,
            user=user,
            action=undo,
            changes=changes,
            new_class_id=old_class_id,
            source=AnnotationSource.UNDO,
            mark_reviewed=False,
            now=now,
        )
    if restored:
        _after_labels_changed(dataset.pk, undo)
    # Each restored image's new version, so a page can go on writing them without reloading.
    versions = {str(image_id): cur.version + 1 for changes in by_old_class.values() for image_id, cur in changes}
    return {
        "action_id": action.pk,
        "undo_action_id": undo.pk,
        "restored": restored,
        "conflicts": conflicts,
        "versions": versions,
    }


def last_undoable_action(*, dataset: Dataset, user) -> LabelAction | None:
    """The user's newest action in the dataset that changed labels and is not undone yet."""
    return (
        LabelAction.objects.filter(dataset=dataset, user=user, undone_by_action__isnull=True, image_count__gt=0)
        .exclude(kind=LabelAction.Kind.UNDO)
        .order_by("-id")
        .first()
    )


# --- a different class per image (accepting suggestions) ------------------------------------
# Added by the review engineer: accepting suggestions applies each image's own
# suggested class, yet it is one user action, so it needs one LabelAction that
# spans several classes.  It reuses the locking and history writing above.


@transaction.atomic
def annotations_apply_mapping(
    *,
    dataset: Dataset,
    user,
    class_by_image: dict,
    source: str = AnnotationSource.SUGGESTION,
    mark_reviewed: bool = False,
    expected=None,
    if_versions: dict[int, int] | None = None,
    only_unlabeled: bool = False,
) -> LabelAction:
    """Sets each image's class to class_by_image[image_id] (a LabelClass id) as ONE LabelAction.

    All ids must be images of `dataset` and all classes classes of it, else
    nothing changes.  action.label_class is the class when there is only one,
    else None; action.image_count is the number of images whose class changed.

    The mapping is usually computed from a read made before the rows were
    locked (accepting suggestions), so the locked rows decide what is written:
    with only_unlabeled an image that has a class by now is left alone, and
    with if_versions ({image id: version the mapping was computed on}) so is
    an image changed since.  Those are listed in action.skipped.  `expected`
    (what the client saw) is checked as in annotations_apply_bulk: a 409 and
    nothing changed.
    """
    try:
        mapping = {int(i): int(c) for i, c in class_by_image.items()}
    except (TypeError, ValueError, AttributeError):
        raise ValidationFailed("class_by_image must map image ids to class ids.", field="class_by_image") from None
    ids = _clean_image_ids(mapping.keys())
    class_ids = set(mapping.values())
    known = set(LabelClass.objects.filter(dataset=dataset, id__in=class_ids).values_list("id", flat=True))
    if known != class_ids:
        raise ValidationFailed("Some classes are not classes of this dataset; nothing was changed.", field="class")
    expected = clean_expected(expected)
    images_check_in_dataset(dataset_id=dataset.pk, image_ids=ids)
    _ensure_annotation_rows(dataset.pk, ids)
    current = _lock_annotations(ids)
    _raise_if_stale(expected, current, mapping.__getitem__)
    by_class: dict[int, list[tuple[int, _Current]]] = defaultdict(list)
    skipped: list[int] = []
    for image_id in ids:
        cur = current[image_id]
        if cur.class_id == mapping[image_id]:
            continue
        moved_on = if_versions is not None and image_id in if_versions and cur.version != if_versions[image_id]
        if (only_unlabeled and cur.class_id is not None) or moved_on:
            skipped.append(image_id)
            continue
        by_class[mapping[image_id]].append((image_id, cur))
    now = timezone.now()
    if mark_reviewed:
        same = [current[i].annotation_id for i in ids if current[i].class_id == mapping[i]]
        for chunk in chunks(same):
            Annotation.objects.filter(id__in=chunk).update(reviewed_by=user, reviewed_at=now)
    changed = sum(len(v) for v in by_class.values())
    action = LabelAction.objects.create(
        dataset=dataset,
        user=user,
        kind=LabelAction.Kind.SET,
        source=source,
        label_class_id=next(iter(class_ids)) if len(class_ids) == 1 else None,
        image_count=changed,
    )
    action.skipped = skipped
    action.versions = _versions_after(
        expected, current, {image_id for changes in by_class.values() for image_id, _ in changes}
    )
    for class_id, changes in by_class.items():
        _write_changes(
            dataset_id=dataset.pk,
            user=user,
            action=action,
            changes=changes,
            new_class_id=class_id,
            source=source,
            mark_reviewed=mark_reviewed,
            now=now,
        )
    if changed:
        _after_labels_changed(dataset.pk, action)
    return action


@transaction.atomic
def annotations_fill_unlabeled(
    *,
    dataset: Dataset,
    user,
    image_ids,
    label_class: LabelClass,
    action: LabelAction,
    source: str = AnnotationSource.IMPORT,
) -> int:
    """Gives `label_class` to those of `image_ids` that have no class yet, under an existing `action`.

    For imports, which add to one action per class across many batches and never
    overwrite a class someone gave. Returns how many images were labeled.
    """
    if label_class.dataset_id != dataset.pk or action.dataset_id != dataset.pk:
        raise ValidationFailed("The class and the action must belong to this dataset.", field="class")
    ids = _clean_image_ids(image_ids)
    images_check_in_dataset(dataset_id=dataset.pk, image_ids=ids)
    _ensure_annotation_rows(dataset.pk, ids)
    current = _lock_annotations(ids)
    changes = [(image_id, current[image_id]) for image_id in ids if current[image_id].class_id is None]
    if not changes:
        return 0
    _write_changes(
        dataset_id=dataset.pk,
        user=user,
        action=action,
        changes=changes,
        new_class_id=label_class.pk,
        source=source,
        mark_reviewed=False,
        now=timezone.now(),
    )
    LabelAction.objects.filter(pk=action.pk).update(image_count=F("image_count") + len(changes))
    _after_labels_changed(dataset.pk, action)
    return len(changes)
