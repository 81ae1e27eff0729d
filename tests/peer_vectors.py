"""Other projects' test vectors as pytest cases (data from ../shared, checks in this file).

Each vector becomes a :class:`Vector`: the peer's ``where`` (``owner/repo@commit:file:line``),
the table it came from, its data and ``check(ctx)``, which asserts the peer's expected
outcome through registry_nb's public API. ``test_peer_vectors.py`` runs them and holds the
list of documented deviations.

The tables are read from ``<repo>/../shared/data/peer/vectors`` (they are data of other
projects and are never copied here); :mod:`peer_cited_vectors` holds the few small tables
written out by hand, each cited by file and test name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from registry_nb.errors import InvalidReferenceError, RegistryError
from registry_nb.oci.config import ImageConfig
from registry_nb.oci.manifest import Descriptor, Index, Manifest, parse_manifest
from registry_nb.oci.platform import Platform
from registry_nb.oci.reference import ImageReference, normalize_registry, validate_registry
from registry_nb.remote.challenges import parse_www_authenticate
from registry_nb.remote.credentials import credentials_from_docker_config
from registry_nb.remote.transport import Transport

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VECTOR_DIR = SHARED / "data" / "peer" / "vectors"


@dataclass
class Ctx:
    """What a check may use: a scratch folder and pytest's monkeypatch."""

    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch


@dataclass(frozen=True)
class Vector:
    """One peer vector: where it comes from, its data and the check of the peer's outcome."""

    source: str  # the vectors file, or "cited" for the hand-written tables
    table: str
    where: str
    data: dict[str, Any] = field(repr=False)
    check: Callable[[Ctx], None] = field(repr=False)


def load(name: str) -> dict[str, Any]:
    """One vectors file of ../shared; a clear failure when the folder is missing."""
    path = VECTOR_DIR / name
    if not path.is_file():
        pytest.fail(
            f"peer vectors {path} not found: the tests read them from the shared folder beside "
            "the repository (../shared/data/peer/vectors); clone or mount it there.",
            pytrace=False,
        )
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------ oracles


def docker_split(name: str) -> tuple[str, str]:
    """distribution/reference normalize.go ``splitDockerDomain`` for a bare name.

    The first component is a domain when it has ``.`` or ``:``, is ``localhost`` or has
    an upper-case letter; otherwise the name is on Docker Hub, where one component gets
    ``library/``. ``index.docker.io`` is Docker Hub.
    """
    slash = name.find("/")
    first = name[:slash]
    if slash == -1 or ("." not in first and ":" not in first and first != "localhost"
                       and first == first.lower()):
        domain, rest = "docker.io", name
    else:
        domain, rest = first, name[slash + 1:]
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    return domain, rest


def parts(ref: ImageReference) -> tuple[str, str]:
    return ref.registry, ref.repository


def assert_not_a_name(text: str) -> None:
    """``text`` is no bare repository name: refused, or read with a tag or digest."""
    try:
        ref = ImageReference.parse(text)
    except InvalidReferenceError:
        return
    assert ref.tag is not None or ref.digest is not None, f"{text!r} parsed as {ref}"


def refused(function: Callable[[], Any], error: type[BaseException] = RegistryError
            ) -> BaseException:
    with pytest.raises(error) as info:
        function()
    return info.value


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def scheme_of(host: str) -> str:
    """The scheme registry_nb uses for ``host`` when none is given."""
    transport = Transport(host, use_docker_config=False)
    try:
        return transport.scheme
    finally:
        transport.close()


def challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    return [(c.scheme, c.params) for c in parse_www_authenticate(header)]


# ------------------------------------------------------------------ distribution/reference

_ERROR_PART = {
    "ErrNameEmpty": "repository",
    "ErrNameContainsUppercase": "repository",
    "ErrNameTooLong": "repository",
    "digest.ErrDigestInvalidLength": "digest",
    "digest.ErrDigestUnsupported": "digest",
}


def _reference_parse(e: dict[str, Any]) -> None:
    if "err" in e:
        error = refused(lambda: ImageReference.parse(e["input"]), InvalidReferenceError)
        part = _ERROR_PART.get(e["err"])
        assert part is None or error.part == part, (e["err"], error.part)
        return
    ref = ImageReference.parse(e["input"])
    assert parts(ref) == docker_split(e["repository"])
    assert (ref.tag, ref.digest) == (e.get("tag"), e.get("digest"))


def _domain_and_path(e: dict[str, Any]) -> None:
    name = f"{e['domain']}/{e['path']}" if e["domain"] else e["path"]
    assert parts(ImageReference.parse(e["input"])) == docker_split(name)


def _with_tag(e: dict[str, Any]) -> None:
    ref = ImageReference.parse(e["name"])
    if e.get("digest"):
        ref = ref.with_digest(e["digest"])
    assert ref.with_tag(e["tag"]).familiar == e["combined"]


def _with_digest(e: dict[str, Any]) -> None:
    ref = ImageReference.parse(e["name"])
    if e.get("tag"):
        ref = ref.with_tag(e["tag"])
    assert ref.with_digest(e["digest"]).familiar == e["combined"]


def _parse_named(e: dict[str, Any]) -> None:
    ref = ImageReference.parse(e["input"])
    if "err" in e:  # ErrNameNotCanonical: the input is not the full, normalised name
        assert str(ref) != e["input"]
    else:
        assert str(ref) == e["input"]
        assert parts(ref) == (e["domain"], e["path"])


def _valid(e: dict[str, Any]) -> None:
    ImageReference.parse(e["value"])


def _invalid(e: dict[str, Any]) -> None:
    refused(lambda: ImageReference.parse(e["value"]), InvalidReferenceError)


def _repository_info(e: dict[str, Any]) -> None:
    for text in (e["FamiliarName"], e["FullName"], e["AmbiguousName"]):
        if not text:
            continue
        ref = ImageReference.parse(text)
        assert parts(ref) == (e["Domain"], e["RemoteName"]), text
        assert ref.name == e["FullName"]
        assert ref.familiar == e["FamiliarName"]


def _any_reference(e: dict[str, Any]) -> None:
    ref = ImageReference.parse(e["Reference"])
    if "Expected" in e:  # a bare ID or digest is a digest reference for ParseAnyReference
        assert str(ref) == e["Expected"]
    assert ref == ImageReference.parse(e["Equivalent"])


def _split_hostname(e: dict[str, Any]) -> None:
    assert parts(ImageReference.parse(e["input"])) == (e["domain"], e["path"])


def _docker_ref(e: dict[str, Any]) -> None:
    ref = ImageReference.parse(e["input"])  # ParseDockerRef: latest when untagged, digest wins
    assert ref.name + ("@" if ref.digest else ":") + ref.identifier == e["expected"]


def _domain_regexp(e: dict[str, Any]) -> None:
    if e["match"]:
        validate_registry(e["input"])
    else:
        refused(lambda: validate_registry(e["input"]), InvalidReferenceError)


def _full_name_regexp(e: dict[str, Any]) -> None:
    if not e["match"]:
        assert_not_a_name(e["input"])
        return
    ref = ImageReference.parse(e["input"])
    assert (ref.tag, ref.digest) == (None, None)
    if "subs" in e:
        domain, path = e["subs"]
        assert parts(ref) == docker_split(f"{domain}/{path}" if domain else path)


def _reference_regexp(e: dict[str, Any]) -> None:
    if not e["match"]:
        refused(lambda: ImageReference.parse(e["input"]), InvalidReferenceError)
        return
    ref = ImageReference.parse(e["input"])
    name, tag, digest = e["subs"]
    assert parts(ref) == docker_split(name)
    assert (ref.tag, ref.digest) == (tag or None, digest or None)


def _identifier_regexp(e: dict[str, Any]) -> None:
    try:
        ImageReference.parse(e["input"])
    except InvalidReferenceError as exc:
        is_identifier = "image ID" in exc.reason
    else:
        is_identifier = False
    assert is_identifier == e["match"]


_DISTRIBUTION = {
    "TestReferenceParse": _reference_parse,
    "TestWithNameFailure": lambda e: assert_not_a_name(e["input"]),
    "TestDomainAndPath": _domain_and_path,
    "TestWithTag": _with_tag,
    "TestWithDigest": _with_digest,
    "TestParseNamed": _parse_named,
    "TestValidateReferenceName.valid": _valid,
    "TestValidateReferenceName.invalid": _invalid,
    "TestValidateRemoteName.valid": _valid,
    "TestValidateRemoteName.invalid": _invalid,
    "TestParseRepositoryInfo": _repository_info,
    "TestParseAnyReference": _any_reference,
    "TestNormalizedSplitHostname": _split_hostname,
    "TestParseDockerRef": _docker_ref,
    "TestDomainRegexp": _domain_regexp,
    "TestFullNameRegexp": _full_name_regexp,
    "TestReferenceRegexp": _reference_regexp,
    "TestIdentifierRegexp": _identifier_regexp,
}


# ------------------------------------------------------------------ go-containerregistry/name


def _good_reference(e: dict[str, Any]) -> None:
    ImageReference.parse(e["value"])


def _bad_reference(e: dict[str, Any]) -> None:
    refused(lambda: ImageReference.parse(e["value"]), InvalidReferenceError)


def _good_registry(e: dict[str, Any]) -> None:
    value = e["value"]  # go-containerregistry's default registry is Docker Hub
    assert normalize_registry(value) == (value if value not in ("", "index.docker.io")
                                         else "docker.io")


def _bad_registry(e: dict[str, Any]) -> None:
    refused(lambda: normalize_registry(e["value"]), InvalidReferenceError)


def _registry_scheme(e: dict[str, Any]) -> None:
    assert scheme_of(e["domain"]) == e["scheme"]


def _rfc1918(e: dict[str, Any]) -> None:
    # go-containerregistry uses plain HTTP for RFC 1918 addresses (TestRegistryScheme).
    assert (scheme_of(e["reg"]) == "http") == e["result"]


def _with_defaults(pair: tuple[dict[str, Any], dict[str, Any]]) -> Callable[[Ctx], None]:
    given, wanted = pair

    def check(_: Ctx) -> None:
        ref = ImageReference.parse(given["value"], default_registry="registry.upbound.io")
        if ref.tag is None and ref.digest is None:
            ref = ref.with_tag("stable")
        assert str(ref) == wanted["value"]
    return check


_GGCR = {
    "goodStrictValidationRegistryNames": _good_registry,
    "goodWeakValidationRegistryNames": _good_registry,
    "badRegistryNames": _bad_registry,
    "TestRegistryScheme": _registry_scheme,
    "TestIsRFC1918": _rfc1918,
    "goodStrictValidationDigestNames": _good_reference,
    "goodStrictValidationTagDigestNames": _good_reference,
    "goodWeakValidationDigestNames": _good_reference,
    "goodWeakValidationTagDigestNames": _good_reference,
    "badDigestNames": _bad_reference,
    "goodStrictValidationTagNames": _good_reference,
    "goodWeakValidationTagNames": _good_reference,
    "badTagNames": _bad_reference,
    "goodStrictValidationRepositoryNames": _good_reference,
    "goodWeakValidationRepositoryNames": _good_reference,
    "badRepositoryNames": _bad_reference,
}


# ------------------------------------------------------------------ docker/cli config keys


def _config_key(e: dict[str, Any]) -> None:
    config = {"auths": {e["input"]: {"auth": b64("peer:secret")}}}
    found = credentials_from_docker_config(e["expected"], config)
    assert found is not None and found.username == "peer", e["input"]
    assert credentials_from_docker_config("docker.io", config) is None


# ------------------------------------------------------------------ regclient auth headers


def _auth_header(e: dict[str, Any]) -> None:
    assert e["wantE"] is None, f"regclient refuses this header ({e['wantE']})"
    want = [(c["authType"], c["params"]) for c in e["wantC"]]
    assert challenges(e["in"]) == want


# ------------------------------------------------------------------ containerd/platforms


def host_value(value: str) -> str:
    host = Platform.host()
    return {"defaultOS": host.os, "defaultArch": host.architecture,
            "defaultVariant": host.variant or ""}.get(value, value)


def platform_of(spec: dict[str, Any]) -> Platform:
    return Platform(
        host_value(spec["OS"]), host_value(spec["Architecture"]),
        host_value(spec.get("Variant", "")) or None, spec.get("OSVersion") or None,
        tuple(spec.get("OSFeatures", ())),
    )


def formatted(text: str) -> str:
    """The peer's ``formatted`` with ``path.Join(defaultOS, arm)`` evaluated for this host."""
    if not text.startswith("path.Join("):
        return text
    items = [host_value(item) for item in text[len("path.Join("):-1].split(", ")]
    return "/".join(item for item in items if item)


def _parse_selector(e: dict[str, Any]) -> None:
    p = Platform.parse(e["input"])
    want = platform_of(e["expected"])
    assert (p.os, p.architecture, p.variant, p.os_version, p.features) == (
        want.os, want.architecture, want.variant, want.os_version, want.features)
    assert p.matches(want)
    for other in e.get("matches", []):
        assert p.matches(platform_of(other)), other
    text = p.format(os_options=e["useV2Format"])
    assert text == formatted(e["formatted"])
    assert p.matches(Platform.parse(text))


def _parse_invalid(e: dict[str, Any]) -> None:
    refused(lambda: Platform.parse(e["input"]))


def _platform_pairs(e: dict[str, Any], strict: bool) -> Iterator[tuple[str, dict[str, Any],
                                                                      Callable[[Ctx], None]]]:
    for expected in ("true", "false"):
        for candidate in e["matches"][expected]:
            def check(_: Ctx, candidate: str = candidate, expected: str = expected) -> None:
                mine, theirs = Platform.parse(e["platform"]), Platform.parse(candidate)
                result = mine.matches(theirs) if strict else mine.runs(theirs)
                assert result == (expected == "true"), (e["platform"], candidate)
            data = {**e, "candidate": candidate, "expected": expected == "true"}
            yield f"{e['where']}[{candidate}]", data, check


# ------------------------------------------------------------------ opencontainers/image-spec


def _validate(kind: str, document: str, ctx: Ctx) -> Any:
    raw = document.encode()
    if kind in ("manifest", "index"):  # the body's mediaType says which (Docker ones too)
        result = parse_manifest(raw)
        assert isinstance(result, Manifest if kind == "manifest" else Index)
        return result
    if kind == "config":
        return ImageConfig.from_bytes(raw)
    if kind == "descriptor":
        return Descriptor.from_dict(json.loads(document))
    if kind == "layout":
        from registry_nb.images.layout import OCILayout

        folder = ctx.tmp_path / "layout"
        folder.mkdir(exist_ok=True)
        (folder / "oci-layout").write_bytes(raw)
        return OCILayout(folder).check_layout()
    raise AssertionError(f"unknown kind {kind}")


_KIND_OF_MEDIA_TYPE = {
    "application/vnd.oci.descriptor.v1+json": "descriptor",
    "application/vnd.oci.image.manifest.v1+json": "manifest",
    "application/vnd.oci.image.index.v1+json": "index",
    "application/vnd.oci.layout.header.v1+json": "layout",
    "application/vnd.oci.image.config.v1+json": "config",
}


def _schema(e: dict[str, Any]) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        if e["fail"]:
            refused(lambda: _validate(e["kind"], e["document"], ctx))
        else:
            _validate(e["kind"], e["document"], ctx)
    return check


def _compat(e: dict[str, Any]) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        assert _validate(e["kind"], e["document"], ctx).digest == e["digest"]
    return check


def _example(e: dict[str, Any]) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        _validate(_KIND_OF_MEDIA_TYPE[e["mediatype"]], e["document"], ctx)
    return check


# ------------------------------------------------------------------ building the list


def _simple(source: str, tables: dict[str, Callable[[dict[str, Any]], None]]
            ) -> Iterator[Vector]:
    data = load(source)
    for table, function in tables.items():
        for e in data[table]:
            yield Vector(source, table, e["where"], e,
                         lambda _ctx, e=e, function=function: function(e))


def file_vectors() -> Iterator[Vector]:
    """Every vector of ../shared/data/peer/vectors, as checks."""
    yield from _simple("distribution-reference.json", _DISTRIBUTION)
    yield from _simple("go-containerregistry-name.json", _GGCR)
    ggcr = load("go-containerregistry-name.json")
    for pair in zip(ggcr["inputDefaultNames"], ggcr["outputDefaultNames"], strict=True):
        yield Vector("go-containerregistry-name.json", "inputDefaultNames", pair[0]["where"],
                     {"input": pair[0]["value"], "output": pair[1]["value"]},
                     _with_defaults(pair))
    yield from _simple("docker-cli-config.json", {"TestConvertToHostname": _config_key})
    yield from _simple("regclient-auth.json", {"TestParseAuthHeader": _auth_header})
    yield from _simple("containerd-platforms.json", {"TestParseSelector": _parse_selector,
                                                     "TestParseSelectorInvalid": _parse_invalid})
    platforms = load("containerd-platforms.json")
    for table, strict in (("TestOnly", False), ("TestOnlyStrict", True)):
        for e in platforms[table]:
            for where, data, check in _platform_pairs(e, strict):
                yield Vector("containerd-platforms.json", table, where, data, check)
    spec = load("oci-image-spec.json")
    for table, make in (("schema_tests", _schema), ("compat", _compat),
                        ("spec_examples", _example)):
        for e in spec[table]:
            yield Vector("oci-image-spec.json", table, e["where"], e, make(e))

