"""The fleet figure: layer reads of a seeded fleet, naive versus read-once, 1 and 2 workers.

Every registry of the fleet gets the same seeded repositories (a fleet mirrored across
regions): one base layer all images share, one layer per repository shared by its tags,
one small layer per tag. Each registry sits behind a counting loopback proxy (the tests'
``FaultProxy``, forwarding only), so "layer GETs" are blob GETs the registries saw.

- naive: the facade's ``packages_frame`` tag after tag (a fresh facade each time, so no
  scan is reused): every tag's every layer;
- fleet, local: ``Fleet(client=None)``;
- fleet, Dask: a ``LocalCluster`` of 1, then 2 worker processes, a fresh cache folder;
- fleet, second run: the same cache folder again.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .stats import Figure

ROOT = Path(__file__).resolve().parent.parent


def _proxy_class() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from faultproxy import FaultProxy

    return FaultProxy


def _folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    """A folder holding ``files`` for image_from_directory."""
    folder = root / name
    for path, data in ((folder / rel, data) for rel, data in files.items()):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def seed_fleet(hosts: list[str], prefix: str, repos: int, tags: int, base_bytes: int,
               log: Callable[[str], None]) -> list[str]:
    """Push the same images to every host; returns the repository names."""
    from registry_nb import ContainerRegistry

    rng = random.Random(7)
    names = [f"{prefix}/fleet-{i}" for i in range(repos)]
    with tempfile.TemporaryDirectory(prefix="registry-nb-bench-fleet-") as tmp:
        root = Path(tmp)
        base = _folder(root, "base", {
            "var/lib/dpkg/status": b"Package: libc6\nStatus: install ok installed\n"
                                   b"Version: 2.36\nArchitecture: amd64\n",
            "opt/base.bin": rng.randbytes(base_bytes)})
        for host in hosts:
            log(f"fleet: seeding {repos} x {tags} tags on {host}")
            reg = ContainerRegistry(host)
            reg.image_from_directory(base, f"{prefix}/fleet-base", "1")
            for i, name in enumerate(names):
                middle = _folder(root, f"repo{i}", {"srv/repo.bin": random.Random(i).randbytes(
                    base_bytes // 4)})
                reg.image_from_directory(middle, name, "base",
                                         base=f"{host}/{prefix}/fleet-base:1")
                for t in range(tags):
                    top = _folder(root, f"repo{i}-{t}", {"srv/tag.txt": f"{i}.{t}\n".encode()})
                    reg.image_from_directory(top, name, str(t), base=f"{host}/{name}:base")
            reg.close()
    return names


def measure_fleet(hosts: list[str], repositories: list[str]) -> list[Figure]:
    """Layer GETs and seconds of each contender (one round: the counts do not vary)."""
    from registry_nb import ContainerRegistry
    from registry_nb.fleet import Fleet

    proxies = [_proxy_class()(host).start() for host in hosts]
    selection = {p.url.split("://")[1]: [f"{r}" for r in repositories] for p in proxies}
    figures: list[Figure] = []
    tags_of: dict[str, list[str]] = {}
    layers: set[str] = set()
    with ContainerRegistry(proxies[0].url) as reg:
        for repo in repositories:
            tags_of[repo] = sorted(reg.client.tags(repo))
            for tag in tags_of[repo]:
                layers.update(d.digest for d in reg.images.resolve(repo, tag).manifest.layers)

    def blob_gets() -> int:  # layer blobs only (configs are small and read by every audit)
        return sum(1 for p in proxies for r in p.requests if r.method == "GET"
                   and r.path.rsplit("/", 1)[-1] in layers)

    def record(name: str, run: Callable[[], Any], note: str = "") -> Any:
        for proxy in proxies:
            proxy.clear()
        started = time.monotonic()
        out = run()
        seconds = time.monotonic() - started
        gets = Figure(f"fleet: {name}, layer GETs", "GETs", note=note)
        gets.add(blob_gets())
        timing = Figure(f"fleet: {name}, time", "s")
        timing.add(seconds)
        figures.extend([gets, timing])
        return out

    def naive() -> None:
        for proxy in proxies:
            for repo in repositories:
                for tag in tags_of[repo]:
                    with ContainerRegistry(proxy.url) as reg:
                        reg.packages_frame(repo, tag)

    try:
        record("naive (packages_frame per tag)", naive,
                        "every tag reads its layers")
        fleet = Fleet([p.url for p in proxies])
        record("read-once, local threads", lambda: fleet.audit(selection))
        refs, unique = fleet.stats.layer_references, fleet.stats.unique_layers
        figures[-2].note = f"{unique} unique layers of {refs} layer references"
        from distributed import Client, LocalCluster

        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None, host="127.0.0.1") as cluster, \
                    Client(cluster) as client, \
                    tempfile.TemporaryDirectory(prefix="registry-nb-bench-scans-") as cache:
                on_dask = Fleet([p.url for p in proxies], client, cache=cache)
                record(f"read-once, Dask {workers} worker(s), cold cache",
                       lambda: on_dask.audit(selection))  # noqa: B023
                if workers == 2:
                    record("read-once, Dask 2 workers, second run (cache)",
                           lambda: on_dask.audit(selection), "no layer read again")  # noqa: B023
    finally:
        for proxy in proxies:
            proxy.stop()
    return figures
