"""Artifacts and attachments against the real distribution registry.

distribution has no referrers API (every version), so attaching there goes through the
``sha256-<hex>`` fallback tag. For the referrers API the registry is fronted by
tests/referrers_proxy.py, a loopback proxy of ours that answers
``/v2/<name>/referrers/<digest>`` the way the distribution spec says (paging with
``Link``, ``artifactType`` filter with ``OCI-Filters-Applied``, ``OCI-Subject`` on
manifest PUTs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import seed_image
from referrers_proxy import ReferrersProxy

from registry_nb import ContainerRegistry
from registry_nb.errors import InvalidManifestError, NotFoundError
from registry_nb.oci import Manifest
from registry_nb.oci.artifacts import (
    COSIGN_SIMPLE_SIGNING,
    COSIGN_TAG,
    EMPTY_DIGEST,
    FALLBACK_TAG,
    REFERRERS_API,
    cosign_tag,
    fallback_tag,
)
from registry_nb.oci.manifest import Descriptor
from registry_nb.remote.credentials import RegistryCredentials

SBOM_TYPE = "application/spdx+json"


def _sbom_file(tmp_path: Path, name: str = "sbom.spdx.json") -> Path:
    doc = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "demo",
           "dataLicense": "CC0-1.0", "documentNamespace": "https://example.invalid/demo",
           "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: test"]},
           "packages": [{"SPDXID": "SPDXRef-p1", "name": "busybox", "versionInfo": "1.36",
                         "downloadLocation": "NOASSERTION"}]}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def reg(open_registry):
    with ContainerRegistry(open_registry.host) as facade:
        yield facade


def test_push_and_pull_files_and_a_folder_the_oras_way(reg, unique_repo, tmp_path):
    (tmp_path / "in" / "data" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "model.bin").write_bytes(os.urandom(3000))
    (tmp_path / "in" / "data" / "a.txt").write_text("alpha")
    (tmp_path / "in" / "data" / "sub" / "b.txt").write_text("beta")
    result = reg.push_artifact([tmp_path / "in" / "model.bin", tmp_path / "in" / "data"],
                               unique_repo, "1", artifact_type="application/vnd.example.model",
                               annotations={"org.example": "yes"})
    assert result["files"] == ["model.bin", "data"]
    manifest = reg.client.get_manifest(unique_repo, "1")
    doc = json.loads(manifest.raw)
    assert doc["artifactType"] == "application/vnd.example.model"
    assert doc["config"] == {"mediaType": "application/vnd.oci.empty.v1+json",
                             "digest": EMPTY_DIGEST,
                             "size": 2}
    assert doc["annotations"]["org.example"] == "yes"
    file_layer, folder_layer = doc["layers"]
    assert file_layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert file_layer["annotations"] == {"org.opencontainers.image.title": "model.bin"}
    assert folder_layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert folder_layer["annotations"]["io.deis.oras.content.unpack"] == "true"
    assert folder_layer["annotations"]["io.deis.oras.content.digest"].startswith("sha256:")
    out = tmp_path / "out"
    pulled = reg.pull_artifact(unique_repo, "1", out)
    assert pulled["digest"] == manifest.digest
    assert (out / "model.bin").read_bytes() == (tmp_path / "in" / "model.bin").read_bytes()
    assert (out / "data" / "a.txt").read_text() == "alpha"
    assert (out / "data" / "sub" / "b.txt").read_text() == "beta"
    assert not [p for p in out.rglob(".partial-*")]


def test_pull_refuses_a_title_that_escapes_the_destination(reg, unique_repo, tmp_path):
    client = reg.client
    client.upload_blob(unique_repo, b"{}", EMPTY_DIGEST)
    layer = Descriptor.for_content("application/vnd.oci.image.layer.v1.tar", b"evil",
                                   annotations={"org.opencontainers.image.title": "../evil"})
    client.upload_blob(unique_repo, b"evil", layer.digest)
    manifest = Manifest.build(Descriptor("application/vnd.oci.empty.v1+json",
                                         EMPTY_DIGEST, 2),
                              [layer], artifact_type="application/vnd.example")
    client.put_manifest(unique_repo, "evil", manifest.raw, manifest.media_type)
    with pytest.raises(InvalidManifestError, match="outside the destination"):
        reg.pull_artifact(unique_repo, "evil", tmp_path / "out")
    assert not (tmp_path / "evil").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_attach_without_referrers_api_writes_the_fallback_tag(reg, open_registry, unique_repo,
                                                              tmp_path):
    digest = seed_image(open_registry, unique_repo, "1")
    result = reg.push_artifact(_sbom_file(tmp_path), unique_repo, artifact_type=SBOM_TYPE,
                               subject="1")
    assert result["attached_by"] == FALLBACK_TAG
    assert fallback_tag(digest) in reg.client.tags(unique_repo)
    frame = reg.referrers(unique_repo, "1")
    assert list(frame["found_by"]) == [FALLBACK_TAG]
    assert list(frame["kind"]) == ["sbom"]
    assert list(frame["subject"]) == [digest]
    assert list(frame["digest"]) == [result["digest"]]
    assert reg.referrers(unique_repo, "1", artifact_type="application/other").empty


def test_concurrent_attachments_are_all_kept_in_the_fallback_index(reg, open_registry,
                                                                   unique_repo, tmp_path):
    seed_image(open_registry, unique_repo, "1")
    files = [_sbom_file(tmp_path, f"s{i}.json") for i in range(6)]
    errors: list[BaseException] = []

    def attach(path: Path) -> None:
        try:
            with ContainerRegistry(open_registry.host) as own:  # own session each
                own.push_artifact(path, unique_repo, artifact_type=SBOM_TYPE, subject="1")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attach, args=(p,)) for p in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(reg.referrers(unique_repo, "1")) == 6


def test_referrers_api_through_the_proxy_pages_and_filters(open_registry, unique_repo,
                                                           tmp_path):
    digest = seed_image(open_registry, unique_repo, "1")
    with ReferrersProxy(open_registry.url, page_size=2) as proxy, \
            ContainerRegistry(proxy.host) as reg:
        pushed = [reg.push_artifact(_sbom_file(tmp_path, f"s{i}.json"), unique_repo,
                                    artifact_type=SBOM_TYPE if i < 2 else "application/x.other",
                                    subject=digest) for i in range(3)]
        assert {p["attached_by"] for p in pushed} == {REFERRERS_API}
        assert fallback_tag(digest) not in reg.client.tags(unique_repo)
        frame = reg.referrers(unique_repo, "1")
        assert set(frame["digest"]) == {p["digest"] for p in pushed}
        assert set(frame["found_by"]) == {REFERRERS_API}
        assert any("last=" in r for r in proxy.referrer_requests)  # followed Link
        only = reg.referrers(unique_repo, "1", artifact_type=SBOM_TYPE)
        assert set(only["digest"]) == {p["digest"] for p in pushed[:2]}


def test_cosign_signature_tag_is_found(reg, open_registry, unique_repo):
    from cryptography.hazmat.primitives.asymmetric import ec

    from registry_nb.audits.supply import cosign_payload, sign_cosign

    digest = seed_image(open_registry, unique_repo, "1")
    key = ec.generate_private_key(ec.SECP256R1())
    payload = cosign_payload(digest, f"{open_registry.host}/{unique_repo}")
    layer = Descriptor.for_content(COSIGN_SIMPLE_SIGNING, payload, annotations={
        "dev.cosignproject.cosign/signature": sign_cosign(payload, key)})
    config = Descriptor.for_content("application/vnd.oci.image.config.v1+json", b"{}")
    reg.client.upload_blob(unique_repo, payload, layer.digest)
    reg.client.upload_blob(unique_repo, b"{}", config.digest)
    sig = Manifest.build(config, [layer])
    reg.client.put_manifest(unique_repo, cosign_tag(digest, "sig"), sig.raw, sig.media_type)
    frame = reg.referrers(unique_repo, "1")
    assert list(frame["found_by"]) == [COSIGN_TAG]
    assert list(frame["kind"]) == ["signature"]
    assert list(frame["format"]) == ["cosign"]


def test_copy_carries_attachments_across_registries(open_registry, basic_registry, unique_repo,
                                                    tmp_path):
    digest = seed_image(open_registry, unique_repo, "1")
    with ContainerRegistry(open_registry.host) as source:
        sbom = source.push_artifact(_sbom_file(tmp_path), unique_repo, artifact_type=SBOM_TYPE,
                                    subject="1")
    creds = RegistryCredentials(basic_registry.username, basic_registry.password)
    with ContainerRegistry(basic_registry.host, creds) as dest:
        result = dest.copy_image(f"{open_registry.host}/{unique_repo}:1",
                                 f"{basic_registry.host}/{unique_repo}:1")
        assert result["referrers"] == 1
        frame = dest.referrers(unique_repo, "1")
        assert list(frame["digest"]) == [sbom["digest"]]
        assert list(frame["subject"]) == [digest]
        out = dest.pull_artifact(unique_repo, sbom["digest"], tmp_path / "back")
        assert Path(out["paths"][0]).read_bytes() == _sbom_file(tmp_path, "x.json").read_bytes()
        skipped = dest.copy_image(f"{open_registry.host}/{unique_repo}:1",
                                  f"{basic_registry.host}/{unique_repo}-bare:1", referrers=False)
        assert skipped["referrers"] == 0
        assert dest.referrers(f"{unique_repo}-bare", "1").empty


def test_attaching_to_a_missing_subject_is_refused(reg, open_registry, unique_repo, tmp_path):
    seed_image(open_registry, unique_repo, "1")
    with pytest.raises(NotFoundError, match="nothing can be attached"):
        reg.push_artifact(_sbom_file(tmp_path), unique_repo, subject="sha256:" + "0" * 64)


_RSS_SCRIPT = r"""
import os, resource, sys
from pathlib import Path
from registry_nb import ContainerRegistry
root = Path(sys.argv[2])
big = root / "big.bin"
with open(big, "wb") as f:          # sparse: 300 MB of zeros, no disk for holes
    f.truncate(300 * 1024 * 1024)
folder = root / "folder"
folder.mkdir()
for i in range(3):                  # 3 x 40 MB of random-ish data in a folder
    with open(folder / f"part{i}", "wb") as f:
        block = os.urandom(1024 * 1024)
        for _ in range(40):
            f.write(block)
reg = ContainerRegistry(sys.argv[1])
reg.client.ping()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reg.push_artifact([big, folder], sys.argv[3], "big")
reg.pull_artifact(sys.argv[3], "big", root / "out")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before // 1024, (after - before) // 1024)
"""


def test_large_artifact_streams_with_bounded_memory(open_registry, unique_repo, tmp_path):
    done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, open_registry.host,
                           str(tmp_path), unique_repo], capture_output=True, text=True,
                          timeout=300, check=True)
    before_mb, growth_mb = map(int, done.stdout.strip().splitlines()[-1].split())
    print(f"peak RSS before {before_mb} MiB, growth pushing+pulling 420 MB: {growth_mb} MiB")
    assert growth_mb < 100
    assert os.path.getsize(tmp_path / "out" / "big.bin") == 300 * 1024 * 1024


_ATTACH_SCRIPT = r"""
import sys
from pathlib import Path
from registry_nb import ContainerRegistry
host, repo, folder, prefix = sys.argv[1:5]
with ContainerRegistry(host) as reg:
    for i in range(4):
        path = Path(folder, f"{prefix}{i}.json")
        path.write_text('{"n": "%s%d"}' % (prefix, i))
        reg.push_artifact(path, repo, artifact_type="application/x.note", subject="1")
"""


def test_fallback_writers_in_separate_processes_lose_no_entry(open_registry, unique_repo,
                                                              tmp_path):
    """No in-process lock helps here: each writer re-reads after writing and merges again
    when another writer's index lacks its entry."""
    seed_image(open_registry, unique_repo, "1")
    procs = [subprocess.Popen([sys.executable, "-c", _ATTACH_SCRIPT, open_registry.host,
                               unique_repo, str(tmp_path), prefix]) for prefix in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with ContainerRegistry(open_registry.host) as reg:
        assert len(reg.referrers(unique_repo, "1")) == 8
