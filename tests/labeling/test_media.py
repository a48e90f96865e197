"""/images/<id>/file/ and /images/<id>/thumbnail/: members only, real image types, never HTML."""

import pytest
from django.test import Client
from ingest_files import image_bytes, upload
from rest_framework.authtoken.models import Token

from labeling.models import Image
from labeling.services.images import images_ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(admin_dataset):
    dataset, admin = admin_dataset
    report = images_ingest(
        dataset=dataset,
        user=admin,
        files=[
            upload('<script>alert(1)</script>".png', image_bytes("PNG", seed=1)),
            upload("photo.html", image_bytes("JPEG", size=(300, 200), seed=2)),  # a JPEG whose name says HTML
        ],
    )
    png, jpeg = (Image.objects.get(pk=c["id"]) for c in report.created)
    return dataset, admin, png, jpeg


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_member_gets_the_original_with_its_real_type(stored, make_user, make_dataset):
    dataset, admin, png, jpeg = stored
    annotator = make_user("annotator")
    dataset.memberships.create(user=annotator, role="annotator")
    client = logged_in(annotator)
    response = client.get(f"/images/{png.pk}/file/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("inline")
    assert "<" not in response["Content-Disposition"] and '\\"' not in response["Content-Disposition"]
    assert "private" in response["Cache-Control"] and "max-age=" in response["Cache-Control"]
    assert "sandbox" in response["Content-Security-Policy"]
    assert body(response) == image_bytes("PNG", seed=1)
    # The type comes from the verified format, never from the name.
    response = client.get(f"/images/{jpeg.pk}/file/")
    assert response["Content-Type"] == "image/jpeg"
    assert "html" not in response["Content-Type"]


def test_thumbnail_is_served_as_an_image(stored):
    dataset, admin, png, jpeg = stored
    client = logged_in(admin)
    for image in (png, jpeg):
        response = client.get(f"/images/{image.pk}/thumbnail/")
        assert response.status_code == 200
        assert response["Content-Type"] in ("image/png", "image/webp")
        assert response["X-Content-Type-Options"] == "nosniff"
        data = body(response)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" or data[8:12] == b"WEBP"


def test_non_members_get_404_like_a_missing_image(stored, make_user, make_dataset):
    dataset, admin, png, _ = stored
    stranger = make_user("stranger")
    make_dataset("Theirs", admin=stranger)
    client = logged_in(stranger)
    for url in (f"/images/{png.pk}/file/", f"/images/{png.pk}/thumbnail/", "/images/999999/file/"):
        assert client.get(url).status_code == 404


def test_anonymous_browser_is_sent_to_login(stored):
    _, _, png, _ = stored
    response = Client().get(f"/images/{png.pk}/file/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_api_clients_can_use_a_token(stored, make_user):
    dataset, admin, png, _ = stored
    token = Token.objects.create(user=admin)
    client = Client()
    response = client.get(f"/images/{png.pk}/file/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert client.get(f"/images/{png.pk}/file/", HTTP_AUTHORIZATION="Token not-a-token").status_code == 401
    outsider = make_user("outsider")
    other_token = Token.objects.create(user=outsider)
    response = client.get(f"/images/{png.pk}/file/", HTTP_AUTHORIZATION=f"Token {other_token.key}")
    assert response.status_code == 404


def test_etag_gives_304_and_writes_are_refused(stored):
    _, admin, png, _ = stored
    client = logged_in(admin)
    first = client.get(f"/images/{png.pk}/thumbnail/")
    again = client.get(f"/images/{png.pk}/thumbnail/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert client.post(f"/images/{png.pk}/file/").status_code == 405


def test_missing_file_is_404(stored):
    from django.core.files.storage import default_storage

    _, admin, png, _ = stored
    default_storage.delete(png.file.name)
    assert logged_in(admin).get(f"/images/{png.pk}/file/").status_code == 404


def test_s3_storage_redirects_to_a_presigned_url(stored, settings):
    _, admin, png, _ = stored
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "simlabel-test",
                "endpoint_url": "http://127.0.0.1:9",
                "access_key": "test",
                "secret_key": "test-secret",
                "region_name": "us-east-1",
                "querystring_auth": True,
                "querystring_expire": 600,
            },
        },
    }
    response = logged_in(admin).get(f"/images/{png.pk}/file/")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("http://127.0.0.1:9/simlabel-test/")
    assert "Signature=" in location and "Expires=" in location or "X-Amz-Signature=" in location
    assert "response-content-type=image%2Fpng" in location
