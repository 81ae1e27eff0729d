"""Pieces of blobs on the wire: what an upload sends and may send, where a download resumes.

An upload reads its blob through a :class:`BlobReader`: a seekable file (any offset,
again and again) or a one-shot stream (only forward, from the last byte the registry
confirmed). Pieces of a file are sent as :class:`FileBody` request bodies that stream
from the file in :data:`BODY_PIECE` reads, saying after each how many bytes went, so a
whole-blob request never holds the blob in memory and reports progress as it goes.
:class:`FileSlice` is a file-like window of a file (a blob inside a tar).

:class:`UploadBudget` bounds the bytes sent for one blob (twice its size plus one
chunk); :func:`size_cap` reads the limit out of a registry's refusal (GHCR: "exceeds
the maximum permissible limit of 4.00MiB"); :func:`resume_offset` reads a resumed
download's ``Content-Range``.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import requests

from ..errors import BlobUploadError, RegistryHTTPError

log = logging.getLogger(__name__)

__all__ = ["resume_offset", "BlobProgress", "BlobReader", "FileReader", "StreamReader",
           "FileSlice", "FileBody", "UploadBudget", "range_end", "size_cap", "MIN_CHUNK",
           "BODY_PIECE"]

#: Receives (bytes done, bytes total or None) while a blob moves.
BlobProgress = Callable[[int, "int | None"], None]

#: Chunks are never shrunk below this (a registry refusing 256 KiB takes no chunks).
MIN_CHUNK = 256 * 1024
#: A :class:`FileBody` reads (and reports) its file this much at a time.
BODY_PIECE = 1024 * 1024

_UNITS = {"b": 1, "bytes": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
          "gb": 1000**3, "gib": 1024**3}
_CAP_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(GiB|MiB|KiB|GB|MB|KB|bytes|B)\b", re.IGNORECASE)


def range_end(value: str) -> int | None:
    """Bytes held according to an upload ``Range`` (``0-N`` or ``bytes=0-N``).

    distribution answers ``0-0`` both for an empty upload and for one byte; it is
    read as empty here (callers that just sent bytes read it as one).
    """
    value = value.strip()
    if value.startswith("bytes="):
        value = value[len("bytes="):]
    start, sep, end = value.partition("-")
    if not sep or not start.strip().isdigit() or not end.strip().isdigit():
        return None
    last = int(end)
    return 0 if last == 0 else last + 1


def size_cap(messages: Iterable[str]) -> int | None:
    """The smallest size named in a refusal's messages, in bytes (``4.00MiB`` -> 4194304)."""
    sizes = [int(float(m.group(1)) * _UNITS[m.group(2).lower()])
             for text in messages for m in _CAP_RE.finditer(text)]
    sizes = [s for s in sizes if s > 0]
    return min(sizes) if sizes else None


class FileSlice(io.RawIOBase):
    """A read-only, seekable window ``[start, start+length)`` of an open file: a request
    body that streams (requests sends its ``len`` as Content-Length and can rewind it)."""

    def __init__(self, source: IO[bytes], start: int, length: int) -> None:
        super().__init__()
        self.source = source
        self.start = start
        self.length = length
        self.position = 0

    def __len__(self) -> int:  # requests subtracts tell() itself
        return self.length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        left = self.length - self.position
        if left <= 0:
            return 0
        view = memoryview(buffer).cast("B")[: min(len(buffer), left)]
        self.source.seek(self.start + self.position)
        got = self.source.readinto(view) or 0  # type: ignore[attr-defined]
        self.position += got
        return got


class FileBody:
    """A request body: ``[start, start+length)`` of an open file, read in pieces.

    requests sends its ``len`` as Content-Length and iterates it (urllib3 sends each
    piece as it comes); ``seek``/``tell`` let the transport send it again (after a 401
    or a redirect). After each piece has gone to the socket, ``on_sent(bytes sent so
    far)`` is called: a progress report, whose stop check may raise to abandon the
    request between pieces. ``sent`` is the most bytes handed to the connection.
    """

    def __init__(self, source: IO[bytes], start: int, length: int,
                 on_sent: Callable[[int], None] | None = None) -> None:
        self.source = source
        self.start = start
        self.length = length
        self.on_sent = on_sent
        self.position = 0
        self.sent = 0

    def __len__(self) -> int:  # requests subtracts tell() itself
        return self.length

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = min(max(0, base + offset), self.length)
        return self.position

    def __iter__(self) -> Iterator[bytes]:
        while self.position < self.length:
            self.source.seek(self.start + self.position)
            piece = self.source.read(min(BODY_PIECE, self.length - self.position))
            if not piece:
                raise RegistryHTTPError(
                    f"the source ended {self.length - self.position} bytes early, at byte "
                    f"{self.start + self.position}",
                    hint="The file changed or shrank while it was uploaded; upload it again.",
                )
            yield piece  # back here once the connection took it
            self.position += len(piece)
            self.sent = max(self.sent, self.position)
            if self.on_sent is not None:
                self.on_sent(self.position)


class BlobReader:
    """Where an upload's bytes come from."""

    #: True when any offset can be read again (a file); False for a one-shot stream.
    rewindable = True

    def piece(self, offset: int, length: int,
              on_sent: Callable[[int], None] | None = None) -> bytes | FileBody:
        """Up to ``length`` bytes from ``offset`` (fewer only at the end); a streamed
        body calls ``on_sent`` as its pieces go (see :class:`FileBody`)."""
        raise NotImplementedError


class FileReader(BlobReader):
    """A seekable file, read from ``start``: every piece streams from the file."""

    def __init__(self, source: IO[bytes], start: int, size: int) -> None:
        self.source = source
        self.start = start
        self.size = size

    def piece(self, offset: int, length: int,
              on_sent: Callable[[int], None] | None = None) -> FileBody:
        length = max(0, min(length, self.size - offset))
        return FileBody(self.source, self.start + offset, length, on_sent)


class StreamReader(BlobReader):
    """A one-shot stream of chunks, buffered from the last offset asked for onwards.

    Asking for an offset before that (a registry that lost bytes already dropped
    from the buffer) raises :class:`StreamRewound`.
    """

    rewindable = False

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks: Iterator[bytes] = iter(chunks)
        self.base = 0  # offset of buffer[0]
        self.buffer = bytearray()
        self.ended = False

    def piece(self, offset: int, length: int,
              on_sent: Callable[[int], None] | None = None) -> bytes:
        if offset < self.base:
            raise StreamRewound(offset, self.base)
        del self.buffer[: offset - self.base]
        self.base = max(self.base, offset)
        while len(self.buffer) < length and not self.ended:
            try:
                chunk = next(self.chunks)
            except StopIteration:
                self.ended = True
                break
            self.buffer += chunk
        return bytes(self.buffer[:length])


class StreamRewound(Exception):
    """A stream was asked for bytes it has already passed on."""

    def __init__(self, wanted: int, base: int) -> None:
        super().__init__(f"the registry wants byte {wanted} again, the stream is past {base}")


class UploadBudget:
    """The bytes one blob may cost: twice its size plus one chunk, then a typed error."""

    def __init__(self, repository: str, digest: str, size: int | None, chunk: int) -> None:
        self.repository = repository
        self.digest = digest
        self.size = size
        self.limit = None if size is None else 2 * size + chunk
        self.sent = 0

    def spend(self, length: int, why: str) -> None:
        """Count ``length`` bytes about to be sent; refuse when they pass the bound."""
        if self.limit is not None and self.sent + length > self.limit:
            raise BlobUploadError(
                f"upload of {self.digest} to {self.repository} stopped: {why}, and sending "
                f"{length} more bytes would pass {self.limit} bytes for a {self.size}-byte "
                f"blob ({self.sent} sent).",
                hint="The registry does not take this upload as sent; try again later, and "
                "report it with the registry's name if it persists.",
            )
        self.sent += length

    def refund(self, length: int) -> None:
        """Take back ``length`` counted bytes that never went (a request that broke off)."""
        self.sent = max(0, self.sent - max(0, length))


_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def resume_offset(response: requests.Response, done: int, what: str
                   ) -> tuple[int, int | None]:
    """(bytes to drop from a resumed response's start, blob size from Content-Range)."""
    if not done:
        return 0, None
    if response.status_code == 200:
        log.info("%s: the registry ignored Range; skipping %d bytes", what, done)
        return done, None
    match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", "").strip())
    if response.status_code != 206 or match is None or int(match.group(1)) != done:
        raise RegistryHTTPError(
            f"{what}: the registry answered a resume from byte {done} with "
            f"{response.status_code} {response.headers.get('Content-Range', '')}".rstrip(),
            status=response.status_code,
            hint="Try again on a steadier connection.",
        )
    complete = match.group(3)
    return 0, int(complete) if complete.isdigit() else None
