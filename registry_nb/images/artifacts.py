"""Files and folders as OCI artifacts, the way ``oras push`` and ``oras pull`` ship them.

One layer per file, named by ``org.opencontainers.image.title``; a folder becomes one
tar+gzip layer with oras's ``io.deis.oras.content.digest`` (sha256 of the tar) and
``io.deis.oras.content.unpack`` annotations; the config is the empty descriptor and
the manifest carries ``artifactType``. Memory stays bounded whatever the sizes: files
are hashed in one streaming pass and uploaded from disk in chunks, folders are packed
to a temporary file first. Pulling writes each file to a temporary name beside its
target and renames it once its digest checks out; titles that would land outside the
destination are refused.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import DigestMismatchError, InvalidManifestError, NotFoundError, RegistryError
from ..oci import OCI_EMPTY, OCI_LAYER, OCI_LAYER_GZIP, Index, Manifest, format_timestamp
from ..oci.artifacts import EMPTY_DIGEST
from ..oci.manifest import Descriptor
from ..remote.distribution import RegistryClient
from .assemble import write_layer
from .referrers import attach

__all__ = ["push_artifact", "pull_artifact", "ArtifactFile", "DEFAULT_ARTIFACT_TYPE",
           "TITLE", "ORAS_DIGEST", "ORAS_UNPACK"]

TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
ORAS_DIGEST = "io.deis.oras.content.digest"
ORAS_UNPACK = "io.deis.oras.content.unpack"
#: What oras writes when no ``--artifact-type`` is given.
DEFAULT_ARTIFACT_TYPE = "application/vnd.unknown.artifact.v1"
_CHUNK = 1024 * 1024
_EMPTY = Descriptor(OCI_EMPTY, EMPTY_DIGEST, 2)


@dataclass(frozen=True)
class ArtifactFile:
    """One file or folder of an artifact: its layer descriptor and where its bytes are."""

    descriptor: Descriptor
    path: Path


def _file_digest(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as data:
        while chunk := data.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return "sha256:" + sha.hexdigest(), size


def _as_paths(paths: Any) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = [Path(p) for p in paths]
    if not out:
        raise NotFoundError("no files were given to push", hint="Pass a file, a folder, or a "
                            "list of them.")
    return out


def _layers(paths: list[Path], scratch: Path) -> list[ArtifactFile]:
    out: list[ArtifactFile] = []
    names: set[str] = set()
    for path in paths:
        if not path.exists():
            raise NotFoundError(f"{path} does not exist", hint="Pass files or folders that exist.")
        name = path.resolve().name
        if name in names:
            raise RegistryError(f"two of the paths are named {name!r}; titles must be unique",
                                hint="Rename one, or put them in a folder and push the folder.")
        names.add(name)
        if path.is_dir():
            blob = write_layer(path, scratch / f"{len(out)}.tar.gz", prefix=name, sync=False)
            annotations = {TITLE: name, ORAS_DIGEST: blob.diff_id, ORAS_UNPACK: "true"}
            out.append(ArtifactFile(Descriptor(OCI_LAYER_GZIP, blob.digest, blob.size,
                                               annotations), blob.path))
        elif path.is_file():
            digest, size = _file_digest(path)
            out.append(ArtifactFile(Descriptor(OCI_LAYER, digest, size, {TITLE: name}), path))
        else:
            raise RegistryError(f"{path} is not a file or a folder",
                                hint="Push regular files and folders only.")
    return out


def push_artifact(client: RegistryClient, repository: str, paths: Any, tag: str | None, *,
                  artifact_type: str | None = None, annotations: dict[str, str] | None = None,
                  subject: str | None = None, created: datetime | None = None) -> dict[str, Any]:
    """Push files and folders as one OCI artifact; ``subject`` attaches it to that manifest.

    ``subject`` is a manifest digest in ``repository``. Returns ``{"status", "digest",
    "media_type", "artifact_type", "tag", "files", "size_bytes", "subject",
    "attached_by"}`` (``attached_by``: ``referrers-api``, ``fallback-tag`` or None).
    """
    items = _as_paths(paths)
    subject_descriptor = None
    if subject is not None:
        head = client.head_manifest(repository, subject)
        if head is None or head.size is None:
            raise NotFoundError(f"{repository}@{subject} does not exist, so nothing can be "
                                "attached to it", hint="Push the image first, or name "
                                "another subject by its manifest digest.")
        subject_descriptor = Descriptor(head.media_type or "", subject, head.size)
    stamp = format_timestamp((created or datetime.now(timezone.utc)).replace(microsecond=0))
    with tempfile.TemporaryDirectory(prefix="registry-nb-artifact-") as scratch:
        layers = _layers(items, Path(scratch))
        client.upload_blob(repository, b"{}", EMPTY_DIGEST, 2)
        for item in layers:
            with open(item.path, "rb") as data:
                client.upload_blob(repository, data, item.descriptor.digest,
                                   item.descriptor.size)
    manifest = Manifest.build(_EMPTY, [i.descriptor for i in layers],
                              annotations={CREATED: stamp, **(annotations or {})},
                              subject=subject_descriptor,
                              artifact_type=artifact_type or DEFAULT_ARTIFACT_TYPE)
    attached_by = None
    if subject is not None:
        attached_by = attach(client, repository, manifest, subject, tag=tag)
    else:
        client.put_manifest(repository, tag or manifest.digest, manifest.raw,
                            manifest.media_type)
    return {"status": "success", "digest": manifest.digest, "media_type": manifest.media_type,
            "artifact_type": manifest.artifact_type, "tag": tag,
            "files": [i.descriptor.annotations[TITLE] for i in layers],
            "size_bytes": sum(i.descriptor.size for i in layers), "subject": subject,
            "attached_by": attached_by}


# ------------------------------------------------------------------ pull


def _target(dest: Path, title: str) -> Path:
    pure = PurePosixPath(title)
    if not title or pure.is_absolute() or ".." in pure.parts or "\\" in title:
        raise InvalidManifestError(
            f"the artifact names a file {title!r} that would land outside the destination",
            hint="Refused: an artifact may only write below the folder you pull into.")
    target = (dest / Path(*pure.parts)).resolve()
    if target != dest and dest not in target.parents:
        raise InvalidManifestError(
            f"the artifact names a file {title!r} that would land outside the destination",
            hint="Refused: an artifact may only write below the folder you pull into.")
    return target


class _HashingReader:
    """Reads through ``source`` and hashes what passes."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.sha.update(data)
        return data


def _unpack(blob: Path, expected: str | None, target: Path, name: str) -> None:
    """Extract the tar+gzip ``blob`` (whose top entry is ``name``) to ``target``."""
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        with gzip.open(blob, "rb") as raw:
            reader = _HashingReader(raw)  # type: ignore[arg-type]
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                tar.extractall(staging, filter="data")
            while reader.read(_CHUNK):
                pass
        actual = "sha256:" + reader.sha.hexdigest()
        if expected and actual != expected:
            raise DigestMismatchError(f"the folder {name!r} unpacks to another tar than its "
                                      f"{ORAS_DIGEST} annotation says", expected=expected,
                                      actual=actual)
        unpacked = staging / name
        if not unpacked.is_dir():
            raise InvalidManifestError(f"the folder layer {name!r} holds no folder of that name",
                                       hint="The artifact was not written the way oras writes "
                                       "folders; pull it with unpacking off.")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(unpacked, target)
    except tarfile.TarError as exc:
        raise InvalidManifestError(f"the folder layer {name!r} is not a tar archive "
                                   f"this can unpack safely: {exc}",
                                   hint="Refused to extract it; check who pushed it.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pull_artifact(client: RegistryClient, repository: str, reference: str,
                  dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the titled layers of an artifact into ``dest``, each verified, atomically.

    Folder layers (oras's ``unpack``) are extracted and their tar digest checked.
    Layers without a title are skipped and counted. Returns ``{"status", "digest",
    "artifact_type", "files", "paths", "skipped_layers"}``.
    """
    top = client.get_manifest(repository, reference)
    if isinstance(top, Index):
        raise InvalidManifestError(f"{repository}:{reference} is an index, not an artifact",
                                   hint="Pull one of its manifests by digest.")
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    targets = [(layer, _target(root, layer.annotations[TITLE]))
               for layer in top.layers if layer.annotations.get(TITLE)]
    written: list[str] = []
    for layer, target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        unpack = layer.annotations.get(ORAS_UNPACK, "").lower() == "true"
        if not unpack:
            client.fetch_blob(repository, layer.digest, target, size=layer.size)
        else:
            with tempfile.TemporaryDirectory(prefix=".partial-", dir=target.parent) as tmp:
                blob = Path(tmp) / "layer.tar.gz"
                client.fetch_blob(repository, layer.digest, blob, size=layer.size)
                _unpack(blob, layer.annotations.get(ORAS_DIGEST), target, target.name)
        written.append(str(target))
    return {"status": "success", "digest": top.digest, "artifact_type": top.artifact_type,
            "files": [layer.annotations[TITLE] for layer, _ in targets], "paths": written,
            "skipped_layers": len(top.layers) - len(targets)}


def layer_titles(manifest: Manifest) -> Sequence[str]:
    """The titles of a manifest's layers (what :func:`pull_artifact` would write)."""
    return [layer.annotations[TITLE] for layer in manifest.layers if TITLE in layer.annotations]
