"""``docker save`` tarballs, read as image stores.

:class:`DockerArchive` reads what ``docker save`` writes (an uncompressed tar): the
OCI layout inside it when there is one (Docker 25 and later), else the
``manifest.json`` of older engines, from which an OCI manifest with uncompressed
layers is made. :func:`open_local` opens a folder as an OCI layout and a file as
an archive.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path
from typing import IO

from ..errors import ImageNotFoundError, InvalidManifestError, RegistryError
from ..oci import (
    MAX_MANIFEST_BYTES,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
)
from ..remote.chunks import FileSlice
from .layout import (
    CONTAINERD_NAME,
    REF_NAME,
    LayoutReader,
    OCILayout,
    blob_relpath,
    load_layout_json,
)

__all__ = ["DockerArchive", "open_local"]

_READ = 1024 * 1024


class _Slice(FileSlice):
    """A read-only, seekable window ``[offset, offset+size)`` of a file it opens."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        super().__init__(open(path, "rb"), offset, size)  # noqa: SIM115 - closed with it

    def close(self) -> None:
        self.source.close()
        super().close()


class DockerArchive(LayoutReader):
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
        self._docker_names: dict[str, list[str]] = {}  # manifest digest -> docker names

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
        relpath = blob_relpath(descriptor.digest)
        made = self._made_files()
        if relpath in made:
            return io.BytesIO(made[relpath])
        found = self._table().get(relpath) or self._layer_members.get(descriptor.digest)
        if found is None:
            raise ImageNotFoundError(f"{self.describe()} lacks the blob {descriptor.digest}")
        return io.BufferedReader(_Slice(self.path, *found), buffer_size=_READ)

    def open_blob_file(self, descriptor: Descriptor) -> IO[bytes] | None:
        return self._open_blob(descriptor)

    def _names(self, entries: list[Descriptor]) -> list[str]:
        """Docker's names (``repo:tag``) where the archive has them."""
        self._made_files()
        return [name for e in entries
                for name in (self._docker_names.get(e.digest) or super()._names([e]))]

    def _matches(self, entry: Descriptor, reference: str) -> bool:
        if super()._matches(entry, reference):
            return True
        names = list(self._docker_names.get(entry.digest, []))
        names.append(entry.annotations.get(CONTAINERD_NAME, ""))
        return any(n == reference or n.endswith("/" + reference) for n in names if n)

    def _convert(self, table: dict[str, tuple[int, int]]) -> dict[str, bytes]:
        """Make OCI manifests for the images of an old archive's manifest.json."""
        raw = self._member_bytes("manifest.json", MAX_MANIFEST_BYTES)
        if raw is None:
            raise ImageNotFoundError(f"{self.path} is not a docker save archive "
                                     "(no index.json or manifest.json)")
        items = load_layout_json(raw, f"{self.path}:manifest.json")
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
            made[blob_relpath(config.digest)] = config_raw
            manifest = Manifest.build(Descriptor(OCI_CONFIG, config.digest, len(config_raw)),
                                      layers, OCI_MANIFEST)
            made[blob_relpath(manifest.digest)] = manifest.raw
            names = [str(t) for t in item.get("RepoTags") or []]
            self._docker_names[manifest.digest] = names
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

