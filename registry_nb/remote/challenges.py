"""What registries say about auth: ``WWW-Authenticate`` challenges and token scopes.

Pure parsing, no I/O: :func:`parse_www_authenticate` reads a challenge header the way
RFC 7235 writes it (and the way real registries bend it); scopes are normalised,
compared as grants, read back from a JWT's ``access`` claim, and described in words.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Challenge", "parse_www_authenticate", "repository_scope", "normalize_scopes",
           "split_scope", "scope_grants", "token_grants", "refused_scopes", "describe_scopes",
           "CATALOG_SCOPE"]

#: Scope of ``GET /v2/_catalog``.
CATALOG_SCOPE = "registry:catalog:*"


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
    # a bare value may also hold '/' (token68 characters), as regclient and registries send
    rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([!#$%&\'*+\-./^_`|~0-9A-Za-z]+))'
    r'[ \t]*(?=,|$)', re.S
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


def split_scope(scope: str) -> tuple[str, str, list[str]] | None:
    head, sep, actions = scope.rpartition(":")
    kind, sep2, name = head.partition(":")
    if not (sep and sep2 and kind and name):
        return None
    return kind, name, [a for a in actions.split(",") if a]


def normalize_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Merge actions per resource, sort and de-duplicate: a canonical cache key."""
    if isinstance(scopes, tuple):  # every request's scopes: remembered
        try:
            return _normalized(scopes)
        except TypeError:  # an unhashable item
            pass
    return _normalize(scopes)


@functools.lru_cache(maxsize=1024)
def _normalized(scopes: tuple[str, ...]) -> tuple[str, ...]:
    return _normalize(scopes)


def _normalize(scopes: Iterable[str]) -> tuple[str, ...]:
    merged: dict[tuple[str, str], set[str]] = {}
    opaque: set[str] = set()
    for scope in scopes:
        for item in str(scope).split():
            parts = split_scope(item)
            if parts is None:
                opaque.add(item)
            else:
                merged.setdefault((parts[0], parts[1]), set()).update(parts[2])
    out = {f"{k}:{n}:{','.join(sorted(acts))}" for (k, n), acts in merged.items()}
    return tuple(sorted(out | opaque))


def scope_grants(scopes: Iterable[str]) -> frozenset[tuple[str, str, str]]:
    result: set[tuple[str, str, str]] = set()
    for scope in scopes:
        parts = split_scope(scope)
        if parts is None:
            result.add((scope, "", ""))
        else:
            result.update((parts[0], parts[1], action) for action in parts[2])
    return frozenset(result)


def token_grants(token: str | None) -> frozenset[tuple[str, str, str]] | None:
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


def refused_scopes(scopes: Iterable[str],
                    granted: frozenset[tuple[str, str, str]] | None) -> tuple[str, ...]:
    """``scopes`` without the actions ``granted`` holds (all of them when unknown)."""
    scopes = tuple(scopes)
    if granted is None:
        return scopes
    out = []
    for scope in scopes:
        split = split_scope(scope)
        if split is None:
            out.append(scope)
            continue
        kind, name, actions = split
        missing = [a for a in actions if (kind, name, a) not in granted]
        if missing:
            out.append(f"{kind}:{name}:{','.join(missing)}")
    return tuple(out) or scopes


def describe_scopes(scopes: Iterable[str]) -> str:
    parts = []
    for scope in scopes:
        split = split_scope(scope)
        if split is None:
            parts.append(scope)
        elif split[0] == "registry" and split[1] == "catalog":
            parts.append("list the catalog")
        else:
            parts.append(f"{' and '.join(split[2]) or 'access'} {split[0]} {split[1]}")
    return ", ".join(parts) or "access it"
