"""HTTP transport to one registry: auth, retries, redirects, TLS and typed errors.

One :class:`Transport` per registry host owns a ``requests.Session`` (a pooled
``HTTPAdapter``) and a :class:`~registry_nb.auth.RegistryAuth`. It is safe to call
:meth:`Transport.request` from many threads.

Retries: connection *establishment* failures (refused, DNS, connect timeout) are
retried by urllib3's ``Retry`` for every method, since nothing was sent. Statuses
429/502/503/504 and errors after the request was sent are retried here, only for
GET, HEAD, PUT and DELETE with a replayable body, with exponential backoff or
``Retry-After``, at most ``retries`` times and 30 s of waiting in total.

Redirects are followed here (never by requests), and the Authorization header
only goes to the registry's own scheme, host and port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from .._version import __version__
from ..errors import (
    AuthenticationError,
    InsecureRegistryError,
    InvalidReferenceError,
    RegistryError,
    RegistryHTTPError,
    RegistryUnavailableError,
)
from ..oci.reference import DOCKER_HUB, DOCKER_HUB_API, is_loopback_host, normalize_registry
from .auth import RegistryAuth
from .credentials import RegistryCredentials, credentials_from_docker_config
from .responses import error_from_response, raise_for_status

__all__ = [
    "Transport",
    "RegistryWarning",
    "USER_AGENT",
    "raise_for_status",
    "error_from_response",
]

log = logging.getLogger(__name__)

USER_AGENT = f"registry-nb/{__version__} (+python-requests)"

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_WAIT = 30.0
MAX_REDIRECTS = 10
_BACKOFF = 0.5
_BODY_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding"})


class RegistryWarning(UserWarning):
    """A registry sent a ``Warning`` response header (e.g. a deprecation notice)."""


_WARNING_RE = re.compile(r'(\d{3})\s+(\S+)\s+"((?:[^"\\]|\\.)*)"')


def _safe_url(url: str) -> str:
    """``url`` without user info, query and fragment (they may carry secrets)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, f"{host}:{port}"


class _Body:
    """A request body and how to replay it."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.position: int | None = None
        if data is None or isinstance(data, (bytes, bytearray, str, Mapping)):
            self.replayable = True
        elif hasattr(data, "seek") and hasattr(data, "tell"):
            try:
                self.position = data.tell()
                self.replayable = True
            except (OSError, ValueError):
                self.replayable = False
        else:
            self.replayable = False

    def rewind(self) -> bool:
        """Prepare to send again; False when the body cannot be replayed."""
        if not self.replayable:
            return False
        if self.position is not None:
            try:
                self.data.seek(self.position)
            except (OSError, ValueError):
                return False
        return True


class AdaptiveLimit:
    """At most ``limit`` requests waiting for their answer: halved when the registry
    answers 429 (too many requests), grown back by one after ``limit`` answers in a row
    without one, up to ``maximum``. Use as a context manager around one request."""

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, int(maximum))
        self.limit = self.maximum
        self.in_flight = 0
        self.throttled = 0  # 429 answers seen
        self._calm = 0
        self._cond = threading.Condition()

    def __enter__(self) -> AdaptiveLimit:
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify()

    def observe(self, status: int) -> None:
        """Adapt to one answer's status."""
        with self._cond:
            if status == 429:
                self.throttled += 1
                self.limit = max(1, self.limit // 2)
                self._calm = 0
            elif self.limit < self.maximum:
                self._calm += 1
                if self._calm >= self.limit:
                    self.limit += 1
                    self._calm = 0
                    self._cond.notify()


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
            self._origin = _origin(self.base_url)
        except ValueError as exc:  # e.g. a port over 65535, which the name grammar allows
            raise InvalidReferenceError(raw, "registry", f"is not a usable host[:port] ({exc})"
                                        ) from None

        self._env_settings: dict[tuple[str, str], dict[str, Any]] = {}
        #: Requests in flight to this registry: at most pool_size, fewer after a 429.
        self.limit = AdaptiveLimit(pool_size)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # requests asks for gzip by default; manifests and blobs are hashed as sent, so
        # every request asks for the bytes as stored.
        self.session.headers["Accept-Encoding"] = "identity"
        connect_retry = Retry(
            total=self.retries, connect=self.retries, read=0, status=0, other=0,
            redirect=False, backoff_factor=0.25, backoff_max=4.0,
            raise_on_redirect=False, raise_on_status=False,
        )
        adapter = HTTPAdapter(
            pool_connections=4, pool_maxsize=pool_size, max_retries=connect_retry
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

        source: Any = credentials
        if credentials is None and use_docker_config:
            host = self.host

            def source() -> RegistryCredentials | None:
                return credentials_from_docker_config(host)

        self.auth = RegistryAuth(
            self.host, source, session=self.session, verify=self.verify,
            timeout=timeout, insecure=insecure,
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
        method = method.upper()
        full = self.url(url)
        scopes = tuple(scopes)
        body = _Body(data)
        retryable = method in IDEMPOTENT_METHODS and body.replayable
        attempt = 0
        waited = 0.0
        while True:
            if attempt and not body.rewind():
                retryable = False
            try:
                # Only bodiless requests wait for a slot: an upload may stream from a
                # download of this same registry, which must never wait behind it.
                with self.limit if data is None else contextlib.nullcontext():
                    response = self._send_authenticated(
                        method, full, scopes, headers, params, body, stream, timeout
                    )
            except requests.exceptions.SSLError as exc:
                raise self._ssl_error(full, exc) from None
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                # ChunkedEncodingError: the body of a non-streamed response broke off
                delay = _BACKOFF * (2**attempt) * (1 + random.random() / 4)
                if (
                    retryable and attempt < self.retries and not _connect_failure(exc)
                    and waited + delay <= MAX_RETRY_WAIT
                ):
                    log.debug("%s %s failed (%s); retrying in %.1f s",
                              method, _safe_url(full), type(exc).__name__, delay)
                    time.sleep(delay)
                    waited += delay
                    attempt += 1
                    continue
                raise self._unavailable(full, exc) from exc
            self.limit.observe(response.status_code)
            if response.status_code in RETRY_STATUSES and retryable and attempt < self.retries:
                delay = _retry_after(response)
                if delay is None:
                    delay = _BACKOFF * (2**attempt) * (1 + random.random() / 4)
                if waited + delay <= MAX_RETRY_WAIT:
                    log.debug("%s %s answered %s; retrying in %.1f s",
                              method, _safe_url(full), response.status_code, delay)
                    response.close()
                    time.sleep(delay)
                    waited += delay
                    attempt += 1
                    continue
            _emit_warnings(response)
            return response

    def _send_authenticated(
        self,
        method: str,
        url: str,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None,
        params: Any,
        body: _Body,
        stream: bool,
        timeout: float | tuple[float, float] | None,
    ) -> requests.Response:
        response = self._send(method, url, scopes, headers, params, body, stream, timeout)
        if response.status_code != 401 or _origin(response.url) != self._origin:
            return response
        response.close()
        self.auth.on_401(response, scopes)
        # The retry must use the token for what the registry asked, even when the
        # caller named no scopes.
        scopes = self.auth.retry_scopes(response, scopes)
        if not body.rewind():
            raise AuthenticationError(
                f"registry {self.host} asked for authentication in the middle of a "
                "streamed upload, which cannot be replayed.",
                hint="Run the operation again: the credentials are now in place.",
            )
        response = self._send(method, url, scopes, headers, params, body, stream, timeout)
        if response.status_code == 401 and _origin(response.url) == self._origin:
            response.close()
            raise self.auth.refused_error(response, scopes)
        return response

    def _environment(self, url: str, stream: bool) -> dict[str, Any]:
        """Proxies, verify and cert for ``url`` (read from the environment once per origin:
        requests would scan every environment variable on every request)."""
        origin = _origin(url)
        settings = self._env_settings.get(origin)
        if settings is None:
            settings = self.session.merge_environment_settings(url, {}, None, self.verify, None)
            settings.pop("stream", None)
            self._env_settings[origin] = settings
        return {**settings, "stream": stream}

    def _send(
        self,
        method: str,
        url: str,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None,
        params: Any,
        body: _Body,
        stream: bool,
        timeout: float | tuple[float, float] | None,
    ) -> requests.Response:
        """One request, following redirects; Authorization only for the registry."""
        hop_headers = dict(headers or {})
        data = body.data
        for _hop in range(MAX_REDIRECTS + 1):
            request = requests.Request(method, url, headers=hop_headers, params=params, data=data)
            prepared = self.session.prepare_request(request)
            if _origin(prepared.url or url) == self._origin:
                self.auth.apply(prepared, scopes)
            else:
                prepared.headers.pop("Authorization", None)
            settings = self._environment(prepared.url or url, stream)
            debug = log.isEnabledFor(logging.DEBUG)
            if debug:
                log.debug("%s %s", method, _safe_url(prepared.url or url))
            response = self.session.send(
                prepared, allow_redirects=False, timeout=timeout or self.timeout, **settings
            )
            if debug:
                log.debug("%s %s -> %s", method, _safe_url(prepared.url or url),
                          response.status_code)
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
            elif not body.rewind():
                raise RegistryHTTPError(
                    f"{_safe_url(url)} redirected a streamed upload, which cannot be replayed.",
                    status=status,
                )
            url, params = target, None
        raise RegistryHTTPError(
            f"{_safe_url(url)}: more than {MAX_REDIRECTS} redirects.", status=None,
            hint="The registry or a proxy in front of it is misconfigured.",
        )

    # -- errors

    def _unavailable(self, url: str, exc: Exception) -> RegistryUnavailableError:
        kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
        return RegistryUnavailableError(
            f"connection to {_safe_url(url)} {kind} ({_root_cause(exc)}).",
            hint=f"Is the registry running? Check the host and port ({self.api_host}).",
        )

    def _ssl_error(self, url: str, exc: Exception) -> RegistryError:
        cause = _root_cause(exc)
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
            return InsecureRegistryError(
                f"the TLS certificate of {_safe_url(url)} could not be verified ({cause}).",
                hint="Pass ca_bundle='/path/to/ca.pem' with the registry's CA, "
                "or insecure=True if you trust this network.",
            )
        return RegistryUnavailableError(
            f"TLS handshake with {_safe_url(url)} failed ({cause}).",
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


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


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
