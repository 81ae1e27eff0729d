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
    """The ``errors`` list of a registry's JSON error body, and the body (bounded read)."""
    if response.request is not None and response.request.method == "HEAD":
        return [], b""
    try:
        raw = read_bounded(response, MAX_ERROR_BODY)
    finally:
        response.close()
    try:
        data = json.loads(raw)
    except ValueError:
        return [], raw
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return [], raw
    return [e for e in errors if isinstance(e, dict)], raw


def error_from_response(response: requests.Response, what: str) -> RegistryError:
    """The typed error for an error response; ``what`` says what was being done.

    401/403 → AuthenticationError; 404 → Manifest/Blob/ImageNotFoundError from the
    registry's error code (or the URL when the body has none); others →
    RegistryHTTPError with the status, the first error code and the registry's message.
    """
    status = response.status_code
    errors, raw = registry_errors(response)
    code = str(errors[0].get("code")) if errors and errors[0].get("code") else None
    messages = [
        f"{e.get('code') or 'ERROR'}: {e.get('message') or ''}".rstrip(": ")
        for e in errors[:3]
    ]
    detail = f" ({'; '.join(messages)})" if messages else ""
    url = response.url or (response.request.url if response.request is not None else "")
    host = urlsplit(url or "").netloc or "the registry"
    path = urlsplit(url or "").path

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
    if status == 404:
        kind = code or ""
        if not kind:
            if "/manifests/" in path:
                kind = "MANIFEST_UNKNOWN"
            elif "/blobs/" in path and "/blobs/uploads" not in path:
                kind = "BLOB_UNKNOWN"
            elif "/tags/list" in path:
                kind = "NAME_UNKNOWN"
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
    """The ``code`` of each entry in a registry's JSON error body (the body is consumed)."""
    errors, _ = registry_errors(response)
    return [str(e.get("code")) for e in errors]
