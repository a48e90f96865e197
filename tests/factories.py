"""factory_boy factories for the suite's rows, and the one map builder on top of them.

Every test package builds its data here (through the fixtures in tests/conftest.py or
directly), so a model change is followed in one place.
"""

import hashlib
import io
from typing import NamedTuple

import factory
import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from factory.django import DjangoModelFactory, Password
from PIL import Image as PILImage

from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
from labeling.models import Annotation, Dataset, Image, LabelClass, Membership

PASSWORD = "pw-Secret-123"


def png_bytes(size=(28, 28), color=None, seed=0, mode="L", fmt="PNG") -> bytes:
    """A real image file whose pixels depend on seed (so files hash differently)."""
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    if color is not None:
        arr[:] = color
    img = PILImage.fromarray(arr[:, :, 0] if channels == 1 else arr, mode=mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def placeholder_webp() -> bytes:
    """A plain gray 28x28 WEBP: enough for pages that load thumbnails."""
    buf = io.BytesIO()
    PILImage.new("L", (28, 28), 128).save(buf, format="WEBP")
    return buf.getvalue()


def store_files(image: Image, content: bytes) -> None:
    """Writes content under the image's file and thumbnail names."""
    for name in (image.file.name, image.thumbnail.name):
        # Names repeat across tests (dataset ids restart); save() would pick another name.
        default_storage.delete(name)
        assert default_storage.save(name, ContentFile(content)) == name


def _described(data: bytes) -> dict:
    with PILImage.open(io.BytesIO(data)) as img:
        return {"width": img.width, "height": img.height, "format": img.format or "PNG", "mode": img.mode}


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = Password(PASSWORD)


class DatasetFactory(DjangoModelFactory):
    """A dataset; its creator joins it as admin, and `members={user: role}` join with their roles."""

    class Meta:
        model = Dataset
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Dataset {n}")
    created_by = None

    @factory.post_generation
    def members(dataset, create, extracted, **kwargs):
        if not create:
            return
        if dataset.created_by is not None:
            MembershipFactory(dataset=dataset, user=dataset.created_by, role="admin")
        for user, role in (extracted or {}).items():
            MembershipFactory(dataset=dataset, user=user, role=role)


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = Membership

    dataset = factory.SubFactory(DatasetFactory)
    user = factory.SubFactory(UserFactory)
    role = "annotator"


class LabelClassFactory(DjangoModelFactory):
    class Meta:
        model = LabelClass

    dataset = factory.SubFactory(DatasetFactory)
    name = factory.Sequence(lambda n: f"class {n}")


class ImageFactory(DjangoModelFactory):
    """An image row. By default its files do not exist (most tests never open them).

    data=<bytes of a real image file>: the row describes that file (sha256, size, format,
    mode) and stores it as file and thumbnail under the names ingest uses.
    stored=True: a gray placeholder is stored under the row's names, for pages that load
    thumbnails.
    """

    class Meta:
        model = Image
        exclude = ("digest",)

    class Params:
        data = None
        stored = factory.Trait(content=factory.LazyFunction(placeholder_webp))

    dataset = factory.SubFactory(DatasetFactory)
    digest = factory.LazyAttributeSequence(
        lambda o, n: hashlib.sha256(o.data if o.data is not None else f"image-{n}".encode()).hexdigest()
    )
    sha256 = factory.SelfAttribute("digest")
    file = factory.LazyAttribute(
        lambda o: (
            f"datasets/{o.dataset.pk}/images/{o.digest[:2]}/{o.digest}.png"
            if o.data is not None
            else f"fake/{o.digest}.png"
        )
    )
    thumbnail = factory.LazyAttribute(
        lambda o: (
            f"datasets/{o.dataset.pk}/thumbs/{o.digest[:2]}/{o.digest}.webp"
            if o.data is not None
            else f"fake/{o.digest}.webp"
        )
    )
    width = factory.LazyAttribute(lambda o: _described(o.data)["width"] if o.data is not None else 28)
    height = factory.LazyAttribute(lambda o: _described(o.data)["height"] if o.data is not None else 28)
    format = factory.LazyAttribute(lambda o: _described(o.data)["format"] if o.data is not None else "PNG")
    mode = factory.LazyAttribute(lambda o: _described(o.data)["mode"] if o.data is not None else "L")
    size_bytes = factory.LazyAttribute(lambda o: len(o.data) if o.data is not None else 0)
    original_name = factory.Sequence(lambda n: f"image-{n}.png")
    # Bytes written under the file names on create; not a model field.
    content = factory.SelfAttribute("data")

    @classmethod
    def _build(cls, model_class, *args, content=None, **kwargs):
        return super()._build(model_class, *args, **kwargs)

    @classmethod
    def _create(cls, model_class, *args, content=None, **kwargs):
        image = super()._create(model_class, *args, **kwargs)
        if content is not None:
            store_files(image, content)
        return image


def bulk_images(dataset, n: int) -> list[Image]:
    """n file-less image rows in one INSERT, for tests that need many rows and open none of them."""
    return Image.objects.bulk_create(ImageFactory.build_batch(n, dataset=dataset))


class AnnotationFactory(DjangoModelFactory):
    class Meta:
        model = Annotation

    image = factory.SubFactory(ImageFactory)
    dataset = factory.SelfAttribute("image.dataset")
    label_class = factory.SubFactory(LabelClassFactory, dataset=factory.SelfAttribute("..dataset"))


class TrainingRunFactory(DjangoModelFactory):
    """A run as queued; `succeeded=True` for a finished one whose map pages and selectors read."""

    class Meta:
        model = TrainingRun

    class Params:
        succeeded = factory.Trait(status=RunStatus.SUCCEEDED, stage="done", progress=1.0)

    dataset = factory.SubFactory(DatasetFactory)


def code_of(x: float, y: float) -> bytes:
    """A code that is the map position padded to four numbers, so nearest in code space is nearest on the map."""
    return np.asarray([x, y, 0, 0], dtype=np.float32).tobytes()


class ImageEmbeddingFactory(DjangoModelFactory):
    class Meta:
        model = ImageEmbedding

    run = factory.SubFactory(TrainingRunFactory, succeeded=True)
    image = factory.SubFactory(ImageFactory, dataset=factory.SelfAttribute("..run.dataset"))
    x = 0.0
    y = 0.0
    cluster = 0
    code = factory.LazyAttribute(lambda o: code_of(o.x, o.y))


class BuiltMap(NamedTuple):
    run: TrainingRun
    classes: list  # the LabelClass rows the builder made
    blobs: list  # image ids per cluster, in creation order


def build_map(
    dataset,
    *,
    blob_sizes=(20, 20),
    spread=0.3,
    seed=0,
    class_names=None,
    positions=None,
    suggestions=None,
    stored=False,
    **run_fields,
) -> BuiltMap:
    """A succeeded run on `dataset` with one embedding per image, built directly (no training).

    Without positions: new images whose codes form well-separated blobs of `blob_sizes`
    (normal noise of `spread` around centers 8 apart), one cluster per blob; classes
    `class_names` (default cat, dog) are created.
    positions={image: (x, y, cluster)}: the given images placed there, with codes equal to
    the positions (see code_of); no classes are created unless class_names is given.
    suggestions={image or image id: (class, confidence)}.
    stored=True stores placeholder files for the images (pages that load thumbnails).
    run_fields override the run's fields (created_by, metrics, ...).
    """
    if class_names is None:
        class_names = () if positions is not None else ("cat", "dog")
    classes = [LabelClassFactory(dataset=dataset, name=name) for name in class_names]
    rows = []  # (image, x, y, cluster, code, reconstruction error)
    if positions is not None:
        for image, (x, y, cluster) in positions.items():
            rows.append((image, float(x), float(y), cluster, code_of(x, y), 0.0))
    else:
        rng = np.random.default_rng(seed)
        images = Image.objects.bulk_create(ImageFactory.build_batch(sum(blob_sizes), dataset=dataset))
        index = 0
        for b, size in enumerate(blob_sizes):
            center = np.zeros(4, dtype=np.float32)
            center[b % 4] = 8.0 * (1 + b // 4)
            for _ in range(size):
                code = (center + rng.normal(0, spread, 4)).astype("<f4")
                rows.append((images[index], float(code[0]), float(code[1]), b, code.tobytes(), 0.01))
                index += 1
    if stored:
        content = placeholder_webp()
        for image, *_ in rows:
            store_files(image, content)
    run = TrainingRunFactory(dataset=dataset, succeeded=True, **{"image_count": len(rows), **run_fields})
    suggestions = {getattr(key, "pk", key): value for key, value in (suggestions or {}).items()}
    ImageEmbedding.objects.bulk_create(
        [
            ImageEmbedding(
                run=run,
                image=image,
                code=code,
                x=x,
                y=y,
                cluster=cluster,
                reconstruction_error=error,
                suggested_class=suggestions.get(image.pk, (None, None))[0],
                suggestion_confidence=suggestions.get(image.pk, (None, None))[1],
            )
            for image, x, y, cluster, code, error in rows
        ]
    )
    blobs = {}
    for image, _, _, cluster, _, _ in rows:
        blobs.setdefault(cluster, []).append(image.pk)
    return BuiltMap(run, classes, [blobs[c] for c in sorted(blobs)])
