"""One request to a registry as the pipeline carries it, and the URL helpers it needs.

A :class:`RegistryRequest` replaces long parameter lists: the transport builds one per
call, the auth flow (:meth:`~registry_nb.remote.auth.RegistryAuth.auth_flow`) hands it
back with wider scopes, and the retry loop rewinds its :class:`RequestBody`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

__all__ = ["RegistryRequest", "RequestBody", "origin_of", "safe_url"]


def origin_of(url: str) -> tuple[str, str]:
    """``(scheme, host:port)`` of a URL, with the default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, f"{host}:{port}"


def safe_url(url: str) -> str:
    """``url`` without user info, query and fragment (they may carry secrets)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


class RequestBody:
    """A request body and whether (and how) it can be sent again."""

    def __init__(self, data: Any = None) -> None:
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
        else:  # an iterator of chunks: sent once
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


@dataclass(frozen=True)
class RegistryRequest:
    """What to send (``url``: absolute), and the token ``scopes`` it needs."""

    method: str
    url: str
    scopes: tuple[str, ...] = ()
    headers: Mapping[str, str] | None = None
    params: Any = None
    body: RequestBody = field(default_factory=RequestBody)
    stream: bool = False
    timeout: float | tuple[float, float] | None = None

    def with_scopes(self, scopes: tuple[str, ...]) -> RegistryRequest:
        """The same request for other scopes."""
        return replace(self, scopes=scopes)
