"""The lean hot path: bodiless GETs and HEADs on urllib3's connection pool directly.

A listing sends thousands of small GETs (tag pages, manifests, configs) and HEADs;
requests' per-request machinery (``prepare_request``, ``merge_environment_settings``,
cookie jars, hooks, ``HTTPAdapter.send``, ``build_response``) costs more client CPU than
the HTTP exchange itself. :class:`LeanSender` sends them on the same connection pool
(the transport's ``HTTPAdapter`` pool manager, its connect ``Retry``, the same TLS
settings and timeouts) and builds the ``requests.Response`` callers get directly, with
requests' exception types, so that the transport's retry loop, auth flow, redirects
and typed errors stay as they are.

Anything unusual keeps the requests path (:meth:`LeanSender.prepare` answers None): a
request with a body, a proxy from the environment (``HTTP(S)_PROXY``, ``ALL_PROXY``)
that applies to the origin, a client certificate, cookies in the session's jar (the
lean path stores the cookies a response sets, so the next request goes through
requests and sends them), an adapter mounted by the caller, parameters or a URL that
need requests' encoding.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import requests
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.exceptions import (
    ChunkedEncodingError,
    ConnectTimeout,
    ContentDecodingError,
    InvalidHeader,
    InvalidURL,
    ProxyError,
    ReadTimeout,
    RetryError,
    SSLError,
)
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, requote_uri, select_proxy
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import HTTPError as _HTTPError
from urllib3.exceptions import InvalidHeader as _InvalidHeader
from urllib3.exceptions import ProxyError as _ProxyError
from urllib3.exceptions import SSLError as _SSLError
from urllib3.util import Timeout

__all__ = ["LEAN_METHODS", "LeanRequest", "LeanResponse", "LeanSender"]

#: The methods sent on the lean path (without a body).
LEAN_METHODS = frozenset({"GET", "HEAD"})

#: URLs requests would send unchanged (its requote_uri leaves them as they are).
_PLAIN_URL = re.compile(r"(https?)://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::(\d+))?"
                        r"(/[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]*)")
_SCALAR = (str, int, float)

EnvironmentSettings = Callable[[str], Mapping[str, Any]]


class LeanResponse(requests.Response):
    """A ``requests.Response`` built without requests' per-response set-up: its cookie
    jar is made when first read (most responses never have one read)."""

    def __init__(self, status: int, headers: CaseInsensitiveDict[str], raw: Any,
                 request: requests.PreparedRequest, elapsed: timedelta) -> None:
        # The attributes requests.Response.__init__ sets.
        self._content = False
        self._content_consumed = False
        self._next = None
        self.status_code = status
        self.headers = headers
        self.raw = raw
        self.url = request.url  # type: ignore[assignment]
        self._encoding: str | None | bool = False  # False: not read from the headers yet
        self.history = []
        self.reason = raw.reason
        self._jar: RequestsCookieJar | None = None
        self.elapsed = elapsed
        self.request = request

    @property  # type: ignore[override]
    def encoding(self) -> str | None:
        """The body's encoding, from Content-Type when first read (as requests sets it)."""
        if self._encoding is False:
            self._encoding = get_encoding_from_headers(self.headers)
        return self._encoding  # type: ignore[return-value]

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        self._encoding = value

    @property  # type: ignore[override]
    def cookies(self) -> RequestsCookieJar:
        """The cookies the response set (as requests' ``Response.cookies``)."""
        if self._jar is None:
            self._jar = RequestsCookieJar()
            if self.raw is not None and self.request is not None:
                extract_cookies_to_jar(self._jar, self.request, self.raw)
        return self._jar

    @cookies.setter
    def cookies(self, jar: RequestsCookieJar) -> None:
        self._jar = jar


class LeanRequest(requests.PreparedRequest):
    """A prepared request for the lean path: where it goes (``route``) and the ``path``
    (with its query) to ask for there."""

    def __init__(self, method: str, url: str, headers: CaseInsensitiveDict[str],
                 route: _Route, path: str) -> None:
        super().__init__()
        self.method, self.url, self.headers = method, url, headers
        self.route, self.path = route, path


class _Route:
    """Where an origin's lean requests go: its pool's key and TLS settings."""

    __slots__ = ("scheme", "host", "port", "pool_kwargs", "verify", "pool")

    def __init__(self, scheme: str, host: str, port: int | None, verify: bool | str) -> None:
        self.scheme, self.host, self.port, self.verify = scheme, host, port, verify
        # As requests' HTTPAdapter builds the pool key, so both paths share the pool.
        kwargs: dict[str, Any] = {"cert_reqs": "CERT_NONE" if verify is False
                                  else "CERT_REQUIRED"}
        if isinstance(verify, str):
            kwargs["ca_cert_dir" if os.path.isdir(verify) else "ca_certs"] = verify
        self.pool_kwargs = kwargs
        self.pool: Any = None


class LeanSender:
    """Sends a transport's bodiless GETs and HEADs on its adapter's urllib3 pool.

    ``environment(url)`` gives requests' merged environment settings for an URL
    (``proxies``, ``verify``, ``cert``; the transport reads them once per origin).
    """

    def __init__(self, session: requests.Session, adapter: requests.adapters.HTTPAdapter,
                 environment: EnvironmentSettings) -> None:
        self._session = session
        self._adapter = adapter
        self._environment = environment
        self._routes: dict[str, _Route | None] = {}
        self._timeouts: dict[Any, Timeout] = {}
        self._lock = threading.Lock()
        #: Answers received on the lean path (for tests and benchmarks).
        self.sent = 0

    # -- deciding

    def prepare(self, method: str, url: str, headers: Mapping[str, str] | None,
                params: Any) -> LeanRequest | None:
        """The request as requests would prepare it, or None for the requests path."""
        if method not in LEAN_METHODS:
            return None
        match = _PLAIN_URL.fullmatch(url)
        if match is None or ("%" in url and requote_uri(url) != url):
            return None  # requests would requote it, or IDNA-encode, or cut a fragment
        route = self._route(url, match)
        if route is None:
            return None
        session = self._session
        if session.cookies or session.get_adapter(url) is not self._adapter:
            return None
        path = url[match.start(4):]
        if params:
            query = _encode(params)
            if query is None:
                return None
            if query:
                path = f"{path}&{query}" if "?" in path else f"{path}?{query}"
                url = url[:match.start(4)] + path
        merged = CaseInsensitiveDict()
        base = session.headers
        for key in base:
            merged[key] = base[key]
        if headers:
            for key, value in headers.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
        return LeanRequest(method, url, merged, route, path)

    def _route(self, url: str, match: re.Match[str]) -> _Route | None:
        key = url[:match.start(4)]
        try:
            return self._routes[key]
        except KeyError:
            pass
        settings = self._environment(url)
        route: _Route | None = None
        # A proxy that applies to this origin, or a client certificate: requests' path.
        if settings.get("cert") is None and select_proxy(url, settings.get("proxies")) is None:
            scheme, host, port = match.group(1, 2, 3)
            route = _Route(scheme, host.strip("[]").lower(), int(port) if port else None,
                           settings.get("verify", True))
        self._routes[key] = route
        return route

    # -- sending

    def send(self, prepared: LeanRequest, *, stream: bool,
             timeout: float | tuple[float, float]) -> requests.Response:
        """Send ``prepared`` (from :meth:`prepare`) and return requests' Response for it.

        Raises requests' exceptions, as ``HTTPAdapter.send`` and ``Response.content``
        map urllib3's.
        """
        route = prepared.route
        started = time.perf_counter()
        try:
            pool = self._pool(route, prepared.url)
            raw = pool.urlopen(
                method=prepared.method, url=prepared.path, body=None,
                headers=prepared.headers, redirect=False, assert_same_host=False,
                preload_content=False, decode_content=False,
                retries=self._adapter.max_retries, timeout=self._timeout(timeout),
                chunked=False,
            )
        except (ProtocolError, OSError) as err:
            raise requests.ConnectionError(err, request=prepared)  # noqa: B904 - as requests
        except MaxRetryError as exc:
            raise _from_max_retry(exc, prepared)  # noqa: B904
        except ClosedPoolError as exc:
            raise requests.ConnectionError(exc, request=prepared)  # noqa: B904
        except _ProxyError as exc:
            raise ProxyError(exc)  # noqa: B904
        except (_SSLError, _HTTPError) as exc:
            if isinstance(exc, _SSLError):
                raise SSLError(exc, request=prepared)  # noqa: B904
            if isinstance(exc, ReadTimeoutError):
                raise ReadTimeout(exc, request=prepared)  # noqa: B904
            if isinstance(exc, _InvalidHeader):
                raise InvalidHeader(exc, request=prepared)  # noqa: B904
            raise
        with self._lock:
            self.sent += 1
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        received = raw.headers
        for key in received:  # as CaseInsensitiveDict(received): repeated fields joined
            headers[key] = received[key]
        response = LeanResponse(raw.status, headers, raw, prepared,
                                timedelta(seconds=time.perf_counter() - started))
        response.connection = self._adapter
        session = self._session
        if "set-cookie" in headers:  # as Session.send keeps them
            extract_cookies_to_jar(session.cookies, prepared, raw)
        hooks = session.hooks.get("response")
        if hooks:
            prepared.hooks = {"response": list(hooks)}
            response = requests.hooks.dispatch_hook(
                "response", prepared.hooks, response, stream=stream, timeout=timeout,
                verify=route.verify, proxies={}, cert=None)
        if not stream:
            _read_body(response, raw)
        return response

    def _pool(self, route: _Route, url: str) -> Any:
        pool = route.pool
        if pool is None or pool.pool is None:  # first use, or closed by the pool manager
            try:
                pool = self._adapter.poolmanager.connection_from_host(
                    route.host, route.port, route.scheme, pool_kwargs=route.pool_kwargs)
            except LocationValueError as exc:
                raise InvalidURL(exc) from None
            self._adapter.cert_verify(pool, url, route.verify, None)
            route.pool = pool
        return pool

    def _timeout(self, timeout: float | tuple[float, float]) -> Timeout:
        cached = self._timeouts.get(timeout)
        if cached is None:
            connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
            cached = self._timeouts[timeout] = Timeout(connect=connect, read=read)
        return cached


def _read_body(response: requests.Response, raw: Any) -> None:
    """Read the whole body into ``response.content``, with requests' exceptions."""
    try:
        content = raw.read(decode_content=True)
    except ProtocolError as exc:
        raise ChunkedEncodingError(exc)  # noqa: B904 - as Response.iter_content
    except DecodeError as exc:
        raise ContentDecodingError(exc)  # noqa: B904
    except ReadTimeoutError as exc:
        raise requests.ConnectionError(exc)  # noqa: B904
    except _SSLError as exc:
        raise SSLError(exc)  # noqa: B904
    response._content = content or b""
    response._content_consumed = True


def _from_max_retry(exc: MaxRetryError, prepared: requests.PreparedRequest) -> Exception:
    """requests' exception for urllib3's MaxRetryError (as HTTPAdapter.send maps it)."""
    reason = exc.reason
    if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
        return ConnectTimeout(exc, request=prepared)
    if isinstance(reason, ResponseError):
        return RetryError(exc, request=prepared)
    if isinstance(reason, _ProxyError):
        return ProxyError(exc, request=prepared)
    if isinstance(reason, _SSLError):
        return SSLError(exc, request=prepared)
    return requests.ConnectionError(exc, request=prepared)


def _encode(params: Any) -> str | None:
    """``params`` as requests encodes a mapping of scalars (or lists of them); None when
    they are of another shape (requests' path encodes those)."""
    if not isinstance(params, Mapping):
        return None
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if not isinstance(key, str):
            return None
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if item is None:
                continue
            if not isinstance(item, _SCALAR) or isinstance(item, bool):
                return None
            pairs.append((key, str(item)))
    return urlencode(pairs)
