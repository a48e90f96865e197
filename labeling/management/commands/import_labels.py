"""import_labels DATASET FILE --format csv|coco|labelstudio: label images already in a dataset from a file."""

from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceError
from labeling.management.commands.import_images import find_dataset
from labeling.management.importing import find_user, progress_bar, write_entries
from labeling.services.label_import import IMPORT_FORMATS, labels_import


class Command(BaseCommand):
    help = (
        "Give images already in a dataset the classes a label file names: CSV (name or sha256, class), "
        "COCO classification JSON or a Label Studio JSON export. One undoable action; nothing is changed "
        "unless the whole file applies."
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="dataset id or name")
        parser.add_argument("file", help="the label file")
        parser.add_argument("--format", required=True, choices=IMPORT_FORMATS, help="the file's format")
        parser.add_argument(
            "--create-classes", action="store_true", help="create the classes the file names that the dataset lacks"
        )
        parser.add_argument("--only-unlabeled", action="store_true", help="leave images that have a class alone")
        parser.add_argument("--user", help="username recorded as the author of the labels (and who may undo them)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument("--show", type=int, default=20, help="list at most this many unmatched/ambiguous rows")

    def handle(self, *args, **options):
        dataset = find_dataset(options["dataset"])
        user = find_user(options["user"])
        try:
            with (
                progress_bar(
                    self, show=not options["no_progress"], unit="row", desc=f"matching rows of {dataset.name}"
                ) as progress,
                open(options["file"], "rb") as fh,
            ):
                report = labels_import(
                    dataset=dataset,
                    user=user,
                    file=fh,
                    format=options["format"],
                    create_classes=options["create_classes"],
                    only_unlabeled=options["only_unlabeled"],
                    on_progress=progress,
                )
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc.strerror or exc}.") from None
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        for kind, entries, count in (
            ("unmatched", report.unmatched, report.unmatched_count),
            ("ambiguous", report.ambiguous, report.ambiguous_count),
        ):
            lines = [f"row {e['row']}: {e['sha256'] or e['name'] or '(no name)'}: {e['reason']}" for e in entries]
            write_entries(self.stdout, kind.capitalize(), lines, count, options["show"])
        style = self.style.SUCCESS if not (report.unmatched_count or report.ambiguous_count) else self.style.WARNING
        action = f"; undo with action {report.action_id}" if report.action_id else ""
        self.stdout.write(style(f"Dataset {dataset.name!r} (id {dataset.pk}): {report.summary()}{action}."))
