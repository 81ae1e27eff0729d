"""The benchmark script's smoke mode runs against the test services and prints its table
(so the script cannot rot), and ``import registry_nb`` stays light."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_smoke_benchmark_prints_the_table(services):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke"], cwd=ROOT,
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "REGISTRY_NB_STATE": services["state"]})
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "### registry_nb benchmarks, smoke run" in out
    assert "| what " in out and "| median (range) " in out
    for row in ("listing: registry_images_frame, cold", "listing: registry_images_frame, warm",
                "limit: raw concurrent GETs", "registry -> OCI layout: registry_nb save_image",
                "OCI layout -> registry: registry_nb load_image", "engine pull: docker CLI",
                "engine push: registry_nb push_image", "peak RSS increase",
                "limit: sha256 in Python", "import registry_nb (fresh interpreter)",
                "registry -> OCI layout (2 x 200 kB): registry_nb save_image",
                "latency 5 ms: listing, registry_images_frame, cold",
                "latency 5 ms: registry -> OCI layout, registry_nb save_image",
                "layer entries: registry_nb read_layer", "peak RSS increase, layer_contents",
                "image_from_directory of the", "deflate: isal level 1", "inflate: isal",
                "client CPU per listing request (cold)",
                "limit: client CPU per GET of urllib3's urlopen alone",
                "retention_plan, 12 tags", "apply_retention, 8 deletes of 12 rows",
                "registry_nb sync_repositories", "mirror again (all present)",
                "ratio: registry_nb / skopeo sync, mirror"):
        assert row in out, f"missing row {row!r}:\n{out}"
    targets = [line for line in out.splitlines() if line.startswith("| target: ")]
    assert len(targets) >= 7
    assert all(("PASS" in t) or ("MISS" in t) for t in targets)
    assert elapsed < 60, f"the smoke run took {elapsed:.0f} s"
    # its repositories are gone from the shared registry's catalog
    prefix = re.search(r"repositories under (\S+)/", done.stderr).group(1)
    repositories = Path(services["open"]["storage"]) / "docker/registry/v2/repositories"
    assert not (repositories / prefix).exists()


def test_importing_the_package_leaves_pandas_for_later():
    code = ("import sys, registry_nb; print('pandas' in sys.modules); "
            "reg = registry_nb.ContainerRegistry('127.0.0.1:1'); print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
