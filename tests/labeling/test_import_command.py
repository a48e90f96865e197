"""import_images, seed_demo and cleanup_orphan_media, run as a user would."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from ingest_files import image_bytes, row_names, storage_names

from labeling.models import Annotation, Dataset, Image, LabelClass, Membership

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pets"
    for cls, seeds in {"cat": (1, 2, 3), "dog": (4, 5)}.items():
        (root / cls).mkdir(parents=True)
        for seed in seeds:
            (root / cls / f"{cls}{seed}.png").write_bytes(image_bytes(size=(16, 16), seed=seed))
    (root / "loose.jpg").write_bytes(image_bytes("JPEG", size=(16, 16), seed=9))
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(image_bytes(size=(16, 16), seed=10))
    (root / "cat" / "copy.png").write_bytes(image_bytes(size=(16, 16), seed=1))
    return root


def test_import_folder_by_dataset_name(admin_dataset, folder):
    dataset, admin = admin_dataset
    out, err = run("import_images", "Ingest", str(folder), "--user", admin.username)
    assert "6 stored, 2 skipped, 1 rejected" in out
    assert "notes.txt: is not a supported image" in out
    assert "cat/copy.png: duplicate of cat/cat1.png in this upload" in out
    assert ".hidden.png: hidden file" in out
    assert "img" in err  # the tqdm progress bar
    assert Image.objects.filter(dataset=dataset, uploaded_by=admin).count() == 6
    assert not LabelClass.objects.filter(dataset=dataset).exists()
    assert storage_names(dataset.pk) == row_names(dataset.pk)
    # Idempotent: everything is a duplicate the second time.
    out, _ = run("import_images", str(dataset.pk), str(folder), "--no-progress")
    assert "0 stored, 8 skipped, 1 rejected" in out


def test_import_with_classes_from_folders(admin_dataset, folder):
    dataset, admin = admin_dataset
    out, _ = run(
        "import_images",
        str(dataset.pk),
        str(folder),
        "--classes-from-folders",
        "--no-progress",
        "--user",
        admin.username,
    )
    assert "5 labeled from folders" in out
    classes = {c.name: c for c in LabelClass.objects.filter(dataset=dataset)}
    assert set(classes) == {"cat", "dog"} and classes["cat"].color != classes["dog"].color
    assert Annotation.objects.filter(label_class=classes["cat"], source="import", author=admin).count() == 3
    assert Annotation.objects.filter(label_class=classes["dog"]).count() == 2
    assert not Annotation.objects.filter(image__original_name="loose.jpg").exists()


def test_import_zip(admin_dataset, tmp_path):
    import zipfile

    dataset, _ = admin_dataset
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.png", image_bytes(seed=1))
        zf.writestr("../evil.png", image_bytes(seed=2))
    out, _ = run("import_images", str(dataset.pk), str(path), "--no-progress")
    assert "1 stored, 0 skipped, 1 rejected" in out
    assert "zip-slip" in out


def test_import_errors(admin_dataset, tmp_path):
    dataset, _ = admin_dataset
    with pytest.raises(CommandError, match="No dataset"):
        run("import_images", "no such dataset", str(tmp_path))
    with pytest.raises(CommandError, match="No user"):
        run("import_images", str(dataset.pk), str(tmp_path), "--user", "ghost")
    with pytest.raises(CommandError, match="does not exist"):
        run("import_images", str(dataset.pk), str(tmp_path / "missing"))


def test_seed_demo_is_idempotent_and_can_add_labels(fresh_media, settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    out, _ = run("seed_demo", "--limit", "30", "--no-progress")
    dataset = Dataset.objects.get(name="Handwritten digits (demo)")
    assert "30 stored, 0 skipped, 0 rejected" in out
    password = out.split("password: ")[1].split()[0]
    user = get_user_model().objects.get(username="demo")
    assert user.check_password(password) and user.is_superuser
    assert Membership.objects.get(dataset=dataset, user=user).role == "admin"
    classes = list(LabelClass.objects.filter(dataset=dataset).order_by("name"))
    assert [(c.name, c.shortcut) for c in classes] == [(str(d), str(d)) for d in range(10)]
    assert len({c.color for c in classes}) == 10
    assert not Annotation.objects.filter(dataset=dataset).exists()  # for labeling
    image = Image.objects.filter(dataset=dataset).first()
    assert (image.width, image.height, image.format, image.mode) == (32, 32, "PNG", "L")
    assert (settings.VAR_DIR / "demo" / "digits").is_dir()

    out, _ = run("seed_demo", "--limit", "30", "--no-progress", "--with-labels")
    assert "0 stored, 30 skipped, 0 rejected, 30 labeled from folders" in out
    assert out.split("password: ")[1].split()[0] == password  # same login, printed again
    assert Dataset.objects.filter(name="Handwritten digits (demo)").count() == 1
    assert LabelClass.objects.filter(dataset=dataset).count() == 10
    from sklearn.datasets import load_digits

    truth = load_digits().target
    for annotation in Annotation.objects.filter(dataset=dataset).select_related("image", "label_class"):
        index = int(annotation.image.original_name.split("_")[1].split(".")[0])
        assert annotation.label_class.name == str(truth[index])


def test_seed_demo_starts_one_run_only(fresh_media, settings, tmp_path):
    from embeddings.models import RunStatus, TrainingRun

    settings.VAR_DIR = tmp_path / "var"
    out, _ = run("seed_demo", "--limit", "30", "--no-progress", "--start-run")
    dataset = Dataset.objects.get(name="Handwritten digits (demo)")
    run_row = TrainingRun.objects.get(dataset=dataset)
    assert run_row.status == RunStatus.QUEUED and f"Training run {run_row.pk} started" in out
    out, _ = run("seed_demo", "--limit", "30", "--no-progress", "--start-run")
    assert TrainingRun.objects.filter(dataset=dataset).count() == 1
    assert f"Training run {run_row.pk} is queued; no new run started." in out


def test_seed_demo_with_a_given_password(fresh_media, settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    out, _ = run("seed_demo", "--limit", "3", "--no-progress", "--username", "alice", "--password", "s3cret-demo-pw")
    assert "username: alice" in out and "password: s3cret-demo-pw" in out
    assert get_user_model().objects.get(username="alice").check_password("s3cret-demo-pw")


def test_cleanup_orphan_media_command(admin_dataset):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    dataset, _ = admin_dataset
    name = default_storage.save(f"datasets/{dataset.pk}/images/aa/orphan.png", ContentFile(b"x"))
    out, _ = run("cleanup_orphan_media")
    assert "0 orphaned file(s) removed" in out
    out, _ = run("cleanup_orphan_media", "--dataset", str(dataset.pk), "--min-age", "0")
    assert f"removed {name}" in out and not default_storage.exists(name)
