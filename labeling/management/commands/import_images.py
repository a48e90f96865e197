"""import_images DATASET PATH: store the images of a folder or a .zip archive in a dataset."""

from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceError
from labeling.management.importing import find_user, progress_bar, write_entries
from labeling.models import Dataset
from labeling.services.images import images_ingest_path


def find_dataset(value: str) -> Dataset:
    """A dataset by id or by exact name (an ambiguous name is an error)."""
    if value.isdigit():
        dataset = Dataset.objects.filter(pk=int(value)).first()
        if dataset is not None:
            return dataset
    matches = list(Dataset.objects.filter(name=value)[:2])
    if not matches:
        raise CommandError(f"No dataset with id or name {value!r}.")
    if len(matches) > 1:
        raise CommandError(f"Several datasets are named {value!r}; give its id instead.")
    return matches[0]


class Command(BaseCommand):
    help = (
        "Import the images of a folder (recursively) or a .zip archive into a dataset. "
        "Each file is verified like an upload; duplicates are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="dataset id or name")
        parser.add_argument("path", help="a folder or a .zip archive (or one image file)")
        parser.add_argument(
            "--classes-from-folders",
            action="store_true",
            help="use each image's first-level sub-folder name as its class (classes are created as needed)",
        )
        parser.add_argument("--user", help="username recorded as the uploader (and author of imported labels)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument("--show", type=int, default=20, help="list at most this many skipped/rejected files")

    def handle(self, *args, **options):
        dataset = find_dataset(options["dataset"])
        user = find_user(options["user"])
        try:
            with progress_bar(
                self, show=not options["no_progress"], unit="img", desc=f"importing into {dataset.name}"
            ) as progress:
                report = images_ingest_path(
                    dataset=dataset,
                    user=user,
                    path=options["path"],
                    classes_from_folders=options["classes_from_folders"],
                    on_progress=progress,
                )
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        shown = options["show"]
        for kind, entries, key in (("skipped", report.skipped, "reason"), ("rejected", report.rejected, "error")):
            lines = [f"{entry['name']}: {entry[key]}" for entry in entries]
            write_entries(self.stdout, kind.capitalize(), lines, len(entries), shown)
        style = self.style.SUCCESS if not report.rejected else self.style.WARNING
        self.stdout.write(style(f"Dataset {dataset.name!r} (id {dataset.pk}): {report.summary()}."))
