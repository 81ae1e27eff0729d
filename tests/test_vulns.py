"""registry_nb.vulns: Trivy and Grype JSON reports, written here in their documented shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from registry_nb import ContainerImage
from registry_nb.audits.vulns import (
    SEVERITIES,
    ReportFormatError,
    attach,
    read_report,
    severity_counts,
    vulnerabilities_frame,
)
from registry_nb.frames import VULNERABILITY_COLUMNS

LAYER = "sha256:" + "1" * 64

TRIVY = {
    "SchemaVersion": 2,
    "CreatedAt": "2024-05-01T10:00:00Z",
    "ArtifactName": "127.0.0.1:5000/demo:1",
    "ArtifactType": "container_image",
    "Metadata": {"OS": {"Family": "debian", "Name": "12.5"}},
    "Results": [
        {
            "Target": "127.0.0.1:5000/demo:1 (debian 12.5)",
            "Class": "os-pkgs",
            "Type": "debian",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-2023-0001",
                    "PkgID": "openssl@3.0.11-1",
                    "PkgName": "openssl",
                    "InstalledVersion": "3.0.11-1",
                    "FixedVersion": "3.0.13-1",
                    "Status": "fixed",
                    "Layer": {"Digest": LAYER, "DiffID": "sha256:" + "2" * 64},
                    "SeveritySource": "nvd",
                    "PrimaryURL": "https://avd.aquasec.com/nvd/cve-2023-0001",
                    "DataSource": {"ID": "debian", "Name": "Debian Security Tracker"},
                    "Title": "openssl: a bad bug",
                    "Description": "Long text.",
                    "Severity": "CRITICAL",
                },
                {
                    "VulnerabilityID": "CVE-2023-0002",
                    "PkgName": "zlib1g",
                    "InstalledVersion": "1:1.2.13",
                    "Severity": "low",
                    "Description": "No title here.\nSecond line.",
                },
            ],
        },
        {"Target": "usr/lib/python3/site-packages", "Class": "lang-pkgs", "Type": "python-pkg",
         "Vulnerabilities": [{"VulnerabilityID": "GHSA-xxxx", "PkgName": "requests",
                              "InstalledVersion": "2.0.0", "FixedVersion": "2.31.0",
                              "Severity": "HIGH", "Title": "requests leaks"}]},
        {"Target": "no findings here", "Class": "os-pkgs", "Type": "debian"},
    ],
}

GRYPE = {
    "matches": [
        {
            "vulnerability": {
                "id": "CVE-2024-1111",
                "dataSource": "https://security-tracker.debian.org/tracker/CVE-2024-1111",
                "namespace": "debian:distro:debian:12",
                "severity": "Medium",
                "urls": ["https://example.invalid/1111"],
                "description": "A medium problem in libx.",
                "cvss": [],
                "fix": {"versions": ["1.2.4", "1.3.0"], "state": "fixed"},
                "advisories": [],
            },
            "relatedVulnerabilities": [],
            "matchDetails": [{"type": "exact-indirect-match", "matcher": "dpkg-matcher"}],
            "artifact": {
                "id": "abc", "name": "libx", "version": "1.2.3", "type": "deb",
                "locations": [{"path": "/var/lib/dpkg/status", "layerID": LAYER}],
                "language": "", "licenses": [], "cpes": [], "purl": "pkg:deb/debian/libx@1.2.3",
            },
        },
        {
            "vulnerability": {"id": "CVE-2024-2222", "severity": "Negligible",
                              "namespace": "debian:distro:debian:12",
                              "fix": {"versions": [], "state": "not-fixed"}},
            "relatedVulnerabilities": [{"id": "CVE-2024-2222",
                                        "description": "From NVD: tiny issue."}],
            "artifact": {"name": "liby", "version": "0.1", "type": "deb", "locations": []},
        },
    ],
    "source": {"type": "image", "target": {"userInput": "127.0.0.1:5000/demo:1"}},
    "distro": {"name": "debian", "version": "12"},
    "descriptor": {"name": "grype", "version": "0.74.0"},
}


def test_trivy_report_from_a_dict_a_path_text_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "trivy.json"
    path.write_text(json.dumps(TRIVY))
    frames = [vulnerabilities_frame(TRIVY), vulnerabilities_frame(path),
              vulnerabilities_frame(str(path)), vulnerabilities_frame(json.dumps(TRIVY)),
              vulnerabilities_frame(json.dumps(TRIVY).encode())]
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frame, frames[0])
    frame = frames[0]
    assert list(frame.columns) == list(VULNERABILITY_COLUMNS)
    assert [str(t) for t in frame.dtypes] == list(VULNERABILITY_COLUMNS.values())
    assert frame["id"].tolist() == ["CVE-2023-0001", "GHSA-xxxx", "CVE-2023-0002"]
    first = frame.iloc[0]
    assert (first["package"], first["installed_version"], first["fixed_version"],
            first["severity"], first["title"], first["source"]) == \
        ("openssl", "3.0.11-1", "3.0.13-1", "CRITICAL", "openssl: a bad bug", "trivy")
    assert first["layer_digest"] == LAYER and first["data_source"] == "debian"
    assert first["package_type"] == "debian" and first["url"].endswith("cve-2023-0001")
    low = frame.iloc[2]
    assert low["severity"] == "LOW" and low["title"] == "No title here."
    assert pd.isna(low["fixed_version"])
    assert frame.iloc[1]["target"] == "usr/lib/python3/site-packages"


def test_old_trivy_list_form() -> None:
    scanner, rows = read_report(TRIVY["Results"])
    assert scanner == "trivy" and len(rows) == 3


def test_grype_report() -> None:
    frame = vulnerabilities_frame(GRYPE)
    assert frame["id"].tolist() == ["CVE-2024-1111", "CVE-2024-2222"]
    medium, negligible = frame.iloc[0], frame.iloc[1]
    assert (medium["package"], medium["installed_version"], medium["fixed_version"],
            medium["severity"], medium["source"], medium["package_type"]) == \
        ("libx", "1.2.3", "1.2.4, 1.3.0", "MEDIUM", "grype", "deb")
    assert medium["title"] == "A medium problem in libx."
    assert medium["layer_digest"] == LAYER
    assert medium["data_source"] == "debian:distro:debian:12"
    assert medium["target"] == "127.0.0.1:5000/demo:1"
    assert negligible["severity"] == "NEGLIGIBLE" and pd.isna(negligible["fixed_version"])
    assert negligible["title"] == "From NVD: tiny issue."


def test_counts_and_empty_reports() -> None:
    counts = severity_counts(vulnerabilities_frame(TRIVY))
    assert list(counts) == list(SEVERITIES)
    assert counts == {"CRITICAL": 1, "HIGH": 1, "MEDIUM": 0, "LOW": 1, "NEGLIGIBLE": 0,
                      "UNKNOWN": 0}
    empty = vulnerabilities_frame({"SchemaVersion": 2, "ArtifactName": "x", "Results": []})
    assert empty.empty and list(empty.columns) == list(VULNERABILITY_COLUMNS)
    assert severity_counts(empty)["CRITICAL"] == 0
    assert vulnerabilities_frame({"matches": []}).empty
    odd = vulnerabilities_frame({"matches": [{"vulnerability": {"id": "X", "severity": "??"},
                                              "artifact": {"name": "p"}}]})
    assert odd.iloc[0]["severity"] == "UNKNOWN"


@pytest.mark.parametrize("bad", [
    {"something": "else"}, [1, 2], "{not json", b"\x00\x01", {"matches": "nope"},
    {"SchemaVersion": 2, "Results": {"a": 1}},
])
def test_unrecognised_reports_raise(bad) -> None:
    with pytest.raises(ReportFormatError):
        vulnerabilities_frame(bad)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ReportFormatError, match="cannot read"):
        vulnerabilities_frame(tmp_path / "absent.json")


def test_attach_to_a_container_image() -> None:
    image = ContainerImage(name="demo", tag="1", registry_url="127.0.0.1:5000")
    frame = attach(image, GRYPE)
    assert image.vulnerabilities is frame and len(frame) == 2
    again = attach(image, vulnerabilities_frame(TRIVY))
    assert image.vulnerabilities is again and len(again) == 3
