"""Blob uploads: mounts, one-PUT uploads, resumable chunked uploads and streams.

Uploads survive dropped connections: a chunked upload asks the registry how much
it holds (its ``Range``) and goes on from there; when the registry has lost or
cancelled the upload session (distribution does when a PATCH was cut halfway),
the upload starts again from the first byte.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any
from urllib.parse import urlencode

import requests

from ..errors import (
    AuthenticationError,
    DigestMismatchError,
    RegistryHTTPError,
    RegistryUnavailableError,
)
from ..oci.reference import parse_digest
from .auth import repository_scope
from .responses import error_codes, raise_for_status
from .transport import Transport

__all__ = ["BlobUploader", "BlobProgress", "MONOLITHIC_LIMIT", "UPLOAD_CHUNK"]

log = logging.getLogger(__name__)

#: Blobs up to this size are uploaded in one PUT; larger ones in PATCH chunks.
MONOLITHIC_LIMIT = 8 * 1024 * 1024
#: Size of one PATCH chunk for large uploads (raised to OCI-Chunk-Min-Length). One
#: chunk is in memory per blob in flight; 8 MiB uploads as fast as 32 MiB here.
UPLOAD_CHUNK = 8 * 1024 * 1024
#: Times a dropped upload is resumed (or restarted) before giving up.
RESUME_ATTEMPTS = 3

#: Receives (bytes done, bytes total or None) while a blob moves.
BlobProgress = Callable[[int, "int | None"], None]

#: Registry error codes meaning the upload session is gone and must start again.
_UPLOAD_GONE_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
#: Statuses after which a chunk is re-sent from the registry's Range (after a pause).
_PATCH_RETRY_STATUSES = frozenset({429, 502, 503, 504})


class _UploadLost(Exception):
    """The registry no longer has the upload session (or never got its bytes)."""


def _push_scope(repository: str) -> list[str]:
    return [repository_scope(repository, "pull", "push")]


def _range_end(value: str) -> int | None:
    """Bytes held according to an upload ``Range`` (``0-N`` or ``bytes=0-N``).

    distribution answers ``0-0`` both for an empty upload and for one byte; it is
    read as empty (a resume then either succeeds or meets 416 and restarts).
    """
    value = value.strip()
    if value.startswith("bytes="):
        value = value[len("bytes="):]
    start, sep, end = value.partition("-")
    if not sep or not start.strip().isdigit() or not end.strip().isdigit():
        return None
    last = int(end)
    return 0 if last == 0 else last + 1



class BlobUploader:
    """Uploads blobs to one registry through its transport.

    ``blob_exists(repository, digest)`` answers whether the registry already holds a
    blob (a HEAD); it is asked before uploading and after a lost upload session.
    """

    def __init__(self, transport: Transport,
                 blob_exists: Callable[[str, str], bool]) -> None:
        self.transport = transport
        self.blob_exists = blob_exists

    def mount(self, repository: str, digest: str, from_repository: str
               ) -> tuple[str | None, int]:
        parse_digest(digest)
        query = urlencode({"mount": digest, "from": from_repository})
        response = self.transport.request(
            "POST", f"/v2/{repository}/blobs/uploads/?{query}",
            scopes=[*_push_scope(repository), repository_scope(from_repository)],
        )
        self._raise_push(response, f"mount the blob {digest} into {repository}", repository)
        response.close()
        if response.status_code == 201:
            return None, 0
        return self._location(response, repository), self._min_chunk(response)

    def _start_upload(self, repository: str) -> tuple[str, int]:
        response = self.transport.request(
            "POST", f"/v2/{repository}/blobs/uploads/",
            scopes=_push_scope(repository),
        )
        self._raise_push(response, f"start a blob upload to {repository}", repository)
        response.close()
        return self._location(response, repository), self._min_chunk(response)

    @staticmethod
    def _raise_push(response: requests.Response, what: str, repository: str) -> None:
        """raise_for_status, with a hint that names push rights when access is refused."""
        try:
            raise_for_status(response, what)
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"{exc.message} Pushing to {repository} needs push access.",
                hint=exc.hint or "Use credentials allowed to push to this repository.",
            ) from exc

    @staticmethod
    def _min_chunk(response: requests.Response) -> int:
        value = response.headers.get("OCI-Chunk-Min-Length", "").strip()
        return int(value) if value.isdigit() else 0

    @staticmethod
    def _location(response: requests.Response, repository: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryHTTPError(
                f"the registry opened an upload to {repository} without a Location",
                status=response.status_code,
            )
        return location

    @staticmethod
    def _with_query(location: str, **params: str) -> str:
        sep = "&" if "?" in location else "?"
        return location + sep + urlencode(params)

    def upload(self, repository: str, data: bytes | IO[bytes] | Iterable[bytes],
                    digest: str, size: int | None = None, *,
                    mount_from: str | None = None, skip_existing: bool = True,
                    progress: BlobProgress | None = None) -> bool:
        """Upload a blob unless the repository has it; return True when bytes moved.

        ``data`` is bytes, a binary file (seekable: resumable, and sent in one PUT
        when small), or an iterable of chunks (streamed in one request, not
        resumable). With ``mount_from`` the registry is first asked to mount the
        blob from that repository; on refusal the upload proceeds normally. The
        registry verifies ``digest`` when the upload closes: a mismatch raises
        :class:`DigestMismatchError` and the registry keeps nothing.
        """
        parse_digest(digest)
        if isinstance(data, str):
            raise TypeError("upload_blob takes bytes, a binary file or an iterable of bytes")
        source, start, size, stream = self._upload_source(data, size)
        if skip_existing and self.blob_exists(repository, digest):
            if progress is not None and size is not None:
                progress(size, size)
            return False
        location: str | None = None
        min_chunk = 0
        if mount_from and mount_from != repository:
            location, min_chunk = self.mount(repository, digest, mount_from)
            if location is None:
                log.debug("mounted %s into %s from %s", digest, repository, mount_from)
                if progress is not None and size is not None:
                    progress(size, size)
                return False
        restarts = 0
        while True:
            if location is None:
                location, min_chunk = self._start_upload(repository)
            try:
                if stream is not None:
                    self._upload_stream(repository, location, stream, digest, size, progress)
                elif size is not None and size <= MONOLITHIC_LIMIT:
                    assert source is not None
                    source.seek(start)
                    body = source.read(size)
                    self._finish_upload(repository, location, digest, body)
                    if progress is not None:
                        progress(len(body), size)
                else:
                    assert source is not None
                    self._upload_chunks(repository, location, source, start, digest, size,
                                        min_chunk, progress)
                return True
            except _UploadLost as exc:
                if self.blob_exists(repository, digest):
                    log.info("upload of %s: the session was lost but the blob arrived", digest)
                    return True
                restarts += 1
                if stream is not None or restarts > RESUME_ATTEMPTS:
                    raise RegistryUnavailableError(
                        f"upload of {digest} to {repository} failed: {exc}",
                        hint="Check the registry and the network, then try again.",
                    ) from exc
                log.info("upload of %s to %s lost (%s); starting again", digest, repository, exc)
                location = None

    @staticmethod
    def _upload_source(data: Any, size: int | None
                       ) -> tuple[IO[bytes] | None, int, int | None, Iterable[bytes] | None]:
        """(seekable source, its start, size, or a one-shot chunk stream)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            return io.BytesIO(data), 0, len(data), None
        if hasattr(data, "read"):
            seekable = False
            try:
                seekable = bool(data.seekable()) if hasattr(data, "seekable") else False
            except (OSError, ValueError):
                seekable = False
            if seekable:
                start = data.tell()
                if size is None:
                    size = data.seek(0, io.SEEK_END) - start
                    data.seek(start)
                return data, start, size, None
            reader = data
            return None, 0, size, iter(lambda: reader.read(UPLOAD_CHUNK), b"")
        return None, 0, size, data

    def _finish_upload(self, repository: str, location: str, digest: str,
                       body: bytes | None = None) -> None:
        try:
            response = self.transport.request(
                "PUT", self._with_query(location, digest=digest),
                scopes=_push_scope(repository),
                headers={"Content-Type": "application/octet-stream"}, data=body or b"",
            )
        except RegistryUnavailableError as exc:
            raise _UploadLost(f"the closing PUT failed ({exc.message})") from exc
        self._raise_upload(response, repository, digest)
        response.close()
        returned = response.headers.get("Docker-Content-Digest")
        if returned and returned != digest and returned.split(":")[0] == digest.split(":")[0]:
            raise DigestMismatchError(
                f"the registry stored the upload to {repository} under another digest",
                expected=digest, actual=returned,
            )

    def _raise_upload(self, response: requests.Response, repository: str, digest: str) -> None:
        if response.status_code < 400:
            return
        codes = error_codes(response)
        if response.status_code == 400 and ("DIGEST_INVALID" in codes or "SIZE_INVALID" in codes):
            raise DigestMismatchError(
                f"the registry refused the upload of {digest} to {repository}",
                expected=digest, actual="content with another digest or size",
            )
        if _UPLOAD_GONE_CODES.intersection(codes) or response.status_code == 416:
            raise _UploadLost(f"the registry answered {response.status_code} "
                              f"{' '.join(codes)}".rstrip())
        self._raise_push(response, f"upload the blob {digest} to {repository}", repository)

    def _upload_status(self, repository: str, location: str) -> tuple[str, int]:
        """Ask the registry how much of an upload it holds: (new location, bytes held)."""
        try:
            response = self.transport.request("GET", location,
                                              scopes=_push_scope(repository))
        except RegistryUnavailableError as exc:
            raise _UploadLost(f"the upload status could not be read ({exc.message})") from exc
        if response.status_code == 404 or _UPLOAD_GONE_CODES.intersection(error_codes(response)):
            raise _UploadLost(f"the registry no longer knows the upload "
                              f"({response.status_code})")
        raise_for_status(response, f"check the upload progress in {repository}")
        response.close()
        held = _range_end(response.headers.get("Range", ""))
        return response.headers.get("Location") or location, held or 0

    def _upload_chunks(self, repository: str, location: str, source: IO[bytes], start: int,
                       digest: str, size: int | None, min_chunk: int,
                       progress: BlobProgress | None) -> None:
        chunk_size = max(UPLOAD_CHUNK, min_chunk)
        scopes = _push_scope(repository)
        offset = 0
        failures = 0
        response: requests.Response | None = None
        while size is None or offset < size:
            # Drop the last chunk before reading the next (the last response's request
            # holds it too): one chunk in memory, not two.
            chunk = b""
            response = None
            source.seek(start + offset)
            want = chunk_size if size is None else min(chunk_size, size - offset)
            chunk = source.read(want)
            if not chunk:
                if size is not None:
                    raise RegistryHTTPError(
                        f"upload of {digest}: the source ended at byte {offset} of {size}",
                        hint="The file changed or shrank while it was uploaded.",
                    )
                break
            end = offset + len(chunk) - 1
            try:
                response = self.transport.request(
                    "PATCH", location, scopes=scopes,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{end}"},
                    data=chunk,
                )
            except RegistryUnavailableError:
                response = None
            if response is None or response.status_code in _PATCH_RETRY_STATUSES:
                failures += 1
                if failures > RESUME_ATTEMPTS:
                    if response is not None:
                        self._raise_upload(response, repository, digest)
                    raise RegistryUnavailableError(
                        f"upload of {digest} to {repository}: the connection dropped "
                        f"{failures} times in a row at byte {offset}",
                        hint="Check the registry and the network, then try again.",
                    )
                if response is not None:
                    response.close()
                    time.sleep(min(0.25 * 2**failures, 4.0))
                log.info("chunked upload of %s interrupted at %d; asking the registry",
                         digest, offset)
                location, offset = self._upload_status(repository, location)
                continue
            self._raise_upload(response, repository, digest)
            response.close()
            failures = 0
            location = self._location(response, repository)
            held = _range_end(response.headers.get("Range", ""))
            # "0-0" after bytes were accepted can only mean one byte.
            offset = end + 1 if held is None else max(held, 1)
            if progress is not None:
                progress(offset, size)
        self._finish_upload(repository, location, digest)

    def _upload_stream(self, repository: str, location: str, chunks: Iterable[bytes],
                       digest: str, size: int | None, progress: BlobProgress | None) -> None:
        sent = 0

        def counted() -> Iterator[bytes]:
            nonlocal sent
            for chunk in chunks:
                if not chunk:
                    continue
                sent += len(chunk)
                if progress is not None:
                    progress(sent, size)
                yield bytes(chunk)

        response = self.transport.request(
            "PATCH", location, scopes=_push_scope(repository),
            headers={"Content-Type": "application/octet-stream"}, data=counted(),
        )
        self._raise_upload(response, repository, digest)
        response.close()
        self._finish_upload(repository, self._location(response, repository), digest)
