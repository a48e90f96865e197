"""seed_demo: the handwritten-digits demo dataset and a demo admin, ready to label."""

import os
import secrets
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from PIL import Image as PILImage
from sklearn.datasets import load_digits
from tqdm import tqdm

from core.errors import ServiceError
from embeddings.models import RunStatus, TrainingRun
from embeddings.services import training_run_start
from labeling.models import Dataset, LabelClass, Membership, Role
from labeling.palette import RETIRED_GRAYS
from labeling.services.images import CLASS_COLORS, images_ingest_path

DEMO_DATASET = "Handwritten digits (demo)"
DEMO_DESCRIPTION = (
    "scikit-learn's 1,797 handwritten digits (8x8 px, upscaled to 32x32). "
    "Imported without labels so they can be labeled on the map; the true digit "
    "is the name of the folder each file came from."
)
IMAGE_SIZE = 32


def write_digit_pngs(folder: Path, limit: int | None = None) -> int:
    """Write load_digits() as grayscale PNGs in folder/<digit>/digit_<i>.png; returns how many."""
    digits = load_digits()
    count = len(digits.images) if limit is None else min(limit, len(digits.images))
    for i in range(count):
        target = folder / str(int(digits.target[i])) / f"digit_{i:04d}.png"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)  # values 0..16 -> 0..255
        img = PILImage.fromarray(pixels).resize((IMAGE_SIZE, IMAGE_SIZE), PILImage.Resampling.BICUBIC)
        tmp = target.with_suffix(".tmp")
        img.save(tmp, "PNG")
        os.replace(tmp, target)  # a killed run never leaves half a PNG behind
    return count


class Command(BaseCommand):
    help = (
        "Create the demo dataset 'Handwritten digits (demo)' from scikit-learn's bundled digits, "
        "with classes 0-9 and a demo admin. Safe to run again: it reuses the dataset and user."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", help="the demo admin's password (default: generated once and kept)")
        parser.add_argument("--with-labels", action="store_true", help="also label every image with its true digit")
        parser.add_argument("--limit", type=int, help="import only the first N digits (for tests)")
        parser.add_argument(
            "--start-run",
            action="store_true",
            help="start a training run when the import is done, unless the demo has one already",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        var_dir = Path(settings.VAR_DIR)
        folder = var_dir / "demo" / "digits"
        count = write_digit_pngs(folder, options["limit"])
        user, password = self._demo_user(options["username"], options["password"], var_dir)
        dataset = self._dataset(user)

        progress = bar = None
        if not options["no_progress"]:
            bar = tqdm(total=count, unit="img", desc="importing demo digits", file=self.stderr._out)

            def progress(done, total):
                bar.total = total
                bar.update(done - bar.n)

        try:
            if options["limit"] is None:
                report = images_ingest_path(
                    dataset=dataset,
                    user=user,
                    path=folder,
                    classes_from_folders=options["with_labels"],
                    on_progress=progress,
                )
            else:
                report = self._ingest_first(dataset, user, folder, options["limit"], options["with_labels"], progress)
        finally:
            if bar is not None:
                bar.close()
        self.stdout.write(f"Demo dataset {dataset.name!r} (id {dataset.pk}): {report.summary()}.")
        if report.rejected:
            raise CommandError(f"{len(report.rejected)} demo image(s) were rejected: {report.rejected[:3]}")

        if options["start_run"]:
            self._start_run(dataset, user)

        self.stdout.write(self.style.SUCCESS("Demo login:"))
        self.stdout.write(f"  username: {user.get_username()}")
        self.stdout.write(f"  password: {password}")

    # --- pieces ---------------------------------------------------------------------------------

    def _demo_user(self, username: str, password: str | None, var_dir: Path):
        """The demo admin; a generated password is kept in VAR_DIR so later runs can print it again."""
        saved = var_dir / "demo" / f"login-{username}.txt"
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if password is None and user is not None and saved.exists() and user.check_password(saved.read_text().strip()):
            return user, saved.read_text().strip()
        if password is None:
            password = secrets.token_urlsafe(12)
            saved.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
        if user is None:
            user = User.objects.create_superuser(username=username, email="", password=password)
        else:
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["password", "is_staff", "is_superuser"])
        return user, password

    @transaction.atomic
    def _dataset(self, user) -> Dataset:
        dataset = Dataset.objects.filter(name=DEMO_DATASET).order_by("id").first()
        if dataset is None:
            dataset = Dataset.objects.create(name=DEMO_DATASET, description=DEMO_DESCRIPTION, created_by=user)
        membership = Membership.objects.filter(dataset=dataset, user=user).first()
        if membership is None:
            Membership.objects.create(dataset=dataset, user=user, role=Role.ADMIN)
        elif membership.role != Role.ADMIN:
            membership.role = Role.ADMIN
            membership.save(update_fields=["role"])
        for digit in range(10):
            name = str(digit)
            label_class = LabelClass.objects.filter(dataset=dataset, name=name).first()
            if label_class is None:
                taken = LabelClass.objects.filter(dataset=dataset, shortcut=name).exists()
                LabelClass.objects.create(
                    dataset=dataset, name=name, color=CLASS_COLORS[digit], shortcut="" if taken else name
                )
            elif label_class.color.lower() in RETIRED_GRAYS:
                # Seeded by an older version: its gray looked like the map's unlabeled points.
                label_class.color = CLASS_COLORS[digit]
                label_class.save(update_fields=["color"])
        return dataset

    def _ingest_first(self, dataset, user, folder: Path, limit: int, with_labels: bool, progress):
        """Ingest only the first `limit` digits (they may sit in any class folder)."""
        names = {f"digit_{i:04d}.png" for i in range(limit)}
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            for path in folder.glob("*/digit_*.png"):
                if path.name in names:
                    (Path(tmp) / path.parent.name).mkdir(exist_ok=True)
                    os.link(path, Path(tmp) / path.parent.name / path.name)
            return images_ingest_path(
                dataset=dataset, user=user, path=tmp, classes_from_folders=with_labels, on_progress=progress
            )

    def _start_run(self, dataset, user):
        # Once: a demo that already has a map (or a run on its way) is not retrained at every start.
        existing = (
            TrainingRun.objects.filter(
                dataset=dataset, status__in=[RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED]
            )
            .order_by("-id")
            .first()
        )
        if existing is not None:
            self.stdout.write(f"Training run {existing.pk} is {existing.status}; no new run started.")
            return
        try:
            run = training_run_start(dataset=dataset, user=user, params={})
        except ServiceError as exc:
            self.stderr.write(f"No run started: {exc.message}")
            return
        self.stdout.write(f"Training run {run.pk} started ({run.status}).")
