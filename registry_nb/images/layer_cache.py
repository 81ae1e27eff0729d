"""Layer scans by layer digest: a content-addressed cache shared by processes and machines.

A layer named by its digest never changes, so what reading it found (its file listing,
its package databases, the entries the wasted-space merge needs: a
:class:`~registry_nb.images.layers.LayerScan`) can be kept forever and shared by every
image, repository and registry that holds that layer. :class:`LayerCache` keeps scans
in memory, and, given a folder or any fsspec URL (``s3://bucket/scans``,
``gcs://…``, ``memory://…``), as one file per layer that every worker of a cluster reads
and writes.

Each file is ``MAGIC``, the SHA-256 of the body, a newline, then the body (zlib of the
scan as JSON, never pickle: a shared folder must not be able to run code). Reads check
the magic, the hash and the layer digest written inside; anything else is a miss
(counted in ``stats.rejects``) and the next write replaces it. Writes go to a temporary
name first and are then moved into place, so readers never see half a file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from ..oci.reference import parse_digest
from .layers import LayerScan, TarEntry

__all__ = ["LayerCache", "LayerCacheStats", "scan_to_bytes", "scan_from_bytes", "at_index",
           "MAGIC"]

log = logging.getLogger(__name__)

#: First bytes of every cache file (the format's version is in it).
MAGIC = b"registry-nb layer-scan 1\n"
#: Scans kept in memory per cache.
MEMORY_ITEMS = 256


@dataclass
class LayerCacheStats:
    """Counters since the cache was made (in this process)."""

    hits: int = 0
    misses: int = 0
    rejects: int = 0  # entries found damaged or for another layer: treated as misses
    writes: int = 0


def scan_to_bytes(scan: LayerScan) -> bytes:
    """A layer scan as a cache file (magic, body hash, zlib JSON body)."""
    document = {
        "digest": scan.digest, "media_type": scan.media_type, "compression": scan.compression,
        "compressed_bytes": scan.compressed_bytes,
        "uncompressed_bytes": scan.uncompressed_bytes, "notes": list(scan.notes),
        "entries": [[e.path, e.raw_name, e.type, e.size, e.mode, e.uid, e.gid, e.mtime,
                     e.link_target, e.deletes, list(e.flags)] for e in scan.entries],
        "contents": {path: base64.b64encode(data).decode("ascii")
                     for path, data in scan.contents.items()},
    }
    body = zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 6)
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def scan_from_bytes(data: bytes, digest: str) -> LayerScan | None:
    """The scan in a cache file, or None when it is damaged or names another layer."""
    head = len(MAGIC) + 65
    if len(data) < head or not data.startswith(MAGIC) or data[head - 1:head] != b"\n":
        return None
    body = data[head:]
    if hashlib.sha256(body).hexdigest().encode() != data[len(MAGIC):head - 1]:
        return None
    try:
        document = json.loads(zlib.decompress(body))
        if document["digest"] != digest:
            return None
        entries = [TarEntry(0, path, raw, kind, size, mode, uid, gid, mtime, link, deletes,
                            tuple(flags))
                   for path, raw, kind, size, mode, uid, gid, mtime, link, deletes, flags
                   in document["entries"]]
        return LayerScan(0, digest, document["media_type"], document["compression"],
                         document["compressed_bytes"], document["uncompressed_bytes"],
                         entries, {path: base64.b64decode(text)
                                   for path, text in document["contents"].items()},
                         list(document["notes"]))
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        log.debug("layer cache entry for %s unreadable: %s", digest, exc)
        return None


def at_index(scan: LayerScan, index: int) -> LayerScan:
    """The same scan as layer ``index`` of an image (entries renumbered)."""
    if scan.index == index:
        return scan
    return replace(scan, index=index, entries=[replace(e, layer=index) for e in scan.entries])


class LayerCache:
    """Layer scans by digest, in memory and optionally under ``url`` (a folder or fsspec URL).

    ``storage_options`` go to fsspec (credentials of an object store, for example).
    Thread-safe; several processes and machines may share one ``url``. Picklable: a
    copy sent to a Dask worker opens the same ``url`` there (its memory part starts
    empty).
    """

    def __init__(self, url: str | os.PathLike[str] | None = None, *,
                 memory_items: int = MEMORY_ITEMS, **storage_options: Any) -> None:
        self.url = os.fspath(url) if url is not None else None
        self.memory_items = memory_items
        self.storage_options = storage_options
        self.stats = LayerCacheStats()
        self._memory: OrderedDict[str, LayerScan] = OrderedDict()
        self._lock = threading.Lock()
        self._fs: Any = None
        self._root = ""

    def __repr__(self) -> str:
        return f"LayerCache({self.url!r})" if self.url else "LayerCache(memory only)"

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "memory_items": self.memory_items,
                "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], memory_items=state["memory_items"],  # type: ignore[misc]
                      **state["storage_options"])

    def __dask_tokenize__(self) -> str:
        return f"LayerCache:{self.url}"

    # ------------------------------------------------------------ storage

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs is None:
            from fsspec.core import url_to_fs

            fs, root = url_to_fs(self.url, **self.storage_options)
            fs.makedirs(root, exist_ok=True)
            self._fs, self._root = fs, root.rstrip("/")
        return self._fs, self._root

    def path(self, digest: str) -> str:
        """Where the scan of layer ``digest`` is (or would be) kept under ``url``."""
        algorithm, hexdigest = parse_digest(digest)
        _, root = self._filesystem()
        return f"{root}/{algorithm}/{hexdigest[:2]}/{hexdigest}.scan"

    # ------------------------------------------------------------ lookups

    def get(self, digest: str) -> LayerScan | None:
        """The verified scan of layer ``digest``, or None."""
        with self._lock:
            if digest in self._memory:
                self._memory.move_to_end(digest)
                self.stats.hits += 1
                return self._memory[digest]
        found = self._read(digest) if self.url else None
        with self._lock:
            if found is None:
                self.stats.misses += 1
                return None
            self.stats.hits += 1
            self._remember(digest, found)
        return found

    def _read(self, digest: str) -> LayerScan | None:
        fs, _ = self._filesystem()
        path = self.path(digest)
        try:
            with fs.open(path, "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, OSError):
            return None
        scan = scan_from_bytes(data, digest)
        if scan is None:
            log.warning("layer cache: %s is damaged or not this layer's; reading the layer "
                        "again", path)
            with self._lock:
                self.stats.rejects += 1
        return scan

    def put(self, scan: LayerScan) -> None:
        """Keep ``scan`` (of layer ``scan.digest``) in memory and under ``url``."""
        if not scan.digest:
            raise ValueError("a layer scan without a digest cannot be cached")
        scan = at_index(scan, 0)
        with self._lock:
            self._remember(scan.digest, scan)
            self.stats.writes += 1
        if not self.url:
            return
        fs, _ = self._filesystem()
        path = self.path(scan.digest)
        folder = path.rsplit("/", 1)[0]
        temporary = f"{folder}/.tmp-{secrets.token_hex(8)}"
        try:
            fs.makedirs(folder, exist_ok=True)
            with fs.open(temporary, "wb") as handle:
                handle.write(scan_to_bytes(scan))
            fs.mv(temporary, path)
        except OSError as exc:  # a cache that cannot be written is only slower
            log.warning("layer cache: cannot write %s: %s", path, exc)
            try:
                fs.rm(temporary)
            except OSError:
                pass

    def _remember(self, digest: str, scan: LayerScan) -> None:
        self._memory[digest] = scan
        self._memory.move_to_end(digest)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    def clear_memory(self) -> None:
        """Forget the scans held in memory (the files under ``url`` stay)."""
        with self._lock:
            self._memory.clear()
