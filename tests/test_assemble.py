"""Images made from folders without an engine (registry_nb.assemble; image_from_directory).

The proof that an assembled image is right is that the real Docker engine pulls
it from the registry and runs it (``network_mode="none"``). Layer bytes are
checked with the standard library's tarfile and gzip, and ISIZE against a full
decompression.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from helpers import BUSYBOX, RegistryService, skopeo_digest, skopeo_raw_manifest

from registry_nb import ContainerRegistry
from registry_nb.errors import RegistryError
from registry_nb.images.assemble import append_layers, write_layer
from registry_nb.images.image import GZIP_LAYER_TYPES, Image, gzip_isize
from registry_nb.images.layout import OCILayout
from registry_nb.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_LAYER_GZIP,
    Descriptor,
    ImageConfig,
    Manifest,
)

KIB = 1024

pytestmark = pytest.mark.usefixtures("empty_docker_config")


@pytest.fixture
def reg(open_registry: RegistryService):
    with ContainerRegistry(open_registry.host) as facade:
        yield facade


def make_tree(root: Path, word: str = "hello") -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "greeting.txt").write_text(f"{word} from registry_nb\n")
    (root / "bin").mkdir()
    script = root / "bin" / "run.sh"
    script.write_text("#!/bin/sh\necho run\n")
    script.chmod(0o700)
    (root / "data").mkdir()
    (root / "data" / "b.bin").write_bytes(os.urandom(10 * KIB))
    (root / "data" / "a.txt").write_text("a\n")
    (root / "data" / "secret").write_text("mode 600\n")
    (root / "data" / "secret").chmod(0o600)
    os.symlink("../etc/greeting.txt", root / "data" / "link")
    return root


def members(layer: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(layer, "r:gz") as tar:
        return tar.getmembers()


# ------------------------------------------------------------ the layer


def test_layer_is_reproducible_and_normalised(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    first = write_layer(tree, tmp_path / "one.tar.gz")
    # other times, another copy of the same files: same bytes
    os.utime(tree / "etc" / "greeting.txt", (1, 1))
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy, symlinks=True)
    second = write_layer(copy, tmp_path / "two.tar.gz")
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)
    entries = members(tmp_path / "one.tar.gz")
    names = [m.name for m in entries]
    assert names == sorted(names) == [
        "bin", "bin/run.sh", "data", "data/a.txt", "data/b.bin", "data/link", "data/secret",
        "etc", "etc/greeting.txt"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in entries} == {(0, 0, "", "", 0)}
    modes = {m.name: (m.type, m.mode) for m in entries}
    assert modes["bin"] == (tarfile.DIRTYPE, 0o755)
    assert modes["bin/run.sh"] == (tarfile.REGTYPE, 0o755)
    assert modes["data/secret"] == (tarfile.REGTYPE, 0o644)
    assert modes["data/link"][0] == tarfile.SYMTYPE
    assert next(m for m in entries if m.name == "data/link").linkname == "../etc/greeting.txt"
    # digests are what they claim, sizes too
    blob = (tmp_path / "one.tar.gz").read_bytes()
    raw = gzip.decompress(blob)
    assert first.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert first.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert (first.size, first.uncompressed_size) == (len(blob), len(raw))
    assert blob[4:8] == b"\x00\x00\x00\x00"  # gzip MTIME 0


def test_layer_prefix_time_and_source_date_epoch(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f.txt").write_text("f\n")
    write_layer(tree, tmp_path / "p.tar.gz", prefix="/opt/app", mtime=1_700_000_000)
    entries = members(tmp_path / "p.tar.gz")
    assert [m.name for m in entries] == ["opt", "opt/app", "opt/app/f.txt"]
    assert {m.mtime for m in entries} == {1_700_000_000}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    write_layer(tree, tmp_path / "e.tar.gz")
    assert {m.mtime for m in members(tmp_path / "e.tar.gz")} == {1234567890}


def test_layer_refuses_special_files_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not a folder"):
        write_layer(tmp_path / "missing", tmp_path / "x.tar.gz")
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / "pipe")
    with pytest.raises(RegistryError, match="fifo"):
        write_layer(tree, tmp_path / "x.tar.gz")


def test_isize_equals_the_real_uncompressed_size(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tree / "zeros.bin").write_bytes(b"\0" * 3_000_000)
    layer = write_layer(tree, tmp_path / "l.tar.gz")
    store = OCILayout(tmp_path / "layout")
    store.write_bytes_blob((tmp_path / "l.tar.gz").read_bytes(), layer.digest)
    descriptor = layer.descriptor()
    assert descriptor.media_type in GZIP_LAYER_TYPES
    real = len(gzip.decompress((tmp_path / "l.tar.gz").read_bytes()))
    assert gzip_isize(store, descriptor) == real == layer.uncompressed_size
    assert gzip_isize(store, layer.descriptor("application/vnd.oci.image.layer.v1.tar")) is None


# ------------------------------------------------------------ images in the registry


def test_image_from_directory_on_a_base_runs_in_docker(
    reg: ContainerRegistry, docker_client, open_registry: RegistryService, unique_repo: str,
    tmp_path: Path,
) -> None:
    base_dir = tmp_path / "base"
    (base_dir / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, base_dir / "bin" / "busybox")
    base = reg.image_from_directory(base_dir, unique_repo + "-base", "1",
                                    env={"PATH": "/bin"}, labels={"stage": "base"},
                                    cmd=["/bin/busybox", "sh"])
    assert base["base"] is None and base["copied_blobs"] == 2
    word = os.urandom(6).hex()
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "hello.txt").write_text(f"hello {word}\n")
    events = []
    app = reg.image_from_directory(
        app_dir, unique_repo, "1", base=f"{open_registry.host}/{unique_repo}-base:1",
        prefix="/srv", entrypoint=["/bin/busybox", "cat"], env={"GREETING": word},
        labels={"stage": "app", "org.example.word": word}, workdir="/srv",
        progress=events.append,
    )
    # the base layer was mounted from the base repository, never downloaded
    assert (app["blobs"], app["mounted_blobs"], app["copied_blobs"]) == (3, 1, 2)
    assert app["base"] == f"{open_registry.host}/{unique_repo}-base:1"
    assert skopeo_digest(open_registry.ref(unique_repo, "1")) == app["digest"]
    manifest = json.loads(skopeo_raw_manifest(open_registry.ref(unique_repo, "1")))
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER_GZIP] * 2
    assert manifest["layers"][1]["digest"] == app["layer_digest"]
    config = ImageConfig.from_bytes(reg.client.read_blob(unique_repo,
                                                         manifest["config"]["digest"]))
    assert config.config.entrypoint == ["/bin/busybox", "cat"]
    assert config.config.cmd is None  # a new entrypoint clears the inherited cmd
    assert config.config.env == ["PATH=/bin", f"GREETING={word}"]
    assert config.config.labels == {"stage": "app", "org.example.word": word}
    assert config.config.working_dir == "/srv"
    assert config.diff_ids[1] == app["diff_id"] and len(config.history) == 2
    assert events[-1].phase == "done"

    ref = f"{open_registry.host}/{unique_repo}:1"
    docker_client.images.pull(ref)
    try:
        output = docker_client.containers.run(ref, ["hello.txt"], network_mode="none",
                                              remove=True)
        assert output.decode() == f"hello {word}\n"
        env = docker_client.containers.run(ref, entrypoint=["/bin/busybox", "env"],
                                           network_mode="none", remove=True)
        assert f"GREETING={word}" in env.decode()
    finally:
        docker_client.images.remove(ref, force=True)


def test_image_from_directory_is_reproducible(reg: ContainerRegistry, unique_repo: str,
                                              tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    first = reg.image_from_directory(tree, unique_repo, "a", cmd="/bin/run.sh",
                                     user="1000:1000", platform="linux/arm64")
    os.utime(tree / "data" / "a.txt", (5, 5))
    second = reg.image_from_directory(tree, unique_repo, "b", cmd="/bin/run.sh",
                                      user="1000:1000", platform="linux/arm64")
    assert first["digest"] == second["digest"]
    assert second["existing_blobs"] == 2 and second["bytes_copied"] == 0
    described = reg.describe_image(unique_repo, "a")
    assert (described.architecture, described.os) == ("arm64", "linux")
    assert described.created.year == 1970
    later = reg.image_from_directory(tree, unique_repo, "c", created=1_700_000_000)
    assert later["digest"] != first["digest"]
    # another compressor: another layer digest, the same tar; the history says which
    stdlib = reg.image_from_directory(tree, unique_repo, "d", cmd="/bin/run.sh",
                                      user="1000:1000", platform="linux/arm64",
                                      compressor="zlib", compresslevel=6)
    assert (first["compression"], stdlib["compression"]) == \
        ("gzip by isal level 1, 1 MiB blocks", "gzip by zlib level 6")
    assert stdlib["layer_digest"] != first["layer_digest"]
    assert stdlib["diff_id"] == first["diff_id"]
    config = json.loads(reg.client.read_blob(
        unique_repo, reg.client.get_manifest(unique_repo, "d").config.digest))
    assert config["history"][-1]["comment"] == "gzip by zlib level 6"


def test_uncompressed_column_matches_the_real_sizes(reg: ContainerRegistry, unique_repo: str,
                                                    tmp_path: Path) -> None:
    one = make_tree(tmp_path / "one")
    (one / "zeros.bin").write_bytes(b"\0" * 2_500_000)
    reg.image_from_directory(one, unique_repo + "-base", "1")
    two = tmp_path / "two"
    two.mkdir()
    (two / "more.bin").write_bytes(os.urandom(300 * KIB))
    reg.image_from_directory(two, unique_repo, "1",
                             base=f"{reg.registry_host}/{unique_repo}-base:1")
    frame = reg.layers_frame(unique_repo, "1", uncompressed=True)
    assert str(frame["uncompressed_size_bytes"].dtype) == "Int64"
    real = [len(gzip.decompress(reg.client.read_blob(unique_repo, d))) for d in frame["digest"]]
    assert list(frame["uncompressed_size_bytes"]) == real
    assert "uncompressed_size_bytes" not in reg.layers_frame(unique_repo, "1").columns
    images = reg.registry_images_frame(unique_repo, uncompressed=True)
    assert list(images["uncompressed_size_bytes"]) == [sum(real)]
    assert images["uncompressed_size_bytes"].dtype == "Int64"


def test_append_layers_keeps_docker_media_types_and_unknown_fields(tmp_path: Path) -> None:
    raw = json.dumps({"architecture": "amd64", "os": "linux", "docker_version": "28.2.2",
                      "config": {"Cmd": ["sh"], "Env": ["A=1", "B=2"]},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
                      "history": [{"created_by": "base"}]}).encode()
    manifest = Manifest.build(Descriptor(DOCKER_CONFIG, ImageConfig.from_bytes(raw).digest,
                                         len(raw)),
                              [Descriptor(DOCKER_LAYER, "sha256:" + "2" * 64, 10)],
                              DOCKER_MANIFEST)

    class Store(OCILayout):
        def read_blob(self, descriptor, *, max_bytes=0):
            return raw

    base = Image(Store(tmp_path), manifest)
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "x").write_text("x")
    layer = write_layer(tree, tmp_path / "x.tar.gz")
    image = append_layers(base, [layer], env=["B=3", "C"], cmd=["echo"])
    assert image.manifest.media_type == DOCKER_MANIFEST
    assert image.manifest.config.media_type == DOCKER_CONFIG
    assert [d.media_type for d in image.manifest.layers] == [DOCKER_LAYER] * 2
    doc = json.loads(image.config_raw)
    assert doc["docker_version"] == "28.2.2"
    assert doc["config"]["Env"] == ["A=1", "B=3", "C="]
    assert doc["config"]["Cmd"] == ["echo"]
    assert doc["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, layer.diff_id]
    assert b"".join(image.iter_blob(image.manifest.config)) == image.config_raw
    assert image.blob_origin(image.manifest.layers[1]) is None
    assert io.BytesIO(b"".join(image.iter_blob(layer.descriptor()))).read() == \
        (tmp_path / "x.tar.gz").read_bytes()
