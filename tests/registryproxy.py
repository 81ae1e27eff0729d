"""A loopback proxy that plays a real registry in front of the real distribution registry.

Registries that cannot run here (Docker Hub, GHCR, Quay, ECR, ECR Public, Artifact
Registry, ACR, GitLab, Harbor, Artifactory, Zot, Nexus) are played by this proxy, one
*mode* per registry, as ``/work/shared/docs/REGISTRIES.md`` describes them: the proxy
forwards to a real ``docker-registry`` (token or Basic auth) and changes what a client
meets on the way (challenges, token answers, pagination, error bodies, rate limits,
redirects, upload rules). ``distribution`` is a plain pass-through.

Usage::

    with RegistryProxy("ghcr", upstream) as proxy:       # upstream: an Upstream
        reg = ContainerRegistry(proxy.host, credentials=...)
        reg.load_image(layout, "test/x", "v1")
        assert proxy.sent_bytes("PATCH|PUT", "/blobs/uploads/") <= limit

Each mode (``registrymodes.py``) is a list of small :class:`Behaviour` objects, each
citing its source in REGISTRIES.md. A behaviour sees every exchange twice: ``before``
(answer it without the registry, or change the request) and ``after`` (change the
answer). The proxy logs every request (:attr:`RegistryProxy.log`: method, path,
status, request and response body bytes) so tests can bound what a client sends.

Bodies are buffered whole (test blobs are tens of MiB at most). Requests keep their
``Host`` header, so the registry builds ``Location`` and ``Link`` URLs that point back
at the proxy.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["RegistryProxy", "Upstream", "Exchange", "Reply", "Behaviour", "Mode", "Seen",
           "CdnServer", "MIB"]

MIB = 1024 * 1024
_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                  "trailer", "upgrade", "content-length", "date", "server"})
_ROUTE = re.compile(
    r"^/v2/(?P<name>.+?)/(?P<kind>tags/list|tags/reference|manifests|blobs/uploads|blobs"
    r"|referrers)(?:/(?P<ref>[^/]*))?$"
)


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Upstream:
    """The real registry behind the proxy, and its auth."""

    url: str  # http://127.0.0.1:PORT
    auth: str  # "token" or "basic"
    storage: Path  # the registry's filesystem root (tag times, tag deletes)
    token_realm: str | None = None  # the real token service's /token URL
    token_service: str | None = None  # the service name the registry expects
    username: str = ""  # an account the proxy may use itself (GHCR PAT exchange)
    password: str = ""

    @property
    def netloc(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def tag_link(self, repository: str, tag: str) -> Path:
        return (self.storage / "docker/registry/v2/repositories" / repository
                / "_manifests/tags" / tag / "current/link")


class Headers(dict):  # type: ignore[type-arg]
    """Request or response headers; :meth:`get` is case-insensitive."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        lower = name.lower()
        return next((v for k, v in self.items() if k.lower() == lower), default)

    def drop(self, name: str) -> None:
        for key in [k for k in self if k.lower() == name.lower()]:
            del self[key]

    def put(self, name: str, value: str) -> None:
        self.drop(name)
        self[name] = value


@dataclass
class Exchange:
    """One request as the proxy received it, parsed into its distribution route."""

    method: str
    path: str  # without the query
    query: list[tuple[str, str]]
    headers: Headers
    body: bytes
    name: str | None = None  # repository
    kind: str | None = None  # ping, catalog, tags, manifest, blob, upload, tagref, ...
    ref: str | None = None  # tag, digest or upload id
    notes: dict[str, Any] = field(default_factory=dict)  # behaviours leave marks here

    @classmethod
    def parse(cls, method: str, target: str, headers: Headers, body: bytes) -> Exchange:
        parts = urlsplit(target)
        ex = cls(method, parts.path, parse_qsl(parts.query, keep_blank_values=True),
                 headers, body)
        if parts.path in ("/v2/", "/v2"):
            ex.kind = "ping"
        elif parts.path == "/v2/_catalog":
            ex.kind = "catalog"
        elif (match := _ROUTE.match(parts.path)) is not None:
            ex.name = match.group("name")
            ex.ref = match.group("ref")
            ex.kind = {"tags/list": "tags", "tags/reference": "tagref", "manifests": "manifest",
                       "blobs/uploads": "upload", "blobs": "blob",
                       "referrers": "referrers"}[match.group("kind")]
        return ex

    @property
    def target(self) -> str:
        return self.path + ("?" + urlencode(self.query) if self.query else "")

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def bearer(self) -> str | None:
        value = self.headers.get("Authorization") or ""
        return value[7:] if value[:7].lower() == "bearer " else None

    @property
    def is_digest(self) -> bool:
        return bool(self.ref) and ":" in (self.ref or "")


@dataclass
class Reply:
    """An answer: status, headers, body."""

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    reason: str = ""

    @classmethod
    def of(cls, status: int, body: bytes = b"", **headers: str) -> Reply:
        return cls(status, Headers({k.replace("_", "-"): v for k, v in headers.items()}), body)

    @classmethod
    def json(cls, status: int, data: Any, **headers: str) -> Reply:
        return cls.of(status, json.dumps(data).encode(), Content_Type="application/json",
                      **headers)

    @classmethod
    def errors(cls, status: int, code: str, message: str, **headers: str) -> Reply:
        """A distribution-spec error body."""
        return cls.json(status, {"errors": [{"code": code, "message": message, "detail": None}]},
                        **headers)

    @classmethod
    def text(cls, status: int, text: str, **headers: str) -> Reply:
        return cls.of(status, text.encode(), Content_Type="text/plain; charset=utf-8", **headers)

    def data(self) -> Any:
        """The body as JSON, or None."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def error_message(self) -> str:
        """The first message of a distribution error body (or the body text)."""
        data = self.data()
        if isinstance(data, dict) and isinstance(data.get("errors"), list) and data["errors"]:
            first = data["errors"][0]
            return str(first.get("message") or first.get("code") or "")
        return self.body.decode(errors="replace").strip()

    def error_code(self) -> str | None:
        data = self.data()
        if isinstance(data, dict) and isinstance(data.get("errors"), list) and data["errors"]:
            return str(data["errors"][0].get("code"))
        return None


@dataclass
class Seen:
    """What the proxy logged of one exchange."""

    method: str
    path: str
    query: str
    status: int
    sent: int  # request body bytes the client sent
    received: int  # response body bytes the proxy answered
    headers: dict[str, str]  # request headers
    reply_headers: dict[str, str]
    server: str = "registry"  # or "cdn"


class Behaviour:
    """One way a registry differs from distribution (subclasses cite REGISTRIES.md)."""

    proxy: RegistryProxy

    def attach(self, proxy: RegistryProxy) -> None:
        self.proxy = proxy

    def reset(self) -> None:
        """Forget per-test state."""

    def before(self, ex: Exchange) -> Reply | None:
        """Answer ``ex`` without the registry (a Reply), or None to go on."""
        return None

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        """Change the answer (every answer passes here, forwarded or not)."""
        return reply

    def close(self) -> None:
        """Stop anything the behaviour started."""


def _json_429() -> Reply:
    return Reply.errors(429, "TOOMANYREQUESTS", "too many requests", Retry_After="1")


@dataclass
class Mode:
    """A registry played by the proxy: its upstream kind and its behaviours, in order."""

    name: str
    upstream: str  # "token" or "basic"
    behaviours: list[Behaviour] = field(default_factory=list)
    #: The answer :meth:`RegistryProxy.throttle` gives (the registry's 429).
    rate_limited: Callable[[], Reply] = _json_429
    #: How the registry names itself in challenges and messages.
    about: str = ""


# ---------------------------------------------------------------- the proxy


class RegistryProxy:
    """A threaded loopback server that plays ``mode`` in front of ``upstream``."""

    def __init__(self, mode: str | Mode, upstream: Upstream, *, timeout: float = 60.0,
                 upload_tripwire: int = 256 * MIB) -> None:
        if isinstance(mode, str):
            from registrymodes import make_mode

            mode = make_mode(mode)
        self.mode = mode
        self.upstream = upstream
        self.timeout = timeout
        #: Upload bytes (PATCH/PUT bodies) after which every further upload request is
        #: refused with 400 DENIED, so a client that re-sends forever stops (tests
        #: assert far lower bounds; this only keeps a failing case short).
        self.upload_tripwire = upload_tripwire
        self.log: list[Seen] = []
        #: Tokens the proxy's token endpoints handed out, and those made "expired".
        self.issued: set[str] = set()
        self.expired: set[str] = set()
        self.credentials_expired = False
        self._throttles: list[list[Any]] = []  # [pattern, times left, skips left, answer]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> RegistryProxy:
        self._server, self._thread = serve(self._handle, "registryproxy")
        for behaviour in self.mode.behaviours:
            behaviour.attach(self)
        return self

    def stop(self) -> None:
        for behaviour in self.mode.behaviours:
            behaviour.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> RegistryProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget the log, injected answers, expiries and every behaviour's state."""
        with self._lock:
            self.log.clear()
            self._throttles.clear()
            self.expired.clear()
            self.credentials_expired = False
        for behaviour in self.mode.behaviours:
            behaviour.reset()

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def behaviour(self, kind: type[Any]) -> Any:
        """The mode's behaviour of this class (tests tune it)."""
        return next(b for b in self.mode.behaviours if isinstance(b, kind))

    # -- test controls

    def throttle(self, path: str, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path matches ``path`` with the
        mode's own 429."""
        self.inject(path, self.mode.rate_limited, times=times)

    def inject(self, path: str, answer: Callable[[], Reply], *, times: int = 1,
               skip: int = 0) -> None:
        """Let ``skip`` requests whose path matches ``path`` through, then answer the
        next ``times`` with ``answer()`` (the mode's behaviours still shape it)."""
        with self._lock:
            self._throttles.append([re.compile(path), times, skip, answer])

    def expire_tokens(self) -> None:
        """Every token handed out so far is now expired (the mode decides the answer)."""
        with self._lock:
            self.expired |= self.issued

    def expire_credentials(self) -> None:
        """The client's (Basic) credentials are now expired (ECR's 12-hour password)."""
        self.credentials_expired = True

    # -- what the log says

    def requests(self, method: str | None = None, path: str = "") -> list[Seen]:
        """Logged exchanges whose method matches ``method`` (a regex) and path ``path``."""
        pattern = re.compile(path)
        with self._lock:
            log = list(self.log)
        return [s for s in log if (method is None or re.fullmatch(method, s.method))
                and pattern.search(s.path + ("?" + s.query if s.query else ""))]

    def sent_bytes(self, method: str | None = None, path: str = "") -> int:
        """Request body bytes the client sent to matching requests."""
        return sum(s.sent for s in self.requests(method, path))

    def received_bytes(self, method: str | None = None, path: str = "") -> int:
        """Response body bytes the proxy (and its CDN) answered to matching requests."""
        return sum(s.received for s in self.requests(method, path))

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.log.append(seen)

    # -- the registry

    def forward(self, ex: Exchange, *, method: str | None = None, target: str | None = None,
                headers: dict[str, str] | None = None, body: bytes | None = None) -> Reply:
        """Send ``ex`` (or a variation) to the real registry and return its answer."""
        host, port = self.upstream.netloc
        send_headers = Headers(ex.headers if headers is None else headers)
        data = ex.body if body is None else body
        return http_call(host, port, method or ex.method, target or ex.target, send_headers,
                         data, self.timeout)

    def _handle(self, method: str, target: str, headers: Headers, body: bytes) -> Reply:
        ex = Exchange.parse(method, target, headers, body)
        reply = self._injected(ex) or self._tripwire(ex)
        if reply is None:
            for behaviour in self.mode.behaviours:
                reply = behaviour.before(ex)
                if reply is not None:
                    break
        if reply is None:
            reply = self.forward(ex)
        for behaviour in self.mode.behaviours:
            reply = behaviour.after(ex, reply)
        if not any(k.lower() == "docker-distribution-api-version" for k in reply.headers):
            reply.headers["Docker-Distribution-API-Version"] = "registry/2.0"
        self.record(Seen(method, ex.path, urlsplit(target).query, reply.status, len(body),
                         0 if method == "HEAD" else len(reply.body), dict(headers),
                         dict(reply.headers)))
        return reply

    def _injected(self, ex: Exchange) -> Reply | None:
        with self._lock:
            for entry in self._throttles:
                if entry[1] > 0 and entry[0].search(ex.path):
                    if entry[2] > 0:
                        entry[2] -= 1
                        return None
                    entry[1] -= 1
                    break
            else:
                return None
        return entry[3]()

    def _tripwire(self, ex: Exchange) -> Reply | None:
        if ex.kind != "upload" or ex.method not in ("PATCH", "PUT"):
            return None
        if self.sent_bytes("PATCH|PUT", "/blobs/uploads/") + len(ex.body) <= self.upload_tripwire:
            return None
        return Reply.errors(400, "DENIED", "registry proxy tripwire: this client sent over "
                            f"{self.upload_tripwire} upload bytes in one test")


# ---------------------------------------------------------------- the CDN


class CdnServer:
    """A second loopback host that serves blobs a registry redirected to (Hub's
    Cloudflare, ECR's S3), refusing requests that carry ``Authorization``.

    REGISTRIES.md, "Redirects": S3 answers 400 ``InvalidArgument "Only one auth
    mechanism allowed"`` when a client forwards the registry's Authorization
    (oras-project/oras-java#334). The redirect URL carries a one-time signature; the
    CDN fetches the blob from the registry with the credentials of the request that
    was redirected.
    """

    def __init__(self, proxy: RegistryProxy) -> None:
        self.proxy = proxy
        self._grants: dict[str, tuple[str, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._server, self._thread = serve(self._handle, "registryproxy-cdn")

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def sign(self, ex: Exchange) -> str:
        """A URL on this host for the blob ``ex`` asks for."""
        signature = secrets.token_urlsafe(16)
        with self._lock:
            self._grants[signature] = (ex.path, {"Authorization": ex.headers.get("Authorization")
                                                 or ""})
        return f"{self.url}/cdn{ex.path}?X-Amz-Signature={signature}"

    def _handle(self, method: str, target: str, headers: Headers, body: bytes) -> Reply:
        parts = urlsplit(target)
        signature = dict(parse_qsl(parts.query)).get("X-Amz-Signature", "")
        with self._lock:
            grant = self._grants.get(signature)
        if headers.get("Authorization"):
            reply = Reply.of(400, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>"
                             b"InvalidArgument</Code><Message>Only one auth mechanism allowed; "
                             b"only the X-Amz-Algorithm query parameter, Signature query string "
                             b"parameter or the Authorization header should be specified"
                             b"</Message></Error>", Content_Type="application/xml")
        elif grant is None or parts.path != "/cdn" + grant[0]:
            reply = Reply.text(403, "AccessDenied: Request has expired or the signature is wrong")
        else:
            send = {k: v for k, v in grant[1].items() if v}
            if headers.get("Range"):
                send["Range"] = headers.get("Range")
            host, port = self.proxy.upstream.netloc
            reply = http_call(host, port, method, grant[0], Headers(send), b"",
                              self.proxy.timeout)
            for name in ("Docker-Content-Digest", "Docker-Distribution-API-Version"):
                reply.headers.drop(name)
        self.proxy.record(Seen(method, parts.path, parts.query, reply.status, len(body),
                               0 if method == "HEAD" else len(reply.body), dict(headers),
                               dict(reply.headers), server="cdn"))
        return reply

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# ---------------------------------------------------------------- HTTP plumbing


def http_call(host: str, port: int, method: str, target: str, headers: Headers, body: bytes,
              timeout: float) -> Reply:
    """One HTTP/1.1 exchange with a loopback server; the whole answer, buffered."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        has_host = False
        for key, value in headers.items():
            if key.lower() in _HOP:
                continue
            has_host = has_host or key.lower() == "host"
            connection.putheader(key, value)
        if not has_host:
            connection.putheader("Host", f"{host}:{port}")
        if body or method in ("PUT", "PATCH", "POST"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        data = response.read()
        kept = Headers({k: v for k, v in response.getheaders() if k.lower() not in _HOP})
        if method == "HEAD" and response.getheader("Content-Length") is not None:
            kept["Content-Length"] = response.getheader("Content-Length")
        return Reply(response.status, kept, data, response.reason)
    except (OSError, http.client.HTTPException) as exc:
        return Reply.text(502, f"registry proxy: the upstream failed: {exc}")
    finally:
        connection.close()


Handler = Callable[[str, str, Headers, bytes], Reply]


def serve(handle: Handler, name: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``handle`` on a free 127.0.0.1 port in a daemon thread."""
    bound = type("_Bound", (_RequestHandler,), {"handle_exchange": staticmethod(handle)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=name,
                              kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    handle_exchange: Handler

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        try:
            body = self._body()
        except OSError:
            self.close_connection = True
            return
        reply = self.handle_exchange(self.command, self.path,
                                     Headers(self.headers.items()), body)
        try:
            self.send_response(reply.status, reply.reason or None)
            for key, value in reply.headers.items():
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            declared = reply.headers.get("Content-Length")  # HEAD: the registry's figure
            self.send_header("Content-Length", str(declared if declared is not None
                                                   and self.command == "HEAD"
                                                   else len(reply.body)))
            self.end_headers()
            if self.command != "HEAD" and reply.body:
                self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            pieces = []
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass
                    return b"".join(pieces)
                pieces.append(self.rfile.read(size))
                self.rfile.readline(3)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


# ---------------------------------------------------------------- small helpers


def challenge_params(header: str) -> tuple[str, dict[str, str]]:
    """(scheme, params) of a simple ``WWW-Authenticate`` value (the registry's own)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in re.finditer(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', rest)}
    return scheme, params


def format_challenge(scheme: str, params: Iterable[tuple[str, str | None]], *,
                     quoted: bool | Iterable[str] = True) -> str:
    """``Scheme k="v",k2=v2``; ``quoted`` is True, False or the names to quote."""
    names = None if isinstance(quoted, bool) else set(quoted)
    parts = []
    for key, value in params:
        if value is None:
            continue
        quote = quoted if names is None else key in names
        parts.append(f'{key}="{value}"' if quote else f"{key}={value}")
    return f"{scheme} " + ",".join(parts)


def basic_user(headers: Headers) -> str | None:
    """The username of a Basic Authorization header."""
    value = headers.get("Authorization") or ""
    if value[:6].lower() != "basic ":
        return None
    try:
        return base64.b64decode(value[6:]).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None
