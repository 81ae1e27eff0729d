"""Layer compression: read a layer blob's bytes as the tar stream they hold, and write
a tar stream as gzip.

Reading: the compression is told by the content's magic bytes (gzip, zstd), with notes
when the media type says otherwise; bzip2 and xz, which image layers never are, are
refused. gzip is inflated by ISA-L (``isal``, the ``fast`` extra) when it is installed,
else by the standard library; both give the same bytes.

Writing (:class:`LayerCompression`): ``isal`` deflates the tar in fixed blocks of
:data:`GZIP_BLOCK_SIZE` bytes, each with the previous 32 KiB as its dictionary (as pigz
does), on several threads; the bytes depend on the tar, the level and the block size
only, never on the thread count or the machine's cores. ``zlib`` is the standard
library's single stream (what ``gzip`` writes with ``mtime=0``, and what registry_nb
wrote before ``isal``).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from ..errors import CompressionSettingError, UnsupportedMediaTypeError
from ..oci import OCI_LAYER_NONDISTRIBUTABLE_ZSTD, OCI_LAYER_ZSTD

__all__ = ["ChunkStream", "open_layer_stream", "gzip_reader", "decode_errors",
           "LayerCompression", "BlockGzipWriter", "GZIP_BLOCK_SIZE", "COMPRESSOR_LEVELS",
           "isal_installed", "default_threads"]

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
                rest = self._buf[self._pos:] if self._pos < len(self._buf) else b""
                self._buf = rest + bytes(chunk) if rest else bytes(chunk)  # no copy of bytes
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
        view[:n] = memoryview(self._buf)[self._pos:self._pos + n]  # one copy, not two
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


# ------------------------------------------------------------------ writing gzip

#: Levels each compressor takes, and its default (the first value).
COMPRESSOR_LEVELS: dict[str, tuple[int, range]] = {"isal": (1, range(0, 4)),
                                                   "zlib": (6, range(0, 10))}
#: Bytes of tar per independently deflated block of an ``isal`` layer (part of its bytes).
GZIP_BLOCK_SIZE = 1024 * 1024
_WINDOW = 32 * 1024
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown


def isal_installed() -> bool:
    """Whether ISA-L's bindings (``isal``, the ``fast`` extra) can be imported."""
    try:
        from isal import isal_zlib  # noqa: F401
    except ImportError:
        return False
    return True


def default_threads() -> int:
    """Deflate threads: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


@dataclass(frozen=True)
class LayerCompression:
    """How a layer's gzip is written. The same tar with the same compressor, level and
    block size gives the same bytes (and digest); the thread count never changes them."""

    compressor: str
    level: int
    block_size: int | None = None

    @classmethod
    def choose(cls, compressor: str | None = None, level: int | None = None) -> LayerCompression:
        """``compressor`` (``"isal"`` or ``"zlib"``; default ``isal`` when installed, else
        ``zlib``) at ``level`` (default 1 for isal, 6 for zlib), checked."""
        name = compressor or ("isal" if isal_installed() else "zlib")
        if name not in COMPRESSOR_LEVELS:
            raise CompressionSettingError(
                f"{name!r} is not a layer compressor",
                hint="Pass compressor='isal' (fast, the 'fast' extra) or compressor='zlib' "
                "(the standard library).")
        default, levels = COMPRESSOR_LEVELS[name]
        chosen = default if level is None else level
        if chosen not in levels:
            raise CompressionSettingError(
                f"{name} takes levels {levels.start} to {levels.stop - 1}, not {chosen}",
                hint=f"Pass a level in that range, or leave it out for {default}.")
        if name == "isal" and not isal_installed():
            raise CompressionSettingError(
                "compressor='isal' needs the isal module, which is not installed",
                hint="pip install 'registry-nb[fast]', or pass compressor='zlib' (the "
                "standard library; other digests).")
        return cls(name, chosen, GZIP_BLOCK_SIZE if name == "isal" else None)

    def describe(self) -> str:
        """One line for the image's history: e.g. ``gzip by isal level 1, 1 MiB blocks``."""
        if self.block_size is None:
            return f"gzip by {self.compressor} level {self.level}"
        return f"gzip by {self.compressor} level {self.level}, {_size(self.block_size)} blocks"

    def writer(self, target: IO[bytes], threads: int | None = None) -> IO[bytes]:
        """A gzip writer over ``target`` (close it to finish the stream; ``target`` stays open)."""
        if self.block_size is None:
            return gzip.GzipFile(filename="", mode="wb", fileobj=target,
                                 compresslevel=self.level, mtime=0)
        return BlockGzipWriter(target, level=self.level, block_size=self.block_size,
                               threads=threads)  # type: ignore[return-value]


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"


def _deflate_block(block: bytes, zdict: bytes, final: bool, level: int) -> tuple[bytes, int]:
    """One block as raw deflate (ending byte-aligned, or the stream's end) and its CRC."""
    from isal import isal_zlib

    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15, zdict=zdict) \
        if zdict else isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
    end = isal_zlib.Z_FINISH if final else isal_zlib.Z_SYNC_FLUSH
    return compressor.compress(block) + compressor.flush(end), isal_zlib.crc32(block)


class BlockGzipWriter:
    """A gzip stream deflated by ISA-L in fixed blocks on threads (pigz's scheme).

    Every block but the last holds exactly ``block_size`` bytes and is deflated with the
    previous block's last 32 KiB as its dictionary, ending on a sync flush, so the
    output is one gzip member any inflater reads, and its bytes do not depend on
    ``threads``. At most two blocks per thread are held at once.
    """

    def __init__(self, target: IO[bytes], *, level: int = 1,
                 block_size: int = GZIP_BLOCK_SIZE, threads: int | None = None) -> None:
        from isal import isal_zlib

        if block_size < _WINDOW:
            raise CompressionSettingError(f"a block of {block_size} bytes is smaller than "
                                          "deflate's 32 KiB window",
                                          hint="Use a block size of at least 32768 bytes.")
        self._combine = isal_zlib.crc32_combine
        self._target = target
        self._level = level
        self._block_size = block_size
        self._threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="registry-nb-deflate")
        self._pending = bytearray()
        self._previous = b""
        self._inflight: deque[tuple[Future[tuple[bytes, int]], int]] = deque()
        self._crc = 0
        self._size = 0
        self.closed = False
        target.write(_HEADER)

    def write(self, data: Any) -> int:
        """Take ``data``; full blocks go to the threads (the last one waits for close)."""
        self._pending += data
        while len(self._pending) > self._block_size:
            block = bytes(self._pending[:self._block_size])
            del self._pending[:self._block_size]
            self._submit(block, final=False)
        return len(data)

    def _submit(self, block: bytes, *, final: bool) -> None:
        zdict = self._previous[-_WINDOW:]
        self._previous = block
        self._inflight.append((self._pool.submit(_deflate_block, block, zdict, final,
                                                 self._level), len(block)))
        while len(self._inflight) > 2 * self._threads:
            self._write_oldest()

    def _write_oldest(self) -> None:
        future, length = self._inflight.popleft()
        deflated, crc = future.result()
        self._crc = self._combine(self._crc, crc, length)
        self._size += length
        self._target.write(deflated)

    def flush(self) -> None:
        """Nothing to do before close (blocks are written in order as they finish)."""

    def close(self) -> None:
        """Deflate the last block, write every block and the trailer."""
        if self.closed:
            return
        try:
            self._submit(bytes(self._pending), final=True)
            self._pending = bytearray()
            while self._inflight:
                self._write_oldest()
            self._target.write(self._crc.to_bytes(4, "little")
                               + (self._size & 0xFFFFFFFF).to_bytes(4, "little"))
        finally:
            self._abandon()

    def _abandon(self) -> None:
        self.closed = True
        self._inflight.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BlockGzipWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._abandon()  # an error or an interrupt: no trailer, the caller drops the file
