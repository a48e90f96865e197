"""cleanup_orphan_media: delete stored image files that no image row points to, and run
artifact folders (runs/<dataset>/<run>/) whose run or dataset no longer exists."""

from django.core.management.base import BaseCommand

from embeddings.services.artifacts import run_artifacts_cleanup_orphans
from labeling.management.commands.import_images import find_dataset
from labeling.services.images import images_cleanup_orphans


class Command(BaseCommand):
    help = (
        "Delete image files and thumbnails left in storage without a database row "
        "(e.g. after an ingest process was killed), and run artifact folders under runs/ whose run "
        "or dataset no longer exists. Image files younger than --min-age are kept, "
        "since they may belong to an ingest still running."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", help="only this dataset (id or name); default all")
        parser.add_argument("--min-age", type=float, default=3600, help="seconds a file must be old (default 3600)")

    def handle(self, *args, **options):
        dataset = find_dataset(options["dataset"]) if options["dataset"] else None
        removed = images_cleanup_orphans(dataset=dataset, min_age_seconds=options["min_age"])
        # Run folders (runs/<dataset>/<run>/) whose run or dataset is gone: their
        # model and codes rebuild the images, so they never stay.  No --min-age:
        # a run's row always exists before anything is written under it.
        removed += run_artifacts_cleanup_orphans(dataset_id=dataset.pk if dataset else None)
        for name in removed:
            self.stdout.write(f"removed {name}")
        self.stdout.write(self.style.SUCCESS(f"{len(removed)} orphaned file(s) removed."))
