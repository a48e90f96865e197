"""Tiny backbones for the tests: a conv model exported with torch.export or TorchScript, and files that must be
refused (a pickle whose loading would run code, a .pt2 archive with a pickled weight)."""

import io
import json
import zipfile

import torch

SIZE = 16
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class TinyBackbone(torch.nn.Module):
    """Per-channel means (what tells the test's color groups apart) and four conv features: 7 values."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)) * 10.0, self.conv(x).mean(dim=(2, 3))], dim=1)


DIM = 7


def pt2_bytes(*, dynamic_batch: bool = False, model=None) -> bytes:
    model = (model or TinyBackbone()).eval()
    if dynamic_batch:
        program = torch.export.export(
            model, (torch.randn(2, 3, SIZE, SIZE),), dynamic_shapes=({0: torch.export.Dim("batch", max=4096)},)
        )
    else:
        program = torch.export.export(model, (torch.randn(1, 3, SIZE, SIZE),))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def torchscript_bytes(*, trace: bool = False, model=None) -> bytes:
    model = (model or TinyBackbone()).eval()
    scripted = torch.jit.trace(model, torch.randn(1, 3, SIZE, SIZE)) if trace else torch.jit.script(model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    return buf.getvalue()


class RunsCode:
    """Unpickling this would write `path`: the proof that a loader ran code from the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (_touch, (self.path,))


def _touch(path):
    with open(path, "w") as fh:
        fh.write("ran")
    return torch.zeros(3)


def pickle_bomb_bytes(marker) -> bytes:
    """A plain torch.save of an object whose __reduce__ runs code when unpickled."""
    buf = io.BytesIO()
    torch.save({"model": RunsCode(marker)}, buf)
    return buf.getvalue()


def pt2_with_pickled_weight(marker) -> bytes:
    """A real exported program whose first weight is marked `use_pickle` and replaced by a code-running pickle:
    torch.export.load alone would torch.load it with weights_only=False."""
    source = zipfile.ZipFile(io.BytesIO(pt2_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data/weights/model_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"].values()))
                first["use_pickle"] = True
                data = json.dumps(config).encode()
                bomb_name = info.filename.rsplit("/", 1)[0] + "/" + first["path_name"]
            target.writestr(info.filename, data)
    # Rewrite the weight the config now says is pickled.
    final = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as written, zipfile.ZipFile(final, "w") as target:
        for info in written.infolist():
            data = written.read(info.filename)
            if info.filename == bomb_name:
                data = pickle_bomb_bytes(marker)
            target.writestr(info.filename, data)
    return final.getvalue()


class TinyViT(torch.nn.Module):
    """A vision transformer in miniature (patches, a class token, attention, a normalized output): the shape of
    DINOv2 and CLIP's image towers, whose dynamic-batch exports carry shape expressions and tensor constants."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.patch = torch.nn.Conv2d(3, 32, 8, stride=8)
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, 32))
        layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 1)
        self.norm = torch.nn.LayerNorm(32)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) * torch.tensor([1.0] * 32)
        return torch.nn.functional.normalize(self.norm(self.encoder(tokens)[:, 0]), dim=1)
