"""Blob uploads: mounts, one-PUT uploads, resumable file uploads and streams.

A seekable file over :data:`MONOLITHIC_LIMIT` goes in one PATCH of all its bytes,
streamed from the file (progress as its pieces go), then the closing PUT: three round
trips whatever its size, as skopeo does. Uploads survive dropped connections: the
client asks the registry how much it holds (its ``Range``) and sends the rest from
there, in chunks (each confirmed: a flaky link costs a chunk per drop, not the rest of
the blob); when the registry has lost or cancelled the upload session (distribution
does when a PATCH was cut halfway), the upload starts again from the first byte.

They adapt to what the registry takes, and remember it for the next blob
(:class:`UploadHabits`, one per registry client):

- a refused one-PUT upload (Artifactory wants PATCH; Docker Hub refuses large ones)
  is sent by PATCH, and later blobs go by PATCH;
- a PATCH refused with 413 or 416 (GHCR caps bodies at 4 MiB, and says so) is sent
  again in chunks (the named cap, else :data:`UPLOAD_CHUNK` or half) from the
  registry's own offset, and later blobs go in such chunks;
- ``OCI-Chunk-Min-Length`` raises the chunk size;
- a PATCH whose ``Range`` does not advance (ECR keeps only the first chunk) makes the
  whole blob go in one PATCH, on a new session;
- PATCH may answer 202, 201 or 204, and each answer's ``Location`` is the next one
  (GAR's are single-use).

Nothing is re-sent without bound: a blob may cost at most twice its size plus one
chunk (:class:`~registry_nb.remote.chunks.UploadBudget`; bytes of a request that broke
off count as far as they went), then :class:`~registry_nb.errors.BlobUploadError`.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlencode

import requests

from ..errors import (
    AuthenticationError,
    BlobUploadError,
    DigestMismatchError,
    NotFoundError,
    RegistryError,
    RegistryHTTPError,
    RegistryUnavailableError,
)
from ..oci.reference import parse_digest
from .auth import repository_scope
from .chunks import (
    MIN_CHUNK,
    BlobProgress,
    BlobReader,
    FileBody,
    FileReader,
    StreamReader,
    StreamRewound,
    UploadBudget,
    range_end,
    size_cap,
)
from .responses import raise_for_status, registry_errors
from .sharing import SHARED_UPLOADS
from .transport import Transport

__all__ = ["BlobUploader", "BlobProgress", "UploadHabits", "MONOLITHIC_LIMIT", "UPLOAD_CHUNK"]

log = logging.getLogger(__name__)

#: Blobs up to this size are uploaded in one PUT; larger files in one PATCH.
MONOLITHIC_LIMIT = 8 * 1024 * 1024
#: Size of one PATCH chunk where chunks are needed: streams to a registry that caps
#: PATCH bodies, after a refused whole-file PATCH naming no cap (raised to
#: OCI-Chunk-Min-Length). One chunk of a stream is in memory per blob in flight.
UPLOAD_CHUNK = 8 * 1024 * 1024
#: Times a dropped upload is resumed (or restarted) before giving up.
RESUME_ATTEMPTS = 3

#: Registry error codes meaning the upload session is gone and must start again.
_UPLOAD_GONE_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
#: Statuses after which a chunk is re-sent from the registry's Range (after a pause).
_PATCH_RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Statuses by which a registry refuses how a body was sent (its size, PUT vs PATCH).
_WAY_REFUSED = frozenset({400, 405, 411, 413, 415, 416, 501})


class _UploadLost(Exception):
    """The registry no longer has the upload session (or never got its bytes)."""


class _Refused(Exception):
    """The registry refused how the bytes were sent; the habits now say another way."""


@dataclass
class UploadHabits:
    """What one registry takes, learned from its answers (shared by its uploads)."""

    #: A body in the closing PUT is taken (False once a one-PUT upload was refused).
    monolithic: bool = True
    #: The largest PATCH body taken (the cap a 413/416 named, or guessed), or None:
    #: files go in one PATCH until a refusal sets it.
    max_chunk: int | None = None
    #: Chunks after the first are not taken: each blob goes in one PATCH.
    whole_blob: bool = False


def _push_scope(repository: str) -> list[str]:
    return [repository_scope(repository, "pull", "push")]


def _refusal(response: requests.Response) -> tuple[list[str], list[str], str]:
    """(codes, messages, "416 CODE message") of an error response (the body is read)."""
    errors, _ = registry_errors(response)
    codes = [str(e["code"]) for e in errors if e.get("code")]
    messages = [str(e.get("message") or "") for e in errors]
    shown = "; ".join(f"{e.get('code') or ''} {e.get('message') or ''}".strip()
                      for e in errors[:2])
    return codes, messages, f"{response.status_code} {shown}".strip()


class _Watched:
    """A progress callback that notes whether it raised (the caller's stop check did)."""

    def __init__(self, progress: BlobProgress) -> None:
        self.progress = progress
        self.raised = False

    def __call__(self, done: int, total: int | None) -> None:
        try:
            self.progress(done, total)
        except BaseException:
            self.raised = True
            raise


def _reporter(progress: BlobProgress | None, offset: int, size: int | None
              ) -> Callable[[int], None] | None:
    """``progress`` for a body sent from ``offset``: it is told bytes sent so far."""
    if progress is None:
        return None

    def sent(count: int) -> None:
        progress(offset + count, size)
    return sent


class BlobUploader:
    """Uploads blobs to one registry through its transport.

    ``blob_exists(repository, digest)`` answers whether the registry already holds a
    blob (a HEAD); it is asked before uploading and after a lost upload session.
    """

    def __init__(self, transport: Transport,
                 blob_exists: Callable[[str, str], bool]) -> None:
        self.transport = transport
        self.blob_exists = blob_exists
        #: What this registry takes (learned; see the module's docstring).
        self.habits = UploadHabits()

    # ------------------------------------------------------------ sessions

    def mount(self, repository: str, digest: str, from_repository: str
              ) -> tuple[str | None, int]:
        """Ask for a mount: (None, 0) when mounted, else (upload location, min chunk)."""
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

    # ------------------------------------------------------------ one blob

    def upload(self, repository: str, data: bytes | IO[bytes] | Iterable[bytes],
               digest: str, size: int | None = None, *,
               mount_from: str | None = None, skip_existing: bool = True,
               progress: BlobProgress | None = None,
               reopen: Callable[[], Iterable[bytes]] | None = None) -> bool:
        """Upload a blob unless the repository has it; return True when bytes moved.

        Uploads of one blob to one repository that this process runs at the same time
        (two pushes sharing a base layer, a sync's workers) are sent once: the others
        wait for it and move nothing (see :class:`SharedUploads`).
        """
        parse_digest(digest)
        if isinstance(data, str):
            raise TypeError("upload_blob takes bytes, a binary file or an iterable of bytes")
        with SHARED_UPLOADS.turn((self.transport.host, repository, digest),
                                 progress, size) as sending:
            if not sending:
                return False
            return self._upload(repository, data, digest, size, mount_from=mount_from,
                                skip_existing=skip_existing, progress=progress,
                                reopen=reopen)

    def _upload(self, repository: str, data: bytes | IO[bytes] | Iterable[bytes],
                digest: str, size: int | None = None, *,
                mount_from: str | None = None, skip_existing: bool = True,
                progress: BlobProgress | None = None,
                reopen: Callable[[], Iterable[bytes]] | None = None) -> bool:
        """One upload (see :meth:`upload`).

        ``data`` is bytes, a binary file (seekable: resumable, and sent in one PUT
        when small), or an iterable of chunks (streamed in one request; ``reopen``,
        when given, makes a fresh iterable of the same bytes, so a stream the registry
        refused as sent can go again another way). With ``mount_from`` the registry is
        first asked to mount the blob from that repository; on refusal the upload
        proceeds normally. The registry verifies ``digest`` when the upload closes: a
        mismatch raises :class:`DigestMismatchError` and the registry keeps nothing.
        """
        source, start, size, stream = self._upload_source(data, size)
        if skip_existing and self.blob_exists(repository, digest):
            if progress is not None and size is not None:
                progress(size, size)
            return False
        location: str | None = None
        min_chunk = 0
        if mount_from and mount_from != repository:
            mounted, location, min_chunk = self._try_mount(repository, digest, mount_from)
            if mounted:
                log.debug("mounted %s into %s from %s", digest, repository, mount_from)
                if progress is not None and size is not None:
                    progress(size, size)
                return False
        budget = UploadBudget(repository, digest, size, max(UPLOAD_CHUNK, min_chunk))
        watched = progress = None if progress is None else _Watched(progress)
        restarts = 0
        while True:
            if location is None:
                location, min_chunk = self._start_upload(repository)
            try:
                if stream is not None:
                    self._send_stream(repository, location, stream, digest, size, min_chunk,
                                      progress, budget)
                elif size is not None and size <= MONOLITHIC_LIMIT and self.habits.monolithic:
                    assert source is not None
                    self._send_whole(repository, location, source, start, size, digest,
                                     progress, budget)
                else:
                    assert source is not None and size is not None
                    self._send_chunks(repository, location, FileReader(source, start, size),
                                      digest, size, min_chunk, progress, budget)
                return True
            except _Refused as exc:
                log.info("upload of %s to %s: %s; sending it another way", digest,
                         repository, exc)
                location = None
                if stream is not None:
                    stream = self._reopened(reopen, repository, digest, str(exc))
            except _UploadLost as exc:
                if self.blob_exists(repository, digest):
                    log.info("upload of %s: the session was lost but the blob arrived", digest)
                    return True
                restarts += 1
                if restarts > RESUME_ATTEMPTS or (stream is not None and reopen is None):
                    raise RegistryUnavailableError(
                        f"upload of {digest} to {repository} failed: {exc}",
                        hint="Check the registry and the network, then try again.",
                    ) from exc
                log.info("upload of %s to %s lost (%s); starting again", digest, repository, exc)
                location = None
                if stream is not None:
                    stream = self._reopened(reopen, repository, digest, str(exc))
            except BaseException:
                if watched is not None and watched.raised:  # the caller stopped it
                    self._abandon(repository, location)
                raise

    def _try_mount(self, repository: str, digest: str, from_repository: str
                   ) -> tuple[bool, str | None, int]:
        """(mounted, the upload location opened instead, min chunk). A refused mount
        (Harbor answers 401 for a source it does not know) opens nothing: the blob is
        then uploaded on a new session."""
        try:
            location, min_chunk = self.mount(repository, digest, from_repository)
        except (AuthenticationError, NotFoundError, RegistryHTTPError) as exc:
            log.info("mount of %s from %s refused (%s); uploading", digest, from_repository,
                     exc.message)
            return False, None, 0
        return location is None, location, min_chunk

    def _abandon(self, repository: str, location: str) -> None:
        """Cancel an upload session (best effort: the registry expires it anyway)."""
        try:
            self.transport.request("DELETE", location, scopes=_push_scope(repository),
                                   timeout=(2.0, 5.0)).close()
        except RegistryError as exc:
            log.debug("could not cancel the upload session in %s (%s)", repository,
                      exc.message)

    @staticmethod
    def _reopened(reopen: Callable[[], Iterable[bytes]] | None, repository: str,
                  digest: str, why: str) -> Iterable[bytes]:
        if reopen is None:
            raise BlobUploadError(
                f"upload of {digest} to {repository}: the registry refused the streamed "
                f"upload ({why}) and the stream cannot be read again",
                hint="Upload from a file (or copy again: the registry's rules are now known).",
            )
        return reopen()

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

    # ------------------------------------------------------------ ways of sending

    def _send_whole(self, repository: str, location: str, source: IO[bytes], start: int,
                    size: int, digest: str, progress: BlobProgress | None,
                    budget: UploadBudget) -> None:
        """The blob in the closing PUT (one request)."""
        source.seek(start)
        body = source.read(size)
        budget.spend(len(body), "a one-PUT upload")
        self._finish_upload(repository, location, digest, body)
        if progress is not None:
            progress(len(body), size)

    def _send_stream(self, repository: str, location: str, chunks: Iterable[bytes],
                     digest: str, size: int | None, min_chunk: int,
                     progress: BlobProgress | None, budget: UploadBudget) -> None:
        """A stream: in one PATCH, or in chunks when the registry caps PATCH bodies."""
        if self.habits.max_chunk is not None:
            self._send_chunks(repository, location, StreamReader(chunks), digest, size,
                              min_chunk, progress, budget)
            return
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

        budget.spend(size or 0, "a streamed upload")
        response = self.transport.request(
            "PATCH", location, scopes=_push_scope(repository),
            headers={"Content-Type": "application/octet-stream"}, data=counted(),
        )
        if response.status_code in (413, 416):
            _, messages, shown = _refusal(response)
            self._learn_cap(size_cap(messages), sent, shown, max(UPLOAD_CHUNK, min_chunk))
            raise _Refused(f"the registry refused a {sent}-byte streamed PATCH ({shown})")
        self._raise_upload(response, repository, digest)
        response.close()
        self._finish_upload(repository, self._location(response, repository), digest)

    def _learn_cap(self, cap: int | None, refused: int, shown: str, chunk: int) -> int:
        """Remember a smaller PATCH size after a refusal of ``refused`` bytes: the cap
        the registry named, else half as much, but at most one ``chunk``."""
        new = cap if cap is not None and cap < refused else min(refused // 2, chunk)
        if new < MIN_CHUNK:
            raise BlobUploadError(
                f"the registry refuses PATCH bodies of {refused} bytes and names no size it "
                f"takes ({shown})", status=416,
                hint="The registry does not take chunked uploads; report it with its name.",
            )
        old = self.habits.max_chunk
        self.habits.max_chunk = new if old is None else min(old, new)
        log.info("the registry refused a %d-byte PATCH (%s); chunks are now %d bytes",
                 refused, shown, self.habits.max_chunk)
        return self.habits.max_chunk

    def _chunk_size(self, whole_file: bool, min_chunk: int, size: int | None,
                    offset: int) -> int:
        """The next PATCH's length: the rest of the blob for a file sent whole (or for
        a registry that keeps only one PATCH), else one chunk."""
        if size is not None and (self.habits.whole_blob or whole_file):
            return size - offset
        chunk = max(UPLOAD_CHUNK, min_chunk)
        if self.habits.max_chunk is not None:
            chunk = min(chunk, self.habits.max_chunk)
        return chunk

    def _send_chunks(self, repository: str, location: str, reader: BlobReader, digest: str,
                     size: int | None, min_chunk: int, progress: BlobProgress | None,
                     budget: UploadBudget) -> None:
        """PATCHes from the registry's offset on, then the closing PUT.

        A file goes in one PATCH unless the registry caps their size; after a failed
        one the rest goes in chunks, each confirmed, so another failure costs a chunk.
        """
        scopes = _push_scope(repository)
        offset = 0
        failures = 0
        whole_file = reader.rewindable and self.habits.max_chunk is None
        response: requests.Response | None = None
        while size is None or offset < size:
            response = None  # its request holds the last chunk: one chunk in memory, not two
            try:
                body: bytes | FileBody = reader.piece(
                    offset, self._chunk_size(whole_file, min_chunk, size, offset),
                    _reporter(progress, offset, size))
            except StreamRewound as exc:
                raise _UploadLost(str(exc)) from exc
            length = len(body)
            if not length:
                if size is not None:
                    raise RegistryHTTPError(
                        f"upload of {digest}: the source ended at byte {offset} of {size}",
                        hint="The file changed or shrank while it was uploaded.",
                    )
                break
            end = offset + length - 1
            budget.spend(length, f"the registry holds {offset} bytes")
            try:
                response = self.transport.request(
                    "PATCH", location, scopes=scopes,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{end}"},
                    data=body,
                )
            except RegistryUnavailableError:
                response = None
            if response is None and isinstance(body, FileBody):
                budget.refund(length - body.sent)  # what never went costs nothing
            body = b""
            if response is None or response.status_code in _PATCH_RETRY_STATUSES:
                failures += 1
                whole_file = False
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
                log.info("upload of %s interrupted at %d (a %d-byte PATCH); asking the "
                         "registry", digest, offset, length)
                location, offset = self._upload_status(repository, location)
                continue
            if response.status_code in (413, 416):
                whole_file = False
                _, messages, shown = _refusal(response)
                location, held = self._upload_status(repository, location)
                if held == offset:  # in step: the chunk itself was refused (its size)
                    self._learn_cap(size_cap(messages), length, shown,
                                    max(UPLOAD_CHUNK, min_chunk))
                offset = held
                continue
            self._raise_upload(response, repository, digest)
            response.close()
            failures = 0
            location = self._location(response, repository)
            held = range_end(response.headers.get("Range", ""))
            if held is None or held > end:
                offset = end + 1
            elif max(held, 1) > offset:  # it kept fewer bytes ("0-0": one): go on from there
                offset = max(held, 1)
            else:
                self._no_progress(repository, digest, offset, length)
            if progress is not None:
                progress(offset, size)
        self._finish_upload(repository, location, digest)

    def _no_progress(self, repository: str, digest: str, offset: int, length: int) -> None:
        """A PATCH was taken but the registry's Range did not advance (ECR)."""
        if self.habits.whole_blob:
            raise BlobUploadError(
                f"upload of {digest} to {repository}: the registry took {length} bytes at "
                f"byte {offset} but says it holds no more than before",
                hint="The registry does not take this upload; report it with its name.",
            )
        self.habits.whole_blob = True
        raise _Refused(f"its Range stayed at {offset} bytes after a {length}-byte PATCH")

    # ------------------------------------------------------------ answers

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
        self._raise_upload(response, repository, digest, whole=bool(body))
        response.close()
        returned = response.headers.get("Docker-Content-Digest")
        if returned and returned != digest and returned.split(":")[0] == digest.split(":")[0]:
            raise DigestMismatchError(
                f"the registry stored the upload to {repository} under another digest",
                expected=digest, actual=returned,
            )

    def _raise_upload(self, response: requests.Response, repository: str, digest: str, *,
                      whole: bool = False) -> None:
        """Raise for an error answer to an upload request (``whole``: a one-PUT upload)."""
        if response.status_code < 400:
            return
        codes, _, shown = _refusal(response)
        if response.status_code == 400 and ("DIGEST_INVALID" in codes or "SIZE_INVALID" in codes):
            raise DigestMismatchError(
                f"the registry refused the upload of {digest} to {repository}",
                expected=digest, actual="content with another digest or size",
            )
        if whole and response.status_code in _WAY_REFUSED and "BLOB_UPLOAD_UNKNOWN" not in codes:
            self.habits.monolithic = False  # (another blob may have learned it meanwhile)
            raise _Refused(f"the registry refused a one-PUT upload ({shown})")
        if _UPLOAD_GONE_CODES.intersection(codes) or response.status_code == 416:
            raise _UploadLost(f"the registry answered {shown}")
        self._raise_push(response, f"upload the blob {digest} to {repository}", repository)

    def _upload_status(self, repository: str, location: str) -> tuple[str, int]:
        """Ask the registry how much of an upload it holds: (new location, bytes held)."""
        try:
            response = self.transport.request("GET", location,
                                              scopes=_push_scope(repository))
        except RegistryUnavailableError as exc:
            raise _UploadLost(f"the upload status could not be read ({exc.message})") from exc
        if response.status_code == 404:
            raise _UploadLost(f"the registry no longer knows the upload "
                              f"({response.status_code})")
        if response.status_code >= 400:
            codes, _, shown = _refusal(response)
            if _UPLOAD_GONE_CODES.intersection(codes):
                raise _UploadLost(f"the registry no longer knows the upload ({shown})")
        raise_for_status(response, f"check the upload progress in {repository}")
        response.close()
        held = range_end(response.headers.get("Range", ""))
        return response.headers.get("Location") or location, held or 0
