"""Preparation that streams: preparing decodes only training's sample, embedding reads and decodes the
images a chunk at a time, and images found unreadable while embedding are skipped and listed (or fail
the run beyond the allowed share), as those found while preparing."""

import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from embeddings import storage
from embeddings.ml.inference import embed_images
from embeddings.ml.preprocess import choose_input_spec
from embeddings.ml.training import training_sample
from embeddings.models import ImageEmbedding, RunStage, RunStatus, TrainingRun
from embeddings.services import embedding_chunk_execute, pipeline, run_params_validate, training_run_execute
from embeddings.services.params import train_config
from embeddings.services.pipeline import read_helper_chunk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_factories import FAST_PARAMS, add_kind_images  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

# 30 images, 12 of them trained on: preparing decodes 12, embedding reads all 30 in chunks of 8.
SAMPLED = {**FAST_PARAMS, "tsne_iterations": 60, "max_train_images": 12}
CHUNK = 8


@pytest.fixture
def dataset(make_user, make_dataset, settings):
    settings.SIMLABEL_EMBED_CHUNK_SIZE = CHUNK
    ds = make_dataset("Streamed", admin=make_user())
    add_kind_images(ds, per_kind=10)
    return ds


def queued_run(dataset, **params):
    return TrainingRun.objects.create(dataset=dataset, params=run_params_validate({**SAMPLED, **params}))


@pytest.fixture
def decoded(monkeypatch):
    """The stage each call of the image loader ran in, and how many images it decoded."""
    calls = []
    load = pipeline.load_run_images

    def counting(rows, *args, **kwargs):
        rows = list(rows)
        stage = TrainingRun.objects.order_by("-id").values_list("stage", flat=True).first()
        calls.append((stage, len(rows)))
        return load(rows, *args, **kwargs)

    monkeypatch.setattr(pipeline, "load_run_images", counting)
    return calls


def _not_sampled(dataset, count):
    """`count` images the run's training sample leaves out: only embedding reads them."""
    ids = np.array(list(dataset.images.order_by("id").values_list("id", flat=True)))
    sample = training_sample(len(ids), train_config(run_params_validate(SAMPLED), input_size=16, channels=1))
    return list(dataset.images.filter(pk__in=np.delete(ids, sample).tolist()[:count]).order_by("id"))


def _break(images):
    for image in images:
        default_storage.delete(image.file.name)
        default_storage.save(image.file.name, ContentFile(b"<html>not a png</html>"))


def test_preparing_decodes_the_sample_and_embedding_one_chunk_at_a_time(dataset, decoded):
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    preparing = [n for stage, n in decoded if stage == RunStage.PREPARING]
    embedding = [n for stage, n in decoded if stage == RunStage.EMBEDDING]
    assert preparing == [12]  # the training sample, not the 30 images
    assert embedding == [6, 8, 8, 8]  # chunks last to first; never more than a chunk of pixels
    run.refresh_from_db()
    assert run.metrics["n_images"] == 30 and run.metrics["embedding_chunks"]["count"] == 4
    assert ImageEmbedding.objects.filter(run=run).count() == 30

    # the streamed codes are the stored model's codes of every image, read at once
    ids = storage.read_array(run, storage.IMAGE_IDS)
    rows = list(dataset.images.order_by("id").values_list("id", "file"))
    images, loaded_ids, _ = pipeline.load_run_images(rows, run.input_size, run.channels)
    assert np.array_equal(ids, loaded_ids)
    single, _ = embed_images(storage.read_model(run), images, batch_size=CHUNK)
    assert np.array_equal(storage.read_array(run, storage.CODES), single)


def test_a_helper_chunk_matches_the_streamed_coordinators(dataset):
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, stage=RunStage.EMBEDDING)
    assert embedding_chunk_execute(run_id=run.pk, index=1) == "done"
    codes, _ = read_helper_chunk(run, 1)
    assert np.array_equal(codes, storage.read_array(run, storage.CODES)[8:16])


def test_an_image_found_unreadable_while_embedding_gets_no_code_and_is_listed(dataset, decoded):
    (broken,) = _not_sampled(dataset, 1)
    _break([broken])
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    assert [n for stage, n in decoded if stage == RunStage.PREPARING] == [12]  # found later, while embedding
    run.refresh_from_db()
    assert run.metrics["n_unreadable"] == 1 and run.metrics["n_images"] == 29
    assert run.metrics["unreadable"][0]["id"] == broken.pk
    assert run.metrics["unreadable"][0]["name"] == broken.original_name
    ids = storage.read_array(run, storage.IMAGE_IDS)
    assert len(ids) == 29 and broken.pk not in ids
    assert len(storage.read_array(run, storage.CODES)) == len(storage.read_array(run, storage.LAYOUT)) == 29
    stored = ImageEmbedding.objects.filter(run=run)
    assert stored.count() == 29 and not stored.filter(image=broken).exists()


def test_more_unreadable_images_while_embedding_than_allowed_fail_the_run(dataset):
    broken = _not_sampled(dataset, 2)  # 5 % of 30 images: 1 may be skipped
    _break(broken)
    run = queued_run(dataset)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.stage == RunStage.EMBEDDING
    assert "2 of 30 images could not be read (at most 1 may be skipped)" in run.error
    assert not ImageEmbedding.objects.filter(run=run).exists()


def test_an_image_deleted_while_the_run_reads_is_reported_not_stored(dataset):
    first, second = dataset.images.order_by("id")[:2]
    second_id = second.pk
    second.delete()
    rows = pipeline.image_rows([second_id, first.pk])
    assert rows[0] == (second_id, None) and rows[1][:2] == (first.pk, first.file.name)
    unreadable = []
    read = list(pipeline.read_image_rows(rows, lambda fh: fh.read(4), unreadable))
    assert read[0] == (0, None) and read[1][1] == b"\x89PNG"
    assert unreadable == [{"id": second_id, "name": "", "error": "the image was deleted while the run read it"}]


def test_the_input_spec_counted_by_the_database_is_the_one_of_every_image(dataset):
    from tests.factories import ImageFactory

    dataset.images.filter(pk__in=dataset.images.order_by("id").values("id")[:7]).update(width=40, height=30)
    ImageFactory(dataset=dataset, mode="RGB", width=64, height=48)  # a color image of another size
    rows = list(dataset.images.values_list("width", "height", "mode"))
    expected = choose_input_spec([(w, h) for w, h, _ in rows], [m for *_, m in rows])
    assert pipeline._dataset_input_spec(dataset.pk) == expected
    assert expected[1] == 3


def test_a_sampled_run_decodes_its_labeled_images_too_and_learns_from_them(make_user, make_dataset, decoded):
    from embeddings.ml.config import LABELS_MIN_PER_CLASS, LABELS_MIN_TOTAL
    from labeling.models import Annotation, LabelClass

    ds = make_dataset("Streamed labels", admin=make_user())
    kinds = add_kind_images(ds, per_kind=20)
    per_kind = max(LABELS_MIN_PER_CLASS, -(-LABELS_MIN_TOTAL // 3))
    classes = {kind: LabelClass.objects.create(dataset=ds, name=kind) for kind in set(kinds.values())}
    seen = dict.fromkeys(classes, 0)
    labeled = []
    for image_id, kind in sorted(kinds.items()):
        if seen[kind] < per_kind:
            Annotation.objects.create(dataset=ds, image_id=image_id, label_class=classes[kind])
            seen[kind] += 1
            labeled.append(image_id)
    run = queued_run(ds)
    assert training_run_execute(run_id=run.pk, worker_name="test") == "succeeded"
    ids = np.array(sorted(kinds))
    sample = training_sample(len(ids), train_config(run.params, input_size=16, channels=1))
    union = np.union1d(ids[sample], labeled)
    assert len(union) < len(ids)
    assert [n for stage, n in decoded if stage == RunStage.PREPARING] == [len(union)]
    run.refresh_from_db()
    assert run.metrics["labels_used"] == len(labeled) and run.metrics["n_images"] == len(ids)


class _RowsThatChange:
    """Rows read twice from the database (as ImageRows are): a bucket image deleted between the reads."""

    def __init__(self):
        self.reads = 0

    def __iter__(self):
        self.reads += 1
        if self.reads == 1:
            return iter([(1, ""), (2, ""), (3, "")])
        return iter([(1, ""), (2, None), (3, "")])


def test_bucket_originals_stay_with_their_images_when_one_is_deleted_meanwhile(monkeypatch):
    monkeypatch.setattr(pipeline, "referenced_originals", lambda ids: ((i, f"original {i}".encode()) for i in ids))
    unreadable = []
    values = list(pipeline.read_image_rows(_RowsThatChange(), lambda fh: fh.read(), unreadable))
    assert values == [(0, b"original 1"), (1, None), (2, b"original 3")]
    assert [u["id"] for u in unreadable] == [2] and "deleted" in unreadable[0]["error"]
