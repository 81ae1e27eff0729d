"""SBOMs (SPDX 2.x, CycloneDX 1.x, syft JSON) read into package rows.

SPDX goes through spdx-tools (JSON and tag-value, with its validation as ``problems``).
CycloneDX rows are read from the JSON directly rather than through
cyclonedx-python-lib's ``Bom.from_json``: the library keeps components in sorted sets
whose Python-level comparisons cost ~2.5 s for 5,000 components here (its JSON-schema
validator ~20 s), too slow for a registry-wide frame; the tests check that the rows equal
the library's on the real fixtures, and :mod:`.export` writes CycloneDX with the library.
syft's own JSON has no Python library; it is a flat list and read directly too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ...errors import InvalidAttestationError
from ...oci.config import parse_timestamp
from .intoto import DsseEnvelope, Statement, load_document, parse_statement

__all__ = ["SbomPackage", "Sbom", "parse_sbom", "purl_type"]

_HINT = "The tool that made this SBOM wrote a malformed document; generate it again."


@dataclass(frozen=True)
class SbomPackage:
    """One package (component) of an SBOM.

    ``type`` is the component's kind (``library``, ``operating-system``, ``application``,
    …, from CycloneDX ``type`` or SPDX ``primaryPackagePurpose``); ``ecosystem`` is the
    purl type (``deb``, ``apk``, ``pypi``, ``rpm``, …).
    """

    name: str
    version: str | None
    purl: str | None
    type: str | None
    ecosystem: str | None
    licenses: tuple[str, ...]
    cpe: str | None = None
    ref: str | None = None


@dataclass(frozen=True)
class Sbom:
    """An SBOM: its format, what it describes, who made it, and its packages.

    ``problems`` lists spdx-tools' validation messages for SPDX documents (empty for
    the others, which are read without schema validation).
    """

    format: str
    spec_version: str | None
    name: str | None
    created: datetime | None
    tools: tuple[str, ...]
    subject: str | None
    subject_type: str | None
    packages: tuple[SbomPackage, ...]
    problems: tuple[str, ...] = ()


def purl_type(purl: str | None) -> str | None:
    """The type of a package URL (``pkg:deb/debian/x@1`` -> ``deb``)."""
    if not purl or not purl.startswith("pkg:"):
        return None
    return purl[4:].lstrip("/").split("/", 1)[0].lower() or None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else \
            value.astimezone(timezone.utc)
    if isinstance(value, str) and value:
        try:
            return parse_timestamp(value)
        except ValueError:
            return None
    return None


def parse_sbom(data: bytes | str | Mapping[str, Any] | Statement | DsseEnvelope,
               media_type: str | None = None, *, validate: bool = True) -> Sbom:
    """Read an SBOM: SPDX JSON or tag-value, CycloneDX JSON or syft JSON.

    An in-toto statement (or the DSSE envelope carrying one) is unwrapped to its
    predicate, as BuildKit and cosign attach SBOMs. ``media_type`` only helps tell
    SPDX tag-value from JSON; the content decides the rest.
    """
    if isinstance(data, DsseEnvelope):
        data = parse_statement(data)
    if isinstance(data, Statement):
        data = data.predicate if isinstance(data.predicate, (Mapping, str)) else {}
    text = _text(data)
    if text is not None and (text.lstrip().startswith("SPDXVersion:") or
                             (media_type or "").split(";")[0] in ("text/spdx",
                                                                  "application/spdx")):
        return _spdx_tag_value(text, validate)
    doc = load_document(data if text is None else text, "SBOM")
    if ("_type" in doc and "predicate" in doc) or ("payloadType" in doc and "payload" in doc) \
            or "dsseEnvelope" in doc:
        return parse_sbom(parse_statement(doc), media_type, validate=validate)
    if "spdxVersion" in doc:
        return _spdx_json(doc, validate)
    if doc.get("bomFormat") == "CycloneDX":
        return _cyclonedx(doc)
    if isinstance(doc.get("artifacts"), list) and ("descriptor" in doc or "schema" in doc):
        return _syft(doc)
    raise InvalidAttestationError(
        "this document is not an SBOM this toolkit reads (SPDX 2.x JSON or tag-value, "
        "CycloneDX JSON, syft JSON)",
        hint="Check the attachment's media type; CycloneDX XML and SPDX 3 are not read.")


def _text(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidAttestationError("invalid SBOM: not UTF-8 text", hint=_HINT) from None
    return None


# ------------------------------------------------------------------ SPDX (spdx-tools)


def _spdx_json(doc: dict[str, Any], validate: bool) -> Sbom:
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
    return _spdx_document(lambda: JsonLikeDictParser().parse(doc), validate)


def _spdx_tag_value(text: str, validate: bool) -> Sbom:
    from ply import yacc
    from spdx_tools.spdx.parser.tagvalue.parser import Parser
    parser = Parser(write_tables=False, debug=False, errorlog=yacc.NullLogger())
    return _spdx_document(lambda: parser.parse(text), validate)


def _spdx_document(parse: Any, validate: bool) -> Sbom:
    from spdx_tools.spdx.parser.error import SPDXParsingError
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    try:
        document = parse()
    except SPDXParsingError as exc:
        first = "; ".join(str(m) for m in exc.get_messages()[:3])
        raise InvalidAttestationError(f"invalid SPDX document: {first}", hint=_HINT) from None
    problems = tuple(m.validation_message for m in validate_full_spdx_document(document)) \
        if validate else ()
    info = document.creation_info
    described = {r.related_spdx_element_id for r in document.relationships
                 if r.relationship_type.name == "DESCRIBES" and
                 r.spdx_element_id == info.spdx_id}
    subject = next((p for p in document.packages if p.spdx_id in described), None)
    return Sbom(
        format="spdx", spec_version=info.spdx_version, name=info.name,
        created=_time(info.created),
        tools=tuple(a.name for a in info.creators if a.actor_type.name == "TOOL"),
        subject=subject.name if subject else None,
        subject_type=_purpose(subject) if subject else None,
        packages=tuple(_spdx_package(p) for p in document.packages), problems=problems)


def _purpose(package: Any) -> str | None:
    purpose = package.primary_package_purpose
    return purpose.name.lower().replace("_", "-") if purpose is not None else None


def _license(value: Any) -> str | None:
    from spdx_tools.spdx.model import SpdxNoAssertion, SpdxNone
    if value is None or isinstance(value, (SpdxNoAssertion, SpdxNone)):
        return None
    return str(value)


def _spdx_package(package: Any) -> SbomPackage:
    purl = cpe = None
    for ref in package.external_references:
        if ref.reference_type == "purl" and purl is None:
            purl = ref.locator
        elif ref.reference_type in ("cpe23Type", "cpe22Type") and cpe is None:
            cpe = ref.locator
    license_text = _license(package.license_declared) or _license(package.license_concluded)
    return SbomPackage(package.name, package.version, purl, _purpose(package), purl_type(purl),
                       (license_text,) if license_text else (), cpe, package.spdx_id)


# ------------------------------------------------------------------ CycloneDX


def _cyclonedx(doc: dict[str, Any]) -> Sbom:
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    component = metadata.get("component") if isinstance(metadata.get("component"), Mapping) \
        else {}
    components = doc.get("components", [])
    if not isinstance(components, list):
        raise InvalidAttestationError("invalid CycloneDX SBOM: 'components' must be an array",
                                      hint=_HINT)
    return Sbom(
        format="cyclonedx", spec_version=_str(doc.get("specVersion")),
        name=_str(component.get("name")), created=_time(metadata.get("timestamp")),
        tools=_cyclonedx_tools(metadata.get("tools")), subject=_str(component.get("name")),
        subject_type=_str(component.get("type")),
        packages=tuple(_cyclonedx_package(c) for c in _walk(components, "components")))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _walk(components: list[Any], where: str) -> Iterator[Mapping[str, Any]]:
    for i, item in enumerate(components):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise InvalidAttestationError(
                f"invalid CycloneDX SBOM: {where}[{i}] must be an object with a 'name'",
                hint=_HINT)
        yield item
        children = item.get("components")
        if isinstance(children, list):
            yield from _walk(children, f"{where}[{i}].components")


def _cyclonedx_tools(tools: Any) -> tuple[str, ...]:
    if isinstance(tools, Mapping):  # 1.5+: {"components": [...], "services": [...]}
        tools = [*(tools.get("components") or []), *(tools.get("services") or [])]
    if not isinstance(tools, list):
        return ()
    return tuple(t["name"] for t in tools if isinstance(t, Mapping) and _str(t.get("name")))


def _cyclonedx_licenses(entries: Any) -> tuple[str, ...]:
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        if _str(entry.get("expression")):
            out.append(entry["expression"])
        lic = entry.get("license")
        if isinstance(lic, Mapping) and (_str(lic.get("id")) or _str(lic.get("name"))):
            out.append(lic.get("id") or lic.get("name"))
    return tuple(out)


def _cyclonedx_package(c: Mapping[str, Any]) -> SbomPackage:
    purl = _str(c.get("purl"))
    return SbomPackage(c["name"], _str(c.get("version")), purl, _str(c.get("type")) or "library",
                       purl_type(purl), _cyclonedx_licenses(c.get("licenses")),
                       _str(c.get("cpe")), _str(c.get("bom-ref")))


# ------------------------------------------------------------------ syft JSON


def _syft(doc: dict[str, Any]) -> Sbom:
    descriptor = doc.get("descriptor") if isinstance(doc.get("descriptor"), Mapping) else {}
    schema = doc.get("schema") if isinstance(doc.get("schema"), Mapping) else {}
    source = doc.get("source") if isinstance(doc.get("source"), Mapping) else {}
    packages = []
    for i, item in enumerate(doc["artifacts"]):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise InvalidAttestationError(f"invalid syft SBOM: artifacts[{i}] must be an object "
                                          "with a 'name'", hint=_HINT)
        licenses = tuple(lic if isinstance(lic, str) else lic.get("value")
                         for lic in item.get("licenses") or []
                         if isinstance(lic, str) or (isinstance(lic, Mapping) and
                                                     _str(lic.get("value"))))
        purl = _str(item.get("purl"))
        cpes = item.get("cpes") or []
        cpe = cpes[0] if cpes and isinstance(cpes[0], str) else (
            cpes[0].get("cpe") if cpes and isinstance(cpes[0], Mapping) else None)
        packages.append(SbomPackage(item["name"], _str(item.get("version")), purl, "library",
                                    purl_type(purl) or _str(item.get("type")), licenses, cpe,
                                    _str(item.get("id"))))
    return Sbom(format="syft", spec_version=_str(schema.get("version")),
                name=_str(source.get("name")), created=None,
                tools=(descriptor["name"],) if _str(descriptor.get("name")) else (),
                subject=_str(source.get("name")), subject_type=_str(source.get("type")),
                packages=tuple(packages))
