"""The demo seed (used by the main command, Binder and the notebooks)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers import skopeo_digest

from registry_nb import ContainerRegistry
from registry_nb.demo import seed_demo_images

ROOT = Path(__file__).resolve().parent.parent


def test_seed_is_reproducible_and_skopeo_agrees(open_registry):
    first = seed_demo_images(open_registry.host, say=lambda _: None)
    reg = ContainerRegistry(open_registry.host)
    digests = {ref: reg.client.head_manifest(ref.split("/", 1)[1].rsplit(":", 1)[0],
                                             ref.rsplit(":", 1)[1]).digest for ref in first}
    again = seed_demo_images(open_registry.host, say=lambda _: None)
    assert again == first
    for ref in again:
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        assert reg.client.head_manifest(repo, tag).digest == digests[ref]
    assert skopeo_digest(f"{open_registry.host}/demo/hello:2") == digests[
        f"{open_registry.host}/demo/hello:2"]
    # latest and 1 are one image; the index holds two platforms
    assert digests[f"{open_registry.host}/demo/hello:latest"] == \
        digests[f"{open_registry.host}/demo/hello:1"]
    index = reg.client.get_manifest("demo/multiarch", "1")
    assert sorted(str(d.platform) for d in index.manifests) == ["linux/amd64", "linux/arm64"]
    # the base layer is shared between hello:2, app:1.0 and big:1
    base = reg.layers_frame("demo/hello", "1").digest.iloc[0]
    for repo, tag in [("demo/hello", "2"), ("demo/app", "1.0"), ("demo/big", "1")]:
        assert reg.layers_frame(repo, tag).digest.iloc[0] == base


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_binder_start_script_starts_a_registry_and_seeds_it(tmp_path):
    """binder/start as repo2docker runs it: a registry, demo images, then the command."""
    port = _free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "REGISTRY_NB_STATE": str(tmp_path / "state"),
        "REGISTRY_NB_PORT_OPEN": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "binder" / "start"), sys.executable, "-c",
             "import os; print('ran', os.environ['REGISTRY_NB_DEMO_REGISTRY'])"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert done.stdout.strip() == f"ran 127.0.0.1:{port}"
        catalog = requests.get(f"http://127.0.0.1:{port}/v2/_catalog", timeout=5).json()
        assert {"demo/hello", "demo/app", "demo/big", "demo/multiarch"} <= set(
            catalog["repositories"])
        info = json.loads((tmp_path / "state" / "services.json").read_text())
        assert info["open"]["port"] == port
    finally:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "services.py"), "stop"],
                       env=env, capture_output=True, timeout=60)


def test_demo_history_names_the_build_step_of_each_layer(open_registry):
    """The tour says the config's history names the step that made each layer."""
    seed_demo_images(open_registry.host, say=lambda _: None)
    reg = ContainerRegistry(open_registry.host)
    steps = list(reg.layers_frame("demo/big", "2")["created_by"])
    assert steps == ["COPY rootfs/ /", "COPY data/ /data/",
                     "RUN rm /data/zeros.bin && head -c 64K /dev/urandom > /data/random.bin"]
    for repo, tag in [("demo/hello", "2"), ("demo/app", "1.0"), ("demo/multiarch", "1")]:
        for step in reg.layers_frame(repo, tag)["created_by"]:
            assert step.split()[0] in {"COPY", "RUN"}, (repo, tag, step)


def test_operations_demo_reseeds_what_a_cleanup_deleted_and_its_scratch_registry_collects():
    """demo_ops on a scratch registry of its own: seeding again after deletes pushes the
    same digests back (skopeo agrees); garbage collection frees a deleted image's layer;
    stop() ends the process and removes the folder."""
    from registry_nb.demo_ops import OPS_RELEASES, ScratchRegistry, seed_operations_demo

    with ScratchRegistry() as scratch:
        reg = ContainerRegistry(scratch.host)
        first = seed_operations_demo(reg)
        assert sorted(t for t in reg.client.tags(first["app"]) if not t.startswith("sha256-")) \
            == sorted([*OPS_RELEASES, "latest", "stable"])
        assert first["digests"]["stable"] == first["digests"]["1.2"]
        assert skopeo_digest(f"{scratch.host}/{first['app']}:1.5") == first["digests"]["1.5"]
        assert set(reg.referrers(first["app"], "1.5").digest) == {first["sboms"]["1.5"]}
        reg.delete_manifest(first["app"], "1.0")
        reg.delete_manifest(first["web"], "1")
        freed = scratch.garbage_collect()
        assert freed["before_bytes"] - freed["after_bytes"] > 96 * 1024  # web:1's own layer
        assert reg.client.head_manifest(first["web"], "2") is not None  # still served
        again = seed_operations_demo(reg)
        assert again == first
    assert not scratch.folder.exists()
    with pytest.raises(requests.ConnectionError):  # nothing listens there any more
        requests.get(f"http://{scratch.host}/v2/", timeout=2)
