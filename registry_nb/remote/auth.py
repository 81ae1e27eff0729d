"""The auth flow: WWW-Authenticate challenges, scopes, Basic and Bearer tokens.

The transport asks a :class:`RegistryAuth` to :meth:`~RegistryAuth.apply` the
Authorization it already has before each request, and hands it every 401 through
:meth:`~RegistryAuth.on_401`, which decides whether a retry can succeed: Basic
sends the credentials, Bearer fetches a token from the realm of the challenge
(the distribution token spec) and caches it per realm, service and scopes.

Secrets (passwords, tokens, identity tokens) never reach a repr, a log record or
an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import (
    AuthenticationError,
    InsecureRegistryError,
    RegistryHTTPError,
    RegistryUnavailableError,
)
from ..oci.reference import is_loopback_host
from .credentials import RegistryCredentials, host_of
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

#: Scope of ``GET /v2/_catalog``.
CATALOG_SCOPE = "registry:catalog:*"
_MAX_TOKEN_BODY = 1 << 20
_MAX_CACHED_TOKENS = 256
#: OAuth client id sent with refresh-token grants.
_CLIENT_ID = "registry-nb"
#: An Authorization value HTTP can carry: a scheme, one space, visible ASCII.
_HEADER_VALUE_RE = re.compile(r"[A-Za-z]+ [\x21-\x7e]+")

# ---------------------------------------------------------------- challenges


@dataclass
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header.

    ``scheme`` is lower-cased; parameter names are lower-cased, values unquoted.
    """

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        """The space-separated ``scope`` parameter as a list."""
        return self.params.get("scope", "").split()

    @property
    def error(self) -> str | None:
        return self.params.get("error")


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(
    rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))[ \t]*(?=,|$)', re.S
)
_SCHEME_RE = re.compile(rf"[ \t]*({_TOKEN})(?=[ \t]|,|$)")
_TOKEN68_RE = re.compile(r"[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*(?=,|$)")
_SEP_RE = re.compile(r"[ \t,]*")
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)


def parse_www_authenticate(header: str | bytes | None) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into its challenges (RFC 7235).

    Handles several challenges in one header, quoted values with escaped quotes
    and commas, and any parameter order. Unparseable pieces are skipped; this
    never raises and returns ``[]`` for garbage.
    """
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if not isinstance(header, str):
        return []
    text = header
    pos, end = 0, len(text)
    result: list[Challenge] = []
    current: Challenge | None = None
    while pos < end:
        pos = _SEP_RE.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= end:
            break
        param = _PARAM_RE.match(text, pos)
        if param is not None:
            if current is not None:
                name = param.group(1).lower()
                quoted, bare = param.group(2), param.group(3)
                value = _UNESCAPE_RE.sub(r"\1", quoted) if quoted is not None else bare
                current.params.setdefault(name, value)
            pos = param.end()
            continue
        scheme = _SCHEME_RE.match(text, pos)
        if scheme is not None:
            current = Challenge(scheme=scheme.group(1).lower())
            result.append(current)
            pos = scheme.end()
            if _PARAM_RE.match(text, pos) is None:
                token68 = _TOKEN68_RE.match(text, pos)
                if token68 is not None:
                    current.token68 = token68.group(1)
                    pos = token68.end()
            continue
        # Garbage: drop the current challenge's context and skip to the next comma.
        current = None
        comma = text.find(",", pos)
        pos = end if comma < 0 else comma + 1
    return result


# -------------------------------------------------------------------- scopes


def repository_scope(repository: str, *actions: str) -> str:
    """``repository:<name>:<actions>`` (default action ``pull``)."""
    return f"repository:{repository}:{','.join(actions or ('pull',))}"


def _split_scope(scope: str) -> tuple[str, str, list[str]] | None:
    head, sep, actions = scope.rpartition(":")
    kind, sep2, name = head.partition(":")
    if not (sep and sep2 and kind and name):
        return None
    return kind, name, [a for a in actions.split(",") if a]


def normalize_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Merge actions per resource, sort and de-duplicate: a canonical cache key."""
    merged: dict[tuple[str, str], set[str]] = {}
    opaque: set[str] = set()
    for scope in scopes:
        for item in str(scope).split():
            parts = _split_scope(item)
            if parts is None:
                opaque.add(item)
            else:
                merged.setdefault((parts[0], parts[1]), set()).update(parts[2])
    out = {f"{k}:{n}:{','.join(sorted(acts))}" for (k, n), acts in merged.items()}
    return tuple(sorted(out | opaque))


def _grants(scopes: Iterable[str]) -> frozenset[tuple[str, str, str]]:
    result: set[tuple[str, str, str]] = set()
    for scope in scopes:
        parts = _split_scope(scope)
        if parts is None:
            result.add((scope, "", ""))
        else:
            result.update((parts[0], parts[1], action) for action in parts[2])
    return frozenset(result)


def _jwt_access(token: str | None) -> frozenset[tuple[str, str, str]] | None:
    """What a JWT bearer token's ``access`` claim grants (unverified), or None.

    Used only to word an error: which of the wanted actions were refused.
    """
    parts = (token or "").split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        access = payload["access"]
        return frozenset((str(item["type"]), str(item["name"]), str(action))
                         for item in access for action in item.get("actions") or [])
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None


def _refused_scopes(scopes: Iterable[str],
                    granted: frozenset[tuple[str, str, str]] | None) -> tuple[str, ...]:
    """``scopes`` without the actions ``granted`` holds (all of them when unknown)."""
    scopes = tuple(scopes)
    if granted is None:
        return scopes
    out = []
    for scope in scopes:
        split = _split_scope(scope)
        if split is None:
            out.append(scope)
            continue
        kind, name, actions = split
        missing = [a for a in actions if (kind, name, a) not in granted]
        if missing:
            out.append(f"{kind}:{name}:{','.join(missing)}")
    return tuple(out) or scopes


def _describe_scopes(scopes: Iterable[str]) -> str:
    parts = []
    for scope in scopes:
        split = _split_scope(scope)
        if split is None:
            parts.append(scope)
        elif split[0] == "registry" and split[1] == "catalog":
            parts.append("list the catalog")
        else:
            parts.append(f"{' and '.join(split[2]) or 'access'} {split[0]} {split[1]}")
    return ", ".join(parts) or "access it"


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
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if match:  # Python < 3.11 accepts at most 6 fraction digits
        fraction = (match.group(2) or "")[:7]
        text = match.group(1) + fraction + match.group(3)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return stamp.timestamp()


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
    ) -> None:
        self.host = host_of(host)
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

    # -- the two hooks the transport calls

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
    def retry_scopes(response: requests.Response, scopes: Iterable[str] = ()) -> tuple[str, ...]:
        """``scopes`` plus those of the response's Bearer challenge, normalised."""
        challenge = next(
            (c for c in parse_www_authenticate(response.headers.get("WWW-Authenticate"))
             if c.scheme == "bearer"),
            None,
        )
        return normalize_scopes([*scopes, *(challenge.scopes if challenge else ())])

    def refused_error(
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
            granted = _jwt_access(sent[7:]) if sent.startswith("Bearer ") else None
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
                    raise self._not_allowed(scopes, _jwt_access(sent_token))
                raise AuthenticationError(
                    f"registry {self.host} refused the given token.",
                    hint="The token may have expired or lack access; get a new one, "
                    "or pass username and password instead.",
                )
        if sent_token is not None and challenge.error == "insufficient_scope":
            with self._lock:
                held = next(
                    (t for t in self._tokens.values() if t.value == sent_token), None
                )
            if held is not None and _grants(scopes) <= held.grants:
                raise self._not_allowed(scopes, _jwt_access(sent_token))
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
        wanted = _grants(scopes)
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
                    f"registry {self.host} requires credentials to {_describe_scopes(scopes)} "
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
        return _Token(value, _grants(scopes), time.monotonic() + lifetime, margin)

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
        return AuthenticationError(
            f"registry {self.host} refused the credentials for {creds.describe_user()}.",
            hint=f"Check the username and password, or run `docker login {self.host}`.",
        )

    def _not_allowed(self, scopes: tuple[str, ...],
                     granted: frozenset[tuple[str, str, str]] | None = None
                     ) -> AuthenticationError:
        """``who`` may not do ``scopes``; with what the token ``granted``, only the rest."""
        scopes = _refused_scopes(scopes, granted)
        who = self._who()
        hint = (
            self._login_hint() if who == "anonymous access"
            else "Ask the registry's admin for access, or use other credentials."
        )
        return AuthenticationError(
            f"registry {self.host}: {who} is not allowed to {_describe_scopes(scopes)}.",
            hint=hint,
        )
