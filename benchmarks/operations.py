"""The operations section (issue 18): tags per second for a retention plan, its apply,
and a mirror of many repositories, against ``skopeo sync`` in the same rounds.

Both registries are scratch CNCF distribution registries of the section's own
(``registry_nb.demo_ops.ScratchRegistry``, delete enabled), so deletes never touch the
run's other registries and every sync round starts from an empty destination. The
images are small (one 64 KiB random layer per repository, one config per tag with its
own creation time): the figures are about requests and decisions, not bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .stats import Figure, Ratio, rotated

__all__ = ["OperationSizes", "FULL_OPERATIONS", "SMOKE_OPERATIONS", "measure_operations"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass(frozen=True)
class OperationSizes:
    """How much the section seeds: one retention repository, and the mirrored ones."""

    retention_tags: int
    keep_last: int
    sync_repos: int
    sync_tags: int
    layer_bytes: int


FULL_OPERATIONS = OperationSizes(retention_tags=300, keep_last=100, sync_repos=20,
                                 sync_tags=10, layer_bytes=64 * 1024)
SMOKE_OPERATIONS = OperationSizes(retention_tags=12, keep_last=4, sync_repos=2, sync_tags=3,
                                  layer_bytes=1024)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(seed: int, size: int) -> tuple[bytes, bytes]:
    """A gzip layer of one random file, and its tar."""
    raw = io.BytesIO()
    body = random.Random(seed).randbytes(size)
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data.bin")
        info.size, info.mtime, info.mode = len(body), 0, 0o644
        tar.addfile(info, io.BytesIO(body))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), tar_bytes


class Seeder:
    """Pushes the section's images with the low-level client (fast, and no facade cache)."""

    def __init__(self, host: str, layer_bytes: int) -> None:
        from registry_nb import ContainerRegistry

        self.reg = ContainerRegistry(host, cache=False)
        self.layer_bytes = layer_bytes
        self.start = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def close(self) -> None:
        self.reg.close()

    def repository(self, name: str, tags: int, seed: int) -> dict[str, str]:
        """``tags`` images in ``name`` (tag ``t000`` oldest); returns tag -> digest."""
        client = self.reg.client
        layer, tar_bytes = _layer(seed, self.layer_bytes)
        layer_digest = _sha(layer)
        client.upload_blob(name, layer, layer_digest)
        digests: dict[str, str] = {}
        for t in range(tags):
            created = (self.start + timedelta(hours=t)).strftime("%Y-%m-%dT%H:%M:%SZ")
            config = json.dumps({
                "architecture": "amd64", "os": "linux", "created": created,
                "config": {"Labels": {"bench.tag": str(t)}},
                "rootfs": {"type": "layers", "diff_ids": [_sha(tar_bytes)]},
            }, sort_keys=True, separators=(",", ":")).encode()
            client.upload_blob(name, config, _sha(config))
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": _sha(config),
                           "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest,
                            "size": len(layer)}],
            }, sort_keys=True, separators=(",", ":")).encode()
            tag = f"t{t:03d}"
            digests[tag] = client.put_manifest(name, tag, manifest, OCI_MANIFEST)
        return digests


def _skopeo_sync(source: str, destination: str, repositories: list[str], work: Path) -> None:
    """``skopeo sync`` of every tag of ``repositories`` (a YAML source: one invocation)."""
    spec = work / "sync.yaml"
    spec.write_text(json.dumps({source: {"tls-verify": False,
                                         "images": {r: [] for r in repositories}}}))
    done = subprocess.run(["skopeo", "sync", "--src", "yaml", "--dest", "docker",
                           "--dest-tls-verify=false", str(spec), destination],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise RuntimeError(f"skopeo sync failed: {done.stderr.strip()[-2000:]}")


def measure_operations(run: Any, log: Callable[[str], None]) -> None:
    """The operations section of a benchmark run (``run``: benchmarks.run.Run)."""
    from registry_nb import ContainerRegistry
    from registry_nb.demo_ops import ScratchRegistry

    sizes = SMOKE_OPERATIONS if run.smoke else FULL_OPERATIONS
    table = run.table
    rounds = run.sizes.rounds
    have_skopeo = shutil.which("skopeo") is not None
    work = Path(tempfile.mkdtemp(prefix="bench-ops-", dir=run.services.data_dir))
    plan_rate = Figure(f"retention_plan, {sizes.retention_tags} tags (keep_last="
                       f"{sizes.keep_last})", "tags/s")
    apply_rate = Figure(f"apply_retention, {sizes.retention_tags - sizes.keep_last} deletes "
                        f"of {sizes.retention_tags} rows", "tags/s")
    total = sizes.sync_repos * sizes.sync_tags
    ours = Figure(f"mirror {sizes.sync_repos} repositories x {sizes.sync_tags} tags: "
                  "registry_nb sync_repositories", "tags/s")
    peer = Figure(f"mirror {sizes.sync_repos} repositories x {sizes.sync_tags} tags: "
                  "skopeo sync", "tags/s")
    second = Figure("mirror again (all present): registry_nb sync_repositories", "tags/s")
    source = ScratchRegistry(work / "source")
    try:
        seeder = Seeder(source.host, sizes.layer_bytes)
        log(f"operations: seeding {sizes.retention_tags} tags and {sizes.sync_repos} x "
            f"{sizes.sync_tags} tags on {source.host}")
        repositories = [f"mirror/app-{i:02d}" for i in range(sizes.sync_repos)]
        for i, name in enumerate(repositories):
            seeder.repository(name, sizes.sync_tags, seed=100 + i)
        for round_ in range(rounds):
            log(f"operations: round {round_ + 1}/{rounds}")
            # retention: a repository seeded again each round (apply deletes from it)
            name = f"retention/r{round_}"
            seeder.repository(name, sizes.retention_tags, seed=round_)
            with ContainerRegistry(source.host, cache=False) as reg:
                started = time.perf_counter()
                plan = reg.retention_plan(name, keep_last=sizes.keep_last)
                plan_rate.add(len(plan) / (time.perf_counter() - started))
                started = time.perf_counter()
                outcome = reg.apply_retention(plan, dry_run=False)
                seconds = time.perf_counter() - started
            deleted = int((outcome["status"] == "deleted").sum())
            if deleted != sizes.retention_tags - sizes.keep_last:
                raise RuntimeError(f"apply_retention deleted {deleted} tags, expected "
                                   f"{sizes.retention_tags - sizes.keep_last}")
            apply_rate.add(deleted / seconds)
            # mirror: each contender into an empty registry of its own
            contenders = [("nb", ours)] + ([("skopeo", peer)] if have_skopeo else [])
            for who, figure in rotated(contenders, round_):
                with ScratchRegistry(work / f"dest-{who}-{round_}") as dest:
                    started = time.perf_counter()
                    if who == "nb":
                        with ContainerRegistry(dest.host, cache=False) as reg:
                            frame = reg.sync_repositories(source.host, repositories)
                            figure.add(total / (time.perf_counter() - started))
                            if set(frame["status"]) != {"copied"} or len(frame) != total:
                                raise RuntimeError(f"sync: {frame['status'].value_counts()}")
                            started = time.perf_counter()
                            again = reg.sync_repositories(source.host, repositories)
                            second.add(total / (time.perf_counter() - started))
                            if set(again["status"]) != {"present"}:
                                raise RuntimeError("the second sync copied something")
                    else:
                        _skopeo_sync(source.host, dest.host, repositories, work)
                        figure.add(total / (time.perf_counter() - started))
                        with ContainerRegistry(dest.host, cache=False) as reg:
                            found = sum(len(reg.client.tags(r)) for r in reg.client.catalog())
                        if found != total:
                            raise RuntimeError(f"skopeo sync made {found} tags, not {total}")
        seeder.close()
    finally:
        source.stop()
        shutil.rmtree(work, ignore_errors=True)
    table.note("operations", f"two scratch distribution registries (delete enabled); "
               f"images of one {sizes.layer_bytes // 1024} KiB layer per repository, a "
               "config per tag")
    table.figure(plan_rate)
    table.figure(apply_rate)
    table.figure(ours)
    table.figure(second)
    if have_skopeo:
        table.figure(peer)
        table.ratio(Ratio("ratio: registry_nb / skopeo sync, mirror", ours, peer))
    else:
        table.note("skopeo sync", "skopeo not installed: skipped")
