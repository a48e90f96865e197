"""Builders for hostile and ordinary upload files, made by the tests themselves (ingest tests)."""

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage


@dataclass
class RawMember:
    """One member of a hand-built zip: lets a test lie in headers and set any flag."""

    name: str
    data: bytes = b""
    method: int = zipfile.ZIP_STORED
    flag_bits: int = 0
    external_attr: int = 0o100644 << 16
    declared_size: int | None = None  # file size written in the headers (None: the truth)
    compressed: bytes | None = None  # pre-compressed payload (for deflate members)
    crc: int | None = None


def raw_zip(members) -> bytes:
    """A zip archive written byte by byte with struct (fast, and free to be wrong)."""
    out = io.BytesIO()
    central = []
    for m in members:
        name = m.name.encode("utf-8")
        if m.compressed is not None:
            payload = m.compressed
        elif m.method == zipfile.ZIP_DEFLATED:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            payload = c.compress(m.data) + c.flush()
        else:
            payload = m.data
        crc = m.crc if m.crc is not None else zlib.crc32(m.data)
        size = m.declared_size if m.declared_size is not None else len(m.data)
        flags = m.flag_bits | 0x800  # names are UTF-8
        offset = out.tell()
        out.write(
            struct.pack(
                "<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, m.method, 0, 0x21, crc, len(payload), size, len(name), 0
            )
        )
        out.write(name)
        out.write(payload)
        central.append(
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                (3 << 8) | 20,
                20,
                flags,
                m.method,
                0,
                0x21,
                crc,
                len(payload),
                size,
                len(name),
                0,
                0,
                0,
                0,
                m.external_attr,
                offset,
            )
            + name
        )
    cd_start = out.tell()
    for record in central:
        out.write(record)
    cd_size = out.tell() - cd_start
    count = len(central)
    if count >= 0xFFFF:
        # zip64 end record + locator, so 100,000 members are representable
        z64_start = out.tell()
        out.write(struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_start))
        out.write(struct.pack("<4sIQI", b"PK\x06\x07", 0, z64_start, 1))
        out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    else:
        out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_start, 0))
    return out.getvalue()


def zip_of(files: dict, method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def deflated_zeros(n_bytes: int) -> bytes:
    """Raw deflate of n zero bytes, built in chunks (a 1000:1 bomb payload)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1024 * 1024)
    parts = []
    for _ in range(n_bytes // len(block)):
        parts.append(c.compress(block))
    parts.append(c.compress(bytes(n_bytes % len(block))))
    parts.append(c.flush())
    return b"".join(parts)


def bomb_png(width: int, height: int) -> bytes:
    """A 1-bit PNG of width x height that compresses to almost nothing."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + bytes((width + 7) // 8)
    c = zlib.compressobj(9)
    idat = b"".join(c.compress(row) for _ in range(height)) + c.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def image_bytes(fmt="PNG", size=(32, 24), mode="RGB", seed=0, **save) -> bytes:
    rng = np.random.default_rng(seed)
    if mode in ("I;16", "I;16B"):
        arr = rng.integers(0, 65536, size=(size[1], size[0]), dtype=np.uint16)
        img = PILImage.fromarray(arr, "I;16")
    else:
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        img = PILImage.fromarray(arr, "RGB")
        if mode == "P":
            img = img.quantize(16)
        elif mode != "RGB":
            img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def storage_names(dataset_id=None) -> set[str]:
    """Every file under the media root's datasets/ folder (or one dataset's)."""
    from pathlib import Path

    from django.conf import settings

    root = Path(settings.MEDIA_ROOT)
    base = root / "datasets" / (str(dataset_id) if dataset_id is not None else "")
    if not base.exists():
        return set()
    return {p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file()}


def row_names(dataset_id=None) -> set[str]:
    from labeling.models import Image

    rows = Image.objects.all() if dataset_id is None else Image.objects.filter(dataset_id=dataset_id)
    names = set()
    for file_name, thumb in rows.values_list("file", "thumbnail"):
        names.update((file_name, thumb))
    return names
