"""What is inside an image's layers: every file, wasted space, installed packages.

Layer blobs are streamed and never written to disk (:mod:`registry_nb.images.layers`);
the scan of an image is kept for the next few calls on the same facade.
"""

from __future__ import annotations

import stat
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..frames import (
    LAYER_FILE_COLUMNS,
    LAYER_SCAN_COLUMNS,
    PACKAGE_COLUMNS,
    WASTED_FILE_COLUMNS,
    build_frame,
    size_mb,
)
from ..images.listing import RegistryImages
from ..images.scan import ImageScan, scan_image
from ..oci import (
    Manifest,
)

__all__ = ["SCAN_CACHE_SIZE", "WasteReport", "scan", "layer_contents", "wasted_space",
           "packages_frame"]

#: Image scans kept per facade (the last few images read), keyed by manifest digest.
SCAN_CACHE_SIZE = 4
_scans: weakref.WeakKeyDictionary[RegistryImages, OrderedDict[tuple[str, str], ImageScan]] = \
    weakref.WeakKeyDictionary()
_scans_lock = threading.Lock()


def scan(images: RegistryImages, repository: str, reference: str, *,
         platform: str | None = None) -> tuple[Manifest, ImageScan]:
    """Stream every layer of an image once and keep the result for the next few calls.

    Each blob's digest is verified as it streams (a mismatch raises
    :class:`~registry_nb.errors.DigestMismatchError` and nothing is kept).
    """
    image = images.resolve(repository, reference, platform).image
    manifest = image.manifest
    key = (repository, manifest.digest)
    with _scans_lock:
        cache = _scans.setdefault(images, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return manifest, cache[key]
    result = scan_image(manifest.layers, image.store.iter_blob)
    with _scans_lock:
        cache[key] = result
        while len(cache) > SCAN_CACHE_SIZE:
            cache.popitem(last=False)
    return manifest, result


def layer_contents(images: RegistryImages, repository: str, reference: str, *,
                   platform: str | None = None) -> pd.DataFrame:
    """Every tar entry of every layer, in order, read from the stream (nothing extracted).

    Unsafe names (absolute, climbing out with ``..``, links escaping the root) are
    listed as written with ``unsafe`` set and the reason in ``flags``.
    """
    manifest, result = scan(images, repository, reference, platform=platform)
    rows = []
    for entry in result.entries:
        rows.append({
            "layer": entry.layer, "layer_digest": manifest.layers[entry.layer].digest,
            "path": entry.path, "raw_name": entry.raw_name, "type": entry.type,
            "size_bytes": entry.size, "mode": entry.mode,
            "permissions": _permissions(entry.type, entry.mode), "uid": entry.uid,
            "gid": entry.gid, "mtime": entry.mtime, "link_target": entry.link_target,
            "deletes": entry.deletes, "unsafe": entry.unsafe, "flags": list(entry.flags),
        })
    return build_frame(rows, LAYER_FILE_COLUMNS)


_TYPE_BITS = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "char": stat.S_IFCHR,
              "block": stat.S_IFBLK, "fifo": stat.S_IFIFO}


def _permissions(kind: str, mode: int) -> str:
    return stat.filemode(_TYPE_BITS.get(kind, stat.S_IFREG) | (mode & 0o7777))


@dataclass
class WasteReport:
    """Space an image wastes on file versions its upper layers hide (dive's efficiency).

    ``efficiency`` is ``1 - wasted_bytes / total_bytes`` where ``total_bytes`` adds
    up every file version in every layer; ``files`` lists each hidden version
    (``how``: overwritten, deleted, opaque, replaced) biggest first; ``layers``
    has one row per layer (``added_bytes`` of files it brings, ``wasted_bytes`` of
    those later hidden, ``removes_bytes`` it hides from lower layers).
    """

    image: str
    total_bytes: int
    wasted_bytes: int
    efficiency: float
    files: pd.DataFrame
    layers: pd.DataFrame

    @property
    def wasted_mb(self) -> float | None:
        """Wasted bytes in MB."""
        return size_mb(self.wasted_bytes)

    def summary(self) -> dict[str, Any]:
        """The figures without the frames."""
        return {"image": self.image, "total_bytes": self.total_bytes,
                "wasted_bytes": self.wasted_bytes, "efficiency": self.efficiency,
                "wasted_files": len(self.files)}

    def __repr__(self) -> str:
        return (f"WasteReport({self.image!r}, efficiency={self.efficiency:.2%}, "
                f"wasted {self.wasted_bytes} of {self.total_bytes} bytes in "
                f"{len(self.files)} file versions)")

    def _repr_html_(self) -> str:
        head = (f"<p><b>{self.image}</b>: efficiency {self.efficiency:.2%}, "
                f"{self.wasted_bytes:,} of {self.total_bytes:,} bytes wasted</p>")
        return head + self.files.head(50).to_html(index=False)


def wasted_space(images: RegistryImages, repository: str, reference: str, *,
                 platform: str | None = None, name: str | None = None) -> WasteReport:
    """Files overwritten or deleted by later layers, the bytes wasted and the efficiency."""
    manifest, result = scan(images, repository, reference, platform=platform)
    merged = result.merge()
    wasted = sorted(merged.wasted, key=lambda w: (-w.size, w.path, w.layer))
    files = build_frame(
        [{"path": w.path, "type": w.type, "size_bytes": w.size, "size_mb": size_mb(w.size),
          "layer": w.layer, "removed_in": w.removed_in, "how": w.how} for w in wasted],
        WASTED_FILE_COLUMNS)
    layers = []
    for layer in result.layers:
        added = sum(e.size for e in layer.entries
                    if e.in_root and e.type not in ("dir", "whiteout", "opaque", "whiteout-meta"))
        layers.append({
            "index": layer.index, "digest": layer.digest, "media_type": layer.media_type,
            "compression": layer.compression, "size_bytes": layer.compressed_bytes,
            "uncompressed_size_bytes": layer.uncompressed_bytes, "entries": len(layer.entries),
            "added_bytes": added,
            "wasted_bytes": sum(w.size for w in merged.wasted if w.layer == layer.index),
            "removes_bytes": sum(w.size for w in merged.wasted if w.removed_in == layer.index),
            "notes": list(layer.notes),
        })
    return WasteReport(
        image=name or f"{images.full_name(repository)}@{manifest.digest}",
        total_bytes=merged.total_bytes, wasted_bytes=merged.wasted_bytes,
        efficiency=round(merged.efficiency, 6), files=files,
        layers=build_frame(layers, LAYER_SCAN_COLUMNS),
    )


def packages_frame(images: RegistryImages, repository: str, reference: str, *,
                   platform: str | None = None) -> pd.DataFrame:
    """Installed packages (dpkg, apk, Python dist-info) with the layer each came from."""
    manifest, result = scan(images, repository, reference, platform=platform)
    return build_frame(
        [{"ecosystem": p.ecosystem, "name": p.name, "version": p.version,
          "architecture": p.architecture, "layer": p.layer,
          "layer_digest": manifest.layers[p.layer].digest, "path": p.path}
         for p in result.packages()],
        PACKAGE_COLUMNS)
