"""Manifests, indexes, descriptors, platforms and image configs.

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

import json
import platform as _host
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import (
    InvalidManifestError,
    InvalidPlatformError,
    InvalidReferenceError,
    ManifestNotFoundError,
    UnsupportedMediaTypeError,
)
from .reference import parse_digest, sha256_digest

__all__ = [
    "OCI_MANIFEST", "OCI_INDEX", "OCI_CONFIG", "OCI_EMPTY",
    "OCI_LAYER", "OCI_LAYER_GZIP", "OCI_LAYER_ZSTD",
    "OCI_LAYER_NONDISTRIBUTABLE", "OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST", "DOCKER_CONFIG", "DOCKER_LAYER",
    "DOCKER_FOREIGN_LAYER", "DOCKER_SCHEMA1_MANIFEST", "DOCKER_SCHEMA1_SIGNED_MANIFEST",
    "SCHEMA1_MEDIA_TYPES", "INDEX_MEDIA_TYPES", "IMAGE_MANIFEST_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES", "CONFIG_MEDIA_TYPES", "LAYER_MEDIA_TYPES", "MANIFEST_ACCEPT",
    "MAX_MANIFEST_BYTES", "MAX_CONFIG_BYTES",
    "Platform", "Descriptor", "Manifest", "Index", "ContainerConfig", "HistoryEntry",
    "ImageConfig", "parse_manifest", "layer_history", "parse_timestamp", "format_timestamp",
]

# ------------------------------------------------------------------ media types

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = OCI_LAYER_NONDISTRIBUTABLE + "+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = OCI_LAYER_NONDISTRIBUTABLE + "+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"

SCHEMA1_MEDIA_TYPES = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MANIFEST_MEDIA_TYPES
CONFIG_MEDIA_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_MEDIA_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
    OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD, DOCKER_LAYER, DOCKER_FOREIGN_LAYER,
})

#: ``Accept`` header for manifest requests: OCI manifest and index, Docker v2 and list.
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

#: Largest manifest accepted (what distribution and containerd accept).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Largest image config accepted.
MAX_CONFIG_BYTES = 8 * 1024 * 1024

_MAX_SIZE = 2**63 - 1  # sizes are int64 in Go
_GENERIC_CONTENT_TYPES = {"", "application/json", "text/plain", "application/octet-stream"}
_ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
_SCHEMA1_HINT = (
    "Docker schema 1 manifests are deprecated and unsupported: re-push the image with a "
    "current docker (docker pull, then docker push), which writes schema 2 or OCI."
)


# ------------------------------------------------------------------ field checking


class _Fields:
    """Typed getters on a JSON object that raise InvalidManifestError naming the field."""

    def __init__(self, data: Any, where: str, kind: str) -> None:
        self.kind = kind
        self.where = where
        if not isinstance(data, dict):
            raise self.error(where, f"must be a JSON object, not {_json_type(data)}")
        self.data: dict[str, Any] = data

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, path: str, reason: str) -> InvalidManifestError:
        name = f"field {path!r}" if path else "the document"
        return InvalidManifestError(
            f"invalid {self.kind}: {name} {reason}",
            hint="The tool that pushed this image wrote a malformed document; re-push it.",
        )

    def child(self, key: str, data: Any) -> _Fields:
        return _Fields(data, self.path(key), self.kind)

    def raw(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise self.error(self.path(key), "is missing")
        return value

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw(key, required)
        if value is not None and not isinstance(value, str):
            raise self.error(self.path(key), f"must be a string, not {_json_type(value)}")
        return value

    def integer(self, key: str, *, required: bool = False, minimum: int = 0) -> int | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(self.path(key), f"must be an integer, not {_json_type(value)}")
        if value < minimum or value > _MAX_SIZE:
            raise self.error(self.path(key), f"must be between {minimum} and 2**63-1")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.error(self.path(key), f"must be true or false, not {_json_type(value)}")
        return value

    def digest(self, key: str, *, required: bool = True) -> str | None:
        value = self.string(key, required=required)
        if value is None:
            return None
        try:
            parse_digest(value)
        except InvalidReferenceError as exc:
            raise self.error(self.path(key), f"is not a valid digest: {exc.reason}") from None
        return value

    def array(self, key: str, *, required: bool = False) -> list[Any] | None:
        value = self.raw(key, required)
        if value is not None and not isinstance(value, list):
            raise self.error(self.path(key), f"must be an array, not {_json_type(value)}")
        return value

    def strings(self, key: str, *, allow_string: bool = False) -> list[str] | None:
        value = self.raw(key, False)
        if value is None:
            return None
        if allow_string and isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(self.path(key), "must be an array of strings")
        return list(value)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.raw(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.error(self.path(key), "must be an object of string values")
        return dict(value)

    def key_set(self, key: str) -> list[str]:
        """Keys of an object used as a set (``{"80/tcp": {}}``)."""
        value = self.raw(key, False)
        if value is None:
            return []
        if not isinstance(value, dict):
            raise self.error(self.path(key), f"must be an object, not {_json_type(value)}")
        return list(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(raw: Any, kind: str, limit: int) -> dict[str, Any]:
    """Decode a size-capped UTF-8 JSON object; every failure is InvalidManifestError."""
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise InvalidManifestError(f"invalid {kind}: expected bytes, got {type(raw).__name__}")
    if len(raw) > limit:
        raise InvalidManifestError(
            f"invalid {kind}: {len(raw)} bytes is over the {limit}-byte limit",
            hint="Registries and docker reject documents this large; this one is not an image.",
        )
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("starts with a byte order mark")
        data = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except RecursionError:
        raise InvalidManifestError(f"invalid {kind}: JSON nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidManifestError(f"invalid {kind}: not valid UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidManifestError(
            f"invalid {kind}: the document must be a JSON object, not {_json_type(data)}"
        )
    return data


def _encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ------------------------------------------------------------------ platforms

#: ``platform.machine()`` and common aliases → (GOARCH, variant).
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None), "x86-64": ("amd64", None), "amd64": ("amd64", None),
    "x64": ("amd64", None),
    "aarch64": ("arm64", None), "arm64": ("arm64", None), "armv8": ("arm64", None),
    "armv8l": ("arm", "v7"), "armv7l": ("arm", "v7"), "armv7": ("arm", "v7"),
    "armhf": ("arm", "v7"), "armv6l": ("arm", "v6"), "armv6": ("arm", "v6"),
    "armel": ("arm", "v6"), "armv5tel": ("arm", "v5"), "armv5l": ("arm", "v5"),
    "i386": ("386", None), "i486": ("386", None), "i586": ("386", None),
    "i686": ("386", None), "x86": ("386", None), "386": ("386", None),
    "ppc64le": ("ppc64le", None), "s390x": ("s390x", None), "riscv64": ("riscv64", None),
    "loongarch64": ("loong64", None), "mips64": ("mips64", None),
}
#: Variant assumed when a platform gives none.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


@dataclass(frozen=True)
class Platform:
    """An OCI platform: ``os/architecture[/variant]`` plus Windows ``os_version``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` (``linux/arm64/v8``); arch aliases are normalised.

        Raises :class:`RegistryError` for anything else.
        """
        parts = text.strip().lower().split("/") if isinstance(text, str) else []
        if not 2 <= len(parts) <= 3 or not all(re.fullmatch(r"[a-z0-9._-]+", p) for p in parts):
            raise InvalidPlatformError(
                f"invalid platform {text!r}",
                hint="Write platforms as os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8.",
            )
        os_name, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else None
        arch, implied = _ARCH_ALIASES.get(arch, (arch, None))
        return cls(os_name, arch, variant or implied)

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform with Go names (x86_64 → amd64, armv7l → arm/v7...)."""
        system = (_host.system() or "linux").lower()
        machine = (_host.machine() or "amd64").lower()
        arch, variant = _ARCH_ALIASES.get(machine, (machine, None))
        return cls(system, arch, variant)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "platform", kind: str = "manifest") -> Platform:
        """Read an OCI ``platform`` object; bad shapes raise InvalidManifestError."""
        f = _Fields(data, where, kind)
        features = f.strings("os.features") or f.strings("features") or []
        return cls(
            os=f.string("os", required=True) or "",
            architecture=f.string("architecture", required=True) or "",
            variant=f.string("variant") or None,
            os_version=f.string("os.version") or None,
            features=tuple(features),
        )

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON form."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.features:
            out["os.features"] = list(self.features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def _key(self) -> tuple[str, str, str | None]:
        arch, implied = _ARCH_ALIASES.get(self.architecture.lower(), (self.architecture, None))
        variant = (self.variant or implied or _DEFAULT_VARIANT.get(arch) or "").lower() or None
        return self.os.lower(), arch, variant

    def matches(self, other: Platform) -> bool:
        """True when ``other`` is this platform (``arm64`` ≡ ``arm64/v8``, ``arm`` ≡ ``arm/v7``).

        ``os_version`` is compared only when this platform sets it.
        """
        if self.os_version and self.os_version != other.os_version:
            return False
        return self._key() == other._key()

    def runs(self, other: Platform) -> bool:
        """True when a machine of this platform can run ``other`` (arm/v7 runs arm/v6...)."""
        if self.matches(other):
            return True
        mine, theirs = self._key(), other._key()
        if mine[:2] != theirs[:2] or mine[1] != "arm":
            return False
        return _arm_level(theirs[2]) <= _arm_level(mine[2])

    @property
    def is_unknown(self) -> bool:
        """True for ``unknown/unknown`` (buildkit's attestation manifests)."""
        return self.os == "unknown" and self.architecture == "unknown"

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


def _variant_level(entry: Descriptor) -> int:
    return _arm_level(entry.platform._key()[2]) if entry.platform else 0


def _arm_level(variant: str | None) -> int:
    match = re.fullmatch(r"v(\d+)", variant or "")
    return int(match.group(1)) if match else 99


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

    @classmethod
    def from_dict(
        cls, data: Any, *, where: str = "descriptor", kind: str = "manifest"
    ) -> Descriptor:
        """Read a descriptor object; bad shapes raise InvalidManifestError naming the field."""
        f = _Fields(data, where, kind)
        platform_data = f.raw("platform", False)
        platform = None
        if platform_data is not None:
            platform = Platform.from_dict(platform_data, where=f.path("platform"), kind=kind)
        return cls(
            media_type=f.string("mediaType", required=True) or "",
            digest=f.digest("digest") or "",
            size=f.integer("size", required=True) or 0,
            annotations=f.string_map("annotations"),
            platform=platform,
            urls=f.strings("urls") or [],
            artifact_type=f.string("artifactType") or None,
        )

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
        return out

    @property
    def is_attestation(self) -> bool:
        """True for buildkit attestation entries (``unknown/unknown`` or annotated as such)."""
        if self.annotations.get(_ATTESTATION_ANNOTATION) == "attestation-manifest":
            return True
        return self.platform is not None and self.platform.is_unknown


# ------------------------------------------------------------------ manifests


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """An image manifest (OCI or Docker v2); ``raw`` holds the exact bytes served."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]
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
        result = parse_manifest(_encode(doc))
        assert isinstance(result, Manifest)
        return result

    @classmethod
    def _from_data(cls, data: dict[str, Any], raw: bytes, media_type: str) -> Manifest:
        f = _Fields(data, "", "manifest")
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
            artifact_type=f.string("artifactType") or None,
            raw=raw,
        )


@dataclass(frozen=True, kw_only=True)
class Index:
    """An OCI image index or Docker manifest list; ``raw`` holds the exact bytes served."""

    media_type: str
    manifests: list[Descriptor]
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
        for candidate in wanted:
            compatible = [e for e in entries if e.platform and candidate.runs(e.platform)]
            if compatible:
                return max(compatible, key=_variant_level)
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
        result = parse_manifest(_encode(doc))
        assert isinstance(result, Index)
        return result

    @classmethod
    def _from_data(cls, data: dict[str, Any], raw: bytes, media_type: str) -> Index:
        f = _Fields(data, "", "index")
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
            artifact_type=f.string("artifactType") or None,
            raw=raw,
        )


def _check_schema_version(f: _Fields) -> None:
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
            f"invalid manifest: field 'mediaType' must be a string, not {_json_type(body)}"
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
    data = _load_json(raw, "manifest", MAX_MANIFEST_BYTES)
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


# ------------------------------------------------------------------ timestamps

_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))?"
)


def parse_timestamp(text: str) -> datetime | None:
    """Parse an RFC 3339 time (nanoseconds and ``Z`` allowed) into an aware UTC datetime.

    A missing offset means UTC; Go's zero time (year 1) gives ``None``. Raises
    ``ValueError`` for anything else.
    """
    match = _TIMESTAMP_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if year <= 1:
        return None
    fraction = (match.group(7) or "")[:6].ljust(6, "0")
    second = min(second, 59)  # leap second
    stamp = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=timezone.utc)
    if match.group(9):
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if offset >= timedelta(hours=24):
            raise ValueError(f"{text!r} has an invalid UTC offset")
        stamp -= offset if match.group(9) == "+" else -offset
    return stamp


def format_timestamp(stamp: datetime) -> str:
    """RFC 3339 in UTC with ``Z`` (microseconds only when non-zero); naive means UTC."""
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    stamp = stamp.astimezone(timezone.utc)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if stamp.microsecond:
        text += f".{stamp.microsecond:06d}".rstrip("0")
    return text + "Z"


# ------------------------------------------------------------------ image config


@dataclass(frozen=True, kw_only=True)
class ContainerConfig:
    """The ``config`` section of an image config: how containers of the image run."""

    user: str | None = None
    env: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    working_dir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stop_signal: str | None = None

    @property
    def env_dict(self) -> dict[str, str]:
        """``env`` as a dict (``KEY=value``; a bare ``KEY`` maps to ``""``)."""
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    @classmethod
    def _from_fields(cls, f: _Fields) -> ContainerConfig:
        return cls(
            user=f.string("User") or None,
            env=f.strings("Env") or [],
            entrypoint=f.strings("Entrypoint", allow_string=True),
            cmd=f.strings("Cmd", allow_string=True),
            working_dir=f.string("WorkingDir") or None,
            labels=f.string_map("Labels"),
            exposed_ports=f.key_set("ExposedPorts"),
            volumes=f.key_set("Volumes"),
            stop_signal=f.string("StopSignal") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with Docker's capitalised keys; empty fields omitted."""
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {volume: {} for volume in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


@dataclass(frozen=True, kw_only=True)
class HistoryEntry:
    """One line of an image's build history."""

    created: datetime | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; empty fields omitted."""
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = format_timestamp(self.created)
        if self.created_by:
            out["created_by"] = self.created_by
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out


def _timestamp_field(f: _Fields, key: str) -> datetime | None:
    text = f.string(key)
    if text is None or text == "":
        return None
    try:
        return parse_timestamp(text)
    except (ValueError, OverflowError) as exc:
        raise f.error(f.path(key), f"is not an RFC 3339 time ({exc})") from None


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """An image config blob (OCI or Docker); ``raw`` holds the exact bytes."""

    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    created: datetime | None = None
    author: str | None = None
    config: ContainerConfig = field(default_factory=ContainerConfig)
    history: list[HistoryEntry] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)
    raw: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        """``sha256:`` digest of :attr:`raw` (the config descriptor's digest)."""
        return sha256_digest(self.raw)

    @property
    def platform(self) -> Platform:
        """The platform this image is built for."""
        return Platform(self.os, self.architecture, self.variant, self.os_version)

    def descriptor(self, media_type: str = OCI_CONFIG) -> Descriptor:
        """A descriptor of this config blob."""
        return Descriptor(media_type, self.digest, len(self.raw))

    @classmethod
    def from_bytes(cls, raw: bytes) -> ImageConfig:
        """Parse a config blob; malformed input raises InvalidManifestError naming the field."""
        data = _load_json(raw, "image config", MAX_CONFIG_BYTES)
        f = _Fields(data, "", "image config")
        run = f.raw("config", False)
        rootfs = f.raw("rootfs", False)
        diff_ids: list[str] = []
        if rootfs is not None:
            r = f.child("rootfs", rootfs)
            for i in range(len(r.array("diff_ids") or [])):
                diff_ids.append(_digest_item(r, "diff_ids", i))
        history = []
        for i, item in enumerate(f.array("history") or []):
            h = f.child(f"history[{i}]", item)
            history.append(HistoryEntry(
                created=_timestamp_field(h, "created"),
                created_by=h.string("created_by"),
                author=h.string("author"),
                comment=h.string("comment"),
                empty_layer=h.boolean("empty_layer"),
            ))
        return cls(
            architecture=f.string("architecture", required=True) or "",
            os=f.string("os", required=True) or "",
            variant=f.string("variant") or None,
            os_version=f.string("os.version") or None,
            created=_timestamp_field(f, "created"),
            author=f.string("author") or None,
            config=ContainerConfig._from_fields(f.child("config", run))
            if run is not None else ContainerConfig(),
            history=history,
            diff_ids=diff_ids,
            raw=bytes(raw),
        )

    @classmethod
    def build(
        cls,
        *,
        diff_ids: Iterable[str] = (),
        architecture: str = "amd64",
        os: str = "linux",
        variant: str | None = None,
        created: datetime | None = None,
        author: str | None = None,
        config: ContainerConfig | None = None,
        history: Iterable[HistoryEntry] | None = None,
    ) -> ImageConfig:
        """Encode a config blob in the module's canonical JSON and parse it back."""
        doc: dict[str, Any] = {}
        if created is not None:
            doc["created"] = format_timestamp(created)
        if author:
            doc["author"] = author
        doc["architecture"] = architecture
        doc["os"] = os
        if variant:
            doc["variant"] = variant
        run = (config or ContainerConfig()).to_dict()
        if run:
            doc["config"] = run
        doc["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
        if history is not None:
            doc["history"] = [entry.to_dict() for entry in history]
        return cls.from_bytes(_encode(doc))


def _digest_item(f: _Fields, key: str, index: int) -> str:
    value = f.data[key][index]
    path = f"{f.path(key)}[{index}]"
    if not isinstance(value, str):
        raise f.error(path, f"must be a string, not {_json_type(value)}")
    try:
        parse_digest(value)
    except InvalidReferenceError as exc:
        raise f.error(path, f"is not a valid digest: {exc.reason}") from None
    return value


def layer_history(config: ImageConfig, manifest: Manifest) -> list[HistoryEntry | None]:
    """The history entry that made each layer of ``manifest``, in layer order.

    Entries with ``empty_layer`` are skipped; when the remaining count differs from
    the number of layers the pairing is unknowable and every item is ``None``.
    """
    made = [entry for entry in config.history if not entry.empty_layer]
    if len(made) != len(manifest.layers):
        return [None] * len(manifest.layers)
    return list(made)
