"""Reading supply-chain documents (``registry_nb.audits.supply``), on the real fixtures.

In-toto statements inside DSSE envelopes, SLSA provenance v0.2 and v1 (BuildKit's own
documentation examples, min and max mode), SBOMs in SPDX 2.2/2.3 (spdx-tools' canonical
example, cosign's minimal one) and CycloneDX 1.4/1.5 (cosign, trivy's container SBOM and
its in-toto attestation), and writing SBOMs back (CycloneDX 1.6, SPDX 2.3) checked by
reading them with cyclonedx-python-lib and spdx-tools. No network.
"""

from __future__ import annotations

import base64
import json
import warnings
from datetime import datetime, timezone

import pytest
from supply_fixtures import read_bytes, read_json

from registry_nb.audits import supply
from registry_nb.errors import InvalidAttestationError, RegistryError, SbomExportError

BK = "buildkit-buildx/buildkit.slsa-provenance-{}.intoto.json"
ALPINE = "sha256:8914eb54f968791faf6a8638949e480fef81e697984fba772b3976835194c6d4"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


# ------------------------------------------------------------ in-toto and DSSE


def test_pae_matches_the_dsse_spec() -> None:
    # the DSSE v1 specification's own example
    assert supply.pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert supply.pae("", b"") == b"DSSEv1 0  0 "


def test_trivy_envelope_statement() -> None:
    envelope = supply.parse_envelope(read_bytes("trivy/centos-7-cyclonedx.intoto.jsonl"))
    assert envelope.payload_type == "application/vnd.in-toto+json"
    [sig] = envelope.signatures
    assert sig.keyid == "" and len(sig.sig) > 60
    statement = supply.parse_statement(envelope)
    assert statement.type == "https://in-toto.io/Statement/v0.1"
    assert statement.predicate_type == "https://cyclonedx.org/bom"
    [subject] = statement.subjects
    assert subject.name == "index.docker.io/library/centos"
    digest = "sha256:be65f488b7764ad3638f236b7b515b3678369a5124c47b8d32916d6487418ea4"
    assert statement.names(digest) and not statement.names("sha256:" + "00" * 32)
    assert statement.subject_digests == (digest,)


def test_statement_errors_are_typed() -> None:
    with pytest.raises(InvalidAttestationError, match="_type"):
        supply.parse_statement({"predicateType": "x", "subject": [], "predicate": {}})
    with pytest.raises(InvalidAttestationError, match="JSON"):
        supply.parse_statement(b"\x00not json")
    with pytest.raises(InvalidAttestationError, match="payload"):
        supply.parse_envelope({"payloadType": "x", "payload": "%%%", "signatures": []})
    bad = {"payloadType": "text/plain", "payload": base64.b64encode(b"hi").decode(),
           "signatures": []}
    with pytest.raises(InvalidAttestationError, match="in-toto"):
        supply.parse_statement(supply.parse_envelope(bad))
    err = InvalidAttestationError("x")
    assert isinstance(err, RegistryError)


# ---------------------------------------------------------------- provenance


@pytest.mark.parametrize("version, mode, invocation, started, completeness", [
    ("v0.2", "min", "yirbp1aosi1vqjmi3z6bc75nb", utc(2022, 12, 8, 11, 48, 59, 466513),
     {"parameters": True, "environment": True, "materials": False}),
    ("v0.2", "max", "46ue2x93k3xj5l463dektwldw", utc(2022, 12, 8, 11, 50, 54, 953375),
     {"parameters": True, "environment": True, "materials": False}),
    ("v1", "min", "yirbp1aosi1vqjmi3z6bc75nb", utc(2022, 12, 8, 11, 48, 59, 466513),
     {"request": False, "resolvedDependencies": False}),
    ("v1", "max", "46ue2x93k3xj5l463dektwldw", utc(2022, 12, 8, 11, 50, 54, 953375),
     {"request": True, "resolvedDependencies": False}),
])
def test_buildkit_provenance_examples(version, mode, invocation, started, completeness) -> None:
    prov = supply.parse_provenance(read_json(BK.format(f"{version}.mode-{mode}")))
    assert prov.slsa_version == version[1:]
    assert prov.mode == mode
    assert prov.builder_id is None  # empty in the examples: a local build
    assert prov.build_type == ("https://mobyproject.org/buildkit@v1" if version == "v0.2" else
                               "https://github.com/moby/buildkit/blob/master/docs/attestations/"
                               "slsa-definitions.md")
    assert prov.config_source_path == "Dockerfile"
    assert prov.config_source_uri is None
    assert prov.frontend == "dockerfile.v0"
    assert prov.build_args == {}
    assert prov.invocation_id == invocation
    assert prov.started_on == started and prov.finished_on > started
    assert prov.completeness == completeness and prov.complete is False
    assert prov.reproducible is False
    assert prov.source_repository is None and prov.source_revision is None
    [material] = prov.materials
    assert material.uri == "pkg:docker/alpine@latest?platform=linux%2Famd64"
    assert material.digest == ALPINE
    assert (material.image_reference, material.platform) == ("alpine:latest", "linux/amd64")
    assert prov.subject_digests == (
        "sha256:e8275b2b76280af67e26f068e5d585eb905f8dfd2f1918b3229db98133cb4862",)


def slsa_v02(**predicate_extra) -> dict:
    predicate = {
        "builder": {"id": "https://github.com/acme/app/actions/runs/42"},
        "buildType": "https://mobyproject.org/buildkit@v1",
        "materials": [
            {"uri": "pkg:docker/127.0.0.1%3A5000/base/debian@12?platform=linux%2Farm64",
             "digest": {"sha256": "11" * 32}},
            {"uri": "https://github.com/acme/app.git#main", "digest": {"sha1": "ab" * 20}},
        ],
        "invocation": {
            "configSource": {"uri": "https://github.com/acme/app.git#refs/tags/v1.2.0",
                             "digest": {"sha1": "cd" * 20}, "entryPoint": "Dockerfile"},
            "parameters": {"frontend": "dockerfile.v0", "args": {
                "build-arg:GITHUB_TOKEN": "ghp_NOTAREALTOKEN123", "build-arg:VERSION": "1.2.0",
                "build-arg:db_password": "hunter2", "label:org.opencontainers.image.source":
                "https://github.com/acme/app", "target": "release"}},
        },
        "metadata": {"buildStartedOn": "2024-05-01T10:00:00Z",
                     "buildFinishedOn": "2024-05-01T10:02:00.5Z",
                     "completeness": {"parameters": True, "environment": True, "materials": True},
                     "reproducible": True},
        "buildConfig": {"llbDefinition": []},
    }
    predicate.update(predicate_extra)
    return {"_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "app", "digest": {"sha256": "22" * 32}}], "predicate": predicate}


def test_provenance_source_build_args_and_secrets() -> None:
    prov = supply.parse_provenance(slsa_v02())
    assert prov.builder_id == "https://github.com/acme/app/actions/runs/42"
    assert (prov.source_repository, prov.source_revision, prov.source_from) == \
        ("https://github.com/acme/app.git", "cd" * 20, "config-source")
    assert prov.config_source_ref == "refs/tags/v1.2.0"
    assert prov.build_args == {"GITHUB_TOKEN": "ghp_NOTAREALTOKEN123", "VERSION": "1.2.0",
                               "db_password": "hunter2"}
    assert prov.labels == {"org.opencontainers.image.source": "https://github.com/acme/app"}
    assert prov.target == "release"
    assert prov.complete is True and prov.reproducible is True and prov.mode == "max"
    assert prov.finished_on == utc(2024, 5, 1, 10, 2, 0, 500000)
    base, git = prov.materials
    assert (base.image_reference, base.platform, base.digest) == \
        ("127.0.0.1:5000/base/debian:12", "linux/arm64", "sha256:" + "11" * 32)
    assert git.image_reference is None and git.digest == "sha1:" + "ab" * 20
    # names only, never values: in the helper and in every repr
    assert supply.secret_like_build_args(prov) == ["GITHUB_TOKEN", "db_password"]
    assert "ghp_NOTAREALTOKEN123" not in repr(prov) and "hunter2" not in repr(prov)


def test_provenance_vcs_hint_and_label_fallbacks() -> None:
    vcs = {"https://mobyproject.org/buildkit@v1#metadata": {
        "vcs": {"source": "https://github.com/acme/hint.git", "revision": "ef" * 20}}}
    doc = slsa_v02()
    del doc["predicate"]["invocation"]["configSource"]["uri"]
    doc["predicate"]["metadata"].update(vcs)
    prov = supply.parse_provenance(doc)
    assert (prov.source_repository, prov.source_revision, prov.source_from) == \
        ("https://github.com/acme/hint.git", "ef" * 20, "vcs-hint")
    del doc["predicate"]["metadata"]["https://mobyproject.org/buildkit@v1#metadata"]
    doc["predicate"]["invocation"]["parameters"]["args"][
        "label:org.opencontainers.image.revision"] = "12" * 20
    prov = supply.parse_provenance(doc)
    assert (prov.source_repository, prov.source_revision, prov.source_from) == \
        ("https://github.com/acme/app", "12" * 20, "label")


def test_provenance_v1_vcs_and_envelope() -> None:
    statement = read_json(BK.format("v1.mode-max"))
    statement["predicate"]["runDetails"]["builder"]["id"] = "https://ci.example/run/7"
    statement["predicate"]["runDetails"]["metadata"]["buildkit_metadata"]["vcs"] = {
        "source": "https://git.example/app.git", "revision": "34" * 20}
    statement["predicate"]["buildDefinition"]["externalParameters"]["request"]["args"] = {
        "build-arg:API_KEY": "k", "build-arg:HTTP_PROXY": "p"}
    payload = json.dumps(statement).encode()
    envelope = {"payloadType": "application/vnd.in-toto+json",
                "payload": base64.b64encode(payload).decode(), "signatures": []}
    prov = supply.parse_provenance(envelope)  # a DSSE envelope is unwrapped
    assert prov.builder_id == "https://ci.example/run/7"
    assert (prov.source_repository, prov.source_revision, prov.source_from) == \
        ("https://git.example/app.git", "34" * 20, "vcs-hint")
    assert supply.secret_like_build_args(prov) == ["API_KEY"]


def test_provenance_and_sbom_inside_sigstore_bundles() -> None:
    # cosign v3 attest: a v0.3 bundle whose DSSE envelope carries the statement
    def bundle(statement: dict) -> bytes:
        envelope = {"payloadType": "application/vnd.in-toto+json", "signatures": [],
                    "payload": base64.b64encode(json.dumps(statement).encode()).decode()}
        return json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                           "verificationMaterial": {}, "dsseEnvelope": envelope}).encode()
    prov = supply.parse_provenance(bundle(read_json(BK.format("v1.mode-min"))))
    assert (prov.slsa_version, prov.mode) == ("1", "min")
    trivy = supply.parse_statement(read_bytes("trivy/centos-7-cyclonedx.intoto.jsonl"))
    statement = {"_type": trivy.type, "predicateType": trivy.predicate_type,
                 "subject": [{"name": s.name, "digest": s.digest} for s in trivy.subjects],
                 "predicate": trivy.predicate}
    assert len(supply.parse_sbom(bundle(statement)).packages) == 3


def test_provenance_rejects_other_predicates() -> None:
    with pytest.raises(InvalidAttestationError, match="provenance"):
        supply.parse_provenance(read_bytes("trivy/centos-7-cyclonedx.intoto.jsonl"))
    with pytest.raises(InvalidAttestationError, match="predicate"):
        supply.parse_provenance({"_type": "https://in-toto.io/Statement/v1", "subject": [],
                                 "predicateType": "https://slsa.dev/provenance/v1",
                                 "predicate": "not an object"})


# ---------------------------------------------------------------------- SBOMs


def test_spdx_23_canonical_example() -> None:
    sbom = supply.parse_sbom(read_bytes("spdx-tools-python/SPDXJSONExample-v2.3.spdx.json"))
    assert (sbom.format, sbom.spec_version, len(sbom.packages)) == ("spdx", "SPDX-2.3", 4)
    assert sbom.problems == ()
    rows = {p.name: p for p in sbom.packages}
    assert set(rows) == {"glibc", "Apache Commons Lang", "Jena", "Saxon"}
    glibc = rows["glibc"]
    assert (glibc.version, glibc.type, glibc.licenses) == \
        ("2.11.1", "source", ("LGPL-2.0-only AND LicenseRef-3",))
    assert glibc.cpe == "cpe:2.3:a:pivotal_software:spring_framework:4.1.0:*:*:*:*:*:*:*"
    jena = rows["Jena"]
    assert (jena.purl, jena.ecosystem, jena.version) == \
        ("pkg:maven/org.apache.jena/apache-jena@3.12.0", "maven", "3.12.0")
    assert rows["Apache Commons Lang"].licenses == ()  # NOASSERTION is no licence
    assert rows["Saxon"].licenses == ("MPL-1.0",)
    assert sbom.created == utc(2010, 1, 29, 18, 30, 22)


def test_spdx_22_minimal_cosign_bom() -> None:
    sbom = supply.parse_sbom(read_bytes("cosign/bom-go-mod.spdx.json"), "text/spdx+json")
    assert (sbom.format, sbom.spec_version, sbom.packages) == ("spdx", "SPDX-2.2", ())
    # spdx-tools' validation finds the missing DESCRIBES relationship, as the README says
    assert len(sbom.problems) == 1 and "DESCRIBES" in sbom.problems[0]


def test_spdx_tag_value() -> None:
    text = "\n".join([
        "SPDXVersion: SPDX-2.3", "DataLicense: CC0-1.0", "SPDXID: SPDXRef-DOCUMENT",
        "DocumentName: tv", "DocumentNamespace: https://example.com/tv",
        "Creator: Tool: test", "Created: 2024-01-02T03:04:05Z", "",
        "PackageName: zlib", "SPDXID: SPDXRef-zlib", "PackageVersion: 1.3",
        "PackageDownloadLocation: NOASSERTION", "FilesAnalyzed: false",
        "PackageLicenseDeclared: Zlib",
        "ExternalRef: PACKAGE-MANAGER purl pkg:deb/debian/zlib1g@1.3?arch=amd64", "",
        "Relationship: SPDXRef-DOCUMENT DESCRIBES SPDXRef-zlib", ""])
    sbom = supply.parse_sbom(text.encode(), "text/spdx")
    assert sbom.format == "spdx" and sbom.problems == ()
    [row] = sbom.packages
    assert (row.name, row.version, row.purl, row.ecosystem, row.licenses) == \
        ("zlib", "1.3", "pkg:deb/debian/zlib1g@1.3?arch=amd64", "deb", ("Zlib",))


@pytest.mark.parametrize("name, version", [("cosign/bom-go-mod.cyclonedx.json", "V1_4"),
                                           ("trivy/centos-7-cyclonedx.json", "V1_5")])
def test_cyclonedx_fixtures_are_schema_valid(name: str, version: str) -> None:
    # the README: cyclonedx-python-lib's strict validator accepts both
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    validator = JsonStrictValidator(getattr(SchemaVersion, version))
    assert validator.validate_str(read_bytes(name).decode()) is None


def test_cyclonedx_14_minimal_cosign_bom() -> None:
    sbom = supply.parse_sbom(read_bytes("cosign/bom-go-mod.cyclonedx.json"))
    assert (sbom.format, sbom.spec_version, sbom.packages) == ("cyclonedx", "1.4", ())


def test_cyclonedx_15_trivy_container_sbom() -> None:
    sbom = supply.parse_sbom(read_bytes("trivy/centos-7-cyclonedx.json"),
                             "application/vnd.cyclonedx+json")
    assert (sbom.format, sbom.spec_version, len(sbom.packages)) == ("cyclonedx", "1.5", 3)
    assert (sbom.subject, sbom.subject_type) == \
        ("integration/testdata/fixtures/images/centos-7.tar.gz", "container")
    rows = {p.name: p for p in sbom.packages}
    bash = rows["bash"]
    assert (bash.version, bash.type, bash.ecosystem, bash.licenses) == \
        ("4.2.46-31.el7", "library", "rpm", ("GPLv3+",))
    assert bash.purl == "pkg:rpm/centos/bash@4.2.46-31.el7?arch=x86_64&distro=centos-7.6.1810"
    assert rows["centos"].type == "operating-system" and rows["centos"].purl is None
    assert sbom.tools  # trivy names itself


def test_cyclonedx_in_trivy_attestation() -> None:
    statement = supply.parse_statement(
        supply.parse_envelope(read_bytes("trivy/centos-7-cyclonedx.intoto.jsonl")))
    sbom = supply.parse_sbom(statement)  # the predicate of a statement is the SBOM
    assert (sbom.format, sbom.spec_version, len(sbom.packages)) == ("cyclonedx", "1.4", 3)


@pytest.mark.parametrize("name", ["trivy/centos-7-cyclonedx.json",
                                  "trivy/centos-7-cyclonedx.intoto.jsonl"])
def test_cyclonedx_rows_agree_with_cyclonedx_python_lib(name: str) -> None:
    from cyclonedx.model.bom import Bom
    data = read_json(name)
    if "payload" in data:
        data = json.loads(base64.b64decode(data["payload"]))["predicate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bom = Bom.from_json(data)
    expected = sorted(
        (c.name, c.version, str(c.purl) if c.purl else None, c.type.value,
         tuple(sorted(getattr(lic, "id", None) or getattr(lic, "name", None)
                      or getattr(lic, "value", None) for lic in c.licenses)))
        for c in bom.components)
    ours = sorted((p.name, p.version, p.purl and str(_purl(p.purl)), p.type,
                   tuple(sorted(p.licenses))) for p in supply.parse_sbom(data).packages)
    assert ours == expected


def _purl(text: str):
    from packageurl import PackageURL
    return PackageURL.from_string(text)


def test_cyclonedx_16_nested_components_and_expressions() -> None:
    doc = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
           "metadata": {"component": {"type": "container", "name": "demo/app"},
                        "tools": {"components": [{"type": "application", "name": "syft"}]}},
           "components": [
               {"type": "library", "name": "flask", "version": "3.0.0",
                "purl": "pkg:pypi/flask@3.0.0", "licenses": [{"expression": "BSD-3-Clause"}],
                "components": [{"type": "library", "name": "werkzeug", "version": "3.0.1",
                                "purl": "pkg:pypi/werkzeug@3.0.1",
                                "licenses": [{"license": {"name": "BSD"}}]}]},
               {"type": "operating-system", "name": "debian", "version": "12"}]}
    sbom = supply.parse_sbom(json.dumps(doc))
    assert [p.name for p in sbom.packages] == ["flask", "werkzeug", "debian"]
    assert sbom.packages[0].licenses == ("BSD-3-Clause",)
    assert sbom.packages[1].licenses == ("BSD",)
    assert sbom.tools == ("syft",) and sbom.subject == "demo/app"


def test_spdx_inside_a_buildkit_statement_and_syft() -> None:
    spdx = read_json("spdx-tools-python/SPDXJSONExample-v2.3.spdx.json")
    statement = {"_type": "https://in-toto.io/Statement/v0.1",
                 "predicateType": "https://spdx.dev/Document",
                 "subject": [{"name": "x", "digest": {"sha256": "33" * 32}}],
                 "predicate": spdx}
    assert len(supply.parse_sbom(statement).packages) == 4
    syft = {"artifacts": [{"name": "musl", "version": "1.2.4", "type": "apk",
                           "purl": "pkg:apk/alpine/musl@1.2.4?arch=x86_64",
                           "licenses": [{"value": "MIT"}]}],
            "descriptor": {"name": "syft", "version": "1.0.0"}, "schema": {"version": "16.0.0"}}
    sbom = supply.parse_sbom(json.dumps(syft).encode(), "application/vnd.syft+json")
    assert (sbom.format, sbom.spec_version, sbom.tools) == ("syft", "16.0.0", ("syft",))
    [row] = sbom.packages
    assert (row.name, row.ecosystem, row.licenses) == ("musl", "apk", ("MIT",))


def test_sbom_errors_are_typed() -> None:
    with pytest.raises(InvalidAttestationError, match="SBOM"):
        supply.parse_sbom(b'{"hello": "world"}')
    with pytest.raises(InvalidAttestationError):
        supply.parse_sbom(b"\xff\xfe")
    with pytest.raises(InvalidAttestationError, match="SPDX"):
        supply.parse_sbom(b'{"spdxVersion": "SPDX-2.3", "packages": [{"name": 3}]}')


# --------------------------------------------------------------------- export


PACKAGES = [
    {"name": "busybox", "version": "1.36.1-6",
     "purl": "pkg:deb/debian/busybox@1.36.1-6?arch=amd64",
     "type": "library"},
    {"name": "musl", "version": "1.2.4-r2", "ecosystem": "apk", "architecture": "x86_64"},
    {"name": "Flask_Login", "version": "0.6.3", "ecosystem": "python"},
    {"name": "tzdata", "version": None, "ecosystem": "deb", "architecture": "all"},
]
PURLS = ["pkg:deb/debian/busybox@1.36.1-6?arch=amd64", "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64",
         "pkg:pypi/flask-login@0.6.3", "pkg:deb/debian/tzdata?arch=all"]
CREATED = utc(2024, 6, 1, 12, 0, 0)


def test_purl_for_packages_frame_ecosystems() -> None:
    assert supply.purl_for("deb", "busybox", "1:1.36", "arm64", distro="ubuntu") == \
        "pkg:deb/ubuntu/busybox@1:1.36?arch=arm64"
    assert supply.purl_for("python", "Zope.Interface", "6.0") == "pkg:pypi/zope-interface@6.0"
    assert supply.purl_for("apk", "musl", "1.2.4-r2") == "pkg:apk/alpine/musl@1.2.4-r2"
    assert supply.purl_for("gem", "rails", "7") == "pkg:gem/rails@7"


def test_export_cyclonedx_16_validates_and_round_trips() -> None:
    from cyclonedx.model.bom import Bom
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    raw = supply.export_sbom(PACKAGES, "cyclonedx", name="demo/app", version="sha256:" + "44" * 32,
                             created=CREATED)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(raw.decode()) is None
    doc = json.loads(raw)
    assert doc["specVersion"] == "1.6" and doc["metadata"]["component"]["type"] == "container"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(Bom.from_json(doc).components) == 4
    # cyclonedx-python-lib keeps components sorted, so compare without order
    rows = supply.parse_sbom(raw).packages
    assert sorted((p.name, p.version or "", p.purl, p.type) for p in rows) == sorted(
        (pkg["name"], pkg["version"] or "", purl, "library")
        for pkg, purl in zip(PACKAGES, PURLS, strict=True))
    # the same table, name and time give the same bytes (seeded demo images stay reproducible)
    assert supply.export_sbom(PACKAGES, "cyclonedx", name="demo/app",
                              version="sha256:" + "44" * 32, created=CREATED) == raw


def test_export_spdx_23_validates_and_round_trips() -> None:
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    raw = supply.export_sbom(PACKAGES, "spdx", name="demo/app", created=CREATED)
    document = JsonLikeDictParser().parse(json.loads(raw))
    assert validate_full_spdx_document(document) == []
    assert document.creation_info.spdx_version == "SPDX-2.3"
    sbom = supply.parse_sbom(raw)
    rows = [p for p in sbom.packages if p.type != "container"]
    assert [(p.name, p.version, p.purl) for p in rows] == [
        (pkg["name"], pkg["version"], purl) for pkg, purl in zip(PACKAGES, PURLS, strict=True)]
    assert raw == supply.export_sbom(PACKAGES, "spdx", name="demo/app", created=CREATED)


def test_export_rejects_bad_input() -> None:
    with pytest.raises(SbomExportError, match="format"):
        supply.export_sbom(PACKAGES, "swid", name="x")
    with pytest.raises(SbomExportError, match="name"):
        supply.export_sbom([{"version": "1"}], "cyclonedx", name="x")
    with pytest.raises(SbomExportError, match="purl"):
        supply.export_sbom([{"name": "a", "purl": "not-a-purl"}], "spdx", name="x")
