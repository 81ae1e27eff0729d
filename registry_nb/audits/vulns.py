"""Vulnerability reports of Trivy and Grype, read into DataFrames.

No scanner runs here: scan images with ``trivy image -f json`` or
``grype -o json`` and hand the report (a path, JSON text, bytes or the parsed
dict) to :func:`vulnerabilities_frame`. Both formats are recognised by shape:

- Trivy: ``{"SchemaVersion": 2, "ArtifactName": …, "Results": [{"Target", "Type",
  "Vulnerabilities": [{"VulnerabilityID", "PkgName", "InstalledVersion",
  "FixedVersion", "Severity", "Title", "PrimaryURL", "SeveritySource", "Layer":
  {"Digest", "DiffID"}}]}]}``; the older list-of-results form is accepted too.
- Grype: ``{"matches": [{"vulnerability": {"id", "severity", "namespace",
  "dataSource", "description", "fix": {"versions", "state"}}, "artifact": {"name",
  "version", "type", "locations": [{"path", "layerID"}]}}], "source": …,
  "descriptor": {"name": "grype"}}``.

Severities are upper-cased; Grype's ``Negligible`` stays ``NEGLIGIBLE``; missing
ones become ``UNKNOWN``. Never imports the facade.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import RegistryError
from ..frames import VULNERABILITY_COLUMNS, build_frame

__all__ = [
    "ReportFormatError",
    "SEVERITIES",
    "vulnerabilities_frame",
    "read_report",
    "severity_counts",
    "attach",
]

#: Severities from worst to least, as they appear in the ``severity`` column.
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "NEGLIGIBLE", "UNKNOWN")
#: Largest report file read.
MAX_REPORT_BYTES = 512 * 1024 * 1024

Report = str | os.PathLike[str] | bytes | Mapping[str, Any] | list[Any]


class ReportFormatError(RegistryError, ValueError):
    """A vulnerability report is neither Trivy nor Grype JSON (or is not JSON)."""


def _load(report: Report) -> Any:
    if isinstance(report, Mapping | list):
        return report
    if isinstance(report, bytes):
        text = report.decode("utf-8", "replace")
    elif isinstance(report, str) and report.lstrip()[:1] in ("{", "["):
        text = report
    else:
        path = Path(os.fspath(report))  # type: ignore[arg-type]
        try:
            if path.stat().st_size > MAX_REPORT_BYTES:
                raise ReportFormatError(f"{path} is over {MAX_REPORT_BYTES} bytes")
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ReportFormatError(f"cannot read the report {path}: {exc.strerror or exc}",
                                    hint="Pass a path to a Trivy or Grype JSON report.") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ReportFormatError(f"the report is not JSON ({exc})",
                                hint="Write it with trivy -f json or grype -o json.") from None


def _severity(value: Any) -> str:
    text = str(value or "").strip().upper()
    return text if text in SEVERITIES else "UNKNOWN"


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _trivy(results: list[Any], artifact: str | None) -> list[dict[str, Any]]:
    rows = []
    for result in _dicts(results):
        for vuln in _dicts(result.get("Vulnerabilities")):
            layer = vuln.get("Layer") if isinstance(vuln.get("Layer"), dict) else {}
            source = vuln.get("DataSource") if isinstance(vuln.get("DataSource"), dict) else {}
            rows.append({
                "id": _str(vuln.get("VulnerabilityID")),
                "package": _str(vuln.get("PkgName")),
                "installed_version": _str(vuln.get("InstalledVersion")),
                "fixed_version": _str(vuln.get("FixedVersion")),
                "severity": _severity(vuln.get("Severity")),
                "title": _str(vuln.get("Title")) or _first_line(vuln.get("Description")),
                "source": "trivy",
                "package_type": _str(result.get("Type")),
                "target": _str(result.get("Target")) or artifact,
                "layer_digest": _str(layer.get("Digest")),
                "data_source": _str(source.get("ID")) or _str(vuln.get("SeveritySource")),
                "url": _str(vuln.get("PrimaryURL")),
            })
    return rows


def _first_line(text: Any, limit: int = 200) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    line = text.strip().splitlines()[0]
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _grype(data: dict[str, Any]) -> list[dict[str, Any]]:
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    target = source.get("target") if isinstance(source.get("target"), dict) else {}
    artifact_name = _str(target.get("userInput")) or _str(source.get("target"))
    rows = []
    for match in _dicts(data.get("matches")):
        vuln = match.get("vulnerability") if isinstance(match.get("vulnerability"), dict) else {}
        art = match.get("artifact") if isinstance(match.get("artifact"), dict) else {}
        fix = vuln.get("fix") if isinstance(vuln.get("fix"), dict) else {}
        versions = [str(v) for v in fix.get("versions") or [] if v]
        locations = _dicts(art.get("locations"))
        urls = [u for u in vuln.get("urls") or [] if isinstance(u, str)]
        description = vuln.get("description")
        if not description:
            related = _dicts(match.get("relatedVulnerabilities"))
            description = next((r.get("description") for r in related if r.get("description")),
                               None)
        rows.append({
            "id": _str(vuln.get("id")),
            "package": _str(art.get("name")),
            "installed_version": _str(art.get("version")),
            "fixed_version": ", ".join(versions) or None,
            "severity": _severity(vuln.get("severity")),
            "title": _first_line(description),
            "source": "grype",
            "package_type": _str(art.get("type")),
            "target": artifact_name,
            "layer_digest": _str(locations[0].get("layerID")) if locations else None,
            "data_source": _str(vuln.get("namespace")) or _str(vuln.get("dataSource")),
            "url": _str(vuln.get("dataSource")) or (urls[0] if urls else None),
        })
    return rows


def read_report(report: Report) -> tuple[str, list[dict[str, Any]]]:
    """(scanner, rows) of a Trivy or Grype JSON report; anything else raises ReportFormatError."""
    data = _load(report)
    if isinstance(data, dict) and "matches" in data:
        if not isinstance(data["matches"], list | type(None)):
            raise ReportFormatError("the Grype report's 'matches' is not a list")
        return "grype", _grype(data)
    if isinstance(data, dict) and ("Results" in data or "SchemaVersion" in data):
        results = data.get("Results")
        if not isinstance(results, list | type(None)):
            raise ReportFormatError("the Trivy report's 'Results' is not a list")
        return "trivy", _trivy(results or [], _str(data.get("ArtifactName")))
    if isinstance(data, list) and all(isinstance(r, dict) and "Target" in r for r in data):
        return "trivy", _trivy(data, None)  # Trivy before schema 2: a bare list of results
    raise ReportFormatError(
        "the report is neither Trivy JSON (Results[].Vulnerabilities[]) nor Grype JSON "
        "(matches[])",
        hint="Write it with trivy image -f json or grype -o json.",
    )


def vulnerabilities_frame(report: Report) -> pd.DataFrame:
    """A Trivy or Grype report (path, JSON text, bytes or dict) as a DataFrame.

    One row per match: ``id``, ``package``, ``installed_version``,
    ``fixed_version``, ``severity``, ``title``, ``source`` (``trivy`` or
    ``grype``), ``package_type``, ``target``, ``layer_digest``, ``data_source``,
    ``url``; sorted worst severity first. A report with no findings gives an empty
    frame with these columns.
    """
    _, rows = read_report(report)
    order = {name: i for i, name in enumerate(SEVERITIES)}
    rows.sort(key=lambda r: (order[r["severity"]], r["id"] or "", r["package"] or ""))
    return build_frame(rows, VULNERABILITY_COLUMNS)


def severity_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Matches per severity (every name of :data:`SEVERITIES`, zeros included)."""
    counts = frame["severity"].value_counts() if len(frame) else {}
    return {name: int(counts.get(name, 0)) for name in SEVERITIES}


def attach(image: Any, report: Report | pd.DataFrame) -> pd.DataFrame:
    """Read ``report`` and store it as ``image.vulnerabilities`` (a ContainerImage); return it."""
    frame = report if isinstance(report, pd.DataFrame) else vulnerabilities_frame(report)
    image.vulnerabilities = frame
    return frame
