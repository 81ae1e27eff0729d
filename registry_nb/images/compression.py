"""Layer compression: read a layer blob's bytes as the tar stream they hold.

The compression is told by the content's magic bytes (gzip, zstd), with notes when the
media type says otherwise; bzip2 and xz, which image layers never are, are refused. gzip
is inflated by ISA-L (``isal``, the ``fast`` extra) when it is installed, else by the
standard library; both give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable
from typing import IO, Any

from ..errors import UnsupportedMediaTypeError
from ..oci import OCI_LAYER_NONDISTRIBUTABLE_ZSTD, OCI_LAYER_ZSTD

__all__ = ["ChunkStream", "open_layer_stream", "gzip_reader", "decode_errors"]

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_OTHER_MAGIC = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
_ZSTD_TYPES = frozenset({OCI_LAYER_ZSTD, OCI_LAYER_NONDISTRIBUTABLE_ZSTD})


class ChunkStream(io.RawIOBase):
    """A readable raw stream over an iterator of byte chunks (with peek)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._buf = b""
        self._pos = 0
        self._done = False
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def _more(self) -> bool:
        while not self._done:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._done = True
                return False
            if chunk:
                self._buf = self._buf[self._pos:] + bytes(chunk)
                self._pos = 0
                return True
        return False

    def peek(self, size: int) -> bytes:
        while len(self._buf) - self._pos < size and self._more():
            pass
        return self._buf[self._pos:self._pos + size]

    def readinto(self, buffer: Any) -> int:
        if self._pos >= len(self._buf) and not self._more():
            return 0
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._buf) - self._pos)
        view[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        self.consumed += n
        return n

    def close(self) -> None:
        closer = getattr(self._chunks, "close", None)
        if callable(closer):
            closer()  # a generator such as iter_blob releases its connection
        super().close()


def open_layer_stream(raw: ChunkStream, media_type: str | None) -> tuple[IO[bytes], str, list[str]]:
    """The decoded tar stream of a layer (by its magic bytes, not only its media type),
    the compression's name, and notes where the media type says otherwise."""
    head = raw.peek(6)
    notes: list[str] = []
    declared_zstd = media_type in _ZSTD_TYPES or bool(media_type and media_type.endswith("+zstd"))
    declared_gzip = bool(media_type and media_type.endswith(("gzip", "+gzip")))
    if head.startswith(_GZIP_MAGIC):
        if media_type and not declared_gzip:
            notes.append(f"declared {media_type} but the content is gzip")
        return gzip_reader(raw), "gzip", notes
    if head.startswith(_ZSTD_MAGIC):
        if media_type and not declared_zstd:
            notes.append(f"declared {media_type} but the content is zstd")
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            raise UnsupportedMediaTypeError(
                "this layer is zstd-compressed and the zstandard module is not installed",
                hint="pip install 'registry-nb[zstd]' (the zstandard module), then read the "
                "layer again.",
            ) from None
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return reader, "zstd", notes
    for magic, name in _OTHER_MAGIC.items():
        if head.startswith(magic):
            raise UnsupportedMediaTypeError(
                f"this layer is {name}-compressed, which image layers never are",
                hint="Layers are tar, tar+gzip or tar+zstd; re-push the image.",
            )
    if declared_gzip or declared_zstd:
        notes.append(f"declared {media_type} but the content is an uncompressed tar")
    return raw, "none", notes


def gzip_reader(raw: IO[bytes]) -> IO[bytes]:
    """A gzip decoder over ``raw``: ISA-L's (``isal``, about 3x the standard library's
    speed here) when installed, else the standard library's."""
    try:
        from isal import igzip
    except ImportError:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[arg-type]
    return igzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[arg-type]


def decode_errors() -> tuple[type[BaseException], ...]:
    """What the decoders raise on a damaged stream."""
    errors: list[type[BaseException]] = [gzip.BadGzipFile, EOFError, zlib.error]
    try:
        from isal import isal_zlib

        errors.append(isal_zlib.error)
    except ImportError:
        pass
    try:
        import zstandard  # type: ignore[import-not-found]

        errors.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errors)
