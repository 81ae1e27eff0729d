"""Read image layers as they stream: file listings, whiteouts, wasted space, packages.

A layer blob is decoded on the fly (gzip, uncompressed tar, and zstd when the
``zstandard`` module is installed) and read by a small tar reader written for
hostile input: nothing is extracted or written to disk, no path or link is ever
followed, header metadata is bounded, and a member that declares more bytes than
the layer holds is flagged, not trusted. Malformed archives raise
:class:`LayerReadError`; unsafe names come back as entries with ``flags``:

- ``absolute-path``: the name starts with ``/`` (mapped under the image root, as
  Docker does, but a naive ``tar -P`` would write outside);
- ``escapes-root``: after ``..`` the name climbs above the root (``../../etc/passwd``);
  such entries are listed as written and left out of the merged file system;
- ``link-escapes-root``: a symlink's relative target climbs above the root, or a
  hard link names an absolute or escaping path;
- ``parent-ref`` (a ``..`` component), ``truncated`` (declared size past the end of
  the layer), ``non-utf8-name``, ``setuid``/``setgid``, ``device``, ``sparse``,
  ``symlink-loop`` (set by :meth:`ImageScan.merge` on visible links that never resolve),
  ``not-parsed`` (a package database too large or not a regular file),
  ``bad-whiteout`` (a whiteout naming ``.`` or ``..``; ignored).

Whiteouts follow the OCI image spec: ``.wh.NAME`` deletes ``NAME`` from lower
layers, ``.wh..wh..opq`` hides everything lower layers put in its folder.
:meth:`ImageScan.merge` stacks the layers and reports every file version that is
not visible in the final file system (overwritten, deleted, hidden by an opaque
folder, or replaced by a file or folder of another kind) with an efficiency
figure in the spirit of dive: ``1 - wasted bytes / bytes of all file versions``.

Storage-and-transfer layer: imports protocol modules only, and no pandas.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO

from ..errors import RegistryError
from .compression import ChunkStream, decode_errors, open_layer_stream
from .packages import (
    package_database,
    parse_apk_installed,
    parse_dpkg_status,
    parse_python_metadata,
)

__all__ = [
    "LayerReadError",
    "TarEntry",
    "LayerScan",
    "WastedFile",
    "Package",
    "MergeResult",
    "read_layer",
    "package_database",
    "parse_dpkg_status",
    "parse_apk_installed",
    "parse_python_metadata",
    "UNSAFE_FLAGS",
    "MAX_ENTRIES",
    "MAX_PARSE_BYTES",
]

BLOCK = 512
#: Decoded bytes read at a time when skipping file data.
READ_SIZE = 1024 * 1024
#: Largest package database file read into memory (bigger ones are flagged ``not-parsed``).
MAX_PARSE_BYTES = 32 * 1024 * 1024
#: Largest PAX or GNU long-name header accepted.
MAX_META_BYTES = 1024 * 1024
#: Most entries one layer may hold before reading stops with an error.
MAX_ENTRIES = 1_000_000
#: Symlinks followed while resolving one path before it counts as a loop (Linux: 40).
MAX_LINK_HOPS = 40

#: Flags that mark an entry a naive extractor would write outside its target folder.
UNSAFE_FLAGS = frozenset({"absolute-path", "escapes-root", "link-escapes-root"})

_ZERO_BLOCK = bytes(BLOCK)
_OCTAL = re.compile(rb"[0-7]+")
_TYPES = {
    b"0": "file", b"\0": "file", b"7": "file", b"1": "hardlink", b"2": "symlink",
    b"3": "char", b"4": "block", b"5": "dir", b"6": "fifo", b"S": "file", b"D": "dir",
}
_DATA_TYPES = frozenset({b"0", b"\0", b"7", b"S"})
_META_TYPES = frozenset({b"x", b"g", b"L", b"K"})
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


class LayerReadError(RegistryError):
    """A layer is not a readable tar stream (corrupt or truncated data, bad header)."""


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class TarEntry:
    """One member of a layer's tar stream, as declared; never extracted.

    ``path`` is the cleaned absolute path in the image (``/etc/passwd``), or the
    name as written when it escapes the root; ``raw_name`` is always as written.
    ``type`` is ``file``, ``dir``, ``symlink``, ``hardlink``, ``char``, ``block``,
    ``fifo``, ``whiteout``, ``opaque``, ``whiteout-meta`` or ``other``; ``deletes``
    is the path a whiteout removes (for ``opaque``: the folder it empties).
    """

    layer: int
    path: str
    raw_name: str
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float | None
    link_target: str | None = None
    deletes: str | None = None
    flags: tuple[str, ...] = ()

    @property
    def unsafe(self) -> bool:
        """True when a naive extractor would write outside its target folder."""
        return bool(UNSAFE_FLAGS.intersection(self.flags))

    @property
    def in_root(self) -> bool:
        """True when the entry lands inside the image root (takes part in the merge)."""
        return "escapes-root" not in self.flags


@dataclass
class LayerScan:
    """What one layer holds: its entries, sizes, and the package databases read."""

    index: int
    digest: str | None
    media_type: str | None
    compression: str
    compressed_bytes: int
    uncompressed_bytes: int
    entries: list[TarEntry]
    contents: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WastedFile:
    """A file version that is not visible in the final file system."""

    path: str
    type: str
    size: int
    layer: int
    removed_in: int
    how: str  # overwritten | deleted | opaque | replaced


@dataclass(frozen=True)
class Package:
    """An installed package found in a package database of a layer."""

    ecosystem: str  # deb | apk | python
    name: str
    version: str | None
    architecture: str | None
    layer: int
    path: str


@dataclass
class MergeResult:
    """The layers stacked: the visible file system and what the stacking wasted."""

    visible: dict[str, TarEntry]
    wasted: list[WastedFile]
    total_bytes: int
    loops: set[str]

    @property
    def wasted_bytes(self) -> int:
        """Bytes of file versions not visible in the final file system."""
        return sum(w.size for w in self.wasted)

    @property
    def efficiency(self) -> float:
        """``1 - wasted/total`` (1.0 for an image without file bytes)."""
        if self.total_bytes <= 0:
            return 1.0
        return 1.0 - self.wasted_bytes / self.total_bytes


class _Input:
    """Exact reads and skips on the decoded stream, counting bytes, typed errors."""

    def __init__(self, stream: IO[bytes], what: str) -> None:
        self.stream = stream
        self.what = what
        self.offset = 0
        self._errors = decode_errors()

    def _read(self, size: int) -> bytes:
        try:
            return self.stream.read(size)
        except self._errors as exc:
            raise LayerReadError(
                f"{self.what}: the compressed stream is corrupt or cut short at "
                f"{self.offset} decoded bytes ({type(exc).__name__}: {exc})",
                hint="The blob is damaged; re-push the image.",
            ) from None

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the end of the stream)."""
        parts: list[bytes] = []
        want = size
        while want > 0:
            piece = self._read(min(want, READ_SIZE))
            if not piece:
                break
            parts.append(piece)
            want -= len(piece)
        data = b"".join(parts)
        self.offset += len(data)
        return data

    def skip(self, size: int | None) -> int:
        """Discard ``size`` bytes (None: everything); return how many there were."""
        skipped = 0
        while size is None or skipped < size:
            want = READ_SIZE if size is None else min(READ_SIZE, size - skipped)
            piece = self._read(want)
            if not piece:
                break
            skipped += len(piece)
        self.offset += skipped
        return skipped


# ------------------------------------------------------------------ tar headers


def _number(field_bytes: bytes, name: str, what: str) -> int:
    """An octal (or GNU base-256) header number."""
    if field_bytes and field_bytes[0] & 0x80:
        if field_bytes[0] == 0xFF:
            raise LayerReadError(f"{what}: negative {name} in a tar header")
        return int.from_bytes(bytes([field_bytes[0] & 0x7F]) + field_bytes[1:], "big")
    text = field_bytes.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not _OCTAL.fullmatch(text):
        raise LayerReadError(f"{what}: the tar header's {name} field is not a number "
                             f"({text[:20]!r})", hint="The layer is not a valid tar archive.")
    return int(text, 8)


def _checksum_ok(header: bytes) -> bool:
    stored = header[148:156].split(b"\0", 1)[0].strip(b" ")
    if not stored or not _OCTAL.fullmatch(stored):
        return False
    value = int(stored, 8)
    rest = header[:148] + b" " * 8 + header[156:]
    unsigned = sum(rest)
    if value == unsigned:
        return True
    return value == unsigned - 256 * sum(1 for b in rest if b > 127)  # old signed sums


def _text(raw: bytes) -> tuple[str, bool]:
    """Decode a name; (text, True) when it was not UTF-8 (shown with escapes)."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), True


def _pax_records(data: bytes, what: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise LayerReadError(f"{what}: malformed PAX header record at byte {pos}")
        length = int(digits)
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise LayerReadError(f"{what}: malformed PAX header record at byte {pos}")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq:
            raise LayerReadError(f"{what}: PAX header record without '=' at byte {pos}")
        out[key.decode("utf-8", "replace")] = value
        pos = end
    return out


def _pax_int(value: bytes | None, what: str, name: str) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        raise LayerReadError(f"{what}: PAX {name} is not a non-negative integer ({text[:20]!r})")
    return int(text)


def _pax_time(value: bytes | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def _clean(name: str) -> tuple[str | None, list[str]]:
    """('/a/b', flags), or (None, flags) when the name climbs above the root."""
    flags: list[str] = []
    absolute = name.startswith("/")
    if absolute:
        flags.append("absolute-path")
    parts: list[str] = []
    escaped = False
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if "parent-ref" not in flags:
                flags.append("parent-ref")
            if parts:
                parts.pop()
            elif not absolute:  # "/.." is "/" (Docker cleans it so); "../x" escapes
                escaped = True
            continue
        parts.append(part)
    if escaped:
        flags.append("escapes-root")
        return None, flags
    return "/" + "/".join(parts), flags


def _link_escapes(path: str, target: str) -> bool:
    """True when a relative symlink target climbs above the root from its folder."""
    depth = len([p for p in posixpath.dirname(path).split("/") if p])
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        else:
            depth += 1
    return False


@dataclass
class _Header:
    name: bytes
    linkname: bytes
    type: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float | None


def _headers(inp: _Input, what: str) -> Iterator[tuple[_Header, list[str]]]:
    """Member headers with PAX and GNU long names applied; the caller reads or skips data."""
    global_pax: dict[str, bytes] = {}
    local_pax: dict[str, bytes] = {}
    long_name: bytes | None = None
    long_link: bytes | None = None
    while True:
        at = inp.offset
        header = inp.read(BLOCK)
        if not header:
            return  # no end-of-archive blocks: accepted, as GNU tar does
        if len(header) < BLOCK:
            raise LayerReadError(f"{what}: the tar stream ends inside a header at byte {at}",
                                 hint="The layer is cut short; re-push the image.")
        if header == _ZERO_BLOCK:
            return
        if not _checksum_ok(header):
            raise LayerReadError(f"{what}: bad tar header checksum at byte {at}",
                                 hint="The layer is not a valid tar archive; re-push the image.")
        kind = header[156:157]
        size = _number(header[124:136], "size", what)
        if kind in _META_TYPES:
            if size > MAX_META_BYTES:
                raise LayerReadError(f"{what}: a {kind.decode()!r} header of {size} bytes at "
                                     f"byte {at} is over the {MAX_META_BYTES}-byte limit")
            data = inp.read(size)
            if len(data) < size:
                raise LayerReadError(f"{what}: the tar stream ends inside a header at byte {at}")
            inp.skip(-size % BLOCK)
            if kind == b"x":
                local_pax.update(_pax_records(data, what))
            elif kind == b"g":
                global_pax.update(_pax_records(data, what))
            elif kind == b"L":
                long_name = data.split(b"\0", 1)[0]
            else:
                long_link = data.split(b"\0", 1)[0]
            continue
        pax = {**global_pax, **local_pax}
        flags: list[str] = []
        if kind == b"S" or any(k.startswith("GNU.sparse") for k in pax):
            flags.append("sparse")
        magic = header[257:263]
        name = header[0:100].split(b"\0", 1)[0]
        if magic == b"ustar\0":  # POSIX: a prefix holds the start of long names
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        if long_name is not None:
            name = long_name
        if "path" in pax:
            name = pax["path"]
        linkname = header[157:257].split(b"\0", 1)[0]
        if long_link is not None:
            linkname = long_link
        if "linkpath" in pax:
            linkname = pax["linkpath"]
        pax_size = _pax_int(pax.get("size"), what, "size")
        uid = _pax_int(pax.get("uid"), what, "uid")
        gid = _pax_int(pax.get("gid"), what, "gid")
        mtime = _pax_time(pax.get("mtime"))
        yield _Header(
            name=name,
            linkname=linkname,
            type=kind,
            size=pax_size if pax_size is not None else size,
            mode=_number(header[100:108], "mode", what) & 0o7777,
            uid=uid if uid is not None else _number(header[108:116], "uid", what),
            gid=gid if gid is not None else _number(header[116:124], "gid", what),
            mtime=mtime if mtime is not None else float(_number(header[136:148], "mtime", what)),
        ), flags
        local_pax, long_name, long_link = {}, None, None


def _entry(index: int, head: _Header, flags: list[str]) -> TarEntry:
    raw_name, bad_name = _text(head.name)
    if bad_name:
        flags.append("non-utf8-name")
    kind = _TYPES.get(head.type, "other")
    if kind == "file" and raw_name.endswith("/") and head.type == b"\0":
        kind = "dir"  # old tar: a "regular file" whose name ends in "/" is a folder
    path, name_flags = _clean(raw_name)
    flags.extend(name_flags)
    link = None
    if kind in ("symlink", "hardlink"):
        link, bad_link = _text(head.linkname)
        if bad_link and "non-utf8-name" not in flags:
            flags.append("non-utf8-name")
        if kind == "symlink" and path is not None and not link.startswith("/") \
                and _link_escapes(path, link):
            flags.append("link-escapes-root")
        if kind == "hardlink":
            target, target_flags = _clean(link)
            if target is None or "absolute-path" in target_flags:
                flags.append("link-escapes-root")
    deletes = None
    if path is not None and path != "/":
        folder, base = posixpath.split(path)
        if base == _OPAQUE:
            kind, deletes = "opaque", folder
        elif base.startswith(_WHITEOUT + _WHITEOUT):
            kind = "whiteout-meta"  # aufs bookkeeping (.wh..wh.plnk...): ignored
        elif base.startswith(_WHITEOUT):
            kind, target = "whiteout", base[len(_WHITEOUT):]
            if target in ("", ".", ".."):
                flags.append("bad-whiteout")
            else:
                deletes = posixpath.join(folder, target)
    if kind in ("char", "block"):
        flags.append("device")
    if kind == "file":
        if head.mode & 0o4000:
            flags.append("setuid")
        if head.mode & 0o2000:
            flags.append("setgid")
    return TarEntry(
        layer=index,
        path=path if path is not None else raw_name,
        raw_name=raw_name,
        type=kind,
        size=head.size if head.type in _DATA_TYPES or kind == "other" else 0,
        mode=head.mode,
        uid=head.uid,
        gid=head.gid,
        mtime=head.mtime,
        link_target=link,
        deletes=deletes,
        flags=tuple(flags),
    )


# ------------------------------------------------------------------ one layer


def read_layer(
    chunks: Iterable[bytes],
    *,
    index: int = 0,
    digest: str | None = None,
    media_type: str | None = None,
    keep: Callable[[str], bool] | None = None,
    max_entries: int = MAX_ENTRIES,
    max_keep_bytes: int = MAX_PARSE_BYTES,
) -> LayerScan:
    """List one layer's tar stream from ``chunks`` (a blob's bytes), never touching disk.

    The compression is told by the first bytes (the media type only adds notes on
    a mismatch). Regular files whose path ``keep`` accepts (default: package
    databases) are read into :attr:`LayerScan.contents`, up to ``max_keep_bytes``
    each. The stream is read to its end, so a verifying source (``iter_blob``)
    checks the digest before this returns.
    """
    keep = package_database if keep is None else keep
    what = f"layer {index}" + (f" ({digest})" if digest else "")
    raw = ChunkStream(chunks)
    try:
        stream, compression, notes = open_layer_stream(raw, media_type)
        inp = _Input(stream, what)
        entries: list[TarEntry] = []
        contents: dict[str, bytes] = {}
        for head, flags in _headers(inp, what):
            if len(entries) >= max_entries:
                raise LayerReadError(f"{what}: more than {max_entries} entries",
                                     hint="Pass a larger max_entries to read it anyway.")
            entry = _entry(index, head, flags)
            data_size = entry.size if head.type in _DATA_TYPES or entry.type == "other" else 0
            padding = -data_size % BLOCK
            wanted = entry.in_root and entry.type == "file" and keep(entry.path)
            got = 0
            if wanted and data_size <= max_keep_bytes:
                data = inp.read(data_size)
                got = len(data)
                if got == data_size:
                    contents[entry.path] = data
            else:
                if wanted or (entry.in_root and entry.type in ("symlink", "hardlink")
                              and keep(entry.path)):
                    entry = replace(entry, flags=(*entry.flags, "not-parsed"))
                got = inp.skip(data_size)
            if got < data_size:
                notes.append(f"{entry.path} declares {data_size} bytes but the layer ends "
                             f"after {got}")
                entries.append(replace(entry, size=got, flags=(*entry.flags, "truncated")))
                break
            entries.append(entry)
            if inp.skip(padding) < padding:
                break
        trailing = inp.skip(None)  # drain: the source verifies the digest at its end
        if trailing > 2 * 10240:
            notes.append(f"{trailing} bytes after the end of the archive")
        return LayerScan(
            index=index, digest=digest, media_type=media_type, compression=compression,
            compressed_bytes=raw.consumed, uncompressed_bytes=inp.offset, entries=entries,
            contents=contents, notes=notes,
        )
    except LayerReadError as exc:
        _blame_the_source(raw, exc)
        raise
    finally:
        raw.close()


def _blame_the_source(raw: ChunkStream, exc: LayerReadError) -> None:
    """Read the rest of the blob: a verifying source then reports a corrupt blob as such."""
    try:
        while raw.read(READ_SIZE):
            pass
    except RegistryError as source_error:
        raise source_error from exc
