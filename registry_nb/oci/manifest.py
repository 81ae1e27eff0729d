"""Descriptors, image manifests and indexes.

Parsing is defensive: whatever the bytes, :func:`parse_manifest` and
:meth:`ImageConfig.from_bytes` either return a value or raise a
:class:`~registry_nb.errors.RegistryError` subclass naming the offending field
(``InvalidManifestError``, ``UnsupportedMediaTypeError``). The verbatim bytes are
kept in ``raw`` so digests are always those of what the registry served.

Builders (:meth:`Manifest.build`, :meth:`Index.build`, :meth:`ImageConfig.build`)
write one stable encoding: compact UTF-8 JSON (``separators=(",", ":")``, non-ASCII
kept as is, no trailing newline) with keys in the field order of the OCI
image-spec Go types, omitting empty optional fields — the same shape containerd
and buildkit produce.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidManifestError, ManifestNotFoundError, UnsupportedMediaTypeError
from .jsonfields import Fields, encode_json, json_type, load_json
from .mediatypes import (
    DOCKER_SCHEMA1_MANIFEST,
    IMAGE_MANIFEST_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1_MEDIA_TYPES,
)
from .platform import Platform
from .reference import digest_of, sha256_digest

__all__ = ["Descriptor", "Manifest", "Index", "parse_manifest"]

_GENERIC_CONTENT_TYPES = {"", "application/json", "text/plain", "application/octet-stream"}
_ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
_SCHEMA1_HINT = (
    "Docker schema 1 manifests are deprecated and unsupported: re-push the image with a "
    "current docker (docker pull, then docker push), which writes schema 2 or OCI."
)

# ------------------------------------------------------------------ descriptors


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says about a blob or manifest."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: list[str] = field(default_factory=list)
    artifact_type: str | None = None
    data: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_dict(
        cls, data: Any, *, where: str = "descriptor", kind: str = "manifest"
    ) -> Descriptor:
        """Read a descriptor object; bad shapes raise InvalidManifestError naming the field.

        ``mediaType`` and ``artifactType`` must be RFC 6838 media types, ``urls``
        absolute URIs, and ``data`` padded base64 of exactly the described content.
        """
        f = Fields(data, where, kind)
        platform_data = f.raw("platform", False)
        platform = None
        if platform_data is not None:
            platform = Platform.from_dict(platform_data, where=f.path("platform"), kind=kind)
        descriptor = cls(
            media_type=f.media_type("mediaType", required=True) or "",
            digest=f.digest("digest") or "",
            size=f.integer("size", required=True) or 0,
            annotations=f.string_map("annotations"),
            platform=platform,
            urls=f.uris("urls"),
            artifact_type=f.media_type("artifactType"),
            data=f.base64("data"),
        )
        embedded = descriptor.data
        if embedded is not None and (len(embedded) != descriptor.size
                                     or digest_of(embedded, descriptor.digest)
                                     != descriptor.digest):
            raise f.error(f.path("data"), f"holds {len(embedded)} bytes that are not the "
                          f"{descriptor.size} bytes of {descriptor.digest}")
        return descriptor

    @classmethod
    def for_content(
        cls,
        media_type: str,
        data: bytes,
        *,
        annotations: Mapping[str, str] | None = None,
        platform: Platform | None = None,
    ) -> Descriptor:
        """A sha256 descriptor of ``data``."""
        return cls(media_type, sha256_digest(data), len(data), dict(annotations or {}), platform)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (OCI key order, empty optional fields omitted)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type, "digest": self.digest, "size": self.size
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.data is not None:
            out["data"] = base64.b64encode(self.data).decode("ascii")
        return out

    @property
    def is_attestation(self) -> bool:
        """True for buildkit attestation entries (``unknown/unknown`` or annotated as such)."""
        if self.annotations.get(_ATTESTATION_ANNOTATION) == "attestation-manifest":
            return True
        return self.platform is not None and self.platform.is_unknown


# ------------------------------------------------------------------ manifests


@dataclass(frozen=True, kw_only=True)
class _Document:
    """What manifests and indexes share: the optional fields and the exact bytes served."""

    schema_version: int = 2
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    raw: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        """``sha256:`` digest of :attr:`raw`."""
        return sha256_digest(self.raw)

    @property
    def size(self) -> int:
        """Length of :attr:`raw` in bytes."""
        return len(self.raw)


@dataclass(frozen=True, kw_only=True)
class Manifest(_Document):
    """An image manifest (OCI or Docker v2); ``raw`` holds the exact bytes served."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]

    @property
    def compressed_size(self) -> int:
        """Sum of the layer sizes (as stored in the registry)."""
        return sum(layer.size for layer in self.layers)

    @property
    def total_size(self) -> int:
        """Layers plus the config blob."""
        return self.compressed_size + self.config.size

    def descriptor(
        self,
        platform: Platform | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """A descriptor of this manifest, for an index."""
        return Descriptor(self.media_type, self.digest, self.size,
                          dict(annotations or {}), platform)

    @classmethod
    def build(
        cls,
        config: Descriptor,
        layers: Iterable[Descriptor],
        media_type: str = OCI_MANIFEST,
        annotations: Mapping[str, str] | None = None,
        *,
        subject: Descriptor | None = None,
        artifact_type: str | None = None,
    ) -> Manifest:
        """Encode a manifest in the module's canonical JSON and parse it back."""
        if media_type not in IMAGE_MANIFEST_MEDIA_TYPES:
            raise UnsupportedMediaTypeError(f"cannot build an image manifest of type {media_type}")
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        if artifact_type:
            doc["artifactType"] = artifact_type
        doc["config"] = config.to_dict()
        doc["layers"] = [layer.to_dict() for layer in layers]
        if subject is not None:
            doc["subject"] = subject.to_dict()
        if annotations:
            doc["annotations"] = dict(annotations)
        result = parse_manifest(encode_json(doc))
        assert isinstance(result, Manifest)
        return result

    @classmethod
    def _from_data(cls, data: dict[str, Any], raw: bytes, media_type: str) -> Manifest:
        f = Fields(data, "", "manifest")
        _check_schema_version(f)
        config_data = f.raw("config", True)
        layers_data = f.array("layers", required=True) or []
        subject_data = f.raw("subject", False)
        return cls(
            media_type=media_type,
            config=Descriptor.from_dict(config_data, where="config"),
            layers=[
                Descriptor.from_dict(item, where=f"layers[{i}]")
                for i, item in enumerate(layers_data)
            ],
            annotations=f.string_map("annotations"),
            subject=None if subject_data is None
            else Descriptor.from_dict(subject_data, where="subject"),
            artifact_type=f.media_type("artifactType"),
            raw=raw,
        )


@dataclass(frozen=True, kw_only=True)
class Index(_Document):
    """An OCI image index or Docker manifest list; ``raw`` holds the exact bytes served."""

    media_type: str
    manifests: list[Descriptor]

    @property
    def platforms(self) -> list[Platform]:
        """Platforms of the image entries (attestations and platform-less entries skipped)."""
        return [d.platform for d in self.manifests
                if d.platform is not None and not d.is_attestation]

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> Descriptor:
        """A descriptor of this index."""
        return Descriptor(self.media_type, self.digest, self.size, dict(annotations or {}))

    def select(self, platform: Platform | str | None = None) -> Descriptor:
        """The entry for ``platform``; by default the host's platform, then linux/amd64.

        Attestation entries (``unknown/unknown``) are never chosen. Raises
        :class:`ManifestNotFoundError` listing the available platforms when none fits.
        """
        if isinstance(platform, str):
            platform = Platform.parse(platform)
        entries = [d for d in self.manifests if d.platform is not None and not d.is_attestation]
        if platform is not None:
            wanted = [platform]
        else:
            host = Platform.host()
            wanted = [host, Platform("linux", host.architecture, host.variant),
                      Platform("linux", "amd64")]
        for candidate in wanted:
            for entry in entries:
                if entry.platform is not None and candidate.matches(entry.platform):
                    return entry
        for candidate in wanted:  # containerd's Only order: the closest variant first
            ranked = [(rank, i, e) for i, e in enumerate(entries) if e.platform is not None
                      and (rank := candidate.preference(e.platform)) is not None]
            if ranked:
                return min(ranked, key=lambda item: item[:2])[2]
        available = ", ".join(str(p) for p in self.platforms) or "none"
        asked = str(platform) if platform is not None else f"{wanted[0]} or linux/amd64"
        raise ManifestNotFoundError(
            f"the index {self.digest} has no image for platform {asked}; "
            f"available platforms: {available}",
            hint="Pass platform= with one of the available platforms.",
        )

    @classmethod
    def build(
        cls,
        manifests: Iterable[Descriptor],
        media_type: str = OCI_INDEX,
        annotations: Mapping[str, str] | None = None,
        *,
        subject: Descriptor | None = None,
        artifact_type: str | None = None,
    ) -> Index:
        """Encode an index in the module's canonical JSON and parse it back."""
        if media_type not in INDEX_MEDIA_TYPES:
            raise UnsupportedMediaTypeError(f"cannot build an index of type {media_type}")
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        if artifact_type:
            doc["artifactType"] = artifact_type
        doc["manifests"] = [m.to_dict() for m in manifests]
        if subject is not None:
            doc["subject"] = subject.to_dict()
        if annotations:
            doc["annotations"] = dict(annotations)
        result = parse_manifest(encode_json(doc))
        assert isinstance(result, Index)
        return result

    @classmethod
    def _from_data(cls, data: dict[str, Any], raw: bytes, media_type: str) -> Index:
        f = Fields(data, "", "index")
        _check_schema_version(f)
        entries = f.array("manifests", required=True) or []
        subject_data = f.raw("subject", False)
        return cls(
            media_type=media_type,
            manifests=[
                Descriptor.from_dict(item, where=f"manifests[{i}]", kind="index")
                for i, item in enumerate(entries)
            ],
            annotations=f.string_map("annotations"),
            subject=None if subject_data is None
            else Descriptor.from_dict(subject_data, where="subject", kind="index"),
            artifact_type=f.media_type("artifactType"),
            raw=raw,
        )


def _check_schema_version(f: Fields) -> None:
    version = f.integer("schemaVersion", required=True)
    if version != 2:
        raise f.error("schemaVersion", f"must be 2, not {version}")


def _content_type(value: str | None) -> str:
    if not isinstance(value, str):
        return ""
    return value.split(";", 1)[0].strip().lower()


def _manifest_type(data: dict[str, Any], content_type: str | None) -> str:
    """The media type from the body, else the Content-Type, else the document's shape."""
    body = data.get("mediaType")
    if body is not None and not isinstance(body, str):
        raise InvalidManifestError(
            f"invalid manifest: field 'mediaType' must be a string, not {json_type(body)}"
        )
    header = _content_type(content_type)
    if data.get("schemaVersion") == 1 and body in (None, *SCHEMA1_MEDIA_TYPES):
        return DOCKER_SCHEMA1_MANIFEST
    if body:
        known = MANIFEST_MEDIA_TYPES | SCHEMA1_MEDIA_TYPES
        if header in known and body in known and header != body:
            raise InvalidManifestError(
                f"invalid manifest: mediaType {body} does not match the Content-Type {header}",
                hint="The registry served a document other than the one it described.",
            )
        return body
    if header not in _GENERIC_CONTENT_TYPES:
        return header
    if "manifests" in data:
        return OCI_INDEX
    if "config" in data or "layers" in data:
        return OCI_MANIFEST
    if "fsLayers" in data or "signatures" in data:
        return DOCKER_SCHEMA1_MANIFEST
    raise InvalidManifestError(
        "invalid manifest: field 'mediaType' is missing and neither the Content-Type nor the "
        "document's fields say whether it is an image manifest or an index"
    )


def parse_manifest(raw: bytes, content_type: str | None = None) -> Manifest | Index:
    """Parse manifest bytes into a :class:`Manifest` or :class:`Index`.

    The type comes from the body's ``mediaType``, else ``content_type``, else the
    document's fields. Schema 1 and unknown types raise
    :class:`UnsupportedMediaTypeError`; anything malformed (over
    :data:`MAX_MANIFEST_BYTES`, bad JSON, missing or mistyped fields, negative sizes,
    bad digests) raises :class:`InvalidManifestError` naming the field.
    """
    data = load_json(raw, "manifest", MAX_MANIFEST_BYTES)
    media_type = _manifest_type(data, content_type)
    raw = bytes(raw)
    if media_type in SCHEMA1_MEDIA_TYPES:
        raise UnsupportedMediaTypeError(
            "this image has a Docker schema 1 manifest, which registry_nb does not read.",
            hint=_SCHEMA1_HINT,
        )
    if media_type in IMAGE_MANIFEST_MEDIA_TYPES:
        return Manifest._from_data(data, raw, media_type)
    if media_type in INDEX_MEDIA_TYPES:
        return Index._from_data(data, raw, media_type)
    raise UnsupportedMediaTypeError(
        f"unsupported manifest media type {media_type!r}",
        hint="registry_nb reads OCI image manifests and indexes and Docker v2 manifests and "
        "manifest lists.",
    )
