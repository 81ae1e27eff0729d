"""Reading a registry's answers: bounded bodies, error bodies, typed errors.

Every error response becomes a :class:`~registry_nb.errors.RegistryError` subclass here
(:func:`error_from_response`), whatever shape its body has, so that one place decides
what a 401, a 404 or a registry's error code means.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from ..errors import (
    AuthenticationError,
    BlobNotFoundError,
    ImageNotFoundError,
    ManifestNotFoundError,
    RateLimitedError,
    RegistryError,
    RegistryHTTPError,
)
from .ratelimit import describe_limit

__all__ = ["DROPPED", "MAX_ERROR_BODY", "raw_chunks", "read_bounded", "registry_errors",
           "error_codes", "error_from_response", "raise_for_status"]

#: Most bytes of an error body read (and shown).
MAX_ERROR_BODY = 64 * 1024

#: A connection that broke while a body streamed (requests wraps some, urllib3 raises
#: the rest when the raw stream is read directly).
DROPPED: tuple[type[BaseException], ...] = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    ConnectionError,
    TimeoutError,
)

def raw_chunks(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """The body exactly as sent (no Content-Encoding decoding), in chunks."""
    raw = response.raw
    if hasattr(raw, "stream"):
        yield from raw.stream(chunk_size, decode_content=False)
    else:  # pragma: no cover - a non-urllib3 adapter
        yield from response.iter_content(chunk_size)


def read_bounded(response: requests.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body (works for streamed and read responses)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except (requests.RequestException, OSError):
        pass
    return b"".join(chunks)[:limit]


def registry_errors(response: requests.Response) -> tuple[list[dict[str, Any]], bytes]:
    """The errors of a registry's error body, whatever its shape, and the body.

    The spec's ``{"errors": [{"code", "message"}]}``; a single ``{"error": "…"}``
    (Zot) or an OAuth-style ``{"error", "error_description"}``; a plain-text body (its
    first line). Entries without a code are ``{"message": …}`` only.
    """
    if response.request is not None and response.request.method == "HEAD":
        return [], b""
    try:
        raw = read_bounded(response, MAX_ERROR_BODY)
    finally:
        response.close()
    try:
        data = json.loads(raw)
    except ValueError:
        return _text_errors(response, raw), raw
    if not isinstance(data, dict):
        return [], raw
    errors = data.get("errors")
    if isinstance(errors, list):
        return [e for e in errors if isinstance(e, dict)], raw
    for key in ("error_description", "details", "message", "error"):
        message = data.get(key)
        if isinstance(message, str) and message.strip():
            return [{"message": message.strip()[:_MAX_TEXT]}], raw
    return [], raw


#: Most characters of a plain-text error body shown in a message.
_MAX_TEXT = 200


def _text_errors(response: requests.Response, raw: bytes) -> list[dict[str, Any]]:
    """A plain-text error body as one message (HTML pages and binary bodies: none)."""
    content_type = response.headers.get("Content-Type", "text/plain").lower()
    if not content_type.startswith("text/") or "html" in content_type:
        return []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return []
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if not line or line.startswith("<") or not line.isprintable():
        return []
    return [{"message": line[:_MAX_TEXT]}]


#: The 404 codes that say what is missing; any other code (Harbor's ``UNKNOWN``, …)
#: or none leaves it to the URL.
_NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"})


def _missing_kind(code: str | None, path: str) -> str | None:
    if code in _NOT_FOUND_CODES:
        return code
    if "/manifests/" in path:
        return "MANIFEST_UNKNOWN"
    if "/blobs/" in path and "/blobs/uploads" not in path:
        return "BLOB_UNKNOWN"
    if "/tags/list" in path:
        return "NAME_UNKNOWN"
    return None


def _describe(entry: dict[str, Any]) -> str:
    code, message = entry.get("code"), str(entry.get("message") or "").strip()
    if code and message:
        return f"{code}: {message}"
    return str(code or message)


def error_from_response(response: requests.Response, what: str) -> RegistryError:
    """The typed error for an error response; ``what`` says what was being done.

    401/403 → AuthenticationError (an expired login says to log in again); 404 →
    Manifest/Blob/ImageNotFoundError from the registry's error code, or from the URL
    when the code says nothing precise; others → RegistryHTTPError with the status, the
    first error code and the registry's message.
    """
    status = response.status_code
    errors, raw = registry_errors(response)
    code = str(errors[0].get("code")) if errors and errors[0].get("code") else None
    messages = [text for text in (_describe(e) for e in errors[:3]) if text]
    detail = f" ({'; '.join(messages)})" if messages else ""
    url = response.url or (response.request.url if response.request is not None else "")
    host = urlsplit(url or "").netloc or "the registry"
    path = urlsplit(url or "").path

    if status in (401, 403) and any("expired" in m.lower() for m in messages):
        return AuthenticationError(
            f"{host}: the login has expired, so it cannot {what}{detail}.",
            hint=f"Log in again (`docker login {host}`, or new credentials for "
            "RegistryCredentials; Amazon ECR passwords from `aws ecr get-login-password` "
            "last 12 hours) and try again.",
        )
    if status == 401:
        return AuthenticationError(
            f"{host}: authentication required to {what}{detail}.",
            hint="Pass credentials=RegistryCredentials(...) or run `docker login`.",
        )
    if status == 403:
        return AuthenticationError(
            f"{host}: not allowed to {what}{detail}.",
            hint="The credentials lack this permission; ask the registry's admin for "
            "access or use other credentials.",
        )
    kind = _missing_kind(code, path) if status == 404 else None
    if kind == "MANIFEST_UNKNOWN":
        return ManifestNotFoundError(
            f"cannot {what}: {host} has no such manifest{detail}.",
            hint="Check the repository name and the tag or digest.",
        )
    if kind == "BLOB_UNKNOWN":
        return BlobNotFoundError(
            f"cannot {what}: {host} has no such blob{detail}.",
            hint="The blob may have been garbage-collected or pushed to another repository.",
        )
    if kind == "NAME_UNKNOWN":
        return ImageNotFoundError(
            f"cannot {what}: {host} has no such repository{detail}.",
            hint="Check the repository name (Docker Hub official images live under library/).",
        )
    if status == 429:
        said, parts = describe_limit(response.headers, raw.decode("utf-8", "replace"))
        return RateLimitedError(
            f"cannot {what}: {host} is rate limiting (429 Too Many Requests){detail}.",
            code=code, hint=f"{said} (registry_nb already retried after the wait the "
            "registry asked for.)", **parts,
        )
    hints = {
        405: "The registry does not allow this operation (deletes are often disabled).",
    }
    hint = hints.get(status)
    if status == 400 and b"HTTP request to an HTTPS server" in raw:  # Go's TLS listener
        hint = ("The registry speaks HTTPS: use https://host:port (with ca_bundle= for a "
                "private CA). Loopback hosts without a scheme get plain HTTP.")
    if hint is None and status >= 500:
        hint = "The registry failed internally; try again later or check its logs."
    reason = response.reason or ""
    return RegistryHTTPError(
        f"cannot {what}: {host} answered {status} {reason}{detail}.".replace(" .", "."),
        status=status,
        code=code,
        hint=hint,
    )


def raise_for_status(response: requests.Response, what: str) -> None:
    """Raise :func:`error_from_response` for a status of 400 or more."""
    if response.status_code >= 400:
        raise error_from_response(response, what)


def error_codes(response: requests.Response) -> list[str]:
    """The ``code`` of each entry in a registry's error body (the body is consumed)."""
    errors, _ = registry_errors(response)
    return [str(e["code"]) for e in errors if e.get("code")]
