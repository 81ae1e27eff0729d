"""The auth flow: WWW-Authenticate challenges, scopes, Basic and Bearer tokens.

The transport runs each request through :meth:`RegistryAuth.auth_flow`: send (with
the Authorization already known to be wanted, :meth:`~RegistryAuth.apply`), read the
registry's challenge (:meth:`~RegistryAuth.on_401`: Basic sends the credentials, Bearer
fetches a token from the realm of the challenge, as the distribution token spec says,
cached per realm, service and scopes), send again, and say why when refused again.

Secrets (passwords, tokens, identity tokens) never reach a repr, a log record or
an error message.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import (
    AuthenticationError,
    CredentialsRefusedError,
    InsecureRegistryError,
    RegistryHTTPError,
    RegistryUnavailableError,
)
from ..oci.config import parse_timestamp
from ..oci.reference import is_loopback_host
from .challenges import (
    CATALOG_SCOPE,
    Challenge,
    describe_scopes,
    normalize_scopes,
    parse_www_authenticate,
    refused_scopes,
    repository_scope,
    scope_grants,
    token_grants,
)
from .credentials import RegistryCredentials, host_of
from .request import RegistryRequest, origin_of
from .responses import read_bounded

__all__ = [
    "CATALOG_SCOPE",
    "Challenge",
    "parse_www_authenticate",
    "repository_scope",
    "normalize_scopes",
    "RegistryAuth",
]

log = logging.getLogger(__name__)

_MAX_TOKEN_BODY = 1 << 20
_MAX_CACHED_TOKENS = 256
#: OAuth client id sent with refresh-token grants.
_CLIENT_ID = "registry-nb"
#: An Authorization value HTTP can carry: a scheme, one space, visible ASCII.
_HEADER_VALUE_RE = re.compile(r"[A-Za-z]+ [\x21-\x7e]+")

# ----------------------------------------------------------------- auth flow


@dataclass
class _Token:
    value: str = field(repr=False)
    grants: frozenset[tuple[str, str, str]]
    expires_at: float  # time.monotonic()
    margin: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - self.margin


_TokenKey = tuple[str, str, tuple[str, ...]]
CredentialsSource = RegistryCredentials | Callable[[], RegistryCredentials | None] | None


def _parse_issued_at(value: Any) -> float | None:
    """``issued_at`` of a token answer as a POSIX time; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = parse_timestamp(value)
    except ValueError:
        return None
    return stamp.timestamp() if stamp is not None else None


class RegistryAuth:
    """Authentication state of one registry host, shared by all its requests.

    Thread-safe: tokens are cached under a lock, and concurrent requests that
    need the same token wait for a single fetch instead of each asking.
    """

    #: Seconds before expiry at which a cached token is no longer used.
    REFRESH_MARGIN = 10.0

    def __init__(
        self,
        host: str,
        credentials: CredentialsSource = None,
        *,
        session: requests.Session | None = None,
        verify: bool | str = True,
        timeout: tuple[float, float] = (5.0, 60.0),
        insecure: bool = False,
        origin: tuple[str, str] | None = None,
    ) -> None:
        self.host = host_of(host)
        #: ``(scheme, host:port)`` of the registry: only its 401s are challenges to answer.
        self.origin = origin
        self._source = credentials
        self._resolved = not callable(credentials)
        self._credentials = None if callable(credentials) else credentials
        self._session = session if session is not None else requests.Session()
        self._verify = verify
        self._timeout = timeout
        self._insecure = insecure
        self._lock = threading.Lock()
        self._key_locks: dict[_TokenKey, threading.Lock] = {}
        self._tokens: dict[_TokenKey, _Token] = {}
        self._mode: str | None = None  # "basic" or "bearer" once challenged
        self._bearer: tuple[str, str] | None = None  # (realm, service)
        self._static_refused = False

    def __repr__(self) -> str:
        return f"RegistryAuth(host={self.host!r}, mode={self._mode!r})"

    # -- credentials

    @property
    def credentials(self) -> RegistryCredentials | None:
        """The credentials in use (a docker-config loader runs on first access)."""
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    loader = self._source
                    assert callable(loader)
                    self._credentials = loader()
                    self._resolved = True
        return self._credentials

    def _who(self) -> str:
        creds = self.credentials
        return creds.describe_user() if creds else "anonymous access"

    @property
    def scheme(self) -> str | None:
        """``"basic"`` or ``"bearer"`` once the registry challenged, else None."""
        return self._mode

    def clear(self) -> None:
        """Forget cached tokens and the registry's auth scheme."""
        with self._lock:
            self._tokens.clear()
            self._mode = None
            self._bearer = None
            self._static_refused = False

    # -- the flow

    def auth_flow(self, request: RegistryRequest
                  ) -> Generator[RegistryRequest, requests.Response, None]:
        """Send, read the challenge, get a token, send again (in the shape of httpx's).

        The transport sends each request this generator yields and sends the answer back
        in; when the generator ends, the last answer is the one to return. A 401 of the
        registry is answered once (:meth:`on_401` fetches what it asks for, and the retry
        carries the scopes the challenge named); a second 401 raises the error that says
        why (refused credentials, a scope the user is not granted).
        """
        response = yield request
        if not self._is_challenge(response):
            return
        response.close()
        self.on_401(response, request.scopes)
        # The retry must use the token for what the registry asked, even when the
        # caller named no scopes.
        retry = request.with_scopes(self._retry_scopes(response, request.scopes))
        if not request.body.rewind():
            raise AuthenticationError(
                f"registry {self.host} asked for authentication in the middle of a "
                "streamed upload, which cannot be replayed.",
                hint="Run the operation again: the credentials are now in place.",
            )
        response = yield retry
        if self._is_challenge(response):
            response.close()
            raise self._refused_error(response, retry.scopes)

    def _is_challenge(self, response: requests.Response) -> bool:
        if response.status_code != 401:
            return False
        return self.origin is None or origin_of(response.url) == self.origin

    # -- the steps of the flow

    def apply(self, request: requests.PreparedRequest, scopes: Iterable[str] = ()) -> None:
        """Set the Authorization header the registry is known to want for ``scopes``.

        Before any challenge, only a pre-obtained ``token`` is sent. Once the registry
        asked for Bearer, a cached token covering the scopes is used, or one is fetched
        before sending (saving a 401 round trip).
        """
        header = self._header_for(normalize_scopes(scopes))
        if header and not _HEADER_VALUE_RE.fullmatch(header):
            raise AuthenticationError(
                f"the token for registry {self.host} cannot be sent in an HTTP header "
                "(it holds spaces, line breaks, control or non-ASCII characters).",
                hint="Check the token (a stray newline from a file?), or pass a username "
                "and password instead.",
            )
        if header:
            request.headers["Authorization"] = header
        else:
            request.headers.pop("Authorization", None)

    def _header_for(self, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            mode, bearer, static_refused = self._mode, self._bearer, self._static_refused
            cached = self._covering_token(bearer, scopes) if bearer else None
        # Until a challenge arrives, a docker-config loader is not run (a broken
        # config must not break an open registry).
        creds = self.credentials if (mode or self._resolved) else None
        if mode == "basic":
            return creds.get_auth_header() if creds and creds.has_basic else None
        if cached is not None:
            return f"Bearer {cached.value}"
        if creds is not None and creds.token and not static_refused:
            return f"Bearer {creds.token}"
        if mode == "bearer" and bearer is not None:
            token = self._obtain(bearer[0], bearer[1], scopes, stale=None)
            return f"Bearer {token.value}"
        return None

    def on_401(self, response: requests.Response, scopes: Iterable[str] = ()) -> bool:
        """Handle a 401 from the registry; True when a retry can succeed.

        Raises :class:`AuthenticationError` when it cannot (no credentials for
        Basic, refused credentials, a scope the user is not granted).
        """
        challenges = parse_www_authenticate(response.headers.get("WWW-Authenticate"))
        sent = ""
        if response.request is not None:
            sent = response.request.headers.get("Authorization") or ""
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        creds = self.credentials
        if bearer is not None:
            return self._on_bearer(bearer, sent, normalize_scopes([*scopes, *bearer.scopes]))
        if basic is not None:
            if creds is None or not creds.has_basic:
                raise AuthenticationError(
                    f"registry {self.host} requires a username and password.",
                    hint=self._login_hint(),
                )
            if sent.startswith("Basic "):
                raise self._refused()
            with self._lock:
                self._mode = "basic"
            log.debug("registry %s uses Basic auth; sending credentials of %s",
                      self.host, self._who())
            return True
        if not challenges and sent.startswith("Bearer ") and self._forget(sent[7:]):
            # An expired token can meet a bare 401 (Docker Hub, GAR): fetch a new one, once.
            log.debug("registry %s refused a cached token without a challenge; fetching "
                      "a new one", self.host)
            return True
        schemes = ", ".join(sorted({c.scheme for c in challenges})) or "none"
        raise AuthenticationError(
            f"registry {self.host} answered 401 without a usable challenge "
            f"(schemes: {schemes}).",
            hint="registry-nb supports Basic and Bearer token auth.",
        )

    def _forget(self, value: str) -> bool:
        """Drop cached tokens with this value; True when one was dropped and the token
        service is known (so a new token can be fetched)."""
        with self._lock:
            stale = [key for key, token in self._tokens.items() if token.value == value]
            for key in stale:
                del self._tokens[key]
            return bool(stale) and self._mode == "bearer" and self._bearer is not None

    @staticmethod
    def _retry_scopes(response: requests.Response, scopes: Iterable[str] = ()) -> tuple[str, ...]:
        """``scopes`` plus those of the response's Bearer challenge, normalised."""
        challenge = next(
            (c for c in parse_www_authenticate(response.headers.get("WWW-Authenticate"))
             if c.scheme == "bearer"),
            None,
        )
        return normalize_scopes([*scopes, *(challenge.scopes if challenge else ())])

    def _refused_error(
        self, response: requests.Response, scopes: Iterable[str] = ()
    ) -> AuthenticationError:
        """The error for a 401 that persists after :meth:`on_401` allowed a retry."""
        challenge = next(
            (c for c in parse_www_authenticate(response.headers.get("WWW-Authenticate"))
             if c.scheme == "bearer"),
            None,
        )
        if challenge is not None and challenge.error == "insufficient_scope":
            sent = response.request.headers.get("Authorization", "") \
                if response.request is not None else ""
            granted = token_grants(sent[7:]) if sent.startswith("Bearer ") else None
            return self._not_allowed(normalize_scopes([*scopes, *challenge.scopes]), granted)
        return self._refused()

    # -- bearer

    def _on_bearer(self, challenge: Challenge, sent: str, scopes: tuple[str, ...]) -> bool:
        realm = challenge.realm or ""
        service = challenge.service or ""
        creds = self.credentials
        with self._lock:
            self._mode = "bearer"
            self._bearer = (realm, service)
        sent_token = sent[7:] if sent.startswith("Bearer ") else None
        if creds is not None and creds.token and sent_token == creds.token:
            with self._lock:
                self._static_refused = True
            if not (creds.has_basic or creds.identity_token):
                if challenge.error == "insufficient_scope":
                    raise self._not_allowed(scopes, token_grants(sent_token))
                raise CredentialsRefusedError(
                    self.host, None,
                    hint="The token may have expired or lack access; get a new one, "
                    "or pass credentials=RegistryCredentials(username=..., password=...).",
                )
        if sent_token is not None and challenge.error == "insufficient_scope":
            with self._lock:
                held = next(
                    (t for t in self._tokens.values() if t.value == sent_token), None
                )
            if held is not None and scope_grants(scopes) <= held.grants:
                raise self._not_allowed(scopes, token_grants(sent_token))
        # A token refused for lack of scope is still good for its own scopes.
        stale = None if challenge.error == "insufficient_scope" else sent_token
        self._obtain(realm, service, scopes, stale=stale)
        return True

    def _covering_token(
        self, bearer: tuple[str, str], scopes: tuple[str, ...]
    ) -> _Token | None:
        """A fresh cached token whose scopes include ``scopes`` (lock held)."""
        now = time.monotonic()
        exact = self._tokens.get((bearer[0], bearer[1], scopes))
        if exact is not None and exact.fresh(now):
            return exact
        wanted = scope_grants(scopes)
        for (realm, service, _), token in self._tokens.items():
            if (realm, service) == bearer and token.fresh(now) and wanted <= token.grants:
                return token
        return None

    def _obtain(
        self, realm: str, service: str, scopes: tuple[str, ...], stale: str | None
    ) -> _Token:
        """A fresh token for ``scopes``, fetching at most once across threads."""
        key = (realm, service, scopes)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                cached = self._tokens.get(key)
                if cached is not None and cached.value == stale:
                    del self._tokens[key]
                elif cached is not None and cached.fresh(time.monotonic()):
                    return cached
                if stale is not None:  # the registry rejected it: never reuse it
                    for k in [k for k, t in self._tokens.items() if t.value == stale]:
                        del self._tokens[k]
            token = self._fetch_token(realm, service, scopes)
            with self._lock:
                self._store(key, token)
            return token

    def _store(self, key: _TokenKey, token: _Token) -> None:
        now = time.monotonic()
        for k in [k for k, t in self._tokens.items() if not t.fresh(now)]:
            del self._tokens[k]
        while len(self._tokens) >= _MAX_CACHED_TOKENS:
            self._tokens.pop(next(iter(self._tokens)))
        self._tokens[key] = token

    def _fetch_token(self, realm: str, service: str, scopes: tuple[str, ...]) -> _Token:
        creds = self.credentials
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuthenticationError(
                f"registry {self.host} named an unusable token realm {realm!r}.",
                hint="The registry's auth configuration is broken; tell its admin.",
            )
        sends_secret = creds is not None and (creds.has_basic or bool(creds.identity_token))
        if (
            parts.scheme == "http" and sends_secret and not self._insecure
            and not is_loopback_host(parts.netloc)
        ):
            raise InsecureRegistryError(
                f"the token service {realm} of registry {self.host} uses plain HTTP; "
                "refusing to send credentials over it.",
                hint="Pass insecure=True if you trust this network.",
            )
        realm_label = f"{parts.scheme}://{parts.netloc}{parts.path}"
        log.debug("fetching a token from %s (service=%r, scopes=%s) for %s",
                  realm_label, service, list(scopes), self._who())
        kwargs: dict[str, Any] = {
            "timeout": self._timeout, "verify": self._verify, "allow_redirects": True,
            "stream": True,
        }
        try:
            response = None
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": _CLIENT_ID, "scope": " ".join(scopes),
                }
                if service:
                    form["service"] = service
                response = self._session.post(realm, data=form, **kwargs)
                if response.status_code in (404, 405):
                    # GAR's token URL takes no POST (containerd/cri#650): GET it, as ggcr does
                    log.debug("token service %s refused the OAuth POST (%s); using GET",
                              realm_label, response.status_code)
                    response.close()
                    response = None
            if response is None:
                params: list[tuple[str, str]] = []
                if service:
                    params.append(("service", service))
                params.extend(("scope", s) for s in scopes)
                auth = None
                if creds is not None and creds.has_basic:
                    params.append(("account", creds.username))
                    auth = (creds.username, creds.password)
                response = self._session.get(realm, params=params, auth=auth, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise InsecureRegistryError(
                f"the TLS certificate of token service {realm_label} could not be verified "
                f"({type(exc).__name__}).",
                hint="Pass ca_bundle='/path/to/ca.pem', or insecure=True if you trust it.",
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RegistryUnavailableError(
                f"the token service {realm_label} of registry {self.host} cannot be reached "
                f"({type(exc).__name__}).",
                hint="Is the token service running? Check its host and port.",
            ) from None
        with response:
            status = response.status_code
            body = read_bounded(response, _MAX_TOKEN_BODY)
        log.debug("token service %s answered %s", realm_label, status)
        if status in (401, 403):
            if creds is None or (not creds.has_basic and not creds.identity_token):
                raise AuthenticationError(
                    f"registry {self.host} requires credentials to {describe_scopes(scopes)} "
                    f"(its token service refused anonymous access).",
                    hint=self._login_hint(),
                )
            raise self._refused()
        if status >= 400:
            raise RegistryHTTPError(
                f"the token service {realm_label} of registry {self.host} answered {status}.",
                status=status,
                hint="Try again later; if it persists the registry's auth service is broken.",
            )
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        value = None
        if isinstance(data, dict):
            value = data.get("token") or data.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthenticationError(
                f"the token service {realm_label} of registry {self.host} answered "
                f"{status} without a token in a JSON body.",
                hint="The registry's WWW-Authenticate realm may not point at a token service.",
            )
        if not _HEADER_VALUE_RE.fullmatch(f"Bearer {value}"):
            raise AuthenticationError(
                f"the token service {realm_label} of registry {self.host} answered with a "
                "token that cannot be sent in an HTTP header (spaces, line breaks, control "
                "or non-ASCII characters).",
                hint="The registry's token service is broken; tell its admin.",
            )
        assert isinstance(data, dict)
        return self._make_token(value, data, scopes)

    def _make_token(self, value: str, data: Mapping[str, Any], scopes: tuple[str, ...]) -> _Token:
        lifetime = 60.0
        expires_in = data.get("expires_in")
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
            lifetime = max(60.0, float(expires_in))
        issued = _parse_issued_at(data.get("issued_at"))
        if issued is not None:
            age = time.time() - issued
            if 0 <= age < lifetime:  # else the clocks disagree: trust our own
                lifetime -= age
        margin = min(self.REFRESH_MARGIN, lifetime / 4)
        return _Token(value, scope_grants(scopes), time.monotonic() + lifetime, margin)

    # -- messages

    def _login_hint(self) -> str:
        return (
            "Pass credentials=RegistryCredentials(username=..., password=...) "
            f"or run `docker login {self.host}`."
        )

    def _refused(self) -> AuthenticationError:
        creds = self.credentials
        if creds is None or creds.is_anonymous:
            return AuthenticationError(
                f"registry {self.host} requires credentials.", hint=self._login_hint()
            )
        return CredentialsRefusedError(self.host, creds.username or None,
                                       who=creds.describe_user())

    def _not_allowed(self, scopes: tuple[str, ...],
                     granted: frozenset[tuple[str, str, str]] | None = None
                     ) -> AuthenticationError:
        """``who`` may not do ``scopes``; with what the token ``granted``, only the rest."""
        scopes = refused_scopes(scopes, granted)
        who = self._who()
        hint = (
            self._login_hint() if who == "anonymous access"
            else "Ask the registry's admin for access, or use other credentials."
        )
        return AuthenticationError(
            f"registry {self.host}: {who} is not allowed to {describe_scopes(scopes)}.",
            hint=hint,
        )
