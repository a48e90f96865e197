"""Reading untrusted .zip archives member by member with bounded memory.

`iter_archive` yields one `ArchiveEntry` per member: either its bytes (read
through our own streaming decompressor, hashed on the way) or the reason it was
skipped or rejected. Violations that make the whole archive untrustworthy
(too many members, a zip bomb, overlapping members) raise `ArchiveRejected`;
members yielded before that stay valid.

Members are never extracted to disk by name, so a hostile path cannot escape
anything, but such names are still rejected so the uploader learns about them.
Sizes in the headers are only trusted to refuse early; limits are enforced on
the bytes actually decompressed.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from labeling.uploads import looks_like_archive_name

CHUNK = 64 * 1024
# Raw input fed to the decompressor per step; small, so the ratio is measured
# on what was really consumed.
RAW_CHUNK = 16 * 1024
# Below this many output bytes a member's ratio is not judged: small flat
# images legitimately compress very well.
RATIO_FLOOR_BYTES = 1024 * 1024
# A central-directory record is 46 bytes plus name, extra and comment; more than
# this per member on average means a directory padded to exhaust memory.
MAX_CD_BYTES_PER_MEMBER = 2048
_DRIVE = re.compile(r"^[A-Za-z]:")
_S_IFMT = 0o170000
_S_IFLNK = 0o120000
_S_IFREG = 0o100000


class ArchiveRejected(Exception):
    """The rest of the archive is not read; the message says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_total_bytes: int
    max_ratio: float
    max_file_bytes: int


@dataclass
class ArchiveEntry:
    path: str  # the member's name as written in the archive
    status: str  # "file" | "skipped" | "rejected"
    reason: str = ""
    data: bytes | None = None
    sha256: str = ""


def unsafe_member_path(name: str) -> str | None:
    """Why a member name could escape an extraction folder, or None if it is safe."""
    if "\x00" in name:
        return "has a NUL byte in its name"
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")):
        return "has an absolute path"
    if _DRIVE.match(name):
        return "has a drive-letter path"
    if any(part == ".." for part in parts):
        return "has '..' in its path"
    return None


def _skip_reason(name: str) -> str | None:
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if "__MACOSX" in parts:
        return "macOS resource-fork metadata"
    if parts and parts[-1].startswith("."):
        return "hidden file"
    if any(p.startswith(".") for p in parts[:-1]):
        return "inside a hidden folder"
    return None


def _end_of_central_directory(fp: BinaryIO) -> tuple[int, int] | None:
    """(member count, central directory size) from the end record, before parsing it."""
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    tail_len = min(size, 22 + 65535)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + 22 > len(tail):
        return None
    entries, cd_size = struct.unpack("<HI", tail[pos + 10 : pos + 16])
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        locator = tail[pos - 20 : pos] if pos >= 20 else b""
        if locator[:4] == b"PK\x06\x07":
            (zip64_offset,) = struct.unpack("<Q", locator[8:16])
            fp.seek(zip64_offset)
            record = fp.read(56)
            if record[:4] == b"PK\x06\x06" and len(record) == 56:
                entries, cd_size = struct.unpack("<QQ", record[32:48])
    return entries, cd_size


def _open(fp: BinaryIO, limits: ArchiveLimits) -> zipfile.ZipFile:
    end = _end_of_central_directory(fp)
    if end is None:
        raise ArchiveRejected("is not a valid zip archive")
    entries, cd_size = end
    if entries > limits.max_members:
        raise ArchiveRejected(f"has {entries:,} members, more than the limit of {limits.max_members:,}")
    if cd_size > max(limits.max_members, 1) * MAX_CD_BYTES_PER_MEMBER:
        raise ArchiveRejected("has an oversized central directory")
    fp.seek(0)
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveRejected(f"is not a valid zip archive ({exc})") from None
    return zf


def _check_archive(infos: list[zipfile.ZipInfo], limits: ArchiveLimits, archive_size: int) -> None:
    if len(infos) > limits.max_members:
        raise ArchiveRejected(f"has {len(infos):,} members, more than the limit of {limits.max_members:,}")
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_total_bytes:
        raise ArchiveRejected(f"would unpack to {declared:,} bytes, more than the limit of {limits.max_total_bytes:,}")
    # Members whose data overlap are the signature of a "quoted overlap" zip bomb.
    spans = sorted(
        (info.header_offset, info.header_offset + 30 + info.compress_size) for info in infos if not info.is_dir()
    )
    previous_end = 0
    for start, end in spans:
        if start < previous_end:
            raise ArchiveRejected("has overlapping members (a zip bomb)")
        previous_end = end
    if previous_end > archive_size:
        raise ArchiveRejected("is truncated (members point past its end)")


def iter_archive(fp: BinaryIO, *, limits: ArchiveLimits, on_members=None) -> Iterator[ArchiveEntry]:
    """Yield every member of the zip in `fp`; raises ArchiveRejected for the archive.

    `on_members(infos)` is called once the member list has passed the archive checks.
    """
    zf = _open(fp, limits)
    with zf:
        infos = zf.infolist()
        fp.seek(0, os.SEEK_END)
        archive_size = fp.tell()
        _check_archive(infos, limits, archive_size)
        if on_members is not None:
            on_members(infos)
        total = 0
        for info in infos:
            name = info.filename
            if info.is_dir():
                continue
            reason = unsafe_member_path(name)
            if reason:
                yield ArchiveEntry(name, "rejected", f"{reason} (zip-slip)")
                continue
            file_type = (info.external_attr >> 16) & _S_IFMT
            if file_type == _S_IFLNK:
                yield ArchiveEntry(name, "rejected", "is a symbolic link")
                continue
            if file_type not in (0, _S_IFREG):
                yield ArchiveEntry(name, "rejected", "is not a regular file")
                continue
            if info.flag_bits & 0x1:
                yield ArchiveEntry(name, "rejected", "is encrypted")
                continue
            reason = _skip_reason(name)
            if reason:
                yield ArchiveEntry(name, "skipped", reason)
                continue
            if looks_like_archive_name(name):
                yield ArchiveEntry(name, "rejected", "is an archive; nested archives are not opened")
                continue
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                yield ArchiveEntry(name, "rejected", "uses an unsupported compression method (use deflate or store)")
                continue
            if info.file_size > limits.max_file_bytes:
                yield ArchiveEntry(
                    name, "rejected", f"is {info.file_size:,} bytes, more than the limit of {limits.max_file_bytes:,}"
                )
                continue
            entry, used = _read_member(fp, info, limits, total)
            total += used
            yield entry


def _read_member(
    fp: BinaryIO, info: zipfile.ZipInfo, limits: ArchiveLimits, total_before: int
) -> tuple[ArchiveEntry, int]:
    """The member's bytes (at most max_file_bytes + 1 are ever held) or its rejection."""
    name = info.filename
    fp.seek(info.header_offset)
    header = fp.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        return ArchiveEntry(name, "rejected", "is corrupt (bad local header)"), 0
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    fp.seek(info.header_offset + 30 + name_len + extra_len)

    hasher = hashlib.sha256()
    crc = 0
    chunks: list[bytes] = []
    size = 0
    consumed = 0
    remaining = info.compress_size
    limit = limits.max_file_bytes
    deflated = info.compress_type == zipfile.ZIP_DEFLATED
    inflater = zlib.decompressobj(-15) if deflated else None
    try:
        while True:
            if deflated:
                if inflater.eof:
                    break
                if inflater.unconsumed_tail:
                    raw = inflater.unconsumed_tail
                elif remaining > 0:
                    raw = fp.read(min(RAW_CHUNK, remaining))
                    if not raw:
                        return ArchiveEntry(name, "rejected", "is corrupt (archive ends inside it)"), size
                    remaining -= len(raw)
                else:
                    raw = b""
                out = inflater.decompress(raw, CHUNK)
                consumed += len(raw) - len(inflater.unconsumed_tail)
                if not out and not raw:
                    return ArchiveEntry(name, "rejected", "is corrupt (truncated deflate stream)"), size
            else:
                if remaining <= 0:
                    break
                out = fp.read(min(CHUNK, remaining))
                if not out:
                    return ArchiveEntry(name, "rejected", "is corrupt (archive ends inside it)"), size
                remaining -= len(out)
                consumed += len(out)
            if not out:
                continue
            size += len(out)
            if total_before + size > limits.max_total_bytes:
                raise ArchiveRejected(f"unpacks to more than the limit of {limits.max_total_bytes:,} bytes")
            if size > RATIO_FLOOR_BYTES and size > limits.max_ratio * max(consumed, 1):
                raise ArchiveRejected(f"member {name!r} expands more than {limits.max_ratio:g}:1 (a zip bomb)")
            if size > limit:
                return ArchiveEntry(name, "rejected", f"is more than the limit of {limit:,} bytes"), size
            if size > info.file_size:
                # Headers that understate a member are how bombs get past size checks.
                raise ArchiveRejected(f"member {name!r} unpacks to more than its header says (a zip bomb)")
            hasher.update(out)
            crc = zlib.crc32(out, crc)
            chunks.append(out)
    except zlib.error as exc:
        return ArchiveEntry(name, "rejected", f"is corrupt ({exc})"), size
    if size != info.file_size:
        return ArchiveEntry(name, "rejected", "is corrupt (size differs from its header)"), size
    if crc != info.CRC:
        return ArchiveEntry(name, "rejected", "is corrupt (CRC mismatch)"), size
    return ArchiveEntry(name, "file", data=b"".join(chunks), sha256=hasher.hexdigest()), size
