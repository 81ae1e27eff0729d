"""HTTP transport to one registry: auth, retries, redirects, TLS and typed errors.

One :class:`Transport` per registry host owns a ``requests.Session`` (a pooled
``HTTPAdapter``) and a :class:`~registry_nb.auth.RegistryAuth`. It is safe to call
:meth:`Transport.request` from many threads.

Each call becomes one :class:`~registry_nb.remote.request.RegistryRequest` that goes
through three stages: the retry loop (:class:`~registry_nb.remote.retry.RetryPolicy`,
which also feeds the adaptive concurrency limit), the auth flow
(:meth:`~registry_nb.remote.auth.RegistryAuth.auth_flow`: send, read the challenge, get
a token, send again) and the redirect-following send.

Redirects are followed here (never by requests), and the Authorization header
only goes to the registry's own scheme, host and port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from .._version import __version__
from ..errors import (
    InsecureRegistryError,
    InvalidReferenceError,
    RegistryError,
    RegistryHTTPError,
    RegistryUnavailableError,
)
from ..oci.reference import DOCKER_HUB, DOCKER_HUB_API, is_loopback_host, normalize_registry
from .auth import RegistryAuth
from .credentials import RegistryCredentials, credentials_from_docker_config
from .lean import LeanSender
from .request import RegistryRequest, RequestBody, origin_of, safe_url
from .responses import error_from_response, raise_for_status
from .retry import AdaptiveLimit, RetryPolicy

__all__ = [
    "Transport",
    "AdaptiveLimit",
    "RetryPolicy",
    "RegistryWarning",
    "USER_AGENT",
    "raise_for_status",
    "error_from_response",
]

log = logging.getLogger(__name__)

USER_AGENT = f"registry-nb/{__version__} (+python-requests)"

MAX_REDIRECTS = 10
_BODY_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding"})


class RegistryWarning(UserWarning):
    """A registry sent a ``Warning`` response header (e.g. a deprecation notice)."""


_WARNING_RE = re.compile(r'(\d{3})\s+(\S+)\s+"((?:[^"\\]|\\.)*)"')


class Transport:
    """HTTP access to one registry, with its credentials, auth flow and retries."""

    def __init__(
        self,
        registry: str,
        credentials: RegistryCredentials | None = None,
        *,
        insecure: bool = False,
        ca_bundle: str | None = None,
        pool_size: int = 16,
        timeout: tuple[float, float] = (5.0, 60.0),
        retries: int = 3,
        use_docker_config: bool = True,
    ) -> None:
        raw = (registry or "").strip()
        scheme = raw.split("://", 1)[0].lower() if "://" in raw else ""
        if scheme not in ("", "http", "https"):
            raise RegistryError(
                f"registry URL {raw!r} has an unsupported scheme {scheme!r}.",
                hint="Use host[:port], https://host[:port] or http://host[:port].",
            )
        self.host = normalize_registry(raw)
        self.api_host = DOCKER_HUB_API if self.host == DOCKER_HUB else self.host
        loopback = is_loopback_host(self.api_host)
        if scheme == "http" and not (loopback or insecure):
            raise InsecureRegistryError(
                f"refusing plain HTTP to {self.host}: it is not a loopback address.",
                hint="Use https://, or pass insecure=True if you trust this network.",
            )
        if not scheme:
            scheme = "http" if (loopback or insecure) else "https"
        self.scheme = scheme
        self.base_url = f"{scheme}://{self.api_host}"
        self.insecure = insecure
        self.ca_bundle = ca_bundle
        if ca_bundle is not None and not os.path.exists(ca_bundle):
            raise RegistryError(
                f"ca_bundle {ca_bundle!r} does not exist.",
                hint="Pass the path of a PEM file with the registry's CA certificate.",
            )
        # Passed on every request: a string or False wins over REQUESTS_CA_BUNDLE.
        self.verify: bool | str = False if insecure else (ca_bundle or True)
        self.timeout = timeout
        self.retries = max(0, int(retries))
        try:
            self._origin = origin_of(self.base_url)
        except ValueError as exc:  # e.g. a port over 65535, which the name grammar allows
            raise InvalidReferenceError(raw, "registry", f"is not a usable host[:port] ({exc})"
                                        ) from None

        self._prefix = self.base_url + "/"  # URLs that start so are the registry's
        self._env_settings: dict[tuple[str, str], dict[str, Any]] = {}
        #: Requests in flight to this registry: at most pool_size, fewer after a 429.
        self.limit = AdaptiveLimit(pool_size)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # requests asks for gzip by default; manifests and blobs are hashed as sent, so
        # every request asks for the bytes as stored.
        self.session.headers["Accept-Encoding"] = "identity"
        #: The one retry policy of this registry's requests (see registry_nb.remote.retry).
        self.retry = RetryPolicy(retries=self.retries)
        adapter = HTTPAdapter(
            pool_connections=4, pool_maxsize=pool_size, max_retries=self.retry.connect_retry()
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        #: Bodiless GETs and HEADs go through urllib3's pool directly (see .lean).
        self.lean = LeanSender(self.session, adapter, lambda url: self._environment(url, False))

        source: Any = credentials
        if credentials is None and use_docker_config:
            host = self.host

            def source() -> RegistryCredentials | None:
                return credentials_from_docker_config(host)

        self.auth = RegistryAuth(
            self.host, source, session=self.session, verify=self.verify,
            timeout=timeout, insecure=insecure, origin=self._origin,
        )

    def __repr__(self) -> str:
        return f"Transport({self.base_url!r}, host={self.host!r})"

    @property
    def credentials(self) -> RegistryCredentials | None:
        """The credentials in use (given, or read from the docker config on first use)."""
        return self.auth.credentials

    @property
    def auth_scheme(self) -> str | None:
        """``"basic"`` or ``"bearer"`` once the registry asked for auth, else None."""
        return self.auth.scheme

    # -- lifecycle

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests

    def url(self, path_or_url: str) -> str:
        """An absolute URL for an API path, or a (possibly relative) Location/Link value."""
        if (path_or_url[:1] == "/" and path_or_url[1:2] != "/" and "/." not in path_or_url
                and "#" not in path_or_url):  # no dot segments: what urljoin makes of it
            return self.base_url + path_or_url
        return urljoin(self.base_url + "/", path_or_url)

    def ping(self) -> requests.Response:
        """``GET /v2/`` with auth; raises a typed error unless the registry answers 200."""
        response = self.request("GET", "/v2/")
        raise_for_status(response, f"reach the registry API of {self.host}")
        return response

    def request(
        self,
        method: str,
        url: str,
        *,
        scopes: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        data: Any = None,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send a request to the registry and return the response (any status but 401).

        ``url`` is an API path (``/v2/...``) or an absolute/relative URL from a
        ``Location`` or ``Link`` header. ``scopes`` are the token scopes the request
        needs (``repository:name:pull,push``). Raises
        :class:`~registry_nb.errors.AuthenticationError` when credentials are missing
        or refused, :class:`~registry_nb.errors.RegistryUnavailableError` when the
        registry cannot be reached, :class:`~registry_nb.errors.InsecureRegistryError`
        when TLS verification fails.
        """
        request = RegistryRequest(
            method.upper(), self.url(url), tuple(scopes), headers, params, RequestBody(data),
            stream, timeout,
        )
        retryable = self.retry.may_retry(request)
        attempt = 0
        waited = 0.0
        while True:
            if attempt and not request.body.rewind():
                retryable = False
            try:
                # Only bodiless requests wait for a slot: an upload may stream from a
                # download of this same registry, which must never wait behind it.
                with self.limit if data is None else contextlib.nullcontext():
                    response = self._send_authenticated(request)
            except requests.exceptions.SSLError as exc:
                raise self._ssl_error(request.url, exc) from None
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                # ChunkedEncodingError: the body of a non-streamed response broke off;
                # connection-open failures were already retried inside urllib3.
                delay = self.retry.delay(attempt)
                if (retryable and attempt < self.retry.retries and not _connect_failure(exc)
                        and waited + delay <= self.retry.budget):
                    log.debug("%s %s failed (%s); retrying in %.1f s", request.method,
                              safe_url(request.url), type(exc).__name__, delay)
                    time.sleep(delay)
                    waited += delay
                    attempt += 1
                    continue
                raise self._unavailable(request.url, exc) from exc
            self.limit.observe(response.status_code)
            if (self.retry.retries_status(request, response.status_code) and retryable
                    and attempt < self.retry.retries):
                delay = self.retry.delay(attempt, response)
                if waited + delay <= self.retry.budget:
                    log.debug("%s %s answered %s; retrying in %.1f s", request.method,
                              safe_url(request.url), response.status_code, delay)
                    response.close()
                    time.sleep(delay)
                    waited += delay
                    attempt += 1
                    continue
            _emit_warnings(response)
            return response

    def _send_authenticated(self, request: RegistryRequest) -> requests.Response:
        """Run the auth flow: send what it yields, hand back each answer, until it ends."""
        flow = self.auth.auth_flow(request)
        step = next(flow)
        while True:
            response = self._send(step)
            try:
                step = flow.send(response)
            except StopIteration:
                return response

    def _environment(self, url: str, stream: bool) -> dict[str, Any]:
        """Proxies, verify and cert for ``url`` (read from the environment once per origin:
        requests would scan every environment variable on every request)."""
        origin = origin_of(url)
        settings = self._env_settings.get(origin)
        if settings is None:
            settings = self.session.merge_environment_settings(url, {}, None, self.verify, None)
            settings.pop("stream", None)
            self._env_settings[origin] = settings
        return {**settings, "stream": stream}

    def _send(self, request: RegistryRequest) -> requests.Response:
        """One request, following redirects; Authorization only for the registry."""
        method, url, params = request.method, request.url, request.params
        hop_headers = dict(request.headers or {})
        data = request.body.data
        for _hop in range(MAX_REDIRECTS + 1):
            lean = None if data is not None else \
                self.lean.prepare(method, url, hop_headers, params)
            prepared = lean if lean is not None else self.session.prepare_request(
                requests.Request(method, url, headers=hop_headers, params=params, data=data))
            target_url = prepared.url or url
            if target_url.startswith(self._prefix) or origin_of(target_url) == self._origin:
                self.auth.apply(prepared, request.scopes)
            else:
                prepared.headers.pop("Authorization", None)
            debug = log.isEnabledFor(logging.DEBUG)
            if debug:
                log.debug("%s %s", method, safe_url(target_url))
            timeout = request.timeout or self.timeout
            if lean is not None:
                response = self.lean.send(lean, stream=request.stream, timeout=timeout)
            else:
                response = self.session.send(prepared, allow_redirects=False, timeout=timeout,
                                             **self._environment(target_url, request.stream))
            if debug:
                log.debug("%s %s -> %s", method, safe_url(target_url), response.status_code)
            if not response.is_redirect:
                return response
            target = urljoin(response.url, response.headers["Location"])
            if urlsplit(target).scheme not in ("http", "https"):
                return response
            status = response.status_code
            response.close()
            if status == 303 and method != "HEAD" or status in (301, 302) and method == "POST":
                method, data = "GET", None
                hop_headers = {
                    k: v for k, v in hop_headers.items() if k.lower() not in _BODY_HEADERS
                }
            elif not request.body.rewind():
                raise RegistryHTTPError(
                    f"{safe_url(url)} redirected a streamed upload, which cannot be replayed.",
                    status=status,
                )
            url, params = target, None
        raise RegistryHTTPError(
            f"{safe_url(url)}: more than {MAX_REDIRECTS} redirects.", status=None,
            hint="The registry or a proxy in front of it is misconfigured.",
        )

    # -- errors

    def _unavailable(self, url: str, exc: Exception) -> RegistryUnavailableError:
        kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
        return RegistryUnavailableError(
            f"connection to {safe_url(url)} {kind} ({_root_cause(exc)}).",
            hint=f"Is the registry running? Check the host and port ({self.api_host}).",
        )

    def _ssl_error(self, url: str, exc: Exception) -> RegistryError:
        cause = _root_cause(exc)
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
            return InsecureRegistryError(
                f"the TLS certificate of {safe_url(url)} could not be verified ({cause}).",
                hint="Pass ca_bundle='/path/to/ca.pem' with the registry's CA, "
                "or insecure=True if you trust this network.",
            )
        return RegistryUnavailableError(
            f"TLS handshake with {safe_url(url)} failed ({cause}).",
            hint="If the registry speaks plain HTTP, use http://... with insecure=True; "
            "for a private CA pass ca_bundle=.",
        )


def _connect_failure(exc: Exception) -> bool:
    """True when urllib3 already retried because the connection could not be made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, MaxRetryError) and isinstance(reason.reason, NewConnectionError)


def _root_cause(exc: BaseException) -> str:
    """A short description of the innermost cause, without URLs."""
    reason: Any = exc.args[0] if exc.args else exc
    while isinstance(reason, MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    text = str(reason)
    text = re.sub(r"https?://\S+", "<url>", text)
    text = re.sub(r"url: \S+", "url: <url>", text)
    text = text.split(">: ", 1)[-1] if text.startswith("<") else text
    return f"{type(reason).__name__}: {text}"[:300]


def _emit_warnings(response: requests.Response) -> None:
    value = response.headers.get("Warning")
    if not value:
        return
    host = urlsplit(response.url).netloc
    for match in _WARNING_RE.finditer(value):
        text = re.sub(r"\\(.)", r"\1", match.group(3))
        warnings.warn(
            RegistryWarning(f"registry {host} warns: {text}"), stacklevel=3
        )
