"""embeddings.ml.backbone on tiny models and arrays: safe loading of both formats, preprocessing, batching,
and the output checks."""

import numpy as np
import pytest
import torch
from PIL import Image

from embeddings.ml import backbone as B
from tests.embeddings.backbone_models import (
    DIM,
    MEAN,
    SIZE,
    STD,
    TinyBackbone,
    pickle_bomb_bytes,
    pt2_bytes,
    pt2_with_pickled_weight,
    torchscript_bytes,
)

SPEC = B.BackboneSpec(SIZE, SIZE, 3, MEAN, STD)


def test_image_array_resizes_converts_and_normalizes():
    pixels = np.full((40, 20, 3), (255, 0, 128), dtype=np.uint8)
    array = B.image_array(Image.fromarray(pixels), SPEC)
    assert array.shape == (3, SIZE, SIZE) and array.dtype == np.float32
    np.testing.assert_allclose(
        array[:, 5, 5], [(1 - 0.5) / 0.25, (0 - 0.5) / 0.25, (128 / 255 - 0.5) / 0.25], atol=1e-5
    )
    gray = B.image_array(Image.fromarray(pixels), B.BackboneSpec(8, 12, 1, (0.0,), (1.0,)))
    assert gray.shape == (1, 8, 12) and 0 < gray.mean() < 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: pt2_bytes(),
        lambda: pt2_bytes(dynamic_batch=True),
        torchscript_bytes,
        lambda: torchscript_bytes(trace=True),
    ],
)
def test_every_format_embeds_like_the_model_itself_in_any_batch(make):
    data = make()
    loaded = B.load_backbone(data, B.detect_format(data), device="cpu")
    assert B.probe_backbone(loaded, SPEC) == DIM
    images = np.random.default_rng(0).normal(size=(5, 3, SIZE, SIZE)).astype(np.float32)
    vectors = B.embed_arrays(loaded, images, batch_size=2)
    with torch.no_grad():
        expected = TinyBackbone().eval()(torch.from_numpy(images)).numpy()
    assert vectors.shape == (5, DIM)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_a_program_exported_with_batch_one_is_fed_one_image_at_a_time():
    loaded = B.load_backbone(pt2_bytes(), "pt2", device="cpu")
    assert loaded.fixed_batch == 1
    assert B.load_backbone(pt2_bytes(dynamic_batch=True), "pt2", device="cpu").fixed_batch is None


def test_a_pickle_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "ran"
    data = pickle_bomb_bytes(marker)
    for fmt in ("pt2", "torchscript"):
        with pytest.raises(B.BackboneError, match="pickled Python objects"):
            B.load_backbone(data, fmt, device="cpu")
    with pytest.raises(B.BackboneError):
        B.detect_format(data)
    assert not marker.exists()


def test_a_pt2_with_a_pickled_weight_is_refused_before_torch_export_load(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(B.BackboneError, match="pickled weights"):
        B.load_backbone(pt2_with_pickled_weight(marker), "pt2", device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize(
    "expression, safe",
    [
        ("Symbol('s77', positive=True, integer=True)", True),
        ("FloorDiv(s0, 2) + 1", True),
        ("Mul(Integer(96), Symbol('s77', positive=True, integer=True))", True),
        ("Float('0.5', precision=53) * s0", True),
        ("open('s1')", False),
        ("getattr(s0, 's1')", False),
        ("Symbol('s1'); s2", False),
        ("eval(chr(49))", False),
        ("().__class__", False),
        ("Symbol('__import__')", False),
    ],
)
def test_shape_expressions_are_checked_before_sympify_sees_them(expression, safe):
    assert B.safe_shape_expression(expression) is safe


class Flat(torch.nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out(x)


@pytest.mark.parametrize(
    "out, message",
    [
        (lambda x: x, "shape"),
        (lambda x: x.mean(dim=(2, 3)) * float("nan"), "not finite"),
        (lambda x: x.mean(dim=(1, 2, 3)).unsqueeze(1), "2 to 4096"),
        (lambda x: (x.mean(dim=(2, 3)) * 100).to(torch.int64), "floating-point"),
    ],
)
def test_outputs_other_than_finite_n_by_d_floats_are_refused(out, message):
    loaded = B.LoadedBackbone(Flat(out), torch.device("cpu"))
    with pytest.raises(B.BackboneError, match=message):
        B.probe_backbone(loaded, SPEC)


def test_an_input_size_the_model_cannot_take_is_a_clear_error():
    loaded = B.load_backbone(pt2_bytes(), "pt2", device="cpu")
    with pytest.raises(B.BackboneError, match="failed on a batch"):
        B.probe_backbone(loaded, B.BackboneSpec(32, 32, 3, MEAN, STD))


def test_torch_jit_load_does_not_run_code_from_a_torchscript_archives_pickle(tmp_path):
    """TorchScript's own unpickler builds TorchScript types only: a Python object's reduce in data.pkl fails
    the load instead of running."""
    import io
    import zipfile

    marker = tmp_path / "ran"
    bomb = zipfile.ZipFile(io.BytesIO(pickle_bomb_bytes(marker)))
    bomb_pickle = bomb.read(next(n for n in bomb.namelist() if n.endswith("data.pkl")))
    source = zipfile.ZipFile(io.BytesIO(torchscript_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = bomb_pickle if info.filename.endswith("/data.pkl") else source.read(info.filename)
            target.writestr(info.filename, data)
    assert B.detect_format(out.getvalue()) == "torchscript"
    with pytest.raises(B.BackboneError, match="torch.jit.load could not read"):
        B.load_backbone(out.getvalue(), "torchscript", device="cpu")
    assert not marker.exists()


def test_embedding_stops_between_batches_when_asked():
    calls = []

    def model(batch):
        calls.append(len(batch))
        return batch.flatten(1)[:, :4]

    class Stop(Exception):
        pass

    def stop():
        raise Stop

    loaded = B.LoadedBackbone(model, torch.device("cpu"))
    with pytest.raises(Stop):
        B.embed_arrays(loaded, np.zeros((10, 3, SIZE, SIZE), dtype=np.float32), batch_size=4, between_batches=stop)
    assert calls == [4]


def test_a_transformer_exported_with_a_free_batch_loads_and_embeds():
    from tests.embeddings.backbone_models import TinyViT

    model = TinyViT().eval()
    data = pt2_bytes(dynamic_batch=True, model=model)
    loaded = B.load_backbone(data, "pt2", device="cpu")
    assert loaded.fixed_batch is None and B.probe_backbone(loaded, SPEC) == 32
    images = np.random.default_rng(1).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(B.embed_arrays(loaded, images, batch_size=3), expected, atol=1e-5)
