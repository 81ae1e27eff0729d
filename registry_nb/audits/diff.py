"""Compare two images: layers, files, packages, config (``ContainerRegistry.diff_images``).

What is read, and why. Two releases of an image usually share their lower layers (the
same base), so the layers both images start with, in the same order, are the *shared
base* and, by default, are not read at all: only the layers after it (the *differing
layers*, each blob read once even if both sides hold it) are streamed. Files are
compared by stacking each side's differing layers (:meth:`ImageScan.merge`, whiteouts
applied) over that common base: a path neither side's differing layers touch is the same
in both images, whatever the base holds, so it cannot be a difference. A path only one
side touches is compared with the base's version, which is the other side's: the row
says so (``other`` = ``base``) and leaves that side's size and mode empty, since the base
was not read. Read the base too (``shared=True``, once, for both sides) to get every
row against the real lower file (``added`` versus ``changed`` exact, whited-out paths
that were not there dropped). ``shared="auto"`` (the default) reads it only when the
package diff needs it: one side rewrites or removes a package database that the other
inherits from the base. Tar headers carry no content hash, so files count as changed
when type, size, mode, owner, link target or mtime differ.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from packaging.version import InvalidVersion, Version

from ..images.image import Image, Layer
from ..images.layers import LayerScan, TarEntry, read_layer
from ..images.packages import package_database
from ..images.scan import ImageScan

__all__ = ["ImageDiff", "diff_images", "compare_versions"]

_BASE = "base"  # a path only the other side's differing layers touch
_GONE = "deleted"


@dataclass
class ImageDiff:
    """Two images compared; ``blobs_read`` lists the layer digests that were streamed."""

    a: str
    b: str
    summary: dict[str, Any]
    layers: pd.DataFrame
    files: pd.DataFrame
    packages: pd.DataFrame
    config: pd.DataFrame
    blobs_read: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        s = self.summary
        return (f"ImageDiff({self.a} -> {self.b}: {s['shared_layers']} shared layers, "
                f"{s['files_added']} files added, {s['files_removed']} removed, "
                f"{s['files_changed']} changed)")


def _ids(image: Image) -> list[str]:
    return [layer.diff_id or layer.digest for layer in image.layers]


def diff_images(a: Image, b: Image, *, name_a: str, name_b: str,
                shared: bool | str = "auto") -> ImageDiff:
    """Compare ``a`` and ``b`` (see the module docstring for what is read)."""
    ids_a, ids_b = _ids(a), _ids(b)
    base = 0
    while base < min(len(ids_a), len(ids_b)) and ids_a[base] == ids_b[base]:
        base += 1
    read: dict[tuple[str, int], LayerScan] = {}
    order: list[str] = []

    def scan(layer: Layer, index: int) -> LayerScan:
        key = (layer.digest, index)
        if key not in read:
            read[key] = read_layer(layer.iter_bytes(), index=index, digest=layer.digest,
                                   media_type=layer.media_type)
            order.append(layer.digest)
        return read[key]

    tops_a = [scan(layer, i) for i, layer in enumerate(a.layers) if i >= base]
    tops_b = [scan(layer, i) for i, layer in enumerate(b.layers) if i >= base]
    if shared == "auto":
        shared = base > 0 and _packages_need_base(tops_a, tops_b)
    base_scans = [scan(layer, i) for i, layer in enumerate(a.layers[:base])] if shared else []
    side_a = _Side(_stack(base_scans, tops_a), tops_a, exact=bool(shared) or not base)
    side_b = _Side(_stack(base_scans, tops_b), tops_b, exact=bool(shared) or not base)
    files = _files_frame(side_a, side_b)
    packages = _packages_frame(side_a.scan, side_b.scan)
    layers = _layers_frame(a, b, base)
    counts = files["status"].value_counts()
    size_a = sum(layer.size for layer in a.layers)
    size_b = sum(layer.size for layer in b.layers)
    summary = {
        "a": name_a, "b": name_b, "digest_a": a.digest, "digest_b": b.digest,
        "size_bytes_a": size_a, "size_bytes_b": size_b, "size_change_bytes": size_b - size_a,
        "layers_a": len(ids_a), "layers_b": len(ids_b), "shared_layers": base,
        "shared_bytes": sum(layer.size for layer in a.layers[:base]),
        "layers_read": len(order), "shared_read": bool(shared),
        "files_added": int(counts.get("added", 0)), "files_removed": int(counts.get("removed", 0)),
        "files_changed": int(counts.get("changed", 0)),
        "packages_changed": len(packages),
    }
    return ImageDiff(name_a, name_b, summary, layers, files, packages,
                     _config_frame(a, b), order)


def _stack(base: list[LayerScan], tops: list[LayerScan]) -> ImageScan:
    """The scans numbered by their place in the stack (ImageScan's rule)."""
    scans = [*base, *tops]
    return ImageScan([scan if scan.index == i else
                      replace(scan, index=i, entries=[replace(e, layer=i) for e in scan.entries])
                      for i, scan in enumerate(scans)])


# ------------------------------------------------------------------ layers


def _layers_frame(a: Image, b: Image, base: int) -> pd.DataFrame:
    in_b = {layer.digest for layer in b.layers}
    in_a = {layer.digest for layer in a.layers}
    rows = []
    for i, layer in enumerate(a.layers):
        status = "shared" if layer.digest in in_b else "removed"
        rows.append({"status": status, "digest": layer.digest, "diff_id": layer.diff_id,
                     "size_bytes": layer.size, "index_a": i,
                     "index_b": next((j for j, x in enumerate(b.layers)
                                      if x.digest == layer.digest), None),
                     "in_shared_base": i < base})
    for j, layer in enumerate(b.layers):
        if layer.digest not in in_a:
            rows.append({"status": "added", "digest": layer.digest, "diff_id": layer.diff_id,
                         "size_bytes": layer.size, "index_a": None, "index_b": j,
                         "in_shared_base": False})
    frame = pd.DataFrame(rows, columns=["status", "digest", "diff_id", "size_bytes", "index_a",
                                        "index_b", "in_shared_base"])
    return frame.astype({"index_a": "Int64", "index_b": "Int64", "size_bytes": "int64"})


# ------------------------------------------------------------------ files


class _Side:
    """One image's file system as far as it was read."""

    def __init__(self, scan: ImageScan, tops: list[LayerScan], *, exact: bool) -> None:
        self.scan = scan
        self.exact = exact
        self.visible = scan.merge().visible
        self.deleted: set[str] = set()
        self.cleared: set[str] = set()
        for layer in tops:
            for entry in layer.entries:
                if entry.type == "whiteout" and entry.deletes:
                    self.deleted.add(entry.deletes)
                elif entry.type == "opaque" and entry.deletes:
                    self.cleared.add(entry.deletes)

    def state(self, path: str) -> TarEntry | str | None:
        if path in self.visible:
            return self.visible[path]
        if self.exact:
            return None
        parts = path.rstrip("/").split("/")
        for i in range(len(parts), 1, -1):
            prefix = "/".join(parts[:i])
            if prefix in self.deleted or (i < len(parts) and prefix in self.cleared):
                return _GONE
        return _BASE

    def paths(self) -> set[str]:
        return set(self.visible) | self.deleted


def _key(entry: TarEntry) -> tuple[Any, ...]:
    return (entry.type, entry.size, entry.mode, entry.uid, entry.gid, entry.link_target,
            entry.mtime)


_FILE_COLUMNS = {"path": "string", "status": "string", "type": "string",
                 "size_bytes_a": "Int64", "size_bytes_b": "Int64", "size_change_bytes": "Int64",
                 "mode_a": "string", "mode_b": "string", "other": "string"}


def _files_frame(a: _Side, b: _Side) -> pd.DataFrame:
    rows = []
    for path in sorted(a.paths() | b.paths()):
        sa, sb = a.state(path), b.state(path)
        ea = sa if isinstance(sa, TarEntry) else None
        eb = sb if isinstance(sb, TarEntry) else None
        if ea is None and eb is None:
            if {sa, sb} == {_GONE, _BASE}:  # one side deletes what the base holds
                rows.append({"path": path, "status": "removed" if sb == _GONE else "added",
                             "type": None, "other": _BASE})
            continue  # gone on both sides, or gone on one side and never there
        if ea is not None and eb is not None:
            if _key(ea) == _key(eb):
                continue
            status = "changed"
        else:
            status = "added" if eb is not None else "removed"
        other = _BASE if _BASE in (sa, sb) else None
        if other and (ea or eb).type == "dir":  # type: ignore[union-attr]
            continue  # a folder over the base's folder: its files tell the story
        if ea is not None and eb is not None and ea.type == "dir" == eb.type:
            continue  # folders differing only in metadata are noise
        rows.append({
            "path": path, "status": status, "type": (eb or ea).type,  # type: ignore[union-attr]
            "size_bytes_a": ea.size if ea else None, "size_bytes_b": eb.size if eb else None,
            "size_change_bytes": (eb.size if eb else 0) - (ea.size if ea else 0)
            if other is None else None,
            "mode_a": oct(ea.mode & 0o7777) if ea else None,
            "mode_b": oct(eb.mode & 0o7777) if eb else None, "other": other,
        })
    return pd.DataFrame(rows, columns=list(_FILE_COLUMNS)).astype(_FILE_COLUMNS)


# ------------------------------------------------------------------ packages


def _is_package_path(path: str) -> bool:
    return package_database(path) is not None or path.endswith((".dist-info", ".egg-info"))


def _packages_need_base(tops_a: list[LayerScan], tops_b: list[LayerScan]) -> bool:
    """True when the package diff needs the base: one side alone rewrites a whole-database
    file (dpkg ``status``, apk ``installed``) or deletes a package path (a whiteout of a
    ``.dist-info`` folder: an upgrade of a base package). A new ``.dist-info`` is a new
    package either way."""
    def touched(tops: list[LayerScan]) -> set[str]:
        out = set()
        for layer in tops:
            for entry in layer.entries:
                if entry.deletes and (_is_package_path(entry.deletes) or
                                      any(_is_package_path(p) for p in _parents(entry.deletes))):
                    out.add(entry.deletes)
                elif package_database(entry.path) in ("deb", "apk"):
                    out.add(entry.path)
        return out

    return bool(touched(tops_a) ^ touched(tops_b))


def _parents(path: str) -> Iterable[str]:
    parts = path.split("/")
    return ("/".join(parts[:i]) for i in range(2, len(parts)))


def _package_versions(scan: ImageScan) -> dict[tuple[str, str], str | None]:
    return {(p.ecosystem, p.name): p.version for p in scan.packages()}


_PACKAGE_COLUMNS = {"ecosystem": "string", "name": "string", "status": "string",
                    "version_a": "string", "version_b": "string"}


def _packages_frame(a: ImageScan, b: ImageScan) -> pd.DataFrame:
    va, vb = _package_versions(a), _package_versions(b)
    rows = []
    for key in sorted(va.keys() | vb.keys()):
        old, new = va.get(key, ""), vb.get(key, "")
        if key not in va:
            status = "added"
        elif key not in vb:
            status = "removed"
        elif old == new:
            continue
        else:
            order = compare_versions(key[0], old or "", new or "")
            status = {1: "upgraded", -1: "downgraded"}.get(order, "changed")
        rows.append({"ecosystem": key[0], "name": key[1], "status": status,
                     "version_a": va.get(key), "version_b": vb.get(key)})
    return pd.DataFrame(rows, columns=list(_PACKAGE_COLUMNS)).astype(_PACKAGE_COLUMNS)


def compare_versions(ecosystem: str, old: str, new: str) -> int | None:
    """1 when ``new`` is later, -1 when earlier, 0 when equal, None when not comparable.

    Python versions in PEP 440 order (``packaging``); dpkg and apk versions in dpkg's
    order (epoch, upstream, revision; ``~`` sorts before anything).
    """
    if ecosystem == "python":
        try:
            x, y = Version(old), Version(new)
        except InvalidVersion:
            return None
        return (y > x) - (y < x)
    return _dpkg_compare(new, old)


def _dpkg_split(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
    return (int(epoch) if epoch.isdigit() else 0), upstream, revision


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _dpkg_part(x: str, y: str) -> int:
    while x or y:
        ax, x = re.match(r"[^\d]*", x).group(), x[len(re.match(r"[^\d]*", x).group()):]
        ay, y = re.match(r"[^\d]*", y).group(), y[len(re.match(r"[^\d]*", y).group()):]
        for i in range(max(len(ax), len(ay))):
            cx = _order(ax[i]) if i < len(ax) else 0
            cy = _order(ay[i]) if i < len(ay) else 0
            if cx != cy:
                return (cx > cy) - (cx < cy)
        nx, x = re.match(r"\d*", x).group(), x[len(re.match(r"\d*", x).group()):]
        ny, y = re.match(r"\d*", y).group(), y[len(re.match(r"\d*", y).group()):]
        if int(nx or 0) != int(ny or 0):
            return (int(nx or 0) > int(ny or 0)) - (int(nx or 0) < int(ny or 0))
    return 0


def _dpkg_compare(x: str, y: str) -> int:
    """dpkg --compare-versions: 1 when ``x`` > ``y``."""
    ex, ux, rx = _dpkg_split(x)
    ey, uy, ry = _dpkg_split(y)
    if ex != ey:
        return (ex > ey) - (ex < ey)
    return _dpkg_part(ux, uy) or _dpkg_part(rx, ry)


# ------------------------------------------------------------------ config


def _config_frame(a: Image, b: Image) -> pd.DataFrame:
    ca, cb = a.config.config, b.config.config
    fields: list[tuple[str, Callable[[Any], Any]]] = [
        ("entrypoint", lambda c: c.entrypoint), ("cmd", lambda c: c.cmd),
        ("user", lambda c: c.user), ("working_dir", lambda c: c.working_dir),
        ("exposed_ports", lambda c: sorted(c.exposed_ports)),
        ("env_names", lambda c: sorted(c.env_dict.keys())),  # names only: values may be secret
    ]
    rows = []
    for name, get in fields:
        x, y = get(ca), get(cb)
        rows.append({"field": name, "a": x, "b": y, "changed": x != y})
    for key in sorted(ca.labels.keys() | cb.labels.keys()):
        x, y = ca.labels.get(key), cb.labels.get(key)
        rows.append({"field": f"label:{key}", "a": x, "b": y, "changed": x != y})
    rows.append({"field": "platform", "a": str(a.platform), "b": str(b.platform),
                 "changed": str(a.platform) != str(b.platform)})
    return pd.DataFrame(rows, columns=["field", "a", "b", "changed"])
