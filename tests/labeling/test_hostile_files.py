"""Hostile uploads (issue 7 section 1): each is refused clearly and leaves nothing behind."""

import io
import tracemalloc
import zipfile

import pytest
from django.core.files import File
from ingest_files import (
    RawMember,
    bomb_png,
    deflated_zeros,
    image_bytes,
    raw_zip,
    row_names,
    storage_names,
    upload,
    zip_of,
)

from core.errors import PayloadTooLarge, ValidationFailed
from labeling.models import Image
from labeling.services.images import images_ingest

pytestmark = pytest.mark.django_db


def ingest(dataset, user, *files):
    return images_ingest(dataset=dataset, user=user, files=list(files))


def rejected_by_name(report):
    return {entry["name"]: entry["error"] for entry in report.rejected}


def assert_consistent(dataset):
    """No file without its row, no row without its file."""
    assert storage_names(dataset.pk) == row_names(dataset.pk)


GOOD = image_bytes("PNG", seed=1)


@pytest.mark.parametrize(
    "member, reason",
    [
        ("../x.png", "'..'"),
        ("/etc/x.png", "absolute"),
        ("C:\\x.png", "drive-letter"),
        ("C:/x.png", "drive-letter"),
        ("a/../../x.png", "'..'"),
        ("..\\..\\x.png", "'..'"),
        ("\\\\server\\share\\x.png", "absolute"),
    ],
)
def test_zip_slip_member_is_rejected_and_the_rest_stored(admin_dataset, member, reason):
    dataset, admin = admin_dataset
    data = raw_zip([RawMember(member, image_bytes(seed=7)), RawMember("ok/good.png", GOOD)])
    report = ingest(dataset, admin, upload("slip.zip", data))
    errors = rejected_by_name(report)
    assert reason in errors[f"slip.zip:{member}"]
    assert "zip-slip" in errors[f"slip.zip:{member}"]
    assert [c["name"] for c in report.created] == ["good.png"]
    assert Image.objects.filter(dataset=dataset).count() == 1
    assert_consistent(dataset)


def test_symlink_member_is_rejected(admin_dataset):
    dataset, admin = admin_dataset
    data = raw_zip(
        [
            RawMember("link.png", b"/etc/passwd", external_attr=(0o120777 << 16)),
            RawMember("good.png", GOOD),
        ]
    )
    report = ingest(dataset, admin, upload("links.zip", data))
    assert rejected_by_name(report) == {"links.zip:link.png": "is a symbolic link"}
    assert len(report.created) == 1


def test_encrypted_member_is_rejected(admin_dataset):
    dataset, admin = admin_dataset
    data = raw_zip([RawMember("secret.png", image_bytes(seed=3), flag_bits=0x1), RawMember("good.png", GOOD)])
    report = ingest(dataset, admin, upload("enc.zip", data))
    assert rejected_by_name(report) == {"enc.zip:secret.png": "is encrypted"}
    assert len(report.created) == 1
    assert_consistent(dataset)


def test_nested_zip_is_not_opened(admin_dataset):
    dataset, admin = admin_dataset
    inner = zip_of({"inner.png": image_bytes(seed=4)})
    data = zip_of({"inner.zip": inner, "disguised.png": inner, "good.png": GOOD})
    report = ingest(dataset, admin, upload("outer.zip", data))
    errors = rejected_by_name(report)
    assert "nested archives are not opened" in errors["outer.zip:inner.zip"]
    assert "ZIP archive" in errors["outer.zip:disguised.png"]
    assert [c["name"] for c in report.created] == ["good.png"]
    assert not Image.objects.filter(original_name="inner.png").exists()


def test_macos_metadata_and_dotfiles_are_skipped_with_reason(admin_dataset):
    dataset, admin = admin_dataset
    data = zip_of({"__MACOSX/._good.png": b"\x00\x05\x16\x07", ".DS_Store": b"junk", "dir/": b"", "good.png": GOOD})
    report = ingest(dataset, admin, upload("mac.zip", data))
    reasons = {s["name"]: s["reason"] for s in report.skipped}
    assert reasons == {
        "mac.zip:__MACOSX/._good.png": "macOS resource-fork metadata",
        "mac.zip:.DS_Store": "hidden file",
    }
    assert not report.rejected and len(report.created) == 1


def test_one_huge_member_of_zeros_with_a_lying_header_is_a_bomb(admin_dataset):
    """200 MB of zeros (200 KB compressed) whose headers claim 1,000 bytes."""
    dataset, admin = admin_dataset
    zeros = deflated_zeros(200 * 1024 * 1024)
    data = raw_zip(
        [
            RawMember("good.png", GOOD),
            RawMember("bomb.png", b"\x00" * 1000, method=zipfile.ZIP_DEFLATED, compressed=zeros, declared_size=1000),
            RawMember("after.png", image_bytes(seed=9)),
        ]
    )
    tracemalloc.start()
    try:
        report = ingest(dataset, admin, upload("bomb.zip", data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Only the first member was stored; the archive-level error stopped the rest.
    assert [c["name"] for c in report.created] == ["good.png"]
    errors = rejected_by_name(report)
    assert "bomb" in errors["bomb.zip"] and "the rest of the archive was not read" in errors["bomb.zip"]
    assert "bomb.zip:after.png" not in errors
    assert peak < 16 * 1024 * 1024, f"peak {peak:,} bytes while reading a 200 MB bomb"
    assert_consistent(dataset)


def test_one_huge_member_with_an_honest_header_is_refused_before_reading(admin_dataset, settings):
    dataset, admin = admin_dataset
    settings.SIMLABEL_MAX_ARCHIVE_BYTES = 50 * 1024 * 1024
    zeros = deflated_zeros(64 * 1024 * 1024)
    data = raw_zip(
        [
            RawMember(
                "big.bmp", b"", method=zipfile.ZIP_DEFLATED, compressed=zeros, declared_size=64 * 1024 * 1024, crc=0
            )
        ]
    )
    report = ingest(dataset, admin, upload("big.zip", data))
    assert "would unpack to" in rejected_by_name(report)["big.zip"]
    assert not report.created


def test_member_over_the_file_limit_is_rejected_per_member(admin_dataset, settings):
    dataset, admin = admin_dataset
    settings.SIMLABEL_MAX_FILE_BYTES = 2000
    big = image_bytes("BMP", size=(40, 40), seed=2)  # ~4.8 KB, stored uncompressed
    data = raw_zip(
        [
            RawMember("big.bmp", big),
            RawMember("small.png", image_bytes("PNG", size=(8, 8), seed=2)),
        ]
    )
    report = ingest(dataset, admin, upload("sizes.zip", data))
    assert "more than the limit of 2,000" in rejected_by_name(report)["sizes.zip:big.bmp"]
    assert [c["name"] for c in report.created] == ["small.png"]


def test_member_bigger_than_its_header_stops_the_archive(admin_dataset):
    dataset, admin = admin_dataset
    big = image_bytes("BMP", size=(40, 40), seed=2)
    data = raw_zip(
        [
            RawMember("first.png", GOOD),
            RawMember("liar.bmp", big, declared_size=100),  # header claims 100 bytes
            RawMember("after.png", image_bytes(seed=3)),
        ]
    )
    report = ingest(dataset, admin, upload("liar.zip", data))
    assert "more than its header says" in rejected_by_name(report)["liar.zip"]
    assert [c["name"] for c in report.created] == ["first.png"]


def test_member_with_an_honest_header_but_a_bomb_ratio_stops_the_archive(admin_dataset):
    dataset, admin = admin_dataset
    n = 10 * 1024 * 1024  # under the 20 MB file limit, but 1000:1
    data = raw_zip(
        [RawMember("flat.bmp", b"", method=zipfile.ZIP_DEFLATED, compressed=deflated_zeros(n), declared_size=n, crc=0)]
    )
    tracemalloc.start()
    try:
        report = ingest(dataset, admin, upload("ratio.zip", data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "expands more than 200:1" in rejected_by_name(report)["ratio.zip"]
    assert peak < 4 * 1024 * 1024


def test_too_many_members_are_refused_from_the_end_record(admin_dataset, settings):
    """100,000 tiny members; the archive is refused before its directory is parsed."""
    dataset, admin = admin_dataset
    settings.SIMLABEL_MAX_ARCHIVE_MEMBERS = 50_000
    data = raw_zip([RawMember(f"{i}.png", b"x") for i in range(100_000)])
    tracemalloc.start()
    try:
        report = ingest(dataset, admin, upload("many.zip", data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "100,000 members, more than the limit of 50,000" in rejected_by_name(report)["many.zip"]
    assert not report.created
    # Parsing 100,000 ZipInfo objects would take far more than this.
    assert peak < 4 * 1024 * 1024 + len(data)


def test_too_many_members_with_a_lying_end_record_are_refused(admin_dataset, settings):
    dataset, admin = admin_dataset
    settings.SIMLABEL_MAX_ARCHIVE_MEMBERS = 100
    data = bytearray(raw_zip([RawMember(f"{i}.png", b"x") for i in range(300)]))
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = (5).to_bytes(2, "little") * 2  # claims 5 members
    report = ingest(dataset, admin, upload("liar.zip", bytes(data)))
    assert "300 members" in rejected_by_name(report)["liar.zip"]


def test_overlapping_members_are_a_bomb(admin_dataset):
    dataset, admin = admin_dataset
    good = zip_of({"a.png": GOOD}, method=zipfile.ZIP_STORED)
    # Duplicate the central record so two members share the same data.
    cd_start = good.rfind(b"PK\x01\x02")
    end = good.rfind(b"PK\x05\x06")
    record = good[cd_start:end]
    eocd = bytearray(good[end:])
    eocd[8:12] = (2).to_bytes(2, "little") * 2
    eocd[12:16] = (2 * len(record)).to_bytes(4, "little")
    data = good[:cd_start] + record + record + bytes(eocd)
    report = ingest(dataset, admin, upload("overlap.zip", data))
    assert "overlapping" in rejected_by_name(report)["overlap.zip"]
    assert not report.created


def test_not_a_zip_named_zip(admin_dataset):
    dataset, admin = admin_dataset
    report = ingest(dataset, admin, upload("fake.zip", b"<html>hi</html>"))
    assert rejected_by_name(report) == {"fake.zip": "is not a valid zip archive; nothing from it was stored"}


# --- single files ----------------------------------------------------------------------------------


def test_decompression_bomb_png_is_rejected_before_decoding(admin_dataset):
    dataset, admin = admin_dataset
    data = bomb_png(20_000, 20_000)  # 400 million pixels in a few hundred KB
    assert len(data) < 1_000_000
    tracemalloc.start()
    try:
        report = ingest(dataset, admin, upload("bomb.png", data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = rejected_by_name(report)["bomb.png"]
    assert "400,000,000 pixels" in error or "decompression bomb" in error
    assert peak < 10 * 1024 * 1024


def test_pillows_bomb_warning_is_an_error_even_when_our_limit_is_higher(admin_dataset, settings):
    """10,000 x 10,000 is above Pillow's warning threshold but below its hard error."""
    from PIL import Image as PILImage

    dataset, admin = admin_dataset
    settings.SIMLABEL_MAX_IMAGE_PIXELS = 10**10
    assert PILImage.MAX_IMAGE_PIXELS < 10_000 * 10_000 < 2 * PILImage.MAX_IMAGE_PIXELS
    report = ingest(dataset, admin, upload("warn.png", bomb_png(10_000, 10_000)))
    assert "decompression bomb" in rejected_by_name(report)["warn.png"]
    assert not report.created


def test_truncated_png_and_jpeg_are_rejected(admin_dataset):
    dataset, admin = admin_dataset
    png = image_bytes("PNG", size=(256, 256), seed=5)
    jpeg = image_bytes("JPEG", size=(1024, 768), seed=5, quality=90)
    report = ingest(dataset, admin, upload("cut.png", png[: len(png) // 2]), upload("cut.jpg", jpeg[: len(jpeg) // 2]))
    errors = rejected_by_name(report)
    assert "truncated or corrupt" in errors["cut.png"]
    assert "truncated or corrupt" in errors["cut.jpg"]
    assert not report.created
    assert_consistent(dataset)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", "HTML document"),
        (b"  <html><img src=x onerror=alert(1)>", "HTML document"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "SVG"),
        (b"<svg onload=alert(1)>", "SVG"),
        (b"%PDF-1.4 ...", "PDF"),
        (b"just some text", "not a supported image"),
        (b"", "empty (0 bytes)"),
    ],
)
def test_non_images_named_png_are_rejected(admin_dataset, content, expected):
    dataset, admin = admin_dataset
    report = ingest(dataset, admin, upload("x.png", content))
    assert expected in rejected_by_name(report)["x.png"]
    assert not Image.objects.filter(dataset=dataset).exists()
    assert_consistent(dataset)


def test_file_over_the_size_limit_is_rejected_unread(admin_dataset, settings):
    dataset, admin = admin_dataset
    settings.SIMLABEL_MAX_FILE_BYTES = 1000
    big = image_bytes("BMP", size=(64, 64), seed=1)
    report = ingest(dataset, admin, upload("big.bmp", big), upload("small.png", image_bytes(size=(4, 4), seed=2)))
    assert "larger than the limit of 1,000 bytes" in rejected_by_name(report)["big.bmp"]
    assert len(report.created) == 1


def test_more_files_than_the_request_limit_is_413(admin_dataset, settings):
    dataset, admin = admin_dataset
    settings.SIMLABEL_MAX_FILES_PER_REQUEST = 3
    files = [upload(f"{i}.png", image_bytes(size=(4, 4), seed=i)) for i in range(4)]
    with pytest.raises(PayloadTooLarge) as exc:
        ingest(dataset, admin, *files)
    assert exc.value.status_code == 413
    assert "limit is 3" in exc.value.message
    assert not Image.objects.exists()
    assert ingest(dataset, admin, *files[:3]).as_dict()["counts"]["created"] == 3


def test_upload_over_the_total_byte_limit_is_413(admin_dataset, settings):
    dataset, admin = admin_dataset
    settings.SIMLABEL_MAX_UPLOAD_BYTES = 100
    with pytest.raises(PayloadTooLarge):
        ingest(dataset, admin, upload("a.png", image_bytes(seed=1)))


def test_no_files_is_a_validation_error(admin_dataset):
    dataset, admin = admin_dataset
    with pytest.raises(ValidationFailed):
        images_ingest(dataset=dataset, user=admin, files=[])


def test_hostile_names_are_stored_as_plain_base_names(admin_dataset):
    dataset, admin = admin_dataset
    name = "<img src=x onerror=alert(1)>\u202e\x00gnp.png"
    # django.core.files.File keeps the name as given (UploadedFile would trim it first).
    long_name = File(io.BytesIO(image_bytes(seed=12)), name="dir/" + "a" * 400 + ".png")
    report = ingest(dataset, admin, File(io.BytesIO(image_bytes(seed=11)), name="../../" + name), long_name)
    stored = sorted(Image.objects.filter(dataset=dataset).values_list("original_name", flat=True), key=len)
    assert stored[0] == "<img src=x onerror=alert(1)>gnp.png"  # inert text; templates escape it
    assert len(stored[1]) == 255 and stored[1].endswith(".png")
    assert len(report.created) == 2
