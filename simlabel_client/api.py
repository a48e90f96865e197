"""A small HTTP wrapper over simlabel's REST API (standard library only).

Every failure is an ApiError whose message is the server's own `detail` (the API
answers `{"detail", "code"}` for every 4xx), or says plainly that the server could
not be reached, so the CLI can print it as it is.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from simlabel_client import __version__

USER_AGENT = f"simlabel-client/{__version__}"
READ_CHUNK = 256 * 1024
ByteCallback = Callable[[int], None]


class ApiError(Exception):
    """A request that did not succeed: `status` is the HTTP status (None when no answer came)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, body: Any = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.body = body if body is not None else {}

    def __str__(self) -> str:
        return self.message


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would replay the token (and turn an upload into a GET) somewhere else: refuse, and say where.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise ApiError(
            f"The server redirected {req.get_method()} {req.full_url} to {newurl}; "
            "log in again with the URL it points to (e.g. https://…).",
            status=code,
            code="redirect",
        )


_OPENER = urllib.request.build_opener(_NoRedirects)


def normalize_url(url: str) -> str:
    """The server's base URL: scheme and host (and any path prefix), without a trailing slash or /api."""
    url = (url or "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(f"Not a server URL: {url!r} (expected http://host:port or https://host).", code="bad_url")
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _error_from_response(status: int, reason: str, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if isinstance(body, dict) and body.get("detail"):
        message, code = str(body["detail"]), body.get("code")
    else:
        # Not the API's JSON (a proxy's page, a server error): the status line says the most.
        message, code = f"HTTP {status} {reason}".strip(), None
    if code == "token_expired" or (status == 401 and code in ("authentication_failed", "not_authenticated")):
        message += " Run `simlabel login` to get a new token."
    return ApiError(message, status=status, code=code, body=body if isinstance(body, dict) else {})


# --- multipart bodies, streamed from disk ------------------------------------------------------------------


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def _disposition(field: str, filename: str | None = None) -> str:
    text = f'form-data; name="{_quoted(field)}"'
    if filename is None:
        return text
    ascii_name = filename.encode("ascii", "replace").decode("ascii")
    text += f'; filename="{_quoted(ascii_name)}"'
    if ascii_name != filename:
        # RFC 2231 / 5987, which Django reads in preference to the ASCII fallback before it.
        text += f"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"
    return text


class MultipartBody:
    """A multipart/form-data body that reads its files while it is sent, with its length known first
    (so no chunked encoding is needed); `on_bytes` hears of each file chunk sent."""

    def __init__(
        self,
        fields: list[tuple[str, str]],
        files: list[tuple[str, Path]],
        on_bytes: ByteCallback | None = None,
    ):
        self.boundary = "simlabel-" + secrets.token_hex(16)
        self.on_bytes = on_bytes
        self._parts: list[bytes | Path] = []
        for name, value in fields:
            head = f"--{self.boundary}\r\nContent-Disposition: {_disposition(name)}\r\n\r\n"
            self._parts.append(head.encode("utf-8") + value.encode("utf-8") + b"\r\n")
        for name, path in files:
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            head = (
                f"--{self.boundary}\r\nContent-Disposition: {_disposition(name, path.name)}\r\n"
                f"Content-Type: {ctype}\r\n\r\n"
            )
            self._parts += [head.encode("utf-8"), path, b"\r\n"]
        self._parts.append(f"--{self.boundary}--\r\n".encode())
        self.length = sum(part.stat().st_size if isinstance(part, Path) else len(part) for part in self._parts)
        self.content_type = f"multipart/form-data; boundary={self.boundary}"

    def __iter__(self) -> Iterator[bytes]:
        for part in self._parts:
            if not isinstance(part, Path):
                yield part
                continue
            with part.open("rb") as fh:
                while chunk := fh.read(READ_CHUNK):
                    yield chunk
                    if self.on_bytes:
                        self.on_bytes(len(chunk))


# --- the client ----------------------------------------------------------------------------------------------


@dataclass
class Client:
    url: str
    token: str | None = None
    timeout: float = 300.0

    def __post_init__(self):
        self.url = normalize_url(self.url)

    # -- transport

    def open(
        self,
        method: str,
        path: str,
        *,
        query: dict | None = None,
        json_body: Any = None,
        body: MultipartBody | None = None,
        auth: bool = True,
    ):
        """Sends one request and returns the open response (2xx), else raises ApiError."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        data: Any = None
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif body is not None:
            data = body
            headers["Content-Type"] = body.content_type
            headers["Content-Length"] = str(body.length)
        if auth:
            if not self.token:
                raise ApiError("Not logged in: run `simlabel login` (or set SIMLABEL_TOKEN).", code="no_token")
            headers["Authorization"] = f"Token {self.token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            return _OPENER.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                raise _error_from_response(exc.code, exc.reason or "", exc.read()) from None
        except urllib.error.URLError as exc:
            if body is not None and isinstance(exc.reason, (BrokenPipeError, ConnectionResetError)):
                # The server answered (a 413, most likely) and hung up before reading the whole body.
                raise ApiError(
                    f"The server closed the connection while {body.length} bytes were being sent; it may "
                    "refuse requests this large (SIMLABEL_MAX_UPLOAD_BYTES): send less at once.",
                    code="connection_closed",
                ) from None
            raise ApiError(f"Cannot reach the server at {self.url}: {exc.reason}", code="unreachable") from None
        except OSError as exc:  # a timeout or a dropped connection while sending
            raise self._transport_error(exc) from None

    def _transport_error(self, exc: OSError) -> ApiError:
        if isinstance(exc, TimeoutError):
            return ApiError(f"The server at {self.url} did not answer within {self.timeout:g} s.", code="timeout")
        return ApiError(f"The connection to {self.url} failed: {exc}", code="unreachable")

    def _read(self, response, size: int = -1) -> bytes:
        try:
            return response.read(size)
        except OSError as exc:
            raise self._transport_error(exc) from None

    def call(self, method: str, path: str, **options) -> Any:
        """One request whose answer is JSON (or empty, for a 204)."""
        with self.open(method, path, **options) as response:
            raw = self._read(response)
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(f"The server's answer to {method} {path} is not JSON.", code="bad_response") from None

    # -- auth

    def obtain_token(self, username: str, password: str) -> dict:
        """`{token, expires}` for the user; the server throttles failed attempts (429)."""
        return self.call("POST", "/api/auth/token/", json_body={"username": username, "password": password}, auth=False)

    def revoke_token(self) -> None:
        self.call("DELETE", "/api/auth/token/")

    # -- datasets

    def datasets(self) -> list[dict]:
        """Every dataset the user is a member of, page after page."""
        found, page = [], 1
        while True:
            answer = self.call("GET", "/api/datasets/", query={"page": page, "page_size": 500})
            found += answer["results"]
            if not answer.get("next"):
                return found
            page += 1

    def dataset(self, reference: str) -> dict:
        """A dataset by id, or by its exact name among the user's datasets."""
        reference = str(reference).strip()
        if reference.isdigit():
            try:
                return self.call("GET", f"/api/datasets/{int(reference)}/")
            except ApiError as exc:
                if exc.status == 404:  # the server says the same of datasets that exist but are not yours
                    exc.message = f"Dataset {reference}: {exc.message} (`simlabel datasets` lists yours)"
                raise
        matches = [d for d in self.datasets() if d["name"] == reference]
        if not matches:
            raise ApiError(f"No dataset named {reference!r} among yours (see `simlabel datasets`).", status=404)
        if len(matches) > 1:
            ids = ", ".join(str(d["id"]) for d in matches)
            raise ApiError(f"Several of your datasets are named {reference!r} (ids {ids}): give the id.")
        return matches[0]

    # -- images

    def upload(self, dataset_id: int, paths: list[Path], on_bytes: ByteCallback | None = None) -> dict:
        """Uploads image files and/or .zip archives in one request: `{created, skipped, rejected, …}`."""
        body = MultipartBody([], [("files", path) for path in paths], on_bytes=on_bytes)
        return self.call("POST", f"/api/datasets/{dataset_id}/images/", body=body)

    # -- runs

    def start_run(self, dataset_id: int, params: dict) -> dict:
        return self.call("POST", f"/api/datasets/{dataset_id}/runs/", json_body=params)

    def run(self, run_id: int) -> dict:
        return self.call("GET", f"/api/runs/{run_id}/")

    # -- labels

    def export(self, dataset_id: int, fmt: str, out: BinaryIO, *, query: dict | None = None, on_bytes=None) -> int:
        """Streams the export into `out` (`query`: more of the export's parameters); returns the bytes written."""
        query = {"format": fmt, **(query or {})}
        written = 0
        with self.open("GET", f"/api/datasets/{dataset_id}/export/", query=query) as response:
            while chunk := self._read(response, READ_CHUNK):
                out.write(chunk)
                written += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
        return written

    def import_labels(
        self, dataset_id: int, path: Path, fmt: str, *, create_classes: bool = False, only_unlabeled: bool = False
    ) -> dict:
        """`{action_id, rows, matched, updated, unchanged, unmatched_count, unmatched, ambiguous_count, …}`."""
        fields = [("format", fmt)]
        if create_classes:
            fields.append(("create_classes", "true"))
        if only_unlabeled:
            fields.append(("only_unlabeled", "true"))
        body = MultipartBody(fields, [("file", path)])
        return self.call("POST", f"/api/datasets/{dataset_id}/annotations/import/", body=body)
