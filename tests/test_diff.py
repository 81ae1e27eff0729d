"""Comparing images (ContainerRegistry.diff_images) built with image_from_directory.

A base image and two tops over it live in the open registry; a FaultProxy in front
counts blob reads, so the test sees that the shared base is not read unless asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import RegistryService

from registry_nb import ContainerRegistry
from registry_nb.audits.diff import compare_versions
from registry_nb.charts import diff_chart

pytestmark = pytest.mark.usefixtures("empty_docker_config")


def status(*packages: tuple[str, str]) -> str:
    return "\n\n".join(f"Package: {name}\nStatus: install ok installed\nVersion: {version}\n"
                       f"Architecture: amd64" for name, version in packages) + "\n"


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


@pytest.fixture
def releases(tmp_path: Path, open_registry: RegistryService, unique_repo: str) -> dict:
    """base:1, then app:1 and app:2 over it (each one layer of its own)."""
    reg = ContainerRegistry(open_registry.host)
    base = write(tmp_path / "base", {
        "etc/os-release": "ID=test\n", "usr/bin/tool": b"\x7fELF" + b"t" * 500,
        "var/lib/dpkg/status": status(("libc6", "2.36-9"), ("curl", "7.88.1-10")),
    })
    one = write(tmp_path / "one", {
        "app/main.py": "print('one')\n",
        "app/lib-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: lib\nVersion: 1.0\n",
        "var/lib/dpkg/status": status(("libc6", "2.36-9"), ("curl", "7.88.1-10"),
                                      ("jq", "1.6-2")),
    })
    two = write(tmp_path / "two", {
        "app/main.py": "print('two, longer')\n", "app/new.txt": "new\n",
        "app/lib-2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: lib\nVersion: 2.0\n",
        "var/lib/dpkg/status": status(("libc6", "2.36-9+deb12u1"), ("curl", "7.88.1-9")),
        "usr/bin/.wh.tool": "",  # a whiteout: release 2 removes /usr/bin/tool
    })
    (two / "app/main.py").chmod(0o755)
    out = {"repo": unique_repo}
    out["base"] = reg.image_from_directory(base, f"{unique_repo}-base", "1")
    base_ref = f"{open_registry.host}/{unique_repo}-base:1"
    out["one"] = reg.image_from_directory(one, unique_repo, "1", base=base_ref,
                                          labels={"version": "1"}, env={"MODE": "a"})
    out["two"] = reg.image_from_directory(two, unique_repo, "2", base=base_ref,
                                          labels={"version": "2", "new": "x"},
                                          env={"MODE": "b", "TOKEN": "s3cret"}, user="app")
    return out


def layer_gets(proxy: FaultProxy, digests: set[str]) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in proxy.matching("GET", "/blobs/sha256:")
            if r.path.rsplit("/", 1)[1] in digests]


def test_diff_reads_only_the_differing_layers(releases: dict,
                                              open_registry: RegistryService) -> None:
    repo = releases["repo"]
    base_layer = releases["base"]["layer_digest"]
    tops = {releases["one"]["layer_digest"], releases["two"]["layer_digest"]}
    with FaultProxy(open_registry.url) as proxy, ContainerRegistry(proxy.host) as reg:
        d = reg.diff_images(f"{repo}:1", f"{repo}:2")
        assert sorted(layer_gets(proxy, tops | {base_layer})) == sorted(tops)  # base unread
    s = d.summary
    assert (s["layers_a"], s["layers_b"], s["shared_layers"]) == (2, 2, 1)
    assert s["shared_read"] is False and s["layers_read"] == 2
    assert d.layers.set_index("digest").status.to_dict() == {
        base_layer: "shared", releases["one"]["layer_digest"]: "removed",
        releases["two"]["layer_digest"]: "added"}
    files = d.files.set_index("path")
    assert files.loc["/app/main.py", "status"] == "changed"
    assert files.loc["/app/main.py", "mode_b"] == "0o755"
    assert files.loc["/app/main.py", "size_change_bytes"] == 8
    assert files.loc["/app/new.txt", "status"] == "added"
    assert files.loc["/app/lib-1.0.dist-info/METADATA", "status"] == "removed"
    # the whiteout applied: release 2 lacks the base's tool, whose size was not read
    tool = files.loc["/usr/bin/tool"]
    assert tool.status == "removed" and tool.other == "base" and pd_na(tool.size_bytes_a)
    assert "/usr/bin/.wh.tool" not in files.index and "/etc/os-release" not in files.index
    assert "/usr/bin" not in files.index  # a folder over the base's folder is no news
    packages = {(r.ecosystem, r.name): r.status for r in d.packages.itertuples()}
    assert packages == {("deb", "jq"): "removed", ("deb", "libc6"): "upgraded",
                        ("deb", "curl"): "downgraded", ("python", "lib"): "upgraded"}
    config = d.config.set_index("field")
    assert config.loc["env_names", "b"] == ["MODE", "TOKEN"]
    assert "s3cret" not in d.config.to_string()
    assert config.loc["user", "changed"] and config.loc["label:new", "b"] == "x"
    assert not config.loc["label:version"].equals(config.loc["user"])
    assert len(diff_chart(d).axes) == 1


def pd_na(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_diff_with_the_shared_base_read_once_is_exact(
    releases: dict, open_registry: RegistryService,
) -> None:
    repo = releases["repo"]
    base_layer = releases["base"]["layer_digest"]
    with FaultProxy(open_registry.url) as proxy, ContainerRegistry(proxy.host) as reg:
        d = reg.diff_images(f"{proxy.host}/{repo}:1", f"{repo}:2", shared=True)
        assert layer_gets(proxy, {base_layer}) == [base_layer]  # once, for both sides
    tool = d.files.set_index("path").loc["/usr/bin/tool"]
    assert tool.status == "removed" and tool.size_bytes_a == 504 and pd_na(tool.other)


def test_diff_across_registries(releases: dict, open_registry: RegistryService,
                                basic_registry: RegistryService) -> None:
    repo = releases["repo"]
    other = ContainerRegistry(basic_registry.host)
    # the same image on both sides: nothing differs, nothing is read
    with ContainerRegistry(open_registry.host) as reg:
        d = reg.diff_images(f"{repo}:1", f"{open_registry.host}/{repo}:1")
        assert d.files.empty and d.packages.empty and d.blobs_read == []
        assert d.summary["shared_layers"] == 2
    other.close()


@pytest.mark.parametrize(("ecosystem", "old", "new", "order"), [
    ("deb", "1.0-1", "1.0-2", 1), ("deb", "1:0.9", "2.0", -1), ("deb", "1.0~rc1", "1.0", 1),
    ("deb", "2.36-9", "2.36-9+deb12u1", 1), ("apk", "3.1.4-r5", "3.1.4-r5", 0),
    ("python", "1.0rc1", "1.0", 1), ("python", "2.0", "1.10", -1),
    ("python", "not a version", "1.0", None),
])
def test_compare_versions(ecosystem: str, old: str, new: str, order: int | None) -> None:
    assert compare_versions(ecosystem, old, new) == order
