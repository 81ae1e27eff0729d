"""Registry credentials and where they come from: the docker config and credential helpers.

:class:`RegistryCredentials` holds one registry's secrets and never shows them (its repr
masks them). :func:`credentials_from_docker_config` looks a registry up in
``$DOCKER_CONFIG/config.json`` the way docker does: ``credHelpers``, then ``auths``
(with ``identitytoken``), then ``credsStore``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    AuthenticationError,
    InvalidReferenceError,
    RegistryError,
)
from ..oci.reference import DOCKER_HUB, DOCKER_HUB_ALIASES, normalize_registry

__all__ = [
    "DOCKER_HUB_CONFIG_KEY",
    "RegistryCredentials",
    "DockerConfig",
    "docker_config_path",
    "load_docker_config",
    "credentials_from_docker_config",
    "host_of",
]

log = logging.getLogger(__name__)

#: The key docker writes Docker Hub credentials under (config.json and helpers).
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HELPER_TIMEOUT = 30.0

# --------------------------------------------------------------------- hosts


def host_of(url_or_host: str) -> str:
    """``host[:port]`` of a registry URL or host; Docker Hub spellings become ``docker.io``.

    Uses :func:`registry_nb.reference.normalize_registry`, and for what it rejects
    (docker config keys with odd paths, user info, any scheme) a lenient strip as
    docker's ``ConvertToHostname`` does: an unbracketed IPv6 address with a port
    (``https://::1:6555/v2/``) becomes ``[::1]:6555``. A key with no host at all
    (``unix:///var/run/docker.sock``) stays as written, so it matches no registry.
    """
    try:
        return normalize_registry(url_or_host)
    except InvalidReferenceError:
        raw = (url_or_host or "").strip()
        text = raw.split("://", 1)[1] if "://" in raw else raw
        text = text.split("/", 1)[0].rsplit("@", 1)[-1].lower()
        if not text:
            return raw
        text = _bracket_ipv6(text)
        return DOCKER_HUB if text in DOCKER_HUB_ALIASES else text


def _bracket_ipv6(text: str) -> str:
    """``::1:6555`` -> ``[::1]:6555`` when the part before the last colon is IPv6."""
    if text.startswith("[") or text.count(":") < 2:
        return text
    address, _, port = text.rpartition(":")
    if not port.isdigit():
        return text
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return text
    return f"[{address}]:{port}"


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
        return host_of(self.registry_url)

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
    host = host_of(registry_host)
    if config is None or not isinstance(config, Mapping):
        config = load_docker_config(config)
    path: Path | None = getattr(config, "path", None)
    _check_config(config, path)
    source = f"docker config {path}" if path else "the docker config"

    helper: str | None = None
    helper_key = ""
    for key, name in (config.get("credHelpers") or {}).items():
        if host_of(key) == host and name:
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
        if host_of(key) == host:
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
