"""Is it a registry at all? One ``GET /v2/`` that tells a registry from a web page.

Asked only after a request failed in a way a registry would not fail (a 404 on
``/v2/_catalog`` without the registry's header, a web page where JSON belongs), so
that the user reads "not a registry" instead of "no catalog" or "no such manifest".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import (
    AuthenticationError,
    InvalidManifestError,
    NotARegistryError,
    NotFoundError,
    RegistryHTTPError,
)
from .transport import Transport

__all__ = ["probe_not_a_registry", "RegistryProbe"]


def probe_not_a_registry(transport: Transport) -> NotARegistryError | None:
    """The error to raise when what answers at ``transport``'s address is no registry.

    A registry answers ``GET /v2/`` with 401 (auth first), or with a
    ``Docker-Distribution-API-Version`` header, or with 200 and a JSON body; anything
    else (an HTML page, a bare 404) is not a registry. None when it is one.
    """
    try:
        response = transport.request("GET", "/v2/")
    except AuthenticationError:  # a challenge was answered: registries do that
        return None
    with response:
        status = response.status_code
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        api = response.headers.get("Docker-Distribution-API-Version")
    if api or status == 401 or (status == 200 and kind.endswith("json")):
        return None
    return NotARegistryError(
        transport.base_url,
        f"GET /v2/ answered {status} {kind or 'without a Content-Type'} and no "
        "Docker-Distribution-API-Version header.",
    )


class RegistryProbe:
    """Asks :func:`probe_not_a_registry` once per address, after the first odd failure."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._lock = threading.Lock()
        self._asked = False
        self._found: NotARegistryError | None = None

    def not_a_registry(self) -> NotARegistryError | None:
        """The error that explains failures here when this is no registry, else None."""
        with self._lock:
            if not self._asked:
                self._found = probe_not_a_registry(self.transport)
                self._asked = True
            return self._found

    @contextmanager
    def explaining(self) -> Iterator[None]:
        """Turn a 404 or garbled answer into NotARegistryError when this is no registry."""
        try:
            yield
        except (NotFoundError, RegistryHTTPError, InvalidManifestError) as exc:
            better = self.not_a_registry()
            if better is None:
                raise
            raise better from exc
