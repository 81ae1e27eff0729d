"""Demo images for the notebooks, Binder and the main command.

:func:`seed_demo_images` pushes a small, fixed set of images into a registry with
the project's own daemonless push (no Docker engine needed). Every image is built
reproducibly from generated files with a fixed creation time, so the digests are
the same on every machine and every run, and seeding twice changes nothing. Each
layer's history (``created_by``) names the build step that would make it, as a
Dockerfile would (``COPY data/ /data/``, ``RUN rm …``).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from .oci import Index, Platform
from .registry import ContainerRegistry

__all__ = ["seed_demo_images", "DEMO_CREATED", "write_files", "noise_bytes"]

#: Creation time of every demo image (fixed, so digests never change).
DEMO_CREATED = datetime(2024, 1, 15, 12, 0, tzinfo=timezone.utc)

_OCI_LABELS = {
    "org.opencontainers.image.source": "https://example.org/registry-nb/demo",
    "org.opencontainers.image.version": "2",
    "org.opencontainers.image.revision": "0123456789abcdef",
    "org.opencontainers.image.created": "2024-01-15T12:00:00Z",
}


_DPKG_STATUS = b"""Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u5

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u2

"""


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (relative path -> bytes) under ``root``; return ``root``."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def noise_bytes(size: int, seed: int) -> bytes:
    """Incompressible but reproducible bytes."""
    return random.Random(seed).randbytes(size)


def seed_demo_images(registry_url: str = "127.0.0.1:5000", *,
                     say: Callable[[str], None] = print) -> list[str]:
    """Push the demo images into ``registry_url``; return their references.

    ``demo/hello:1`` (= ``latest``), ``demo/hello:2``, ``demo/app:1.0`` (with
    audit findings and package databases), ``demo/big:1`` and ``demo/big:2`` (which
    overwrites and deletes big files: wasted space), and ``demo/multiarch:1`` (an
    index of linux/amd64 and linux/arm64). The base layer is shared.
    """
    reg = ContainerRegistry(registry_url)
    host = reg.registry_host
    base_ref = f"{host}/demo/hello:1"
    pushed: list[str] = []

    def push(folder: Path, name: str, tag: str, **options: object) -> dict:
        result = reg.image_from_directory(folder, name, tag, created=DEMO_CREATED, **options)
        pushed.append(f"{host}/{name}:{tag}")
        say(f"pushed {host}/{name}:{tag} {result['digest']}")
        return result

    with tempfile.TemporaryDirectory(prefix="registry-nb-demo-") as tmp:
        root = Path(tmp)
        base = write_files(root / "base", {
            "etc/os-release": b'NAME="registry_nb demo"\nID=demo\nVERSION_ID=1\n',
            "hello.txt": b"Hello from a registry_nb demo image!\n",
        })
        push(base, "demo/hello", "1", cmd=["cat", "/hello.txt"],
             env={"PATH": "/bin"}, created_by="COPY rootfs/ /")
        hello1 = reg.client.get_manifest("demo/hello", "1")
        reg.client.put_manifest("demo/hello", "latest", hello1.raw, hello1.media_type)
        pushed.append(f"{host}/demo/hello:latest")

        app = write_files(root / "app", {"app/greeting.txt": b"Hello again, from version 2.\n"})
        push(app, "demo/hello", "2", base=base_ref, workdir="/app",
             cmd=["cat", "/app/greeting.txt"], labels=_OCI_LABELS, user="1000",
             created_by="COPY greeting.txt /app/")

        service = write_files(root / "service", {
            "srv/config.ini": b"[server]\nport = 8080\n",
            "srv/README": b"A demo service image with findings for the audit notebook.\n",
            "var/lib/dpkg/status": _DPKG_STATUS,
            "usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA":
                b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n",
        })
        push(service, "demo/app", "1.0", base=base_ref,
             env={"API_TOKEN": "not-a-real-token", "LOG_LEVEL": "info"},
             entrypoint=["cat"], cmd=["/srv/config.ini"],
             created_by="COPY service/ /")

        big = write_files(root / "big", {
            "data/random.bin": noise_bytes(3 * 1024 * 1024, seed=1),
            "data/zeros.bin": bytes(4 * 1024 * 1024),
        })
        push(big, "demo/big", "1", base=base_ref, cmd=["ls", "-l", "/data"],
             created_by="COPY data/ /data/")
        # version 2 replaces one file and deletes the other (a whiteout): the bytes of
        # version 1 still travel with every pull, which the audit calls wasted space
        slim = write_files(root / "slim", {
            "data/random.bin": noise_bytes(64 * 1024, seed=2),
            "data/.wh.zeros.bin": b"",
        })
        push(slim, "demo/big", "2", base=f"{host}/demo/big:1",
             created_by="RUN rm /data/zeros.bin && head -c 64K /dev/urandom > /data/random.bin")

        children = []
        for platform in ("linux/amd64", "linux/arm64"):
            arch = platform.split("/")[1]
            folder = write_files(root / f"arch-{arch}",
                                 {"arch.txt": f"built for {platform}\n".encode()})
            result = push(folder, "demo/multiarch", f"1-{arch}", platform=platform,
                          cmd=["cat", "/arch.txt"], created_by="COPY arch.txt /")
            manifest = reg.client.get_manifest("demo/multiarch", result["digest"])
            assert not isinstance(manifest, Index)
            children.append(manifest.descriptor(platform=Platform.parse(platform)))
        index = Index.build(children)
        reg.client.put_manifest("demo/multiarch", "1", index.raw, index.media_type)
        pushed.append(f"{host}/demo/multiarch:1")
        say(f"pushed {host}/demo/multiarch:1 {index.digest}")
    reg.close()
    return pushed

