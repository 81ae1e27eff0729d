"""Images on disk: the OCI image layout (read and write) and ``docker save`` tarballs.

:class:`OCILayout` follows the OCI image-layout spec 1.0: an ``oci-layout`` file,
an ``index.json`` whose entries name images with the
``org.opencontainers.image.ref.name`` annotation (the ``TAG`` of skopeo's
``oci:DIR:TAG``), and content-addressed ``blobs/<alg>/<hex>``. Every write goes
to a temporary file in the same folder and is renamed into place once complete
and verified, and ``index.json`` is rewritten (atomically, under a lock) only
after every blob an image needs is present: a failed or cancelled transfer
leaves no partial blob and no index entry.

``docker save`` tarballs are read by :mod:`~registry_nb.images.archive` (its names are
also reachable from here).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
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
    InvalidReferenceError,
    LayoutNameConflictError,
    ManifestNotFoundError,
    RegistryError,
)
from ..oci import (
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Descriptor,
    Index,
    Manifest,
    parse_manifest,
)
from ..oci.reference import parse_digest
from .image import BlobProgress, ImageSink, ImageStore, verified_chunks

__all__ = ["OCILayout", "REF_NAME", "CONTAINERD_NAME", "LAYOUT_VERSION", "TEMP_PREFIX",
           "LayoutReader", "blob_relpath", "load_layout_json", "validate_ref_name"]

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


def load_layout_json(raw: bytes, what: str) -> Any:
    """Decode a JSON file of a layout or archive; bad JSON is InvalidManifestError."""
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise InvalidManifestError(f"{what} is not valid JSON ({exc})") from None


def blob_relpath(digest: str) -> str:
    """``blobs/<algorithm>/<hex>`` of a digest."""
    algorithm, encoded = parse_digest(digest)
    return f"blobs/{algorithm}/{encoded}"


# image-layout spec: ref ::= component ("/" component)*, component ::= alphanum (separator
# alphanum)*, separator ::= [-._:@+] | "--"
_REF_NAME_RE = re.compile(r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
                          r"(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*")


def validate_ref_name(name: str) -> str:
    """Return ``name`` if the image-layout spec allows it as a ``ref.name``, else raise."""
    if not isinstance(name, str) or not _REF_NAME_RE.fullmatch(name):
        raise InvalidReferenceError(
            str(name), "tag", "is not a name an OCI layout allows (letters and digits, "
            "separated by one of - . _ : @ + or --, components joined by /)")
    return name


def _entry_tag(entry: Descriptor) -> str | None:
    return entry.annotations.get(REF_NAME)


class LayoutReader(ImageStore):
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
            raw = self._read_file(blob_relpath(reference), MAX_MANIFEST_BYTES)
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

    def _names(self, entries: list[Descriptor]) -> list[str]:
        """How the user can name ``entries``: their tag, else their digest."""
        return [e.annotations.get(REF_NAME) or e.digest for e in entries]

    def get_manifest(self, reference: str | None) -> Manifest | Index:
        entry = self.resolve(reference)
        raw = self._read_file(blob_relpath(entry.digest), MAX_MANIFEST_BYTES + 1)
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


class OCILayout(LayoutReader, ImageSink):
    """An OCI image layout folder, as a source and as a destination.

    ``OCILayout(path)`` opens an existing layout; writing to a folder that does not
    exist yet (or is empty) creates the layout on the first write.
    """

    transfer_phase = "download"

    def __init__(self, path: str | os.PathLike[str], *, image_name: str | None = None) -> None:
        """``image_name`` (a full reference) is written as ``io.containerd.image.name`` on
        the entry each write names, as containerd does; a write whose ``ref.name`` is
        already another image's is then refused (:meth:`name_conflict`)."""
        self.path = Path(path)
        self.image_name = image_name
        self._lock = threading.Lock()
        self._ensured = False

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
        return self.path / blob_relpath(digest)

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
        header = load_layout_json(raw, f"{self.path}/oci-layout")
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
        # once per layout object: a copy's blob threads all call this as they start,
        # and each used to write (and fsync) its own oci-layout file
        if self._ensured:
            return
        with self._lock:
            if self._ensured:
                return
            (self.path / "blobs").mkdir(parents=True, exist_ok=True)
            marker = self.path / "oci-layout"
            if not marker.exists():
                self._write_atomic(marker, _encode({"imageLayoutVersion": LAYOUT_VERSION}))
            self._ensured = True

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
        if tag and self.image_name:
            annotations[CONTAINERD_NAME] = self.image_name
        entry = manifest.descriptor(annotations=annotations) if isinstance(manifest, Index) \
            else Descriptor(manifest.media_type, manifest.digest, manifest.size, annotations)
        self.add_entry(entry)

    def add_entry(self, entry: Descriptor) -> None:
        """Add ``entry`` to ``index.json``, replacing the one with the same ref.name.

        An entry that carries ``io.containerd.image.name`` replaces only an entry of
        the same image name (a tag that moved); another image's raises
        :class:`LayoutNameConflictError` and leaves ``index.json`` as it was.
        """
        self._ensure()
        with self._locked():
            current = self.index()
            tag = _entry_tag(entry)
            name = entry.annotations.get(CONTAINERD_NAME)
            if tag and name:
                self._refuse_conflict(self._conflict_in(current, tag, name, entry.digest),
                                      tag, name)
            kept = [e for e in current.manifests
                    if not (tag and _entry_tag(e) == tag)
                    and not (not tag and not _entry_tag(e) and e.digest == entry.digest)]
            updated = Index.build([*kept, entry], annotations=current.annotations)
            self._write_atomic(self.path / "index.json", updated.raw)

    def name_conflict(self, tag: str, image_name: str) -> Descriptor | None:
        """The entry named ``tag`` that is not ``image_name``'s (None when there is none).

        An entry without ``io.containerd.image.name`` (written by skopeo, an older
        registry_nb) is another image's unless it has the same digest.
        """
        return self._conflict_in(self.index(), tag, image_name, None)

    @staticmethod
    def _conflict_in(index: Index, tag: str, image_name: str,
                     digest: str | None) -> Descriptor | None:
        for entry in index.manifests:
            if _entry_tag(entry) != tag:
                continue
            other = entry.annotations.get(CONTAINERD_NAME)
            if other != image_name and not (other is None and entry.digest == digest):
                return entry
        return None

    def _refuse_conflict(self, entry: Descriptor | None, tag: str, image_name: str) -> None:
        if entry is None:
            return
        existing = entry.annotations.get(CONTAINERD_NAME) or f"an image ({entry.digest})"
        raise LayoutNameConflictError(
            f"{self.path} already uses the name {tag!r} for {existing}; saving {image_name} "
            "under it would replace that image, and tools read a layout by this name alone.",
            name=tag, existing=existing, incoming=image_name,
            hint="Pass ref_name= to name this image differently in the layout, save it into "
            "another folder, or remove the other entry first (OCILayout.remove_tag).",
        )

    def refuse_name_conflict(self, tag: str, image_name: str) -> None:
        """Raise :class:`LayoutNameConflictError` when ``tag`` names another image."""
        self._refuse_conflict(self.name_conflict(tag, image_name), tag, image_name)

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


def __getattr__(name: str) -> Any:
    """``DockerArchive`` and ``open_local`` moved to :mod:`registry_nb.images.archive`."""
    if name in ("DockerArchive", "open_local"):
        from . import archive

        return getattr(archive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
