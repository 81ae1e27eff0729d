"""Writing an SBOM from a packages table: CycloneDX 1.6 and SPDX 2.3 JSON.

Both are built with their reference libraries (cyclonedx-python-lib, spdx-tools) and
read back with the same libraries before they are returned, so a document that they
would not read is never handed out. The same table, name, version and ``created`` give
the same bytes (the serial number and namespace are derived from the content).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from ...errors import SbomExportError

__all__ = ["export_sbom", "purl_for", "SBOM_FORMATS"]

SBOM_FORMATS = ("cyclonedx", "spdx")
TOOL = "registry-nb"
#: packages_frame ecosystems -> purl types, and the namespace a distro name fills.
_PURL_TYPES = {"python": "pypi", "deb": "deb", "apk": "apk", "rpm": "rpm", "pypi": "pypi"}
_DEFAULT_NAMESPACE = {"deb": "debian", "apk": "alpine"}


def purl_for(ecosystem: str | None, name: str, version: str | None = None,
             architecture: str | None = None, *, distro: str | None = None) -> str | None:
    """The package URL of a package from ``packages_frame`` (``deb``, ``apk``, ``python``…).

    ``distro`` names the namespace of deb/apk/rpm packages (default ``debian`` and
    ``alpine``); python names are normalised as the purl spec says for pypi.
    """
    from packageurl import PackageURL
    if not ecosystem or not name:
        return None
    kind = _PURL_TYPES.get(ecosystem.lower(), ecosystem.lower())
    namespace = (distro or _DEFAULT_NAMESPACE.get(kind)) if kind in ("deb", "apk", "rpm") else None
    if kind == "pypi":
        name = re.sub(r"[-_.]+", "-", name).lower()
    qualifiers = {"arch": architecture} if architecture and kind in ("deb", "apk", "rpm") else None
    return PackageURL(kind, namespace, name, version or None, qualifiers).to_string()


def _rows(packages: Any) -> list[dict[str, Any]]:
    if hasattr(packages, "to_dict"):  # a DataFrame, without importing pandas here
        packages = packages.to_dict("records")
    out = []
    for i, row in enumerate(packages if isinstance(packages, Iterable) else ()):
        if not isinstance(row, Mapping):
            raise SbomExportError(f"package {i} is a {type(row).__name__}, not a mapping",
                                  hint="Pass a list of dicts or a DataFrame of packages.")
        name = _clean(row.get("name"))
        if not name:
            raise SbomExportError(f"package {i} has no name",
                                  hint="Every package needs a 'name' column.")
        version = _clean(row.get("version"))
        purl = _clean(row.get("purl")) or purl_for(
            _clean(row.get("ecosystem")), name, version, _clean(row.get("architecture")),
            distro=_clean(row.get("distro")))
        if purl is not None:
            _check_purl(purl, i)
        licenses = row.get("licenses")
        if isinstance(licenses, str):
            licenses = [licenses]
        out.append({"name": name, "version": version, "purl": purl,
                    "type": _clean(row.get("type")) or "library",
                    "licenses": [str(x) for x in licenses or [] if x]})
    return out


def _clean(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):  # None, NaN
        return None
    text = str(value).strip()
    return text if text and text not in ("<NA>", "nan", "None") else None


def _check_purl(purl: str, index: int) -> None:
    from packageurl import PackageURL
    try:
        PackageURL.from_string(purl)
    except ValueError as exc:
        raise SbomExportError(f"package {index} has an invalid purl {purl!r}: {exc}",
                              hint="Write purls as pkg:<type>/<namespace>/<name>@<version>.") \
            from None


def _serial(name: str, version: str | None, rows: list[dict[str, Any]], fmt: str) -> uuid.UUID:
    content = json.dumps([fmt, name, version, rows], sort_keys=True).encode()
    return uuid.uuid5(uuid.NAMESPACE_URL, "registry-nb:" + hashlib.sha256(content).hexdigest())


def export_sbom(packages: Any, format: str = "cyclonedx", *, name: str,
                version: str | None = None, created: datetime | None = None) -> bytes:
    """An SBOM document (JSON bytes) listing ``packages``, about the image ``name``.

    ``packages`` is a list of dicts or a DataFrame with ``name`` and optional
    ``version``, ``purl``, ``type`` (``library`` by default) and ``licenses``; rows of
    ``packages_frame`` (``ecosystem``, ``architecture``) get purls from :func:`purl_for`.
    ``version`` is the image's version or digest; ``created`` defaults to now.
    """
    if format not in SBOM_FORMATS:
        raise SbomExportError(f"unknown SBOM format {format!r}",
                              hint=f"Use one of: {', '.join(SBOM_FORMATS)}.")
    rows = _rows(packages)
    created = (created or datetime.now(timezone.utc)).astimezone(timezone.utc)
    serial = _serial(name, version, rows, format)
    if format == "cyclonedx":
        return _cyclonedx(rows, name, version, created, serial)
    return _spdx(rows, name, version, created, serial)


def _cyclonedx(rows: list[dict[str, Any]], name: str, version: str | None, created: datetime,
               serial: uuid.UUID) -> bytes:
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.bom_ref import BomRef
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import LicenseExpression
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    from ..._version import __version__
    kinds = {t.value: t for t in ComponentType}
    root = Component(type=ComponentType.CONTAINER, name=name, version=version,
                     bom_ref=BomRef("image"))
    metadata = BomMetaData(timestamp=created, component=root)
    metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name=TOOL,
                                            version=__version__))
    bom = Bom(serial_number=serial, metadata=metadata)
    children = []
    for i, row in enumerate(rows):
        if row["type"] not in kinds:
            raise SbomExportError(f"package {i} has the type {row['type']!r}, which CycloneDX "
                                  "does not know", hint=f"Use one of: {', '.join(kinds)}.")
        component = Component(
            type=kinds[row["type"]], name=row["name"], version=row["version"],
            purl=PackageURL.from_string(row["purl"]) if row["purl"] else None,
            bom_ref=BomRef(f"pkg-{i}"),
            licenses=[LicenseExpression(" AND ".join(f"({x})" if " " in x else x
                                                     for x in row["licenses"]))]
            if row["licenses"] else None)
        bom.components.add(component)
        children.append(component)
    bom.register_dependency(root, children)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = JsonV1Dot6(bom).output_as_string(indent=2)
        count = len(Bom.from_json(json.loads(text)).components)  # read back
    if count != len(rows):
        raise SbomExportError(f"the CycloneDX document lists {count} of {len(rows)} packages",
                              hint="Two packages with the same name, version and purl collapse "
                              "into one; remove the duplicates.")
    return text.encode("utf-8")


_PURPOSES = {"library": "LIBRARY", "application": "APPLICATION", "framework": "FRAMEWORK",
             "container": "CONTAINER", "operating-system": "OPERATING_SYSTEM",
             "device": "DEVICE", "firmware": "FIRMWARE", "file": "FILE"}


def _spdx(rows: list[dict[str, Any]], name: str, version: str | None, created: datetime,
          serial: uuid.UUID) -> bytes:
    from spdx_tools.common.spdx_licensing import spdx_licensing
    from spdx_tools.spdx.model import (
        Actor,
        ActorType,
        CreationInfo,
        Document,
        ExternalPackageRef,
        ExternalPackageRefCategory,
        Package,
        PackagePurpose,
        Relationship,
        RelationshipType,
        SpdxNoAssertion,
    )
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

    from ..._version import __version__
    info = CreationInfo(
        spdx_version="SPDX-2.3", spdx_id="SPDXRef-DOCUMENT", name=name,
        document_namespace=f"https://spdx.org/spdxdocs/{TOOL}/{serial}",
        creators=[Actor(ActorType.TOOL, f"{TOOL}-{__version__}")],
        created=created.replace(tzinfo=None, microsecond=0))
    root = Package(spdx_id="SPDXRef-image", name=name, version=version,
                   download_location=SpdxNoAssertion(), files_analyzed=False,
                   primary_package_purpose=PackagePurpose.CONTAINER)
    packages = [root]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES,
                                  "SPDXRef-image")]
    for i, row in enumerate(rows):
        spdx_id = f"SPDXRef-Package-{i}"
        purpose = _PURPOSES.get(row["type"], "OTHER")
        licenses = spdx_licensing.parse(" AND ".join(row["licenses"])) if row["licenses"] \
            else SpdxNoAssertion()
        packages.append(Package(
            spdx_id=spdx_id, name=row["name"], version=row["version"],
            download_location=SpdxNoAssertion(), files_analyzed=False,
            license_declared=licenses, license_concluded=SpdxNoAssertion(),
            primary_package_purpose=PackagePurpose[purpose],
            external_references=[ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER,
                                                    "purl", row["purl"])] if row["purl"] else []))
        relationships.append(Relationship("SPDXRef-image", RelationshipType.CONTAINS, spdx_id))
    document = Document(creation_info=info, packages=packages, relationships=relationships)
    stream = io.StringIO()
    try:
        write_document_to_stream(document, stream, validate=True)
    except ValueError as exc:
        raise SbomExportError(f"spdx-tools refused the document: {exc}",
                              hint="Check the package names, versions and licences.") from None
    text = stream.getvalue()
    problems = validate_full_spdx_document(JsonLikeDictParser().parse(json.loads(text)))
    if problems:
        raise SbomExportError(f"the SPDX document does not validate: "
                              f"{problems[0].validation_message}",
                              hint="Check the package names, versions and licences.")
    return text.encode("utf-8")
