"""A dataset with a finished map built directly in the database (no training):
images whose codes form well-separated blobs, one cluster per blob."""
import hashlib
import io

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from embeddings.models import ImageEmbedding, RunStatus, TrainingRun
from labeling.models import Image, LabelClass


def build_map(dataset, blob_sizes=(20, 20), seed=0, spread=0.3, class_names=("cat", "dog")):
    """Returns (run, classes: list[LabelClass], blobs: list[list[image id]])."""
    rng = np.random.default_rng(seed)
    classes = [LabelClass.objects.create(dataset=dataset, name=name) for name in class_names]
    run = TrainingRun.objects.create(dataset=dataset, status=RunStatus.SUCCEEDED, stage="done", progress=1.0)
    blobs = []
    embeddings = []
    for b, size in enumerate(blob_sizes):
        centre = np.zeros(4, dtype=np.float32)
        centre[b % 4] = 8.0 * (1 + b // 4)
        ids = []
        for j in range(size):
            name = f"{dataset.pk}-{b}-{j}"
            image = Image.objects.create(
                dataset=dataset, file=f"fake/{name}.png", thumbnail=f"fake/{name}.webp",
                sha256=hashlib.sha256(name.encode()).hexdigest(), width=28, height=28, format="PNG",
                original_name=f"{name}.png",
            )
            code = (centre + rng.normal(0, spread, 4)).astype("<f4")
            embeddings.append(ImageEmbedding(run=run, image=image, code=code.tobytes(), x=float(code[0]),
                                             y=float(code[1]), cluster=b, reconstruction_error=0.01))
            ids.append(image.pk)
        blobs.append(ids)
    ImageEmbedding.objects.bulk_create(embeddings)
    return run, classes, blobs


def store_image_files(dataset):
    """Real files behind the factory's images, for pages that load thumbnails."""
    buf = io.BytesIO()
    PILImage.new("L", (28, 28), 128).save(buf, format="WEBP")
    for image in Image.objects.filter(dataset=dataset):
        for name in (image.thumbnail.name, image.file.name):
            # Names repeat across tests (dataset ids restart); save() would pick another name.
            default_storage.delete(name)
            assert default_storage.save(name, ContentFile(buf.getvalue())) == name
