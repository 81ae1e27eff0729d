"""SLSA provenance v0.2 and v1 (as BuildKit writes them) read into one dataclass.

Field paths follow BuildKit's ``docs/attestations/slsa-definitions.md`` (the table in
SUPPLY_CHAIN.md §1a). The source repository and revision come, in this order of trust,
from the config source BuildKit fetched (a git context, with its commit digest), from
the ``vcs`` metadata buildx sends from the local checkout (an unverified hint), or from
the ``org.opencontainers.image.source``/``revision`` labels; ``source_from`` says which.
Build argument *values* are kept out of every repr and out of
:func:`secret_like_build_args`, which returns names only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from ...errors import InvalidAttestationError
from ...oci.config import parse_timestamp
from ..rules import looks_secret
from .intoto import DsseEnvelope, Statement, parse_statement

__all__ = ["Material", "Provenance", "parse_provenance", "secret_like_build_args"]

_BUILDKIT_METADATA_V02 = "https://mobyproject.org/buildkit@v1#metadata"
_LABEL_SOURCE = "org.opencontainers.image.source"
_LABEL_REVISION = "org.opencontainers.image.revision"


@dataclass(frozen=True)
class Material:
    """An input of the build: a base image (``pkg:docker/…``), a git checkout, a URL."""

    uri: str
    digests: dict[str, str]

    @property
    def digest(self) -> str | None:
        """``sha256:<hex>`` when recorded, else the first digest as ``alg:hex``."""
        if "sha256" in self.digests:
            return "sha256:" + self.digests["sha256"]
        return next((f"{a}:{v}" for a, v in self.digests.items()), None)

    def _docker(self) -> tuple[str, str | None] | None:
        if not self.uri.startswith("pkg:docker/"):
            return None
        rest, _, query = self.uri[len("pkg:docker/"):].partition("?")
        name, at, version = rest.partition("@")
        name, version = unquote(name), unquote(version)
        if not at:
            reference = name
        elif ":" in version and version.split(":")[0] in ("sha256", "sha512"):
            reference = f"{name}@{version}"
        else:
            reference = f"{name}:{version}"
        platform = None
        for pair in query.split("&"):
            key, _, value = pair.partition("=")
            if key == "platform":
                platform = unquote(value)
        return reference, platform

    @property
    def image_reference(self) -> str | None:
        """For a base image, its reference as written (``alpine:latest``), else None."""
        docker = self._docker()
        return docker[0] if docker else None

    @property
    def platform(self) -> str | None:
        """For a base image, the platform it was pulled for (``linux/amd64``)."""
        docker = self._docker()
        return docker[1] if docker else None


@dataclass(frozen=True)
class Provenance:
    """SLSA provenance of one image, v0.2 or v1, in one shape.

    ``mode`` is ``"max"`` when BuildKit recorded the build definition (``buildConfig``)
    and ``"min"`` otherwise; ``complete`` is True only when every completeness flag is.
    """

    slsa_version: str
    predicate_type: str
    subject_digests: tuple[str, ...]
    builder_id: str | None
    build_type: str | None
    config_source_uri: str | None
    config_source_ref: str | None
    config_source_digest: dict[str, str]
    config_source_path: str | None
    source_repository: str | None
    source_revision: str | None
    source_from: str | None
    materials: tuple[Material, ...]
    frontend: str | None
    target: str | None
    build_args: dict[str, str] = field(repr=False)
    labels: dict[str, str] = field(repr=False)
    invocation_id: str | None = None
    started_on: datetime | None = None
    finished_on: datetime | None = None
    completeness: dict[str, bool] = field(default_factory=dict)
    reproducible: bool | None = None
    hermetic: bool | None = None
    mode: str = "min"
    predicate: Any = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        """True when the builder says parameters, environment and materials are all complete."""
        return bool(self.completeness) and all(self.completeness.values())

    @property
    def build_arg_names(self) -> tuple[str, ...]:
        """The names of the recorded build arguments (values stay in :attr:`build_args`)."""
        return tuple(self.build_args)


def _obj(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _materials(items: Any) -> tuple[Material, ...]:
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("uri"), str):
            out.append(Material(item["uri"], {str(k): str(v) for k, v in
                                              _obj(item.get("digest")).items()}))
    return tuple(out)


def _split_args(args: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str], str | None]:
    build_args, labels = {}, {}
    for key, value in args.items():
        if key.startswith("build-arg:"):
            build_args[key[len("build-arg:"):]] = str(value)
        elif key.startswith("label:"):
            labels[key[len("label:"):]] = str(value)
    return build_args, labels, _text(args.get("target"))


def _source(config_uri: str | None, config_digest: Mapping[str, str], vcs: Mapping[str, Any],
            labels: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    if config_uri:
        return (config_uri.split("#")[0],
                config_digest.get("sha1") or config_digest.get("sha256"), "config-source")
    if _text(vcs.get("source")) or _text(vcs.get("revision")):
        return _text(vcs.get("source")), _text(vcs.get("revision")), "vcs-hint"
    if labels.get(_LABEL_SOURCE) or labels.get(_LABEL_REVISION):
        return labels.get(_LABEL_SOURCE) or None, labels.get(_LABEL_REVISION) or None, "label"
    return None, None, None


def _flags(value: Any) -> dict[str, bool]:
    return {str(k): bool(v) for k, v in _obj(value).items() if isinstance(v, bool)}


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def parse_provenance(data: bytes | str | Mapping[str, Any] | DsseEnvelope | Statement
                     ) -> Provenance:
    """Read SLSA provenance from a statement, its JSON, or the DSSE envelope carrying it."""
    statement = data if isinstance(data, Statement) else parse_statement(data)
    version = statement.predicate_type.rsplit("/", 1)[-1].lstrip("v")
    if not statement.predicate_type.startswith("https://slsa.dev/provenance/") or \
            version not in ("0.1", "0.2", "1", "1.0", "1.1"):
        raise InvalidAttestationError(
            f"the statement's predicate is {statement.predicate_type!r}, not SLSA provenance "
            "v0.2 or v1", hint="Read it with the reader of its own predicate type.")
    predicate = statement.predicate
    if not isinstance(predicate, Mapping):
        raise InvalidAttestationError(
            "invalid SLSA provenance: the predicate must be a JSON object",
            hint="The builder wrote a malformed attestation; rebuild the image.")
    if version.startswith("0"):
        fields = _v02(predicate)
    else:
        fields = _v1(predicate)
        version = "1"
    return Provenance(slsa_version=version, predicate_type=statement.predicate_type,
                      subject_digests=statement.subject_digests, predicate=predicate, **fields)


def _v02(p: Mapping[str, Any]) -> dict[str, Any]:
    invocation = _obj(p.get("invocation"))
    config = _obj(invocation.get("configSource"))
    parameters = _obj(invocation.get("parameters"))
    metadata = _obj(p.get("metadata"))
    build_args, labels, target = _split_args(_obj(parameters.get("args")))
    vcs = _obj(_obj(metadata.get(_BUILDKIT_METADATA_V02)).get("vcs"))
    return _common(
        builder_id=_text(_obj(p.get("builder")).get("id")), build_type=_text(p.get("buildType")),
        config=config, path=_text(config.get("entryPoint")), vcs=vcs, labels=labels,
        build_args=build_args, target=target, materials=_materials(p.get("materials")),
        frontend=_text(parameters.get("frontend")),
        invocation_id=_text(metadata.get("buildInvocationID")),
        started_on=_time(metadata.get("buildStartedOn")),
        finished_on=_time(metadata.get("buildFinishedOn")),
        completeness=_flags(metadata.get("completeness")),
        reproducible=_bool(metadata.get("reproducible")), hermetic=None,
        max_mode=bool(p.get("buildConfig")) or "layers" in _obj(metadata.get(
            _BUILDKIT_METADATA_V02)))


def _v1(p: Mapping[str, Any]) -> dict[str, Any]:
    definition = _obj(p.get("buildDefinition"))
    external = _obj(definition.get("externalParameters"))
    internal = _obj(definition.get("internalParameters"))
    config = _obj(external.get("configSource"))
    request = _obj(external.get("request"))
    run = _obj(p.get("runDetails"))
    metadata = _obj(run.get("metadata"))
    buildkit = _obj(metadata.get("buildkit_metadata"))
    build_args, labels, target = _split_args(_obj(request.get("args")))
    return _common(
        builder_id=_text(_obj(run.get("builder")).get("id")),
        build_type=_text(definition.get("buildType")), config=config,
        path=_text(config.get("path")), vcs=_obj(buildkit.get("vcs")), labels=labels,
        build_args=build_args, target=target,
        materials=_materials(definition.get("resolvedDependencies")),
        frontend=_text(request.get("frontend")),
        invocation_id=_text(metadata.get("invocationId") or metadata.get("invocationID")),
        started_on=_time(metadata.get("startedOn")), finished_on=_time(metadata.get("finishedOn")),
        completeness=_flags(metadata.get("buildkit_completeness")),
        reproducible=_bool(metadata.get("buildkit_reproducible")),
        hermetic=_bool(metadata.get("buildkit_hermetic")),
        max_mode=bool(internal.get("buildConfig")) or "layers" in buildkit)


def _common(*, config: Mapping[str, Any], path: str | None, vcs: Mapping[str, Any],
            labels: dict[str, str], max_mode: bool, **fields: Any) -> dict[str, Any]:
    uri = _text(config.get("uri"))
    digest = {str(k): str(v) for k, v in _obj(config.get("digest")).items()}
    repository, revision, source_from = _source(uri, digest, vcs, labels)
    return dict(fields, config_source_uri=uri,
                config_source_ref=uri.split("#", 1)[1] if uri and "#" in uri else None,
                config_source_digest=digest, config_source_path=path,
                source_repository=repository, source_revision=revision, source_from=source_from,
                labels=labels, mode="max" if max_mode else "min")


def secret_like_build_args(provenance: Provenance) -> list[str]:
    """Names (never values) of recorded build arguments that look like secrets."""
    return [name for name in provenance.build_args if looks_secret(name)]
