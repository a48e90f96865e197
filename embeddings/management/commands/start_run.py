"""Start a training run for a dataset from the shell, optionally waiting with a progress bar.

    manage.py start_run DATASET [--epochs 10] [--code-size 32] [--layout-method tsne] [--cluster-method gmm]
                                [--n-clusters auto] [--param key=value ...] [--wait]

DATASET is a dataset id or its exact name.  There is one option per run
parameter (see --help), generated from embeddings/ml/run_params.py.
"""

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.errors import ServiceError
from embeddings.ml.run_params import RUN_PARAMS, RunParam
from embeddings.models import RunStatus, TrainingRun
from embeddings.selectors import run_status
from embeddings.services import training_run_cancel, training_run_check_liveness, training_run_start
from embeddings.services.params import PARAMS
from labeling.models import Dataset

FINISHED = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}
# Short spellings kept from earlier versions of the command.
ALIASES = {"--layout": "layout_method"}
UNSET = object()  # an option not given (None is a value: "auto" or "off")


def _cli_value(spec: RunParam):
    """argparse type of a run parameter: its kind, and '' / the word for "empty" meaning None when allowed."""

    def convert(text: str):
        if spec.nullable and text.strip().lower() in {"", "none", spec.empty}:
            return None
        return spec.kind(text) if spec.kind is not str else text

    convert.__name__ = spec.type_name  # argparse names it in "invalid integer value: 'x'"
    return convert


class Command(BaseCommand):
    help = "Queue a training run (autoencoder, map, clusters) for a dataset."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="dataset id or name")
        # One option per declared run parameter (embeddings/ml/run_params.py): the
        # command accepts what the API and the training page do, with the same help.
        for spec in RUN_PARAMS:
            flags = [f"--{spec.name.replace('_', '-')}"] + [
                alias for alias, name in ALIASES.items() if name == spec.name
            ]
            default = spec.describe_default()
            help_text = f"{spec.help} Default: {default}." if default else spec.help
            if spec.choices is None and spec.low is not None:
                help_text += f" Range {spec.describe_range()}."
            elif spec.choices is not None:
                help_text += f" One of {spec.describe_range()}."
            if spec.nullable:
                help_text += f" '' or '{spec.empty}' for {spec.empty}."
            # Values are checked by the service, as the API's are, so both say the same thing.
            parser.add_argument(
                *flags,
                dest=spec.name,
                metavar=spec.name.upper(),
                type=_cli_value(spec),
                default=UNSET,
                help=help_text.replace("%", "%%"),
            )
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"any run parameter by name: {', '.join(PARAMS)}",
        )
        parser.add_argument("--wait", action="store_true", help="follow the run with a progress bar until it ends")

    def handle(self, *args, **options):
        dataset = self._dataset(options["dataset"])
        params = {spec.name: options[spec.name] for spec in RUN_PARAMS if options.get(spec.name, UNSET) is not UNSET}
        for item in options["param"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--param needs KEY=VALUE, got {item!r}")
            params[key.strip()] = value.strip()
        try:
            run = training_run_start(dataset=dataset, user=None, params=params)
        except ServiceError as exc:
            raise CommandError(f"{exc.message} {exc.details or ''}".strip()) from None
        self.stdout.write(f"run {run.pk} queued for dataset {dataset.pk} ({dataset.name})")
        if options["wait"]:
            run = self._follow(run)
            if run.status != RunStatus.SUCCEEDED:
                raise CommandError(f"run {run.pk} {run.status}: {run.error.splitlines()[0] if run.error else ''}")
            self.stdout.write(
                self.style.SUCCESS(
                    f"run {run.pk} succeeded: {run.image_count} images, {run.cluster_count} clusters, "
                    f"{run.metrics.get('total_seconds')} s"
                )
            )

    def _dataset(self, ref: str) -> Dataset:
        found = Dataset.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
        found = found or Dataset.objects.filter(name=ref).first()
        if found is None:
            raise CommandError(f"no dataset {ref!r}")
        return found

    def _follow(self, run: TrainingRun) -> TrainingRun:
        bar = tqdm(total=1000, unit="‰", bar_format="{desc} {bar} {percentage:3.0f}% [{elapsed}]")
        try:
            while True:
                status = run_status(training_run_check_liveness(run=TrainingRun.objects.get(pk=run.pk)))
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
