"""A pretrained image model (a "backbone": DINOv2, CLIP's image tower, …) loaded from a file, and embedding
images with it.

Two file formats, each loaded without running code the file brings:

- `torch.export` programs (`.pt2`), through `torch.export.load`.  In torch 2.13 that function is NOT safe on
  its own: for entries the archive marks `use_pickle` it calls `torch.load` with `weights_only=False`, it
  `pickle.loads` "opaque object" constants, it falls back to `torch.load` with `weights_only=False` when the
  sample inputs fail the weights-only unpickler, it loads AOTInductor shared libraries found in the
  archive, it reads an older zip layout through the same fallback, and it parses symbolic shapes with
  `sympy.sympify` (which evaluates Python).  So `check_pt2_archive` reads the archive first with torch's own
  zip reader and refuses every one of those: only the entries `torch.export.save` writes for plain tensors,
  weights and constants stored as raw bytes (never pickled), sample inputs that the weights-only
  unpickler reads, and shape expressions made of symbol names, numbers and sympy's shape functions.
  Only then is `torch.export.load` called.
- TorchScript (`torch.jit.save`), through `torch.jit.load`: TorchScript code is compiled by torch's own
  compiler and its data read by the TorchScript unpickler, which builds only TorchScript types and never
  imports Python objects.  A file without TorchScript code (such as a plain `torch.save` pickle) is refused
  before `torch.jit.load` sees it.

`torch.load` with `weights_only=False` is never called here.  After loading, a model whose graph reads files
(`aten::from_file`) is refused too.

Pure PyTorch / numpy / Pillow: no Django.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

FORMATS = ("pt2", "torchscript")
MIN_DIM = 2
MAX_DIM = 4096
# The batch of the check at registration: small enough for a ViT-L on a CPU in a request.
PROBE_BATCH = 2
# Ops a loaded graph may not call: they read files of the machine the model runs on.
FORBIDDEN_OPS = ("from_file",)


class BackboneError(ValueError):
    """The file is not a backbone this app can use; the message says why, in the user's words."""


@dataclass(frozen=True)
class BackboneSpec:
    """How images are fed to the model: size, channels, and per-channel normalization of values in 0..1."""

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise BackboneError("channels must be 1 or 3.")
        if not (1 <= self.height <= 2048 and 1 <= self.width <= 2048):
            raise BackboneError("input_size must be two whole numbers from 1 to 2048 (height, width).")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise BackboneError(f"mean and std must have one value per channel ({self.channels}).")
        if not all(np.isfinite(v) for v in (*self.mean, *self.std)) or not all(s > 0 for s in self.std):
            raise BackboneError("mean must be finite numbers and std finite numbers above 0.")


# --- reading the file safely ------------------------------------------------------------------------------


def _records(data: bytes) -> tuple[object, list[str]]:
    import torch

    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        return reader, list(reader.get_all_records())
    except Exception:
        raise BackboneError(
            "Not a model file: expected a torch.export program (.pt2, torch.export.save) or a TorchScript "
            "file (torch.jit.save)."
        ) from None


def detect_format(data: bytes) -> str:
    """ "pt2" or "torchscript" from the archive's entries; BackboneError for anything else (a plain
    `torch.save` pickle included), without unpickling anything."""
    _, names = _records(data)
    if "archive_format" in names and any(n.startswith("models/") for n in names):
        return "pt2"
    if "constants.pkl" in names and any(n.startswith("code/") for n in names):
        return "torchscript"
    raise BackboneError(
        "Not a torch.export program (.pt2) nor a TorchScript file: a file written by torch.save holds "
        "pickled Python objects, which are never loaded. Export the model with torch.export.save or "
        "torch.jit.save."
    )


_PT2_ENTRY = re.compile(
    r"^(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/sample_inputs/model\.pt"
    r"|data/weights/(weight_\d+|model_weights_config\.json)"
    r"|data/constants/(tensor_\d+|model_constants_config\.json)"
    r"|extra/[A-Za-z0-9_.\-]+)$"
)
# Shape expressions (`expr_str`) are parsed with sympy.sympify, which evaluates Python: only symbol names
# (s0, u1), numbers, operators and the functions torch's deserializer declares pass.
_EXPR_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<str>'[a-z]\d+'|'-?\d+(?:\.\d+)?(?:e-?\d+)?')"  # a symbol's name, or a Float's digits
    r"|(?P<op>\*\*|[-+*/%(),=<>!]=?))"
)
_EXPR_NAMES = frozenset(
    {
        # sympy's constructors as srepr writes them, and Symbol's assumptions
        "Symbol",
        "Dummy",
        "positive",
        "negative",
        "integer",
        "nonnegative",
        "nonpositive",
        "real",
        "finite",
        "precision",
        "True",
        "False",
        "true",
        "false",
        "BooleanTrue",
        "BooleanFalse",
        "Add",
        "Mul",
        "Pow",
        "Integer",
        "Rational",
        "Float",
        "Max",
        "Min",
        "floor",
        "ceiling",
        "Abs",
        "sign",
        "oo",
        "zoo",
        "nan",
        "Infinity",
        "NegativeInfinity",
        "IntInfinity",
        "NegativeIntInfinity",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "StrictLessThan",
        "LessThan",
        "StrictGreaterThan",
        "GreaterThan",
        "Equality",
        "Unequality",
        "And",
        "Or",
        "Not",
        "Piecewise",
        "ExprCondPair",
        # the functions torch's deserializer declares (torch.utils._sympy.functions)
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "Mod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
    }
)
_SYMBOL_NAME = re.compile(r"^[a-z]\d+$")


def safe_shape_expression(text: str) -> bool:
    """Whether sympify may see this: only allowed names, symbol names, numbers, quoted symbol names or digits,
    and operators.  No builtin (eval, chr, getattr, open), attribute access, subscript or statement gets through."""
    pos = 0
    while pos < len(text):
        match = _EXPR_TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            return text[pos:].strip() == ""
        name = match.group("name")
        if name is not None and name not in _EXPR_NAMES and not _SYMBOL_NAME.match(name):
            return False
        pos = match.end()
    return True


def _walk_expressions(node) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr_str":
                yield value if isinstance(value, str) else repr(value)
            else:
                yield from _walk_expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_expressions(value)


def check_pt2_archive(data: bytes) -> None:
    """Refuse (BackboneError) a .pt2 archive holding anything torch.export.load would unpickle, load as
    native code, or evaluate; see the module's docstring."""
    import torch

    refused = (
        "The .pt2 file holds {what}, which would run code when loaded; it is refused. Export the model "
        "with torch.export.export and torch.export.save (plain tensors only)."
    )
    reader, names = _records(data)
    # torch.export.load falls back to an older zip layout (with a top-level `version`) read through a
    # pickle fallback: a file readable both ways must not reach it.
    try:
        if "version" in zipfile.ZipFile(io.BytesIO(data)).namelist():
            raise BackboneError(refused.format(what="an older archive layout"))
    except zipfile.BadZipFile:
        raise BackboneError("The .pt2 file is not a readable archive.") from None
    if "archive_format" not in names or bytes(reader.get_record("archive_format")) != b"pt2":
        raise BackboneError("Not a torch.export program (.pt2): the archive has no pt2 format marker.")
    unexpected = sorted(n for n in names if not _PT2_ENTRY.match(n))
    if unexpected:
        raise BackboneError(refused.format(what=f"entries other than an exported program's ({unexpected[0]})"))
    for required in ("models/model.json", "data/weights/model_weights_config.json"):
        if required not in names:
            raise BackboneError(f"The .pt2 file has no {required}: not written by torch.export.save.")
    for config_name in ("data/weights/model_weights_config.json", "data/constants/model_constants_config.json"):
        if config_name not in names:
            continue
        try:
            config = json.loads(reader.get_record(config_name))["config"]
            entries = list(config.values())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackboneError(f"The .pt2 file's {config_name} is not readable.") from None
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
                raise BackboneError(refused.format(what="pickled weights or constants"))
            if "constants" in config_name and not str(entry.get("path_name", "")).startswith("tensor_"):
                raise BackboneError(refused.format(what="pickled objects among its constants"))
    try:
        program = json.loads(reader.get_record("models/model.json"))
    except ValueError:
        raise BackboneError("The .pt2 file's program (models/model.json) is not readable.") from None
    for expression in _walk_expressions(program):
        if not safe_shape_expression(expression):
            raise BackboneError(refused.format(what=f"a shape expression that is not one ({expression[:60]!r})"))
    if "data/sample_inputs/model.pt" in names:
        # torch.export.load reads them with weights_only=True and, on failure, again without: they must pass
        # the weights-only unpickler here so that its fallback is never taken.
        sample_inputs = io.BytesIO(reader.get_record("data/sample_inputs/model.pt"))
        try:
            torch.load(sample_inputs, weights_only=True)
        except Exception:
            raise BackboneError(refused.format(what="sample inputs that are not plain tensors")) from None


@dataclass
class LoadedBackbone:
    """A callable model on a device, and the batch size it insists on (exported programs with a fixed batch)."""

    module: Callable
    device: object
    fixed_batch: int | None = None


def choose_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_backbone(data: bytes, fmt: str, *, device=None) -> LoadedBackbone:
    """The model of a backbone file, ready for inference on `device` (CUDA when present by default)."""
    import torch

    device = device or choose_device()
    if fmt not in FORMATS:
        raise BackboneError(f"format must be one of {', '.join(FORMATS)}.")
    found = detect_format(data)
    if found != fmt:
        raise BackboneError(f"The file is a {found} file, not {fmt}.")
    if fmt == "pt2":
        check_pt2_archive(data)
        try:
            program = torch.export.load(io.BytesIO(data))
            module = program.module()
        except Exception as exc:
            raise BackboneError(f"torch.export.load could not read the program: {str(exc)[:200]}") from None
        targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
        fixed_batch = _exported_batch(program)
    else:
        try:
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as exc:
            raise BackboneError(f"torch.jit.load could not read the TorchScript file: {str(exc)[:200]}") from None
        targets = {node.kind() for node in _torchscript_nodes(module)}
        fixed_batch = None
    forbidden = sorted(t for t in targets if any(op in t for op in FORBIDDEN_OPS))
    if forbidden:
        raise BackboneError(f"The model calls {forbidden[0]}, which reads files of the server: refused.")
    try:
        module = module.to(device)
    except Exception as exc:
        raise BackboneError(f"The model could not be moved to {device}: {str(exc)[:200]}") from None
    if hasattr(module, "eval") and fmt == "torchscript":
        module.eval()
    return LoadedBackbone(module, device, fixed_batch)


def _torchscript_nodes(module):
    def walk(block):
        for node in block.nodes():
            yield node
            for inner in node.blocks():
                yield from walk(inner)

    try:
        graph = module.inlined_graph
    except Exception:
        return []
    return list(walk(graph))


def _exported_batch(program) -> int | None:
    """The first input's batch size when the program was exported with a fixed one (None: any batch)."""
    inputs = list(program.graph_signature.user_inputs)
    if not inputs:
        return None
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == inputs[0]:
            value = node.meta.get("val")
            shape = getattr(value, "shape", None)
            if shape is not None and len(shape) and isinstance(shape[0], int):
                return int(shape[0])
    return None


# --- images in, vectors out ----------------------------------------------------------------------------


def image_array(image: Image.Image, spec: BackboneSpec) -> np.ndarray:
    """(C, H, W) float32 of one image: converted to gray or RGB, resized to the input size with Pillow
    (bicubic, not keeping the aspect ratio, as the usual model transforms' final resize does), scaled to 0..1
    and normalized with the backbone's mean and std."""
    image = image.convert("L" if spec.channels == 1 else "RGB")
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1))


def embed_arrays(
    backbone: LoadedBackbone, images: np.ndarray, *, batch_size: int = 64, between_batches: Callable | None = None
) -> np.ndarray:
    """(N, D) float32 vectors of (N, C, H, W) normalized images, in batches without gradients.

    A program exported with a fixed batch gets exactly that many images each call (the last batch padded
    with copies, which are dropped).  between_batches() is called after each batch: it may raise to stop
    (a cancelled run stops within one batch of a slow model)."""
    import torch

    step = backbone.fixed_batch or max(1, batch_size)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), step):
            batch = images[start : start + step]
            count = len(batch)
            if backbone.fixed_batch and count < step:
                batch = np.concatenate([batch, np.repeat(batch[-1:], step - count, axis=0)])
            result = backbone.module(torch.from_numpy(np.ascontiguousarray(batch)).to(backbone.device))
            vectors = check_output(result, len(batch))
            out.append(vectors[:count])
            if between_batches is not None:
                between_batches()
    return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)


def check_output(result, batch: int) -> np.ndarray:
    """The model's output as (batch, D) float32, or BackboneError saying what it returned instead."""
    import torch

    if not isinstance(result, torch.Tensor):
        raise BackboneError(
            f"The model returned a {type(result).__name__}, not a tensor: wrap it so forward returns one "
            "(N, D) tensor of image vectors."
        )
    if result.ndim != 2 or result.shape[0] != batch:
        raise BackboneError(
            f"The model returned a tensor of shape {tuple(result.shape)} for {batch} image(s); it must return "
            f"({batch}, D): one vector per image."
        )
    if not result.is_floating_point():
        raise BackboneError(f"The model returned {result.dtype} values; it must return floating-point vectors.")
    dim = int(result.shape[1])
    if not MIN_DIM <= dim <= MAX_DIM:
        raise BackboneError(f"Each image's vector must have {MIN_DIM} to {MAX_DIM} values; this model gives {dim}.")
    vectors = result.detach().float().cpu().numpy()
    if not np.isfinite(vectors).all():
        raise BackboneError("The model returned values that are not finite numbers (NaN or infinite).")
    return vectors


def probe_backbone(backbone: LoadedBackbone, spec: BackboneSpec, *, seed: int = 0) -> int:
    """D, the length of the model's vectors, from a forward pass on a random batch of the declared input size;
    BackboneError when the model refuses that input or answers anything but (N, D) finite floats."""
    batch = backbone.fixed_batch or PROBE_BATCH
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, spec.channels, spec.height, spec.width)).astype(np.float32)
    try:
        vectors = embed_arrays(backbone, images, batch_size=batch)
    except BackboneError:
        raise
    except Exception as exc:
        raise BackboneError(
            f"The model failed on a batch of {batch} x {spec.channels} x {spec.height} x {spec.width}: "
            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}"
        ) from None
    return int(vectors.shape[1])
