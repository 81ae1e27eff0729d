"""``registry-nb sync`` and ``registry-nb diff`` from the open test registry into a
registry of the test's own (``docker-registry serve``, tests/opsregistry.py).

Images are pushed with skopeo (tests/helpers.py); the digests the destination ends
with are skopeo's view of the source. A failure is played by the fault proxy in front
of the source (a blob answered 404).
"""

from __future__ import annotations

import json

import pytest
from faultproxy import FaultProxy
from helpers import RegistryService, seed_image, skopeo_digest

from registry_nb import ContainerRegistry
from registry_nb.cli import main

pytestmark = pytest.mark.usefixtures("empty_docker_config")


@pytest.fixture(scope="module")
def own(own_registry: RegistryService) -> RegistryService:
    return own_registry


def test_sync_dry_run_copy_resume_and_no_match(open_registry, own, unique_repo, capsys):
    digests = {tag: seed_image(open_registry, unique_repo, tag, files={f"{tag}.txt": tag.encode()})
               for tag in ("v1", "v2", "dev")}
    src, dst = open_registry.host, own.host
    assert main(["sync", src, dst, unique_repo, "--tag", "^v", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count(" missing ") == 2 and "dev" not in out
    assert f"Dry run of 2 tags from {src} into {dst}: 2 to copy; nothing was written." in out
    with ContainerRegistry(dst) as reg:
        assert unique_repo not in reg.client.catalog()
    # the source loses v2's layer: v1 arrives, v2 is a failed row with its error, exit 1
    with ContainerRegistry(src) as source:
        layer = source.client.get_manifest(unique_repo, "v2").layers[0].digest
    with FaultProxy(open_registry.url) as proxy:
        proxy.add_fault("GET", f"/blobs/{layer}", status=404, times=None)
        assert main(["sync", proxy.host, dst, unique_repo, "--tag", "^v", "--workers",
                     "1"]) == 1
    out = capsys.readouterr().out
    assert f"failed  {unique_repo}:v2: " in out and "BlobNotFoundError" in out
    assert "not finished: 1 copied, 1 failed. Run the same command again" in out
    # again, from the source itself: only v2 is copied; skopeo sees the source's digests
    assert main(["sync", src, dst, unique_repo, "--tag", "^v"]) == 0
    out = capsys.readouterr().out
    assert f"Synced 2 tags from {src} into {dst}: 1 copied, 1 present" in out
    for tag in ("v1", "v2"):
        assert skopeo_digest(f"{dst}/{unique_repo}:{tag}") == digests[tag]
    assert main(["sync", "--json", src, dst, unique_repo]) == 0
    rows = {row["tag"]: row["status"] for row in json.loads(capsys.readouterr().out)}
    assert rows == {"v1": "present", "v2": "present", "dev": "copied"}
    assert main(["sync", src, dst, unique_repo, "--tag", "^nomatch$"]) == 0
    assert f"No tags matched in {src}: nothing to copy." in capsys.readouterr().out


def test_diff_lists_what_changed_between_two_tags(open_registry, unique_repo, capsys):
    seed_image(open_registry, unique_repo, "1", files={"keep.txt": b"same\n", "old.txt": b"x\n"})
    seed_image(open_registry, unique_repo, "2", files={"keep.txt": b"same\n",
                                                       "new.txt": b"brand new\n"})
    a, b = f"{open_registry.host}/{unique_repo}:1", f"{open_registry.host}/{unique_repo}:2"
    assert main(["diff", a, b]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{a} (sha256:") and f"-> {b} (sha256:" in out
    assert "files   1 added, 1 removed, 0 changed" in out
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines()
             if line.startswith(("added ", "removed "))}
    assert lines == {"/new.txt": "added", "/old.txt": "removed"}
    assert main(["diff", "--json", a, b]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["files_added"] == 1 and {"layers", "files", "packages", "config"} \
        <= set(data)
    assert main(["diff", a, f"{open_registry.host}/{unique_repo}:nope"]) == 1
    assert "registry-nb: error:" in capsys.readouterr().err
