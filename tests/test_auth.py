"""Unit tests of registry_nb.auth: credentials, docker config, challenges, token flow."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_nb.errors import (
    AuthenticationError,
    InsecureRegistryError,
    RegistryError,
    RegistryHTTPError,
)
from registry_nb.remote import (
    DOCKER_HUB_CONFIG_KEY,
    Challenge,
    RegistryAuth,
    RegistryCredentials,
    credentials_from_docker_config,
    load_docker_config,
    normalize_scopes,
    parse_www_authenticate,
    repository_scope,
)

FIXTURES = Path(__file__).parent / "fixtures"


# ------------------------------------------------------------- credentials


def test_contract_basic_header() -> None:
    creds = RegistryCredentials(username="alice", password="s3cret", registry_url="127.0.0.1:5000")
    assert creds.get_auth_header() == "Basic YWxpY2U6czNjcmV0"


def test_contract_token() -> None:
    assert RegistryCredentials(token="T", registry_url="ghcr.io").get_auth_header() == "Bearer T"
    creds = RegistryCredentials(token="T", registry_url="ghcr.io")
    assert creds.username == "" and creds.password == ""
    assert RegistryCredentials(username="a", password="b", token="T").get_auth_header() == (
        "Bearer T"
    )
    assert RegistryCredentials().get_auth_header() == ""


def test_repr_and_str_mask_secrets() -> None:
    creds = RegistryCredentials(
        username="alice", password="s3cret", registry_url="127.0.0.1:5000",
        token="tok-XYZ", identity_token="idt-ABC",
    )
    for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}", repr([creds])):
        assert "s3cret" not in text and "tok-XYZ" not in text and "idt-ABC" not in text
        assert "password='***'" in text
        assert "username='alice'" in text
    assert "password=''" in repr(RegistryCredentials(token="x"))


def test_registry_property_normalises() -> None:
    assert RegistryCredentials(registry_url="https://index.docker.io/v1/").registry == "docker.io"
    assert RegistryCredentials(registry_url="").registry == "docker.io"
    assert RegistryCredentials(registry_url="http://127.0.0.1:5000/").registry == "127.0.0.1:5000"


# ----------------------------------------------------------- docker config


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write_config(folder: Path, data: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture
def helper_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Puts tests/fixtures on PATH and returns the helper's JSON store file."""
    store = tmp_path / "helper-store.json"
    store.write_text("{}")
    monkeypatch.setenv("PATH", f"{FIXTURES}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("REGNBTEST_CREDS", str(store))
    return store


def test_load_missing_config_is_empty(docker_config_dir: Path) -> None:
    assert load_docker_config() == {}
    assert credentials_from_docker_config("127.0.0.1:5000") is None


def test_config_auth_field(docker_config_dir: Path) -> None:
    _write_config(docker_config_dir, {"auths": {"127.0.0.1:5001": {"auth": _b64("alice:pa:ss")}}})
    creds = credentials_from_docker_config("127.0.0.1:5001")
    assert creds is not None
    assert (creds.username, creds.password) == ("alice", "pa:ss")
    assert creds.registry_url == "127.0.0.1:5001"
    assert credentials_from_docker_config("127.0.0.1:5002") is None


@pytest.mark.parametrize(
    "key",
    [
        "http://127.0.0.1:5001",
        "https://127.0.0.1:5001/v2/",
        "127.0.0.1:5001/v1/",
        "127.0.0.1:5001",
    ],
)
def test_config_keys_in_url_forms(docker_config_dir: Path, key: str) -> None:
    _write_config(docker_config_dir, {"auths": {key: {"username": "bob", "password": "pw"}}})
    creds = credentials_from_docker_config("http://127.0.0.1:5001/")
    assert creds is not None and (creds.username, creds.password) == ("bob", "pw")


@pytest.mark.parametrize("query", ["docker.io", "", "index.docker.io", "registry.hub.docker.com"])
def test_config_docker_hub_key(docker_config_dir: Path, query: str) -> None:
    auths = {DOCKER_HUB_CONFIG_KEY: {"auth": _b64("hubu:hubp")}}
    _write_config(docker_config_dir, {"auths": auths})
    creds = credentials_from_docker_config(query)
    assert creds is not None and creds.username == "hubu"


def test_config_identity_token(docker_config_dir: Path) -> None:
    _write_config(
        docker_config_dir,
        {"auths": {"reg.example": {"auth": _b64("u:"), "identitytoken": "refresh-123"}}},
    )
    creds = credentials_from_docker_config("reg.example")
    assert creds is not None and creds.identity_token == "refresh-123"
    assert "refresh-123" not in repr(creds)


def test_config_explicit_path_and_mapping(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "x", {"auths": {"h:1": {"auth": _b64("a:b")}}})
    assert credentials_from_docker_config("h:1", path).username == "a"  # type: ignore[union-attr]
    assert credentials_from_docker_config("h:1", str(path.parent)).password == "b"  # type: ignore[union-attr]
    config = {"auths": {"h:1": {"username": "m", "password": "n"}}}
    assert credentials_from_docker_config("h:1", config).username == "m"  # type: ignore[union-attr]
    assert RegistryCredentials.from_docker_config("h:1", path).username == "a"  # type: ignore[union-attr]


def test_config_empty_entry_is_none(docker_config_dir: Path) -> None:
    _write_config(docker_config_dir, {"auths": {"h:1": {}}})
    assert credentials_from_docker_config("h:1") is None


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "top level"),
        ({"auths": []}, '"auths" is not an object'),
        ({"auths": {"h:1": "x"}}, "'h:1' is not an object"),
        ({"auths": {"h:1": {"auth": "%%%not-base64"}}}, "not base64"),
        ({"auths": {"h:1": {"auth": _b64("nocolon")}}}, "user:password"),
        ({"credsStore": 5}, '"credsStore" is not a string'),
        ({"auths": {"h:1": {"username": 5}}}, '"username"'),
    ],
)
def test_config_malformed(docker_config_dir: Path, content: Any, fragment: str) -> None:
    path = _write_config(docker_config_dir, content)
    with pytest.raises(RegistryError) as info:
        credentials_from_docker_config("h:1")
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_cred_helper_for_host(docker_config_dir: Path, helper_store: Path) -> None:
    helper_store.write_text(json.dumps({"127.0.0.1:5001": {"Username": "alice", "Secret": "hs"}}))
    _write_config(
        docker_config_dir,
        {"credHelpers": {"127.0.0.1:5001": "regnbtest"},
         "auths": {"127.0.0.1:5001": {"auth": _b64("other:pw")}}},
    )
    creds = credentials_from_docker_config("127.0.0.1:5001")
    assert creds is not None and (creds.username, creds.password) == ("alice", "hs")


def test_creds_store_and_hub_server_url(docker_config_dir: Path, helper_store: Path) -> None:
    helper_store.write_text(json.dumps({DOCKER_HUB_CONFIG_KEY: {"Username": "h", "Secret": "s"}}))
    _write_config(docker_config_dir, {"credsStore": "regnbtest"})
    creds = credentials_from_docker_config("registry.hub.docker.com")
    assert creds is not None and creds.username == "h"
    # Not in the store: falls back to auths, then None.
    assert credentials_from_docker_config("127.0.0.1:5009") is None


def test_cred_helper_identity_token(docker_config_dir: Path, helper_store: Path) -> None:
    helper_store.write_text(json.dumps({"ghcr.example": {"Username": "<token>", "Secret": "idt"}}))
    _write_config(docker_config_dir, {"credHelpers": {"ghcr.example": "regnbtest"}})
    creds = credentials_from_docker_config("ghcr.example")
    assert creds is not None
    assert creds.identity_token == "idt" and creds.username == "" and creds.password == ""


def test_cred_helper_missing_binary(docker_config_dir: Path, helper_store: Path) -> None:
    _write_config(docker_config_dir, {"credsStore": "nosuchhelper-xyz"})
    with pytest.raises(AuthenticationError) as info:
        credentials_from_docker_config("127.0.0.1:5001")
    text = str(info.value)
    assert "docker-credential-nosuchhelper-xyz" in text
    assert "PATH" in text and "credentials=" in text
    assert str(docker_config_dir / "config.json") in text


def test_cred_helper_error(docker_config_dir: Path, helper_store: Path) -> None:
    helper_store.write_text(json.dumps({"h:1": {"fail": "keychain is locked"}}))
    _write_config(docker_config_dir, {"credHelpers": {"h:1": "regnbtest"}})
    with pytest.raises(AuthenticationError) as info:
        credentials_from_docker_config("h:1")
    assert "docker-credential-regnbtest" in str(info.value)
    assert "keychain is locked" in str(info.value)


def test_cred_helper_garbage_output_hides_it(docker_config_dir: Path, helper_store: Path) -> None:
    helper_store.write_text(json.dumps({"h:1": {"raw": "Secret=topsecret-value not json"}}))
    _write_config(docker_config_dir, {"credHelpers": {"h:1": "regnbtest"}})
    with pytest.raises(AuthenticationError) as info:
        credentials_from_docker_config("h:1")
    assert "topsecret-value" not in str(info.value)
    assert "not a JSON object" in str(info.value)


# -------------------------------------------------------------- challenges


def test_parse_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    [ch] = parse_www_authenticate(header)
    assert ch.scheme == "bearer"
    assert ch.realm == "https://auth.example/token"
    assert ch.service == "registry.example"
    assert ch.scopes == ["repository:samalba/my-app:pull,push"]
    assert ch.error is None


def test_parse_case_order_spaces_and_escapes() -> None:
    header = (
        'BEARER  Scope="repository:a:pull repository:b:push" , error=insufficient_scope,'
        ' Realm = "http://h/t\\"x\\"",SERVICE=svc'
    )
    [ch] = parse_www_authenticate(header)
    assert ch.scheme == "bearer"
    assert ch.realm == 'http://h/t"x"'
    assert ch.service == "svc"
    assert ch.error == "insufficient_scope"
    assert ch.scopes == ["repository:a:pull", "repository:b:push"]


def test_parse_several_challenges() -> None:
    header = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
    chs = parse_www_authenticate(header)
    assert [c.scheme for c in chs] == ["newauth", "basic"]
    assert chs[0].params == {"realm": "apps", "type": "1", "title": 'Login to "apps"'}
    assert chs[1].realm == "simple"


def test_parse_token68_and_bare_scheme() -> None:
    chs = parse_www_authenticate("Negotiate abc123==, Basic")
    assert [(c.scheme, c.token68) for c in chs] == [("negotiate", "abc123=="), ("basic", None)]


@pytest.mark.parametrize("header", ["", None, ",,,", '"', "=", '"unterminated', "  ", b"Basic"])
def test_parse_garbage(header: Any) -> None:
    result = parse_www_authenticate(header)
    assert isinstance(result, list)
    assert all(isinstance(c, Challenge) for c in result)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_parse_never_raises_on_text(header: str) -> None:
    result = parse_www_authenticate(header)
    assert all(isinstance(c, Challenge) and c.scheme == c.scheme.lower() for c in result)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('Bb ear,="\\=realmscope:/-_x\t')))
def test_parse_never_raises_on_challenge_like_text(header: str) -> None:
    assert isinstance(parse_www_authenticate(header), list)


_tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+!",
                  min_size=1, max_size=12)
_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(_tokens, st.dictionaries(_tokens.map(str.lower), _values, min_size=1,
                                           max_size=4)),
        min_size=1, max_size=3,
    )
)
def test_parse_round_trip(challenges: list[tuple[str, dict[str, str]]]) -> None:
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = ", ".join(
        f"{scheme} " + ", ".join(f"{k}={quote(v)}" for k, v in params.items())
        for scheme, params in challenges
    )
    parsed = parse_www_authenticate(header)
    assert [(c.scheme, c.params) for c in parsed] == [
        (s.lower(), p) for s, p in challenges
    ]


def test_scopes() -> None:
    assert repository_scope("a/b") == "repository:a/b:pull"
    assert repository_scope("a", "pull", "push") == "repository:a:pull,push"
    assert normalize_scopes(["repository:a:push", "repository:a:pull", "registry:catalog:*",
                             "repository:a:pull"]) == (
        "registry:catalog:*", "repository:a:pull,push"
    )
    assert normalize_scopes(["repository:x:pull repository:y:pull"]) == (
        "repository:x:pull", "repository:y:pull"
    )


# -------------------------------------------------------- auth flow (fakes)


def _response(status: int, body: Any = b"", headers: dict[str, str] | None = None,
              request_auth: str | None = None, url: str = "http://127.0.0.1:5002/v2/") -> Any:
    resp = requests.Response()
    resp.status_code = status
    resp._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp._content_consumed = True
    resp.headers.update(headers or {})
    resp.url = url
    prepared = requests.PreparedRequest()
    prepared.prepare(method="GET", url=url, headers=(
        {"Authorization": request_auth} if request_auth else {}
    ))
    resp.request = prepared
    return resp


class FakeSession:
    """Stands in for requests.Session in the token fetches."""

    def __init__(self, answers: list[Any] | None = None, delay: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers = list(answers or [])
        self.delay = delay
        self.counter = 0
        self.lock = threading.Lock()

    def _answer(self, **call: Any) -> Any:
        with self.lock:
            self.calls.append(call)
            self.counter += 1
            n = self.counter
            answer = self.answers.pop(0) if self.answers else None
        if self.delay:
            time.sleep(self.delay)
        if answer is None:
            answer = _response(200, {"token": f"tok-{n}", "expires_in": 300})
        return answer

    def get(self, url: str, **kw: Any) -> Any:
        return self._answer(method="GET", url=url, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self._answer(method="POST", url=url, **kw)


BEARER = 'Bearer realm="http://127.0.0.1:5003/token",service="regsvc",scope="repository:a:pull"'


def _challenge(scope: str = "repository:a:pull", error: str | None = None) -> str:
    extra = f',error="{error}"' if error else ""
    return f'Bearer realm="http://127.0.0.1:5003/token",service="regsvc",scope="{scope}"{extra}'


def _prepared() -> requests.PreparedRequest:
    p = requests.PreparedRequest()
    p.prepare(method="GET", url="http://127.0.0.1:5002/v2/a/tags/list")
    return p


def test_bearer_flow_fetches_and_caches() -> None:
    session = FakeSession()
    creds = RegistryCredentials(username="alice", password="pw", registry_url="127.0.0.1:5002")
    auth = RegistryAuth("127.0.0.1:5002", creds, session=session)  # type: ignore[arg-type]
    req = _prepared()
    auth.apply(req, ["repository:a:pull"])
    assert "Authorization" not in req.headers
    assert auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER}), ["repository:a:pull"])
    [call] = session.calls
    assert call["method"] == "GET" and call["url"] == "http://127.0.0.1:5003/token"
    assert ("service", "regsvc") in call["params"] and ("scope", "repository:a:pull") in call[
        "params"]
    assert call["auth"] == ("alice", "pw")
    for _ in range(5):
        req = _prepared()
        auth.apply(req, ["repository:a:pull"])
        assert req.headers["Authorization"] == "Bearer tok-1"
    assert len(session.calls) == 1
    # A narrower request is covered by a broader token; a new scope is fetched up front.
    req = _prepared()
    auth.apply(req, ["repository:b:pull"])
    assert req.headers["Authorization"] == "Bearer tok-2"
    assert ("scope", "repository:b:pull") in session.calls[-1]["params"]


def test_bearer_every_scope_requested_and_anonymous() -> None:
    session = FakeSession()
    auth = RegistryAuth("127.0.0.1:5002", None, session=session)  # type: ignore[arg-type]
    auth.on_401(_response(401, headers={"WWW-Authenticate": _challenge("repository:c:pull")}),
                ["repository:a:pull,push", "repository:b:pull"])
    params = session.calls[0]["params"]
    assert [v for k, v in params if k == "scope"] == [
        "repository:a:pull,push", "repository:b:pull", "repository:c:pull"
    ]
    assert session.calls[0]["auth"] is None
    assert not any(k == "account" for k, _ in params)


def test_token_service_refuses() -> None:
    session = FakeSession([_response(401, {"details": "bad"})])
    creds = RegistryCredentials(username="alice", password="wrong-pw")
    auth = RegistryAuth("127.0.0.1:5002", creds, session=session)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError) as info:
        auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER}))
    assert "refused the credentials for user alice" in str(info.value)
    assert "docker login" in str(info.value)
    assert "wrong-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (_response(200, b"<html>not json</html>"), AuthenticationError),
        (_response(200, {"nothing": 1}), AuthenticationError),
        (_response(200, {"token": ""}), AuthenticationError),
        (_response(503, b"down"), RegistryHTTPError),
        (_response(500, {"token": "x"}), RegistryHTTPError),
    ],
)
def test_token_service_errors_are_typed(answer: Any, error: type[Exception]) -> None:
    auth = RegistryAuth("127.0.0.1:5002", None, session=FakeSession([answer]))  # type: ignore[arg-type]
    with pytest.raises(error):
        auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER}))


def test_access_token_and_identity_token_post() -> None:
    session = FakeSession([_response(200, {"access_token": "acc", "refresh_token": "r2"})])
    creds = RegistryCredentials(identity_token="idt-1", registry_url="127.0.0.1:5002")
    auth = RegistryAuth("127.0.0.1:5002", creds, session=session)  # type: ignore[arg-type]
    auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER}))
    call = session.calls[0]
    assert call["method"] == "POST"
    assert call["data"]["grant_type"] == "refresh_token"
    assert call["data"]["refresh_token"] == "idt-1"
    assert call["data"]["service"] == "regsvc"
    assert call["data"]["scope"] == "repository:a:pull"
    req = _prepared()
    auth.apply(req, ["repository:a:pull"])
    assert req.headers["Authorization"] == "Bearer acc"


def test_expires_in_minimum_and_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("registry_nb.remote.auth.time.monotonic", lambda: clock[0])
    session = FakeSession([_response(200, {"token": "short", "expires_in": 5})])
    auth = RegistryAuth("127.0.0.1:5002", None, session=session)  # type: ignore[arg-type]
    auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER}))
    clock[0] += 40  # beyond 5 s, within the 60 s minimum
    req = _prepared()
    auth.apply(req, ["repository:a:pull"])
    assert req.headers["Authorization"] == "Bearer short"
    clock[0] += 15  # 55 s: within the refresh margin → fetched again up front
    req = _prepared()
    auth.apply(req, ["repository:a:pull"])
    assert req.headers["Authorization"] == "Bearer tok-2"
    assert len(session.calls) == 2


def test_issued_at_shortens_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    issued = time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z", time.gmtime(time.time() - 250))
    session = FakeSession([_response(200, {"token": "old", "expires_in": 300,
                                           "issued_at": issued})])
    auth = RegistryAuth("127.0.0.1:5002", None, session=session)  # type: ignore[arg-type]
    auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER}))
    token = next(iter(auth._tokens.values()))
    remaining = token.expires_at - time.monotonic()
    assert 40 < remaining < 55


def test_rejected_token_is_refetched_once() -> None:
    session = FakeSession()
    auth = RegistryAuth("127.0.0.1:5002", None, session=session)  # type: ignore[arg-type]
    auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER}), ["repository:a:pull"])
    # The registry rejects tok-1 (e.g. restarted with new keys): a new one is fetched.
    auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER},
                          request_auth="Bearer tok-1"), ["repository:a:pull"])
    req = _prepared()
    auth.apply(req, ["repository:a:pull"])
    assert req.headers["Authorization"] == "Bearer tok-2"


def test_insufficient_scope_adds_challenge_scope() -> None:
    session = FakeSession()
    auth = RegistryAuth("127.0.0.1:5002", RegistryCredentials("alice", "pw"),
                        session=session)  # type: ignore[arg-type]
    auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER}), ["repository:a:pull"])
    chal = _challenge("repository:a:pull,push", "insufficient_scope")
    assert auth.on_401(_response(401, headers={"WWW-Authenticate": chal},
                                 request_auth="Bearer tok-1"), ["repository:a:pull"])
    assert ("scope", "repository:a:pull,push") in session.calls[-1]["params"]
    # Same token refused again for scopes it was asked for: not allowed, no new fetch.
    with pytest.raises(AuthenticationError) as info:
        auth.on_401(_response(401, headers={"WWW-Authenticate": chal},
                              request_auth="Bearer tok-2"), ["repository:a:pull"])
    assert "user alice is not allowed to pull and push repository a" in str(info.value)
    assert len(session.calls) == 2


def test_basic_flow() -> None:
    creds = RegistryCredentials(username="alice", password="pw")
    auth = RegistryAuth("127.0.0.1:5001", creds)
    basic = {"WWW-Authenticate": 'Basic realm="Registry Realm"'}
    assert auth.on_401(_response(401, headers=basic))
    req = _prepared()
    auth.apply(req)
    assert req.headers["Authorization"] == creds.get_auth_header()
    with pytest.raises(AuthenticationError, match="refused the credentials for user alice"):
        auth.on_401(_response(401, headers=basic, request_auth=creds.get_auth_header()))
    with pytest.raises(AuthenticationError, match="requires a username and password"):
        RegistryAuth("127.0.0.1:5001", None).on_401(_response(401, headers=basic))
    with pytest.raises(AuthenticationError, match="without a usable challenge"):
        auth.on_401(_response(401, headers={"WWW-Authenticate": "Digest nonce=1"}))


def test_pre_obtained_token_sent_first() -> None:
    session = FakeSession()
    auth = RegistryAuth("127.0.0.1:5002", RegistryCredentials(token="pre"),
                        session=session)  # type: ignore[arg-type]
    req = _prepared()
    auth.apply(req, ["repository:a:pull"])
    assert req.headers["Authorization"] == "Bearer pre"
    with pytest.raises(AuthenticationError, match="refused the given token"):
        auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER},
                              request_auth="Bearer pre"))
    assert session.calls == []


def test_plain_http_realm_with_credentials_refused() -> None:
    auth = RegistryAuth("reg.example", RegistryCredentials("alice", "pw"), session=FakeSession())  # type: ignore[arg-type]
    chal = 'Bearer realm="http://auth.example/token",service="s"'
    with pytest.raises(InsecureRegistryError):
        auth.on_401(_response(401, headers={"WWW-Authenticate": chal}))


def test_lazy_docker_config_loader_runs_once_on_challenge() -> None:
    calls: list[int] = []

    def loader() -> RegistryCredentials:
        calls.append(1)
        return RegistryCredentials("alice", "pw")

    auth = RegistryAuth("127.0.0.1:5001", loader)
    req = _prepared()
    auth.apply(req)
    assert calls == []  # an open registry never needs the docker config
    auth.on_401(_response(401, headers={"WWW-Authenticate": "Basic realm=x"}))
    auth.apply(req)
    auth.apply(req)
    assert calls == [1] and req.headers["Authorization"].startswith("Basic ")


def test_no_stampede_of_token_fetches() -> None:
    session = FakeSession(delay=0.2)
    auth = RegistryAuth("127.0.0.1:5002", RegistryCredentials("alice", "pw"),
                        session=session)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            auth.on_401(_response(401, headers={"WWW-Authenticate": BEARER}),
                        ["repository:a:pull"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(session.calls) == 1
