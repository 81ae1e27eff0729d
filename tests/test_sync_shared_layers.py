"""A sync of repositories that share a big base layer: the layer crosses the wire once.

The source is the shared open registry (fresh repository names); the destination is an
empty registry of the test's own (``docker-registry serve``) behind a FaultProxy, which
records every request (bytes PATCHed and PUT, mounts asked for) and plays a lost answer
to the first upload of the base layer. skopeo reads both sides back.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest
from faultproxy import FaultProxy, ProxyRequest
from helpers import RegistryService, skopeo_digest
from opsregistry import OwnRegistry

from registry_nb import ContainerRegistry
from registry_nb.remote.distribution import RegistryClient

pytestmark = pytest.mark.usefixtures("empty_docker_config")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REPOSITORIES = 4
BASE_SIZE = 6 * 1024 * 1024  # over 1 MiB: streamed in a PATCH; the own layers go in one PUT
OWN_SIZE = 256 * 1024


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(client: RegistryClient, name: str, layers: list[bytes]) -> int:
    """``name:v1``: ``layers`` and an own config; returns the config's size."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [_digest(b) for b in layers]},
        "config": {"Labels": {"repository": name}}}).encode()
    for blob in (*layers, config):
        client.upload_blob(name, blob, _digest(blob), len(blob))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": _digest(b), "size": len(b)}
                   for b in layers],
    }).encode()
    client.put_manifest(name, "v1", manifest, OCI_MANIFEST)
    return len(config)


def seed(registry: RegistryService, prefix: str) -> dict:
    """``REPOSITORIES`` repositories, tag ``v1`` each: the same random base layer, an own
    layer and an own config; returns the names, the base digest and the own blobs' bytes."""
    base = os.urandom(BASE_SIZE)
    names = [f"{prefix}-r{i}" for i in range(REPOSITORIES)]
    with RegistryClient.connect(registry.host) as client:
        own_bytes = sum(push(client, name, [base, os.urandom(OWN_SIZE)]) + OWN_SIZE
                        for name in names)
    return {"names": names, "base": _digest(base), "own_bytes": own_bytes}


def uploads(proxy: FaultProxy) -> list[ProxyRequest]:
    return [r for r in proxy.requests
            if r.method in ("PUT", "PATCH") and "/blobs/uploads/" in r.path]


def repository_of(request: ProxyRequest) -> str:
    return request.path.split("/v2/", 1)[1].split("/blobs/", 1)[0]


def base_commits(proxy: FaultProxy, base: str) -> list[str]:
    """Repositories into which an upload of ``base`` was closed (PUT ?digest=)."""
    hex_digest = base.split(":", 1)[1]  # paths carry the digest URL-encoded
    return [repository_of(r) for r in proxy.requests if r.method == "PUT"
            and "/blobs/uploads/" in r.path and hex_digest in r.path and r.status == 201]


def base_mounts(proxy: FaultProxy, base: str) -> list[str]:
    hex_digest = base.split(":", 1)[1]
    return [repository_of(r) for r in proxy.matching("POST", r"/blobs/uploads/\?mount=")
            if hex_digest in r.path and r.status == 201]


def same_as_source(source: RegistryService, destination: str, names: list[str]) -> None:
    for name in names:
        assert skopeo_digest(f"{destination}/{name}:v1") == \
            skopeo_digest(source.ref(name, "v1"), source.creds)


@pytest.fixture
def shared_base(open_registry: RegistryService, unique_repo: str) -> dict:
    return seed(open_registry, unique_repo)


@pytest.fixture
def mirror(tmp_path):
    with OwnRegistry(tmp_path) as registry, FaultProxy(registry.host) as proxy:
        yield proxy


def test_a_base_layer_shared_by_parallel_copies_is_sent_once_and_mounted(
    shared_base: dict, open_registry: RegistryService, mirror: FaultProxy,
) -> None:
    names, base = shared_base["names"], shared_base["base"]
    with ContainerRegistry(mirror.host) as reg:
        frame = reg.sync_repositories(open_registry.host, names, workers=4, referrers=False)
    assert list(frame.status) == ["copied"] * REPOSITORIES, frame.error.tolist()
    # the base layer's bytes went once, into one repository; the others mounted it
    [sent_to] = base_commits(mirror, base)
    assert sorted(base_mounts(mirror, base)) == sorted(n for n in names if n != sent_to)
    moved = BASE_SIZE + shared_base["own_bytes"]
    assert sum(r.request_bytes for r in uploads(mirror)) == moved
    assert sum(r.request_bytes for r in uploads(mirror) if r.method == "PATCH") == BASE_SIZE
    # the rows say so: bytes moved, and the blob mounted in the three others
    assert int(frame.bytes.sum()) == moved
    assert dict(zip(frame.repository, frame.mounted, strict=True)) == \
        {n: int(n != sent_to) for n in names}
    assert frame.loc[frame.repository == sent_to, "bytes"].iloc[0] > BASE_SIZE
    same_as_source(open_registry, mirror.host, names)


def test_a_failed_upload_of_the_shared_layer_is_sent_by_a_copy_that_waited(
    shared_base: dict, open_registry: RegistryService, mirror: FaultProxy,
) -> None:
    """The first PATCH of the base layer reaches the registry but its answer is lost
    (the proxy holds it for 1 s, then resets): another copy, waiting by then, sends
    the layer; the copy whose upload failed mounts it, and every tag is copied."""
    names, base = shared_base["names"], shared_base["base"]
    mirror.add_fault("PATCH", r"/blobs/uploads/", stall=1.0)
    with ContainerRegistry(mirror.host) as reg:
        frame = reg.sync_repositories(open_registry.host, names, workers=4, referrers=False)
    assert list(frame.status) == ["copied"] * REPOSITORIES, frame.error.tolist()
    [lost] = [repository_of(r) for r in mirror.requests if r.fault == "stall"]
    [sent_to] = base_commits(mirror, base)
    assert sent_to != lost
    assert sorted(base_mounts(mirror, base)) == sorted(n for n in names if n != sent_to)
    assert frame.loc[frame.repository == lost, "mounted"].iloc[0] == 1
    # the layer crossed twice: the lost PATCH and the one that landed
    assert sum(r.request_bytes for r in uploads(mirror) if r.method == "PATCH") == \
        2 * BASE_SIZE
    same_as_source(open_registry, mirror.host, names)


def test_a_cancel_stops_copies_waiting_for_a_shared_layer(
    shared_base: dict, open_registry: RegistryService, mirror: FaultProxy,
) -> None:
    """The base layer's upload hangs for 2 s; a cancel 0.5 s in ends the sync when that
    request gives up (the waiting copies stop at once), and a second run copies it all."""
    names = shared_base["names"]
    mirror.add_fault("PATCH", r"/blobs/uploads/", stall=2.0)
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    with ContainerRegistry(mirror.host) as reg:
        started = time.monotonic()
        timer.start()
        first = reg.sync_repositories(open_registry.host, names, workers=4, referrers=False,
                                      cancel=cancel)
        elapsed = time.monotonic() - started
        assert set(first.status) == {"failed"}
        assert first.error.str.startswith("OperationCancelled").all(), first.error.tolist()
        assert elapsed < 5, elapsed
        assert all(reg.client.head_manifest(n, "v1") is None for n in names)
        second = reg.sync_repositories(open_registry.host, names, workers=4, referrers=False)
    assert list(second.status) == ["copied"] * REPOSITORIES, second.error.tolist()
    same_as_source(open_registry, mirror.host, names)


@pytest.mark.timeout(60)
def test_copies_that_each_wait_for_the_others_layer_do_not_block(
    open_registry: RegistryService, unique_repo: str, mirror: FaultProxy,
) -> None:
    """Two images of the same two big layers in opposite order, one blob thread per
    copy (workers=2): each sends its first layer while the other sends the other one,
    then waits for the other's and mounts it (or, when one copy is far ahead, it sends
    both and the other mounts both)."""
    one, two = os.urandom(2 * 1024 * 1024), os.urandom(2 * 1024 * 1024)
    a, b = f"{unique_repo}-a", f"{unique_repo}-b"
    with RegistryClient.connect(open_registry.host) as client:
        push(client, a, [one, two])
        push(client, b, [two, one])
    with ContainerRegistry(mirror.host) as reg:
        frame = reg.sync_repositories(open_registry.host, [a, b], workers=2, referrers=False)
    assert list(frame.status) == ["copied", "copied"], frame.error.tolist()
    for layer in (one, two):
        assert len(base_commits(mirror, _digest(layer))) == 1
        assert len(base_mounts(mirror, _digest(layer))) == 1
    assert frame.mounted.sum() == 2
    same_as_source(open_registry, mirror.host, [a, b])
