"""Images on disk: the OCI image layout (read and write) and ``docker save`` tarballs.

:class:`OCILayout` follows the OCI image-layout spec 1.0: an ``oci-layout`` file,
an ``index.json`` whose entries name images with the
``org.opencontainers.image.ref.name`` annotation (the ``TAG`` of skopeo's
``oci:DIR:TAG``), and content-addressed ``blobs/<alg>/<hex>``. Every write goes
to a temporary file in the same folder and is renamed into place once complete
and verified, and ``index.json`` is rewritten (atomically, under a lock) only
after every blob an image needs is present: a failed or cancelled transfer
leaves no partial blob and no index entry.

:class:`DockerArchive` reads what ``docker save`` writes (an uncompressed tar):
the OCI layout inside it when there is one (Docker 25 and later), else the
``manifest.json`` of older engines, from which an OCI manifest with
uncompressed layers is made.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import secrets
import tarfile
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import (
    DigestMismatchError,
    ImageNotFoundError,
    InvalidManifestError,
    ManifestNotFoundError,
    RegistryError,
)
from ..oci import (
    MAX_MANIFEST_BYTES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    parse_manifest,
)
from ..oci.reference import parse_digest
from .image import BlobProgress, ImageSink, ImageStore, verified_chunks

__all__ = ["OCILayout", "DockerArchive", "open_local", "REF_NAME", "CONTAINERD_NAME",
           "LAYOUT_VERSION", "TEMP_PREFIX"]

#: Annotation naming an image in index.json (skopeo's ``oci:DIR:TAG``).
REF_NAME = "org.opencontainers.image.ref.name"
#: Annotation docker and containerd put on index entries (the full image name).
CONTAINERD_NAME = "io.containerd.image.name"
#: Version written to ``oci-layout``.
LAYOUT_VERSION = "1.0.0"
#: Prefix of in-progress files; readers ignore them.
TEMP_PREFIX = ".tmp-"
_READ = 1024 * 1024


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise InvalidManifestError(f"{what} is not valid JSON ({exc})") from None


def _blob_relpath(digest: str) -> str:
    algorithm, encoded = parse_digest(digest)
    return f"blobs/{algorithm}/{encoded}"


def _entry_tag(entry: Descriptor) -> str | None:
    return entry.annotations.get(REF_NAME)


class _LayoutReader(ImageStore):
    """Reading an image layout from some file system (a folder, a tar)."""

    verifies_blobs = True  # iter_blob is verified_chunks over the file

    @abstractmethod
    def _read_file(self, relpath: str, limit: int) -> bytes | None:
        """Up to ``limit`` bytes of a file of the layout, or None when it is absent."""

    @abstractmethod
    def _open_blob(self, descriptor: Descriptor) -> IO[bytes]:
        """A binary file of the blob; raise ImageNotFoundError when absent."""

    def index(self) -> Index:
        """The parsed ``index.json`` (an empty index when there is none)."""
        raw = self._read_file("index.json", MAX_MANIFEST_BYTES)
        if raw is None:
            return Index.build([])
        result = parse_manifest(raw, OCI_INDEX)
        if not isinstance(result, Index):
            raise InvalidManifestError(f"{self.describe()}: index.json is not an image index")
        return result

    def tags(self) -> list[str]:
        """The ``ref.name`` of every entry of ``index.json``, in order."""
        return [tag for tag in (_entry_tag(e) for e in self.index().manifests) if tag]

    def resolve(self, reference: str | None) -> Descriptor:
        """The ``index.json`` entry for a tag, a digest, or (``None``) the only image."""
        entries = self.index().manifests
        if reference is None:
            if len(entries) == 1:
                return entries[0]
            raise ImageNotFoundError(
                f"{self.describe()} holds {len(entries)} images; say which one",
                hint=f"Pass a tag ({', '.join(self._names(entries)) or 'none'}) or a digest.",
            )
        if reference.startswith(("sha256:", "sha512:")):
            for entry in entries:
                if entry.digest == reference:
                    return entry
            raw = self._read_file(_blob_relpath(reference), MAX_MANIFEST_BYTES)
            if raw is not None:  # a child manifest (verified by get_manifest)
                return Descriptor(parse_manifest(raw).media_type, reference, len(raw))
        else:
            matches = [e for e in entries if self._matches(e, reference)]
            if matches:
                return matches[-1]
        raise ManifestNotFoundError(
            f"{self.describe()} has no image {reference!r}",
            hint=f"Images it holds: {', '.join(self._names(entries)) or 'none'}.",
        )

    @staticmethod
    def _matches(entry: Descriptor, reference: str) -> bool:
        return reference in (_entry_tag(entry), entry.annotations.get(CONTAINERD_NAME))

    @staticmethod
    def _names(entries: list[Descriptor]) -> list[str]:
        return [e.annotations.get(REF_NAME) or e.digest for e in entries]

    def get_manifest(self, reference: str | None) -> Manifest | Index:
        entry = self.resolve(reference)
        raw = self._read_file(_blob_relpath(entry.digest), MAX_MANIFEST_BYTES + 1)
        if raw is None:
            raise ManifestNotFoundError(
                f"{self.describe()}: the manifest {entry.digest} is missing from blobs/",
                hint="The layout is incomplete; copy the image into it again.",
            )
        for _ in verified_chunks([raw], entry, f"the manifest {entry.digest} in "
                                 f"{self.describe()}"):
            pass  # raises on a wrong length or digest
        return parse_manifest(raw, entry.media_type)

    def iter_blob(self, descriptor: Descriptor, *,
                  progress: BlobProgress | None = None) -> Iterator[bytes]:
        what = f"the blob {descriptor.digest} in {self.describe()}"
        return verified_chunks(self._chunks(descriptor), descriptor, what, progress)

    def _chunks(self, descriptor: Descriptor) -> Iterator[bytes]:
        with self._open_blob(descriptor) as handle:
            while True:
                chunk = handle.read(_READ)
                if not chunk:
                    return
                yield chunk

    def read_range(self, descriptor: Descriptor, start: int,
                   end: int | None = None) -> bytes | None:
        with self._open_blob(descriptor) as handle:
            return _read_range(handle, descriptor.size, start, end)


class OCILayout(_LayoutReader, ImageSink):
    """An OCI image layout folder, as a source and as a destination.

    ``OCILayout(path)`` opens an existing layout; writing to a folder that does not
    exist yet (or is empty) creates the layout on the first write.
    """

    transfer_phase = "download"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"oci:{self.path}"

    def __repr__(self) -> str:
        return f"OCILayout({str(self.path)!r})"

    # -- reading

    def _read_file(self, relpath: str, limit: int) -> bytes | None:
        path = self.path / relpath
        try:
            with open(path, "rb") as handle:
                return handle.read(limit)
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise ImageNotFoundError(f"{path} is a folder, not an image layout file") from None

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (or would live)."""
        return self.path / _blob_relpath(digest)

    def _open_blob(self, descriptor: Descriptor) -> IO[bytes]:
        try:
            return open(self.blob_path(descriptor.digest), "rb")
        except FileNotFoundError:
            raise ImageNotFoundError(
                f"{self.describe()} lacks the blob {descriptor.digest}",
                hint="The layout is incomplete; copy the image into it again.",
            ) from None

    def open_blob_file(self, descriptor: Descriptor) -> IO[bytes] | None:
        try:
            handle = open(self.blob_path(descriptor.digest), "rb")
        except FileNotFoundError:
            return None
        if os.fstat(handle.fileno()).st_size != descriptor.size:
            handle.close()
            raise DigestMismatchError(
                f"the blob {descriptor.digest} in {self.describe()} has the wrong length",
                expected=f"{descriptor.size} bytes",
                actual=f"{os.path.getsize(self.blob_path(descriptor.digest))} bytes",
            )
        return handle

    def check_layout(self) -> None:
        """Raise unless ``oci-layout`` exists and names a 1.x layout."""
        raw = self._read_file("oci-layout", 4096)
        if raw is None:
            raise ImageNotFoundError(
                f"{self.path} is not an OCI image layout (no oci-layout file)",
                hint="Pass a folder written by save_image, skopeo (oci:DIR) or crane.",
            )
        header = _load_json(raw, f"{self.path}/oci-layout")
        version = header.get("imageLayoutVersion") if isinstance(header, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise InvalidManifestError(
                f"{self.path}: oci-layout names the imageLayoutVersion {version!r}, not a "
                "1.x version string",
                hint="The folder is not an OCI image layout this toolkit reads; write it again "
                "with save_image or skopeo copy.")

    def get_manifest(self, reference: str | None) -> Manifest | Index:
        self.check_layout()
        return super().get_manifest(reference)

    # -- writing

    def _ensure(self) -> None:
        (self.path / "blobs").mkdir(parents=True, exist_ok=True)
        marker = self.path / "oci-layout"
        if not marker.exists():
            self._write_atomic(marker, _encode({"imageLayoutVersion": LAYOUT_VERSION}))

    @staticmethod
    def _temp_name(target: Path) -> Path:
        return target.with_name(f"{TEMP_PREFIX}{target.name[:16]}-{secrets.token_hex(6)}")

    def _write_atomic(self, target: Path, data: bytes) -> None:
        tmp = self._temp_name(target)
        try:
            with open(tmp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise

    def has_blob(self, descriptor: Descriptor) -> bool:
        try:
            return self.blob_path(descriptor.digest).stat().st_size == descriptor.size
        except FileNotFoundError:
            return False

    def write_blob(self, descriptor: Descriptor, source: ImageStore, *,
                   progress: BlobProgress | None = None,
                   stop: Callable[[], None] | None = None) -> int:
        self._ensure()
        target = self.blob_path(descriptor.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temp_name(target)
        what = f"the blob {descriptor.digest} from {source.describe()}"
        written = 0
        chunks = source.iter_blob(descriptor)
        try:
            with open(tmp, "wb") as out:
                # A layout's names must match its contents: verified here unless the
                # source's own iter_blob checks length and digest (one hash, not two).
                checked = chunks if source.verifies_blobs else \
                    verified_chunks(chunks, descriptor, what)
                for chunk in checked:
                    if stop is not None:
                        stop()
                    out.write(chunk)
                    written += len(chunk)
                    if progress is not None:
                        progress(written, descriptor.size)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return written

    def write_bytes_blob(self, data: bytes, digest: str) -> None:
        """Store ``data`` (already known to hash to ``digest``) as a blob."""
        self._ensure()
        target = self.blob_path(digest)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        self._write_atomic(target, data)

    def put_manifest(self, manifest: Manifest | Index, tag: str | None, *, top: bool) -> None:
        self.write_bytes_blob(manifest.raw, manifest.digest)
        if not top:
            return
        annotations = {REF_NAME: tag} if tag else {}
        entry = manifest.descriptor(annotations=annotations) if isinstance(manifest, Index) \
            else Descriptor(manifest.media_type, manifest.digest, manifest.size, annotations)
        self.add_entry(entry)

    def add_entry(self, entry: Descriptor) -> None:
        """Add ``entry`` to ``index.json``, replacing the one with the same ref.name."""
        self._ensure()
        with self._locked():
            current = self.index()
            tag = _entry_tag(entry)
            kept = [e for e in current.manifests
                    if not (tag and _entry_tag(e) == tag)
                    and not (not tag and not _entry_tag(e) and e.digest == entry.digest)]
            updated = Index.build([*kept, entry], annotations=current.annotations)
            self._write_atomic(self.path / "index.json", updated.raw)

    def remove_tag(self, tag: str) -> bool:
        """Drop the ``index.json`` entry named ``tag`` (blobs stay); True when one existed."""
        with self._locked():
            current = self.index()
            kept = [e for e in current.manifests if _entry_tag(e) != tag]
            if len(kept) == len(current.manifests):
                return False
            self._write_atomic(self.path / "index.json",
                               Index.build(kept, annotations=current.annotations).raw)
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise index.json updates between threads and processes (flock on the folder)."""
        with self._lock:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    def discard(self, digests: Iterable[str]) -> None:
        referenced = self._referenced_roots()
        for digest in digests:
            if digest not in referenced:
                _unlink(self.blob_path(digest))

    def _referenced_roots(self) -> set[str]:
        try:
            return {e.digest for e in self.index().manifests}
        except RegistryError:
            return set()

    def stray_files(self) -> list[Path]:
        """Leftover temporary files (from a killed process); safe to delete."""
        if not self.path.exists():
            return []
        return sorted(p for p in self.path.rglob(f"{TEMP_PREFIX}*") if p.is_file())


def _read_range(handle: IO[bytes], size: int, start: int, end: int | None) -> bytes:
    """Bytes ``start..end`` of an open file of ``size`` bytes (negative start: a suffix)."""
    if start < 0:
        handle.seek(max(size + start, 0))
        return handle.read(-start)
    handle.seek(start)
    return handle.read() if end is None else handle.read(end - start + 1)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ------------------------------------------------------------------ docker save


class _Slice(io.RawIOBase):
    """A read-only, seekable window ``[offset, offset+size)`` of a file."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        super().__init__()
        self._file = open(path, "rb")
        self._offset = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        left = self._size - self._pos
        if left <= 0:
            return 0
        view = memoryview(buffer).cast("B")[: min(len(buffer), left)]
        self._file.seek(self._offset + self._pos)
        got = self._file.readinto(view) or 0
        self._pos += got
        return got

    def close(self) -> None:
        self._file.close()
        super().close()


class DockerArchive(_LayoutReader):
    """A ``docker save`` tarball (uncompressed), as a source.

    References are docker's names (``demo:1``, ``127.0.0.1:5000/demo:1``), a bare
    tag, a manifest digest, or ``None`` when the archive holds one image. Archives
    of Docker 25 and later carry an OCI layout, read as is; older ones only a
    ``manifest.json``, from which OCI manifests are made whose layers are the
    saved (uncompressed) tars, so their digests are the config's diff ids. Blobs
    are read straight from the tar, one file handle each, so layers can be read in
    parallel.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._members: dict[str, tuple[int, int]] | None = None
        self._made: dict[str, bytes] | None = None  # index.json and blobs made for old archives
        self._layer_members: dict[str, tuple[int, int]] = {}
        self._names: dict[str, list[str]] = {}  # manifest digest -> docker names

    def describe(self) -> str:
        return f"docker-archive:{self.path}"

    def __repr__(self) -> str:
        return f"DockerArchive({str(self.path)!r})"

    def _table(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            if self._members is None:
                self._members = self._scan()
            return self._members

    def _scan(self) -> dict[str, tuple[int, int]]:
        try:
            with open(self.path, "rb") as handle:
                magic = handle.read(6)
        except FileNotFoundError:
            raise ImageNotFoundError(f"{self.path} does not exist") from None
        if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00" \
                or magic[:4] == b"\x28\xb5\x2f\xfd":
            raise RegistryError(
                f"{self.path} is compressed; docker archives are read uncompressed",
                hint="Decompress it first (gunzip, zstd -d).",
            )
        members: dict[str, tuple[int, int]] = {}
        try:
            with tarfile.open(self.path, mode="r:") as tar:
                for member in tar:
                    if member.isfile():
                        name = member.name[2:] if member.name.startswith("./") else member.name
                        members[name] = (member.offset_data, member.size)
        except tarfile.TarError as exc:
            raise RegistryError(f"{self.path} is not a tar archive ({exc})",
                                hint="Pass the file docker save wrote.") from None
        return members

    def _member_bytes(self, name: str, limit: int) -> bytes | None:
        found = self._table().get(name)
        if found is None:
            return None
        with _Slice(self.path, *found) as handle:
            return handle.read(limit)

    def _made_files(self) -> dict[str, bytes]:
        """What old archives lack: index.json, OCI manifests and configs by blob path."""
        table = self._table()
        with self._lock:
            if self._made is None:
                self._made = {} if "index.json" in table else self._convert(table)
            return self._made

    def _read_file(self, relpath: str, limit: int) -> bytes | None:
        made = self._made_files()
        if relpath in made:
            return made[relpath][:limit]
        return self._member_bytes(relpath, limit)

    def _open_blob(self, descriptor: Descriptor) -> IO[bytes]:
        relpath = _blob_relpath(descriptor.digest)
        made = self._made_files()
        if relpath in made:
            return io.BytesIO(made[relpath])
        found = self._table().get(relpath) or self._layer_members.get(descriptor.digest)
        if found is None:
            raise ImageNotFoundError(f"{self.describe()} lacks the blob {descriptor.digest}")
        return io.BufferedReader(_Slice(self.path, *found), buffer_size=_READ)

    def open_blob_file(self, descriptor: Descriptor) -> IO[bytes] | None:
        return self._open_blob(descriptor)

    def _matches(self, entry: Descriptor, reference: str) -> bool:
        if super()._matches(entry, reference):
            return True
        names = list(self._names.get(entry.digest, []))
        names.append(entry.annotations.get(CONTAINERD_NAME, ""))
        return any(n == reference or n.endswith("/" + reference) for n in names if n)

    def _convert(self, table: dict[str, tuple[int, int]]) -> dict[str, bytes]:
        """Make OCI manifests for the images of an old archive's manifest.json."""
        raw = self._member_bytes("manifest.json", MAX_MANIFEST_BYTES)
        if raw is None:
            raise ImageNotFoundError(f"{self.path} is not a docker save archive "
                                     "(no index.json or manifest.json)")
        items = _load_json(raw, f"{self.path}:manifest.json")
        if not isinstance(items, list):
            raise InvalidManifestError(f"{self.path}: manifest.json is not a list")
        made: dict[str, bytes] = {}
        entries: list[Descriptor] = []
        for item in items:
            if not isinstance(item, dict):
                raise InvalidManifestError(f"{self.path}: manifest.json entry is not an object")
            config_raw = self._member_bytes(str(item.get("Config")), MAX_MANIFEST_BYTES)
            if config_raw is None:
                raise InvalidManifestError(f"{self.path}: config {item.get('Config')} missing")
            config = ImageConfig.from_bytes(config_raw)
            paths = [str(p) for p in item.get("Layers") or []]
            if len(paths) != len(config.diff_ids):
                raise InvalidManifestError(f"{self.path}: {len(paths)} layers but "
                                           f"{len(config.diff_ids)} diff_ids in the config")
            layers = []
            for path, diff_id in zip(paths, config.diff_ids, strict=True):
                member = table.get(path)
                if member is None:
                    raise InvalidManifestError(f"{self.path}: layer {path} is missing")
                self._layer_members[diff_id] = member
                layers.append(Descriptor(OCI_LAYER, diff_id, member[1]))
            made[_blob_relpath(config.digest)] = config_raw
            manifest = Manifest.build(Descriptor(OCI_CONFIG, config.digest, len(config_raw)),
                                      layers, OCI_MANIFEST)
            made[_blob_relpath(manifest.digest)] = manifest.raw
            names = [str(t) for t in item.get("RepoTags") or []]
            self._names[manifest.digest] = names
            annotations = {REF_NAME: names[0].rsplit(":", 1)[-1]} if names else {}
            entries.append(Descriptor(OCI_MANIFEST, manifest.digest, manifest.size,
                                      annotations))
        made["index.json"] = Index.build(entries).raw
        return made


def open_local(path: str | os.PathLike[str]) -> OCILayout | DockerArchive:
    """An OCI layout for a folder, a docker archive for a file."""
    target = Path(path)
    if target.is_dir():
        return OCILayout(target)
    if target.is_file():
        return DockerArchive(target)
    raise ImageNotFoundError(f"{target} does not exist",
                             hint="Pass an OCI image layout folder or a docker save tarball.")

