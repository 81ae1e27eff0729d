"""What registry_nb writes, read back by independent tools: skopeo, umoci and podman.

Layouts from ``save_image`` (of a Docker schema 2 image built by the test dockerd and
of an OCI image), an ``image_from_directory`` image, and a ``docker save`` archive of
two images taken through ``load_image`` are read by

- skopeo 1.9: ``skopeo inspect oci:DIR:TAG`` (names and digests);
- umoci 0.4: ``umoci ls`` / ``umoci stat`` / ``umoci unpack --rootless`` (names, layers,
  file contents);
- podman 4.3: its own storage in a scratch folder (``--root``/``--runroot``, the vfs
  driver, no network), ``podman pull oci:DIR:TAG`` and ``podman load`` of the archive,
  then ``podman image inspect`` and ``podman image mount`` (digests, names, contents).

Each asserts names, digests and file contents. Also here: names that would collide in
one layout, and dockerd 20.10's refusal of zstd layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    RegistryService,
    busybox_build_context,
    make_tar,
    seed_image,
    skopeo,
    skopeo_digest,
)

from registry_nb import ContainerRegistry
from registry_nb.errors import (
    ImageNotFoundError,
    LayoutNameConflictError,
    UnsupportedMediaTypeError,
)
from registry_nb.images.archive import DockerArchive
from registry_nb.oci import DOCKER_MANIFEST, OCI_MANIFEST

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("empty_docker_config")]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/test.sh installs it (apt-get install "
                    f"{name})", pytrace=False)
    return path


def run(*cmd: str | Path, timeout: float = 120) -> str:
    """Run a tool; its stdout, or a failure showing its stderr."""
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                         timeout=timeout, check=False)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stderr}"
    return res.stdout


class Podman:
    """podman with its own storage in ``folder``: vfs driver, no network, no events.

    Its run root must be under 50 characters, so it lives in a short folder of /tmp
    that :meth:`close` removes.
    """

    def __init__(self, folder: Path) -> None:
        self.binary = _tool("podman")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.runroot = Path(tempfile.mkdtemp(prefix="rnb-podman-", dir="/tmp"))

    def __call__(self, *args: str | Path) -> str:
        return run(self.binary, "--root", self.folder / "root", "--runroot", self.runroot,
                   "--storage-driver", "vfs", "--events-backend", "none",
                   "--cgroup-manager", "cgroupfs", *args)

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    def inspect(self, image: str) -> dict:
        return json.loads(self("image", "inspect", image))[0]

    def files(self, image: str, paths: list[str]) -> dict[str, bytes]:
        root = Path(self("image", "mount", image).strip())
        try:
            return {p: (root / p.lstrip("/")).read_bytes() for p in paths}
        finally:
            self("image", "unmount", image)


def umoci_files(layout: Path, tag: str, paths: list[str], scratch: Path) -> dict[str, bytes]:
    """``umoci unpack --rootless`` the image ``tag`` and read ``paths`` from its rootfs."""
    bundle = scratch / f"bundle-{tag}"
    run(_tool("umoci"), "unpack", "--rootless", "--image", f"{layout}:{tag}", bundle)
    return {p: (bundle / "rootfs" / p.lstrip("/")).read_bytes() for p in paths}


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def check_layout_with_every_tool(layout: Path, tag: str, digest: str,
                                 files: dict[str, bytes], scratch: Path,
                                 podman: Podman) -> None:
    """skopeo, umoci and podman find ``tag`` in ``layout`` as ``digest`` with ``files``."""
    # skopeo: the name resolves, to this manifest
    raw = skopeo("inspect", "--raw", f"oci:{layout}:{tag}").stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    manifest = json.loads(raw)
    inspected = json.loads(skopeo("inspect", f"oci:{layout}:{tag}").stdout)
    assert inspected["Digest"] == digest
    assert inspected["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    # umoci: lists the name, states the layers, unpacks the files
    assert tag in run(_tool("umoci"), "ls", "--layout", layout).split()
    stat = json.loads(run(_tool("umoci"), "stat", "--json", "--image", f"{layout}:{tag}"))
    assert len([h for h in stat["history"] if not h.get("empty_layer")]) == len(
        manifest["layers"])
    assert umoci_files(layout, tag, list(files), scratch) == files
    # podman: pulls from the layout, keeps the digest and the config, mounts the files
    image_id = podman("pull", "--quiet", f"oci:{layout}:{tag}").strip()
    assert "sha256:" + image_id == manifest["config"]["digest"]
    attrs = podman.inspect(image_id)
    assert attrs["Digest"] == digest
    assert podman.files(image_id, list(files)) == files


# ------------------------------------------------------------------ images to save


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    tool = Podman(tmp_path / "podman")
    yield tool
    tool.close()


@pytest.fixture
def reg(open_registry: RegistryService) -> Iterator[ContainerRegistry]:
    with ContainerRegistry(open_registry.host) as facade:
        yield facade


@pytest.fixture(scope="module")
def built(docker_client, open_registry: RegistryService, tmp_path_factory
          ) -> dict[str, object]:
    """A Docker schema 2 image from the test dockerd, pushed to the open registry."""
    token = os.urandom(6).hex()
    ctx = busybox_build_context(tmp_path_factory.mktemp("ctx"), [
        f"RUN echo {token} > /id && mkdir -p /data && echo hello from dockerd > /data/hi.txt"])
    repo = f"test/interop-schema2-{token[:6]}"
    name = f"{open_registry.host}/{repo}"
    image, _ = docker_client.images.build(path=str(ctx), tag=f"{name}:1", network_mode="none",
                                          rm=True)
    docker_client.images.push(name, tag="1")
    return {"repo": repo, "name": name, "digest": skopeo_digest(f"{name}:1"), "id": image.id,
            "files": {"/id": f"{token}\n".encode(), "/data/hi.txt": b"hello from dockerd\n"}}


@pytest.fixture(scope="module")
def seeded(open_registry: RegistryService) -> dict[str, object]:
    """An OCI image pushed with skopeo."""
    repo = f"test/interop-oci-{os.urandom(3).hex()}"
    files = {"etc/motd": b"an OCI image\n", "opt/tool/blob.bin": os.urandom(4096)}
    return {"repo": repo, "digest": seed_image(open_registry, repo, "1", files=files,
                                               layers=2),
            "files": {f"/{k}": v for k, v in files.items()}}


# ------------------------------------------------------------------ save_image


@pytest.mark.parametrize("kind", ["schema2", "oci"])
def test_saved_layouts_are_read_by_skopeo_umoci_and_podman(
    reg: ContainerRegistry, built, seeded, kind: str, tmp_path: Path, podman: Podman,
) -> None:
    image = built if kind == "schema2" else seeded
    layout = tmp_path / "layout"
    saved = reg.save_image(str(image["repo"]), "1", layout)
    assert saved["media_type"] == OCI_MANIFEST and saved["note"] is None
    assert saved["source_digest"] == image["digest"]
    # a Docker schema 2 image gets OCI media types, so a new digest; an OCI one keeps its own
    assert (saved["digest"] == image["digest"]) == (kind == "oci")
    check_layout_with_every_tool(layout, "1", saved["digest"], image["files"], tmp_path,
                                 podman)


def test_preserved_docker_digests_are_not_read_by_tag(
    reg: ContainerRegistry, built, tmp_path: Path,
) -> None:
    # What the note of preserve_digests=True says: the OCI tools find no image by that name.
    layout = tmp_path / "kept"
    saved = reg.save_image(str(built["repo"]), "1", layout, preserve_digests=True)
    assert saved["digest"] == built["digest"] and saved["media_type"] == DOCKER_MANIFEST
    assert "skopeo" in saved["note"] and "umoci" in saved["note"]
    with pytest.raises(RuntimeError, match="no descriptor found"):
        skopeo("inspect", f"oci:{layout}:1")
    res = subprocess.run([_tool("umoci"), "stat", "--image", f"{layout}:1"],
                         capture_output=True, text=True, check=False)
    assert res.returncode != 0


def test_image_from_directory_is_read_by_every_tool(
    reg: ContainerRegistry, open_registry: RegistryService, unique_repo: str, tmp_path: Path,
    podman: Podman,
) -> None:
    folder = tmp_path / "site"
    (folder / "html").mkdir(parents=True)
    (folder / "html" / "index.html").write_bytes(b"<h1>made from a folder</h1>\n")
    (folder / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    made = reg.image_from_directory(folder, unique_repo, "1", prefix="/srv",
                                    labels={"made-by": "registry_nb"})
    assert skopeo_digest(f"{open_registry.host}/{unique_repo}:1") == made["digest"]
    layout = tmp_path / "layout"
    saved = reg.save_image(unique_repo, "1", layout)
    assert saved["digest"] == made["digest"]  # OCI from the start: nothing to convert
    files = {"/srv/html/index.html": b"<h1>made from a folder</h1>\n",
             "/srv/run.sh": b"#!/bin/sh\necho hi\n"}
    check_layout_with_every_tool(layout, "1", made["digest"], files, tmp_path, podman)
    stat = json.loads(run(_tool("umoci"), "stat", "--json", "--image", f"{layout}:1"))
    assert stat["history"][-1]["layer"]["digest"] == made["layer_digest"]


def test_two_repositories_with_one_tag_do_not_replace_each_other(
    reg: ContainerRegistry, built, seeded, tmp_path: Path,
) -> None:
    layout = tmp_path / "shared"
    first = reg.save_image(str(built["repo"]), "1", layout)
    before = (layout / "index.json").read_bytes()
    blobs = sorted(p.name for p in (layout / "blobs" / "sha256").iterdir())
    with pytest.raises(LayoutNameConflictError) as info:
        reg.save_image(str(seeded["repo"]), "1", layout)
    error = info.value
    assert error.name == "1" and str(built["repo"]) in error.existing
    assert str(seeded["repo"]) in error.incoming
    assert str(built["repo"]) in str(error) and str(seeded["repo"]) in str(error)
    assert "ref_name=" in (error.hint or "")
    assert (layout / "index.json").read_bytes() == before  # nothing written
    assert sorted(p.name for p in (layout / "blobs" / "sha256").iterdir()) == blobs
    second = reg.save_image(str(seeded["repo"]), "1", layout, ref_name="oci-1")
    assert json.loads(skopeo("inspect", f"oci:{layout}:1").stdout)["Digest"] == first["digest"]
    assert json.loads(skopeo("inspect", f"oci:{layout}:oci-1").stdout)["Digest"] == \
        second["digest"]
    # the same repository and tag again is a tag that moved: replaced, as skopeo would
    assert reg.save_image(str(built["repo"]), "1", layout)["digest"] == first["digest"]
    names = [e["annotations"] for e in json.loads((layout / "index.json").read_text())[
        "manifests"]]
    assert sorted(n["org.opencontainers.image.ref.name"] for n in names) == ["1", "oci-1"]


# ------------------------------------------------------------------ docker archives


def test_docker_save_of_two_images_through_load_image(
    reg: ContainerRegistry, docker_client, open_registry: RegistryService, built, seeded,
    unique_repo: str, tmp_path: Path, podman: Podman,
) -> None:
    oci_name = f"{open_registry.host}/{seeded['repo']}:1"
    pulled = docker_client.images.pull(oci_name)
    names = [f"{built['name']}:1", oci_name]
    archive = tmp_path / "two.tar"
    run(_tool("docker"), "save", "-o", archive, *names)  # the test dockerd (DOCKER_HOST)
    # without source_tag, or with a tag it lacks: a typed error naming what it holds
    for source_tag in (None, "missing"):
        with pytest.raises(ImageNotFoundError) as info:
            reg.load_image(archive, unique_repo, "x", source_tag=source_tag)
        assert all(n in str(info.value) for n in names), str(info.value)
    assert DockerArchive(archive).tags() == ["1", "1"]
    # podman reads the same archive: the same names and image IDs as dockerd
    podman("load", "--quiet", "-i", archive)
    for name, image_id in ((names[0], built["id"]), (oci_name, pulled.id)):
        assert podman.inspect(name)["Id"] == image_id.split(":")[1]
    # each image by its docker name, into the registry, out to a layout, into umoci
    for name, tag, image in ((names[0], "schema2", built), (oci_name, "oci", seeded)):
        loaded = reg.load_image(archive, unique_repo, tag, source_tag=name)
        assert skopeo_digest(f"{open_registry.host}/{unique_repo}:{tag}") == loaded["digest"]
        want_id = built["id"] if image is built else pulled.id
        layout = tmp_path / f"back-{tag}"
        saved = reg.save_image(unique_repo, tag, layout)
        manifest = json.loads(skopeo("inspect", "--raw", f"oci:{layout}:{tag}").stdout)
        assert manifest["config"]["digest"] == want_id  # the config dockerd made, unchanged
        assert umoci_files(layout, tag, list(image["files"]), tmp_path) == image["files"]
        assert saved["digest"] == sha256_file(layout / "blobs" / "sha256" /
                                              saved["digest"].split(":")[1])


# ------------------------------------------------------------------ zstd and dockerd 20.10


def test_zstd_layers_refused_by_dockerd_20_10_say_why(
    reg: ContainerRegistry, docker_client, open_registry: RegistryService, unique_repo: str,
    tmp_path: Path,
) -> None:
    zstandard = pytest.importorskip("zstandard")
    version = docker_client.version()["Version"]
    if int(version.split(".")[0]) >= 23:
        pytest.skip(f"dockerd {version} reads zstd layers")
    layout = tmp_path / "zstd"
    (layout / "blobs" / "sha256").mkdir(parents=True)

    def blob(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    tar = make_tar({"z.txt": b"zstd\n"})
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
             **blob(zstandard.ZstdCompressor().compress(tar))}
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
        "layers": [layer]}).encode()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, **blob(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "z"}}]}))
    reg.load_image(layout, unique_repo, "z")
    with pytest.raises(UnsupportedMediaTypeError) as info:
        reg.pull_image(unique_repo, "z")
    assert "zstd" in info.value.message and layer["digest"] in info.value.message
    assert "Docker 23" in (info.value.hint or "") and "gzip" in (info.value.hint or "")
