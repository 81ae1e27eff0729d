"""OCI image layouts and docker archives (registry_nb.layout; save_image / load_image).

skopeo is the oracle: it reads the layouts registry_nb writes and writes layouts
registry_nb reads, and digests are compared with what the registries serve.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import threading
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import (
    REF_NAME,
    RegistryService,
    busybox_build_context,
    make_oci_layout,
    seed_image,
    skopeo,
    skopeo_digest,
    skopeo_raw_manifest,
)

import registry_nb.remote.uploads as dist
from registry_nb import ContainerRegistry
from registry_nb.errors import (
    DigestMismatchError,
    ImageNotFoundError,
    ManifestNotFoundError,
    OperationCancelled,
    RegistryError,
)
from registry_nb.images.archive import DockerArchive, open_local
from registry_nb.images.copy import copy_image
from registry_nb.images.image import Image, RegistryRepository, open_image
from registry_nb.images.layout import CONTAINERD_NAME, TEMP_PREFIX, OCILayout
from registry_nb.oci import DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_MANIFEST
from registry_nb.progress import ProgressEvent

KIB = 1024
MIB = 1024 * KIB

pytestmark = pytest.mark.usefixtures("empty_docker_config")


@pytest.fixture
def reg(open_registry: RegistryService):
    with ContainerRegistry(open_registry.host) as facade:
        yield facade


@pytest.fixture
def seeded(open_registry: RegistryService, unique_repo: str) -> tuple[str, str]:
    files = {"a.bin": os.urandom(64 * KIB), "b.txt": b"hello layout\n"}
    return unique_repo, seed_image(open_registry, unique_repo, "v1", files=files, layers=2)


def blob_files(layout: Path) -> list[Path]:
    return sorted(p for p in (layout / "blobs").rglob("*") if p.is_file())


def index_json(layout: Path) -> dict:
    return json.loads((layout / "index.json").read_text())


# ------------------------------------------------------------ save and load


def test_save_writes_a_spec_layout_and_load_round_trips(reg: ContainerRegistry, seeded,
                                                        tmp_path: Path) -> None:
    repo, digest = seeded
    layout = tmp_path / "layout"
    saved = reg.save_image(repo, "v1", layout)
    assert saved["digest"] == digest and saved["tag"] == "v1"
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    entries = index_json(layout)["manifests"]
    assert entries == [{"mediaType": OCI_MANIFEST, "digest": digest,
                        "size": len(skopeo_raw_manifest(f"{reg.registry_host}/{repo}:v1")),
                        "annotations": {REF_NAME: "v1", CONTAINERD_NAME:
                                        f"{reg.registry_host}/{repo}:v1"}}]
    assert saved["source_digest"] == digest and saved["note"] is None  # OCI: digest kept
    assert len(blob_files(layout)) == 4  # manifest, config, two layers
    for path in blob_files(layout):  # content addressed
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    loaded = reg.load_image(layout, repo + "-loaded", "v2")
    assert loaded["digest"] == digest and loaded["copied_blobs"] == 3
    assert skopeo_digest(f"{reg.registry_host}/{repo}-loaded:v2") == digest


def test_saving_more_tags_keeps_the_others(reg: ContainerRegistry, seeded,
                                          open_registry: RegistryService,
                                          tmp_path: Path) -> None:
    repo, digest = seeded
    other = seed_image(open_registry, repo, "v2", files={"c.txt": os.urandom(KIB)})
    layout = tmp_path / "layout"
    reg.save_image(repo, "v1", layout)
    reg.save_image(repo, "v2", layout)
    again = reg.save_image(repo, "v1", layout)
    assert again["existing_blobs"] == again["blobs"] and again["bytes_copied"] == 0
    store = OCILayout(layout)
    assert store.tags() == ["v2", "v1"]
    assert store.resolve("v1").digest == digest and store.resolve("v2").digest == other
    with pytest.raises(ImageNotFoundError, match="say which one"):
        store.resolve(None)
    with pytest.raises(ManifestNotFoundError, match="v1"):
        store.resolve("v3")
    # load picks the entry named like the target tag, else source_tag=
    assert reg.load_image(layout, repo + "-l", "v2")["digest"] == other
    assert reg.load_image(layout, repo + "-l", "x", source_tag="v1")["digest"] == digest
    assert store.remove_tag("v2") and store.tags() == ["v1"]


def test_docker_schema2_digest_unchanged_through_save_and_load(
    reg: ContainerRegistry, docker_client, open_registry: RegistryService, unique_repo: str,
    tmp_path: Path,
) -> None:
    ctx = busybox_build_context(tmp_path / "ctx", [f"RUN echo {os.urandom(4).hex()} > /id"])
    name = f"{open_registry.host}/{unique_repo}"
    docker_client.images.build(path=str(ctx), tag=f"{name}:v1", network_mode="none", rm=True)
    docker_client.images.push(name, tag="v1")
    digest = skopeo_digest(f"{name}:v1")
    top = open_image(RegistryRepository(reg.client, unique_repo), "v1")
    assert isinstance(top, Image) and top.media_type == DOCKER_MANIFEST
    layout = tmp_path / "layout"
    kept = reg.save_image(unique_repo, "v1", layout, preserve_digests=True)
    assert index_json(layout)["manifests"][0]["mediaType"] == DOCKER_MANIFEST
    assert kept["digest"] == kept["source_digest"] == digest and "skopeo" in kept["note"]
    assert reg.load_image(layout, unique_repo + "-back", "v1")["digest"] == digest
    assert skopeo_digest(f"{name}-back:v1") == digest
    # by default the layout gets OCI media types, as skopeo writes them: same blobs
    converted = reg.save_image(unique_repo, "v1", tmp_path / "oci", ref_name="oci")
    assert converted["digest"] != digest and converted["media_type"] == OCI_MANIFEST
    entry = index_json(tmp_path / "oci")["manifests"][0]
    manifest = json.loads((tmp_path / "oci" / "blobs" / "sha256" /
                           entry["digest"].split(":")[1]).read_bytes())
    docker = top.manifest
    assert manifest["config"] == {**docker.config.to_dict(), "mediaType": OCI_CONFIG}
    assert [layer["digest"] for layer in manifest["layers"]] == [d.digest for d in docker.layers]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {OCI_LAYER_GZIP}
    assert converted["note"] is None and converted["source_digest"] == digest


# ------------------------------------------------------------ skopeo both ways


def test_we_read_what_skopeo_writes(reg: ContainerRegistry, seeded, tmp_path: Path) -> None:
    repo, digest = seeded
    layout = tmp_path / "by-skopeo"
    skopeo("copy", "--quiet", "--src-tls-verify=false", "--preserve-digests",
           f"docker://{reg.registry_host}/{repo}:v1", f"oci:{layout}:skopeo-tag")
    store = OCILayout(layout)
    assert store.tags() == ["skopeo-tag"]
    result = reg.load_image(layout, repo + "-from-skopeo", "v1")
    assert result["digest"] == digest
    assert skopeo_digest(f"{reg.registry_host}/{repo}-from-skopeo:v1") == digest


def test_skopeo_reads_what_we_write(reg: ContainerRegistry, seeded,
                                    open_registry: RegistryService, tmp_path: Path) -> None:
    repo, digest = seeded
    layout = tmp_path / "by-us"
    reg.save_image(repo, "v1", layout)
    inspected = json.loads(skopeo("inspect", f"oci:{layout}:v1").stdout)
    served = json.loads(skopeo("inspect", "--tls-verify=false",
                               f"docker://{open_registry.ref(repo, 'v1')}").stdout)
    assert inspected["Digest"] == served["Digest"] == digest
    assert inspected["Layers"] == served["Layers"]
    raw = skopeo("inspect", "--raw", f"oci:{layout}:v1").stdout
    assert raw == skopeo_raw_manifest(open_registry.ref(repo, "v1"))
    skopeo("copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests",
           f"oci:{layout}:v1", f"docker://{open_registry.ref(repo + '-via-skopeo', 'v1')}")
    assert skopeo_digest(open_registry.ref(repo + "-via-skopeo", "v1")) == digest


# ------------------------------------------------------------ nothing partial


def test_failed_save_leaves_no_index_entry_blob_or_temp_file(
    reg: ContainerRegistry, open_registry: RegistryService, unique_repo: str, tmp_path: Path,
) -> None:
    files = {f"f{i}.bin": os.urandom(300 * KIB) for i in range(3)}
    seed_image(open_registry, unique_repo, "v1", files=files, layers=3)
    manifest = json.loads(skopeo_raw_manifest(open_registry.ref(unique_repo, "v1")))
    bad = manifest["layers"][2]["digest"]
    path = open_registry.blob_path(bad)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    layout = tmp_path / "layout"
    # an image already in the layout must survive the failure untouched
    good = make_oci_layout(layout, {"keep.txt": b"keep\n"}, tag="keep")
    before = {p: p.read_bytes() for p in blob_files(layout)}
    index_before = (layout / "index.json").read_bytes()
    events: list[ProgressEvent] = []
    with pytest.raises(DigestMismatchError):
        reg.save_image(unique_repo, "v1", layout, progress=events.append)
    assert (layout / "index.json").read_bytes() == index_before
    assert {p: p.read_bytes() for p in blob_files(layout)} == before
    assert OCILayout(layout).stray_files() == []
    assert not list(layout.rglob(f"{TEMP_PREFIX}*"))
    assert events[-1].phase == "failed"
    assert OCILayout(layout).resolve("keep").digest == good.manifest_digest


def test_cancelled_save_leaves_nothing(reg: ContainerRegistry, open_registry: RegistryService,
                                       unique_repo: str, tmp_path: Path) -> None:
    seed_image(open_registry, unique_repo, "v1", files={"big.bin": os.urandom(3 * MIB)})
    cancel = threading.Event()

    def progress(event: ProgressEvent) -> None:
        if event.phase == "download":
            cancel.set()

    layout = tmp_path / "layout"
    with pytest.raises(OperationCancelled):
        reg.save_image(unique_repo, "v1", layout, progress=progress, cancel=cancel)
    assert not (layout / "index.json").exists()
    assert blob_files(layout) == []
    assert OCILayout(layout).stray_files() == []


def test_corrupt_layout_blob_is_refused_on_load(reg: ContainerRegistry, seeded,
                                                tmp_path: Path) -> None:
    repo, _ = seeded
    layout = tmp_path / "layout"
    saved = reg.save_image(repo, "v1", layout)
    manifest = json.loads((layout / "blobs/sha256" / saved["digest"][7:]).read_bytes())
    layer = layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    data = bytearray(layer.read_bytes())
    data[10] ^= 0xFF
    layer.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError):
        reg.load_image(layout, repo + "-bad", "v1")
    assert reg.client.head_manifest(repo + "-bad", "v1") is None


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="oci-layout"):
        OCILayout(tmp_path).get_manifest("v1")
    with pytest.raises(ImageNotFoundError, match="does not exist"):
        open_local(tmp_path / "missing")
    assert isinstance(open_local(tmp_path), OCILayout)
    (tmp_path / "x.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 100)
    with pytest.raises(RegistryError, match="compressed"):
        DockerArchive(tmp_path / "x.tar.gz").tags()


def test_layout_to_layout_copy(seeded, reg: ContainerRegistry, tmp_path: Path) -> None:
    repo, digest = seeded
    reg.save_image(repo, "v1", tmp_path / "a")
    result = copy_image(OCILayout(tmp_path / "a"), OCILayout(tmp_path / "b"), reference="v1",
                        tag="copied")
    assert result.digest == digest
    assert OCILayout(tmp_path / "b").resolve("copied").digest == digest


# ------------------------------------------------------------ docker save archives


def test_load_a_docker_save_archive_and_run_it(reg: ContainerRegistry, docker_client,
                                               open_registry: RegistryService,
                                               unique_repo: str, tmp_path: Path) -> None:
    word = os.urandom(6).hex()
    ctx = busybox_build_context(tmp_path / "ctx", [f"RUN echo {word} > /word",
                                                   'CMD ["cat", "/word"]'])
    local = f"registry-nb-archive-{word}:v1"
    image, _ = docker_client.images.build(path=str(ctx), tag=local, network_mode="none",
                                          rm=True)
    archive = tmp_path / "saved.tar"
    with open(archive, "wb") as out:
        for chunk in image.save(named=True):
            out.write(chunk)
    store = DockerArchive(archive)
    top = open_image(store, local)
    assert isinstance(top, Image)
    assert top.config.digest == image.id  # the engine's image id is the config digest
    assert top.layers and all(layer.media_type == OCI_LAYER for layer in top.layers)
    loaded = reg.load_image(archive, unique_repo, "v1", source_tag=local)
    assert loaded["copied_blobs"] == len(top.layers) + 1
    docker_client.images.remove(local, force=True)
    ref = f"{open_registry.host}/{unique_repo}:v1"
    pulled = docker_client.images.pull(ref)
    assert pulled.id == image.id
    output = docker_client.containers.run(ref, network_mode="none", remove=True)
    assert output.decode().strip() == word
    docker_client.images.remove(ref, force=True)
    # uncompressed layers: no gzip ISIZE, so the column is null
    frame = reg.layers_frame(unique_repo, "v1", uncompressed=True)
    assert frame["uncompressed_size_bytes"].isna().all()


def test_archive_holding_an_oci_layout_keeps_digests(reg: ContainerRegistry, unique_repo: str,
                                                     tmp_path: Path) -> None:
    """Docker 25+ writes an OCI layout inside the tar: read as is, digests kept."""
    image = make_oci_layout(tmp_path / "layout", {"x.bin": os.urandom(20 * KIB)}, tag="v1")
    index = index_json(tmp_path / "layout")
    index["manifests"][0]["annotations"]["io.containerd.image.name"] = \
        "docker.io/library/demo:v1"
    (tmp_path / "layout" / "index.json").write_text(json.dumps(index))
    archive = tmp_path / "oci.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted((tmp_path / "layout").rglob("*")):
            tar.add(path, arcname=str(path.relative_to(tmp_path / "layout")), recursive=False)
    store = DockerArchive(archive)
    for name in ("v1", "demo:v1", "docker.io/library/demo:v1", image.manifest_digest, None):
        assert store.get_manifest(name).digest == image.manifest_digest
    loaded = reg.load_image(archive, unique_repo, "v1", source_tag="demo:v1")
    assert loaded["digest"] == image.manifest_digest


def test_load_survives_a_lost_patch_answer(open_registry: RegistryService, unique_repo: str,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "MONOLITHIC_LIMIT", 64 * KIB)
    image = make_oci_layout(tmp_path / "layout", {"big.bin": os.urandom(MIB)}, tag="v1")
    layer = image.layers[0]
    with FaultProxy(open_registry.url) as proxy:
        # the layer goes in one PATCH; the registry takes it, but its answer is lost
        # (connection reset), so the client asks the registry where the upload stands
        proxy.add_fault("PATCH", "/blobs/uploads/", stall=0.1)
        with ContainerRegistry(proxy.host) as through:
            result = through.load_image(tmp_path / "layout", unique_repo, "v1")
        patches = proxy.matching("PATCH", "/blobs/uploads/")
        asked = proxy.matching("GET", "/blobs/uploads/")
    assert result["digest"] == image.manifest_digest
    assert [p.header("Content-Range") for p in patches][0] == f"0-{layer.size - 1}"
    # distribution cancels a session whose answer was lost (its state token is behind
    # the bytes it holds), so the layer goes again, in one PATCH, on a new session
    assert len(asked) == 1 and len(patches) == 2
    assert skopeo_digest(open_registry.ref(unique_repo, "v1")) == image.manifest_digest
