"""Tests of registry_nb.distribution (RegistryClient) against the real registries.

Faults (dropped connections, corrupted bytes, error statuses, stalls, redirects,
hand-made answers) come from :class:`faultproxy.FaultProxy` in front of a real
registry; corruption at rest is made by overwriting a byte of the registry's
blob file.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from faultproxy import FaultProxy
from helpers import (
    RegistryService,
    gzip_bytes,
    make_oci_layout,
    make_tar,
    push_layout_with_skopeo,
    skopeo_digest,
    skopeo_raw_manifest,
)

import registry_nb.remote.chunks as chunks
import registry_nb.remote.distribution as dist
import registry_nb.remote.uploads as uploads
from registry_nb.errors import (
    AuthenticationError,
    BlobNotFoundError,
    DigestMismatchError,
    ImageNotFoundError,
    InvalidManifestError,
    ManifestNotFoundError,
    OperationCancelled,
    RegistryHTTPError,
    RegistryUnavailableError,
    UnsupportedMediaTypeError,
)
from registry_nb.oci import (
    DOCKER_SCHEMA1_SIGNED_MANIFEST,
    MAX_MANIFEST_BYTES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Manifest,
)
from registry_nb.remote import RegistryCredentials
from registry_nb.remote.distribution import RegistryClient

KIB = 1024


# ------------------------------------------------------------------ helpers


def connect(host: str, creds: RegistryCredentials | None = None, **options) -> RegistryClient:
    """A client that ignores the docker config of the machine."""
    return RegistryClient.connect(host, creds, use_docker_config=False, **options)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_blob(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, sha256(data)


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class TinyImage:
    """A one-layer OCI image made in memory (unique content per instance)."""

    def __init__(self, text: str | None = None) -> None:
        text = text or f"tiny {secrets.token_hex(8)}\n"
        self.tar = make_tar({"hello.txt": text.encode()})
        self.layer = gzip_bytes(self.tar)
        self.config = canonical({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(self.tar)]},
        })
        self.manifest = canonical({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(self.config),
                       "size": len(self.config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(self.layer),
                        "size": len(self.layer)}],
        })
        self.digest = sha256(self.manifest)

    def push(self, client: RegistryClient, repo: str, tag: str = "latest",
             mount_from: str | None = None) -> str:
        for blob in (self.config, self.layer):
            client.upload_blob(repo, blob, sha256(blob), mount_from=mount_from)
        return client.put_manifest(repo, tag, self.manifest, OCI_MANIFEST)


def paths(proxy: FaultProxy, method: str, pattern: str = "") -> list[str]:
    return [r.path for r in proxy.matching(method, pattern)]


def patch_ranges(proxy: FaultProxy, skip: int = 0) -> list[str | None]:
    """The Content-Range of each PATCH the proxy saw, after the first ``skip``."""
    return [p.header("Content-Range") for p in proxy.matching("PATCH")[skip:]]


# ----------------------------------------------------------------- fixtures


@pytest.fixture
def client(open_registry: RegistryService) -> Iterator[RegistryClient]:
    with connect(open_registry.host) as c:
        yield c


@pytest.fixture
def proxy(open_registry: RegistryService) -> Iterator[FaultProxy]:
    with FaultProxy(open_registry.url) as p:
        yield p


@pytest.fixture
def pclient(proxy: FaultProxy) -> Iterator[RegistryClient]:
    """A client talking to the open registry through the fault proxy."""
    with connect(proxy.host) as c:
        yield c


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """PATCH uploads for anything over 64 KiB; 100 KiB chunks where chunks are needed."""
    monkeypatch.setattr(uploads, "MONOLITHIC_LIMIT", 64 * KIB)
    monkeypatch.setattr(uploads, "UPLOAD_CHUNK", 100 * KIB)


@pytest.fixture
def seeded(open_registry: RegistryService, unique_repo: str, tmp_path: Path):
    """An OCI image pushed by skopeo: (repo, manifest digest, OciImage)."""
    layout = tmp_path / "layout"
    image = make_oci_layout(layout, {"a.bin": os.urandom(40 * KIB), "b.txt": b"hello\n"},
                            tag="v1", layers=2)
    push_layout_with_skopeo(layout, "v1", open_registry.ref(unique_repo, "v1"))
    return unique_repo, image.manifest_digest, image


def layer_bytes(image, index: int = 0) -> bytes:
    digest = image.layers[index].digest
    return (image.layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


# --------------------------------------------------------------------- ping


def test_ping_open(client: RegistryClient) -> None:
    info = client.ping()
    assert info["status"] == 200
    assert info["api_version"] == "registry/2.0"
    assert info["auth_scheme"] is None
    assert info["url"].endswith("/v2/")


def test_ping_basic_with_credentials(basic_registry: RegistryService) -> None:
    creds = RegistryCredentials(username=basic_registry.username,
                                password=basic_registry.password)
    with connect(basic_registry.host, creds) as c:
        info = c.ping()
    assert info["status"] == 200 and info["auth_scheme"] == "basic"


def test_ping_basic_without_or_with_wrong_credentials(basic_registry: RegistryService) -> None:
    with connect(basic_registry.host) as c, pytest.raises(AuthenticationError):
        c.ping()
    wrong = RegistryCredentials(username=basic_registry.username, password="not-it")
    with connect(basic_registry.host, wrong) as c, pytest.raises(AuthenticationError) as err:
        c.ping()
    assert "not-it" not in str(err.value)


def test_ping_token_with_credentials(token_registry: RegistryService) -> None:
    creds = RegistryCredentials(username="alice", password=token_registry.users["alice"])
    with connect(token_registry.host, creds) as c:
        info = c.ping()
    assert info["status"] == 200 and info["auth_scheme"] == "bearer"


# ------------------------------------------------------------------ catalog


@pytest.fixture
def many_repos(open_registry: RegistryService, client: RegistryClient) -> Iterator[list[str]]:
    """105 repositories holding the same tiny image (blobs mounted from the first)."""
    prefix = f"catalog-{secrets.token_hex(4)}"
    names = [f"{prefix}/r{i:03d}" for i in range(105)]
    image = TinyImage()
    try:
        for i, name in enumerate(names):
            digest = image.push(client, name, "v1", mount_from=names[0] if i else None)
            assert digest == image.digest
        yield names
    finally:
        shutil.rmtree(open_registry.storage / "docker/registry/v2/repositories" / prefix,
                      ignore_errors=True)


def test_catalog_pagination_over_100_repositories(
    open_registry: RegistryService, many_repos: list[str], proxy: FaultProxy,
    pclient: RegistryClient,
) -> None:
    # skopeo agrees with the digest the client computed for client-pushed images
    first = pclient.head_manifest(many_repos[0], "v1")
    assert first is not None
    assert skopeo_digest(open_registry.ref(many_repos[0], "v1")) == first.digest
    assert skopeo_digest(open_registry.ref(many_repos[-1], "v1")) == first.digest

    wanted = set(many_repos)
    for page_size in (None, 17):
        proxy.clear()
        names = list(pclient.catalog(page_size=page_size))
        counts = collections.Counter(names)
        assert all(counts[n] == 1 for n in many_repos), "every repository exactly once"
        assert len(names) == len(counts), "no repository twice"
        # distribution walks its storage folders, so "ops/x" comes before "ops-y" (the
        # catalog is sorted by path component, not as plain strings)
        assert names == sorted(names, key=lambda name: name.split("/"))
        assert wanted <= set(names)
        requested = paths(proxy, "GET", "/v2/_catalog")
        if page_size is None:
            assert requested[0] == "/v2/_catalog"  # the registry's default page (100)
            assert len(requested) >= 2
        else:
            assert requested[0] == "/v2/_catalog?n=17"
            assert len(requested) >= 105 // 17
        assert all("last=" in p for p in requested[1:]), "the Link header was followed"


def test_catalog_limit_and_page_size_cap(proxy: FaultProxy, pclient: RegistryClient,
                                         client: RegistryClient, unique_repo: str) -> None:
    TinyImage().push(client, unique_repo)
    assert len(list(pclient.catalog(page_size=2, limit=3))) == 3
    assert paths(proxy, "GET", "_catalog") == ["/v2/_catalog?n=2", paths(proxy, "GET")[1]]
    proxy.clear()
    assert len(list(pclient.catalog(page_size=5000, limit=1))) == 1
    assert paths(proxy, "GET", "_catalog") == ["/v2/_catalog?n=1000"]


# --------------------------------------------------------------------- tags


def test_tags_on_the_real_registry(client: RegistryClient, unique_repo: str) -> None:
    image = TinyImage()
    wanted = [f"t{i:02d}" for i in range(12)]
    for tag in wanted:
        image.push(client, unique_repo, tag)
    # distribution 2.8 ignores n on tag lists: every tag comes back in one page.
    assert sorted(client.tags(unique_repo, page_size=5)) == wanted
    assert sorted(client.tags(unique_repo)) == wanted
    assert len(client.tags(unique_repo, limit=4)) == 4
    with pytest.raises(ImageNotFoundError):
        client.tags(unique_repo + "-missing")


def test_tags_pagination_follows_link_verbatim(proxy: FaultProxy, pclient: RegistryClient,
                                               unique_repo: str) -> None:
    base = f"/v2/{unique_repo}/tags/list"
    cursor = "/v2/x/tags/list?cursor=b3BhcXVl%2F%3D%3D&n=3"  # opaque, even another path
    json_type = {"Content-Type": "application/json"}
    proxy.add_fault("GET", r"/tags/list\?n=3$", status=200, body=canonical(
        {"name": unique_repo, "tags": ["a", "b", "c"]}),
        headers={**json_type, "Link": f'<{base}?last=c&n=3>; rel="next"'})
    proxy.add_fault("GET", r"last=c&n=3$", status=200, body=canonical(
        {"name": unique_repo, "tags": ["d", "e", "f"]}),
        headers={**json_type, "Link": f'<{cursor}>; rel="next"'})
    proxy.add_fault("GET", r"cursor=", status=200, body=canonical(
        {"name": unique_repo, "tags": ["g"]}), headers=json_type)
    assert pclient.tags(unique_repo, page_size=3) == list("abcdefg")
    assert paths(proxy, "GET") == [f"{base}?n=3", f"{base}?last=c&n=3", cursor]


def test_tags_link_loop_is_refused(proxy: FaultProxy, pclient: RegistryClient) -> None:
    proxy.add_fault("GET", r"/tags/list", times=None, status=200,
                    body=canonical({"name": "x", "tags": ["a"]}),
                    headers={"Content-Type": "application/json",
                             "Link": '</v2/x/tags/list?last=a>; rel="next"'})
    with pytest.raises(RegistryHTTPError, match="round in circles"):
        pclient.tags("x")


# ---------------------------------------------------------------- manifests


def test_get_manifest_by_tag_and_digest(open_registry: RegistryService, seeded,
                                        client: RegistryClient) -> None:
    repo, digest, image = seeded
    assert skopeo_digest(open_registry.ref(repo, "v1")) == digest
    by_tag = client.get_manifest(repo, "v1")
    by_digest = client.get_manifest(repo, digest)
    assert isinstance(by_tag, Manifest)
    assert by_tag.digest == by_digest.digest == digest
    assert by_digest.raw == skopeo_raw_manifest(open_registry.ref(repo, digest))
    assert [layer.digest for layer in by_tag.layers] == [li.digest for li in image.layers]
    with pytest.raises(ManifestNotFoundError):
        client.get_manifest(repo, "nope")


def test_manifest_with_a_corrupted_byte_is_refused(seeded, proxy: FaultProxy,
                                                   pclient: RegistryClient) -> None:
    repo, digest, _ = seeded
    proxy.add_fault("GET", f"/manifests/{digest}", corrupt_at=40)
    with pytest.raises(DigestMismatchError) as err:
        pclient.get_manifest(repo, digest)
    assert err.value.expected == digest
    # by tag, the registry's Docker-Content-Digest no longer matches the body
    proxy.add_fault("GET", "/manifests/v1$", corrupt_at=-3)
    with pytest.raises(DigestMismatchError):
        pclient.get_manifest(repo, "v1")
    assert pclient.get_manifest(repo, digest).digest == digest  # faults are used up


def test_head_manifest(seeded, client: RegistryClient) -> None:
    repo, digest, image = seeded
    head = client.head_manifest(repo, "v1")
    assert head is not None
    assert head.digest == digest
    assert head.media_type == OCI_MANIFEST
    assert head.size == len(image.manifest_bytes)
    assert client.head_manifest(repo, digest) == head
    assert client.head_manifest(repo, "missing") is None
    assert client.head_manifest(repo, sha256(b"no such manifest")) is None


def test_put_and_delete_manifest(open_registry: RegistryService, client: RegistryClient,
                                 unique_repo: str) -> None:
    image = TinyImage()
    digest = image.push(client, unique_repo, "v1")
    assert digest == image.digest
    assert skopeo_digest(open_registry.ref(unique_repo, "v1")) == digest
    # by digest, and an index pointing at it
    assert client.put_manifest(unique_repo, digest, image.manifest, OCI_MANIFEST) == digest
    index = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(image.manifest),
         "platform": {"architecture": "amd64", "os": "linux"}}]})
    index_digest = client.put_manifest(unique_repo, "multi", index, OCI_INDEX)
    assert index_digest == skopeo_digest(open_registry.ref(unique_repo, "multi"))
    with pytest.raises(DigestMismatchError):
        client.put_manifest(unique_repo, sha256(b"other"), image.manifest, OCI_MANIFEST)
    client.delete_manifest(unique_repo, index_digest)
    assert client.head_manifest(unique_repo, "multi") is None
    with pytest.raises(ManifestNotFoundError):
        client.get_manifest(unique_repo, index_digest)
    assert client.head_manifest(unique_repo, "v1") is not None


def test_schema1_and_unknown_media_types(proxy: FaultProxy, pclient: RegistryClient,
                                         unique_repo: str) -> None:
    schema1 = canonical({
        "schemaVersion": 1, "name": unique_repo, "tag": "old", "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(b"layer")}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [{"header": {"alg": "ES256"}, "signature": "x", "protected": "y"}],
    })
    proxy.add_fault("GET", "/manifests/old$", status=200, body=schema1, headers={
        "Content-Type": DOCKER_SCHEMA1_SIGNED_MANIFEST, "Docker-Content-Digest": sha256(schema1)})
    with pytest.raises(UnsupportedMediaTypeError, match="schema 1"):
        pclient.get_manifest(unique_repo, "old")
    odd = canonical({"schemaVersion": 2, "mediaType": "application/vnd.example.thing.v1+json"})
    proxy.add_fault("GET", "/manifests/odd$", status=200, body=odd,
                    headers={"Content-Type": "application/vnd.example.thing.v1+json"})
    with pytest.raises(UnsupportedMediaTypeError, match="vnd.example.thing"):
        pclient.get_manifest(unique_repo, "odd")
    # nothing is sent for a push of either
    with pytest.raises(UnsupportedMediaTypeError, match="schema 1"):
        pclient.put_manifest(unique_repo, "old", schema1, DOCKER_SCHEMA1_SIGNED_MANIFEST)
    with pytest.raises(UnsupportedMediaTypeError):
        pclient.put_manifest(unique_repo, "odd", odd, "application/vnd.example.thing.v1+json")
    assert paths(proxy, "PUT") == []


def test_manifest_size_cap(proxy: FaultProxy, pclient: RegistryClient,
                           unique_repo: str) -> None:
    big = b'{"schemaVersion":2,"x":"' + b"a" * MAX_MANIFEST_BYTES + b'"}'
    proxy.add_fault("GET", "/manifests/big$", status=200, body=big,
                    headers={"Content-Type": OCI_MANIFEST})
    with pytest.raises(InvalidManifestError, match="limit"):
        pclient.get_manifest(unique_repo, "big")
    # no Content-Length: the read itself stops at the cap
    framed = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536])
                      for i in range(0, len(big), 65536)) + b"0\r\n\r\n"
    proxy.add_fault("GET", "/manifests/big$", status=200, body=framed,
                    headers={"Content-Type": OCI_MANIFEST, "Transfer-Encoding": "chunked"})
    with pytest.raises(InvalidManifestError, match="limit"):
        pclient.get_manifest(unique_repo, "big")
    with pytest.raises(InvalidManifestError, match="limit"):
        pclient.put_manifest(unique_repo, "big", big, OCI_MANIFEST)
    assert paths(proxy, "PUT") == []


# -------------------------------------------------------------------- blobs


def test_blob_get_streamed_and_verified(seeded, client: RegistryClient,
                                        tmp_path: Path) -> None:
    repo, _, image = seeded
    layer = layer_bytes(image)
    digest = image.layers[0].digest
    seen: list[tuple[int, int | None]] = []
    chunks = list(client.iter_blob(repo, digest, chunk_size=4096,
                                   progress=lambda d, t: seen.append((d, t))))
    assert b"".join(chunks) == layer and len(chunks) == -(-len(layer) // 4096)
    assert seen[-1] == (len(layer), len(layer))
    assert client.read_blob(repo, digest, size=len(layer)) == layer
    assert client.blob_size(repo, digest) == len(layer)
    assert client.blob_size(repo, sha256(b"absent")) is None
    out = tmp_path / "out" / "layer.tar.gz"
    out.parent.mkdir()
    assert client.fetch_blob(repo, digest, out) == len(layer)
    assert out.read_bytes() == layer and os.listdir(out.parent) == ["layer.tar.gz"]
    buf = io.BytesIO(b"keep")
    buf.seek(4)
    client.fetch_blob(repo, digest, buf)
    assert buf.getvalue() == b"keep" + layer
    with pytest.raises(DigestMismatchError, match="length"):
        client.read_blob(repo, digest, size=len(layer) + 1)
    with pytest.raises(BlobNotFoundError):
        client.read_blob(repo, sha256(b"absent"))
    with pytest.raises(InvalidManifestError, match="over"):
        client.read_blob(repo, digest, max_bytes=100)


def test_blob_corrupted_on_disk_is_refused(open_registry: RegistryService, seeded,
                                           client: RegistryClient, tmp_path: Path) -> None:
    repo, _, image = seeded
    digest = image.layers[0].digest
    path = open_registry.blob_path(digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DigestMismatchError) as err:
        client.fetch_blob(repo, digest, out_dir / "layer")
    assert err.value.expected == digest
    assert list(out_dir.iterdir()) == [], "no file, not even a partial one"
    buf = io.BytesIO(b"before")
    buf.seek(6)
    with pytest.raises(DigestMismatchError):
        client.fetch_blob(repo, digest, buf)
    assert buf.getvalue() == b"before"
    with pytest.raises(DigestMismatchError):
        client.read_blob(repo, digest)


def test_blob_download_resumes_after_dropped_connections(
    client: RegistryClient, proxy: FaultProxy, pclient: RegistryClient, unique_repo: str,
    tmp_path: Path,
) -> None:
    data, digest = random_blob(3 * 1024 * KIB)
    client.upload_blob(unique_repo, data, digest)
    proxy.add_fault("GET", "/blobs/sha256:", cut_response_after=1_000_000)
    proxy.add_fault("GET", "/blobs/sha256:", skip=1, cut_response_after=500_000)
    out = tmp_path / "blob"
    assert pclient.fetch_blob(unique_repo, digest, out) == len(data)
    assert out.read_bytes() == data
    gets = proxy.matching("GET", "/blobs/")
    assert [g.header("Range") for g in gets] == [None, "bytes=1000000-", "bytes=1500000-"]
    assert [g.status for g in gets] == [200, 206, 206]


def test_blob_download_resumes_after_a_stall(client: RegistryClient, proxy: FaultProxy,
                                             unique_repo: str) -> None:
    data, digest = random_blob(3 * dist.READ_CHUNK)
    client.upload_blob(unique_repo, data, digest)
    # silent for 3 s after 1.5 read chunks: the half chunk is lost with the timeout
    proxy.add_fault("GET", "/blobs/sha256:", stall=3.0, stall_after=dist.READ_CHUNK * 3 // 2)
    with connect(proxy.host, timeout=(5.0, 0.5)) as slow:
        assert slow.read_blob(unique_repo, digest) == data
    assert [g.header("Range") for g in proxy.matching("GET", "/blobs/")] == \
        [None, f"bytes={dist.READ_CHUNK}-"]


def test_blob_download_gives_up_after_repeated_drops(client: RegistryClient,
                                                     proxy: FaultProxy, pclient: RegistryClient,
                                                     unique_repo: str, tmp_path: Path) -> None:
    data, digest = random_blob(200 * KIB)
    client.upload_blob(unique_repo, data, digest)
    proxy.add_fault("GET", "/blobs/sha256:", skip=1, times=None, cut_response_after=0)
    proxy.add_fault("GET", "/blobs/sha256:", cut_response_after=1000)
    with pytest.raises(RegistryUnavailableError, match="dropped"):
        pclient.fetch_blob(unique_repo, digest, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
    assert len(proxy.matching("GET", "/blobs/")) == 2 + dist.RESUME_ATTEMPTS


def test_blob_redirect_keeps_credentials_home(basic_registry: RegistryService,
                                              open_registry: RegistryService,
                                              client: RegistryClient, unique_repo: str) -> None:
    """A storage redirect to another host is followed without the Authorization header."""
    data, digest = random_blob(100 * KIB)
    client.upload_blob(unique_repo, data, digest)  # what the "storage" host serves
    creds = RegistryCredentials(username=basic_registry.username,
                                password=basic_registry.password)
    with FaultProxy(basic_registry.url) as front, FaultProxy(open_registry.url) as storage:
        with connect(front.host, creds) as c:
            c.upload_blob(unique_repo, data, digest)
            front.add_fault("GET", "/blobs/sha256:", redirect_to=storage.url)
            assert c.read_blob(unique_repo, digest) == data
        assert front.matching("GET", "/blobs/")[-1].status == 307
        assert front.matching("GET", "/blobs/")[-1].header("Authorization")
        hops = storage.matching("GET", "/blobs/")
        assert len(hops) == 1 and hops[0].header("Authorization") is None


def test_blob_get_retries_a_503(client: RegistryClient, proxy: FaultProxy,
                                pclient: RegistryClient, unique_repo: str) -> None:
    data, digest = random_blob(10 * KIB)
    client.upload_blob(unique_repo, data, digest)
    proxy.add_fault("GET", "/blobs/sha256:", status=503, headers={"Retry-After": "0"})
    proxy.add_fault("GET", "/blobs/sha256:", status=429)
    assert pclient.read_blob(unique_repo, digest) == data
    assert [g.status for g in proxy.matching("GET", "/blobs/")] == [503, 429, 200]
    # a 500 to a read is tried again too (distribution answers one while another client
    # commits the same blob); one that stays 500 ends in the registry's own error
    proxy.clear()
    proxy.add_fault("GET", "/blobs/sha256:", status=500)
    assert pclient.read_blob(unique_repo, digest) == data
    assert [g.status for g in proxy.matching("GET", "/blobs/")] == [500, 200]
    proxy.add_fault("GET", "/blobs/sha256:", status=500, times=None, body=canonical(
        {"errors": [{"code": "UNKNOWN", "message": "disk on fire"}]}))
    with pytest.raises(RegistryHTTPError, match="disk on fire") as err:
        pclient.read_blob(unique_repo, digest)
    assert err.value.status == 500 and err.value.code == "UNKNOWN"


def test_manifest_get_retried_after_a_stall_before_headers(seeded, proxy: FaultProxy) -> None:
    repo, digest, _ = seeded
    proxy.add_fault("GET", "/manifests/v1$", stall=3.0)
    with connect(proxy.host, timeout=(5.0, 0.5)) as slow:
        assert slow.get_manifest(repo, "v1").digest == digest
    assert [r.fault for r in proxy.matching("GET", "/manifests/")] == ["stall", None]


def test_read_blob_range_gives_the_gzip_isize(seeded, client: RegistryClient) -> None:
    repo, _, image = seeded
    for index in range(2):
        layer = layer_bytes(image, index)
        digest = image.layers[index].digest
        isize = int.from_bytes(client.read_blob_range(repo, digest, -4), "little")
        assert isize == len(gzip.decompress(layer)) % 2**32
    assert client.read_blob_range(repo, digest, 0, 1) == b"\x1f\x8b"
    assert client.read_blob_range(repo, digest, 10) == layer[10:]
    with pytest.raises(ValueError):
        client.read_blob_range(repo, digest, 5, 2)


# ------------------------------------------------------------------ uploads


def test_monolithic_upload(proxy: FaultProxy, pclient: RegistryClient, client: RegistryClient,
                           unique_repo: str) -> None:
    data, digest = random_blob(300 * KIB)
    seen: list[tuple[int, int | None]] = []
    assert pclient.upload_blob(unique_repo, data, digest, progress=lambda d, t: seen.append((d, t)))
    assert [r.method for r in proxy.requests] == ["HEAD", "POST", "PUT"]
    assert proxy.matching("PUT")[0].request_bytes == len(data)
    assert seen[-1] == (len(data), len(data))
    assert client.read_blob(unique_repo, digest) == data
    # already there: one HEAD, nothing moves
    proxy.clear()
    assert pclient.upload_blob(unique_repo, data, digest) is False
    assert [r.method for r in proxy.requests] == ["HEAD"]
    # a small seekable file goes in one PUT too, from its current position
    other, other_digest = random_blob(50 * KIB)
    source = io.BytesIO(b"skip me" + other)
    source.seek(7)
    proxy.clear()
    assert pclient.upload_blob(unique_repo, source, other_digest)
    assert [r.method for r in proxy.requests] == ["HEAD", "POST", "PUT"]
    assert client.read_blob(unique_repo, other_digest) == other


@pytest.mark.parametrize("partial", [False, True], ids=["unseen", "registry-saw-part"])
def test_monolithic_put_dropped_is_retried(partial: bool, proxy: FaultProxy,
                                           pclient: RegistryClient, client: RegistryClient,
                                           unique_repo: str) -> None:
    data, digest = random_blob(200 * KIB)
    proxy.add_fault("PUT", "/blobs/uploads/", cut_request_after=50 * KIB,
                    forward_partial=partial)
    assert pclient.upload_blob(unique_repo, data, digest)
    assert client.read_blob(unique_repo, digest) == data
    # the same session is retried when the registry saw nothing; otherwise it is
    # gone (distribution cancels it) and a new one starts
    assert len(proxy.matching("POST")) == (2 if partial else 1)


def test_a_file_over_the_monolithic_limit_goes_in_one_patch(
        small_chunks, monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy,
        pclient: RegistryClient, client: RegistryClient, unique_repo: str,
        tmp_path: Path) -> None:
    # three round trips whatever the size (as skopeo): with 8 MiB chunks a 100 MB
    # layer waited for 12 answers, which a registry 20 ms away made slower than skopeo
    monkeypatch.setattr(chunks, "BODY_PIECE", 64 * KIB)
    data, digest = random_blob(350 * KIB)
    seen: list[tuple[int, int | None]] = []
    assert pclient.upload_blob(unique_repo, data, digest, progress=lambda d, t: seen.append((d, t)))
    assert [r.method for r in proxy.requests] == ["HEAD", "POST", "PATCH", "PUT"]
    patch = proxy.matching("PATCH")[0]
    assert patch.header("Content-Range") == f"0-{len(data) - 1}"
    assert patch.header("Content-Length") == str(len(data))  # sized, not chunked encoding
    assert patch.request_bytes == len(data) and patch.status == 202
    assert proxy.matching("PUT")[0].request_bytes == 0
    # progress as the pieces go, not once per request
    assert [d for d, _ in seen] == [*range(64 * KIB, len(data), 64 * KIB), len(data), len(data)]
    assert client.read_blob(unique_repo, digest) == data
    # a registry known to cap PATCH bodies (a 416 taught it, as GHCR's) gets chunks
    pclient.uploads.habits.max_chunk = 100 * KIB
    other, other_digest = random_blob(250 * KIB)
    (tmp_path / "blob").write_bytes(other)
    proxy.clear()
    with open(tmp_path / "blob", "rb") as f:
        assert pclient.upload_blob(unique_repo, f, other_digest)
    assert patch_ranges(proxy) == ["0-102399", "102400-204799", "204800-255999"]
    assert client.read_blob(unique_repo, other_digest) == other


def test_concurrent_uploads_of_one_blob_send_it_once(small_chunks, proxy: FaultProxy,
                                                     open_registry: RegistryService,
                                                     client: RegistryClient,
                                                     unique_repo: str) -> None:
    # distribution rewrites a repository's blob link on every commit, so a second
    # upload of a blob being committed can make another client's manifest PUT fail;
    # uploads of one blob to one repository in one process go once, the others wait
    data, digest = random_blob(350 * KIB)
    owner_sending, waiters_polled = threading.Event(), threading.Event()
    polls: collections.Counter[int] = collections.Counter()
    moved: dict[int, bool] = {}

    def owner_progress(done: int, total: int | None) -> None:
        owner_sending.set()
        assert waiters_polled.wait(10), "the other uploads did not wait"

    def waiter_progress(number: int) -> Callable[[int, int | None], None]:
        def report(done: int, total: int | None) -> None:
            if done == 0:
                polls[number] += 1
                if len(polls) == 3:
                    waiters_polled.set()
        return report

    def upload(number: int) -> None:
        # separate clients (sessions), as separate facades would have
        with connect(proxy.host) as own:
            progress = owner_progress if number == 0 else waiter_progress(number)
            moved[number] = own.upload_blob(unique_repo, data, digest, skip_existing=False,
                                            progress=progress)

    first = threading.Thread(target=upload, args=(0,))
    first.start()
    assert owner_sending.wait(10)
    others = [threading.Thread(target=upload, args=(n,)) for n in (1, 2, 3)]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(30)
    assert moved == {0: True, 1: False, 2: False, 3: False}
    assert len(proxy.matching("POST", "/blobs/uploads/")) == 1, "sent once"
    assert client.read_blob(unique_repo, digest) == data
    # once it is done, a new upload sends again (nothing is remembered past the upload)
    with connect(proxy.host) as own:
        assert own.upload_blob(unique_repo, data, digest, skip_existing=False)
    assert len(proxy.matching("POST", "/blobs/uploads/")) == 2


def test_a_manifest_naming_a_missing_blob_is_sent_twice_then_refused(
        proxy: FaultProxy, pclient: RegistryClient, unique_repo: str) -> None:
    image = TinyImage()
    pclient.upload_blob(unique_repo, image.config, sha256(image.config))  # no layer
    with pytest.raises(RegistryHTTPError, match="MANIFEST_BLOB_UNKNOWN") as info:
        pclient.put_manifest(unique_repo, "v1", image.manifest, OCI_MANIFEST)
    assert info.value.status == 400
    assert len(proxy.matching("PUT", "/manifests/v1")) == dist.MANIFEST_PUT_ATTEMPTS == 2


def test_streamed_upload_from_an_iterable(proxy: FaultProxy, pclient: RegistryClient,
                                          client: RegistryClient, unique_repo: str) -> None:
    data, digest = random_blob(300 * KIB)
    pieces = (data[i:i + 70 * KIB] for i in range(0, len(data), 70 * KIB))
    assert pclient.upload_blob(unique_repo, pieces, digest, size=len(data))
    assert [r.method for r in proxy.requests] == ["HEAD", "POST", "PATCH", "PUT"]
    assert proxy.matching("PATCH")[0].request_bytes == len(data)
    assert client.read_blob(unique_repo, digest) == data


def test_a_refused_whole_patch_goes_in_chunks_of_the_min_length(
        small_chunks, proxy: FaultProxy, pclient: RegistryClient, client: RegistryClient,
        unique_repo: str) -> None:
    opened = requests.post(f"{proxy.url}/v2/{unique_repo}/blobs/uploads/", timeout=10)
    assert opened.status_code == 202
    proxy.add_fault("POST", "/blobs/uploads/$", status=202, headers={
        "Location": opened.headers["Location"], "OCI-Chunk-Min-Length": str(300 * KIB)})
    # a body limit in front of the registry (nginx's client_max_body_size) names no size
    proxy.add_fault("PATCH", "/blobs/uploads/", status=413)
    data, digest = random_blob(800 * KIB)
    assert pclient.upload_blob(unique_repo, data, digest)
    patches = proxy.matching("PATCH")
    assert [p.request_bytes for p in patches] == [800 * KIB, 300 * KIB, 300 * KIB, 200 * KIB]
    assert [p.status for p in patches] == [413, 202, 202, 202]
    assert pclient.uploads.habits.max_chunk == 300 * KIB  # the next blob goes so at once
    assert client.read_blob(unique_repo, digest) == data


@pytest.mark.parametrize("kept", [True, False], ids=["registry-kept-part", "unseen"])
def test_a_file_patch_cut_midway_resumes_from_the_registry_range(
    kept: bool, small_chunks, proxy: FaultProxy, pclient: RegistryClient,
    client: RegistryClient, unique_repo: str,
) -> None:
    data, digest = random_blob(450 * KIB)
    cut = 200 * KIB
    # kept: a registry that keeps what a cut PATCH delivered (zot writes the body as it
    # comes), played by the proxy; else the connection dies before the registry saw any
    proxy.add_fault("PATCH", "/blobs/uploads/", cut_request_after=cut, keep_partial=kept)
    assert pclient.upload_blob(unique_repo, data, digest)
    assert [r.method for r in proxy.requests][:4] == ["HEAD", "POST", "PATCH", "GET"]
    assert proxy.matching("GET", "/blobs/uploads/")[0].status == 204
    # the rest goes from the registry's Range, in chunks (each confirmed)
    held, chunk = (cut if kept else 0), 100 * KIB
    assert patch_ranges(proxy, skip=1) == [
        f"{start}-{min(start + chunk, len(data)) - 1}"
        for start in range(held, len(data), chunk)]
    assert proxy.requests[-1].method == "PUT"
    sent = sum(r.request_bytes for r in proxy.requests)
    assert sent <= 2 * len(data) + 100 * KIB  # the budget: twice the blob and a chunk
    assert client.read_blob(unique_repo, digest) == data


def test_early_resets_cost_only_the_bytes_that_went(proxy: FaultProxy, pclient: RegistryClient,
                                                    client: RegistryClient,
                                                    unique_repo: str) -> None:
    # a blob may cost twice its size plus a chunk (40 MiB here): counting each cut
    # try in full (16 MiB, then 8 MiB chunks) would stop the fifth PATCH
    data, digest = random_blob(16 * 1024 * KIB)
    proxy.add_fault("PATCH", "/blobs/uploads/", times=3, cut_request_after=64 * KIB)
    assert pclient.upload_blob(unique_repo, data, digest)
    assert [p.fault for p in proxy.matching("PATCH")] == ["cut_request_after"] * 3 + [None, None]
    chunk = uploads.UPLOAD_CHUNK
    assert patch_ranges(proxy) == [
        f"0-{len(data) - 1}", *[f"0-{chunk - 1}"] * 3, f"{chunk}-{len(data) - 1}"]
    assert client.read_blob(unique_repo, digest) == data


def test_resets_every_time_give_up_within_the_budget(small_chunks, proxy: FaultProxy,
                                                     pclient: RegistryClient,
                                                     client: RegistryClient,
                                                     unique_repo: str) -> None:
    data, digest = random_blob(450 * KIB)
    proxy.add_fault("PATCH", "/blobs/uploads/", times=None, cut_request_after=400 * KIB)
    with pytest.raises(RegistryUnavailableError, match="dropped 4 times in a row at byte 0"):
        pclient.upload_blob(unique_repo, data, digest)
    # the whole file once, then chunks: a drop costs a chunk, not the rest of the blob
    assert patch_ranges(proxy) == [f"0-{len(data) - 1}", *["0-102399"] * 3]
    assert sum(r.request_bytes for r in proxy.requests) <= 2 * len(data) + 100 * KIB
    assert not client.blob_exists(unique_repo, digest)


def test_a_stop_from_progress_abandons_the_patch_between_pieces(
        small_chunks, monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy,
        pclient: RegistryClient, client: RegistryClient, unique_repo: str) -> None:
    monkeypatch.setattr(chunks, "BODY_PIECE", 64 * KIB)
    data, digest = random_blob(350 * KIB)

    def progress(done: int, total: int | None) -> None:
        if done >= 128 * KIB:
            raise OperationCancelled("stopped by the test")

    with pytest.raises(OperationCancelled):
        pclient.upload_blob(unique_repo, data, digest, progress=progress)
    methods = [r.method for r in proxy.requests]
    # the proxy logs an exchange when it ends: the cut PATCH may end after the DELETE
    assert methods[:2] == ["HEAD", "POST"]
    assert sorted(methods[2:]) == ["DELETE", "PATCH"]
    assert proxy.matching("PATCH")[0].request_bytes == 128 * KIB  # two pieces, no more
    assert not client.blob_exists(unique_repo, digest)


def test_interrupted_upload_restarts_when_the_registry_dropped_the_session(
    small_chunks, proxy: FaultProxy, pclient: RegistryClient, client: RegistryClient,
    unique_repo: str,
) -> None:
    """A PATCH cut halfway: the client asks the registry where the upload stands.

    distribution 2.8 usually cancels such an upload (the status GET answers 404 and
    the client starts a new one), but when the cut lands between its reads it keeps
    the session (204 with a Range) and the client resumes; which one happens is the
    registry's timing, and both must end with the blob stored intact.
    """
    data, digest = random_blob(350 * KIB)
    proxy.add_fault("PATCH", "/blobs/uploads/", cut_request_after=30 * KIB,
                    forward_partial=True)
    assert pclient.upload_blob(unique_repo, data, digest)
    status = proxy.matching("GET", "/blobs/uploads/")[0].status
    assert status in (204, 404)
    if status == 404:  # the registry dropped the session: a second upload was opened
        assert len(proxy.matching("POST")) == 2
    assert client.read_blob(unique_repo, digest) == data


def test_file_upload_survives_a_503(small_chunks, proxy: FaultProxy,
                                    pclient: RegistryClient, client: RegistryClient,
                                    unique_repo: str) -> None:
    data, digest = random_blob(250 * KIB)
    proxy.add_fault("PATCH", "/blobs/uploads/", status=503)
    assert pclient.upload_blob(unique_repo, data, digest)
    assert [p.status for p in proxy.matching("PATCH")] == [503, 202, 202, 202]
    assert client.read_blob(unique_repo, digest) == data


def test_cross_repository_mount(proxy: FaultProxy, pclient: RegistryClient,
                                client: RegistryClient, unique_repo: str) -> None:
    data, digest = random_blob(64 * KIB)
    source = unique_repo + "-src"
    client.upload_blob(source, data, digest)
    assert pclient.upload_blob(unique_repo, data, digest, mount_from=source) is False
    posts = proxy.matching("POST")
    assert len(posts) == 1 and "mount=" in posts[0].path and posts[0].status == 201
    assert proxy.matching("PUT") == []
    assert client.read_blob(unique_repo, digest) == data
    # the source lacks the blob: 202, then a regular upload into the opened session
    other, other_digest = random_blob(64 * KIB)
    proxy.clear()
    assert pclient.upload_blob(unique_repo, other, other_digest, mount_from=source) is True
    assert [(r.method, r.status) for r in proxy.requests] == [
        ("HEAD", 404), ("POST", 202), ("PUT", 201)]
    assert client.read_blob(unique_repo, other_digest) == other
    assert not client.blob_exists(source, other_digest)
    # the bare call
    third, third_digest = random_blob(KIB)
    location = client.mount_blob(unique_repo + "-3", third_digest, source)
    assert location is not None and "/blobs/uploads/" in location
    assert client.mount_blob(unique_repo + "-3", digest, source) is None


@pytest.mark.parametrize("size", [10 * KIB, 250 * KIB], ids=["monolithic", "chunked"])
def test_upload_of_wrong_content_is_refused(small_chunks, size: int, client: RegistryClient,
                                            unique_repo: str) -> None:
    data, _ = random_blob(size)
    claimed = sha256(data + b"!")
    with pytest.raises(DigestMismatchError) as err:
        client.upload_blob(unique_repo, data, claimed)
    assert err.value.expected == claimed
    assert not client.blob_exists(unique_repo, claimed)
    assert not client.blob_exists(unique_repo, sha256(data))


# -------------------------------------------------------------------- token


def test_token_scopes_alice_pushes_reader_pulls(token_registry: RegistryService,
                                                unique_repo: str) -> None:
    alice = RegistryCredentials(username="alice", password=token_registry.users["alice"])
    reader = RegistryCredentials(username="reader", password=token_registry.users["reader"])
    image = TinyImage()
    with connect(token_registry.host, alice) as c:
        digest = image.push(c, unique_repo, "v1")
        assert c.get_manifest(unique_repo, "v1").digest == digest
        assert c.tags(unique_repo) == ["v1"]
        assert unique_repo in set(c.catalog())
    assert skopeo_digest(token_registry.ref(unique_repo, "v1"), token_registry.creds) == digest
    with connect(token_registry.host, reader) as r:
        assert r.get_manifest(unique_repo, digest).digest == digest
        assert r.read_blob(unique_repo, sha256(image.layer)) == image.layer
        data, blob_digest = random_blob(KIB)
        with pytest.raises(AuthenticationError) as err:
            r.upload_blob(unique_repo, data, blob_digest)
        message = str(err.value)
        assert "push" in message and unique_repo in message
        assert token_registry.users["reader"] not in message
        with pytest.raises(AuthenticationError, match="push"):
            r.put_manifest(unique_repo, "v2", image.manifest, OCI_MANIFEST)
        with pytest.raises(AuthenticationError):
            r.upload_blob(unique_repo, image.layer, sha256(image.layer), skip_existing=False,
                          mount_from=unique_repo + "-other")
