"""Errors that point the right way: a refused password says so (registry, user) for
listings, the catalog, engine pull and push, and copies; a web server is "not a
registry"; the library speaks Python (credentials=...), the CLI speaks flags."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from helpers import RegistryService, seed_image

from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.cli import main
from registry_nb.errors import AuthenticationError, CredentialsRefusedError, NotARegistryError

PYTHON_WORDS = ("credentials=", "RegistryCredentials", "insecure=True", "auth_config",
                "Engine.", "ca_bundle=")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert out == ""
    return code, err


def assert_speaks_cli(err: str) -> None:
    lines = err.strip().splitlines()
    assert lines[0].startswith("registry-nb: error: ") and len(lines) == 2
    assert lines[1].startswith("registry-nb: hint: ")
    assert not any(word in err for word in PYTHON_WORDS), err
    assert "Traceback" not in err


@pytest.fixture(params=["basic", "token"])
def auth_registry(request, basic_registry: RegistryService,
                  token_registry: RegistryService) -> RegistryService:
    return basic_registry if request.param == "basic" else token_registry


@pytest.mark.parametrize("user", ["alice", "nobody"])
def test_refused_password_while_listing(auth_registry: RegistryService, user: str,
                                        empty_docker_config, capsys, monkeypatch) -> None:
    host = auth_registry.host
    reg = ContainerRegistry(host, RegistryCredentials(username=user, password="wrong"))
    for call in (lambda: reg.list_registry_images(),          # the catalog
                 lambda: reg.list_registry_images("demo/x"),  # one repository
                 lambda: reg.describe_image("demo/x:1")):
        with pytest.raises(CredentialsRefusedError) as info:
            call()
        assert info.value.registry == host and info.value.username == user
        text = str(info.value)
        assert f"registry {host} refused the credentials for user {user}" in text
        assert "Pass a repository" not in text and "catalog" not in text
        assert f"credentials=RegistryCredentials(username={user!r}" in text  # Python words
    monkeypatch.setenv("REGISTRY_NB_PASSWORD", "wrong")
    for argv in (["ls", host], ["ls", host, "demo/x"], ["inspect", f"{host}/demo/x:1"]):
        code, err = cli(capsys, *argv, "-u", user)
        assert code == 1
        assert f"refused the credentials for user {user}" in err
        assert f"--username {user}" in err and f"registry-nb login {host} -u {user}" in err
        assert_speaks_cli(err)


def test_refused_password_on_copy(open_registry: RegistryService,
                                  basic_registry: RegistryService, unique_repo: str,
                                  empty_docker_config, capsys, monkeypatch) -> None:
    seed_image(open_registry, unique_repo, "1")
    monkeypatch.setenv("REGISTRY_NB_PASSWORD", "wrong")
    code, err = cli(capsys, "cp", f"{open_registry.host}/{unique_repo}:1",
                    f"{basic_registry.host}/{unique_repo}:1", "-u", "alice")
    assert code == 1 and "refused the credentials for user alice" in err
    assert_speaks_cli(err)


def test_refused_password_through_the_engine(auth_registry: RegistryService, unique_repo: str,
                                             open_registry: RegistryService, docker_host,
                                             empty_docker_config, capsys,
                                             monkeypatch) -> None:
    host = auth_registry.host
    reg = ContainerRegistry(host, RegistryCredentials(username="alice", password="wrong"))
    with pytest.raises(CredentialsRefusedError) as info:
        reg.pull_image(f"{unique_repo}:1")
    assert info.value.registry == host and info.value.username == "alice"
    assert "refused the credentials for user alice to pull" in str(info.value)
    assert "authentication required" not in info.value.message
    monkeypatch.setenv("REGISTRY_NB_PASSWORD", "wrong")
    code, err = cli(capsys, "pull", f"{host}/{unique_repo}:1", "-u", "alice")
    assert code == 1 and "refused the credentials for user alice" in err
    assert_speaks_cli(err)
    # push: the engine logs in first, and that login is refused
    seed_image(open_registry, unique_repo, "1")
    local = f"{open_registry.host}/{unique_repo}:1"
    ContainerRegistry(open_registry.host).pull_image(local)
    try:
        code, err = cli(capsys, "push", f"{host}/{unique_repo}:1", "--local", local,
                        "-u", "alice")
        assert code == 1 and "refused the credentials for user alice" in err
        assert_speaks_cli(err)
    finally:
        import docker

        docker.DockerClient(base_url=docker_host).images.remove(local, force=True)


def test_no_credentials_is_not_called_a_refusal(token_registry: RegistryService,
                                                empty_docker_config, capsys) -> None:
    with pytest.raises(AuthenticationError) as info:
        ContainerRegistry(token_registry.host).list_registry_images("demo/x")
    assert not isinstance(info.value, CredentialsRefusedError)
    code, err = cli(capsys, "ls", token_registry.host, "demo/x")
    assert code == 1 and "--username USER --password-stdin" in err
    assert_speaks_cli(err)


class _WebPage(http.server.BaseHTTPRequestHandler):
    """A web server that is no registry (as JupyterLab's port is): a page or a 404."""

    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<html><body>JupyterLab</body></html>"
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[200, 404])
def web_server(request) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    server.status = request.param  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_not_a_registry(web_server: str, empty_docker_config, capsys) -> None:
    reg = ContainerRegistry(web_server)
    for call in (lambda: reg.list_registry_images(), lambda: reg.list_registry_images("a/b"),
                 lambda: reg.describe_image("a/b:1")):
        with pytest.raises(NotARegistryError) as info:
            call()
        assert "is not a container registry" in str(info.value)
        assert "catalog" not in info.value.message and "no such" not in str(info.value)
    for argv in (["ls", web_server], ["inspect", f"{web_server}/a/b:1"]):
        code, err = cli(capsys, *argv)
        assert code == 1 and f"http://{web_server} is not a container registry" in err
        assert_speaks_cli(err)


def test_a_registry_is_still_a_registry(open_registry: RegistryService, capsys) -> None:
    code, err = cli(capsys, "ls", open_registry.host, "no/such-repo-cli")
    assert code == 1 and "no such repository" in err and "not a container registry" not in err
