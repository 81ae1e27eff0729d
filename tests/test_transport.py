"""Tests of registry_nb.transport: URLs, retries, redirects, TLS, errors, warnings.

The first part runs against small in-process HTTP servers; the part marked
``services`` runs against the real registries of ``scripts/services.py``.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import RegistryService, seed_image

from registry_nb.errors import (
    AuthenticationError,
    BlobNotFoundError,
    ImageNotFoundError,
    InsecureRegistryError,
    ManifestNotFoundError,
    RegistryError,
    RegistryHTTPError,
    RegistryUnavailableError,
)
from registry_nb.remote import RegistryCredentials
from registry_nb.remote.transport import (
    USER_AGENT,
    RegistryWarning,
    Transport,
    error_from_response,
    raise_for_status,
)

# ------------------------------------------------------------ test servers


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Server:
    """A threaded HTTP server whose answers come from ``route(hit, n) -> Reply``."""

    route: Callable[[Hit, int], Reply]
    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None
    hits: list[Hit] = field(default_factory=list)

    def start(self) -> Server:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = _read_chunked(self.rfile)
                hit = Hit(self.command, self.path, dict(self.headers.items()), body)
                outer.hits.append(hit)
                status, headers, payload = outer.route(hit, len(outer.hits))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

        self.httpd = _QuietServer((self.host, 0), Handler)
        self.httpd.daemon_threads = True
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True
        )
        self.thread.start()
        return self

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or reject the certificate on purpose


def _read_chunked(rfile: Any) -> bytes:
    out = b""
    while True:
        size = int(rfile.readline().strip().split(b";")[0], 16)
        if size == 0:
            rfile.readline()
            return out
        out += rfile.read(size)
        rfile.readline()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(route: Callable[[Hit, int], Reply], **kw: Any) -> Server:
        server = Server(route, **kw).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(
        data).encode()


def _ok(hit: Hit, n: int) -> Reply:
    return _json(200, {})


ALICE = RegistryCredentials(username="alice", password="pa55-word", registry_url="127.0.0.1")


def _basic_route(target: str | None = None) -> Callable[[Hit, int], Reply]:
    """A Basic-auth 'registry' accepting ALICE; ``/v2/redirect`` goes to ``target``."""

    def route(hit: Hit, n: int) -> Reply:
        if hit.headers.get("Authorization") != ALICE.get_auth_header():
            return _json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "auth"}]},
                         {"WWW-Authenticate": 'Basic realm="Registry Realm"'})
        if hit.path.startswith("/v2/redirect") and target:
            return 307, {"Location": target}, b""
        return _json(200, {"seen": len(hit.body)})

    return route


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the exponential backoff of the in-process tests short."""
    monkeypatch.setattr("registry_nb.remote.retry.BACKOFF", 0.02)


# ------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("registry", "kwargs", "base_url", "host"),
    [
        ("127.0.0.1:5000", {}, "http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("localhost:5000", {}, "http://localhost:5000", "localhost:5000"),
        ("[::1]:5000", {}, "http://[::1]:5000", "[::1]:5000"),
        ("http://127.0.0.1:5000/", {}, "http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://127.0.0.1:5443", {}, "https://127.0.0.1:5443", "127.0.0.1:5443"),
        ("registry.example.com", {}, "https://registry.example.com", "registry.example.com"),
        ("10.1.2.3:5000", {}, "https://10.1.2.3:5000", "10.1.2.3:5000"),
        ("10.1.2.3:5000", {"insecure": True}, "http://10.1.2.3:5000", "10.1.2.3:5000"),
        ("https://ghcr.io", {}, "https://ghcr.io", "ghcr.io"),
        ("docker.io", {}, "https://registry-1.docker.io", "docker.io"),
        ("", {}, "https://registry-1.docker.io", "docker.io"),
        ("registry.hub.docker.com", {}, "https://registry-1.docker.io", "docker.io"),
        ("index.docker.io", {}, "https://registry-1.docker.io", "docker.io"),
    ],
)
def test_base_url(registry: str, kwargs: dict[str, Any], base_url: str, host: str) -> None:
    with Transport(registry, use_docker_config=False, **kwargs) as t:
        assert t.base_url == base_url
        assert t.host == host
    if host == "docker.io":
        assert t.api_host == "registry-1.docker.io"


def test_plain_http_to_non_loopback_refused() -> None:
    with pytest.raises(InsecureRegistryError, match="insecure=True"):
        Transport("http://registry.example.com")
    assert Transport("http://registry.example.com", insecure=True).base_url.startswith("http://")


def test_bad_scheme_and_missing_ca_bundle() -> None:
    with pytest.raises(RegistryError):
        Transport("ftp://x")
    with pytest.raises(RegistryError, match="does not exist"):
        Transport("registry.example.com", ca_bundle="/nonexistent/ca.pem")


def test_url_resolution() -> None:
    t = Transport("127.0.0.1:5000", use_docker_config=False)
    assert t.url("/v2/a/tags/list") == "http://127.0.0.1:5000/v2/a/tags/list"
    assert t.url("/v2/a/blobs/uploads/u?_state=x") == "http://127.0.0.1:5000/v2/a/blobs/uploads/u?_state=x"
    assert t.url("http://other:1/p?q") == "http://other:1/p?q"
    assert t.url("v2/_catalog?n=1") == "http://127.0.0.1:5000/v2/_catalog?n=1"


# --------------------------------------------------- requests and retries


def test_user_agent_and_pool(serve: Callable[..., Server]) -> None:
    server = serve(_ok)
    with Transport(server.netloc, pool_size=3, use_docker_config=False) as t:
        assert t.request("GET", "/v2/").status_code == 200
        adapter = t.session.get_adapter(t.base_url)
        assert adapter._pool_maxsize == 3  # type: ignore[attr-defined]
    assert server.hits[0].headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("registry-nb/") and USER_AGENT.endswith("(+python-requests)")


def test_retry_on_503_then_ok(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: _json(503, {}) if n < 3 else _json(200, {"ok": 1}))
    with Transport(server.netloc, use_docker_config=False) as t:
        r = t.request("GET", "/v2/")
    assert r.status_code == 200 and len(server.hits) == 3


def test_retry_after_is_honoured(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: _json(429, {}, {"Retry-After": "1"}) if n == 1 else _ok(hit, n))
    with Transport(server.netloc, use_docker_config=False) as t:
        start = time.monotonic()
        assert t.request("HEAD", "/v2/").status_code == 200
        assert time.monotonic() - start >= 0.95


def test_retry_after_beyond_budget_returns_response(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: _json(429, {}, {"Retry-After": "3600"}))
    with Transport(server.netloc, use_docker_config=False) as t:
        start = time.monotonic()
        r = t.request("GET", "/v2/")
        assert time.monotonic() - start < 2
    assert r.status_code == 429 and len(server.hits) == 1
    with pytest.raises(RegistryHTTPError) as info:
        raise_for_status(r, "list tags of a")
    assert info.value.status == 429 and "rate limiting" in str(info.value)


def test_retries_exhausted_returns_last(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: _json(502, {}))
    with Transport(server.netloc, retries=2, use_docker_config=False) as t:
        assert t.request("DELETE", "/v2/a/manifests/sha256:x").status_code == 502
    assert len(server.hits) == 3


def test_500_is_retried_for_reads_only(serve: Callable[..., Server]) -> None:
    # distribution's filesystem driver answers a HEAD with 500 while another client
    # commits the same blob; reads are sent again, writes are not (their effect is unknown)
    server = serve(lambda hit, n: _json(500, {}) if n == 1 else _json(200, {}))
    with Transport(server.netloc, use_docker_config=False) as t:
        assert t.request("HEAD", "/v2/a/blobs/sha256:x").status_code == 200
    assert len(server.hits) == 2
    failing = serve(lambda hit, n: _json(500, {}))
    with Transport(failing.netloc, use_docker_config=False) as t:
        assert t.request("DELETE", "/v2/a/manifests/sha256:x").status_code == 500
        assert t.request("PUT", "/v2/a/manifests/1", data=b"{}").status_code == 500
        assert len(failing.hits) == 2
        assert t.request("GET", "/v2/a/manifests/1").status_code == 500
    assert len(failing.hits) == 2 + 1 + t.retry.retries


def test_no_retry_for_post_or_streamed_put(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: _json(503, {}))
    with Transport(server.netloc, use_docker_config=False) as t:
        assert t.request("POST", "/v2/a/blobs/uploads/").status_code == 503
        assert t.request("PATCH", "/v2/a/blobs/uploads/u", data=b"x").status_code == 503
        stream = iter([b"ab", b"c"])
        assert t.request("PUT", "/v2/a/blobs/uploads/u", data=stream).status_code == 503
    assert len(server.hits) == 3
    assert server.hits[2].body == b"abc"


def test_seekable_body_replayed(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: _json(503, {}) if n == 1 else _json(200, {}))
    body = io.BytesIO(b"0123456789")
    body.seek(2)
    with Transport(server.netloc, use_docker_config=False) as t:
        assert t.request("PUT", "/v2/a/blobs/uploads/u", data=body).status_code == 200
    assert [h.body for h in server.hits] == [b"23456789", b"23456789"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_unavailable() -> None:
    port = _free_port()
    with Transport(f"127.0.0.1:{port}", retries=1, use_docker_config=False) as t:
        with pytest.raises(RegistryUnavailableError) as info:
            t.request("GET", "/v2/a/blobs/uploads/u?_state=SECRETSTATE")
    text = str(info.value)
    assert f"http://127.0.0.1:{port}/v2/a/blobs/uploads/u" in text
    assert "SECRETSTATE" not in text
    assert "Is the registry running?" in text


def test_read_timeout_retried_then_unavailable(serve: Callable[..., Server]) -> None:
    def slow(hit: Hit, n: int) -> Reply:
        if n <= 2:
            time.sleep(0.6)
        return _ok(hit, n)

    server = serve(slow)
    with Transport(server.netloc, timeout=(2.0, 0.3), use_docker_config=False) as t:
        assert t.request("GET", "/v2/").status_code == 200
        assert len(server.hits) == 3
        server.hits.clear()
        server.route = lambda hit, n: (time.sleep(0.6), _ok(hit, n))[1]
        with pytest.raises(RegistryUnavailableError, match="timed out"):
            t.request("GET", "/v2/", timeout=(2.0, 0.2))
        with pytest.raises(RegistryUnavailableError):
            t.request("POST", "/v2/a/blobs/uploads/", timeout=(2.0, 0.2))


# ---------------------------------------------------------- auth + redirects


def test_basic_auth_and_refusal(serve: Callable[..., Server]) -> None:
    server = serve(_basic_route())
    with Transport(server.netloc, ALICE) as t:
        assert t.request("GET", "/v2/").status_code == 200
        assert t.request("GET", "/v2/").status_code == 200
    assert [h.headers.get("Authorization") is None for h in server.hits] == [True, False, False]
    wrong = RegistryCredentials(username="alice", password="nope")
    with Transport(server.netloc, wrong) as t:
        with pytest.raises(AuthenticationError, match="refused the credentials for user alice"):
            t.request("GET", "/v2/")
    with Transport(server.netloc, use_docker_config=False) as t:
        with pytest.raises(AuthenticationError, match="requires a username and password"):
            t.request("GET", "/v2/")


def test_seekable_upload_replayed_after_401(serve: Callable[..., Server]) -> None:
    server = serve(_basic_route())
    with Transport(server.netloc, ALICE) as t:
        r = t.request("PUT", "/v2/a/blobs/uploads/u", data=io.BytesIO(b"payload"))
    assert r.json() == {"seen": 7}


def test_streamed_upload_401_is_explained(serve: Callable[..., Server]) -> None:
    server = serve(_basic_route())
    with Transport(server.netloc, ALICE) as t:
        with pytest.raises(AuthenticationError, match="cannot be replayed"):
            t.request("PATCH", "/v2/a/blobs/uploads/u", data=iter([b"x"]))
        # The credentials are now in place for the next attempt.
        assert t.request("PATCH", "/v2/a/blobs/uploads/u", data=iter([b"x"])).status_code == 200


def test_redirect_to_other_host_drops_authorization(serve: Callable[..., Server]) -> None:
    other = serve(lambda hit, n: (200, {}, b"blob-bytes"), host="127.0.0.2")
    same_host_other_port = serve(lambda hit, n: (200, {}, b"blob-bytes"))
    for target_server in (other, same_host_other_port):
        registry = serve(_basic_route(f"http://{target_server.netloc}/storage/blob?sig=1"))
        with Transport(registry.netloc, ALICE) as t:
            r = t.request("GET", "/v2/redirect/blobs/sha256:x")
        assert r.status_code == 200 and r.content == b"blob-bytes"
        assert registry.hits[-1].headers["Authorization"] == ALICE.get_auth_header()
        [hit] = target_server.hits
        assert hit.path == "/storage/blob?sig=1"
        assert "Authorization" not in hit.headers
        assert hit.headers["User-Agent"] == USER_AGENT


def test_redirect_same_origin_keeps_authorization_relative_location(
    serve: Callable[..., Server],
) -> None:
    route = _basic_route()

    def redirecting(hit: Hit, n: int) -> Reply:
        if hit.path == "/v2/old" and hit.headers.get("Authorization"):
            return 308, {"Location": "/v2/new"}, b""
        return route(hit, n)

    registry = serve(redirecting)
    with Transport(registry.netloc, ALICE) as t:
        r = t.request("PUT", "/v2/old", data=b"abc")
    assert r.json() == {"seen": 3}
    assert registry.hits[-1].path == "/v2/new"
    assert registry.hits[-1].headers["Authorization"] == ALICE.get_auth_header()


def test_303_turns_into_get(serve: Callable[..., Server]) -> None:
    def route(hit: Hit, n: int) -> Reply:
        if hit.method == "POST":
            return 303, {"Location": "/v2/done"}, b""
        return _json(200, {"method": hit.method})

    server = serve(route)
    with Transport(server.netloc, use_docker_config=False) as t:
        r = t.request("POST", "/v2/x", data=b"body", headers={"Content-Type": "text/plain"})
    assert r.json() == {"method": "GET"}
    assert "Content-Type" not in server.hits[-1].headers


def test_too_many_redirects(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: (302, {"Location": "/v2/loop"}, b""))
    with Transport(server.netloc, use_docker_config=False) as t:
        with pytest.raises(RegistryHTTPError, match="redirects"):
            t.request("GET", "/v2/loop")


def test_docker_config_credentials_used(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(_basic_route())
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {f"http://{server.netloc}": {"username": "alice", "password": "pa55-word"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with Transport(server.netloc) as t:
        assert t.request("GET", "/v2/").status_code == 200
        assert t.credentials is not None and t.credentials.username == "alice"
    with Transport(server.netloc, use_docker_config=False) as t:
        with pytest.raises(AuthenticationError):
            t.request("GET", "/v2/")


def test_broken_docker_config_does_not_break_open_registry(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(_ok)
    (tmp_path / "config.json").write_text("{broken")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with Transport(server.netloc) as t:
        assert t.request("GET", "/v2/").status_code == 200


def test_debug_log_has_no_secrets_local(
    serve: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(_basic_route())
    caplog.set_level(logging.DEBUG)
    with Transport(server.netloc, ALICE) as t:
        t.request("GET", "/v2/")
        text = caplog.text + repr(t) + repr(t.auth) + repr(t.credentials)
    assert caplog.records
    assert "pa55-word" not in text
    assert ALICE.get_auth_header().split()[1] not in text


def test_concurrent_requests(serve: Callable[..., Server]) -> None:
    server = serve(_basic_route())
    results: list[int] = []
    with Transport(server.netloc, ALICE, pool_size=4) as t:
        def work() -> None:
            results.append(t.request("GET", "/v2/").status_code)

        threads = [threading.Thread(target=work) for _ in range(32)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert results == [200] * 32


# --------------------------------------------------------- warnings, errors


def test_warning_header(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: (200, {"Warning": '299 - "this repo is deprecated", '
                                         '299 - "second \\"one\\""'}, b"{}"))
    with Transport(server.netloc, use_docker_config=False) as t:
        with pytest.warns(RegistryWarning) as record:
            t.request("GET", "/v2/")
    messages = [str(w.message) for w in record]
    assert any("this repo is deprecated" in m for m in messages)
    assert any('second "one"' in m for m in messages)


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": {}}]}).encode()


@pytest.mark.parametrize(
    ("status", "body", "path", "error", "fragment"),
    [
        (404, _error_body("MANIFEST_UNKNOWN", "manifest unknown"), "/v2/a/manifests/1",
         ManifestNotFoundError, "no such manifest"),
        (404, _error_body("BLOB_UNKNOWN", "blob unknown"), "/v2/a/blobs/sha256:x",
         BlobNotFoundError, "no such blob"),
        (404, _error_body("NAME_UNKNOWN", "repository name not known"), "/v2/a/tags/list",
         ImageNotFoundError, "no such repository"),
        (404, b"", "/v2/a/manifests/1", ManifestNotFoundError, "manifest"),
        (404, b"", "/v2/a/blobs/sha256:x", BlobNotFoundError, "blob"),
        (403, _error_body("DENIED", "requested access to the resource is denied"),
         "/v2/a/manifests/1", AuthenticationError, "not allowed to push manifest a:1"),
        (401, _error_body("UNAUTHORIZED", "authentication required"), "/v2/",
         AuthenticationError, "authentication required"),
        (400, _error_body("MANIFEST_INVALID", "manifest invalid"), "/v2/a/manifests/1",
         RegistryHTTPError, "MANIFEST_INVALID: manifest invalid"),
        (500, b"<html>oops</html>", "/v2/a/manifests/1", RegistryHTTPError, "500"),
    ],
)
def test_error_mapping(
    serve: Callable[..., Server], status: int, body: bytes, path: str,
    error: type[Exception], fragment: str,
) -> None:
    server = serve(lambda hit, n: (status, {"Content-Type": "application/json"}, body))
    with Transport(server.netloc, use_docker_config=False) as t:
        if status == 401:  # a 401 never comes back from request()
            with pytest.raises(AuthenticationError, match="without a usable challenge"):
                t.request("GET", path)
            return
        r = t.request("PUT" if status == 403 else "GET", path)
        exc = error_from_response(r, "push manifest a:1")
    assert type(exc) is error
    assert fragment in str(exc)
    if isinstance(exc, RegistryHTTPError):
        assert exc.status == status
        if body.startswith(b"{"):
            assert exc.code == "MANIFEST_INVALID"


def test_head_404_and_raise_for_status(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: (404, {}, b""))
    with Transport(server.netloc, use_docker_config=False) as t:
        with pytest.raises(ManifestNotFoundError):
            raise_for_status(t.request("HEAD", "/v2/a/manifests/1"), "check a:1")
    ok = serve(_ok)
    with Transport(ok.netloc, use_docker_config=False) as t:
        raise_for_status(t.request("GET", "/v2/"), "ping")  # no error below 400


def test_error_body_read_is_bounded(serve: Callable[..., Server]) -> None:
    big = b'{"errors": [{"code": "X", "message": "' + b"a" * (5 << 20) + b'"}]}'
    server = serve(lambda hit, n: (500, {}, big))
    with Transport(server.netloc, use_docker_config=False) as t:
        r = t.request("GET", "/v2/", stream=True)
        exc = error_from_response(r, "ping")
    assert isinstance(exc, RegistryHTTPError) and exc.code is None
    assert len(str(exc)) < 1000


# ---------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry-nb test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


def tls_url(serve: Callable[..., Server], tls_files: tuple[Path, Path]) -> str:
    """The https:// URL of a server that answers 200 with the self-signed ``tls_files``."""
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return f"https://{serve(_ok, tls=ctx).netloc}"


def test_tls_verification_choices_hold(
    serve: Callable[..., Server], tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = tls_files[0]
    url = tls_url(serve, tls_files)
    # The environment's REQUESTS_CA_BUNDLE must not override these choices.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    with Transport(url, use_docker_config=False) as t:
        with pytest.raises(InsecureRegistryError) as info:
            t.request("GET", "/v2/")
    assert "ca_bundle=" in str(info.value) and "insecure=True" in str(info.value)
    with Transport(url, ca_bundle=str(cert), use_docker_config=False) as t:
        assert t.request("GET", "/v2/").status_code == 200
    with Transport(url, insecure=True, use_docker_config=False) as t:
        with pytest.warns(Warning):  # urllib3's InsecureRequestWarning
            assert t.request("GET", "/v2/").status_code == 200


def test_https_to_plain_http_server(serve: Callable[..., Server]) -> None:
    server = serve(_ok)
    with Transport(f"https://{server.netloc}", retries=0, use_docker_config=False) as t:
        with pytest.raises((RegistryUnavailableError, InsecureRegistryError)) as info:
            t.request("GET", "/v2/")
    assert "insecure=True" in str(info.value)


# ======================================================= real registries
# These use the fixtures of tests/conftest.py, which fail (never skip) when
# the services of scripts/services.py are not running.


def _creds(reg: RegistryService, user: str | None = None, password: str | None = None) -> Any:
    user = user or reg.username or ""
    if password is None:
        password = reg.users.get(user) or reg.password or ""
    return RegistryCredentials(username=user, password=password, registry_url=reg.host)


def _pull(repo: str) -> list[str]:
    return [f"repository:{repo}:pull"]


def _recent_for(reg: RegistryService, repo: str) -> list[dict[str, Any]]:
    assert reg.stats_url
    recent = requests.get(reg.stats_url, timeout=5).json()["recent"]
    return [r for r in recent if any(repo in s for s in r["scopes"])]


def _direct_token(reg: RegistryService, scopes: list[str], user: str = "alice") -> str:
    assert reg.realm
    response = requests.get(
        reg.realm, params=[("service", reg.service), *(("scope", s) for s in scopes)],
        auth=(user, reg.users[user]), timeout=5,
    )
    response.raise_for_status()
    return response.json()["token"]


def test_services_http_only_for_loopback(
    open_registry: RegistryService, token_registry: RegistryService
) -> None:
    for reg in (open_registry, token_registry):
        with Transport(reg.host, use_docker_config=False) as t:
            assert t.base_url == reg.url
            assert t.base_url.startswith("http://")
    with Transport("registry.example.com:5000", use_docker_config=False) as t:
        assert t.base_url == "https://registry.example.com:5000"


def test_open_registry_needs_no_auth(
    open_registry: RegistryService, docker_config_dir: Path
) -> None:
    with Transport(open_registry.host) as t:
        assert t.ping().headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert t.auth_scheme is None


def test_basic_registry_good_wrong_missing(
    basic_registry: RegistryService, unique_repo: str, docker_config_dir: Path
) -> None:
    seed_image(basic_registry, unique_repo, "v1", files={"hello.txt": b"hi"})
    with Transport(basic_registry.host, _creds(basic_registry)) as t:
        r = t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))
        raise_for_status(r, f"list tags of {unique_repo}")
        assert r.json()["tags"] == ["v1"]
        assert t.auth_scheme == "basic"
        with pytest.raises(ManifestNotFoundError):
            raise_for_status(t.request("GET", f"/v2/{unique_repo}/manifests/nope"), "pull x")
    with Transport(basic_registry.host, _creds(basic_registry, password="wrong")) as t:
        with pytest.raises(AuthenticationError) as info:
            t.request("GET", "/v2/")
        assert f"registry {basic_registry.host} refused the credentials for user alice" in str(
            info.value)
        assert "docker login" in str(info.value)
    with Transport(basic_registry.host) as t:
        with pytest.raises(AuthenticationError, match="requires a username and password"):
            t.request("GET", "/v2/")


def test_basic_registry_from_docker_config_helper(
    basic_registry: RegistryService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixtures = Path(__file__).parent / "fixtures"
    store = tmp_path / "store.json"
    store.write_text(json.dumps({basic_registry.host: {
        "Username": basic_registry.username, "Secret": basic_registry.password}}))
    (tmp_path / "config.json").write_text(json.dumps(
        {"credHelpers": {basic_registry.host: "regnbtest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("REGNBTEST_CREDS", str(store))
    monkeypatch.setenv("PATH", f"{fixtures}{os.pathsep}{os.environ['PATH']}")
    with Transport(basic_registry.host) as t:
        assert t.ping().status_code == 200


def test_bearer_good_wrong_missing(
    token_registry: RegistryService, unique_repo: str, docker_config_dir: Path
) -> None:
    seed_image(token_registry, unique_repo, "v1", files={"a.txt": b"a"})
    with Transport(token_registry.host, _creds(token_registry)) as t:
        r = t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))
        raise_for_status(r, "list tags")
        assert r.json()["tags"] == ["v1"]
        assert t.auth_scheme == "bearer"
        # A request without scopes still works: the challenge's scope is asked for.
        r = t.request("HEAD", f"/v2/{unique_repo}/manifests/v1", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200
        assert t.ping().status_code == 200
    with Transport(token_registry.host, _creds(token_registry, password="wrong")) as t:
        with pytest.raises(AuthenticationError) as info:
            t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))
        assert "refused the credentials for user alice" in str(info.value)
    with Transport(token_registry.host) as t:
        with pytest.raises(AuthenticationError) as info:
            t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))
        text = str(info.value)
        assert "anonymous access is not allowed to pull repository" in text
        assert "credentials=" in text and "docker login" in text


def test_bearer_without_scopes_uses_the_challenge_scope(
    token_registry: RegistryService, unique_repo: str, docker_config_dir: Path
) -> None:
    other = unique_repo + "-b"
    with Transport(token_registry.host, _creds(token_registry)) as t:
        # A token for one repository is cached; the next request names no scopes.
        assert t.request("GET", f"/v2/{unique_repo}/tags/list",
                         scopes=_pull(unique_repo)).status_code == 404
        for _ in range(3):
            assert t.request("GET", f"/v2/{other}/tags/list").status_code == 404
            assert t.request("GET", f"/v2/{unique_repo}/tags/list").status_code == 404
    # One token per repository, none fetched again while alternating.
    for repo in (unique_repo, other):
        asked = [e for e in _recent_for(token_registry, repo)
                 if e["scopes"] == [f"repository:{repo}:pull"]]
        assert len(asked) == 1


def test_bearer_anonymous_pull_on_public(
    token_registry: RegistryService, unique_repo: str, docker_config_dir: Path
) -> None:
    repo = "public/" + unique_repo.split("/", 1)[1]
    digest = seed_image(token_registry, repo, "v1", files={"p.txt": b"public"})
    with Transport(token_registry.host) as t:
        r = t.request("GET", f"/v2/{repo}/manifests/{digest}", scopes=_pull(repo),
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        raise_for_status(r, f"pull {repo}@{digest}")
        assert r.headers["Docker-Content-Digest"] == digest
        with pytest.raises(AuthenticationError, match="anonymous access is not allowed to"):
            t.request("POST", f"/v2/{repo}/blobs/uploads/",
                      scopes=[f"repository:{repo}:pull,push"])


def test_bearer_reader_denied_push(
    token_registry: RegistryService, unique_repo: str, docker_config_dir: Path
) -> None:
    seed_image(token_registry, unique_repo, "v1", files={"r.txt": b"r"})
    reader = _creds(token_registry, "reader")
    with Transport(token_registry.host, reader) as t:
        r = t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))
        assert r.status_code == 200
        for scopes in ([f"repository:{unique_repo}:pull,push"], []):
            with pytest.raises(AuthenticationError) as info:
                t.request("POST", f"/v2/{unique_repo}/blobs/uploads/", scopes=scopes)
            text = str(info.value)
            assert "user reader is not allowed to" in text and "push" in text
    # alice may push: the same call starts an upload.
    with Transport(token_registry.host, _creds(token_registry)) as t:
        r = t.request("POST", f"/v2/{unique_repo}/blobs/uploads/",
                      scopes=[f"repository:{unique_repo}:pull,push"])
        assert r.status_code == 202
        t.request("DELETE", r.headers["Location"], scopes=[f"repository:{unique_repo}:push"])


def test_bearer_pre_obtained_token(
    token_registry: RegistryService, unique_repo: str, docker_config_dir: Path
) -> None:
    seed_image(token_registry, unique_repo, "v1", files={"t.txt": b"t"})
    token = _direct_token(token_registry, _pull(unique_repo))
    before = len(_recent_for(token_registry, unique_repo))
    with Transport(token_registry.host, RegistryCredentials(token=token)) as t:
        for _ in range(3):
            r = t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))
            assert r.status_code == 200
        assert len(_recent_for(token_registry, unique_repo)) == before  # sent as is
        with pytest.raises(AuthenticationError):
            t.request("POST", f"/v2/{unique_repo}/blobs/uploads/",
                      scopes=[f"repository:{unique_repo}:push"])


def test_bearer_identity_token(
    token_registry: RegistryService, unique_repo: str, docker_config_dir: Path
) -> None:
    assert token_registry.realm
    answer = requests.post(token_registry.realm, data={
        "grant_type": "password", "username": "alice", "password": token_registry.users["alice"],
        "service": token_registry.service, "access_type": "offline", "scope": "",
    }, timeout=5).json()
    creds = RegistryCredentials(identity_token=answer["refresh_token"],
                                registry_url=token_registry.host)
    with Transport(token_registry.host, creds) as t:
        r = t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))
        assert r.status_code == 404  # authorised; the repository does not exist
        assert isinstance(error_from_response(r, "list tags"), ImageNotFoundError)
    grants = [e["grant"] for e in _recent_for(token_registry, unique_repo)]
    assert grants == ["refresh_token"]
    bad = RegistryCredentials(identity_token="not-a-refresh-token")
    with Transport(token_registry.host, bad) as t:
        with pytest.raises(AuthenticationError, match="refused the credentials for the identity"):
            t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))


def test_bearer_token_cached_and_not_stampeded(
    token_registry: RegistryService, unique_repo: str, docker_config_dir: Path
) -> None:
    # A repository nobody else touches: every token asked for it is ours.
    with Transport(token_registry.host, _creds(token_registry)) as t:
        for _ in range(10):
            assert t.request("GET", f"/v2/{unique_repo}/tags/list",
                             scopes=_pull(unique_repo)).status_code == 404
    assert len(_recent_for(token_registry, unique_repo)) == 1
    other = unique_repo + "-threads"
    statuses: list[int] = []
    with Transport(token_registry.host, _creds(token_registry)) as t:
        def work() -> None:
            statuses.append(t.request("GET", f"/v2/{other}/tags/list",
                                      scopes=_pull(other)).status_code)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert statuses == [404] * 16
    assert len(_recent_for(token_registry, other)) == 1


def test_redirect_from_registry_to_storage_drops_authorization(
    serve: Callable[..., Server], token_registry: RegistryService, unique_repo: str,
    docker_config_dir: Path,
) -> None:
    """A front for the token registry redirects blob GETs to a 'storage' host."""
    digest = seed_image(token_registry, unique_repo, "v1", files={"s.txt": b"storage"})
    storage = serve(lambda hit, n: (200, {}, b"from-storage"), host="127.0.0.2")

    def front(hit: Hit, n: int) -> Reply:
        upstream = requests.request(
            hit.method, f"{token_registry.url}{hit.path}", data=hit.body or None,
            headers={k: v for k, v in hit.headers.items() if k.lower() != "host"},
            allow_redirects=False, timeout=10,
        )
        if upstream.status_code == 200 and "/blobs/" in hit.path:
            return 307, {"Location": f"http://{storage.netloc}/blob?sig=abc"}, b""
        keep = {k: v for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                     "content-encoding")}
        return upstream.status_code, keep, upstream.content

    registry = serve(front)
    with Transport(registry.netloc, _creds(token_registry)) as t:
        manifest = t.request("GET", f"/v2/{unique_repo}/manifests/{digest}",
                             scopes=_pull(unique_repo),
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        layer = manifest.json()["layers"][0]["digest"]
        r = t.request("GET", f"/v2/{unique_repo}/blobs/{layer}", scopes=_pull(unique_repo))
    assert r.content == b"from-storage"
    assert registry.hits[-1].headers["Authorization"].startswith("Bearer ")
    [hit] = storage.hits
    assert "Authorization" not in hit.headers


def test_debug_logs_and_errors_never_contain_secrets(
    basic_registry: RegistryService, token_registry: RegistryService, unique_repo: str,
    caplog: pytest.LogCaptureFixture, docker_config_dir: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    secrets_: list[str] = []
    for reg in (basic_registry, token_registry):
        creds = _creds(reg)
        secrets_ += [creds.password, creds.get_auth_header().split()[1]]
        with Transport(reg.host, creds) as t:
            r = t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))
            texts += [str(error_from_response(r, "list tags")), repr(t), repr(t.auth),
                      repr(t.credentials), str(t.credentials)]
            secrets_ += [tok.value for tok in t.auth._tokens.values()]
        wrong = RegistryCredentials(username="alice", password="Wr0ng-Secret-Value")
        secrets_ += ["Wr0ng-Secret-Value"]
        with Transport(reg.host, wrong) as t:
            with pytest.raises(AuthenticationError) as info:
                t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=_pull(unique_repo))
            texts += [str(info.value), repr(info.value)]
    token = _direct_token(token_registry, _pull(unique_repo), user="reader")
    secrets_.append(token)
    with Transport(token_registry.host, RegistryCredentials(token=token)) as t:
        with pytest.raises(AuthenticationError) as info:
            t.request("POST", f"/v2/{unique_repo}/blobs/uploads/",
                      scopes=[f"repository:{unique_repo}:push"])
        texts += [str(info.value), repr(t.credentials)]
    assert len(secrets_) >= 7 and all(secrets_)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    everything = caplog.text + "\n".join(texts)
    for secret in secrets_:
        assert secret not in everything
