"""Start a training run for a dataset from the shell, optionally waiting with a progress bar.

    manage.py start_run DATASET [--epochs 10] [--code-size 10] [--layout tsne] [--param key=value ...] [--wait]

DATASET is a dataset id or its exact name.
"""
import time

from django.core.management.base import BaseCommand, CommandError

from embeddings.models import RunStatus, TrainingRun
from embeddings.services import training_run_cancel, training_run_start
from embeddings.services.params import PARAMS
from labeling.errors import ServiceError
from labeling.models import Dataset

FINISHED = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}


class Command(BaseCommand):
    help = "Queue a training run (autoencoder, map, clusters) for a dataset."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="dataset id or name")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--code-size", type=int, dest="code_size")
        parser.add_argument("--layout", choices=["tsne", "umap"], dest="layout_method")
        parser.add_argument("--n-clusters", type=int, dest="n_clusters")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                            help=f"any run parameter: {', '.join(PARAMS)}")
        parser.add_argument("--wait", action="store_true", help="follow the run with a progress bar until it ends")

    def handle(self, *args, **options):
        dataset = self._dataset(options["dataset"])
        params = {k: options[k] for k in ("epochs", "code_size", "layout_method", "n_clusters", "seed")
                  if options.get(k) is not None}
        for item in options["param"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--param needs KEY=VALUE, got {item!r}")
            params[key.strip()] = value.strip()
        try:
            run = training_run_start(dataset=dataset, user=None, params=params)
        except ServiceError as exc:
            raise CommandError(f"{exc.message} {exc.details or ''}".strip())
        self.stdout.write(f"run {run.pk} queued for dataset {dataset.pk} ({dataset.name})")
        if options["wait"]:
            run = self._follow(run)
            if run.status != RunStatus.SUCCEEDED:
                raise CommandError(f"run {run.pk} {run.status}: {run.error.splitlines()[0] if run.error else ''}")
            self.stdout.write(self.style.SUCCESS(
                f"run {run.pk} succeeded: {run.image_count} images, {run.cluster_count} clusters, "
                f"{run.metrics.get('total_seconds')} s"))

    def _dataset(self, ref: str) -> Dataset:
        found = Dataset.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
        found = found or Dataset.objects.filter(name=ref).first()
        if found is None:
            raise CommandError(f"no dataset {ref!r}")
        return found

    def _follow(self, run: TrainingRun) -> TrainingRun:
        from tqdm import tqdm

        from embeddings.selectors import run_status

        bar = tqdm(total=1000, unit="‰", bar_format="{desc} {bar} {percentage:3.0f}% [{elapsed}]")
        try:
            while True:
                status = run_status(TrainingRun.objects.get(pk=run.pk))
                bar.set_description_str(f"run {run.pk} {status['status']}:{status['stage']}")
                bar.n = int(status["progress"] * 1000)
                bar.refresh()
                if status["status"] in FINISHED:
                    break
                time.sleep(1.0)
        except KeyboardInterrupt:
            training_run_cancel(run=TrainingRun.objects.get(pk=run.pk), user=None)
            self.stderr.write(f"cancel requested for run {run.pk}")
        finally:
            bar.close()
        return TrainingRun.objects.get(pk=run.pk)
