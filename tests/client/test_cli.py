"""The `simlabel` command-line client, end to end: the installed command (and `python -m simlabel_client`)
runs as a subprocess with its own HOME against a live test server (pytest-django's live_server, a thread
serving the whole app on the test database), and the database says what the server really did."""

import csv
import io
import json
import os
import socket
import stat
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from labeling.models import Annotation, Image, LabelAction, LabelClass
from tests.factories import PASSWORD, AnnotationFactory, LabelClassFactory, png_bytes

# Installed into the venv by scripts/setup.sh (pip install -e .): the entry point itself is under test.
SIMLABEL = Path(sys.executable).parent / "simlabel"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


def simlabel(*args, home, stdin=None, module=False, env=None, timeout=180):
    """Runs the client like a user would: a fresh process, HOME of its own, none of our SIMLABEL_* settings."""
    command = [sys.executable, "-m", "simlabel_client", *args] if module else [str(SIMLABEL), *args]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SIMLABEL_") and k != "XDG_CONFIG_HOME"}
    environment.update(HOME=str(home), **(env or {}))
    # cwd=home: `python -m simlabel_client` must find the installed package, not the checkout beside it.
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=environment, cwd=home, timeout=timeout
    )


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def failed(result):
    assert result.returncode == 1, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def write_pngs(folder: Path, names_and_seeds) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, seed in names_and_seeds:
        data = png_bytes(size=(12, 10), seed=seed)
        (folder / name).write_bytes(data)
        written[name] = data
    return written


def token_env(live_server, user):
    token, _ = Token.objects.get_or_create(user=user)
    return {"SIMLABEL_URL": live_server.url, "SIMLABEL_TOKEN": token.key}


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def pets(owner, make_dataset):
    return make_dataset("Pets", admin=owner)


def test_the_entry_point_is_installed():
    assert SIMLABEL.is_file(), f"{SIMLABEL} is missing: run scripts/setup.sh (it pip-installs the client)"
    result = subprocess.run([str(SIMLABEL), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "import-labels" in result.stdout


def test_login_list_upload_folder_and_zip_then_export(
    live_server, home, owner, pets, make_user, make_dataset, settings
):
    make_dataset("Someone else's", admin=make_user("stranger"))
    login = ok(simlabel("login", "--url", live_server.url, "--username", "owner", "--password-stdin",
                        home=home, stdin=PASSWORD + "\n"))  # fmt: skip
    config = home / ".config" / "simlabel" / "config.json"
    assert str(config) in login.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    saved = json.loads(config.read_text())
    assert saved["url"] == live_server.url and saved["username"] == "owner"
    assert saved["token"] == Token.objects.get(user=owner).key and saved["expires"]

    listing = ok(simlabel("datasets", home=home)).stdout
    assert [str(pets.pk), "Pets", "admin", "0", "0"] in [line.split() for line in listing.splitlines()]
    assert "Someone else" not in listing

    # A folder (recursive; a text file and hidden files are left out), by the dataset's name, through python -m.
    folder = home / "photos"
    first = write_pngs(folder, [("a.png", 1), ("b.png", 2)])
    first |= write_pngs(folder / "more", [("c.png", 3), ("d.png", 4), ("e.png", 5)])
    (folder / "notes.txt").write_text("not an image")
    write_pngs(folder / ".cache", [("hidden.png", 6)])
    result = ok(simlabel("upload", "Pets", str(folder), "--batch-files", "2", home=home, module=True))
    assert "5 stored, 0 skipped as already there, 0 rejected" in result.stdout
    assert "left out (not an image or .zip)" in result.stderr and "notes.txt" in result.stderr
    assert sorted(Image.objects.filter(dataset=pets).values_list("original_name", flat=True)) == sorted(first)

    # A zip: three new images and one already there (skipped, not an error).
    archive = home / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, seed in [("f.png", 7), ("g.png", 8), ("h.png", 9)]:
            zf.writestr(f"zipped/{name}", png_bytes(size=(12, 10), seed=seed))
        zf.writestr("zipped/a-again.png", first["a.png"])
    result = ok(simlabel("upload", str(pets.pk), str(archive), "-v", home=home))
    assert "3 stored, 1 skipped as already there, 0 rejected" in result.stdout
    assert "skipped batch.zip:zipped/a-again.png: duplicate of image" in result.stdout
    assert Image.objects.filter(dataset=pets).count() == 8

    # More files a request than the server takes (its 413): the client sends halves until they fit.
    settings.SIMLABEL_MAX_FILES_PER_REQUEST = 2
    write_pngs(home / "many", [(f"m{i}.png", 100 + i) for i in range(5)])
    result = ok(simlabel("upload", "Pets", str(home / "many"), "--batch-files", "5", home=home))
    assert "5 stored, 0 skipped as already there, 0 rejected" in result.stdout
    assert Image.objects.filter(dataset=pets).count() == 13
    settings.SIMLABEL_MAX_FILES_PER_REQUEST = 500

    # A broken file: the server's reason per file, exit 1, and the good files of its batch are stored anyway.
    bad = home / "bad"
    write_pngs(bad, [("i.png", 10), ("j.png", 11)])
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    result = failed(simlabel("upload", str(pets.pk), str(bad), home=home))
    assert "rejected broken.png:" in result.stderr
    assert "2 stored, 0 skipped as already there, 1 rejected" in result.stderr
    assert Image.objects.filter(dataset=pets).count() == 15
    assert not Image.objects.filter(original_name="broken.png").exists()

    # Export: labeled images only (unless asked), streamed to the file named.
    cat, dog = LabelClassFactory(dataset=pets, name="cat"), LabelClassFactory(dataset=pets, name="dog")
    images = {image.original_name: image for image in Image.objects.filter(dataset=pets)}
    AnnotationFactory(image=images["a.png"], label_class=cat, author=owner)
    AnnotationFactory(image=images["c.png"], label_class=dog, author=owner)
    out = home / "exports" / "labels.csv"
    out.parent.mkdir()
    result = ok(simlabel("export", "Pets", "--format", "csv", "-o", str(out), home=home))
    assert str(out) in result.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {(row["name"], row["class"]) for row in rows} == {("a.png", "cat"), ("c.png", "dog")}
    assert {row["image_id"] for row in rows} == {str(images["a.png"].pk), str(images["c.png"].pk)}
    assert os.listdir(out.parent) == ["labels.csv"]  # no partial file left beside it

    everything = home / "all.json"
    ok(simlabel("export", str(pets.pk), "-f", "json", "--include-unlabeled", "-o", str(everything), home=home))
    exported = json.loads(everything.read_text())
    records = exported if isinstance(exported, list) else exported.get("images", exported.get("rows"))
    assert len(records) == 15

    # An export the server refuses leaves no file at all.
    missing = home / "nope.csv"
    result = failed(simlabel("export", "Pets", "-f", "pdf", "-o", str(missing), home=home))
    assert "pdf" in result.stderr
    assert not missing.exists() and not list(home.glob(".nope.csv*"))


def test_import_labels_from_a_csv(live_server, home, owner, pets, add_image):
    cat = LabelClassFactory(dataset=pets, name="cat")
    a = add_image(pets, name="a.png")
    b = add_image(pets, name="b.png")
    add_image(pets, name="c.png")
    labels = home / "labels.csv"
    labels.write_text("name,class\na.png,cat\nfolder/b.png,bird\nmissing.png,cat\n")
    env = token_env(live_server, owner)

    # A class the dataset lacks: refused whole, with the hint, and nothing changes.
    result = failed(simlabel("import-labels", "Pets", str(labels), "--format", "csv", home=home, env=env))
    assert "bird" in result.stderr and "--create-classes" in result.stderr
    assert not Annotation.objects.filter(dataset=pets, label_class__isnull=False).exists()

    # With --create-classes: applied as one action; the row that matched nothing is listed and exits 1.
    result = failed(simlabel("import-labels", str(pets.pk), str(labels), "--format", "csv", "--create-classes",
                             home=home, env=env))  # fmt: skip
    action = LabelAction.objects.get(dataset=pets)
    assert "3 rows, 2 matched" in result.stdout and "1 unmatched" in result.stdout
    assert f"Action {action.pk}" in result.stdout and "Classes created: bird" in result.stdout
    assert "missing.png" in result.stderr and "1 row(s) of labels.csv were not applied" in result.stderr
    bird = LabelClass.objects.get(dataset=pets, name="bird")
    assert Annotation.objects.get(image=a).label_class == cat
    assert Annotation.objects.get(image=b).label_class == bird

    # Everything matched: exit 0; --json prints the server's answer.
    labels.write_text("name,class\nc.png,cat\n")
    result = ok(simlabel("import-labels", "Pets", str(labels), "-f", "csv", "--json", home=home, env=env,
                         module=True))  # fmt: skip
    report = json.loads(result.stdout)
    assert report["matched"] == 1 and report["unmatched_count"] == 0 and report["action_id"] is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_errors_are_one_clear_line_and_exit_1(live_server, home, owner, pets, make_user, make_dataset):
    url = live_server.url
    # Wrong password: the server's reason, and no config written.
    result = failed(simlabel("login", "--url", url, "--username", "owner", "--password-stdin", home=home,
                             stdin="wrong\n"))  # fmt: skip
    assert "Unable to sign in with these credentials." in result.stderr
    assert not (home / ".config" / "simlabel" / "config.json").exists()

    # Not logged in at all.
    result = failed(simlabel("datasets", home=home))
    assert "simlabel login" in result.stderr

    # A token the server does not know, from the environment.
    result = failed(simlabel("datasets", home=home, env={"SIMLABEL_URL": url, "SIMLABEL_TOKEN": "0" * 40}))
    assert "Invalid token" in result.stderr and "simlabel login" in result.stderr

    # An expired token says so.
    env = token_env(live_server, owner)
    Token.objects.filter(user=owner).update(created=timezone.now() - timedelta(days=400))
    result = failed(simlabel("datasets", home=home, env=env))
    assert "expired" in result.stderr and "simlabel login" in result.stderr
    Token.objects.filter(user=owner).delete()
    env = token_env(live_server, owner)

    # Unknown datasets: an id nobody has, another user's dataset (the same 404), a name that is not one.
    other = make_dataset("Private", admin=make_user("stranger"))
    for reference in ("999999", str(other.pk)):
        result = failed(simlabel("upload", reference, str(home), home=home, env=env))
        assert f"Dataset {reference}: No such dataset." in result.stderr
    result = failed(simlabel("run", "No such name", home=home, env=env))
    assert "No dataset named 'No such name'" in result.stderr

    # A role too low for the command: the server's message.
    annotator = make_user("anna")
    make_dataset("Shared", admin=make_user("boss"), members={annotator: "annotator"})
    write_pngs(home / "up", [("x.png", 1)])
    result = failed(simlabel("upload", "Shared", str(home / "up"), home=home, env=token_env(live_server, annotator)))
    assert "upload" in result.stderr.lower() or "permission" in result.stderr.lower()
    assert not Image.objects.exists()

    # A run parameter the server does not take: its 400, and no run.
    result = failed(simlabel("run", "Pets", "--param", "epochz=3", home=home, env=env))
    assert "epochz" in result.stderr
    assert not pets.runs.exists()

    # No server there.
    result = failed(simlabel("datasets", home=home, env={**env, "SIMLABEL_URL": f"http://127.0.0.1:{free_port()}"}))
    assert "Cannot reach the server" in result.stderr

    # A command line that does not parse is argparse's exit 2.
    assert simlabel("run", "Pets", "--param", "no-equals-sign", home=home, env=env).returncode == 2


@pytest.mark.worker
@pytest.mark.slow
def test_run_wait_follows_a_run_to_success_then_reports_a_failure(
    live_server, home, owner, make_dataset, celery_worker_process
):
    from embeddings.models import ImageEmbedding, RunStatus, TrainingRun

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "embeddings"))
    from pipeline_factories import FAST_PARAMS, add_kind_images

    kinds = make_dataset("Kinds", admin=owner)
    add_kind_images(kinds, per_kind=20)
    env = token_env(live_server, owner)
    params = [f"{key}={json.dumps(value)}" for key, value in {**FAST_PARAMS, "tsne_iterations": 60}.items()]
    args = [arg for param in params for arg in ("--param", param)]

    result = ok(simlabel("run", "Kinds", *args, "--wait", "--interval", "0.3", home=home, env=env, timeout=300))
    run = TrainingRun.objects.get(dataset=kinds)
    assert run.status == RunStatus.SUCCEEDED and run.params["epochs"] == FAST_PARAMS["epochs"]
    assert ImageEmbedding.objects.filter(run=run).count() == 60
    assert f"Run {run.pk} succeeded: 60 images, 3 clusters." in result.stdout
    assert f"run {run.pk}: succeeded · done" in result.stdout
    assert "100%" in result.stderr  # the progress bar reached the end

    # The same run again, but the images are no longer readable: the worker fails it, the CLI exits 1 with why.
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    for image in kinds.images.all():
        default_storage.delete(image.file.name)
        default_storage.save(image.file.name, ContentFile(b"<html>not a png</html>"))
    result = failed(simlabel("run", str(kinds.pk), *args, "--wait", "--interval", "0.3", home=home, env=env,
                             timeout=300))  # fmt: skip
    second = TrainingRun.objects.filter(dataset=kinds).latest("pk")
    assert second.status == RunStatus.FAILED and second.error
    assert f"Run {second.pk} failed: {second.error}" in result.stderr

    # Without --wait: the run is queued and the command returns at once.
    result = ok(simlabel("run", "Kinds", *args, home=home, env=env))
    third = TrainingRun.objects.filter(dataset=kinds).latest("pk")
    assert third.pk != second.pk and result.stdout.startswith(f"Run {third.pk} ")  # queued, or already running
    assert "succeeded" not in result.stdout and "failed" not in result.stdout
