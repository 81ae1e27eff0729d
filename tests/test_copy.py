"""Daemonless copies (registry_nb.copy, ContainerRegistry.copy_image) against the real registries.

Images are made by the test helpers and pushed with skopeo (the oracle), then
copied by registry_nb; what arrives is checked with skopeo and the registries'
own answers. A :class:`faultproxy.FaultProxy` in front of a registry records the
requests (to observe mounts) and cuts connections (to observe resumes).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import RegistryService, seed_image, skopeo_digest, skopeo_raw_manifest

from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.errors import (
    DigestMismatchError,
    ManifestNotFoundError,
    OperationCancelled,
    RegistryError,
)
from registry_nb.images.copy import copy_image, plan_copy
from registry_nb.images.image import ImageIndex, RegistryRepository, open_image
from registry_nb.oci import OCI_INDEX, Index, Platform
from registry_nb.progress import ProgressAggregator, ProgressEvent
from registry_nb.remote.distribution import RegistryClient

KIB = 1024
MIB = 1024 * KIB

pytestmark = pytest.mark.usefixtures("empty_docker_config")


# ------------------------------------------------------------------ fixtures


def write_docker_config(folder: Path, *registries: RegistryService) -> None:
    auths = {
        r.host: {"auth": base64.b64encode(f"{r.username}:{r.password}".encode()).decode()}
        for r in registries
    }
    (folder / "config.json").write_text(json.dumps({"auths": auths}))


def facade(registry: RegistryService | str) -> ContainerRegistry:
    if isinstance(registry, str):
        return ContainerRegistry(registry)
    creds = None
    if registry.username:
        creds = RegistryCredentials(username=registry.username, password=registry.password,
                                    registry_url=registry.host)
    return ContainerRegistry(registry.host, creds)


def random_files(count: int = 2, size: int = 32 * KIB) -> dict[str, bytes]:
    """Incompressible, unique content: every test gets blobs no other test has."""
    return {f"data-{i}.bin": os.urandom(size) for i in range(count)}


@pytest.fixture
def seeded(open_registry: RegistryService, unique_repo: str) -> tuple[str, str]:
    """A two-layer OCI image in the open registry: (repository, manifest digest)."""
    digest = seed_image(open_registry, unique_repo, "v1", files=random_files(), layers=2)
    return unique_repo, digest


@pytest.fixture
def proxy(open_registry: RegistryService) -> Iterator[FaultProxy]:
    with FaultProxy(open_registry.url) as p:
        yield p


def no_blob_bytes_uploaded(proxy: FaultProxy, repo: str) -> bool:
    uploads = proxy.matching(None, f"/v2/{repo}/blobs/uploads/")
    return all(r.method == "POST" and "mount=" in r.path for r in uploads) and \
        all(r.request_bytes == 0 for r in uploads)


# ------------------------------------------------------------ within a registry


def test_copy_within_a_registry_mounts_every_blob(seeded, proxy: FaultProxy) -> None:
    repo, digest = seeded
    events: list[ProgressEvent] = []
    with facade(proxy.host) as reg:
        result = reg.copy_image(f"{proxy.host}/{repo}:v1", f"{proxy.host}/{repo}-copy:v2",
                                progress=events.append)
    assert result["status"] == "success"
    assert result["digest"] == digest
    assert result["destination"] == f"{proxy.host}/{repo}-copy:v2"
    assert (result["blobs"], result["mounted_blobs"], result["copied_blobs"]) == (3, 3, 0)
    assert result["bytes_copied"] == 0
    # observed on the wire: three mounts answered 201, no blob bytes sent, no GET of a blob
    mounts = proxy.matching("POST", f"/v2/{repo}-copy/blobs/uploads/\\?mount=")
    assert len(mounts) == 3 and all(m.status == 201 for m in mounts)
    assert no_blob_bytes_uploaded(proxy, f"{repo}-copy")
    assert proxy.matching("GET", "/blobs/") == []
    assert skopeo_digest(f"{proxy.host}/{repo}-copy:v2") == digest
    # progress: one "Mounted from" per blob, ending with done at 100 %
    mounted = [e for e in events if e.status.startswith("Mounted from")]
    assert len(mounted) == 3 and all(e.completed for e in mounted)
    assert events[-1].phase == "done"
    aggregate = ProgressAggregator()
    for event in events:
        aggregate(event)
    assert aggregate.snapshot().fraction == 1.0


def test_copy_again_skips_existing_blobs(seeded, open_registry: RegistryService,
                                         proxy: FaultProxy) -> None:
    repo, digest = seeded
    with facade(proxy.host) as reg:
        reg.copy_image(f"{proxy.host}/{repo}:v1", f"{proxy.host}/{repo}:again")
    assert len(proxy.matching("HEAD", "/blobs/")) == 3
    assert proxy.matching("POST") == [] and proxy.matching("GET", "/blobs/") == []
    assert skopeo_digest(open_registry.ref(repo, "again")) == digest


# ------------------------------------------------------------ across registries


def test_copy_open_to_basic_with_the_facade_credentials(
    seeded, open_registry: RegistryService, basic_registry: RegistryService,
) -> None:
    repo, digest = seeded
    with facade(basic_registry) as reg:
        result = reg.copy_image(open_registry.ref(repo, "v1"), basic_registry.ref(repo, "v1"))
    assert (result["copied_blobs"], result["mounted_blobs"]) == (3, 0)
    assert result["bytes_copied"] == result["size_bytes"] > 64 * KIB
    assert skopeo_digest(basic_registry.ref(repo, "v1"), basic_registry.creds) == digest


def test_copy_basic_to_token_with_docker_config_credentials(
    seeded, open_registry: RegistryService, basic_registry: RegistryService,
    token_registry: RegistryService, empty_docker_config: Path,
) -> None:
    repo, digest = seeded
    with facade(basic_registry) as reg:
        reg.copy_image(open_registry.ref(repo, "v1"), basic_registry.ref(repo, "v1"))
    # the facade is the token registry's; the basic registry's password comes
    # from the docker config
    write_docker_config(empty_docker_config, basic_registry)
    with facade(token_registry) as reg:
        result = reg.copy_image(basic_registry.ref(repo, "v1"), token_registry.ref(repo, "t"))
    assert result["digest"] == digest and result["copied_blobs"] == 3
    assert skopeo_digest(token_registry.ref(repo, "t"), token_registry.creds) == digest
    # and the other way round: the facade is the source's, the token registry's
    # credentials come from the docker config
    write_docker_config(empty_docker_config, token_registry)
    with facade(basic_registry) as reg:
        result = reg.copy_image(token_registry.ref(repo, "t"), basic_registry.ref(repo, "back"))
    assert result["digest"] == digest
    assert skopeo_digest(basic_registry.ref(repo, "back"), basic_registry.creds) == digest


def test_copy_without_credentials_for_the_other_side_fails_cleanly(
    seeded, open_registry: RegistryService, basic_registry: RegistryService,
) -> None:
    repo, _ = seeded
    with facade(open_registry) as reg, pytest.raises(RegistryError) as info:
        reg.copy_image(open_registry.ref(repo, "v1"), basic_registry.ref(repo, "nocreds"))
    assert "credentials" in str(info.value).lower() or "auth" in str(info.value).lower()


def test_copy_to_a_digest_reference(seeded, open_registry: RegistryService) -> None:
    repo, digest = seeded
    with facade(open_registry) as reg:
        result = reg.copy_image(open_registry.ref(repo, "v1"),
                                f"{open_registry.host}/{repo}-pinned@{digest}")
        assert result["digest"] == digest
        assert reg.client.head_manifest(f"{repo}-pinned", digest) is not None
        wrong = "sha256:" + "0" * 64
        with pytest.raises(RegistryError, match="would write"):
            reg.copy_image(open_registry.ref(repo, "v1"),
                           f"{open_registry.host}/{repo}-pinned@{wrong}")


# ------------------------------------------------------------ resume and failure


def test_copy_resumes_a_dropped_blob_download(open_registry: RegistryService,
                                              unique_repo: str, proxy: FaultProxy) -> None:
    digest = seed_image(open_registry, unique_repo, "v1",
                        files={"big.bin": os.urandom(3 * MIB)})
    layer = json.loads(skopeo_raw_manifest(open_registry.ref(unique_repo, "v1")))["layers"][0]
    proxy.add_fault("GET", f"/blobs/{layer['digest']}", cut_response_after=1 * MIB, times=2)
    events: list[ProgressEvent] = []
    with facade(open_registry) as reg:
        # source through the proxy (another host: no mount, bytes stream through)
        result = reg.copy_image(f"{proxy.host}/{unique_repo}:v1",
                                open_registry.ref(unique_repo + "-resumed", "v1"),
                                progress=events.append)
    gets = proxy.matching("GET", f"/blobs/{layer['digest']}")
    assert [g.header("Range") for g in gets] == [None, "bytes=1048576-", "bytes=2097152-"]
    assert result["copied_blobs"] == 2 and result["digest"] == digest
    assert skopeo_digest(open_registry.ref(unique_repo + "-resumed", "v1")) == digest
    uploads = [e for e in events if e.phase == "upload" and e.layer == layer["digest"][7:19]]
    assert uploads[-1].current == layer["size"]


def test_copy_retries_a_blob_whose_upload_connection_dropped(
    open_registry: RegistryService, unique_repo: str, proxy: FaultProxy,
) -> None:
    digest = seed_image(open_registry, unique_repo, "v1",
                        files={"big.bin": os.urandom(3 * MIB)})
    proxy.add_fault("PATCH", "/blobs/uploads/", cut_request_after=MIB, forward_partial=True)
    with facade(open_registry) as reg:
        result = reg.copy_image(open_registry.ref(unique_repo, "v1"),
                                f"{proxy.host}/{unique_repo}-up:v1")
    assert result["digest"] == digest
    assert len(proxy.matching("PATCH", "/blobs/uploads/")) == 2
    assert skopeo_digest(open_registry.ref(unique_repo + "-up", "v1")) == digest


def corrupt(registry: RegistryService, digest: str, at: int = 100) -> None:
    path = registry.blob_path(digest)
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_source_blob_leaves_no_manifest(open_registry: RegistryService,
                                                basic_registry: RegistryService,
                                                unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "v1", files=random_files(3, 200 * KIB), layers=3)
    manifest = json.loads(skopeo_raw_manifest(open_registry.ref(unique_repo, "v1")))
    bad = manifest["layers"][1]["digest"]
    corrupt(open_registry, bad)
    events: list[ProgressEvent] = []
    with facade(basic_registry) as reg:
        with pytest.raises(DigestMismatchError) as info:
            reg.copy_image(open_registry.ref(unique_repo, "v1"),
                           basic_registry.ref(unique_repo, "v1"), progress=events.append)
        assert bad in str(info.value)
        assert reg.client.head_manifest(unique_repo, "v1") is None
        # the registry refused the corrupt upload: it holds no blob under that digest
        assert not reg.client.blob_exists(unique_repo, bad)
    assert events[-1].phase == "failed"


def test_cancel_stops_the_copy_and_tags_nothing(open_registry: RegistryService,
                                                basic_registry: RegistryService,
                                                unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "v1", files={"big.bin": os.urandom(4 * MIB)})
    cancel = threading.Event()
    events: list[ProgressEvent] = []

    def progress(event: ProgressEvent) -> None:
        events.append(event)
        if event.phase == "upload":
            cancel.set()

    with facade(basic_registry) as reg:
        with pytest.raises(OperationCancelled):
            reg.copy_image(open_registry.ref(unique_repo, "v1"),
                           basic_registry.ref(unique_repo, "v1"), progress=progress,
                           cancel=cancel)
        assert reg.client.head_manifest(unique_repo, "v1") is None
    assert events[-1].phase == "cancelled"


def test_workers_bound_the_parallel_blobs(open_registry: RegistryService, unique_repo: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seed_image(open_registry, unique_repo, "v1", files=random_files(6, 2 * MIB), layers=6)
    active, peak, lock = 0, 0, threading.Lock()
    original = RegistryRepository.write_blob

    def tracked(self, *args, **kwargs):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            return original(self, *args, **kwargs)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(RegistryRepository, "write_blob", tracked)
    with RegistryClient.connect(open_registry.host) as client, \
            FaultProxy(open_registry.url) as other:
        source = RegistryRepository(client, unique_repo)
        with RegistryClient.connect(other.host) as far:
            result = copy_image(source, RegistryRepository(far, unique_repo + "-w"),
                                reference="v1", tag="v1", workers=2)
    assert result.copied_blobs == 7
    assert 1 < peak <= 2


# ------------------------------------------------------------ multi-arch


@pytest.fixture
def multiarch(open_registry: RegistryService, unique_repo: str) -> tuple[str, Index, dict]:
    """An OCI index of linux/amd64 and linux/arm64/v8 images, built with Index.build."""
    digests = {}
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        overrides = {"architecture": arch, **({"variant": variant} if variant else {})}
        digests[arch] = seed_image(open_registry, unique_repo, arch, files=random_files(1),
                                   config_overrides=overrides)
    with RegistryClient.connect(open_registry.host) as client:
        entries = []
        for arch, variant in (("amd64", None), ("arm64", "v8")):
            manifest = client.get_manifest(unique_repo, digests[arch])
            entries.append(manifest.descriptor(Platform("linux", arch, variant)))
        index = Index.build(entries, OCI_INDEX)
        client.put_manifest(unique_repo, "multi", index.raw, index.media_type)
    return unique_repo, index, digests


def test_copy_multiarch_index_whole(multiarch, open_registry: RegistryService,
                                    basic_registry: RegistryService) -> None:
    repo, index, digests = multiarch
    with facade(basic_registry) as reg:
        result = reg.copy_image(open_registry.ref(repo, "multi"), basic_registry.ref(repo, "m"))
        assert result["digest"] == index.digest
        assert result["media_type"] == OCI_INDEX
        assert result["platforms"] == ["linux/amd64", "linux/arm64/v8"]
        assert result["blobs"] == 4  # two configs, two layers
        top = open_image(RegistryRepository(reg.client, repo), "m")
        assert isinstance(top, ImageIndex)
        assert top.image("linux/arm64").digest == digests["arm64"]
        assert top.image("linux/amd64").config.architecture == "amd64"
    assert skopeo_digest(basic_registry.ref(repo, "m"), basic_registry.creds) == index.digest


def test_copy_one_platform_of_an_index(multiarch, open_registry: RegistryService,
                                       basic_registry: RegistryService) -> None:
    repo, _, digests = multiarch
    with facade(basic_registry) as reg:
        result = reg.copy_image(open_registry.ref(repo, "multi"),
                                basic_registry.ref(repo, "arm"), platforms=["linux/arm64"])
        assert result["digest"] == digests["arm64"]
        assert result["platforms"] == ["linux/arm64/v8"] and result["blobs"] == 2
        # the amd64 image did not travel
        amd = json.loads(skopeo_raw_manifest(open_registry.ref(repo, "amd64")))
        assert not reg.client.blob_exists(repo, amd["layers"][0]["digest"])
    assert skopeo_digest(basic_registry.ref(repo, "arm"), basic_registry.creds) == \
        digests["arm64"]


def test_choosing_every_platform_rebuilds_the_same_index(multiarch,
                                                         open_registry: RegistryService) -> None:
    repo, index, _ = multiarch
    with RegistryClient.connect(open_registry.host) as client:
        store = RegistryRepository(client, repo)
        plan = plan_copy(store, "multi", platforms=["linux/arm64/v8", "linux/amd64"])
        assert isinstance(plan.top, Index)
        assert [str(e.platform) for e in plan.top.manifests] == ["linux/arm64/v8",
                                                                 "linux/amd64"]
        assert len(plan.children) == 2 and len(plan.blobs) == 4
        with pytest.raises(ManifestNotFoundError, match="available platforms"):
            plan_copy(store, "multi", platforms="linux/s390x")
        with pytest.raises(ManifestNotFoundError, match="single image"):
            plan_copy(store, "amd64", platforms="linux/arm64")
        assert plan_copy(store, "amd64", platforms="linux/amd64").platforms == ["linux/amd64"]
