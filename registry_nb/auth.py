"""Registry credentials, docker config lookup, WWW-Authenticate parsing and the auth flow.

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
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from .errors import (
    AuthenticationError,
    InsecureRegistryError,
    InvalidReferenceError,
    RegistryError,
    RegistryHTTPError,
    RegistryUnavailableError,
)
from .reference import DOCKER_HUB, is_loopback_host, normalize_registry

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_CONFIG_KEY",
    "CATALOG_SCOPE",
    "RegistryCredentials",
    "DockerConfig",
    "docker_config_path",
    "load_docker_config",
    "credentials_from_docker_config",
    "Challenge",
    "parse_www_authenticate",
    "repository_scope",
    "normalize_scopes",
    "RegistryAuth",
]

log = logging.getLogger(__name__)

#: The key docker writes Docker Hub credentials under (config.json and helpers).
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
#: Scope of ``GET /v2/_catalog``.
CATALOG_SCOPE = "registry:catalog:*"

_HUB_ALIASES = frozenset(
    {"", "docker.io", "index.docker.io", "registry.hub.docker.com", "registry-1.docker.io"}
)
_HELPER_TIMEOUT = 30.0
_MAX_TOKEN_BODY = 1 << 20
_MAX_CACHED_TOKENS = 256
#: OAuth client id sent with refresh-token grants.
_CLIENT_ID = "registry-nb"
#: An Authorization value HTTP can carry: a scheme, one space, visible ASCII.
_HEADER_VALUE_RE = re.compile(r"[A-Za-z]+ [\x21-\x7e]+")


# --------------------------------------------------------------------- hosts


def _normalize_host(url_or_host: str) -> str:
    """``host[:port]`` of a registry URL or host; Docker Hub spellings become ``docker.io``.

    Uses :func:`registry_nb.reference.normalize_registry`, and for what it rejects
    (docker config keys with odd paths or user info) a lenient scheme/path strip.
    """
    try:
        return normalize_registry(url_or_host)
    except InvalidReferenceError:
        text = (url_or_host or "").strip()
        if "://" in text:
            text = text.split("://", 1)[1]
        text = text.split("/", 1)[0].rsplit("@", 1)[-1].lower()
        return DOCKER_HUB if text in _HUB_ALIASES else text


# --------------------------------------------------------------- credentials


def _mask(secret: str | None) -> str | None:
    if secret is None:
        return None
    return "***" if secret else ""


@dataclass(repr=False)
class RegistryCredentials:
    """Credentials for one registry.

    ``get_auth_header()`` gives ``"Basic <base64 user:password>"``, or
    ``"Bearer <token>"`` when a pre-obtained ``token`` is set. ``identity_token`` is
    an OAuth refresh token (``docker login`` stores one for some registries) that
    the auth flow exchanges for access tokens. repr and str mask every secret.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    registry_url: str = ""
    token: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"RegistryCredentials(username={self.username!r}, "
            f"password={_mask(self.password)!r}, registry_url={self.registry_url!r}, "
            f"token={_mask(self.token)!r}, identity_token={_mask(self.identity_token)!r})"
        )

    __str__ = __repr__

    @property
    def registry(self) -> str:
        """The normalised ``host[:port]`` of ``registry_url`` (``docker.io`` for Hub)."""
        return _normalize_host(self.registry_url)

    @property
    def has_basic(self) -> bool:
        """True when a username or password is set."""
        return bool(self.username or self.password)

    @property
    def is_anonymous(self) -> bool:
        """True when no secret of any kind is set."""
        return not (self.has_basic or self.token or self.identity_token)

    def get_auth_header(self) -> str:
        """The Authorization header value: Bearer for a token, else Basic, else ``""``."""
        if self.token:
            return f"Bearer {self.token}"
        if self.has_basic:
            raw = f"{self.username}:{self.password}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        return ""

    def describe_user(self) -> str:
        """Who these credentials authenticate as, safe to show."""
        if self.username:
            return f"user {self.username}"
        if self.token:
            return "the given token"
        if self.identity_token:
            return "the identity token"
        return "anonymous access"

    @classmethod
    def from_docker_config(
        cls, registry_url: str, path: str | os.PathLike[str] | None = None
    ) -> RegistryCredentials | None:
        """The docker config's credentials for ``registry_url``, or None."""
        return credentials_from_docker_config(registry_url, path)


# ------------------------------------------------------------- docker config


class DockerConfig(dict):  # type: ignore[type-arg]
    """The parsed docker ``config.json``; ``path`` says where it came from."""

    path: Path | None = None


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    folder = Path(base).expanduser() if base else Path.home() / ".docker"
    return folder / "config.json"


def _config_error(path: Path | None, what: str) -> RegistryError:
    where = f"docker config {path}" if path else "the docker config"
    return RegistryError(
        f"{where} is malformed: {what}.",
        hint="Fix or remove the file (docker login rewrites it), or pass credentials= explicitly.",
    )


def load_docker_config(path: str | os.PathLike[str] | None = None) -> DockerConfig:
    """Read a docker ``config.json`` (default location when ``path`` is None).

    A missing file gives an empty config; unreadable or malformed JSON raises a
    :class:`RegistryError` naming the file and the problem.
    """
    file = Path(path).expanduser() if path is not None else docker_config_path()
    if file.is_dir():
        file = file / "config.json"
    config = DockerConfig()
    config.path = file
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return config
    except (OSError, UnicodeDecodeError) as exc:
        raise _config_error(file, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if not text.strip():
        return config
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _config_error(
            file, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise _config_error(file, "the top level is not a JSON object")
    _check_config(data, file)
    config.update(data)
    return config


def _check_config(data: Mapping[str, Any], path: Path | None) -> None:
    auths = data.get("auths")
    if auths is not None:
        if not isinstance(auths, dict):
            raise _config_error(path, '"auths" is not an object')
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                raise _config_error(path, f'"auths" entry {key!r} is not an object')
    helpers = data.get("credHelpers")
    if helpers is not None:
        if not isinstance(helpers, dict) or not all(
            isinstance(v, str) for v in helpers.values()
        ):
            raise _config_error(path, '"credHelpers" is not an object of helper names')
    store = data.get("credsStore")
    if store is not None and not isinstance(store, str):
        raise _config_error(path, '"credsStore" is not a string')


def credentials_from_docker_config(
    registry_host: str,
    config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> RegistryCredentials | None:
    """Credentials docker would use for ``registry_host``, or None when there are none.

    Looks at ``credHelpers[host]``, then ``credsStore`` (running
    ``docker-credential-<name> get``), then the ``auths`` entries (keys may be
    hosts or URLs; Docker Hub is ``https://index.docker.io/v1/``).
    """
    host = _normalize_host(registry_host)
    if config is None or not isinstance(config, Mapping):
        config = load_docker_config(config)
    path: Path | None = getattr(config, "path", None)
    _check_config(config, path)
    source = f"docker config {path}" if path else "the docker config"

    helper: str | None = None
    helper_key = ""
    for key, name in (config.get("credHelpers") or {}).items():
        if _normalize_host(key) == host and name:
            helper, helper_key = name, "credHelpers"
            break
    if helper is None and config.get("credsStore"):
        helper, helper_key = config["credsStore"], "credsStore"
    if helper:
        found = _credentials_from_helper(helper, host, f"{helper_key} of {source}")
        if found is not None:
            return found

    auths: Mapping[str, Any] = config.get("auths") or {}
    keys = sorted(auths, key=lambda k: k != host)  # an exact key first
    for key in keys:
        if _normalize_host(key) == host:
            found = _credentials_from_entry(auths[key], key, host, path)
            if found is not None:
                return found
    return None


def _credentials_from_entry(
    entry: Mapping[str, Any], key: str, host: str, path: Path | None
) -> RegistryCredentials | None:
    username = entry.get("username") or ""
    password = entry.get("password") or ""
    encoded = entry.get("auth") or ""
    identity = entry.get("identitytoken") or None
    token = entry.get("registrytoken") or None
    for name, value in (
        ("username", username), ("password", password), ("auth", encoded),
        ("identitytoken", identity or ""), ("registrytoken", token or ""),
    ):
        if not isinstance(value, str):
            raise _config_error(path, f'"{name}" of "auths" entry {key!r} is not a string')
    if encoded:
        try:
            raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            raise _config_error(
                path, f'"auth" of "auths" entry {key!r} is not base64 of "user:password"'
            ) from None
        if ":" not in decoded:
            raise _config_error(
                path, f'"auth" of "auths" entry {key!r} does not decode to "user:password"'
            )
        username, password = decoded.split(":", 1)
    if not (username or password or identity or token):
        return None
    return RegistryCredentials(
        username=username, password=password, registry_url=host,
        token=token, identity_token=identity,
    )


def _credentials_from_helper(name: str, host: str, source: str) -> RegistryCredentials | None:
    """Run ``docker-credential-<name> get`` for ``host``; None when it has nothing."""
    exe = f"docker-credential-{name}"
    what_to_do = (
        f"Install {exe} or put it on PATH, remove {name!r} from the {source}, "
        "or pass credentials=RegistryCredentials(...)."
    )
    binary = shutil.which(exe)
    if binary is None:
        raise AuthenticationError(
            f"docker credential helper {exe} (named in the {source}) is not installed "
            f"or not on PATH, so the credentials for {host} cannot be read.",
            hint=what_to_do,
        )
    server = DOCKER_HUB_CONFIG_KEY if host == DOCKER_HUB else host
    log.debug("asking docker credential helper %s for %s", exe, server)
    try:
        proc = subprocess.run(
            [binary, "get"], input=server, capture_output=True, text=True,
            timeout=_HELPER_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        raise AuthenticationError(
            f"docker credential helper {exe} did not answer within {_HELPER_TIMEOUT:.0f} s "
            f"for {host}.",
            hint="It may be waiting for a keychain to be unlocked; " + what_to_do,
        ) from None
    except OSError as exc:
        raise AuthenticationError(
            f"docker credential helper {exe} could not be run: {exc.strerror or exc}.",
            hint=what_to_do,
        ) from None
    if proc.returncode != 0:
        message = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        first = message[0][:200] if message else "no message"
        if "credentials not found" in first.lower():
            return None
        raise AuthenticationError(
            f"docker credential helper {exe} failed for {host} "
            f"(exit status {proc.returncode}): {first}",
            hint=what_to_do,
        )
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AuthenticationError(
            f"docker credential helper {exe} printed something that is not a JSON object "
            f"for {host}.",
            hint=what_to_do,
        )
    username = data.get("Username") or ""
    secret = data.get("Secret") or ""
    if not isinstance(username, str) or not isinstance(secret, str):
        raise AuthenticationError(
            f"docker credential helper {exe} answered with a non-string Username or Secret "
            f"for {host}.",
            hint=what_to_do,
        )
    if not secret and not username:
        return None
    if username == "<token>":
        return RegistryCredentials(registry_url=host, identity_token=secret)
    return RegistryCredentials(username=username, password=secret, registry_url=host)


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
        self.host = _normalize_host(host)
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
        schemes = ", ".join(sorted({c.scheme for c in challenges})) or "none"
        raise AuthenticationError(
            f"registry {self.host} answered 401 without a usable challenge "
            f"(schemes: {schemes}).",
            hint="registry-nb supports Basic and Bearer token auth.",
        )

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
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": _CLIENT_ID, "scope": " ".join(scopes),
                }
                if service:
                    form["service"] = service
                response = self._session.post(realm, data=form, **kwargs)
            else:
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
            body = _read_bounded(response, _MAX_TOKEN_BODY)
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


def _read_bounded(response: requests.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body (works for streamed and read responses)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except (requests.RequestException, OSError):
        pass
    return b"".join(chunks)[:limit]
