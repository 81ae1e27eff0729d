"""A content-addressed cache for manifests and small blobs (image configs).

Content named by its digest never changes, so a manifest fetched by digest or a
config blob, once verified, can be reused forever. :class:`ContentCache` keeps
them in memory (an LRU bounded in bytes) and, when given a folder, on disk too
(bounded, written atomically, hashed again on every read so a damaged file is a
miss, never wrong data).

Tags move, so they are never answered from the cache: the cache only remembers
which ETag and digest a tag had (:meth:`ContentCache.tag_hint`), letting the
client ask the registry "still this one?" (``If-None-Match``) and, on
``304 Not Modified``, take the manifest from here.

Concurrent requests for one digest share one fetch (:meth:`ContentCache.fetch`),
so a listing never downloads the same digest twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..oci.reference import parse_digest

__all__ = ["ContentCache", "CachedContent", "CacheStats", "default_cache_dir",
           "DEFAULT_MEMORY_BYTES", "DEFAULT_DISK_BYTES", "MAX_ITEM_BYTES"]

log = logging.getLogger(__name__)

#: Memory bound per cache (one per ContainerRegistry by default).
DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024
#: Disk bound when a folder is used.
DEFAULT_DISK_BYTES = 512 * 1024 * 1024
#: Larger items are never cached (layers stream; configs and manifests are small).
MAX_ITEM_BYTES = 4 * 1024 * 1024
#: Tag hints remembered (each a few hundred bytes).
MAX_TAG_HINTS = 100_000
_TEMP_PREFIX = ".tmp-"
_KINDS = ("manifest", "blob")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/registry-nb``, else ``~/.cache/registry-nb``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "registry-nb"


@dataclass(frozen=True)
class CachedContent:
    """Verified bytes and, for a manifest, the media type the registry gave."""

    data: bytes
    media_type: str | None = None


@dataclass
class CacheStats:
    """Counters since the cache was made."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    shared_fetches: int = 0  # callers that waited for another thread's fetch
    disk_rejects: int = 0  # files dropped because they did not match their digest
    evictions: int = 0


class _Flight:
    """One fetch in progress; other threads wait for its result."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: CachedContent | None = None
        self.error: BaseException | None = None


class ContentCache:
    """Manifests and small blobs by digest, in memory and optionally on disk.

    ``ContentCache()`` is memory-only; ``ContentCache(directory=True)`` also uses
    :func:`default_cache_dir`; ``directory=PATH`` uses that folder. Thread-safe,
    and several processes may share one folder.
    """

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES, *,
                 directory: str | os.PathLike[str] | bool | None = None,
                 disk_bytes: int = DEFAULT_DISK_BYTES,
                 max_item_bytes: int = MAX_ITEM_BYTES) -> None:
        if memory_bytes < 0 or disk_bytes < 0 or max_item_bytes < 0:
            raise ValueError("cache sizes must be >= 0")
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self.max_item_bytes = max_item_bytes
        if directory is True:
            directory = default_cache_dir()
        self.directory: Path | None = Path(directory) if directory else None
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._memory: OrderedDict[tuple[str, str], CachedContent] = OrderedDict()
        self._memory_used = 0
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._tags: OrderedDict[tuple[str, ...], tuple[str, str]] = OrderedDict()
        self._disk_used: int | None = None  # scanned on first write

    def __repr__(self) -> str:
        where = f", directory={str(self.directory)!r}" if self.directory else ""
        return f"ContentCache(memory_bytes={self.memory_bytes}{where})"

    # ------------------------------------------------------------ lookups

    def get(self, digest: str, kind: str = "blob") -> CachedContent | None:
        """The verified content of ``digest``, from memory or disk, or None."""
        key = _key(kind, digest)
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
                self.stats.memory_hits += 1
                return found
        found = self._disk_get(key)
        if found is not None:
            self.stats.disk_hits += 1
            self._memory_put(key, found)
        return found

    def put(self, digest: str, data: bytes, media_type: str | None = None,
            kind: str = "blob") -> None:
        """Keep ``data``, whose digest the caller verified. Oversized items are skipped."""
        key = _key(kind, digest)
        if len(data) > self.max_item_bytes:
            return
        content = CachedContent(bytes(data), media_type)
        self._memory_put(key, content)
        self._disk_put(key, content)

    def fetch(self, digest: str, load: Callable[[], CachedContent], kind: str = "blob"
              ) -> CachedContent:
        """The cached content, or ``load()``'s (then kept); one load per digest at a time.

        ``load`` must return verified content. When it raises, every thread waiting
        for it gets the same error and nothing is kept.
        """
        found = self.get(digest, kind)
        if found is not None:
            return found
        key = _key(kind, digest)
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
            else:
                self.stats.shared_fetches += 1
        assert flight is not None
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.result is not None
            return flight.result
        try:
            with self._lock:
                self.stats.misses += 1
            flight.result = load()
            self.put(digest, flight.result.data, flight.result.media_type, kind)
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    # ------------------------------------------------------------ tag hints

    def tag_hint(self, *key: str) -> tuple[str, str] | None:
        """``(etag, digest)`` last seen for a tag (``key``: registry, repository, tag, accept)."""
        with self._lock:
            return self._tags.get(key)

    def remember_tag(self, etag: str, digest: str, *key: str) -> None:
        """Remember that the tag ``key`` had ``etag`` and ``digest`` (a hint, never an answer)."""
        with self._lock:
            self._tags[key] = (etag, digest)
            self._tags.move_to_end(key)
            while len(self._tags) > MAX_TAG_HINTS:
                self._tags.popitem(last=False)

    def forget_tag(self, *key: str) -> None:
        """Drop a tag hint (its content vanished)."""
        with self._lock:
            self._tags.pop(key, None)

    def clear(self, *, disk: bool = False) -> None:
        """Empty the memory cache and tag hints (and the disk folder when ``disk``)."""
        with self._lock:
            self._memory.clear()
            self._memory_used = 0
            self._tags.clear()
        if disk and self.directory is not None:
            for path in self._disk_files():
                _unlink(path)
            with self._lock:
                self._disk_used = 0

    @property
    def memory_used(self) -> int:
        """Bytes held in memory."""
        return self._memory_used

    # ------------------------------------------------------------ memory

    def _memory_put(self, key: tuple[str, str], content: CachedContent) -> None:
        size = len(content.data)
        if size > self.memory_bytes:
            return
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._memory_used -= len(old.data)
            self._memory[key] = content
            self._memory_used += size
            while self._memory_used > self.memory_bytes:
                _, dropped = self._memory.popitem(last=False)
                self._memory_used -= len(dropped.data)
                self.stats.evictions += 1

    # ------------------------------------------------------------ disk

    def _path(self, key: tuple[str, str]) -> Path:
        assert self.directory is not None
        kind, digest = key
        algorithm, encoded = parse_digest(digest)
        return self.directory / kind / algorithm / encoded[:2] / encoded

    def _disk_get(self, key: tuple[str, str]) -> CachedContent | None:
        if self.directory is None:
            return None
        path = self._path(key)
        try:
            with open(path, "rb") as handle:
                raw = handle.read(self.max_item_bytes + 1024)
        except OSError:
            return None
        content = _decode(raw, key)
        if content is None:
            log.info("cache file %s does not match its digest; dropping it", path)
            self.stats.disk_rejects += 1
            _unlink(path)
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        return content

    def _disk_put(self, key: tuple[str, str], content: CachedContent) -> None:
        if self.directory is None or self.disk_bytes == 0:
            return
        path = self._path(key)
        if path.exists():
            return
        raw = _encode(content)
        tmp = path.with_name(f"{_TEMP_PREFIX}{path.name[:16]}-{secrets.token_hex(6)}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                out.write(raw)
            os.replace(tmp, path)  # readers see the whole file or none
        except OSError as exc:
            log.info("cannot write the cache file %s (%s)", path, exc)
            _unlink(tmp)
            return
        with self._lock:
            if self._disk_used is None:
                self._disk_used = -1  # scanning
                scan = True
            else:
                scan = False
                if self._disk_used >= 0:
                    self._disk_used += len(raw)
        if scan:
            used = sum(_size(p) for p in self._disk_files())
            with self._lock:
                self._disk_used = used
        if (self._disk_used or 0) > self.disk_bytes:
            self._disk_trim()

    def _disk_files(self) -> list[Path]:
        assert self.directory is not None
        out = []
        for kind in _KINDS:
            root = self.directory / kind
            if root.is_dir():
                out.extend(p for p in root.rglob("*") if p.is_file())
        return out

    def _disk_trim(self) -> None:
        """Remove least recently used files until the folder is under 90% of its bound."""
        files = []
        for path in self._disk_files():
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        files.sort()
        used = sum(size for _, size, _ in files)
        goal = int(self.disk_bytes * 0.9)
        for _, size, path in files:
            if used <= goal:
                break
            _unlink(path)
            used -= size
            self.stats.evictions += 1
        with self._lock:
            self._disk_used = used


def _key(kind: str, digest: str) -> tuple[str, str]:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
    parse_digest(digest)
    return kind, digest


def _encode(content: CachedContent) -> bytes:
    """One line with the media type (may be empty), then the bytes."""
    return (content.media_type or "").encode("utf-8") + b"\n" + content.data


def _decode(raw: bytes, key: tuple[str, str]) -> CachedContent | None:
    head, sep, data = raw.partition(b"\n")
    if not sep:
        return None
    algorithm, encoded = parse_digest(key[1])
    if hashlib.new(algorithm, data).hexdigest() != encoded:
        return None
    media_type = head.decode("utf-8", "replace") or None
    return CachedContent(data, media_type)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
