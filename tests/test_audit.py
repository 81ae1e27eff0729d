"""registry_nb.audit through the facade, against the real registries and dockerd.

Every rule is checked with an image that should trigger it and one that should
not. Images are seeded with skopeo (``seed_image``), pushed by hand over raw HTTP
(odd media types, broken configs), or built FROM scratch in the real engine.
Expected values come from skopeo, raw HTTP, the registry's files on disk,
``docker save`` and Python's ``tarfile``, never from registry_nb's own reading.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urljoin

import pandas as pd
import pytest
import requests
from faultproxy import FaultProxy
from helpers import (
    FIXED_CREATED,
    RegistryService,
    busybox_build_context,
    gzip_bytes,
    make_oci_layout,
    make_tar,
    push_layout_with_skopeo,
    seed_image,
    skopeo_digest,
    skopeo_raw_manifest,
)

from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.audits import RULES, audit_rules
from registry_nb.audits.vulns import vulnerabilities_frame
from registry_nb.errors import DigestMismatchError, ImageNotFoundError, UnsupportedMediaTypeError
from registry_nb.frames import (
    AUDIT_COLUMNS,
    AUDIT_RULE_COLUMNS,
    LAYER_FILE_COLUMNS,
    LAYER_SCAN_COLUMNS,
    PACKAGE_COLUMNS,
    STORAGE_COLUMNS,
    WASTED_FILE_COLUMNS,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
AGE = round((NOW - datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)).total_seconds()
            / 86400, 2)
ALL_LABELS = {f"org.opencontainers.image.{k}": "x" for k in
              ("source", "version", "revision", "created")}


# -- helpers -------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def put_blob(registry: RegistryService, repo: str, data: bytes) -> str:
    """Monolithic blob upload over raw HTTP (POST, then PUT with the digest)."""
    s = session()
    started = s.post(f"{registry.url}/v2/{repo}/blobs/uploads/", timeout=30)
    assert started.status_code == 202, started.text
    location = urljoin(registry.url, started.headers["Location"])
    sep = "&" if "?" in location else "?"
    done = s.put(f"{location}{sep}digest={sha256(data)}", data=data, timeout=30,
                 headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return sha256(data)


def put_manifest(registry: RegistryService, repo: str, tag: str, body: bytes,
                 media_type: str) -> str:
    r = session().put(f"{registry.url}/v2/{repo}/manifests/{tag}", data=body, timeout=30,
                      headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    return sha256(body)


def config_doc(diff_ids: list[str], **config: object) -> dict:
    return {"architecture": "amd64", "os": "linux", "created": FIXED_CREATED,
            "config": dict(config), "rootfs": {"type": "layers", "diff_ids": diff_ids}}


def push_raw(registry: RegistryService, repo: str, tag: str, layers: list[tuple[str, bytes]],
             *, manifest_type: str = OCI_MANIFEST, config_type: str = OCI_CONFIG,
             diff_ids: list[str] | None = None, config: dict | None = None) -> tuple[str, dict]:
    """Push an image by hand: ``layers`` as (media type, blob bytes); returns (digest, manifest).

    ``diff_ids`` default to the sha256 of each blob gunzipped (or as is).
    """
    descriptors = []
    ids = []
    for media_type, blob in layers:
        descriptors.append({"mediaType": media_type, "digest": put_blob(registry, repo, blob),
                            "size": len(blob)})
        raw = blob
        if blob[:2] == b"\x1f\x8b":
            import gzip

            raw = gzip.decompress(blob)
        ids.append(sha256(raw))
    cfg = canonical(config or config_doc(diff_ids if diff_ids is not None else ids,
                                         Labels={"unique": uuid.uuid4().hex}))
    manifest = {"schemaVersion": 2, "mediaType": manifest_type,
                "config": {"mediaType": config_type, "digest": put_blob(registry, repo, cfg),
                           "size": len(cfg)},
                "layers": descriptors}
    return put_manifest(registry, repo, tag, canonical(manifest), manifest_type), manifest


def row_of(frame: pd.DataFrame, tag: str, repository: str | None = None) -> pd.Series:
    rows = frame[frame["tag"] == tag]
    if repository is not None:
        rows = rows[rows["repository"] == repository]
    assert len(rows) == 1, frame[["repository", "tag"]]
    return rows.iloc[0]


def layer_sizes(registry: RegistryService, repo: str, tag: str) -> list[int]:
    manifest = json.loads(skopeo_raw_manifest(registry.ref(repo, tag)))
    return [layer["size"] for layer in manifest["layers"]]


@pytest.fixture(scope="module")
def reg(open_registry: RegistryService):
    with ContainerRegistry(open_registry.host) as registry:
        yield registry


# -- the frame and the rules table ---------------------------------------------


def test_audit_frame_columns_and_listing(reg: ContainerRegistry, open_registry,
                                         unique_repo: str) -> None:
    digest = seed_image(open_registry, unique_repo, "1", layers=2,
                        files={"a.txt": b"a", "b.txt": b"b"})
    frame = reg.audit(unique_repo, now=NOW)
    assert list(frame.columns) == list(AUDIT_COLUMNS)
    assert [str(t) for t in frame.dtypes] == list(AUDIT_COLUMNS.values())
    row = row_of(frame, "1")
    assert row["digest"] == digest == skopeo_digest(open_registry.ref(unique_repo, "1"))
    assert row["size_bytes"] == sum(layer_sizes(open_registry, unique_repo, "1"))
    assert row["layer_count"] == 2 and row["age_days"] == AGE
    assert pd.isna(row["error"]) and pd.isna(row["vuln_critical"])
    assert row["finding_count"] == len(row["findings"])
    assert row["worst_severity"] == "medium"  # runs as root, labels missing


def test_rules_table() -> None:
    rules = audit_rules()
    assert list(rules.columns) == list(AUDIT_RULE_COLUMNS)
    assert rules["id"].is_unique and len(rules) == len(RULES) >= 14
    assert set(rules["severity"]) <= {"high", "medium", "low", "info"}
    assert rules["explanation"].str.len().min() > 40 and rules["fix"].str.len().min() > 10
    assert ContainerRegistry.audit_rules().equals(rules)


def test_rules_off(reg: ContainerRegistry, open_registry, unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "1")
    on = row_of(reg.audit(unique_repo), "1")
    assert {"runs-as-root", "missing-oci-labels"} <= set(on["findings"])
    off = row_of(reg.audit(unique_repo, rules_off=["runs-as-root", "missing-oci-labels"]), "1")
    assert not {"runs-as-root", "missing-oci-labels"} & set(off["findings"])
    assert off["runs_as_root"]  # the fact stays; only the finding goes
    with pytest.raises(ValueError, match="runs-as-rot"):
        reg.audit(unique_repo, rules_off=["runs-as-rot"])


# -- one test per rule: an image that triggers it, one that does not -----------


def test_secret_env_names_never_values(reg: ContainerRegistry, open_registry,
                                       unique_repo: str) -> None:
    values = ["s3cr3t-token-value", "pw-value-123", "aws-secret-value"]
    seed_image(open_registry, unique_repo, "leaky", config_overrides={"config": {"Env": [
        f"API_TOKEN={values[0]}", f"DB_PASSWORD={values[1]}",
        f"AWS_SECRET_ACCESS_KEY={values[2]}", "PATH=/bin"]}})
    seed_image(open_registry, unique_repo, "clean", config_overrides={"config": {"Env": [
        "PATH=/bin", "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D",
        "POSTGRES_PASSWORD_FILE=/run/secrets/pw", "EMPTY_TOKEN=", "KEYCLOAK_VERSION=24",
        "TOKENIZERS_PARALLELISM=false"]}})
    frame = reg.audit(unique_repo)
    leaky, clean = row_of(frame, "leaky"), row_of(frame, "clean")
    assert leaky["secret_env"] == ["API_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"]
    assert "secret-env" in leaky["findings"] and leaky["worst_severity"] == "high"
    assert clean["secret_env"] == [] and "secret-env" not in clean["findings"]
    shown = frame.to_json(date_format="iso") + frame.to_string() + repr(frame.to_dict())
    assert not any(value in shown for value in values)


def test_runs_as_root(reg: ContainerRegistry, open_registry, unique_repo: str) -> None:
    users = {"none": None, "zero": "0:0", "root": "root", "app": "1000:1000",
             "nobody": "nobody"}
    for tag, user in users.items():
        seed_image(open_registry, unique_repo, tag,
                   config_overrides={"config": {"User": user}} if user else None)
    frame = reg.audit(unique_repo)
    for tag, user in users.items():
        row = row_of(frame, tag)
        root = tag in ("none", "zero", "root")
        assert row["runs_as_root"] == root, tag
        assert ("runs-as-root" in row["findings"]) == root, tag
        assert row["user"] == (user or "")


def test_missing_oci_labels(reg: ContainerRegistry, open_registry, unique_repo: str,
                            tmp_path: Path) -> None:
    seed_image(open_registry, unique_repo, "full",
               config_overrides={"config": {"Labels": ALL_LABELS}})
    seed_image(open_registry, unique_repo, "partial", config_overrides={"config": {"Labels": {
        "org.opencontainers.image.source": "https://example.invalid/repo"}}})
    # the same keys as manifest annotations count too
    make_oci_layout(tmp_path / "l", tag="annotated", annotations=ALL_LABELS)
    push_layout_with_skopeo(tmp_path / "l", "annotated", open_registry.ref(unique_repo,
                                                                          "annotated"))
    frame = reg.audit(unique_repo)
    assert row_of(frame, "full")["missing_labels"] == []
    assert "missing-oci-labels" not in row_of(frame, "full")["findings"]
    assert row_of(frame, "annotated")["missing_labels"] == []
    partial = row_of(frame, "partial")
    assert partial["missing_labels"] == ["org.opencontainers.image.version",
                                         "org.opencontainers.image.revision",
                                         "org.opencontainers.image.created"]
    assert "missing-oci-labels" in partial["findings"]


def test_latest_only(reg: ContainerRegistry, open_registry, unique_repo: str) -> None:
    only, both, cut = unique_repo + "-only", unique_repo + "-both", unique_repo + "-cut"
    seed_image(open_registry, only, "latest")
    seed_image(open_registry, both, "latest")
    seed_image(open_registry, both, "1.0", files={"v": b"1.0"})
    seed_image(open_registry, cut, "latest")
    seed_image(open_registry, cut, "zzz", files={"z": b"z"})
    assert "latest-only" in row_of(reg.audit(only), "latest")["findings"]
    assert row_of(reg.audit(only), "latest")["latest_only"]
    frame = reg.audit(both)
    assert not frame["latest_only"].any()
    assert not any("latest-only" in f for f in frame["findings"])
    # a limit that leaves only "latest" in view does not make it the only tag
    limited = reg.audit(cut, limit=1)
    assert limited["tag"].tolist() == ["latest"]
    assert "latest-only" not in row_of(limited, "latest")["findings"]


def test_duplicate_tags(reg: ContainerRegistry, open_registry, unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "a")
    seed_image(open_registry, unique_repo, "b", files={"hello.txt": b"hello a\n"})  # same as a
    seed_image(open_registry, unique_repo, "c")
    frame = reg.audit(unique_repo)
    a, b, c = (row_of(frame, t) for t in "abc")
    assert a["digest"] == b["digest"] != c["digest"]
    assert pd.isna(a["duplicate_of"]) and "duplicate-tag" not in a["findings"]
    assert a["duplicate_tags"] == [f"{unique_repo}:b"]
    assert b["duplicate_of"] == f"{unique_repo}:a" and "duplicate-tag" in b["findings"]
    assert c["duplicate_tags"] == [] and "duplicate-tag" not in c["findings"]


def test_stale_image(reg: ContainerRegistry, open_registry, unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "old", config_overrides={
        "created": "2020-01-01T00:00:00Z", "history": [{"created": "2020-01-01T00:00:00Z"}]})
    seed_image(open_registry, unique_repo, "fresh")
    seed_image(open_registry, unique_repo, "undated", config_overrides={"created": ""})
    seed_image(open_registry, unique_repo, "epoch", files={"e": b"e"},
               config_overrides={"created": "1970-01-01T00:00:00Z"})
    frame = reg.audit(unique_repo, now=NOW)
    old, fresh = row_of(frame, "old"), row_of(frame, "fresh")
    assert old["age_days"] == 1461.0 and "stale-image" in old["findings"]
    assert fresh["age_days"] == AGE and "stale-image" not in fresh["findings"]
    for tag in ("undated", "epoch"):  # no creation time, or a reproducible build's 1970
        row = row_of(frame, tag)
        assert pd.isna(row["age_days"]) and "stale-image" not in row["findings"]
    assert row_of(frame, "epoch")["created"] == pd.Timestamp(0, tz="UTC")


def test_large_layer(reg: ContainerRegistry, open_registry, unique_repo: str) -> None:
    big = os.urandom(1_200_000)
    seed_image(open_registry, unique_repo, "dominated", files={"a": big, "b": b"small"},
               layers=2)
    seed_image(open_registry, unique_repo, "balanced",
               files={"a": os.urandom(600_000), "b": os.urandom(600_000)}, layers=2)
    seed_image(open_registry, unique_repo, "single", files={"a": big}, layers=1)
    frame = reg.audit(unique_repo)
    dominated = row_of(frame, "dominated")
    sizes = layer_sizes(open_registry, unique_repo, "dominated")
    assert dominated["largest_layer_bytes"] == max(sizes)
    assert dominated["largest_layer_share"] == round(max(sizes) / sum(sizes), 4)
    assert "large-layer" in dominated["findings"]
    assert "large-layer" not in row_of(frame, "balanced")["findings"]
    single = row_of(frame, "single")
    assert single["largest_layer_share"] == 1.0 and "large-layer" not in single["findings"]


def test_media_type_and_schema_rules(reg: ContainerRegistry, open_registry,
                                     unique_repo: str) -> None:
    tar = make_tar({"f.txt": b"media " + uuid.uuid4().bytes})
    packed = gzip_bytes(tar)
    good, good_manifest = push_raw(open_registry, unique_repo, "good",
                                   [(OCI_LAYER_GZIP, packed)])
    push_raw(open_registry, unique_repo, "docker", [(DOCKER_LAYER, packed)],
             manifest_type=DOCKER_MANIFEST, config_type=DOCKER_CONFIG)
    push_raw(open_registry, unique_repo, "plain", [(OCI_LAYER, tar)])
    push_raw(open_registry, unique_repo, "zstd",
             [(OCI_LAYER_ZSTD, b"\x28\xb5\x2f\xfd" + uuid.uuid4().bytes)])
    push_raw(open_registry, unique_repo, "mixed", [(OCI_LAYER_GZIP, packed)],
             manifest_type=DOCKER_MANIFEST, config_type=DOCKER_CONFIG)
    push_raw(open_registry, unique_repo, "unknown",
             [(OCI_LAYER_GZIP, packed), ("application/vnd.example.data", b"data")])
    push_raw(open_registry, unique_repo, "mismatch",
             [(OCI_LAYER_GZIP, packed), (OCI_LAYER_GZIP, gzip_bytes(make_tar({"g": b"g"})))],
             diff_ids=[sha256(tar)])
    good_body = canonical(good_manifest)
    put_manifest(open_registry, unique_repo, "list", canonical({
        "schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": good, "size": len(good_body),
            "platform": {"architecture": "amd64", "os": "linux"}}]}), DOCKER_LIST)
    frame = reg.audit(unique_repo, platform="linux/amd64")
    expected = {"good": set(), "docker": set(), "plain": {"uncompressed-layers"},
                "zstd": {"zstd-layers"}, "mixed": {"mixed-media-types"},
                "unknown": {"unknown-layer-type"}, "mismatch": {"layer-count-mismatch"},
                "list": {"mixed-media-types"}}
    media_rules = {"uncompressed-layers", "zstd-layers", "mixed-media-types",
                   "unknown-layer-type", "layer-count-mismatch", "schema1", "unreadable"}
    for tag, rules in expected.items():
        row = row_of(frame, tag)
        assert set(row["findings"]) & media_rules == rules, (tag, row["findings"], row["error"])
        assert len(row["media_problems"]) == len(rules), tag
    assert "application/vnd.oci.image.layer.v1.tar+gzip" in row_of(frame, "mixed")[
        "media_problems"][0]
    assert row_of(frame, "list")["platforms"] == ["linux/amd64"]
    # a zstd layer is refused with a clear error when zstandard is missing
    try:
        import zstandard  # noqa: F401
    except ImportError:
        with pytest.raises(UnsupportedMediaTypeError, match="zstandard"):
            reg.layer_contents(unique_repo, "zstd")


def test_unreadable_tag(reg: ContainerRegistry, open_registry, unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "fine")
    label = {"config": {"Labels": {"unique": uuid.uuid4().hex}}}
    seed_image(open_registry, unique_repo, "broken", config_overrides=label)
    manifest = json.loads(skopeo_raw_manifest(open_registry.ref(unique_repo, "broken")))
    path = open_registry.blob_path(manifest["config"]["digest"])
    data = path.read_bytes()
    path.write_bytes(data.replace(b"amd64", b"arm64"))  # same length, wrong digest
    frame = reg.audit(unique_repo)
    broken, fine = row_of(frame, "broken"), row_of(frame, "fine")
    assert broken["findings"] == ["unreadable"] and "DigestMismatchError" in broken["error"]
    assert pd.isna(broken["digest"]) and broken["worst_severity"] == "medium"
    assert "unreadable" not in fine["findings"] and pd.isna(fine["error"])


def test_schema1_manifest(open_registry, unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "old")
    seed_image(open_registry, unique_repo, "new", files={"n": b"n"})
    schema1 = canonical({
        "schemaVersion": 1, "name": unique_repo, "tag": "old", "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(b"layer")}], "history": [{"v1Compatibility": "{}"}],
        "signatures": [{"header": {"alg": "ES256"}, "signature": "x", "protected": "y"}]})
    with FaultProxy(open_registry.url) as proxy:
        proxy.add_fault("GET", "/manifests/old$", status=200, body=schema1, headers={
            "Content-Type": SCHEMA1, "Docker-Content-Digest": sha256(schema1)})
        with ContainerRegistry(proxy.host) as registry:
            frame = registry.audit(unique_repo)
    old, new = row_of(frame, "old"), row_of(frame, "new")
    assert old["findings"] == ["schema1"] and "schema 1" in old["error"]
    assert old["worst_severity"] == "high"
    assert not {"schema1", "unreadable"} & set(new["findings"])


def test_vulnerability_counts(reg: ContainerRegistry, open_registry, unique_repo: str,
                              tmp_path: Path) -> None:
    for tag in "abcd":
        seed_image(open_registry, unique_repo, tag, files={"t": tag.encode()})
    trivy = {"SchemaVersion": 2, "ArtifactName": f"{unique_repo}:a", "Results": [{
        "Target": "x (debian 12)", "Type": "debian", "Vulnerabilities": [
            {"VulnerabilityID": "CVE-1", "PkgName": "p", "InstalledVersion": "1",
             "Severity": "CRITICAL"},
            {"VulnerabilityID": "CVE-2", "PkgName": "p", "InstalledVersion": "1",
             "Severity": "HIGH"},
            {"VulnerabilityID": "CVE-3", "PkgName": "q", "InstalledVersion": "1",
             "Severity": "HIGH"},
            {"VulnerabilityID": "CVE-4", "PkgName": "q", "InstalledVersion": "1",
             "Severity": "UNKNOWN"}]}]}
    grype = tmp_path / "grype.json"
    grype.write_text(json.dumps({"matches": [
        {"vulnerability": {"id": "CVE-5", "severity": "Medium"},
         "artifact": {"name": "r", "version": "1"}},
        {"vulnerability": {"id": "CVE-6", "severity": "Low"},
         "artifact": {"name": "r", "version": "1"}},
        {"vulnerability": {"id": "CVE-7", "severity": "Negligible"},
         "artifact": {"name": "r", "version": "1"}}]}))
    d_digest = skopeo_digest(open_registry.ref(unique_repo, "d"))
    reports = {f"{unique_repo}:a": trivy, f"{open_registry.host}/{unique_repo}:b": grype,
               f"{unique_repo}@{d_digest}": vulnerabilities_frame({"matches": []}),
               "somewhere/else:1": trivy}
    frame = reg.audit(unique_repo, reports=reports)
    a, b, c, d = (row_of(frame, t) for t in "abcd")
    assert (a["vuln_critical"], a["vuln_high"], a["vuln_medium"], a["vuln_low"],
            a["vuln_unknown"]) == (1, 2, 0, 0, 1)
    assert "vulnerabilities" in a["findings"]
    assert (b["vuln_critical"], b["vuln_high"], b["vuln_medium"], b["vuln_low"]) == (0, 0, 1, 2)
    assert "vulnerabilities" not in b["findings"]
    assert pd.isna(c["vuln_critical"]) and "vulnerabilities" not in c["findings"]
    assert d["vuln_critical"] == 0 and d["vuln_high"] == 0


# -- shared layers and storage -------------------------------------------------


@pytest.fixture
def sharing(open_registry, unique_repo: str) -> dict[str, str]:
    """Repos A and B share their first layer; C shares nothing; A:2 duplicates A:1."""
    base = os.urandom(50_000)
    names = {k: f"{unique_repo}-{k.lower()}" for k in "ABC"}
    seed_image(open_registry, names["A"], "1", files={"a": base, "b": b"only A"}, layers=2)
    seed_image(open_registry, names["A"], "2", files={"a": base, "b": b"only A"}, layers=2)
    seed_image(open_registry, names["B"], "1", files={"a": base, "b": b"only B"}, layers=2)
    seed_image(open_registry, names["C"], "1", files={"c": os.urandom(1000)})
    return names


def test_shared_layers(reg: ContainerRegistry, open_registry, sharing) -> None:
    a, b, c = sharing["A"], sharing["B"], sharing["C"]
    base_layer = layer_sizes(open_registry, a, "1")[0]
    assert layer_sizes(open_registry, b, "1")[0] == base_layer
    frame = reg.audit([a, b, c])
    assert len(frame) == 4
    row_a = row_of(frame, "1", a)
    assert (row_a["shared_layers"], row_a["shared_bytes"], row_a["shared_with"]) == \
        (1, base_layer, [b])
    assert row_of(frame, "1", b)["shared_with"] == [a]
    row_c = row_of(frame, "1", c)
    assert (row_c["shared_layers"], row_c["shared_bytes"], row_c["shared_with"]) == (0, 0, [])
    alone = row_of(reg.audit(a), "1")
    assert alone["shared_layers"] == 0  # A's two tags do not count as another repository
    compared = row_of(reg.audit(a, compare_with=[b, c]), "1")
    assert (compared["shared_layers"], compared["shared_with"]) == (1, [b])


def disk_blobs(registry: RegistryService, repo: str) -> dict[str, int]:
    """Blobs the registry links to a repository, with their sizes, read from its files."""
    root = registry.repo_path(repo)
    out = {}
    for folder in (root / "_layers" / "sha256", root / "_manifests" / "revisions" / "sha256"):
        for link in folder.iterdir():
            digest = (link / "link").read_text().strip()
            out[digest] = registry.blob_path(digest).stat().st_size
    return out


def test_storage_frame(reg: ContainerRegistry, open_registry, sharing) -> None:
    a, b, c = sharing["A"], sharing["B"], sharing["C"]
    frame = reg.storage_frame([a, b, c])
    assert list(frame.columns) == list(STORAGE_COLUMNS)
    assert [str(t) for t in frame.dtypes] == list(STORAGE_COLUMNS.values())
    assert frame["repository"].tolist() == [a, b, c, "(total)"]
    assert frame["is_total"].tolist() == [False, False, False, True]
    disk = {name: disk_blobs(open_registry, name) for name in (a, b, c)}

    def image_bytes(repo: str, tag: str) -> int:
        raw = skopeo_raw_manifest(open_registry.ref(repo, tag))
        doc = json.loads(raw)
        return len(raw) + doc["config"]["size"] + sum(x["size"] for x in doc["layers"])

    for name, tags in ((a, ["1", "2"]), (b, ["1"]), (c, ["1"])):
        row = frame[frame["repository"] == name].iloc[0]
        assert row["stored_bytes"] == sum(disk[name].values())
        assert row["blob_count"] == len(disk[name])
        assert row["tag_count"] == len(tags)
        assert row["image_bytes"] == sum(image_bytes(name, t) for t in tags)
        assert row["saved_bytes"] == row["image_bytes"] - row["stored_bytes"]
    row_a = frame[frame["repository"] == a].iloc[0]
    shared = layer_sizes(open_registry, a, "1")[0]
    assert row_a["shared_bytes"] == shared and row_a["manifest_count"] == 1
    assert row_a["saved_bytes"] == image_bytes(a, "1")  # tag 2 is the same image
    assert row_a["dedup_ratio"] == 2.0
    assert frame[frame["repository"] == c].iloc[0]["shared_bytes"] == 0
    total = frame.iloc[-1]
    union: dict[str, int] = {}
    for blobs in disk.values():
        union.update(blobs)
    assert total["stored_bytes"] == sum(union.values())
    assert total["image_bytes"] == frame["image_bytes"][:-1].sum()
    assert total["shared_bytes"] == shared and total["blob_count"] == len(union)
    single = reg.storage_frame(c)
    assert single.iloc[0]["stored_bytes"] == sum(disk[c].values())
    with pytest.raises(ImageNotFoundError):
        reg.storage_frame(c + "-missing")


def test_catalog_audit_with_limit(reg: ContainerRegistry, open_registry,
                                  unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "1")
    frame = reg.audit(limit=5)
    assert len(frame) == 5 and list(frame.columns) == list(AUDIT_COLUMNS)
    assert reg.storage_frame(limit=3)["is_total"].sum() == 1


# -- layer contents, wasted space and packages on an image built in dockerd ----

DPKG_STATUS = b"""Package: demo-lib
Status: install ok installed
Architecture: amd64
Version: 1.2-3

Package: removed-tool
Status: deinstall ok config-files
Version: 0.9

Package: demo-tool
Status: install ok installed
Architecture: amd64
Version: 4.5.6
"""
METADATA = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.2.3\n\nA description.\n"


@pytest.fixture(scope="module")
def built(docker_client, open_registry, tmp_path_factory) -> dict:
    """Two images built FROM scratch in dockerd and pushed; they share their busybox layers.

    ``main`` writes /big (300 KiB) and /d/x, then deletes /big and recreates /d (an
    opaque folder), adds a dpkg status and a Python dist-info, and sets API_TOKEN.
    """
    repo = f"test/audit-built-{uuid.uuid4().hex[:6]}"
    ctx = busybox_build_context(tmp_path_factory.mktemp("ctx"), [
        "RUN dd if=/dev/urandom of=/big bs=1024 count=300 && mkdir -p /d && echo x > /d/x",
        "RUN rm /big && rm -rf /d && mkdir /d && echo y > /d/y",
        "COPY status /var/lib/dpkg/status",
        "COPY METADATA /usr/lib/python3/site-packages/demo_pkg-1.2.3.dist-info/METADATA",
        "ENV API_TOKEN=do-not-show-this",
    ])
    (ctx / "status").write_bytes(DPKG_STATUS)
    (ctx / "METADATA").write_bytes(METADATA)
    other = busybox_build_context(tmp_path_factory.mktemp("ctx2"), ["COPY note /note"])
    (other / "note").write_bytes(uuid.uuid4().bytes)
    reg = ContainerRegistry(open_registry.host)
    main = reg.build_and_push(ctx, repo + "-main", "1")
    side = reg.build_and_push(other, repo + "-side", "1")
    assert main["status"] == side["status"] == "success"
    image = docker_client.images.get(main["image_id"])
    saved = io.BytesIO(b"".join(image.save()))
    with tarfile.open(fileobj=saved) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))[0]
        layer_tars = [archive.extractfile(name).read() for name in manifest["Layers"]]
    yield {"reg": reg, "main": repo + "-main", "side": repo + "-side", "layers": layer_tars}
    reg.close()


def oracle_members(layer_tars: list[bytes]) -> list[list[tarfile.TarInfo]]:
    return [tarfile.open(fileobj=io.BytesIO(raw)).getmembers() for raw in layer_tars]


def test_layer_contents_of_a_built_image(built: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    reg = built["reg"]
    frame = reg.layer_contents(built["main"], "1")
    assert list(frame.columns) == list(LAYER_FILE_COLUMNS)
    assert [str(t) for t in frame.dtypes] == list(LAYER_FILE_COLUMNS.values())
    members = oracle_members(built["layers"])
    assert frame["layer"].max() == len(members) - 1
    for index, layer in enumerate(members):
        rows = frame[frame["layer"] == index]
        assert [n.rstrip("/") for n in rows["raw_name"]] == [m.name for m in layer]
        assert rows["size_bytes"].tolist() == [m.size if m.isreg() else 0 for m in layer]
        assert rows["mode"].tolist() == [m.mode & 0o7777 for m in layer]
    big = frame[frame["path"] == "/big"].iloc[0]
    assert big["size_bytes"] == 300 * 1024 and big["type"] == "file"
    assert big["permissions"] == "-rw-r--r--"
    whiteout = frame[frame["type"] == "whiteout"].iloc[0]
    assert whiteout["path"] == "/.wh.big" and whiteout["deletes"] == "/big"
    assert whiteout["layer"] == big["layer"] + 1
    opaque = frame[frame["type"] == "opaque"].iloc[0]
    assert opaque["path"] == "/d/.wh..wh..opq" and opaque["deletes"] == "/d"
    sh = frame[frame["path"] == "/bin/sh"].iloc[0]
    assert sh["type"] == "symlink" and sh["link_target"] == "/bin/busybox"
    assert not frame["unsafe"].any()
    assert list(tmp_path.iterdir()) == []  # streamed, nothing written


def test_wasted_space_of_a_built_image(built: dict) -> None:
    report = built["reg"].wasted_space(built["main"], "1")
    files = report.files
    assert list(files.columns) == list(WASTED_FILE_COLUMNS)
    assert list(report.layers.columns) == list(LAYER_SCAN_COLUMNS)
    members = oracle_members(built["layers"])
    big_layer = next(i for i, layer in enumerate(members) if any(m.name == "big"
                                                                 for m in layer))
    got = {(r.path, r.how, r.layer, r.removed_in, r.size_bytes) for r in files.itertuples()}
    assert got == {("/big", "deleted", big_layer, big_layer + 1, 307200),
                   ("/d/x", "opaque", big_layer, big_layer + 1, 2)}
    total = sum(m.size for layer in members for m in layer
                if m.isreg() and not os.path.basename(m.name).startswith(".wh."))
    assert report.total_bytes == total and report.wasted_bytes == 307202
    assert report.efficiency == pytest.approx(1 - 307202 / total)
    assert report.layers["uncompressed_size_bytes"].tolist() == [len(t) for t in built["layers"]]
    assert report.layers.loc[big_layer + 1, "removes_bytes"] == 307202
    assert "efficiency" in repr(report) and "<table" in report._repr_html_()


def test_packages_of_a_built_image(built: dict) -> None:
    frame = built["reg"].packages_frame(built["main"], "1")
    assert list(frame.columns) == list(PACKAGE_COLUMNS)
    members = oracle_members(built["layers"])
    dpkg_layer = next(i for i, layer in enumerate(members)
                      if any(m.name == "var/lib/dpkg/status" for m in layer))
    py_layer = next(i for i, layer in enumerate(members)
                    if any(m.name.endswith("dist-info/METADATA") for m in layer))
    got = {(r.ecosystem, r.name, r.version, r.layer) for r in frame.itertuples()}
    assert got == {("deb", "demo-lib", "1.2-3", dpkg_layer),
                   ("deb", "demo-tool", "4.5.6", dpkg_layer),
                   ("python", "demo-pkg", "1.2.3", py_layer)}
    layers = built["reg"].layers_frame(built["main"], "1")
    assert set(frame["layer_digest"]) == {layers["digest"][dpkg_layer],
                                          layers["digest"][py_layer]}


def test_audit_of_built_images(built: dict) -> None:
    frame = built["reg"].audit([built["main"], built["side"]])
    main, side = row_of(frame, "1", built["main"]), row_of(frame, "1", built["side"])
    assert main["media_type"] == DOCKER_MANIFEST and main["media_problems"] == []
    assert main["secret_env"] == ["API_TOKEN"] and "secret-env" in main["findings"]
    assert side["secret_env"] == [] and "secret-env" not in side["findings"]
    assert "do-not-show-this" not in frame.to_json(date_format="iso")
    # both start with the same busybox layers
    assert main["shared_layers"] >= 1 and main["shared_with"] == [built["side"]]
    assert side["shared_bytes"] == main["shared_bytes"] > 0


# -- hostile and corrupt layers through the registry ---------------------------


def _huge_header(name: bytes) -> bytes:
    head = bytearray(512)
    head[0:len(name)] = name
    head[100:108] = b"0000644\0"
    head[108:124] = b"0000000\0" * 2
    head[124:136] = b"\x80" + (2**62).to_bytes(11, "big")
    head[136:148] = b"00000000000\0"
    head[156:157] = b"0"
    head[257:265] = b"ustar\x0000"
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


def test_hostile_layer_is_listed_flagged_and_never_extracted(
        reg: ContainerRegistry, open_registry, unique_repo: str, tmp_path: Path,
        monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
                link: str = "") -> None:
            item = tarfile.TarInfo(name)
            item.type, item.size, item.linkname = kind, len(data), link
            tar.addfile(item, io.BytesIO(data) if data else None)
        add("../../etc/passwd", data=b"root::0:0::/:/bin/sh\n")
        add("/etc/shadow", data=b"root:x\n")
        add("escape", tarfile.SYMTYPE, link="../../../../tmp")
        add("escape/owned", data=b"through the link")
        add("loop1", tarfile.SYMTYPE, link="loop2")
        add("loop2", tarfile.SYMTYPE, link="loop1")
        add("hard", tarfile.LNKTYPE, link="/etc/passwd")
        add("normal.txt", data=b"ok")
        end = tar.offset  # before the end-of-archive blocks
    raw = buf.getvalue()[:end] + _huge_header(b"huge.bin") + b"z" * 100
    push_raw(open_registry, unique_repo, "evil", [(OCI_LAYER_GZIP, gzip_bytes(raw))])
    frame = reg.layer_contents(unique_repo, "evil")
    by_name = {r.raw_name: r for r in frame.itertuples()}
    assert by_name["../../etc/passwd"].unsafe and "escapes-root" in \
        by_name["../../etc/passwd"].flags
    assert by_name["/etc/shadow"].unsafe and "absolute-path" in by_name["/etc/shadow"].flags
    assert "link-escapes-root" in by_name["escape"].flags
    assert "link-escapes-root" in by_name["hard"].flags
    assert "symlink-loop" in by_name["loop1"].flags and "symlink-loop" in by_name["loop2"].flags
    assert "truncated" in by_name["huge.bin"].flags and by_name["huge.bin"].size_bytes == 100
    assert not by_name["normal.txt"].unsafe
    report = reg.wasted_space(unique_repo, "evil")
    assert report.wasted_bytes == 0
    assert reg.packages_frame(unique_repo, "evil").empty
    assert list(tmp_path.iterdir()) == []


def test_corrupt_layer_blob_raises_digest_mismatch(reg: ContainerRegistry, open_registry,
                                                   unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "1", files={"x": uuid.uuid4().bytes * 100})
    layer = json.loads(skopeo_raw_manifest(open_registry.ref(unique_repo, "1")))["layers"][0]
    path = open_registry.blob_path(layer["digest"])
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    for _ in range(2):  # the source's verdict wins, and nothing half-read is kept
        with pytest.raises(DigestMismatchError):
            reg.layer_contents(unique_repo, "1")


@pytest.mark.parametrize("which", ["basic", "token"])
def test_audits_through_authenticated_registries(which: str, basic_registry, token_registry,
                                                 unique_repo: str) -> None:
    service = basic_registry if which == "basic" else token_registry
    seed_image(service, unique_repo, "1", files={"var/lib/dpkg/status":
                                                 b"Package: p\nVersion: 9\n"})
    creds = RegistryCredentials(username=service.username, password=service.password,
                                registry_url=service.host)
    with ContainerRegistry(service.host, credentials=creds) as registry:
        row = row_of(registry.audit(unique_repo), "1")
        assert pd.isna(row["error"]) and "runs-as-root" in row["findings"]
        assert registry.layer_contents(unique_repo, "1")["path"].tolist()[-1] == \
            "/var/lib/dpkg/status"
        assert registry.packages_frame(unique_repo, "1")["name"].tolist() == ["p"]
        assert registry.storage_frame(unique_repo).iloc[0]["blob_count"] == 3
