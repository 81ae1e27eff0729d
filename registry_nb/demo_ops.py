"""Demo data for the operations notebook: releases to clean up, mirror and compare.

:func:`seed_operations_demo` pushes, under one namespace (``ops/`` by default, apart from
the ``demo/`` images the other notebooks use), a base image and six releases of an
app (one a month, each on the same base), a ``stable`` tag on an older release,
``latest`` on the newest, an SBOM attached to two releases, and a second repository on
the same base. Everything is reproducible (fixed files and times): seeding again
rewrites the same digests, so a notebook that deleted some of them can run again.

:class:`ScratchRegistry` is a CNCF distribution registry of its own (``docker-registry
serve`` on a free 127.0.0.1 port, delete enabled, storage in a temporary folder) to
mirror into, and to show what garbage collection frees.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests

from .demo import noise_bytes, write_files
from .errors import RegistryError
from .images.artifacts import push_artifact
from .registry import ContainerRegistry

__all__ = ["seed_operations_demo", "ScratchRegistry", "OPS_RELEASES"]

#: The app's releases, oldest first (one a month from OPS_START).
OPS_RELEASES = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
OPS_START = datetime(2024, 1, 10, 9, 0, tzinfo=timezone.utc)
SBOM_TYPE = "application/spdx+json"


def _dpkg(openssl: str, extra: str = "") -> bytes:
    return (f"Package: base-files\nStatus: install ok installed\nVersion: 12.4+deb12u5\n\n"
            f"Package: openssl\nStatus: install ok installed\nVersion: {openssl}\n\n"
            f"{extra}").encode()


def _release_files(version: str, index: int) -> dict[str, bytes]:
    """What one release adds on the base: its code, its config, its packages."""
    files = {
        "app/VERSION": f"{version}\n".encode(),
        "app/server.py": f"# the demo app, release {version}\nprint('hello')\n".encode(),
        "app/bundle.bin": noise_bytes((40 + 8 * index) * 1024, seed=index),  # its own bytes
        "var/lib/dpkg/status": _dpkg("3.0.11-1~deb12u2" if index < 5 else "3.0.13-1~deb12u1",
                                     "" if index < 5 else "Package: curl\nStatus: install "
                                     "ok installed\nVersion: 7.88.1-10+deb12u5\n\n"),
        f"usr/lib/python3/dist-packages/requests-2.{28 + index}.0.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: requests\nVersion: 2.{28 + index}.0\n".encode(),
    }
    if index < 5:  # 1.5 drops its old migration script
        files["app/migrate.sh"] = b"#!/bin/sh\necho migrating\n"
    return files


def seed_operations_demo(reg: ContainerRegistry, namespace: str = "ops") -> dict[str, Any]:
    """Push the operations demo into ``reg`` under ``namespace``; return what was pushed.

    ``<ns>/base:1``; ``<ns>/app`` releases :data:`OPS_RELEASES` (created a month apart),
    ``stable`` = 1.2, ``latest`` = 1.5, an SPDX SBOM attached to 1.0 and 1.5 (through the
    fallback tag on distribution); ``<ns>/web:1`` and ``:2`` on the same base. Returns
    ``{"app", "web", "base", "digests": {tag: digest}, "sboms": {tag: digest}}``.
    """
    host = reg.registry_host
    app, web, base = f"{namespace}/app", f"{namespace}/web", f"{namespace}/base"
    digests: dict[str, str] = {}
    sboms: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="registry-nb-ops-") as tmp:
        root = Path(tmp)
        base_dir = write_files(root / "base", {
            "etc/os-release": b'NAME="registry_nb ops demo"\nID=demo\nVERSION_ID=12\n',
            "usr/share/base.bin": noise_bytes(256 * 1024, seed=100),  # every release shares it
        })
        reg.image_from_directory(base_dir, base, "1", created=OPS_START - timedelta(days=30),
                                 env={"PATH": "/usr/bin:/bin"}, created_by="COPY rootfs/ /")
        for index, version in enumerate(OPS_RELEASES):
            folder = write_files(root / f"app-{version}", _release_files(version, index))
            env = {"APP_VERSION": version, "LOG_LEVEL": "info"}
            if index >= 5:
                env["TLS_CERT_FILE"] = "/etc/app/cert.pem"
            result = reg.image_from_directory(
                folder, app, version, base=f"{host}/{base}:1",
                created=OPS_START + timedelta(days=30 * index), env=env,
                labels={"org.opencontainers.image.version": version},
                user="1000" if index >= 5 else None, workdir="/app",
                cmd=["python3", "/app/server.py"], created_by=f"COPY app-{version}/ /")
            digests[version] = result["digest"]
        for tag, release in (("stable", "1.2"), ("latest", OPS_RELEASES[-1])):
            manifest = reg.client.get_manifest(app, release)
            reg.client.put_manifest(app, tag, manifest.raw, manifest.media_type)
            digests[tag] = manifest.digest
        for release in ("1.0", OPS_RELEASES[-1]):
            sbom = root / f"sbom-{release}.spdx.json"
            sbom.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": f"{app}:{release}",
                                        "packages": [{"name": "requests"}]}))
            sboms[release] = push_artifact(reg.client, app, sbom, None, artifact_type=SBOM_TYPE,
                                           subject=digests[release],
                                           created=OPS_START)["digest"]
        for number in (1, 2):
            folder = write_files(root / f"web-{number}", {
                "srv/index.html": f"<h1>web {number}</h1>\n".encode(),
                "srv/assets.bin": noise_bytes(96 * 1024, seed=200 + number)})
            digests[f"web:{number}"] = reg.image_from_directory(
                folder, web, str(number), base=f"{host}/{base}:1",
                created=OPS_START + timedelta(days=45 * number),
                created_by="COPY web/ /srv/")["digest"]
    return {"app": app, "web": web, "base": base, "digests": digests, "sboms": sboms}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScratchRegistry:
    """A distribution registry of its own on 127.0.0.1 (``delete`` enabled unless told),
    in ``folder`` or a temporary one; :meth:`stop` (or leaving the ``with`` block) ends it
    and removes the folder it made."""

    def __init__(self, folder: str | Path | None = None, *, delete: bool = True) -> None:
        binary = shutil.which("docker-registry") or shutil.which("registry")
        if binary is None:
            raise RegistryError("no docker-registry program here to start a scratch registry",
                                hint="Install Debian's docker-registry package (apt-get "
                                     "install docker-registry), or mirror into a registry "
                                     "you have.")
        self.binary = binary
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="registry-nb-scratch-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.config = self.folder / "config.yml"
        self.storage = self.folder / "data"
        self.config.write_text(json.dumps({  # YAML is a superset of JSON
            "version": 0.1, "log": {"level": "error"},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": delete},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host},
        }))
        self._running: list[subprocess.Popen[bytes]] = []  # the serving process, if any
        self._start()
        # stopped with the interpreter (a notebook's kernel) if nobody calls stop()
        self._finalizer = weakref.finalize(self, _shut_down, self._running,
                                           self.folder if self._own_folder else None)

    def __repr__(self) -> str:
        return f"ScratchRegistry({self.host})"

    def __enter__(self) -> ScratchRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self) -> None:
        self._running.append(subprocess.Popen([self.binary, "serve", str(self.config)],
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://{self.host}/v2/", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        _halt(self._running)
        raise RegistryError(f"the scratch registry did not start on {self.host}",
                            hint="Run the docker-registry program by hand to see why.")

    def disk_bytes(self) -> int:
        """Bytes the registry's storage holds on disk (blobs and metadata)."""
        return sum(p.stat().st_size for p in self.storage.rglob("*") if p.is_file())

    def garbage_collect(self) -> dict[str, int]:
        """Free the blobs no manifest references: stop the registry (distribution's garbage
        collector must not run beside writes), run ``garbage-collect --delete-untagged``,
        start it again on the same port. Returns disk bytes before and after."""
        before = self.disk_bytes()
        _halt(self._running)
        try:
            done = subprocess.run([self.binary, "garbage-collect", "--delete-untagged",
                                   str(self.config)], capture_output=True, text=True,
                                  timeout=120)
        finally:
            self._start()
        if done.returncode != 0:
            raise RegistryError(f"garbage-collect failed: {done.stderr.strip()[-300:]}",
                                hint="Run it by hand with the registry stopped.")
        return {"before_bytes": before, "after_bytes": self.disk_bytes()}

    def stop(self) -> None:
        """Stop the registry and remove its folder (when it made one)."""
        self._finalizer()


def _halt(running: list[subprocess.Popen[bytes]]) -> None:
    while running:
        process = running.pop()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _shut_down(running: list[subprocess.Popen[bytes]], folder: Path | None) -> None:
    _halt(running)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
