"""Every facade operation through every registry mode of the test proxy.

The registries users meet (Docker Hub, GHCR, Quay, ECR, ECR Public, Artifact Registry,
ACR, GitLab, Harbor, Artifactory, Zot, Nexus) cannot run here, so each is played by
:class:`registryproxy.RegistryProxy` in front of a real distribution registry, as
``/work/shared/docs/REGISTRIES.md`` describes it (behaviours in ``registrymodes.py``).
``distribution`` is the proxy passing everything through.

Two private ``docker-registry serve`` instances (started here, so the catalog holds
only this module's repositories): one with token auth (the shared token service), one
with Basic auth (the shared htpasswd). Seeded with skopeo and plain HTTP (not with
registry_nb): ``seed/app:v1`` (two layers), ``seed/multi:v1`` (an OCI index, two
platforms) and ``seed/zz-many`` (120 tags pushed in shuffled order). The shared open
registry holds the big image that is copied in.

Each test is one operation for one mode; where today's code fails a case is marked
``xfail(strict=True)`` with the bug (see :data:`KNOWN`). Upload figures (bytes the client
sent per mode) go to ``registry_modes.json`` in the pytest base temp folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    RegistryService,
    make_oci_layout,
    skopeo,
)
from modes_access import BearerAuth
from modes_traffic import HubRateLimit
from registrymodes import MODES
from registryproxy import MIB, RegistryProxy, Reply, Upstream

import registry_nb.remote.retry as retry_module
from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.errors import (
    AuthenticationError,
    BlobUploadError,
    ImageNotFoundError,
    ManifestNotFoundError,
    NotFoundError,
    RegistryError,
    RegistryHTTPError,
)
from registry_nb.images.layout import OCILayout

MODE_NAMES = list(MODES)
BEARER_MODES = [m for m in MODE_NAMES if MODES[m]().upstream == "token" and m != "distribution"]
CATALOG_REFUSED = {"dockerhub": AuthenticationError, "gitlab": AuthenticationError,
                   "harbor": AuthenticationError, "ghcr": RegistryHTTPError}
MANY_TAGS = [f"t{i:03d}" for i in range(120)]
BIG = 12 * MIB  # a PATCH upload (over the 8 MiB monolithic limit)
MID = 6 * MIB  # a monolithic upload (over Hub's 5 MiB cap)
CHUNK = 8 * MIB
START_TIMEOUT = 20.0

#: (operation, mode) -> the bug today's code has there. Each is xfail(strict=True).
KNOWN: dict[tuple[str, str], str] = {}


def modes(op: str, only: list[str] | None = None) -> list[Any]:
    """The modes for one operation, with their xfail marks."""
    out = []
    for mode in only or MODE_NAMES:
        reason = KNOWN.get((op, mode))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(mode, marks=marks, id=mode))
    return out


# ------------------------------------------------------------------ registries


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class OwnRegistry:
    upstream: Upstream
    process: subprocess.Popen[bytes]
    username: str
    password: str

    def session(self, repository: str) -> requests.Session:
        """A plain requests session allowed to push and pull ``repository``."""
        session = requests.Session()
        session.trust_env = False
        if self.upstream.auth == "basic":
            session.auth = (self.username, self.password)
            return session
        reply = session.get(self.upstream.token_realm, auth=(self.username, self.password),
                            params={"service": self.upstream.token_service,
                                    "scope": f"repository:{repository}:pull,push,delete"},
                            timeout=10)
        session.headers["Authorization"] = "Bearer " + reply.json()["token"]
        return session

    def digest(self, repository: str, reference: str) -> str | None:
        """What the registry itself serves for ``repository:reference`` (None: absent)."""
        reply = self.session(repository).head(
            f"{self.upstream.url}/v2/{repository}/manifests/{reference}",
            headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}, timeout=10)
        return reply.headers.get("Docker-Content-Digest") if reply.status_code == 200 else None

    def has_blob(self, repository: str, digest: str) -> bool:
        reply = self.session(repository).head(
            f"{self.upstream.url}/v2/{repository}/blobs/{digest}", timeout=10)
        return reply.status_code == 200


def _start_registry(folder: Path, auth: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    config = {
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")},
                    "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        "auth": auth,
    }
    (folder / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = open(folder / "registry.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited:\n{(folder / 'registry.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"docker-registry did not listen on {port} in {START_TIMEOUT} s")


@pytest.fixture(scope="module")
def own(services_info: dict, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[dict[str, OwnRegistry]]:
    """A token-auth and a Basic-auth registry of this module's own (stopped after)."""
    token, basic = services_info["token"], services_info["basic"]
    basic_auth = json.loads(Path(basic["config"]).read_text())["auth"]
    started: dict[str, OwnRegistry] = {}
    try:
        folder = tmp_path_factory.mktemp("own-token")
        process, url = _start_registry(folder, {"token": {
            "realm": token["realm"], "service": token["service"], "issuer": token["issuer"],
            "rootcertbundle": token["rootcertbundle"], "autoredirect": False}})
        started["token"] = OwnRegistry(
            Upstream(url, "token", folder / "data", token["realm"], token["service"],
                     "alice", token["users"]["alice"]),
            process, "alice", token["users"]["alice"])
        folder = tmp_path_factory.mktemp("own-basic")
        process, url = _start_registry(folder, basic_auth)
        started["basic"] = OwnRegistry(Upstream(url, "basic", folder / "data"), process,
                                       basic["username"], basic["password"])
        yield started
    finally:
        for registry in started.values():
            registry.process.terminate()
            try:
                registry.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                registry.process.kill()


# ------------------------------------------------------------------ seeds


@dataclass
class Seeds:
    app: str  # digest of seed/app:v1
    app_layers: list[str]
    app_layout: Path
    multi: str  # digest of seed/multi:v1 (an index)
    big_layout: Path  # an OCI layout: tag v1 = a 12 MiB, a 6 MiB and a small layer
    big_digest: str
    big_size: int  # its blobs' bytes
    big_blob: Path  # a 12 MiB file and its digest (upload_blob)
    big_blob_digest: str
    big_source: str  # the big image in the shared open registry (copy_in)


def _index_layout(folder: Path) -> str:
    """An OCI layout whose tag v1 is an index of a linux/amd64 and a linux/arm64 image."""
    entries = []
    for arch in ("amd64", "arm64"):
        made = make_oci_layout(folder, {f"{arch}.txt": f"built for {arch}\n".encode()},
                               tag=arch, config_overrides={"architecture": arch})
        entries.append({"mediaType": OCI_MANIFEST, "digest": made.manifest_digest,
                        "size": len(made.manifest_bytes),
                        "platform": {"os": "linux", "architecture": arch}})
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                     sort_keys=True, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    (folder / "blobs/sha256" / digest[7:]).write_bytes(raw)
    (folder / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_INDEX, "digest": digest, "size": len(raw),
             "annotations": {REF_NAME: "v1"}}]}))
    return digest


def _push(layout: Path, ref: str, creds: str | None, *, all_images: bool = False) -> None:
    args = ["copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
    if all_images:
        args.append("--all")
    if creds:
        args += ["--dest-creds", creds]
    skopeo(*args, f"oci:{layout}:v1", f"docker://{ref}")


@pytest.fixture(scope="module")
def seeds(own: dict[str, OwnRegistry], open_registry: RegistryService,
          tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    work = tmp_path_factory.mktemp("seeds")
    rng = random.Random(13)
    app = make_oci_layout(work / "app", {"a.txt": b"app a\n" * 100, "b.bin": os.urandom(3000)},
                          tag="v1", layers=2,
                          config_overrides={"config": {"Labels": {"mode": "test"}}})
    multi = _index_layout(work / "multi")
    big = make_oci_layout(work / "big", {"big.bin": os.urandom(BIG), "mid.bin": os.urandom(MID),
                                         "small.txt": b"small\n"}, tag="v1", layers=3)
    blob = work / "blob.bin"
    blob.write_bytes(os.urandom(BIG))
    for registry in own.values():
        host = registry.upstream.url.split("//")[1]
        creds = f"{registry.username}:{registry.password}"
        _push(app.layout, f"{host}/seed/app:v1", creds)
        _push(work / "multi", f"{host}/seed/multi:v1", creds, all_images=True)
        _push(app.layout, f"{host}/seed/zz-many:t000", creds)
        session = registry.session("seed/zz-many")
        for tag in rng.sample(MANY_TAGS[1:], len(MANY_TAGS) - 1):
            reply = session.put(f"{registry.upstream.url}/v2/seed/zz-many/manifests/{tag}",
                                data=app.manifest_bytes, headers={"Content-Type": OCI_MANIFEST},
                                timeout=10)
            assert reply.status_code == 201, reply.text
    source = f"test/modes-big-{secrets.token_hex(3)}"
    _push(big.layout, f"{open_registry.host}/{source}:v1", None)
    return Seeds(app.manifest_digest, [layer.digest for layer in app.layers], app.layout, multi,
                 big.layout, big.manifest_digest, big.size, blob,
                 "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest(),
                 f"{open_registry.host}/{source}:v1")


# ------------------------------------------------------------------ proxies


@pytest.fixture(scope="module")
def proxies(own: dict[str, OwnRegistry]) -> Iterator[dict[str, RegistryProxy]]:
    started: dict[str, RegistryProxy] = {}
    for name in MODE_NAMES:
        mode = MODES[name]()
        started[name] = RegistryProxy(mode, own[mode.upstream].upstream,
                                      upload_tripwire=96 * MIB).start()
    yield started
    for proxy in started.values():
        proxy.stop()


@dataclass
class Rig:
    mode: str
    proxy: RegistryProxy
    registry: OwnRegistry  # the real registry behind the proxy
    seeds: Seeds
    workdir: Path

    def credentials(self, **override: Any) -> RegistryCredentials:
        fields = {"username": self.registry.username, "password": self.registry.password,
                  "registry_url": self.proxy.host, **override}
        return RegistryCredentials(**fields)

    def facade(self, credentials: RegistryCredentials | None = None) -> ContainerRegistry:
        return ContainerRegistry(self.proxy.host, credentials or self.credentials(),
                                 max_workers=8)

    def fresh(self, prefix: str) -> str:
        return f"test/{prefix}-{self.mode}-{secrets.token_hex(3)}"


FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    out = tmp_path_factory.getbasetemp() / "registry_modes.json"
    out.write_text(json.dumps(FIGURES, indent=2, sort_keys=True))


@pytest.fixture
def rig(request: pytest.FixtureRequest, proxies: dict[str, RegistryProxy],
        own: dict[str, OwnRegistry], seeds: Seeds, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    mode = request.param if hasattr(request, "param") else request.node.callspec.params["mode"]
    proxy = proxies[mode]
    proxy.reset()
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setattr(retry_module, "BACKOFF", 0.02)
    yield Rig(mode, proxy, own[proxy.mode.upstream], seeds, tmp_path)


def _record(rig: Rig, key: str, value: Any) -> None:
    FIGURES.setdefault(rig.mode, {})[key] = value


def _bounded_upload(rig: Rig, repository: str, size: int, key: str) -> None:
    """The client sent at most twice the bytes plus one chunk, and no request was refused
    by the proxy's tripwire."""
    sent = rig.proxy.sent_bytes("PATCH|PUT", f"/v2/{repository}/blobs/uploads/")
    _record(rig, key, {"bytes": size, "sent": sent,
                       "requests": len(rig.proxy.requests("PATCH|PUT",
                                                          f"/v2/{repository}/blobs/uploads/"))})
    assert sent <= 2 * size + CHUNK, f"sent {sent} bytes for {size}"


# ------------------------------------------------------------------ the operations


@pytest.mark.parametrize("mode", modes("ping"))
def test_ping(rig: Rig, mode: str) -> None:
    """``GET /v2/`` with credentials: the challenge of each mode is understood."""
    with rig.facade() as reg:
        answer = reg.client.ping()
    assert answer["status"] == 200
    assert answer["auth_scheme"] == ("bearer" if rig.proxy.mode.upstream == "token" else "basic")


@pytest.mark.parametrize("mode", modes("catalog"))
def test_catalog(rig: Rig, mode: str) -> None:
    """``list_registry_images()`` and ``registry_images_frame()`` over the catalog: every
    seeded repository with all its tags, or (registries without a catalog for these
    credentials) a typed error saying to pass a repository."""
    with rig.facade() as reg:
        if mode in CATALOG_REFUSED:
            with pytest.raises(CATALOG_REFUSED[mode], match="catalog") as info:
                reg.list_registry_images(limit=None)
            assert "Pass a repository" in (info.value.hint or "")
            return
        rows = reg.list_registry_images(limit=None)
        frame = reg.registry_images_frame(limit=30)
    tags: dict[str, set[str]] = {}
    for row in rows:
        tags.setdefault(row["name"], set()).add(row["tag"])
    assert tags["seed/app"] == {"v1"} and tags["seed/multi"] == {"v1"}
    assert tags["seed/zz-many"] == set(MANY_TAGS)
    described = frame[frame["repository"] == "seed/app"]
    assert list(described["tag"].dropna()) == ["v1"]
    assert list(described["digest"].dropna()) == [rig.seeds.app]


@pytest.mark.parametrize("mode", modes("tags"))
def test_tags(rig: Rig, mode: str) -> None:
    """One repository's 120 tags, through the mode's pagination, none lost or invented."""
    with rig.facade() as reg:
        rows = reg.list_registry_images("seed/zz-many", limit=None)
    assert [r["tag"] for r in rows] == MANY_TAGS


@pytest.mark.parametrize("mode", modes("frame"))
def test_frame(rig: Rig, mode: str) -> None:
    """``registry_images_frame(repo)``: the row of each real tag is described; anything
    the registry listed that is not a tag is reported in ``error``, never fatal."""
    with rig.facade() as reg:
        frame = reg.registry_images_frame("seed/app")
    real = frame[frame["tag"].notna()]
    assert list(real["tag"]) == ["v1"]
    assert list(real["digest"]) == [rig.seeds.app]
    assert real["error"].isna().all()
    junk = frame[frame["tag"].isna()]
    if mode in ("artifactory", "nexus"):
        assert len(junk) == 1 and "not a tag" in junk["error"].iloc[0]
    else:
        assert junk.empty


@pytest.mark.parametrize("mode", modes("describe"))
def test_describe(rig: Rig, mode: str) -> None:
    """``describe_image`` of an image and of an OCI index (each mode's Accept rules)."""
    with rig.facade() as reg:
        image = reg.describe_image("seed/app", "v1")
        index = reg.describe_image("seed/multi", "v1", platform="linux/arm64")
    assert image.digest == rig.seeds.app and image.layer_count == 2
    assert image.labels == {"mode": "test"}
    assert index.digest == rig.seeds.multi
    assert index.platforms == ["linux/amd64", "linux/arm64"] and index.architecture == "arm64"


@pytest.mark.parametrize("mode", modes("layers"))
def test_layers(rig: Rig, mode: str) -> None:
    with rig.facade() as reg:
        frame = reg.layers_frame("seed/app", "v1")
    assert list(frame["digest"]) == rig.seeds.app_layers


@pytest.mark.parametrize("mode", modes("not_found"))
def test_not_found(rig: Rig, mode: str) -> None:
    """A missing tag and a missing repository map to the right typed errors, whatever
    shape the registry's error body has."""
    with rig.facade() as reg:
        with pytest.raises(ManifestNotFoundError):
            reg.describe_image("seed/app", "no-such-tag")
        with pytest.raises(ImageNotFoundError):
            reg.list_registry_images("seed/no-such-repo")


@pytest.mark.parametrize("mode", modes("lost_page", ["ghcr", "quay"]))
def test_a_next_page_that_is_gone(rig: Rig, mode: str) -> None:
    """A next page that answers 404 is an error, never a silently short list: the named
    repository raises, and in the catalog listing it becomes a row with ``error``."""
    gone = lambda: Reply.errors(404, "NAME_UNKNOWN", "repository name not known to registry")  # noqa: E731
    with rig.facade() as reg:
        assert len(reg.list_registry_images("seed/zz-many", limit=None)) == len(MANY_TAGS)
        rig.proxy.inject("/v2/seed/zz-many/tags/list", gone, skip=1)  # page 1 passes
        with pytest.raises(RegistryHTTPError, match="next page") as info:
            reg.list_registry_images("seed/zz-many", limit=None)
        assert not isinstance(info.value, NotFoundError)
        if mode in CATALOG_REFUSED:
            return
        rig.proxy.inject("/v2/seed/zz-many/tags/list", gone, skip=1)
        rows = [r for r in reg.list_registry_images(limit=None) if r["name"] == "seed/zz-many"]
    assert len(rows) == 1 and rows[0]["tag"] is None and "next page" in rows[0]["error"]


@pytest.mark.parametrize("mode", modes("copy_in"))
def test_copy_in(rig: Rig, mode: str) -> None:
    """``copy_image`` from another registry into the mode (the big image: blobs stream
    from the source into the mode's upload rules)."""
    repository = rig.fresh("copy-in")
    with rig.facade() as reg:
        result = reg.copy_image(rig.seeds.big_source, f"{rig.proxy.host}/{repository}:v1")
    assert result["digest"] == rig.seeds.big_digest
    assert rig.registry.digest(repository, "v1") == rig.seeds.big_digest
    _bounded_upload(rig, repository, rig.seeds.big_size, "copy_in")


@pytest.mark.parametrize("mode", modes("copy_out"))
def test_copy_out(rig: Rig, mode: str, open_registry: RegistryService) -> None:
    """``copy_image`` from the mode to another registry; blobs come through the mode's
    redirects (a CDN that refuses Authorization)."""
    repository = rig.fresh("copy-out")
    with rig.facade() as reg:
        result = reg.copy_image(f"{rig.proxy.host}/seed/app:v1",
                                f"{open_registry.host}/{repository}:v1")
    assert result["digest"] == rig.seeds.app
    _no_credentials_at_the_cdn(rig)


def _no_credentials_at_the_cdn(rig: Rig) -> None:
    cdn = [s for s in rig.proxy.log if s.server == "cdn"]
    if any(type(b).__name__ == "BlobRedirect" for b in rig.proxy.mode.behaviours):
        assert cdn, "the mode redirects blob GETs, so the CDN must have served them"
    assert all(s.status in (200, 206) for s in cdn), [s.status for s in cdn]


@pytest.mark.parametrize("mode", modes("save"))
def test_save(rig: Rig, mode: str) -> None:
    """``save_image`` to an OCI layout: digests kept, blobs verified."""
    with rig.facade() as reg:
        result = reg.save_image("seed/app", "v1", rig.workdir / "saved")
    assert result["digest"] == rig.seeds.app
    assert OCILayout(rig.workdir / "saved").resolve("v1").digest == rig.seeds.app
    _no_credentials_at_the_cdn(rig)


@pytest.mark.parametrize("mode", modes("load"))
def test_load(rig: Rig, mode: str) -> None:
    """``load_image`` of a layout with a 12 MiB layer (one PATCH), a 6 MiB layer
    (monolithic) and a small one, within a bound on the bytes sent."""
    repository = rig.fresh("load")
    with rig.facade() as reg:
        result = reg.load_image(rig.seeds.big_layout, repository, "v1")
    assert result["digest"] == rig.seeds.big_digest
    assert rig.registry.digest(repository, "v1") == rig.seeds.big_digest
    _bounded_upload(rig, repository, rig.seeds.big_size, "load")


@pytest.mark.parametrize("mode", modes("upload_blob"))
def test_upload_blob(rig: Rig, mode: str) -> None:
    """One 12 MiB blob from a file: stored intact, at most 2x its size + a chunk sent."""
    repository = rig.fresh("blob")
    with rig.facade() as reg, open(rig.seeds.big_blob, "rb") as source:
        assert reg.client.upload_blob(repository, source, rig.seeds.big_blob_digest)
    assert rig.registry.has_blob(repository, rig.seeds.big_blob_digest)
    _bounded_upload(rig, repository, BIG, "upload_12MiB")
    patches = rig.proxy.requests("PATCH", f"/v2/{repository}/blobs/uploads/")
    taken = [p.sent for p in patches if p.status < 400]
    if mode == "ghcr":  # the whole-file PATCH refused, then chunks under the cap it named
        assert [(p.status, p.sent) for p in patches][0] == (416, BIG)
        assert max(taken) <= 4 * MIB and sum(taken) == BIG
    else:  # a file goes in one PATCH (ECR's 201, GAR's 204, zot's 10 MiB minimum)
        assert taken == [BIG]
    if mode == "gar":  # 204 answers, each Location used once
        assert {p.status for p in patches} == {204}
    if mode == "ecr":  # 201 answers
        assert {p.status for p in patches} == {201}


@pytest.mark.parametrize("mode", modes("upload_stuck", ["distribution", "ecr"]))
def test_an_upload_that_never_advances_stops_at_the_bound(rig: Rig, mode: str) -> None:
    """A registry that takes every PATCH but never holds more than a byte: the upload
    stops with a typed error before sending twice the blob plus a chunk."""
    def stuck() -> Reply:
        return Reply.of(202, Location="/v2/test/stuck/blobs/uploads/stuck", Range="0-0")

    rig.proxy.inject(r"/blobs/uploads/.+", stuck, times=1000)
    repository = rig.fresh("stuck")
    with rig.facade() as reg, open(rig.seeds.big_blob, "rb") as source, \
            pytest.raises(BlobUploadError) as info:
        reg.client.upload_blob(repository, source, rig.seeds.big_blob_digest)
    assert rig.seeds.big_blob_digest in str(info.value) and info.value.hint
    _record(rig, "stuck_upload_error", str(info.value))
    assert rig.proxy.sent_bytes("PATCH|PUT", "/blobs/uploads/") <= 2 * BIG + CHUNK


@pytest.mark.parametrize("mode", modes("from_directory"))
def test_from_directory(rig: Rig, mode: str) -> None:
    """``image_from_directory`` on a base image of the mode (base layers mounted)."""
    folder = rig.workdir / "files"
    folder.mkdir()
    (folder / "hello.txt").write_text("hello from a folder\n")
    repository = rig.fresh("dir")
    with rig.facade() as reg:
        result = reg.image_from_directory(folder, repository, "v1",
                                          base=f"{rig.proxy.host}/seed/app:v1", created=0)
        image = reg.describe_image(repository, "v1")
    assert image.digest == result["digest"] == rig.registry.digest(repository, "v1")
    assert image.layer_count == 3


@pytest.mark.parametrize("mode", modes("mount"))
def test_mount_from_unknown_repository(rig: Rig, mode: str) -> None:
    """A mount from a repository the registry does not know falls back to an upload."""
    data = os.urandom(5000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repository = rig.fresh("mount")
    with rig.facade() as reg:
        assert reg.client.upload_blob(repository, data, digest, mount_from="nowhere/missing")
    assert rig.registry.has_blob(repository, digest)


@pytest.mark.parametrize("mode", modes("delete"))
def test_delete(rig: Rig, mode: str) -> None:
    """``client.delete_manifest`` of a tagged image: deleted where the registry allows
    it; elsewhere a typed error and the image stays."""
    repository = rig.fresh("delete")
    host = rig.registry.upstream.url.split("//")[1]
    _push(rig.seeds.app_layout, f"{host}/{repository}:v1",
          f"{rig.registry.username}:{rig.registry.password}")
    with rig.facade() as reg:
        if mode in ("dockerhub", "ghcr"):
            with pytest.raises(RegistryError):
                reg.client.delete_manifest(repository, rig.seeds.app)
            assert rig.registry.digest(repository, "v1") == rig.seeds.app
            return
        reg.client.delete_manifest(repository, rig.seeds.app)
    assert rig.registry.digest(repository, rig.seeds.app) is None


def _token_scopes(rig: Rig, realm_path: str) -> list[str]:
    """The scopes of every token request the proxy's token endpoint answered, in order."""
    return [" ".join(v for k, v in parse_qsl(seen.query) if k == "scope")
            for seen in rig.proxy.requests("GET", f"^{realm_path}(\\?|$)")]


@pytest.mark.parametrize("mode", modes("delete_scope", ["quay"]))
def test_delete_scope_is_learned_from_the_token_service(rig: Rig, mode: str) -> None:
    """Quay grants no token for a scope naming ``delete`` and takes ``push`` for deletes
    (played by the proxy): the first delete asks ``delete``, is refused, and is sent
    again under ``pull,push``; later deletes of the same client ask ``pull,push`` at
    once. A tag delete (``delete_tag``) goes the same way and leaves the other tag."""
    first, second = rig.fresh("scope"), rig.fresh("scope")
    host = rig.registry.upstream.url.split("//")[1]
    creds = f"{rig.registry.username}:{rig.registry.password}"
    for repository in (first, second):
        _push(rig.seeds.app_layout, f"{host}/{repository}:v1", creds)
    _push(rig.seeds.app_layout, f"{host}/{second}:v2", creds)
    with rig.facade() as reg:
        reg.client.delete_manifest(first, rig.seeds.app)
        deletes = _token_scopes(rig, "/v2/auth")
        assert [s for s in deletes if "delete" in s] == [f"repository:{first}:delete"]
        assert f"repository:{first}:pull,push" in deletes
        rig.proxy.reset()
        result = reg.delete_tag(f"{second}:v1")
    assert result["method"] == "tag"
    assert not any("delete" in s for s in _token_scopes(rig, "/v2/auth"))
    assert rig.registry.digest(first, rig.seeds.app) is None
    assert rig.registry.digest(second, "v1") is None
    assert rig.registry.digest(second, "v2") == rig.seeds.app


@pytest.mark.parametrize("mode", modes("auth_refused"))
def test_auth_refused(rig: Rig, mode: str) -> None:
    """Wrong password and no credentials: typed AuthenticationErrors, secrets unshown."""
    wrong = rig.credentials(password="not-the-password")
    with rig.facade(wrong) as reg, pytest.raises(AuthenticationError) as info:
        reg.list_registry_images("seed/app")
    assert "not-the-password" not in str(info.value)
    empty = RegistryCredentials(registry_url=rig.proxy.host)
    with rig.facade(empty) as reg, pytest.raises(AuthenticationError):
        reg.list_registry_images("seed/app")


AUTH_VARIANTS = ["acr", "ghcr", "gar", "ecr-public", "quay", "zot", "nexus", "artifactory",
                 "ecr"]


@pytest.mark.parametrize("mode", modes("auth_variant", AUTH_VARIANTS))
def test_auth_variant(rig: Rig, mode: str) -> None:
    """Each registry's own way in: ACR's identity token (null-GUID user + refresh token,
    POSTed, ``access_token``-only answers), GHCR's raw ``Bearer base64(PAT)``, GAR's
    identity token beside a password (its token URL refuses POST: fall back to GET),
    token answers with only ``token`` (ECR Public) and the Basic variants (``BASIC``
    upper-case, ECR)."""
    if mode in ("acr", "gar"):
        refresh = requests.get(rig.registry.upstream.token_realm, timeout=10,
                               auth=(rig.registry.username, rig.registry.password),
                               params={"service": rig.registry.upstream.token_service,
                                       "offline_token": "true"}).json()["refresh_token"]
        if mode == "acr":
            creds = RegistryCredentials(username="00000000-0000-0000-0000-000000000000",
                                        identity_token=refresh, registry_url=rig.proxy.host)
        else:  # a docker config entry with a password and an identity token
            creds = rig.credentials(identity_token=refresh)
    elif mode == "ghcr":
        pat = base64.b64encode(b"ghp_" + secrets.token_hex(18).encode()).decode()
        rig.proxy.behaviour(BearerAuth).pat = pat
        creds = RegistryCredentials(token=pat, registry_url=rig.proxy.host)
    else:
        creds = rig.credentials()
    with rig.facade(creds) as reg:
        assert reg.client.ping()["status"] == 200
        assert reg.describe_image("seed/app", "v1").digest == rig.seeds.app
    if mode in ("acr", "gar"):
        token_requests = rig.proxy.requests(None, rig.proxy.behaviour(BearerAuth).realm_path)
        assert token_requests and token_requests[-1].status == 200


@pytest.mark.parametrize("mode", modes("expiry", [*BEARER_MODES, "ecr"]))
def test_expiry(rig: Rig, mode: str) -> None:
    """Tokens expire: the next call fetches a new one (one token request), whether the
    registry challenges again or answers a bare 401; ECR's expired password gets a
    hint to log in again, naming the registry."""
    with rig.facade() as reg:
        reg.list_registry_images("seed/app")
        if mode == "ecr":
            rig.proxy.expire_credentials()
            with pytest.raises(AuthenticationError) as info:
                reg.list_registry_images("seed/app")
            text = f"{info.value.message} {info.value.hint}"
            assert "log in again" in text.lower() and rig.proxy.host in text
            return
        realm = rig.proxy.behaviour(BearerAuth).realm_path
        before = len(rig.proxy.requests(None, realm))
        rig.proxy.expire_tokens()
        assert [r["tag"] for r in reg.list_registry_images("seed/app")] == ["v1"]
        assert len(rig.proxy.requests(None, realm)) == before + 1


@pytest.mark.parametrize("mode", modes("rate_limited"))
def test_rate_limited(rig: Rig, mode: str) -> None:
    """One 429 in the mode's own shape on a manifest GET: absorbed with a short wait, or
    (Hub's HAP429 asks for 60 s) a typed error that says to wait, at once."""
    rig.proxy.throttle(r"/manifests/")
    started = time.monotonic()
    with rig.facade() as reg:
        if mode == "dockerhub":
            with pytest.raises(RegistryHTTPError) as info:
                reg.describe_image("seed/app", "v1")
            assert info.value.status == 429 and "wait" in (info.value.hint or "")
        else:
            assert reg.describe_image("seed/app", "v1").digest == rig.seeds.app
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("mode", modes("hub_quota", ["dockerhub"]))
def test_hub_pull_quota(rig: Rig, mode: str) -> None:
    """Docker Hub's quota headers: GETs count, HEADs do not; at zero, a typed 429."""
    quota = rig.proxy.behaviour(HubRateLimit)
    with rig.facade() as reg:
        reg.describe_image("seed/app", "v1")
        used = quota.limit - quota.remaining
        assert used >= 1
        assert reg.client.head_manifest("seed/app", "v1") is not None
        assert quota.limit - quota.remaining == used  # HEAD is free
        seen = rig.proxy.requests("GET", "/manifests/")[-1].reply_headers
        assert seen["ratelimit-limit"] == "100;w=21600"
        quota.remaining = 0
        with pytest.raises(RegistryHTTPError) as info:
            reg.describe_image("seed/multi", "v1")
    assert info.value.status == 429 and "pull rate limit" in str(info.value)


def test_modes_cover_registries_md() -> None:
    """Every registry of REGISTRIES.md has a mode (and distribution passes through)."""
    page = Path(__file__).resolve().parents[1].parent / "shared" / "docs" / "REGISTRIES.md"
    if not page.exists():
        pytest.fail(f"{page} is missing: the tests read the shared folder beside the repo")
    text = page.read_text()
    for title in ("Docker Hub", "GHCR", "Quay", "ECR", "ECR Public", "GAR", "ACR", "GitLab",
                  "Harbor", "Artifactory", "Zot", "Nexus"):
        assert f"**{title}" in text
    assert len(MODES) == 13


# ------------------------------------------------------------------ the proxy itself

CHALLENGES = {
    "distribution": 'Bearer realm="{token_realm}",service="{token_service}"',
    "dockerhub": 'Bearer realm="{url}/token",service="registry.docker.io"',
    "ghcr": 'Bearer realm="{url}/token",service="ghcr.io",scope="repository:user/image:pull"',
    "quay": 'Bearer realm="{url}/v2/auth",service="quay.io"',
    "ecr": 'Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",'
           'service="ecr.amazonaws.com"',
    "ecr-public": 'Bearer realm="{url}/token/",service="public.ecr.aws"',
    "gar": 'Bearer realm="{url}/v2/token"',
    "acr": 'Bearer realm="{url}/oauth2/token",service="registrynb.azurecr.io"',
    "gitlab": 'Bearer realm="{url}/jwt/auth",service="container_registry"',
    "harbor": 'Bearer realm="{url}/service/token",service="harbor-registry"',
    "artifactory": 'Basic realm="Artifactory Realm"',
    "zot": 'Bearer realm="{url}/auth/token",service="zot"',
    "nexus": 'BASIC realm="Sonatype Nexus Repository Manager"',
}
TOKEN_FIELDS = {"ghcr": {"token"}, "ecr-public": {"token"}, "acr": {"access_token"}}


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_proxy_plays_the_challenge(rig: Rig, mode: str) -> None:
    """The proxy's own check: ``/v2/`` challenges as REGISTRIES.md gives them, and the
    token endpoint answers with the registry's fields (``access_token`` only, …)."""
    plain = requests.Session()
    plain.trust_env = False
    upstream = rig.registry.upstream
    expected = CHALLENGES[mode].format(url=rig.proxy.url, token_realm=upstream.token_realm,
                                       token_service=upstream.token_service)
    assert plain.get(rig.proxy.url + "/v2/", timeout=10).headers["WWW-Authenticate"] == expected
    if mode == "gar":  # unquoted service on repository challenges
        header = plain.get(rig.proxy.url + "/v2/seed/app/tags/list",
                           timeout=10).headers["WWW-Authenticate"]
        assert ",service=gcr.io,scope=repository:seed/app:pull" in header
    if mode in BEARER_MODES:
        realm = rig.proxy.behaviour(BearerAuth).realm
        answer = plain.get(realm, params={"scope": "repository:seed/app:pull"}, timeout=10,
                           auth=(rig.registry.username, rig.registry.password)).json()
        fields = TOKEN_FIELDS.get(mode, {"token", "access_token", "expires_in", "issued_at"})
        assert set(answer) == fields


PAGE_LINKS = {
    "quay": r'^</v2/seed/zz-many/tags/list\?next_page=gAAAAA[^&>]*%3D&n=50>; rel="next"$',
    "ecr": r'^</v2/seed/zz-many/tags/list\?last=[A-Za-z0-9%]{100,}>; rel="next"$',
    "ghcr": r'^</v2/seed/zz-many/tags/list\?last=t\d{3}&n=100>; rel="next"$',
    "acr": r'^</v2/seed/zz-many/tags/list\?last=t099&n=100&orderby=>; rel="next"$',
    "artifactory": r'^</v2/zz-many/tags/list\?last=t048&n=50>; rel="next"$',
}


@pytest.mark.parametrize("mode", [*PAGE_LINKS, "nexus"])
def test_proxy_plays_tag_pages(rig: Rig, mode: str) -> None:
    """The proxy's own check: the first tag page of each pagination style."""
    session = rig.registry.session("seed/zz-many")
    reply = session.get(rig.proxy.url + "/v2/seed/zz-many/tags/list", timeout=10)
    assert reply.status_code == 200
    tags = json.loads(reply.content)["tags"]
    if mode == "nexus":
        assert "Link" not in reply.headers and tags[-1] is None and len(tags) == 121
        return

    assert re.match(PAGE_LINKS[mode], reply.headers["Link"]), reply.headers["Link"]
    if mode == "ecr":
        assert reply.headers["Content-Type"].startswith("text/plain")
    if mode in ("quay", "ghcr"):  # oldest first: the order the tags were pushed in
        assert tags != sorted(tags)
    if mode == "artifactory":
        assert tags[0].startswith("sha256:")
