"""Shared fixtures: the local test services started by ``scripts/services.py``.

Session fixtures read ``$REGISTRY_NB_STATE/services.json`` (default state
folder ``/tmp/registry-nb-services``) and health-check each service once. When
the services are not running they FAIL, they do not skip.

- ``services`` -> dict: the whole services.json (every service checked)
- ``open_registry`` / ``basic_registry`` / ``token_registry`` -> helpers.RegistryService
- ``docker_host`` -> str ``unix://…`` (also exported as ``DOCKER_HOST`` for the session)
- ``docker_client`` -> docker.DockerClient on the project's dockerd
- ``unique_repo`` -> str, a fresh repository name per test (``test/<name>-<hex>``)
- ``docker_config_dir`` -> Path: ``DOCKER_CONFIG`` points at a fresh empty folder, so no
  credentials of this machine's docker config reach a test unless it writes some
- ``empty_docker_config`` -> Path: the same folder holding a ``config.json`` of ``{}``

Tests that use any of these get the ``services`` marker automatically, so
``pytest -m "not services"`` runs the rest.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import socket
from pathlib import Path

import pytest
from helpers import RegistryService

START_HINT = "test services are not running: run `.venv/bin/python scripts/services.py start`"
SERVICE_FIXTURES = {
    "services", "open_registry", "basic_registry", "token_registry", "docker_host",
    "docker_client", "services_info",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def _state_dir() -> Path:
    return Path(os.environ.get("REGISTRY_NB_STATE") or "/tmp/registry-nb-services")


# --------------------------------------------------------------------------
# cheap health checks, each run at most once per session
# --------------------------------------------------------------------------
_health_cache: dict[str, str | None] = {}


def _http_status(url_host: str, port: int, path: str, unix: str | None = None):
    if unix:
        conn = http.client.HTTPConnection("localhost", timeout=3)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(3)
        sock.connect(unix)
        conn.sock = sock
    else:
        conn = http.client.HTTPConnection(url_host, port, timeout=3)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _check(name: str, info: dict) -> None:
    if name not in _health_cache:
        _health_cache[name] = _probe(name, info)
    problem = _health_cache[name]
    if problem:
        pytest.fail(f"{START_HINT}\n({problem})", pytrace=False)


def _probe(name: str, info: dict) -> str | None:
    try:
        if name == "docker":
            status, _, body = _http_status("", 0, "/_ping", unix=info["docker"]["socket"])
            ok = status == 200 and body.strip() == b"OK"
            return None if ok else f"dockerd /_ping answered {status}"
        if name == "token_service":
            host, port = info["token_service"]["url"].split("//", 1)[1].split(":")
            status, _, _ = _http_status(host, int(port), "/healthz")
            return None if status == 200 else f"token service /healthz answered {status}"
        reg = info[name]
        host, port = reg["host"].split(":")
        status, headers, _ = _http_status(host, int(port), "/v2/")
        expected = 200 if reg["auth"] == "none" else 401
        if status != expected or headers.get("docker-distribution-api-version") != "registry/2.0":
            return f"{name} registry at {reg['host']} answered {status} to /v2/"
        return None
    except OSError as exc:
        return f"{name}: {exc}"


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def services_info() -> dict:
    """services.json as a dict, without health checks."""
    path = _state_dir() / "services.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        pytest.fail(f"{START_HINT}\n(cannot read {path}: {exc})", pytrace=False)


@pytest.fixture(scope="session")
def services(services_info) -> dict:
    """The whole services.json; every service is health-checked."""
    for name in ("docker", "open", "basic", "token", "token_service"):
        _check(name, services_info)
    return services_info


def _registry(info: dict, name: str) -> RegistryService:
    _check(name, info)
    if name == "token":
        _check("token_service", info)
    return RegistryService.from_json(info[name])


@pytest.fixture(scope="session")
def open_registry(services_info) -> RegistryService:
    """Registry without auth (127.0.0.1:5000 by default)."""
    return _registry(services_info, "open")


@pytest.fixture(scope="session")
def basic_registry(services_info) -> RegistryService:
    """Registry with htpasswd Basic auth; ``username``/``password`` are alice's."""
    return _registry(services_info, "basic")


@pytest.fixture(scope="session")
def token_registry(services_info) -> RegistryService:
    """Registry with Bearer token auth; ``users`` holds alice's and reader's passwords."""
    return _registry(services_info, "token")


@pytest.fixture(scope="session")
def docker_host(services_info):
    """``unix://…/docker.sock`` of the project's dockerd; also set as DOCKER_HOST."""
    _check("docker", services_info)
    host = services_info["docker_host"]
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    yield host
    if old is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = old


@pytest.fixture(scope="session")
def docker_client(docker_host):
    """A docker.DockerClient on the project's dockerd."""
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=300)
    yield client
    client.close()


@pytest.fixture
def unique_repo(request) -> str:
    """A fresh repository name for this test: ``test/<test-name>-<6 hex>``."""
    name = request.node.name.lower()
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:40].strip("-") or "t"
    return f"test/{name}-{secrets.token_hex(3)}"


# --------------------------------------------------------------------------
# docker config isolation (shared by every test that builds clients)
# --------------------------------------------------------------------------


@pytest.fixture
def docker_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``DOCKER_CONFIG`` at a fresh empty folder (no config.json)."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder


@pytest.fixture
def empty_docker_config(docker_config_dir: Path) -> Path:
    """``DOCKER_CONFIG`` at a folder whose config.json is ``{}``."""
    (docker_config_dir / "config.json").write_text("{}")
    return docker_config_dir


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory) -> RegistryService:
    """A distribution registry of the module's own (``docker-registry serve`` on a free
    loopback port, delete enabled), stopped after the module."""
    from opsregistry import OwnRegistry

    folder = tmp_path_factory.mktemp("own-registry")
    registry = OwnRegistry(folder)
    yield RegistryService(name="own", host=registry.host, url=f"http://{registry.host}",
                          storage=folder / "data", auth="none")
    registry.stop()
