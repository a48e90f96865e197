"""Serving image files and thumbnails to members of their dataset only.

Files are never served from a public media URL: every request is checked
here. Anyone who is not a member gets the same 404 as for a missing image.
The content type comes from the format verified at upload, never from the
file name, and `nosniff` stops browsers from second-guessing it, so an
upload can never be rendered as HTML.
"""

from django.contrib.auth.views import redirect_to_login
from django.core.files.storage import FileSystemStorage
from django.http import FileResponse, Http404, HttpResponse, HttpResponseNotModified, HttpResponseRedirect
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe
from rest_framework import exceptions as drf_exceptions
from rest_framework.authentication import get_authorization_header

from core.api.authentication import ExpiringTokenAuthentication
from core.object_storage import original_url
from core.permissions import membership_role, role_allows
from labeling.models import Image
from labeling.uploads import CONTENT_TYPES, clean_text

THUMBNAIL_TYPES = {".webp": "image/webp", ".png": "image/png"}
CACHE_SECONDS = 3600
# Even if a browser were talked into rendering a response as a document, it
# could run nothing and load nothing.
MEDIA_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


# The action the image files need in the roles x actions table.
MEDIA_ACTION = "view"


def _request_user(request):
    """The session user, or the user of an `Authorization: Token ...` header (API clients)."""
    auth = get_authorization_header(request).split()
    if auth and auth[0].lower() == b"token":
        try:
            result = ExpiringTokenAuthentication().authenticate(request)  # expired tokens fetch nothing either
        except drf_exceptions.AuthenticationFailed:
            return None, True
        if result is not None:
            return result[0], True
    return request.user, False


def _safe_filename(name: str, fallback: str) -> str:
    name = clean_text(name or "", 200).replace('"', "").replace("\\", "").replace("/", "")
    return name or fallback


def _serve(request, image_id: int, which: str):
    user, by_token = _request_user(request)
    if user is None:  # a token was sent and is wrong
        response = HttpResponse("Invalid token.", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = "Token"
        return response
    if not user.is_authenticated:
        if by_token:
            raise Http404("No such image.")
        return redirect_to_login(request.get_full_path())
    image = (
        Image.objects.filter(pk=image_id)
        .only(
            "id",
            "dataset_id",
            "file",
            "thumbnail",
            "format",
            "sha256",
            "original_name",
            "storage",
            "storage_key",
            "missing_since",
        )
        .first()
    )
    # Not a member, or a role the table does not let see images: the image does not exist for them.
    if image is None or not role_allows(membership_role(user, image.dataset_id), MEDIA_ACTION):
        raise Http404("No such image.")

    field = image.file if which == "file" else image.thumbnail
    in_bucket = which == "file" and not field.name and image.storage_id is not None
    if not field.name and not in_bucket:
        raise Http404("No such file.")
    if which == "file":
        content_type = CONTENT_TYPES.get(image.format)
        filename = _safe_filename(image.original_name, f"image-{image.pk}")
    else:
        ext = field.name[field.name.rfind(".") :].lower()
        content_type = THUMBNAIL_TYPES.get(ext)
        filename = f"thumbnail-{image.pk}{ext}"
    if content_type is None:  # never guess: an unknown type is not served
        raise Http404("No such file.")

    if in_bucket:  # kept where it lives (labeling.services.storages): a short-lived presigned URL
        if image.missing_since is not None:
            raise Http404("The original is no longer in its bucket.")
        response = HttpResponseRedirect(original_url(image, content_type=content_type, filename=filename))
        patch_cache_control(response, private=True, no_store=True)
        return response

    etag = f'"{image.sha256}-{which}"'
    storage = field.storage
    if not isinstance(storage, FileSystemStorage):
        # S3 and friends: a short-lived presigned URL that carries the same headers.
        params = {
            "ResponseContentType": content_type,
            "ResponseContentDisposition": f'inline; filename="{filename}"',
            "ResponseCacheControl": f"private, max-age={CACHE_SECONDS}",
        }
        try:
            url = storage.url(field.name, parameters=params)
        except TypeError:
            url = storage.url(field.name)
        response = HttpResponseRedirect(url)
        patch_cache_control(response, private=True, no_store=True)
        return response

    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponseNotModified()
    else:
        try:
            handle = storage.open(field.name, "rb")
        except FileNotFoundError:
            raise Http404("No such file.") from None
        response = FileResponse(handle, content_type=content_type, as_attachment=False, filename=filename)
    response["ETag"] = etag
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = MEDIA_CSP
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    patch_cache_control(response, private=True, max_age=CACHE_SECONDS)
    response["Vary"] = "Cookie, Authorization"
    return response


@require_safe
def image_file(request, image_id: int):
    return _serve(request, image_id, "file")


@require_safe
def image_thumbnail(request, image_id: int):
    return _serve(request, image_id, "thumbnail")


# Declared like the pages' (core.pages.dataset_page), so tests/core/test_routes.py checks these routes too;
# _serve enforces it itself because it also answers token clients, which the page decorator does not.
image_file.dataset_action = image_thumbnail.dataset_action = MEDIA_ACTION
