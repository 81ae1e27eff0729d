"""Build images without a Docker engine: a folder becomes a layer on top of a base.

:func:`write_layer` makes a reproducible gzip tar layer from a folder: entries in
sorted order, every time set to one fixed value, owner root (uid/gid 0, no user
or group names), modes normalised (folders 0755, files 0755 when executable by
anyone, else 0644; symlinks kept as links, hard links stored as separate files).
The tar (the diff id) depends on the folder only; the gzip (the digest) also on the
compressor and level (:class:`~registry_nb.images.compression.LayerCompression`:
``isal`` level 1 in 1 MiB blocks by default when installed, else the standard
library's ``zlib`` level 6), never on the thread count: the same folder and
compression give the same digest on any machine with the same isal (or zlib).
The history entry of the layer names its compression (its ``comment``).
:func:`append_layers` puts layers on top of a base image (or on nothing) with a
new config (entrypoint, cmd, env, labels, user, workdir) and returns an
:class:`AssembledImage`, an image store the copier pushes like any other (base
layers are mounted or skipped, never downloaded, when the destination is the
base's registry).

Times default to ``$SOURCE_DATE_EPOCH`` when set, else 0 (1970-01-01), as
reproducible-build tools do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import NotFoundError, RegistryError
from ..oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    format_timestamp,
)
from .compression import LayerCompression
from .image import BlobProgress, Image, ImageStore, verified_chunks

__all__ = ["LayerBlob", "AssembledImage", "write_layer", "append_layers",
           "reproducible_time", "DEFAULT_CREATED_BY"]

log = logging.getLogger(__name__)

#: History line of a layer made here (unless the caller gives one).
DEFAULT_CREATED_BY = "registry_nb: layer from a folder"
_READ = 1024 * 1024


def reproducible_time(value: int | float | datetime | None = None) -> int:
    """Seconds since the epoch: ``value``, else ``$SOURCE_DATE_EPOCH``, else 0."""
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(stamp.timestamp())
    if value is not None:
        return int(value)
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(env) if env.isdigit() else 0


@dataclass(frozen=True)
class LayerBlob:
    """A layer written to a local file: its gzip digest, diff id, sizes and how its
    gzip was made (e.g. ``gzip by isal level 1, 1 MiB blocks``)."""

    path: Path
    digest: str
    diff_id: str
    size: int
    uncompressed_size: int
    compression: str = ""

    def descriptor(self, media_type: str = OCI_LAYER_GZIP) -> Descriptor:
        """A descriptor of the gzip blob."""
        return Descriptor(media_type, self.digest, self.size)


class _Hashing:
    """A write-only file that hashes and counts what passes through to ``target``."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.target.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def _entries(directory: Path, prefix: str) -> list[tuple[str, Path | None]]:
    """(name in the tar, path on disk or None for a made-up parent folder), sorted."""
    base = PurePosixPath("/", prefix).relative_to("/")
    found: dict[str, Path | None] = {}
    parts = base.parts
    for i in range(1, len(parts) + 1):
        found[str(PurePosixPath(*parts[:i]))] = None
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        relroot = Path(root).relative_to(directory)
        for name in (*dirs, *files):
            rel = PurePosixPath(*relroot.parts, name)
            found[str(base / rel) if parts else str(rel)] = Path(root, name)
    return sorted(found.items())


def _tarinfo(name: str, path: Path | None, mtime: int) -> tuple[tarfile.TarInfo, bool]:
    """A normalised header; the flag says whether file data follows."""
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info, False
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info, False
    if stat.S_ISLNK(st.st_mode):
        info.type, info.mode = tarfile.SYMTYPE, 0o777
        info.linkname = os.readlink(path)
        return info, False
    if stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        return info, True
    raise RegistryError(f"{path} is not a file, folder or symlink (a device, socket or fifo)",
                        hint="Remove it from the folder, or leave it out of the image.")


def write_layer(directory: str | os.PathLike[str], target: str | os.PathLike[str], *,
                prefix: str = "/", mtime: int | float | datetime | None = None,
                compressor: str | None = None, compresslevel: int | None = None,
                threads: int | None = None, sync: bool = True) -> LayerBlob:
    """Write the contents of ``directory`` as a reproducible gzip tar layer to ``target``.

    Entries go under ``prefix`` in the image (``"/"``: the folder is the image's
    root; ``"/app"``: it becomes ``/app``). ``compressor`` is ``"isal"`` (default when
    installed; ``compresslevel`` 0-3, default 1) or ``"zlib"`` (the standard library;
    0-9, default 6): each gives its own digest for the same folder. ``threads``
    (default: the cores, at most 4) changes the speed, not the bytes. Both digests are
    computed while writing, in one pass. ``sync`` flushes the file to the disk before
    returning (callers whose file is temporary pass False).
    """
    source = Path(directory)
    if not source.is_dir():
        raise NotFoundError(f"{source} is not a folder",
                            hint="Pass the folder whose files the layer should hold.")
    compression = LayerCompression.choose(compressor, compresslevel)
    stamp = reproducible_time(mtime)
    with open(target, "wb") as out:
        compressed = _Hashing(out)
        with compression.writer(compressed, threads) as gz:  # type: ignore[arg-type]
            raw = _Hashing(gz)
            with tarfile.open(fileobj=raw, mode="w", copybufsize=_READ,  # type: ignore[call-overload]
                              format=tarfile.PAX_FORMAT) as tar:
                for name, path in _entries(source, prefix):
                    info, has_data = _tarinfo(name, path, stamp)
                    if has_data and path is not None:
                        with open(path, "rb") as data:
                            tar.addfile(info, data)
                    else:
                        tar.addfile(info)
        out.flush()
        if sync:
            os.fsync(out.fileno())
    return LayerBlob(path=Path(target), digest=compressed.digest, diff_id=raw.digest,
                     size=compressed.size, uncompressed_size=raw.size,
                     compression=compression.describe())


# ------------------------------------------------------------------ the image


class AssembledImage(ImageStore):
    """An image made here: new config and layers in memory and files, the rest in the base."""

    def __init__(self, manifest: Manifest, config_raw: bytes, layers: Sequence[LayerBlob],
                 base: ImageStore | None = None) -> None:
        self.manifest = manifest
        self.config_raw = config_raw
        self.config = ImageConfig.from_bytes(config_raw)
        self.base = base
        self._layers = {layer.digest: layer for layer in layers}

    def describe(self) -> str:
        on = f" on {self.base.describe()}" if self.base is not None else ""
        return f"assembled image{on}"

    def get_manifest(self, reference: str | None) -> Manifest | Index:
        if reference in (None, self.manifest.digest) or not str(reference).startswith("sha"):
            return self.manifest
        if self.base is not None:
            return self.base.get_manifest(reference)
        raise NotFoundError(f"the assembled image has no manifest {reference}")

    def iter_blob(self, descriptor: Descriptor, *,
                  progress: BlobProgress | None = None) -> Iterator[bytes]:
        what = f"the blob {descriptor.digest} of the assembled image"
        if descriptor.digest == self.manifest.config.digest:
            return verified_chunks([self.config_raw], descriptor, what, progress)
        layer = self._layers.get(descriptor.digest)
        if layer is not None:
            return verified_chunks(_file_chunks(layer.path), descriptor, what, progress)
        if self.base is None:
            raise NotFoundError(f"the assembled image has no blob {descriptor.digest}")
        return self.base.iter_blob(descriptor, progress=progress)

    def open_blob_file(self, descriptor: Descriptor) -> IO[bytes] | None:
        layer = self._layers.get(descriptor.digest)
        if layer is not None:
            return open(layer.path, "rb")
        if self.base is not None and descriptor.digest != self.manifest.config.digest:
            return self.base.open_blob_file(descriptor)
        return None

    def read_range(self, descriptor: Descriptor, start: int,
                   end: int | None = None) -> bytes | None:
        layer = self._layers.get(descriptor.digest)
        if layer is None:
            return self.base.read_range(descriptor, start, end) if self.base else None
        with open(layer.path, "rb") as handle:
            if start < 0:
                handle.seek(max(layer.size + start, 0))
                return handle.read(-start)
            handle.seek(start)
            return handle.read() if end is None else handle.read(end - start + 1)

    def blob_origin(self, descriptor: Descriptor) -> tuple[str, str] | None:
        if self.base is None or descriptor.digest in self._layers \
                or descriptor.digest == self.manifest.config.digest:
            return None
        return self.base.blob_origin(descriptor)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ):
            yield chunk


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _merge_env(current: list[str], env: Mapping[str, str] | Sequence[str]) -> list[str]:
    pairs = env.items() if isinstance(env, Mapping) else \
        [tuple(item.split("=", 1)) if "=" in item else (item, "") for item in env]
    result = list(current)
    for key, value in pairs:
        line = f"{key}={value}"
        for i, existing in enumerate(result):
            if existing.split("=", 1)[0] == key:
                result[i] = line
                break
        else:
            result.append(line)
    return result


def append_layers(
    base: Image | None,
    layers: Sequence[LayerBlob],
    *,
    entrypoint: str | Sequence[str] | None = None,
    cmd: str | Sequence[str] | None = None,
    env: Mapping[str, str] | Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    user: str | None = None,
    workdir: str | None = None,
    platform: Platform | str | None = None,
    created: int | float | datetime | None = None,
    created_by: str = DEFAULT_CREATED_BY,
) -> AssembledImage:
    """An image of ``base`` (or nothing) plus ``layers``, with config fields changed.

    The base's config is kept field for field (unknown fields too) and only the
    fields given change: ``env`` entries replace same-named ones, ``labels`` merge,
    and a new ``entrypoint`` without ``cmd`` clears an inherited ``Cmd``, as in a
    Dockerfile. The manifest has the base's media type (Docker schema 2 or OCI);
    with no base it is OCI, for ``platform`` (default: linux on this machine's
    architecture).
    """
    # a datetime keeps its sub-second part (nanoseconds too, from a Timestamp or pandas)
    stamp = format_timestamp(created if isinstance(created, datetime) else
                             datetime.fromtimestamp(reproducible_time(created), timezone.utc))
    if base is not None:
        doc: dict[str, Any] = json.loads(base.config.raw)
        media_type = DOCKER_MANIFEST if base.media_type == DOCKER_MANIFEST else OCI_MANIFEST
        base_layers = list(base.manifest.layers)
    else:
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        wanted = wanted or Platform("linux", Platform.host().architecture, Platform.host().variant)
        doc = {"architecture": wanted.architecture, "os": wanted.os}
        if wanted.variant:
            doc["variant"] = wanted.variant
        media_type = OCI_MANIFEST
        base_layers = []
    docker = media_type == DOCKER_MANIFEST
    doc["created"] = stamp
    run = doc.get("config") or {}
    if entrypoint is not None:
        run["Entrypoint"] = _as_list(entrypoint)
        if cmd is None:
            run.pop("Cmd", None)
    if cmd is not None:
        run["Cmd"] = _as_list(cmd)
    if env:
        run["Env"] = _merge_env(list(run.get("Env") or []), env)
    if labels:
        run["Labels"] = {**(run.get("Labels") or {}), **dict(labels)}
    if user is not None:
        run["User"] = user
    if workdir is not None:
        run["WorkingDir"] = workdir
    doc["config"] = run
    rootfs = doc.get("rootfs") or {"type": "layers"}
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), *(lay.diff_id for lay in layers)]
    doc["rootfs"] = rootfs
    history = list(doc.get("history") or [])
    history += [{"created": stamp, "created_by": created_by,
                 **({"comment": lay.compression} if lay.compression else {})} for lay in layers]
    doc["history"] = history
    config_raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    config = ImageConfig.from_bytes(config_raw)  # validates what was made
    config_type = DOCKER_CONFIG if docker else OCI_CONFIG
    layer_type = DOCKER_LAYER if docker else OCI_LAYER_GZIP
    manifest = Manifest.build(
        Descriptor(config_type, config.digest, len(config_raw)),
        [*base_layers, *(lay.descriptor(layer_type) for lay in layers)],
        media_type,
    )
    return AssembledImage(manifest, config_raw, layers, base.store if base else None)
