"""registry_nb.registry: the ContainerRegistry facade against the real dockerd and registries.

Digests, sizes and layer lists are cross-checked with skopeo, docker-py and raw
HTTP requests, never with the project's own reading code.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from helpers import (
    RegistryService,
    busybox_build_context,
    get_token,
    seed_image,
    skopeo_digest,
    skopeo_raw_manifest,
)

from registry_nb import ContainerImage, ContainerRegistry, RegistryCredentials
from registry_nb.errors import (
    AuthenticationError,
    BuildError,
    ImageNotFoundError,
    InvalidPlatformError,
    InvalidReferenceError,
    NotFoundError,
    RegistryError,
    RegistryHTTPError,
)
from registry_nb.frames import LAYER_COLUMNS, LOCAL_IMAGE_COLUMNS, REGISTRY_IMAGE_COLUMNS
from registry_nb.images.image import RegistryRepository, open_image
from registry_nb.oci import OCI_INDEX, Descriptor, Index, Platform
from registry_nb.progress import ProgressAggregator, ProgressEvent

PUSH_KEYS = {"status", "image", "digest", "size_bytes", "duration_seconds"}
PULL_KEYS = {"status", "image", "image_id", "size_mb", "duration_seconds", "tags"}
BUILD_KEYS = {"status", "image", "image_id", "build_duration_seconds",
              "total_duration_seconds", "push_result"}
SIMULATED_KEYS = {"status", "image", "message"}
LIST_KEYS = {"name", "tag", "image_id", "size_mb", "created", "labels"}

# -- helpers and fixtures ------------------------------------------------------


def raw_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def layer_sizes(ref: str, creds: str | None = None) -> int:
    """Sum of the layer sizes in the manifest the registry serves (read by skopeo)."""
    return sum(layer["size"] for layer in json.loads(skopeo_raw_manifest(ref, creds))["layers"])


def run_in(client, image: str, command: list[str]) -> str:
    """Run ``command`` in ``image`` without network (docker-py); return its output."""
    out = client.containers.run(image, command, network_mode="none", remove=True)
    return out.decode()


def unique_context(root: Path, extra: list[str] = ()) -> Path:
    """Busybox FROM scratch plus a unique file, so each image (and push) is new."""
    ctx = busybox_build_context(root, ["COPY blob /blob", *extra])
    (ctx / "blob").write_bytes(uuid.uuid4().bytes + os.urandom(64 * 1024))
    return ctx


def assert_schema(frame: pd.DataFrame, columns: dict[str, str]) -> None:
    assert list(frame.columns) == list(columns)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == columns


@pytest.fixture
def reg(docker_host: str, open_registry: RegistryService,
        docker_config_dir: Path) -> Iterator[ContainerRegistry]:
    with ContainerRegistry(open_registry.host) as registry:
        yield registry


@pytest.fixture
def cleanup(docker_client) -> Iterator[list[str]]:
    """Names or ids of local images to remove after the test."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            docker_client.images.remove(name, force=True)
        except Exception:  # already gone
            pass


@pytest.fixture
def dead_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker_config_dir: Path) -> str:
    """DOCKER_HOST pointing at a socket path nothing listens on."""
    host = f"unix://{tmp_path}/nothing-here.sock"
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


# -- names ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["docker.io", "registry.hub.docker.com", "",
                                 "https://registry.hub.docker.com", "index.docker.io"])
def test_docker_hub_full_names_have_no_prefix(url: str) -> None:
    reg = ContainerRegistry(url)
    assert reg.is_docker_hub
    assert reg._get_full_image_name("demo", "1") == "demo:1"
    assert reg._get_full_image_name("org/app", "2.0") == "org/app:2.0"
    assert reg._get_full_image_name("org/app") == "org/app"
    assert reg._reference("busybox", "1").repository == "library/busybox"
    assert reg._reference("org/app", "1").repository == "org/app"


@pytest.mark.parametrize(("url", "host"), [
    ("127.0.0.1:5000", "127.0.0.1:5000"),
    ("http://127.0.0.1:5000", "127.0.0.1:5000"),
    ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
    ("http://localhost:5000/v2/", "localhost:5000"),
    ("https://Registry.Example.com:8443", "registry.example.com:8443"),
    ("https://ghcr.io/", "ghcr.io"),
])
def test_full_names_for_other_registries(url: str, host: str) -> None:
    reg = ContainerRegistry(url)
    assert not reg.is_docker_hub
    assert reg.registry_host == host
    assert reg._get_full_image_name("demo", "1") == f"{host}/demo:1"
    assert reg._get_full_image_name("/org/app/", "2") == f"{host}/org/app:2"
    assert reg._reference("busybox", "1").repository == "busybox"


def test_bad_names_fail_before_any_work(dead_docker: str) -> None:
    reg = ContainerRegistry("127.0.0.1:5000")
    for call in (lambda: reg.push_image("Bad Name", "1"),
                 lambda: reg.pull_image("demo", "bad tag!"),
                 lambda: reg.layers_frame("UPPER", "1")):
        with pytest.raises(InvalidReferenceError):
            call()


def test_engine_auth_comes_from_the_credentials() -> None:
    def auth(**kw: str) -> dict[str, str] | None:
        return ContainerRegistry("127.0.0.1:5001", RegistryCredentials(**kw))._auth_config()

    server = {"serveraddress": "127.0.0.1:5001"}
    assert auth(username="u", password="p") == {"username": "u", "password": "p", **server}
    assert auth(username="u", token="t") == {"username": "u", "password": "t", **server}
    assert auth(token="t") == {"registrytoken": "t", **server}
    assert auth(identity_token="r") == {"identitytoken": "r", **server}
    assert auth() is None
    assert ContainerRegistry("127.0.0.1:5001")._auth_config() is None


def test_docker_hub_has_no_catalog() -> None:
    reg = ContainerRegistry("docker.io")
    with pytest.raises(RegistryError, match="Pass a repository"):
        reg.list_registry_images()
    with pytest.raises(RegistryError, match="Pass a repository"):
        reg.registry_images_frame()


# -- no engine: simulated ------------------------------------------------------


def test_simulated_mode_fabricates_nothing(dead_docker: str, open_registry: RegistryService,
                                           unique_repo: str, tmp_path: Path) -> None:
    digest = seed_image(open_registry, unique_repo, "1")
    reg = ContainerRegistry(open_registry.host)
    started = time.monotonic()
    assert reg.is_available() is False
    assert time.monotonic() - started < 2.0

    full = f"{open_registry.host}/{unique_repo}"
    ctx = busybox_build_context(tmp_path / "ctx")
    results = {
        "push": reg.push_image(unique_repo, "1", local_image="whatever:1"),
        "pull": reg.pull_image(unique_repo, "1"),
        "build": reg.build_and_push(ctx, unique_repo, "2", build_args={"A": "1"}),
    }
    for action, result in results.items():
        assert set(result) == SIMULATED_KEYS, action
        assert result["status"] == "simulated"
        assert action in result["message"] and "DOCKER_HOST" in result["message"]
    assert results["push"]["image"] == f"{full}:1"
    assert results["pull"]["image"] == f"{full}:1"
    assert results["build"]["image"] == f"{full}:2"

    assert reg.list_images() == []
    local = reg.local_images_frame()
    assert local.empty
    assert_schema(local, LOCAL_IMAGE_COLUMNS)

    # the registry API does not need the engine
    assert reg.list_registry_images(unique_repo) == [
        {"name": unique_repo, "tag": "1", "registry_url": open_registry.host,
         "image": f"{full}:1"}
    ]
    frame = reg.registry_images_frame(unique_repo)
    assert frame["digest"].tolist() == [digest]
    assert reg.layers_frame(unique_repo, "1")["index"].tolist() == [0]


def test_simulated_on_a_stale_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))  # the file exists, nobody listens
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        reg = ContainerRegistry("127.0.0.1:5000")
        started = time.monotonic()
        assert reg.is_available() is False
        assert reg.pull_image("demo")["status"] == "simulated"
        assert time.monotonic() - started < 2.0
    finally:
        sock.close()


# -- build, push, pull ---------------------------------------------------------


def test_build_and_push_from_a_folder_with_build_args(
    reg: ContainerRegistry, open_registry: RegistryService, unique_repo: str, tmp_path: Path,
    docker_client, cleanup: list[str],
) -> None:
    ctx = unique_context(tmp_path / "ctx", ["ARG FLAVOUR=plain", "LABEL flavour=$FLAVOUR",
                                            "RUN echo $FLAVOUR > /flavour"])
    events: list[ProgressEvent] = []
    full = f"{open_registry.host}/{unique_repo}:1"
    cleanup.append(full)
    result = reg.build_and_push(ctx, unique_repo, "1", build_args={"FLAVOUR": "mint"},
                                progress=events.append)

    assert set(result) == BUILD_KEYS
    assert result["status"] == "success" and result["image"] == full
    assert result["image_id"] == docker_client.images.get(full).id
    assert 0 <= result["build_duration_seconds"] <= result["total_duration_seconds"]
    push = result["push_result"]
    assert set(push) == PUSH_KEYS
    assert push["status"] == "success" and push["image"] == full
    assert push["digest"] == skopeo_digest(full)
    assert push["size_bytes"] == layer_sizes(full)
    # the compressed image, not the manifest (a few hundred bytes)
    assert push["size_bytes"] > 1_000_000 > len(skopeo_raw_manifest(full))

    # the build arg reached the image: as a label and as a file
    assert docker_client.images.get(full).labels["flavour"] == "mint"
    assert run_in(docker_client, full, ["cat", "/flavour"]).strip() == "mint"

    # progress: build steps, then the push; one final event, at the end
    phases = [e.phase for e in events]
    assert any(e.phase == "build" and e.step and e.steps for e in events)
    assert phases.count("done") == 1 and phases[-1] == "done"
    assert phases.index("upload") > max(i for i, p in enumerate(phases) if p == "build")


def test_build_and_push_from_a_dockerfile_path_without_cache(
    reg: ContainerRegistry, open_registry: RegistryService, unique_repo: str, tmp_path: Path,
    docker_client, cleanup: list[str],
) -> None:
    ctx = unique_context(tmp_path / "ctx")
    # a Dockerfile with another name: its folder is the context
    (ctx / "Dockerfile").rename(ctx / "app.Dockerfile")
    with (ctx / "app.Dockerfile").open("a") as f:
        f.write("ARG STAMP\nRUN echo $STAMP > /stamp\n")
    cleanup.extend([f"{open_registry.host}/{unique_repo}:1",
                    f"{open_registry.host}/{unique_repo}:2"])

    first = reg.build_and_push(str(ctx / "app.Dockerfile"), unique_repo, "1",
                               build_args={"STAMP": "a"})
    assert first["status"] == "success"

    messages: list[str] = []
    cached = reg.build_and_push(ctx / "app.Dockerfile", unique_repo, "2",
                                build_args={"STAMP": "a"},
                                progress=lambda e: messages.append(e.message))
    assert any("Using cache" in m for m in messages)
    assert cached["image_id"] == first["image_id"]

    messages.clear()
    fresh = reg.build_and_push(ctx / "app.Dockerfile", unique_repo, "2",
                               build_args={"STAMP": "a"}, no_cache=True,
                               progress=lambda e: messages.append(e.message))
    assert not any("Using cache" in m for m in messages)
    assert fresh["image_id"] != first["image_id"]
    assert set(fresh) == BUILD_KEYS and set(fresh["push_result"]) == PUSH_KEYS
    assert fresh["push_result"]["digest"] == skopeo_digest(fresh["image"])
    assert run_in(docker_client, fresh["image"], ["cat", "/stamp"]).strip() == "a"


def test_failing_build_step_raises_build_error(
    reg: ContainerRegistry, unique_repo: str, tmp_path: Path,
) -> None:
    ctx = busybox_build_context(tmp_path / "ctx", [
        "RUN echo preparing-the-marker && echo broken-marker >&2 && exit 3",
    ])
    events: list[ProgressEvent] = []
    with pytest.raises(BuildError) as info:
        reg.build_and_push(ctx, unique_repo, "1", progress=events.append)
    err = info.value
    assert err.step is not None and "exit 3" in err.step and err.step.startswith("Step 4/4")
    assert "preparing-the-marker" in err.log_tail
    assert "returned a non-zero code: 3" in str(err)
    assert events[-1].phase == "failed"
    with pytest.raises(ImageNotFoundError):  # nothing was pushed
        reg.list_registry_images(unique_repo)


def test_build_with_a_bad_path(reg: ContainerRegistry, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist") as info:
        reg.build_and_push(tmp_path / "missing" / "Dockerfile", "demo", "1")
    assert "Dockerfile" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no Dockerfile"):
        reg.build_and_push(tmp_path / "empty", "demo", "1")


def test_push_reports_progress_to_the_total_and_tags_local_image(
    reg: ContainerRegistry, open_registry: RegistryService, unique_repo: str, tmp_path: Path,
    docker_client, cleanup: list[str],
) -> None:
    local = f"local-{uuid.uuid4().hex[:8]}:src"
    cleanup.append(local)
    docker_client.images.build(path=str(unique_context(tmp_path / "ctx")), tag=local,
                               network_mode="none", rm=True)
    full = f"{open_registry.host}/{unique_repo}:v1"
    cleanup.append(full)
    aggregator = ProgressAggregator()
    events: list[ProgressEvent] = []

    def record(event: ProgressEvent) -> None:
        events.append(event)
        aggregator.update(event)

    result = reg.push_image(unique_repo, "v1", local_image=local, progress=record)
    assert set(result) == PUSH_KEYS
    assert result["image"] == full
    assert result["digest"] == skopeo_digest(full)
    assert result["size_bytes"] == layer_sizes(full)
    assert isinstance(result["size_bytes"], int) and result["duration_seconds"] >= 0
    assert any(e.phase == "upload" and e.current for e in events)
    snap = aggregator.snapshot()
    assert snap.phase == "done" and snap.total > 0 and snap.current == snap.total
    assert events[-1].current == events[-1].total == snap.total


def test_pull_reports_size_tags_and_progress(
    reg: ContainerRegistry, open_registry: RegistryService, unique_repo: str, tmp_path: Path,
    docker_client, cleanup: list[str],
) -> None:
    full = f"{open_registry.host}/{unique_repo}:1"
    cleanup.append(full)
    pushed = reg.build_and_push(unique_context(tmp_path / "ctx"), unique_repo, "1")
    docker_client.images.remove(full, force=True)

    aggregator = ProgressAggregator()
    phases: list[str] = []

    def record(event: ProgressEvent) -> None:
        phases.append(event.phase)
        aggregator.update(event)

    result = reg.pull_image(unique_repo, "1", progress=record)
    assert set(result) == PULL_KEYS
    assert result["status"] == "success" and result["image"] == full
    assert result["image_id"] == pushed["image_id"] == docker_client.images.get(full).id
    history = docker_client.api.history(full)
    assert result["size_mb"] == round(sum(h["Size"] for h in history) / 1e6, 3)
    assert result["size_mb"] > 1
    assert result["tags"] == [full]
    assert "download" in phases and phases[-1] == "done"
    snap = aggregator.snapshot()
    assert snap.total > 0 and snap.current == snap.total


def test_pull_of_a_missing_tag(reg: ContainerRegistry, open_registry: RegistryService,
                               unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "1")
    with pytest.raises(ImageNotFoundError, match="nope"):
        reg.pull_image(unique_repo, "nope")
    with pytest.raises(ImageNotFoundError):
        reg.pull_image(unique_repo + "-absent")


def test_push_of_a_missing_local_image(reg: ContainerRegistry, unique_repo: str) -> None:
    with pytest.raises(ImageNotFoundError):
        reg.push_image(unique_repo, "1")
    with pytest.raises(ImageNotFoundError):
        reg.push_image(unique_repo, "1", local_image=f"absent-{uuid.uuid4().hex[:6]}:1")


@pytest.fixture
def local_image(docker_client, tmp_path: Path, cleanup: list[str]) -> str:
    tag = f"local-{uuid.uuid4().hex[:8]}:src"
    cleanup.append(tag)
    docker_client.images.build(path=str(unique_context(tmp_path / "img")), tag=tag,
                               network_mode="none", rm=True)
    return tag


def test_push_to_the_basic_registry_logs_in(
    docker_host: str, basic_registry: RegistryService, docker_config_dir: Path,
    unique_repo: str, local_image: str, cleanup: list[str],
) -> None:
    full = f"{basic_registry.host}/{unique_repo}:1"
    cleanup.append(full)
    anonymous = ContainerRegistry(basic_registry.host)
    with pytest.raises(AuthenticationError):
        anonymous.push_image(unique_repo, "1", local_image=local_image)

    wrong = ContainerRegistry(basic_registry.host, RegistryCredentials(
        username=basic_registry.username, password="wrong", registry_url=basic_registry.host))
    with pytest.raises(AuthenticationError):
        wrong.push_image(unique_repo, "1", local_image=local_image)

    creds = RegistryCredentials(username=basic_registry.username,
                                password=basic_registry.password,
                                registry_url=basic_registry.host)
    result = ContainerRegistry(basic_registry.host, creds).push_image(
        unique_repo, "1", local_image=local_image)
    assert set(result) == PUSH_KEYS and result["status"] == "success"
    assert result["digest"] == skopeo_digest(full, basic_registry.creds)
    assert result["size_bytes"] == layer_sizes(full, basic_registry.creds)


def test_push_to_the_token_registry(
    docker_host: str, token_registry: RegistryService, docker_config_dir: Path,
    unique_repo: str, local_image: str, cleanup: list[str],
) -> None:
    full = f"{token_registry.host}/{unique_repo}:1"
    cleanup.append(full)

    reader = ContainerRegistry(token_registry.host, RegistryCredentials(
        username="reader", password=token_registry.users["reader"]))
    with pytest.raises(AuthenticationError):  # login works, push is not granted
        reader.push_image(unique_repo, "1", local_image=local_image)

    alice = ContainerRegistry(token_registry.host, RegistryCredentials(
        username=token_registry.username, password=token_registry.password))
    result = alice.push_image(unique_repo, "1", local_image=local_image)
    assert result["status"] == "success"
    assert result["digest"] == skopeo_digest(full, token_registry.creds)
    assert result["size_bytes"] == layer_sizes(full, token_registry.creds)

    # a bare Bearer token is handed to the engine as a registry token
    scope = f"repository:{unique_repo}:pull,push"
    token = get_token(token_registry, scope).json()["token"]
    with_token = ContainerRegistry(token_registry.host, RegistryCredentials(token=token))
    again = with_token.push_image(unique_repo, "2", local_image=local_image)
    cleanup.append(f"{token_registry.host}/{unique_repo}:2")
    assert again["digest"] == result["digest"]
    assert again["size_bytes"] == result["size_bytes"]


# -- local listing -------------------------------------------------------------


def test_list_images_and_local_frame(
    reg: ContainerRegistry, open_registry: RegistryService, unique_repo: str, tmp_path: Path,
    docker_client, cleanup: list[str],
) -> None:
    full_repo = f"{open_registry.host}/{unique_repo}"
    cleanup.extend([f"{full_repo}:1", f"{full_repo}:2"])
    ctx = unique_context(tmp_path / "ctx", ["LABEL team=blue"])
    image = docker_client.images.build(path=str(ctx), tag=f"{full_repo}:1",
                                       network_mode="none", rm=True)[0]
    image.tag(full_repo, "2")
    attrs = docker_client.api.inspect_image(image.id)

    listed = reg.list_images(unique_repo)  # the short name matches this registry's name
    assert listed == reg.list_images(full_repo)
    assert [(d["name"], d["tag"]) for d in listed] == [(full_repo, "1"), (full_repo, "2")]
    for item in listed:
        assert set(item) == LIST_KEYS
        assert item["image_id"] == image.id
        assert item["size_mb"] == round(attrs["Size"] / 1e6, 3)
        assert item["labels"] == {"team": "blue"}
        assert pd.Timestamp(item["created"]).tzinfo is not None

    frame = reg.local_images_frame(unique_repo)
    assert_schema(frame, LOCAL_IMAGE_COLUMNS)
    assert frame["tag"].tolist() == ["1", "2"]
    row = frame.iloc[0]
    assert row["size_bytes"] == attrs["Size"] and row["size_mb"] == listed[0]["size_mb"]
    assert row["architecture"] == attrs["Architecture"] and row["os"] == attrs["Os"]
    assert str(row["created"].tz) == "UTC"
    assert row["created"] == pd.Timestamp(attrs["Created"]).tz_convert("UTC").floor("s")
    assert row["labels"] == {"team": "blue"}

    empty = reg.local_images_frame("no/such-repository")
    assert empty.empty
    assert_schema(empty, LOCAL_IMAGE_COLUMNS)
    assert len(reg.local_images_frame()) >= 2


# -- registry listing ----------------------------------------------------------


def _put_tiny_image(session: requests.Session, url: str, repo: str, tag: str) -> None:
    """Upload a minimal (valid) image with plain HTTP calls."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    start = session.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    location = location if location.startswith("http") else url + location
    sep = "&" if "?" in location else "?"
    put = session.put(f"{location}{sep}digest={digest}", data=config, timeout=10,
                      headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 201, put.text
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": digest, "size": len(config)},
                "layers": []}
    put = session.put(f"{url}/v2/{repo}/manifests/{tag}", data=json.dumps(manifest), timeout=10,
                      headers={"Content-Type": manifest["mediaType"]})
    assert put.status_code == 201, put.text


def _raw_catalog(session: requests.Session, url: str) -> list[str]:
    names: list[str] = []
    next_url: str | None = f"{url}/v2/_catalog?n=1000"
    while next_url:
        response = session.get(next_url, timeout=10)
        response.raise_for_status()
        names += response.json()["repositories"]
        link = response.links.get("next", {}).get("url")
        next_url = (link if link.startswith("http") else url + link) if link else None
    return names


def test_list_registry_images_over_every_catalog_page(
    docker_host: str, open_registry: RegistryService, unique_repo: str,
) -> None:
    session = raw_session()
    # Enough repositories that the catalog has more than one page (100 names) and ours,
    # sorting last, are past the first page.
    existing = len(_raw_catalog(session, open_registry.url))
    mine = [f"zz-{unique_repo}/r{i:03d}" for i in range(max(2, 101 - existing))]
    for repo in mine:
        _put_tiny_image(session, open_registry.url, repo, "t")
    expected = _raw_catalog(session, open_registry.url)
    assert len(expected) > 100 and expected.index(mine[-1]) >= 100

    reg = ContainerRegistry(open_registry.host)
    everything = reg.list_registry_images(limit=None)
    names = {item["name"] for item in everything}
    assert set(mine) <= names
    assert names <= set(expected)
    assert {(i["name"], i["tag"]) for i in everything} >= {(r, "t") for r in mine}
    for item in everything:
        assert item["registry_url"] == open_registry.host
        assert item["image"] == f"{open_registry.host}/{item['name']}:{item['tag']}"

    first = reg.list_registry_images(limit=7)
    assert len(first) == 7
    assert first == everything[:7]  # catalog order, then tag order
    assert reg.list_registry_images(limit=0) == []
    assert len(reg.list_registry_images()) == min(100, len(everything))
    with pytest.raises(ValueError):
        reg.list_registry_images(limit=-1)


def test_list_registry_images_of_one_repository(
    docker_host: str, open_registry: RegistryService, unique_repo: str,
) -> None:
    session = raw_session()
    for tag in ("a", "b", "c"):
        _put_tiny_image(session, open_registry.url, unique_repo, tag)
    reg = ContainerRegistry(f"http://{open_registry.host}")
    listed = reg.list_registry_images(unique_repo)
    assert [i["tag"] for i in listed] == ["a", "b", "c"]
    assert listed[0] == {"name": unique_repo, "tag": "a", "registry_url": open_registry.host,
                         "image": f"{open_registry.host}/{unique_repo}:a"}
    assert len(reg.list_registry_images(unique_repo, limit=2)) == 2
    with pytest.raises(ImageNotFoundError):
        reg.list_registry_images(unique_repo + "-absent")


def test_registry_that_refuses_its_catalog(
    token_registry: RegistryService, unique_repo: str,
) -> None:
    seed_image(token_registry, unique_repo, "1")
    # The token service grants the catalog to alice only (as Docker Hub grants it to no
    # one): a real refusal.
    reader = ContainerRegistry(token_registry.host, RegistryCredentials(
        username="reader", password=token_registry.users["reader"]))
    with pytest.raises(AuthenticationError, match="Pass a repository"):
        reader.list_registry_images()
    with pytest.raises(AuthenticationError, match="Pass a repository"):
        reader.registry_images_frame()
    assert [i["tag"] for i in reader.list_registry_images(unique_repo)] == ["1"]


def test_registry_without_a_catalog_endpoint(
    open_registry: RegistryService, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # distribution 2.8 always serves /v2/_catalog and has no setting to turn it off, so
    # the 404 some registries answer is made by monkeypatching the client.
    reg = ContainerRegistry(open_registry.host)

    def no_catalog(**_: object) -> Iterator[str]:
        raise RegistryHTTPError("list the registry's catalog: HTTP 404", status=404)
        yield ""  # pragma: no cover - makes this a generator

    monkeypatch.setattr(reg.client, "catalog", no_catalog)
    with pytest.raises(RegistryHTTPError, match="does not offer a catalog") as info:
        reg.list_registry_images()
    assert "Pass a repository" in str(info.value) and info.value.status == 404


# -- registry frames -----------------------------------------------------------


def test_registry_images_frame(open_registry: RegistryService, unique_repo: str) -> None:
    labels = {"org.example.team": "blue"}
    d1 = seed_image(open_registry, unique_repo, "1", layers=2,
                    config_overrides={"config": {"Labels": labels}})
    d2 = seed_image(open_registry, unique_repo, "2", files={"a": b"x" * 5000})
    reg = ContainerRegistry(open_registry.host)
    frame = reg.registry_images_frame(unique_repo)
    assert_schema(frame, REGISTRY_IMAGE_COLUMNS)
    assert frame["tag"].tolist() == ["1", "2"]
    assert frame["digest"].tolist() == [d1, d2]
    row = frame.iloc[0]
    ref = open_registry.ref(unique_repo, "1")
    assert row["repository"] == unique_repo and row["registry_url"] == open_registry.host
    assert row["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert row["size_bytes"] == layer_sizes(ref)
    assert row["size_mb"] == round(row["size_bytes"] / 1e6, 3)
    assert row["layer_count"] == 2
    assert row["created"] == pd.Timestamp("2023-11-14T22:13:20Z")
    assert str(frame["created"].dt.tz) == "UTC"
    assert (row["architecture"], row["os"]) == ("amd64", "linux")
    assert row["labels"] == labels
    assert row["platforms"] is None
    assert frame["error"].isna().all()

    limited = reg.registry_images_frame(unique_repo, limit=1)
    assert limited["tag"].tolist() == ["1"]
    empty = reg.registry_images_frame(unique_repo, limit=0)
    assert empty.empty
    assert_schema(empty, REGISTRY_IMAGE_COLUMNS)

    described = reg.describe_image(unique_repo, "1")
    assert isinstance(described, ContainerImage)
    assert described.digest == d1 and described.size_bytes == row["size_bytes"]


def test_several_named_repositories_list_in_the_order_given(
    open_registry: RegistryService, unique_repo: str,
) -> None:
    # listed concurrently (one round trip per repository at the same time), kept in order
    names = [f"{unique_repo}/b", f"{unique_repo}/a", f"{unique_repo}/c"]
    for name in names:
        for tag in ("2", "1"):
            seed_image(open_registry, name, tag, files={"f": f"{name}:{tag}".encode()})
    frame = ContainerRegistry(open_registry.host).registry_images_frame(names, limit=None)
    assert list(zip(frame["repository"], frame["tag"], strict=True)) == [
        (name, tag) for name in names for tag in ("1", "2")]
    assert frame["error"].isna().all()
    assert ContainerRegistry(open_registry.host).registry_images_frame(names, limit=3)[
        "repository"].tolist() == [names[0], names[0], names[1]]
    with pytest.raises(NotFoundError):  # a named repository that is missing still raises
        ContainerRegistry(open_registry.host).registry_images_frame(
            [names[0], f"{unique_repo}/missing"])


def test_configs_of_different_images_are_read_at_the_same_time(
    open_registry: RegistryService, unique_repo: str,
) -> None:
    # functools.cached_property (Python < 3.12) shares one lock among all instances: a
    # listing's threads then read configs one round trip at a time. Both reads must be
    # inside read_blob together, or the barrier breaks.
    for tag in ("a", "b"):
        seed_image(open_registry, unique_repo, tag, files={"f": tag.encode()})
    meet = threading.Barrier(2, timeout=5)

    class Meeting(RegistryRepository):
        def read_blob(self, descriptor, **kwargs):  # type: ignore[no-untyped-def]
            meet.wait()
            return super().read_blob(descriptor, **kwargs)

    reg = ContainerRegistry(open_registry.host)
    store = Meeting(reg.client, unique_repo)
    images = [open_image(store, tag) for tag in ("a", "b")]
    errors: list[BaseException] = []

    def read(image) -> None:  # type: ignore[no-untyped-def]
        try:
            assert image.config.platform.os == "linux"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(image,)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors, errors
    assert images[0].config is images[0].config  # read once, then kept


def test_one_bad_tag_keeps_its_row(open_registry: RegistryService, unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "good", files={"g": b"good"})
    marker = uuid.uuid4().hex  # a config no other image shares
    seed_image(open_registry, unique_repo, "bad", files={"b": b"bad"},
               config_overrides={"config": {"Labels": {"marker": marker}}})
    raw = json.loads(skopeo_raw_manifest(open_registry.ref(unique_repo, "bad")))
    open_registry.blob_path(raw["config"]["digest"]).unlink()  # gone from the registry's disk

    frame = ContainerRegistry(open_registry.host).registry_images_frame(unique_repo)
    assert_schema(frame, REGISTRY_IMAGE_COLUMNS)
    rows = frame.set_index("tag")
    assert pd.isna(rows.loc["good", "error"]) and rows.loc["good", "layer_count"] == 1
    error = rows.loc["bad", "error"]
    assert isinstance(error, str) and raw["config"]["digest"] in error
    assert pd.isna(rows.loc["bad", "digest"]) and pd.isna(rows.loc["bad", "size_bytes"])
    assert rows.loc["bad", "repository"] == unique_repo


@pytest.fixture
def multi_platform(open_registry: RegistryService, unique_repo: str) -> dict[str, str]:
    """An OCI index with linux/amd64, linux/arm64/v8 and an attestation entry."""
    amd = seed_image(open_registry, unique_repo, "amd64", files={"amd": b"amd64"})
    arm = seed_image(open_registry, unique_repo, "arm64", layers=3,
                     files={"x": b"1", "y": b"2", "z": b"3"},
                     config_overrides={"architecture": "arm64", "variant": "v8"})
    entries = []
    for digest, platform in ((amd, Platform("linux", "amd64")),
                             (arm, Platform("linux", "arm64", "v8")),
                             (amd, Platform("unknown", "unknown"))):
        raw = skopeo_raw_manifest(open_registry.ref(unique_repo, digest))
        entries.append(Descriptor(json.loads(raw)["mediaType"], digest, len(raw),
                                  platform=platform))
    index = Index.build(entries, OCI_INDEX)
    with ContainerRegistry(open_registry.host) as reg:
        reg.client.put_manifest(unique_repo, "multi", index.raw, OCI_INDEX)
    return {"index": index.digest, "amd64": amd, "arm64": arm}


def test_index_rows_describe_the_selected_platform(
    open_registry: RegistryService, unique_repo: str, multi_platform: dict[str, str],
) -> None:
    reg = ContainerRegistry(open_registry.host)
    assert skopeo_digest(open_registry.ref(unique_repo, "multi")) == multi_platform["index"]
    frame = reg.registry_images_frame(unique_repo, platform="linux/arm64").set_index("tag")
    row = frame.loc["multi"]
    assert row["digest"] == multi_platform["index"]
    assert row["media_type"] == OCI_INDEX
    assert row["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert (row["architecture"], row["layer_count"]) == ("arm64", 3)
    assert row["size_bytes"] == layer_sizes(open_registry.ref(unique_repo, "arm64"))
    assert frame.loc["arm64", "platforms"] is None

    amd = reg.registry_images_frame(unique_repo, platform="linux/amd64").set_index("tag")
    assert (amd.loc["multi", "architecture"], amd.loc["multi", "layer_count"]) == ("amd64", 1)

    layers = reg.layers_frame(unique_repo, "multi", platform="linux/arm64/v8")
    arm_manifest = json.loads(skopeo_raw_manifest(open_registry.ref(unique_repo, "arm64")))
    assert layers["digest"].tolist() == [layer["digest"] for layer in arm_manifest["layers"]]

    with pytest.raises(InvalidPlatformError):
        reg.registry_images_frame(unique_repo, platform="linux/arm64/v8/x")
    bad = reg.registry_images_frame(unique_repo, platform="linux/s390x").set_index("tag")
    assert "linux/arm64/v8" in bad.loc["multi", "error"]  # says what is available
    assert pd.isna(bad.loc["amd64", "error"])  # a plain manifest is just described


def test_layers_frame_matches_history_skipping_empty_layers(
    reg: ContainerRegistry, open_registry: RegistryService, unique_repo: str, tmp_path: Path,
    cleanup: list[str],
) -> None:
    ctx = busybox_build_context(tmp_path / "ctx", [
        "ENV STAGE=one", "RUN echo first > /first", "LABEL kind=test", "WORKDIR /data",
        "COPY note.txt /data/note.txt", "ENV STAGE=two", 'CMD ["cat", "/data/note.txt"]',
    ])
    (ctx / "note.txt").write_text(uuid.uuid4().hex)
    cleanup.append(f"{open_registry.host}/{unique_repo}:1")
    reg.build_and_push(ctx, unique_repo, "1")

    frame = reg.layers_frame(unique_repo, "1")
    assert_schema(frame, LAYER_COLUMNS)
    manifest = json.loads(skopeo_raw_manifest(open_registry.ref(unique_repo, "1")))
    assert frame["index"].tolist() == list(range(len(manifest["layers"])))
    assert frame["digest"].tolist() == [layer["digest"] for layer in manifest["layers"]]
    assert frame["size_bytes"].tolist() == [layer["size"] for layer in manifest["layers"]]
    assert frame["media_type"].tolist() == [layer["mediaType"] for layer in manifest["layers"]]
    made = frame["created_by"].tolist()
    expected = ["COPY file:", "--install", "echo first", "WORKDIR /data", "note.txt"]
    if len(made) == 4:  # engines that do not make a layer for WORKDIR
        expected.remove("WORKDIR /data")
    assert len(made) == len(expected)
    for line, part in zip(made, expected, strict=True):
        assert part in line
    assert str(frame["created"].dt.tz) == "UTC" and frame["created"].notna().all()


def test_layers_frame_of_an_image_without_layers(
    docker_host: str, open_registry: RegistryService, unique_repo: str,
) -> None:
    _put_tiny_image(raw_session(), open_registry.url, unique_repo, "empty")
    reg = ContainerRegistry(open_registry.host)
    frame = reg.layers_frame(unique_repo, "empty")
    assert frame.empty
    assert_schema(frame, LAYER_COLUMNS)
    row = reg.registry_images_frame(unique_repo).iloc[0]
    assert row["layer_count"] == 0 and row["size_bytes"] == 0
    with pytest.raises(ImageNotFoundError):
        reg.layers_frame(unique_repo, "absent")


def test_image_config_and_with_credentials(basic_registry, unique_repo):
    from helpers import seed_image

    from registry_nb import ContainerRegistry, RegistryCredentials
    from registry_nb.errors import AuthenticationError

    seed_image(basic_registry, unique_repo, "1", config_overrides={"config": {"User": "1000"}})
    anonymous = ContainerRegistry(basic_registry.host)
    with pytest.raises(AuthenticationError):
        anonymous.image_config(unique_repo, "1")
    creds = RegistryCredentials(username=basic_registry.username,
                                password=basic_registry.password)
    authed = anonymous.with_credentials(creds)
    assert authed.credentials is creds and anonymous.credentials is None
    assert authed.engine is anonymous.engine
    assert authed.image_config(unique_repo, "1").config.user == "1000"
