"""Checks that turn untrusted bytes into a verified image and its thumbnail.

Nothing here touches the database or storage: `inspect_image` takes the bytes
of one file and either returns what it learned (format, size, mode and a
thumbnail) or raises `ImageRejected` with a message meant for the uploader.

Each file is opened by Pillow restricted to the accepted formats, its pixel
count is checked from the header before anything is decoded, Pillow's own
decompression-bomb warning is an error, and the image is then fully decoded so
a truncated file is caught here instead of at training time.
"""

from __future__ import annotations

import io
import unicodedata
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
# Cameras write JPEGs with extra pictures (MPO); Pillow names them MPO but they
# are JPEG files, served and stored as such.
_FORMAT_ALIASES = {"MPO": "JPEG"}
CONTENT_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
}
# Stored files get the extension of what they are, never the uploader's.
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}
# Thumbnails of small images are PNG (lossless, and several times faster to
# encode than WebP at that size); larger ones are WebP.
THUMBNAIL_EXTENSIONS = {"PNG": ".png", "WEBP": ".webp"}
SMALL_THUMBNAIL_MAX_SIDE = 64
ORIGINAL_NAME_MAX = 255
ACCEPTED_LIST = "PNG, JPEG, WebP, BMP, TIFF, GIF"

ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".jar", ".cbz", ".apk")


class ImageRejected(Exception):
    """A file that is not stored; the message says why, for the uploader."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ImageFacts:
    format: str  # Pillow format name, one of ACCEPTED_FORMATS
    width: int
    height: int
    mode: str  # Pillow mode of the original
    thumbnail: bytes  # longest side <= the thumbnail size
    thumbnail_format: str  # PNG or WEBP

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


# --- names -----------------------------------------------------------------------------------


def clean_text(value: str, max_length: int | None = None) -> str:
    """`value` without control or format characters (NUL, bidi overrides, newlines)."""
    text = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C").strip()
    return text[:max_length] if max_length else text


def sanitize_original_name(raw: str) -> str:
    """The base name of an uploaded file as safe text, at most 255 characters.

    The name is user-controlled: directories are dropped (both separators, so
    `..\\x.png` and `/etc/x.png` become `x.png`), control characters removed,
    and a long name is shortened keeping its extension.
    """
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    base = clean_text(base)
    if base in {"", ".", ".."}:
        base = "unnamed"
    if len(base) > ORIGINAL_NAME_MAX:
        dot = base.rfind(".")
        ext = base[dot:] if 0 < dot and len(base) - dot <= 16 else ""
        base = base[: ORIGINAL_NAME_MAX - len(ext)] + ext
    return base


def looks_like_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_EXTENSIONS)


# --- content checks --------------------------------------------------------------------------


def _sniff_non_image(data: bytes) -> str | None:
    """A clear reason for common non-image content, before Pillow sees it."""
    head = data[:1024]
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n\x0c").lower()
    if text.startswith(b"<"):
        if b"<svg" in text:
            return "is an SVG document, not a raster image; SVG is not accepted (it can carry scripts)"
        if b"<html" in text or b"<!doctype html" in text or b"<script" in text or b"<body" in text:
            return "is an HTML document, not an image"
        return "is a markup (HTML/XML) document, not an image"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "is a ZIP archive; archives inside uploads are not opened"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c", b"Rar!", b"\x28\xb5\x2f\xfd")):
        return "is a compressed archive; archives inside uploads are not opened"
    if len(data) > 262 and data[257:262] == b"ustar":
        return "is a tar archive; archives inside uploads are not opened"
    if head.startswith(b"%PDF"):
        return "is a PDF document, not an image"
    return None


def thumbnail_box(width: int, height: int, size: int) -> tuple[int, int]:
    """The size of the thumbnail of a width x height image (never upscaled)."""
    longest = max(width, height)
    if longest <= size:
        return width, height
    scale = size / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def inspect_image(data: bytes, *, max_pixels: int, thumbnail_size: int) -> ImageFacts:
    """Verify one file and make its thumbnail; ImageRejected says why not."""
    if not data:
        raise ImageRejected("is empty (0 bytes)")
    reason = _sniff_non_image(data)
    if reason:
        raise ImageRejected(reason)
    with warnings.catch_warnings():
        # Pillow only warns between its limit and twice its limit; a warning
        # ignored here would mean decoding a bomb.
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            img = PILImage.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except UnidentifiedImageError:
            raise ImageRejected(f"is not a supported image (accepted: {ACCEPTED_LIST})") from None
        except (PILImage.DecompressionBombWarning, PILImage.DecompressionBombError):
            raise ImageRejected("has too many pixels (decompression bomb)") from None
        except Exception as exc:  # Pillow raises many types for malformed headers
            raise ImageRejected(f"has a malformed image header ({_short(exc)})") from None
        with img:
            fmt = _FORMAT_ALIASES.get(img.format, img.format)
            if fmt not in ACCEPTED_FORMATS:
                raise ImageRejected(f"is not a supported image (accepted: {ACCEPTED_LIST})")
            width, height = img.size
            mode = img.mode
            if width < 1 or height < 1:
                raise ImageRejected("has no pixels")
            if width * height > max_pixels:
                raise ImageRejected(
                    f"is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,}"
                )
            box = thumbnail_box(width, height, thumbnail_size)
            if fmt == "JPEG" and box != (width, height):
                # DCT scaling: decode at 1/2, 1/4 or 1/8 size. The whole stream
                # is still decoded, so truncation is still detected.
                img.draft(None, box)
            try:
                img.load()
            except (PILImage.DecompressionBombWarning, PILImage.DecompressionBombError):
                raise ImageRejected("has too many pixels (decompression bomb)") from None
            except Exception as exc:
                raise ImageRejected(f"is truncated or corrupt ({_short(exc)})") from None
            try:
                thumbnail, thumbnail_format = make_thumbnail(img, thumbnail_size)
            except Exception as exc:
                raise ImageRejected(f"could not be converted ({_short(exc)})") from None
    return ImageFacts(
        format=fmt, width=width, height=height, mode=mode[:8], thumbnail=thumbnail, thumbnail_format=thumbnail_format
    )


def _short(exc: Exception) -> str:
    return clean_text(str(exc) or type(exc).__name__, 200)


# --- thumbnails ------------------------------------------------------------------------------


def to_display_mode(img: PILImage.Image) -> PILImage.Image:
    """An 8-bit L, RGB or RGBA version of any accepted image, for display."""
    mode = img.mode
    if mode in ("RGB", "RGBA", "L"):
        return img
    if mode in ("LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    if mode in ("1", "P"):
        return img.convert("RGB") if mode == "P" else img.convert("L")
    if mode.startswith("I;16"):
        # 16-bit samples: keep the top byte (a plain convert("L") would clip at 255).
        arr = np.asarray(img).astype(np.uint16)
        return PILImage.fromarray((arr >> 8).astype(np.uint8), "L")
    if mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if hi <= lo:
            scaled = np.zeros(arr.shape, np.uint8)
        elif lo >= 0 and hi <= 255:
            scaled = arr.astype(np.uint8)
        else:
            scaled = ((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)
        return PILImage.fromarray(scaled, "L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...


def make_thumbnail(img: PILImage.Image, size: int) -> tuple[bytes, str]:
    """(bytes, format) of the thumbnail of a loaded image: longest side <= size, upright."""
    thumb = to_display_mode(img)
    if img.format in ("JPEG", "MPO", "TIFF", "WEBP") and 0x0112 in img.getexif():
        thumb = ImageOps.exif_transpose(thumb)
    if max(thumb.size) > size:
        if thumb is img:
            thumb = img.copy()
        thumb.thumbnail((size, size), PILImage.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    if max(thumb.size) <= SMALL_THUMBNAIL_MAX_SIDE:
        thumb.save(out, "PNG", compress_level=1)
        return out.getvalue(), "PNG"
    if thumb.mode == "L":
        thumb = thumb.convert("RGB")
    thumb.save(out, "WEBP", quality=82, method=2)
    return out.getvalue(), "WEBP"
