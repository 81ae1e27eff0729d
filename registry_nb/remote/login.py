"""Store a login in the docker config the way ``docker login`` does.

The credential helper named for the host in ``credHelpers``, else ``credsStore``, gets
the secret (``docker-credential-<name> store``) and ``auths[host]`` stays an empty
object; without a helper ``auths[host].auth`` is base64 of ``user:password``. The file
is written atomically (a temporary file in the same folder, renamed) with mode 0600.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..errors import AuthenticationError
from ..oci.reference import DOCKER_HUB
from .credentials import DOCKER_HUB_CONFIG_KEY, docker_config_path, host_of, load_docker_config

__all__ = ["store_docker_login"]


def _store_in_helper(helper: str, server: str, username: str, password: str) -> None:
    exe = f"docker-credential-{helper}"
    binary = shutil.which(exe)
    if binary is None:
        raise AuthenticationError(
            f"the docker config names the credential helper {exe}, which is not on PATH.",
            hint=f"Install {exe}, or remove it from the docker config (credsStore or "
            "credHelpers) to store the login in the file.",
        )
    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": password})
    proc = subprocess.run([binary, "store"], input=payload, capture_output=True, text=True,
                          timeout=30, check=False)
    if proc.returncode != 0:
        first = (proc.stdout.strip() or proc.stderr.strip() or "no message").splitlines()[0]
        raise AuthenticationError(f"credential helper {exe} could not store the login for "
                                  f"{server} (exit status {proc.returncode}): {first[:200]}",
                                  hint="Check the helper (is its keychain unlocked?).")


def store_docker_login(registry: str, username: str, password: str,
                       path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Save ``username``/``password`` for ``registry`` as ``docker login`` would.

    Returns ``{"config": path, "key": auths key, "helper": helper name or None}``.
    Other keys of the file are kept as they were.
    """
    host = host_of(registry)
    key = DOCKER_HUB_CONFIG_KEY if host == DOCKER_HUB else host
    file = Path(path) if path is not None else docker_config_path()
    config: dict[str, Any] = dict(load_docker_config(file))
    helper = (config.get("credHelpers") or {}).get(key) or (
        config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    auths = dict(config.get("auths") or {})
    if helper:
        _store_in_helper(helper, key, username, password)
        auths[key] = {}
    else:
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        auths[key] = {"auth": encoded}
    config["auths"] = auths
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".config.json.", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            json.dump(config, out, indent="\t")
            out.write("\n")
        os.replace(temp, file)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return {"config": str(file), "key": key, "helper": helper or None}
