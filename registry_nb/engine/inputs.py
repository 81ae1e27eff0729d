"""What the facade hands the engine: build contexts and credentials as docker wants them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import NotFoundError

__all__ = ["build_context", "auth_config", "credential_field", "strip_scheme"]


def build_context(path: Path) -> tuple[Path, str]:
    """(context folder, Dockerfile name) of a Dockerfile path or a folder holding one."""
    if path.is_dir():
        if not (path / "Dockerfile").is_file():
            raise NotFoundError(f"no Dockerfile in {path}.",
                                hint="Pass the Dockerfile's path or a folder holding one.")
        return path, "Dockerfile"
    if path.is_file():
        return path.parent, path.name
    raise NotFoundError(f"{path} does not exist.",
                        hint="Pass the Dockerfile's path or a folder holding one.")


def auth_config(credentials: Any, server: str) -> dict[str, str] | None:
    """The engine's ``auth_config`` for ``server``; None leaves it to the docker config.

    Username + password (or token) are sent as such; a token alone is sent as a
    registry (Bearer) token and an identity token as docker's refresh token.
    """
    if credentials is None:
        return None
    user = credential_field(credentials, "username")
    password = (credential_field(credentials, "password")
                or credential_field(credentials, "token"))
    where = {"serveraddress": server}
    if user and password:
        return {"username": user, "password": password, **where}
    if credential_field(credentials, "token"):
        return {"registrytoken": credential_field(credentials, "token"), **where}
    if credential_field(credentials, "identity_token"):
        return {"identitytoken": credential_field(credentials, "identity_token"), **where}
    return None


def credential_field(credentials: Any, name: str) -> str:
    """One field of credentials given as an object or a mapping ('' when absent)."""
    if credentials is None:
        return ""
    if isinstance(credentials, Mapping):
        value = credentials.get(name)
    else:
        value = getattr(credentials, name, None)
    return value if isinstance(value, str) else ""


def strip_scheme(registry: str) -> str:
    reg = registry.strip()
    for prefix in ("https://", "http://"):
        if reg.startswith(prefix):
            reg = reg[len(prefix) :]
    return reg.rstrip("/")
