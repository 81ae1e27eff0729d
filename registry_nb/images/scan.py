"""An image's layers stacked: the merged file system, wasted space, installed packages.

:func:`scan_image` reads every layer in order (:func:`~registry_nb.images.layers.read_layer`);
:meth:`ImageScan.merge` applies whiteouts and reports every file version that is not
visible in the final file system (overwritten, deleted, hidden by an opaque folder, or
replaced by a file or folder of another kind), with dive's efficiency figure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from ..oci import Descriptor
from .layers import (
    MAX_ENTRIES,
    MAX_LINK_HOPS,
    LayerScan,
    MergeResult,
    Package,
    TarEntry,
    WastedFile,
    read_layer,
)
from .packages import parse_database

__all__ = ["ImageScan", "scan_image"]


def scan_image(
    layers: Sequence[Descriptor],
    open_blob: Callable[[Descriptor], Iterable[bytes]],
    *,
    keep: Callable[[str], bool] | None = None,
    max_entries: int = MAX_ENTRIES,
) -> ImageScan:
    """Read every layer of an image in order; ``open_blob`` streams a descriptor's bytes."""
    scans = [
        read_layer(open_blob(layer), index=i, digest=layer.digest, media_type=layer.media_type,
                   keep=keep, max_entries=max_entries)
        for i, layer in enumerate(layers)
    ]
    return ImageScan(scans)


class _Tree:
    """The file system as layers are stacked on it."""

    def __init__(self) -> None:
        self.live: dict[str, TarEntry | None] = {"/": None}  # None: an implied folder
        self.kids: dict[str, set[str]] = {}
        self.wasted: list[WastedFile] = []

    @staticmethod
    def _is_dir(entry: TarEntry | None) -> bool:
        return entry is None or entry.type == "dir"

    def _link(self, path: str) -> None:
        self.kids.setdefault(posixpath.dirname(path), set()).add(path)

    def drop(self, path: str, layer: int, how: str) -> None:
        """Remove ``path`` and everything under it, recording the files lost."""
        if path not in self.live or path == "/":
            return
        self.kids.get(posixpath.dirname(path), set()).discard(path)
        stack = [path]
        while stack:
            current = stack.pop()
            entry = self.live.pop(current, None)
            stack.extend(self.kids.pop(current, ()))
            if entry is not None and entry.type != "dir":
                self.wasted.append(WastedFile(entry.path, entry.type, entry.size, entry.layer,
                                              layer, how))

    def clear(self, folder: str, layer: int) -> None:
        """Hide what lower layers put in ``folder`` (an opaque whiteout)."""
        for child in list(self.kids.get(folder, ())):
            self.drop(child, layer, "opaque")

    def add(self, entry: TarEntry) -> None:
        path = entry.path
        if path == "/":
            return
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            folder = "/" + "/".join(parts[:i])
            if folder in self.live:
                if not self._is_dir(self.live[folder]):
                    self.drop(folder, entry.layer, "replaced")
                else:
                    continue
            self.live[folder] = None
            self._link(folder)
        if path in self.live:
            current = self.live[path]
            if self._is_dir(current) and entry.type == "dir":
                pass
            elif self._is_dir(current):
                self.drop(path, entry.layer, "replaced")
            else:
                assert current is not None
                self.wasted.append(WastedFile(current.path, current.type, current.size,
                                              current.layer, entry.layer,
                                              "overwritten" if entry.type != "dir" else "replaced"))
        self.live[path] = entry
        self._link(path)

    def loops(self) -> set[str]:
        """Visible symlinks whose resolution never ends (lexically, in the image)."""
        return {path for path, entry in self.live.items()
                if entry is not None and entry.type == "symlink" and self._loops(path)}

    def _loops(self, start: str) -> bool:
        pending = [p for p in reversed(start.split("/")) if p]
        resolved: list[str] = []
        hops = 0
        while pending:
            name = pending.pop()
            if name == ".":
                continue
            if name == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = "/" + "/".join([*resolved, name])
            entry = self.live.get(candidate)
            if entry is not None and entry.type == "symlink":
                hops += 1
                if hops > MAX_LINK_HOPS:
                    return True
                target = entry.link_target or ""
                if target.startswith("/"):
                    resolved = []
                pending.extend(p for p in reversed(target.split("/")) if p)
            else:
                resolved.append(name)
        return False


class ImageScan:
    """The layers of one image as read by :func:`read_layer`, bottom first."""

    def __init__(self, layers: list[LayerScan]) -> None:
        self.layers = layers
        self._merged: MergeResult | None = None

    @property
    def entries(self) -> list[TarEntry]:
        """Every entry of every layer, in layer order (``symlink-loop`` flags applied)."""
        loops = self.merge().loops
        out = []
        for scan in self.layers:
            for entry in scan.entries:
                if entry.type == "symlink" and entry.path in loops and \
                        self.merge().visible.get(entry.path) is entry:
                    entry = replace(entry, flags=(*entry.flags, "symlink-loop"))
                out.append(entry)
        return out

    def merge(self) -> MergeResult:
        """Stack the layers (whiteouts applied) and collect the file versions wasted."""
        if self._merged is not None:
            return self._merged
        tree = _Tree()
        total = 0
        for scan in self.layers:
            inside = [e for e in scan.entries if e.in_root]
            for entry in inside:  # whiteouts act on lower layers only: apply them first
                if entry.type == "opaque" and entry.deletes:
                    tree.clear(entry.deletes, scan.index)
            for entry in inside:
                if entry.type == "whiteout" and entry.deletes and entry.deletes != "/":
                    tree.drop(entry.deletes, scan.index, "deleted")
            for entry in inside:
                if entry.type in ("whiteout", "opaque", "whiteout-meta"):
                    continue
                if entry.type != "dir":
                    total += entry.size
                tree.add(entry)
        visible = {p: e for p, e in tree.live.items() if e is not None}
        self._merged = MergeResult(visible, tree.wasted, total, tree.loops())
        return self._merged

    def packages(self) -> list[Package]:
        """Installed packages of the final file system, each with the layer it came from.

        A database rewritten by later layers (dpkg's ``status``) credits each package
        to the earliest layer from which every later version of the file lists it
        at the same version.
        """
        visible = self.merge().visible
        versions: dict[str, list[int]] = {}
        for scan in self.layers:
            for path in scan.contents:
                versions.setdefault(path, []).append(scan.index)
        out: list[Package] = []
        for path, layers in sorted(versions.items()):
            entry = visible.get(path)
            if entry is None or entry.type != "file" or entry.layer not in layers:
                continue
            chain = [i for i in layers if i <= entry.layer]
            parsed = [parse_database(path, self.layers[i].contents[path]) for i in chain]
            for key, (arch, _) in parsed[-1].items():
                first = len(chain) - 1
                while first > 0 and key in parsed[first - 1]:
                    first -= 1
                out.append(Package(key[0], key[1], key[2], arch, chain[first], path))
        out.sort(key=lambda p: (p.ecosystem, p.name.lower(), p.version or "", p.path))
        return out
