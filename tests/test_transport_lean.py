"""Tests of the lean path (registry_nb.remote.lean): bodiless GETs and HEADs sent on
urllib3's pool directly, with the transport's auth flow, redirects, TLS and errors.

``Transport.lean.sent`` counts the requests that took the lean path; each test checks
which path a request took as well as what it did. The in-process servers are those of
tests/test_transport.py; the last part uses the real registries of scripts/services.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import test_transport
from helpers import RegistryService, seed_image
from requests.structures import CaseInsensitiveDict
from test_transport import ALICE, Hit, Reply, Server, _basic_route, _json, _ok

from registry_nb import ContainerRegistry
from registry_nb.errors import InsecureRegistryError, RegistryUnavailableError
from registry_nb.remote import RegistryCredentials
from registry_nb.remote.transport import RegistryWarning, Transport

# The fixtures of tests/test_transport.py: in-process servers, a TLS pair, short backoff.
serve = test_transport.serve
tls_files = test_transport.tls_files
fast_backoff = test_transport.fast_backoff


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the machine's environment (a test sets its own)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_get_and_head_take_the_lean_path_and_answer_as_requests(
    serve: Callable[..., Server],
) -> None:
    def route(hit: Hit, n: int) -> Reply:
        return _json(200, {"path": hit.path}, {
            "Link": '</v2/x/tags/list?last=b&n=2>; rel="next"',
            "Docker-Content-Digest": "sha256:abc"})

    server = serve(route)
    with Transport(server.netloc, use_docker_config=False) as t:
        r = t.request("GET", "/v2/x/tags/list", params={"n": 2, "skip": None})
        head = t.request("HEAD", "/v2/x/manifests/v1", headers={"Accept": "a/b"})
        with t.request("GET", "/v2/x/tags/list?last=a%2Fb", params={"n": [3, 4]},
                       stream=True) as streamed:
            chunks = b"".join(streamed.iter_content(4))
        put = t.request("PUT", "/v2/x/manifests/v1", data=b"{}")
        assert t.lean.sent == 3
    assert isinstance(r, requests.Response) and isinstance(r.headers, CaseInsensitiveDict)
    assert r.json() == {"path": "/v2/x/tags/list?n=2"}
    assert r.url == f"http://{server.netloc}/v2/x/tags/list?n=2"
    assert r.links["next"]["url"] == "/v2/x/tags/list?last=b&n=2"
    assert r.headers["docker-content-digest"] == "sha256:abc" and r.encoding == "utf-8"
    assert r.reason == "OK" and r.request.method == "GET" and r.request.path_url == \
        "/v2/x/tags/list?n=2"
    assert head.status_code == 200 and head.content == b""
    assert server.hits[1].method == "HEAD" and server.hits[1].headers["Accept"] == "a/b"
    assert chunks == b'{"path": "/v2/x/tags/list?last=a%2Fb&n=3&n=4"}'
    assert put.status_code == 200
    # The same headers as requests sends.
    for hit in server.hits:
        assert hit.headers["Accept-Encoding"] == "identity"
        assert hit.headers["User-Agent"].startswith("registry-nb/")
        assert hit.headers["Connection"] == "keep-alive"


def test_urls_requests_would_rewrite_take_its_path(serve: Callable[..., Server]) -> None:
    server = serve(lambda hit, n: _json(200, {"path": hit.path}))
    with Transport(server.netloc, use_docker_config=False) as t:
        # requote_uri turns %41 into A and quotes the space: requests does it.
        assert t.request("GET", "/v2/%41 b").json() == {"path": "/v2/A%20b"}
        assert t.lean.sent == 0
        assert t.request("GET", "/v2/a", params=[("n", "1")]).json() == {"path": "/v2/a?n=1"}
        assert t.lean.sent == 0


def test_basic_challenge_redirect_to_other_origin_drops_authorization(
    serve: Callable[..., Server],
) -> None:
    storage = serve(lambda hit, n: (200, {}, b"blob-bytes"), host="127.0.0.2")
    registry = serve(_basic_route(f"http://{storage.netloc}/storage/blob?sig=1"))
    with Transport(registry.netloc, ALICE) as t:
        r = t.request("GET", "/v2/redirect/blobs/sha256:x")
        # 401, the retry with credentials (307), the storage GET: all lean.
        assert t.lean.sent == 3
    assert r.content == b"blob-bytes" and r.url.startswith(f"http://{storage.netloc}/")
    assert "Authorization" not in registry.hits[0].headers
    assert registry.hits[1].headers["Authorization"] == ALICE.get_auth_header()
    [hit] = storage.hits
    assert "Authorization" not in hit.headers and hit.path == "/storage/blob?sig=1"


def test_a_proxy_from_the_environment_falls_back_to_requests(
    serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = serve(lambda hit, n: _json(200, {"proxied": hit.path}))
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.netloc}")
    with Transport("127.0.0.1:9", use_docker_config=False) as t:  # nothing listens there
        r = t.request("GET", "/v2/")
        assert t.lean.sent == 0
    assert r.json() == {"proxied": "http://127.0.0.1:9/v2/"}
    # NO_PROXY for the origin: the lean path, straight to the registry.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = serve(_ok)
    with Transport(server.netloc, use_docker_config=False) as t:
        assert t.request("GET", "/v2/").status_code == 200
        assert t.lean.sent == 1
    assert len(proxy.hits) == 1


def test_a_client_certificate_or_cookies_fall_back_to_requests(
    serve: Callable[..., Server], tls_files: tuple[Path, Path],
) -> None:
    server = serve(lambda hit, n: (200, {"Set-Cookie": "lb=node-2; Path=/"}, b"ok"))
    with Transport(server.netloc, use_docker_config=False) as t:
        t.request("GET", "/v2/")
        assert t.lean.sent == 1
        # The cookie the lean path stored goes back, through requests.
        t.request("GET", "/v2/")
        assert t.lean.sent == 1 and server.hits[1].headers["Cookie"] == "lb=node-2"
    with Transport(server.netloc, use_docker_config=False) as t:
        t.session.cert = str(tls_files[0])
        assert t.request("GET", "/v2/").status_code == 200
        assert t.lean.sent == 0


def test_tls_on_the_lean_path_keeps_its_typed_errors(
    serve: Callable[..., Server], tls_files: tuple[Path, Path],
) -> None:
    cert = tls_files[0]
    url = test_transport.tls_url(serve, tls_files)
    with Transport(url, use_docker_config=False) as t:
        with pytest.raises(InsecureRegistryError, match="could not be verified"):
            t.request("GET", "/v2/")
    with Transport(url, ca_bundle=str(cert), use_docker_config=False) as t:
        assert t.request("HEAD", "/v2/").status_code == 200
        assert t.request("GET", "/v2/").json() == {}
        assert t.lean.sent == 2
    plain = serve(_ok)
    with Transport(f"https://{plain.netloc}", retries=0, use_docker_config=False) as t:
        with pytest.raises(RegistryUnavailableError, match="TLS handshake"):
            t.request("GET", "/v2/")


def test_read_timeout_and_dropped_body_are_retried_on_the_lean_path(
    serve: Callable[..., Server],
) -> None:
    import time

    def route(hit: Hit, n: int) -> Reply:
        if n == 1:
            time.sleep(0.6)
        if n == 2:  # promises more bytes than it sends
            return 200, {"Content-Length": "100"}, b"short"
        return _json(200, {"n": n})

    server = serve(route)
    with Transport(server.netloc, use_docker_config=False, timeout=(1.0, 0.3)) as t:
        assert t.request("GET", "/v2/").json() == {"n": 3}
        assert t.lean.sent == 2  # answers: the timed-out try got none
        assert len(server.hits) == 3
    with Transport("127.0.0.1:9", retries=0, use_docker_config=False) as t:
        with pytest.raises(RegistryUnavailableError, match="Connection refused|failed"):
            t.request("GET", "/v2/")


def test_warnings_hooks_and_debug_lines_without_secrets(
    serve: Callable[..., Server], caplog: pytest.LogCaptureFixture,
) -> None:
    route = _basic_route()

    def warning(hit: Hit, n: int) -> Reply:
        status, headers, body = route(hit, n)
        return status, {**headers, "Warning": '299 - "this API is deprecated"'}, body

    server = serve(warning)
    caplog.set_level(logging.DEBUG)
    seen: list[int] = []
    with Transport(server.netloc, ALICE) as t:
        t.session.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))
        with pytest.warns(RegistryWarning, match="deprecated"):
            r = t.request("GET", "/v2/_catalog?secret=q", params={"n": 1})
        assert t.lean.sent == 2
    assert r.status_code == 200 and seen == [401, 200]
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("registry_nb")]
    assert f"GET http://{server.netloc}/v2/_catalog -> 200" in lines
    text = caplog.text
    assert "pa55-word" not in text and ALICE.get_auth_header().split()[1] not in text


# ======================================================= real registries


def test_a_cold_listing_sends_every_request_on_the_lean_path(
    open_registry: RegistryService, unique_repo: str,
) -> None:
    for tag in ("a", "b"):
        seed_image(open_registry, unique_repo, tag, files={"t.txt": tag.encode()})
    reg = ContainerRegistry(open_registry.host)
    sent: list[str] = []
    reg.client.transport.session.hooks["response"].append(
        lambda r, *a, **k: sent.append(r.request.method))
    try:
        frame = reg.registry_images_frame(unique_repo, limit=None)
        blob = frame.iloc[0]["digest"]
        assert reg.client.blob_exists(unique_repo, "sha256:" + "0" * 64) is False
    finally:
        lean = reg.client.transport.lean.sent
        reg.close()
    assert sorted(frame["tag"]) == ["a", "b"] and frame["error"].isna().all() and blob
    # tags, 2 manifests, 2 configs, 1 blob HEAD: every one lean.
    assert sent == ["GET"] * 5 + ["HEAD"] and lean == 6


def test_a_token_challenge_on_the_lean_path(
    token_registry: RegistryService, unique_repo: str, docker_config_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_image(token_registry, unique_repo, "v1", files={"t.txt": b"t"},
               creds=(token_registry.username, token_registry.password))
    creds = RegistryCredentials(username=token_registry.username,
                                password=token_registry.password)
    caplog.set_level(logging.DEBUG)
    with Transport(token_registry.host, creds) as t:
        scopes = [f"repository:{unique_repo}:pull"]
        first = t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=scopes)
        again = t.request("GET", f"/v2/{unique_repo}/tags/list", scopes=scopes)
        # 401 + retry with the token, then the cached token at once.
        assert t.lean.sent == 3
        tokens = [tok.value for tok in t.auth._tokens.values()]
    assert first.json()["tags"] == ["v1"] == again.json()["tags"]
    assert again.request.headers["Authorization"].startswith("Bearer ")
    assert tokens and all(tok not in caplog.text for tok in tokens)
    assert token_registry.password not in caplog.text
