"""Transfer benchmarks: registry <-> OCI layout against skopeo, push and pull through the
engine against the docker CLI, and the peak memory of copying one large blob.

The image is generated, never pulled: ``layers`` gzip layers, each one tar with one
file of random bytes (incompressible, like most real layer data once compressed),
written once into an OCI layout and reused by later runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry_nb.oci import OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_MANIFEST

__all__ = ["BigImage", "make_image_layout", "make_blob_layout", "skopeo_save", "skopeo_load",
           "skopeo_inspect", "skopeo_list_tags", "measure_rss", "FormProgress", "docker_cli",
           "delete_blob_links", "timed"]

_CHUNK = 4 * 1024 * 1024


@dataclass
class BigImage:
    """An image in an OCI layout: its tag, digests and total bytes."""

    layout: Path
    tag: str
    manifest_digest: str
    layer_digests: list[str]
    size: int  # every blob: what a copy moves
    config_digest: str = ""  # the image id once an engine pulled it


def _write_blob(layout: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def _write_layout(layout: Path, tag: str, layers: list[tuple[str, int, str]],
                  layer_type: str, config_extra: dict[str, Any]) -> BigImage:
    """Config, manifest and index.json for ``layers`` ((digest, size, diff_id)) in ``layout``."""
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/data"], **config_extra},
        "rootfs": {"type": "layers", "diff_ids": [d for _, _, d in layers]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "benchmark layer"}
                    for _ in layers],
    }, sort_keys=True).encode()
    config_digest = _write_blob(layout, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": d, "size": s} for d, s, _ in layers],
    }, sort_keys=True).encode()
    manifest_digest = _write_blob(layout, manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest,
                       "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }))
    return BigImage(layout, tag, manifest_digest, [d for d, _, _ in layers],
                    len(config) + len(manifest) + sum(s for _, s, _ in layers), config_digest)


def _load_existing(layout: Path, tag: str, marker: dict[str, Any]) -> BigImage | None:
    try:
        if json.loads((layout / "marker.json").read_text()) != marker:
            return None
        index = json.loads((layout / "index.json").read_text())
        entry = index["manifests"][0]
        manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"][7:]).read_bytes())
    except (OSError, ValueError, KeyError, IndexError):
        return None
    blobs = [manifest["config"], *manifest["layers"]]
    if not all((layout / "blobs" / "sha256" / b["digest"][7:]).is_file() for b in blobs):
        return None
    return BigImage(layout, tag, entry["digest"], [b["digest"] for b in manifest["layers"]],
                    entry["size"] + sum(b["size"] for b in blobs), manifest["config"]["digest"])


def make_image_layout(layout: Path, *, layers: int, layer_bytes: int, seed: int,
                      tag: str = "1") -> BigImage:
    """An image of ``layers`` gzip layers of ``layer_bytes`` random bytes (reused if present)."""
    marker = {"kind": "image", "layers": layers, "layer_bytes": layer_bytes, "seed": seed}
    found = _load_existing(layout, tag, marker)
    if found is not None:
        return found
    shutil.rmtree(layout, ignore_errors=True)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    rng = random.Random(seed)
    made = []
    for index in range(layers):
        made.append(_gzip_layer(layout, rng, f"data/layer-{index}.bin", layer_bytes))
    image = _write_layout(layout, tag, made, OCI_LAYER_GZIP, {"Env": [f"SEED={seed}"]})
    (layout / "marker.json").write_text(json.dumps(marker))
    return image


def _gzip_layer(layout: Path, rng: random.Random, name: str, size: int) -> tuple[str, int, str]:
    """One tar.gz layer holding ``name`` with ``size`` random bytes, streamed to disk."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    tail = b"\0" * ((-size) % 512) + b"\0" * 1024
    diff, digest = hashlib.sha256(), hashlib.sha256()
    squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing, fastest level
    tmp = layout / "blobs" / "sha256" / f".tmp-{rng.getrandbits(32):08x}"
    written = 0
    with open(tmp, "wb") as out:
        def put(raw: bytes) -> None:
            nonlocal written
            diff.update(raw)
            packed = squeeze.compress(raw)
            digest.update(packed)
            out.write(packed)
            written += len(packed)

        put(header)
        left = size
        while left:
            step = min(_CHUNK, left)
            put(rng.randbytes(step))
            left -= step
        put(tail)
        packed = squeeze.flush()
        digest.update(packed)
        out.write(packed)
        written += len(packed)
    final = "sha256:" + digest.hexdigest()
    os.replace(tmp, layout / "blobs" / "sha256" / final[7:])
    return final, written, "sha256:" + diff.hexdigest()


def make_blob_layout(layout: Path, *, size: int, seed: int, tag: str = "1") -> BigImage:
    """An image whose one layer is ``size`` random bytes (for the memory measurement)."""
    marker = {"kind": "blob", "size": size, "seed": seed}
    found = _load_existing(layout, tag, marker)
    if found is not None:
        return found
    shutil.rmtree(layout, ignore_errors=True)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    rng = random.Random(seed)
    digest = hashlib.sha256()
    tmp = layout / "blobs" / "sha256" / ".tmp-blob"
    with open(tmp, "wb") as out:
        left = size
        while left:
            chunk = rng.randbytes(min(_CHUNK, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    final = "sha256:" + digest.hexdigest()
    os.replace(tmp, layout / "blobs" / "sha256" / final[7:])
    image = _write_layout(layout, tag, [(final, size, final)], OCI_LAYER, {})
    (layout / "marker.json").write_text(json.dumps(marker))
    return image


# ---------------------------------------------------------------- skopeo


def _skopeo(*args: str) -> None:
    """Run skopeo with a fresh HOME: no blob-info cache, so no cross-repository shortcuts."""
    with tempfile.TemporaryDirectory(prefix="bench-skopeo-home-") as home:
        subprocess.run(["skopeo", "--insecure-policy", *args], check=True,
                       env={**os.environ, "HOME": home}, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=1800)


def skopeo_save(registry: str, repo: str, tag: str, target: Path) -> None:
    """``skopeo copy docker://… oci:TARGET:TAG``."""
    _skopeo("copy", "--quiet", "--src-tls-verify=false", f"docker://{registry}/{repo}:{tag}",
            f"oci:{target}:{tag}")


def skopeo_inspect(registry: str, repo: str, tag: str) -> None:
    """``skopeo inspect --no-tags docker://…`` (manifest and config of one tag)."""
    _skopeo("inspect", "--tls-verify=false", "--no-tags", f"docker://{registry}/{repo}:{tag}")


def skopeo_list_tags(registry: str, repo: str) -> None:
    """``skopeo list-tags docker://…`` (one repository's tags)."""
    _skopeo("list-tags", "--tls-verify=false", f"docker://{registry}/{repo}")


def skopeo_load(layout: Path, tag: str, registry: str, repo: str) -> None:
    """``skopeo copy oci:LAYOUT:TAG docker://…`` (digests kept)."""
    _skopeo("copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests",
            f"oci:{layout}:{tag}", f"docker://{registry}/{repo}:{tag}")


# ---------------------------------------------------------------- memory

_RSS_SCRIPT = r"""
import json, sys, time, tempfile, shutil
from pathlib import Path

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])  # KiB
    return 0

mode, registry, source, target = sys.argv[1:5]
from registry_nb import ContainerRegistry
from registry_nb.images.copy import copy_image
from registry_nb.images.image import RegistryRepository

class NoMount(RegistryRepository):
    def blob_origin(self, descriptor):
        return None  # make the copy move the bytes

reg = ContainerRegistry(registry)
reg.client.ping()
before = status("VmRSS")
started = time.perf_counter()
if mode == "load":
    result = reg.load_image(source, target, "1")
elif mode == "save":
    result = reg.save_image(source, "1", target)
else:
    result = copy_image(NoMount(reg.client, source), RegistryRepository(reg.client, target),
                        reference="1", tag="1").as_dict()
seconds = time.perf_counter() - started
print(json.dumps({"increase_kib": status("VmHWM") - before, "seconds": seconds,
                  "bytes": result["bytes_copied"]}))
"""


def measure_rss(mode: str, registry: str, source: str, target: str) -> dict[str, float]:
    """Copy in a fresh interpreter; its peak RSS increase (KiB), seconds and bytes moved.

    ``mode``: ``load`` (layout ``source`` to repository ``target``), ``save``
    (repository ``source`` to layout folder ``target``) or ``copy`` (repository to
    repository, no mount).
    """
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, mode, registry, source, target],
                         capture_output=True, text=True, check=False, timeout=1800,
                         cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement ({mode}) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- engine


class FormProgress:
    """What a push/pull form does with events: fold them, redraw at most every 0.1 s."""

    def __init__(self, interval: float = 0.1) -> None:
        from registry_nb.progress import ProgressAggregator, Throttle

        self.aggregator = ProgressAggregator()
        self.redraws = 0
        self.events = 0
        self.text = ""
        self.throttle = Throttle(self._redraw, interval)

    def _redraw(self, event: Any) -> None:
        snap = self.aggregator.snapshot()
        fraction = snap.fraction or 0.0
        self.text = (f"{snap.phase}: {snap.layers_done}/{snap.layers_total} layers, "
                     f"{snap.current}/{snap.total} bytes ({fraction:.0%})")
        self.redraws += 1

    def __call__(self, event: Any) -> None:
        self.events += 1
        self.aggregator(event)
        self.throttle(event)


def docker_cli(docker_host: str, *args: str) -> None:
    """``docker --host … ARGS`` (output discarded; raises with stderr on failure)."""
    done = subprocess.run(["docker", "--host", docker_host, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr[-1000:]}")


def delete_blob_links(client: Any, repository: str, digests: list[str]) -> None:
    """Unlink blobs from a repository, so the engine cannot mount them from there."""
    for digest in digests:
        response = client.transport.request(
            "DELETE", f"/v2/{repository}/blobs/{digest}",
            scopes=[f"repository:{repository}:delete"])
        response.close()


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, result)."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result
