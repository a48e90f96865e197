"""One declaration of the run parameters (embeddings/ml/run_params.py): the ML configs' defaults, the
README's table, the training page's form, the API and the CLI all agree with it."""

import re
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from core.errors import ValidationFailed
from embeddings.api.serializers import RunStartSerializer
from embeddings.management.commands.start_run import Command as StartRunCommand
from embeddings.ml.config import ClusterConfig, LayoutConfig, TrainConfig
from embeddings.ml.run_params import RUN_PARAMS, markdown_table, run_param_defaults
from embeddings.models import TrainingRun
from embeddings.services.params import cluster_config, layout_config, run_params_validate, train_config
from tests.factories import bulk_images

README = Path(__file__).resolve().parents[2] / "README.md"
CONFIGS = {"train": TrainConfig(), "layout": LayoutConfig(), "cluster": ClusterConfig()}


def test_the_measured_defaults_are_the_ml_configs_own():
    assert {
        "epochs": None,
        "code_size": 32,
        "batch_size": 128,
        "learning_rate": 0.003,
    }.items() <= run_param_defaults().items()
    for spec in RUN_PARAMS:
        if spec.config:
            config, field = spec.config.split(".")
            assert getattr(CONFIGS[config], field) == spec.default, spec.name
    # What the worker builds from a run started with no parameters is the dataclasses' defaults.
    params = run_params_validate({})
    assert params == run_param_defaults()
    train = train_config(params, input_size=28, channels=1)
    for field in (
        "epochs",
        "batch_size",
        "learning_rate",
        "code_size",
        "depth",
        "base_channels",
        "patience",
        "min_delta",
        "noise_std",
        "max_shift",
        "seed",
        "batch_norm",
        "lr_schedule",
        "loss",
    ):
        assert getattr(train, field) == getattr(CONFIGS["train"], field), field
    layout = layout_config(params, image_count=10_000)
    assert (layout.method, layout.perplexity, layout.n_iter) == ("tsne", 30.0, LayoutConfig().n_iter)
    cluster = cluster_config(params, image_count=10_000)
    assert (cluster.method, cluster.n_clusters) == (ClusterConfig().method, ClusterConfig().n_clusters)


def test_the_declaration_is_pure_python():
    import subprocess
    import sys

    probe = (
        "import sys, embeddings.ml.run_params; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'torch', 'rest_framework')); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=README.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_readme_table_is_the_declaration():
    text = README.read_text()
    found = re.search(r"<!-- run-params:start[^>]*-->\n(.*?)\n<!-- run-params:end -->", text, re.S)
    assert found, "README.md has no run-params table between its markers"
    assert found.group(1) == markdown_table(), (
        "README.md's run parameter table differs from embeddings/ml/run_params.py; paste the output of "
        "`python -c 'from embeddings.ml.run_params import markdown_table; print(markdown_table())'`"
    )


class _FormFields(HTMLParser):
    """name -> {value, min, max, placeholder} of the start-run form's inputs and selects."""

    def __init__(self):
        super().__init__()
        self.fields = {}
        self._select = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs
        elif tag == "select":
            self._select = attrs["name"]
            self.fields[self._select] = {**attrs, "options": []}
        elif tag == "option" and self._select:
            self.fields[self._select]["options"].append(attrs["value"])
            if "selected" in attrs:
                self.fields[self._select]["value"] = attrs["value"]

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


@pytest.fixture
def team(make_user, make_dataset):
    admin, annotator = make_user("alice"), make_user("anna")
    dataset = make_dataset("Digits", admin=admin, members={annotator: "annotator"})
    bulk_images(dataset, 12)
    return dataset, admin


def _as_number(text):
    return None if text in (None, "") else float(text)


def test_the_form_renders_every_declared_parameter_with_its_default_and_range(client, team):
    dataset, admin = team
    client.force_login(admin)
    html = client.get(f"/datasets/{dataset.pk}/runs/").content.decode()
    start = html.index('id="start-run-form"')
    form = html[start : html.index("</form>", start)]
    parser = _FormFields()
    parser.feed(form)
    assert set(parser.fields) == {spec.name for spec in RUN_PARAMS}
    for spec in RUN_PARAMS:
        field = parser.fields[spec.name]
        value = field.get("value", "")
        if spec.default is None:
            # "auto" (or what empty means), not a made-up number.
            assert value == "", spec.name
            if "options" in field:
                assert f'<option value="" selected>{spec.empty}</option>' in form, spec.name
            else:
                assert field.get("placeholder") == spec.empty, spec.name
        elif spec.kind is str:
            assert value == spec.default, spec.name
        else:
            assert float(value) == spec.default, spec.name
        if spec.choices is not None:
            assert [o for o in field["options"] if o] == [str(c) for c in spec.choices], spec.name
        elif spec.name == "backbone":
            # A menu of the dataset's registered backbones (none here), not an id to type.
            assert [o for o in field["options"] if o] == [], spec.name
        else:
            assert (_as_number(field.get("min")), _as_number(field.get("max"))) == (spec.low, spec.high), spec.name
    # The measured defaults, not the old 10 / 256 / 0.001.
    assert (
        parser.fields["code_size"]["value"],
        parser.fields["batch_size"]["value"],
        parser.fields["learning_rate"]["value"],
    ) == ("32", "128", "0.003")


# --- the API and the CLI accept the same set ------------------------------------------------------------


def _probe_values(spec):
    if spec.choices is not None:
        return [*spec.choices, "bogus"] + ([None] if spec.nullable else [])
    step = 1 if spec.kind is int else spec.high * 1e-3
    values = [spec.low, spec.high, spec.low - step, spec.high + step]
    if spec.kind is int:
        values.append(spec.low + 0.5)
    return values + [None]


def _service_accepts(name, value) -> bool:
    try:
        run_params_validate({name: value})
    except ValidationFailed:
        return False
    return True


def _api_accepts(name, value) -> bool:
    return RunStartSerializer(data={name: value}).is_valid()


def _cli_accepts(name, value) -> bool:
    parser = StartRunCommand().create_parser("manage.py", "start_run")
    flag = f"--{name.replace('_', '-')}"
    try:
        options = vars(parser.parse_args(["Digits", flag, "" if value is None else str(value)]))
    except CommandError:
        return False
    return _service_accepts(name, options[name])


@pytest.mark.parametrize("spec", RUN_PARAMS, ids=lambda spec: spec.name)
def test_the_api_and_the_cli_accept_and_refuse_the_same_values(spec):
    for value in _probe_values(spec):
        expected = _service_accepts(spec.name, value)
        assert _api_accepts(spec.name, value) == expected, (spec.name, value)
        assert _cli_accepts(spec.name, value) == expected, (spec.name, value)


def test_tsne_iterations_gmm_and_the_largest_cluster_count_start_a_run_by_api_and_cli(team, settings):
    dataset, admin = team
    n_clusters = max(spec.high for spec in RUN_PARAMS if spec.name == "n_clusters")
    bulk_images(dataset, int(n_clusters))
    body = {"tsne_iterations": 60, "cluster_method": "gmm", "n_clusters": int(n_clusters)}
    client = APIClient()
    client.force_authenticate(admin)
    url = reverse("run-list", kwargs={"dataset_id": dataset.pk})
    assert client.post(url, {**body, "n_clusters": int(n_clusters) + 1}, format="json").status_code == 400
    response = client.post(url, body, format="json")
    assert response.status_code == 202, response.json()
    by_api = TrainingRun.objects.get(pk=response.json()["id"])
    assert {k: by_api.params[k] for k in body} == body
    TrainingRun.objects.filter(pk=by_api.pk).update(status="cancelled")

    with pytest.raises(CommandError):
        call_command("start_run", dataset.name, "--n-clusters", str(int(n_clusters) + 1), stdout=StringIO())
    call_command(
        "start_run",
        dataset.name,
        "--tsne-iterations",
        "60",
        "--cluster-method",
        "gmm",
        "--n-clusters",
        str(int(n_clusters)),
        stdout=StringIO(),
    )
    by_cli = TrainingRun.objects.exclude(pk=by_api.pk).get(dataset=dataset)
    assert by_cli.params == by_api.params
