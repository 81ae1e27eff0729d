"""What a Dask worker needs to rebuild a registry facade, with no secret in plain text.

A :class:`RegistrySpec` is picklable and small: the registry URL, TLS choices, and either
nothing about credentials (the worker reads its own docker config, as docker does) or a
:class:`SealedCredentials`. A sealed secret is the credentials' JSON XORed with a random
pad of the same length (a one-time pad); the pad stays in the driver's process and
reaches workers once, through a Dask worker plugin (:class:`~.keys.FleetKeys`), never inside a
task. So task graphs, task keys, dashboard labels and logs hold the sealed bytes or the
word ``sealed``; repr and str show the key id only. Anyone who can read both a task's
pickle and the plugin's can rebuild the secret: run the cluster with TLS
(``distributed.security.Security``) when the network between driver, scheduler and
workers is not trusted.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AuthenticationError
from ..remote.credentials import RegistryCredentials

if TYPE_CHECKING:
    from ..registry import ContainerRegistry

__all__ = ["RegistrySpec", "SealedCredentials", "spec_of", "facade_of", "install_pads",
           "remove_pads"]

#: One-time pads by key id, in this process (the driver's, or a worker's via FleetKeys).
_PADS: dict[str, bytes] = {}
_PADS_LOCK = threading.Lock()
_FACADES: dict[RegistrySpec, ContainerRegistry] = {}
_FACADES_LOCK = threading.Lock()


def install_pads(pads: dict[str, bytes]) -> None:
    """Make sealed credentials with these key ids openable in this process."""
    with _PADS_LOCK:
        _PADS.update(pads)


def remove_pads(key_ids: list[str]) -> None:
    """Forget these pads (their sealed credentials no longer open here)."""
    with _PADS_LOCK:
        for key in key_ids:
            _PADS.pop(key, None)


class SealedCredentials:
    """Credentials that travel sealed: repr, str, pickle and Dask tokens show no secret."""

    __slots__ = ("key_id", "_sealed")

    def __init__(self, key_id: str, sealed: bytes) -> None:
        self.key_id = key_id
        self._sealed = sealed

    @classmethod
    def seal(cls, credentials: RegistryCredentials) -> SealedCredentials:
        """Seal ``credentials`` with a fresh pad kept in this process."""
        plain = json.dumps({"username": credentials.username, "password": credentials.password,
                            "registry_url": credentials.registry_url,
                            "token": credentials.token,
                            "identity_token": credentials.identity_token}).encode()
        pad = secrets.token_bytes(len(plain))
        key_id = secrets.token_hex(8)
        with _PADS_LOCK:
            _PADS[key_id] = pad
        return cls(key_id, bytes(a ^ b for a, b in zip(plain, pad, strict=True)))

    def open(self) -> RegistryCredentials:
        """The credentials, where this key's pad is known (raises AuthenticationError)."""
        with _PADS_LOCK:
            pad = _PADS.get(self.key_id)
        if pad is None or len(pad) != len(self._sealed):
            raise AuthenticationError(
                f"the sealed credentials {self.key_id} cannot be opened in process "
                f"{os.getpid()}: its key was never given to this worker.",
                hint="Build the Fleet with this Dask client (it registers the key plugin on "
                     "every worker), or leave credentials=None so that workers read their "
                     "own docker config.",
            )
        fields = json.loads(bytes(a ^ b for a, b in zip(self._sealed, pad, strict=True)))
        return RegistryCredentials(**fields)

    def pad(self) -> bytes | None:
        """This secret's pad, where known (what :class:`FleetKeys` carries to workers)."""
        with _PADS_LOCK:
            return _PADS.get(self.key_id)

    def __repr__(self) -> str:
        return f"SealedCredentials(sealed {self.key_id})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (SealedCredentials, (self.key_id, self._sealed))

    def __dask_tokenize__(self) -> str:
        return f"sealed-{self.key_id}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SealedCredentials) and other.key_id == self.key_id

    def __hash__(self) -> int:
        return hash(self.key_id)


@dataclass(frozen=True)
class RegistrySpec:
    """How to rebuild one registry's facade in another process (picklable, no plain secret)."""

    registry_url: str
    host: str
    insecure: bool = False
    ca_bundle: str | None = None
    max_workers: int = 8
    credentials: SealedCredentials | None = None  # None: the process's docker config

    def __repr__(self) -> str:
        how = "sealed credentials" if self.credentials else "docker config"
        return f"RegistrySpec({self.host!r}, {how})"

    def __dask_tokenize__(self) -> str:
        return repr((self.registry_url, self.insecure, self.ca_bundle, self.max_workers,
                     self.credentials.key_id if self.credentials else None))


def spec_of(registry: ContainerRegistry | str, *, max_workers: int | None = None
            ) -> RegistrySpec:
    """The spec of a facade (its explicit credentials sealed) or of a URL (docker config)."""
    from ..registry import ContainerRegistry

    if isinstance(registry, str):
        registry = ContainerRegistry(registry)
    if not isinstance(registry, ContainerRegistry):
        raise TypeError(f"a fleet holds ContainerRegistry objects or URLs, not "
                        f"{type(registry).__name__}")
    sealed = None
    if registry.credentials is not None and not registry.credentials.is_anonymous:
        sealed = SealedCredentials.seal(registry.credentials)
    return RegistrySpec(registry.registry_url, registry.registry_host,
                        insecure=registry.insecure, ca_bundle=registry.ca_bundle,
                        max_workers=max_workers or registry.max_workers, credentials=sealed)


def facade_of(spec: RegistrySpec) -> ContainerRegistry:
    """The facade of ``spec`` in this process (one per spec, reused by later tasks)."""
    from ..registry import ContainerRegistry

    with _FACADES_LOCK:
        found = _FACADES.get(spec)
        if found is None:
            credentials = spec.credentials.open() if spec.credentials else None
            found = ContainerRegistry(spec.registry_url, credentials, insecure=spec.insecure,
                                      ca_bundle=spec.ca_bundle, max_workers=spec.max_workers)
            _FACADES[spec] = found
        return found


def forget_facades() -> None:
    """Close and drop the facades this process built from specs."""
    with _FACADES_LOCK:
        facades = list(_FACADES.values())
        _FACADES.clear()
    for facade in facades:
        facade.close()
