"""Tests of registry_nb.manifest: parsing, platform selection, configs, builders."""

from __future__ import annotations

import hashlib
import json
import pickle
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import registry_nb.oci as manifest_mod
import registry_nb.oci.platform as platform_mod
from registry_nb.errors import (
    InvalidManifestError,
    ManifestNotFoundError,
    RegistryError,
    UnsupportedMediaTypeError,
)
from registry_nb.frames import to_utc
from registry_nb.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    IMAGE_MANIFEST_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    ContainerConfig,
    Descriptor,
    HistoryEntry,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    format_timestamp,
    layer_history,
    parse_manifest,
    parse_timestamp,
)
from registry_nb.oci.convert import to_oci
from registry_nb.oci.mediatypes import DOCKER_FOREIGN_LAYER, OCI_LAYER_NONDISTRIBUTABLE_GZIP


def h(char: str) -> str:
    return "sha256:" + char * 64


# What `docker push` (distribution 2.8 / moby) serves: 3-space indented, size before digest.
DOCKER_V2 = b"""{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1457,
      "digest": "sha256:8135583d97feb82398909c9c97607159e6db2c4ca2c885c0b8f590ee0f9fe90d"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 772788,
         "digest": "sha256:a58ecd4f0c864650a4286c3c2d49c7219a3f2fc8d7a0bf478aa9834acfe14ae7"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 32,
         "digest": "sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1"
      }
   ]
}"""

# What buildkit pushes for an OCI image: compact, annotations, digest before size.
OCI_IMAGE = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
    b'"digest":"sha256:' + b"c" * 64 + b'","size":612},'
    b'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
    b'"digest":"sha256:' + b"d" * 64 + b'","size":2048},'
    b'{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd",'
    b'"digest":"sha256:' + b"e" * 64 + b'","size":100,'
    b'"annotations":{"org.opencontainers.image.title":"extra"}}],'
    b'"annotations":{"org.opencontainers.image.created":"2024-01-02T03:04:05Z"}}'
)


def _entry(digest: str, arch: str, variant: str | None = None, **extra: Any) -> dict[str, Any]:
    platform: dict[str, Any] = {"architecture": arch, "os": extra.pop("os", "linux")}
    if variant:
        platform["variant"] = variant
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1000,
            "platform": platform, **extra}


# A buildkit multi-platform index with an attestation manifest.
INDEX_DOC = {
    "schemaVersion": 2,
    "mediaType": OCI_INDEX,
    "manifests": [
        _entry(h("1"), "amd64"),
        _entry(h("2"), "arm64", "v8"),
        _entry(h("3"), "arm", "v7"),
        _entry(h("4"), "unknown", os="unknown", annotations={
            "vnd.docker.reference.digest": h("1"),
            "vnd.docker.reference.type": "attestation-manifest",
        }),
    ],
}
INDEX_RAW = json.dumps(INDEX_DOC, indent=2).encode()

# docker's manifest list (e.g. busybox on Docker Hub).
MANIFEST_LIST = json.dumps({
    "manifests": [
        {"digest": h("5"), "mediaType": DOCKER_MANIFEST,
         "platform": {"architecture": "amd64", "os": "linux"}, "size": 527},
        {"digest": h("6"), "mediaType": DOCKER_MANIFEST,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}, "size": 527},
        {"digest": h("7"), "mediaType": DOCKER_MANIFEST,
         "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1",
                      "os.features": ["win32k"]}, "size": 527},
    ],
    "mediaType": DOCKER_MANIFEST_LIST,
    "schemaVersion": 2,
}).encode()

DOCKER_CONFIG_RAW = json.dumps({
    "architecture": "amd64",
    "config": {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "EMPTY"],
        "Cmd": ["sh"], "Image": "sha256:" + "9" * 64, "Volumes": None, "WorkingDir": "",
        "Entrypoint": None, "OnBuild": None, "Labels": None,
    },
    "container": "c0ffee",
    "created": "2023-05-19T20:19:33.744283519Z",
    "docker_version": "20.10.23",
    "history": [
        {"created": "2023-05-19T20:19:33.602637093Z",
         "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
        {"created": "2023-05-19T20:19:33.744283519Z",
         "created_by": '/bin/sh -c #(nop)  CMD ["sh"]', "empty_layer": True},
        {"created": "2023-05-20T10:00:00+02:00", "created_by": "RUN touch /x",
         "comment": "buildkit.dockerfile.v0"},
    ],
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [h("a"), h("b")]},
}).encode()


# ------------------------------------------------------------------ constants


def test_media_type_constants() -> None:
    assert MANIFEST_ACCEPT.split(", ") == [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST,
                                           DOCKER_MANIFEST_LIST]
    assert INDEX_MEDIA_TYPES == {OCI_INDEX, DOCKER_MANIFEST_LIST}
    assert IMAGE_MANIFEST_MEDIA_TYPES == {OCI_MANIFEST, DOCKER_MANIFEST}
    assert MAX_MANIFEST_BYTES == 4 * 1024 * 1024
    assert manifest_mod.DOCKER_SCHEMA1_SIGNED_MANIFEST.endswith("v1+prettyjws")
    assert manifest_mod.OCI_LAYER_NONDISTRIBUTABLE_ZSTD == (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")
    assert manifest_mod.DOCKER_FOREIGN_LAYER == (
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")


# ------------------------------------------------------------------ manifests


def test_docker_v2_manifest() -> None:
    m = parse_manifest(DOCKER_V2, DOCKER_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.media_type == DOCKER_MANIFEST
    assert m.schema_version == 2
    assert m.config.media_type == DOCKER_CONFIG
    assert m.config.size == 1457
    assert [layer.size for layer in m.layers] == [772788, 32]
    assert all(layer.media_type == DOCKER_LAYER for layer in m.layers)
    assert m.compressed_size == 772820
    assert m.total_size == 772820 + 1457
    assert m.raw == DOCKER_V2  # verbatim, whitespace included
    assert m.digest == "sha256:" + hashlib.sha256(DOCKER_V2).hexdigest()
    assert m.size == len(DOCKER_V2)


def test_oci_manifest() -> None:
    m = parse_manifest(OCI_IMAGE)
    assert isinstance(m, Manifest)
    assert m.media_type == OCI_MANIFEST
    assert m.config.digest == h("c")
    assert [layer.media_type for layer in m.layers] == [OCI_LAYER_GZIP, OCI_LAYER_ZSTD]
    assert m.layers[1].annotations == {"org.opencontainers.image.title": "extra"}
    assert m.annotations["org.opencontainers.image.created"] == "2024-01-02T03:04:05Z"
    assert m.subject is None


def test_media_type_from_content_type() -> None:
    doc = json.loads(OCI_IMAGE)
    del doc["mediaType"]
    raw = json.dumps(doc).encode()
    m = parse_manifest(raw, "application/vnd.oci.image.manifest.v1+json; charset=utf-8")
    assert isinstance(m, Manifest) and m.media_type == OCI_MANIFEST
    # no mediaType and a generic Content-Type: the shape decides
    assert isinstance(parse_manifest(raw, "application/json"), Manifest)
    index = dict(INDEX_DOC)
    del index["mediaType"]
    assert isinstance(parse_manifest(json.dumps(index).encode()), Index)


def test_body_and_content_type_disagree() -> None:
    with pytest.raises(InvalidManifestError, match="does not match"):
        parse_manifest(OCI_IMAGE, OCI_INDEX)


def test_schema1_is_unsupported_with_advice() -> None:
    signed = json.dumps({
        "schemaVersion": 1, "name": "library/old", "tag": "latest", "architecture": "amd64",
        "fsLayers": [{"blobSum": h("a")}], "history": [{"v1Compatibility": "{}"}],
        "signatures": [{"header": {"jwk": {}, "alg": "ES256"}, "signature": "x",
                        "protected": "y"}],
    }, indent=3).encode()
    for content_type in (manifest_mod.DOCKER_SCHEMA1_SIGNED_MANIFEST, None, "application/json"):
        with pytest.raises(UnsupportedMediaTypeError) as info:
            parse_manifest(signed, content_type)
        assert "re-push" in str(info.value)
    with pytest.raises(UnsupportedMediaTypeError):
        parse_manifest(b'{"schemaVersion":1}', manifest_mod.DOCKER_SCHEMA1_MANIFEST)


@pytest.mark.parametrize("media_type", [
    "application/vnd.oci.artifact.manifest.v1+json", "text/html", "application/x-foo",
])
def test_unknown_media_type(media_type: str) -> None:
    doc = json.loads(OCI_IMAGE)
    doc["mediaType"] = media_type
    with pytest.raises(UnsupportedMediaTypeError):
        parse_manifest(json.dumps(doc).encode())


def _mutate(doc: dict[str, Any], path: list[Any], value: Any) -> bytes:
    doc = json.loads(json.dumps(doc))
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(doc).encode()


_DELETE = object()
_BASE = json.loads(OCI_IMAGE)

# (path to change, new value, field the message must name)
MANIFEST_MUTATIONS = [
    (["config"], _DELETE, "config"),
    (["config"], None, "config"),
    (["config"], [], "config"),
    (["config", "digest"], "sha256:xyz", "config.digest"),
    (["config", "digest"], _DELETE, "config.digest"),
    (["config", "size"], -1, "config.size"),
    (["config", "size"], "12", "config.size"),
    (["config", "size"], 1.5, "config.size"),
    (["config", "size"], True, "config.size"),
    (["config", "size"], 2**64, "config.size"),
    (["config", "mediaType"], 7, "config.mediaType"),
    (["layers"], _DELETE, "layers"),
    (["layers"], {"a": 1}, "layers"),
    (["layers", 0], "x", "layers[0]"),
    (["layers", 1, "size"], -5, "layers[1].size"),
    (["layers", 1, "digest"], "sha256:" + "A" * 64, "layers[1].digest"),
    (["layers", 1, "digest"], "md5:" + "a" * 32, "layers[1].digest"),
    (["layers", 1, "annotations"], {"k": 1}, "layers[1].annotations"),
    (["layers", 1, "urls"], "http://x", "layers[1].urls"),
    (["annotations"], [], "annotations"),
    (["schemaVersion"], 3, "schemaVersion"),
    (["schemaVersion"], "2", "schemaVersion"),
    (["schemaVersion"], _DELETE, "schemaVersion"),
    (["subject"], {"mediaType": OCI_MANIFEST}, "subject.digest"),
    (["mediaType"], 5, "mediaType"),
]


@pytest.mark.parametrize("path, value, field", MANIFEST_MUTATIONS,
                         ids=[f"{'.'.join(map(str, p))}={v!r}"[:50]
                              for p, v, _ in MANIFEST_MUTATIONS])
def test_invalid_manifest_names_field(path: list[Any], value: Any, field: str) -> None:
    with pytest.raises(InvalidManifestError) as info:
        parse_manifest(_mutate(_BASE, path, value))
    assert f"field {field!r}" in str(info.value)


INDEX_MUTATIONS = [
    (["manifests"], _DELETE, "manifests"),
    (["manifests"], "nope", "manifests"),
    (["manifests", 1, "platform"], "linux/arm64", "manifests[1].platform"),
    (["manifests", 1, "platform", "os"], _DELETE, "manifests[1].platform.os"),
    (["manifests", 2, "platform", "architecture"], 64, "manifests[2].platform.architecture"),
    (["manifests", 0, "size"], -1, "manifests[0].size"),
]


@pytest.mark.parametrize("path, value, field", INDEX_MUTATIONS,
                         ids=[".".join(map(str, p)) for p, _, _ in INDEX_MUTATIONS])
def test_invalid_index_names_field(path: list[Any], value: Any, field: str) -> None:
    with pytest.raises(InvalidManifestError) as info:
        parse_manifest(_mutate(INDEX_DOC, path, value))
    assert f"field {field!r}" in str(info.value)


@pytest.mark.parametrize("raw", [
    b"", b"null", b"[]", b'"manifest"', b"42", b"{", b"\xff\xfe{}", b"\xef\xbb\xbf{}",
    b'{"schemaVersion": NaN}', b'{"a":1,"a":2}', b"[" * 100_000 + b"]" * 100_000,
    b'{"schemaVersion":2,"size":' + b"9" * 5000 + b"}", b"{}", b'{"foo": "bar"}',
])
def test_garbage_is_invalid_manifest(raw: bytes) -> None:
    with pytest.raises(InvalidManifestError):
        parse_manifest(raw, "application/json")


def test_duplicate_keys_are_rejected() -> None:
    raw = OCI_IMAGE[:-1] + b',"config":{"mediaType":"x","digest":"' + h("0").encode() + \
        b'","size":1}}'
    with pytest.raises(InvalidManifestError, match="duplicate key 'config'"):
        parse_manifest(raw)


def test_size_cap() -> None:
    padding = MAX_MANIFEST_BYTES - len(OCI_IMAGE)
    at_limit = OCI_IMAGE[:-1] + b" " * padding + b"}"
    assert len(at_limit) == MAX_MANIFEST_BYTES
    assert isinstance(parse_manifest(at_limit), Manifest)
    with pytest.raises(InvalidManifestError, match="limit"):
        parse_manifest(at_limit + b" ")


def test_bytes_like_and_wrong_types() -> None:
    assert parse_manifest(bytearray(OCI_IMAGE)).raw == OCI_IMAGE
    assert parse_manifest(memoryview(OCI_IMAGE)).digest == parse_manifest(OCI_IMAGE).digest
    with pytest.raises(InvalidManifestError):
        parse_manifest(OCI_IMAGE.decode())  # type: ignore[arg-type]


def test_manifest_with_subject_and_artifact_type() -> None:
    doc = dict(_BASE, artifactType="application/vnd.example+json",
               subject={"mediaType": OCI_MANIFEST, "digest": h("f"), "size": 10})
    m = parse_manifest(json.dumps(doc).encode())
    assert isinstance(m, Manifest)
    assert m.subject == Descriptor(OCI_MANIFEST, h("f"), 10)
    assert m.artifact_type == "application/vnd.example+json"


# ------------------------------------------------------------------ platforms


def test_platform_parse_and_str() -> None:
    p = Platform.parse("linux/arm64/v8")
    assert (p.os, p.architecture, p.variant) == ("linux", "arm64", "v8")
    assert str(p) == "linux/arm64/v8"
    assert str(Platform.parse("linux/amd64")) == "linux/amd64"
    assert str(Platform.parse("Linux/x86_64")) == "linux/amd64"
    assert str(Platform.parse("linux/armhf")) == "linux/arm"  # containerd: v7 is implied
    assert Platform.parse("linux/armhf").matches(Platform("linux", "arm", "v7"))
    assert str(Platform.parse("linux/armel")) == "linux/arm/v6"
    lone_os, lone_arch = Platform.parse("linux"), Platform.parse("x86_64")
    assert (lone_os.os, lone_os.architecture) == ("linux", Platform.host().architecture)
    assert (lone_arch.os, lone_arch.architecture) == (Platform.host().os, "amd64")
    for bad in ["", "linux/", "/amd64", "a/b/c/d", "linux/am d64", "*", "linux/*", "nosuchos",
                None]:
        with pytest.raises(RegistryError):
            Platform.parse(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("system, machine, expected", [
    ("Linux", "x86_64", "linux/amd64"),
    ("Linux", "aarch64", "linux/arm64"),
    ("Linux", "armv7l", "linux/arm/v7"),
    ("Linux", "armv6l", "linux/arm/v6"),
    ("Linux", "i686", "linux/386"),
    ("Linux", "ppc64le", "linux/ppc64le"),
    ("Darwin", "arm64", "darwin/arm64"),
    ("Windows", "AMD64", "windows/amd64"),
])
def test_platform_host(monkeypatch: pytest.MonkeyPatch, system: str, machine: str,
                       expected: str) -> None:
    monkeypatch.setattr(platform_mod._host, "system", lambda: system)
    monkeypatch.setattr(platform_mod._host, "machine", lambda: machine)
    assert str(Platform.host()) == expected


def test_platform_matching() -> None:
    arm64 = Platform("linux", "arm64")
    assert arm64.matches(Platform("linux", "arm64", "v8"))
    assert Platform("linux", "arm64", "v8").matches(arm64)
    assert not arm64.matches(Platform("linux", "amd64"))
    assert not arm64.matches(Platform("windows", "arm64"))
    assert Platform("linux", "arm").matches(Platform("linux", "arm", "v7"))
    assert not Platform("linux", "arm", "v6").matches(Platform("linux", "arm", "v7"))
    assert Platform("linux", "arm", "v7").runs(Platform("linux", "arm", "v6"))
    assert not Platform("linux", "arm", "v6").runs(Platform("linux", "arm", "v7"))
    assert Platform("linux", "amd64").matches(Platform("linux", "x86_64"))
    win = Platform("windows", "amd64", os_version="10.0.17763.1")
    assert not win.matches(Platform("windows", "amd64", os_version="10.0.20348.1"))
    assert Platform("windows", "amd64").matches(win)


def test_platform_dict_round_trip() -> None:
    p = Platform("windows", "amd64", None, "10.0.17763.1", ("win32k",))
    assert Platform.from_dict(p.to_dict()) == p
    assert p.to_dict() == {"architecture": "amd64", "os": "windows",
                           "os.version": "10.0.17763.1", "os.features": ["win32k"]}


# ------------------------------------------------------------------ index selection


def _host(monkeypatch: pytest.MonkeyPatch, system: str, machine: str) -> None:
    monkeypatch.setattr(platform_mod._host, "system", lambda: system)
    monkeypatch.setattr(platform_mod._host, "machine", lambda: machine)


def test_index_parse() -> None:
    index = parse_manifest(INDEX_RAW)
    assert isinstance(index, Index)
    assert index.media_type == OCI_INDEX
    assert len(index.manifests) == 4
    assert index.manifests[3].is_attestation
    assert [str(p) for p in index.platforms] == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    assert index.digest == "sha256:" + hashlib.sha256(INDEX_RAW).hexdigest()


@pytest.mark.parametrize("system, machine, digest", [
    ("Linux", "x86_64", h("1")),
    ("Linux", "aarch64", h("2")),
    ("Linux", "armv7l", h("3")),
    ("Darwin", "arm64", h("2")),  # docker on a Mac runs linux/arm64
    ("Linux", "s390x", h("1")),  # no s390x image: linux/amd64
    ("Linux", "armv6l", h("1")),  # arm/v6 cannot run v7: linux/amd64
])
def test_index_select_default(monkeypatch: pytest.MonkeyPatch, system: str, machine: str,
                              digest: str) -> None:
    _host(monkeypatch, system, machine)
    index = parse_manifest(INDEX_RAW)
    assert isinstance(index, Index)
    assert index.select().digest == digest


@pytest.mark.parametrize("wanted, digest", [
    ("linux/amd64", h("1")),
    ("linux/arm64", h("2")),
    ("linux/arm64/v8", h("2")),
    ("linux/aarch64", h("2")),
    ("linux/arm", h("3")),
    ("linux/arm/v7", h("3")),
    ("linux/arm/v8", h("3")),  # 32-bit armv8 runs v7
    (Platform("linux", "arm64", "v8"), h("2")),
])
def test_index_select_explicit(wanted: Platform | str, digest: str) -> None:
    index = parse_manifest(INDEX_RAW)
    assert isinstance(index, Index)
    assert index.select(wanted).digest == digest


@pytest.mark.parametrize("wanted", ["linux/s390x", "linux/arm/v6", "unknown/unknown",
                                    "windows/amd64"])
def test_index_select_missing(wanted: str) -> None:
    index = parse_manifest(INDEX_RAW)
    assert isinstance(index, Index)
    with pytest.raises(ManifestNotFoundError) as info:
        index.select(wanted)
    message = str(info.value)
    assert wanted in message
    assert "linux/amd64, linux/arm64/v8, linux/arm/v7" in message
    assert "unknown" not in message.split("available platforms:")[1]


def test_index_select_only_attestations(monkeypatch: pytest.MonkeyPatch) -> None:
    _host(monkeypatch, "Linux", "x86_64")
    doc = dict(INDEX_DOC, manifests=[INDEX_DOC["manifests"][3]])
    index = parse_manifest(json.dumps(doc).encode())
    assert isinstance(index, Index)
    with pytest.raises(ManifestNotFoundError, match="available platforms: none"):
        index.select()


def test_manifest_list_windows() -> None:
    index = parse_manifest(MANIFEST_LIST, DOCKER_MANIFEST_LIST)
    assert isinstance(index, Index)
    assert index.media_type == DOCKER_MANIFEST_LIST
    win = index.manifests[2].platform
    assert win is not None and win.os_version == "10.0.17763.1"
    assert win.features == ("win32k",)
    assert index.select("windows/amd64").digest == h("7")
    assert index.select(Platform("windows", "amd64", os_version="10.0.17763.1")).digest == h("7")


# ------------------------------------------------------------------ image config


def test_docker_config() -> None:
    config = ImageConfig.from_bytes(DOCKER_CONFIG_RAW)
    assert (config.architecture, config.os, config.variant) == ("amd64", "linux", None)
    assert config.created == datetime(2023, 5, 19, 20, 19, 33, 744283, tzinfo=timezone.utc)
    assert config.created is not None and config.created.utcoffset().total_seconds() == 0
    assert config.config.cmd == ["sh"]
    assert config.config.entrypoint is None
    assert config.config.labels == {}
    assert config.config.user is None and config.config.working_dir is None
    assert config.config.env_dict["PATH"].startswith("/usr/local/sbin")
    assert config.config.env_dict["EMPTY"] == ""
    assert config.diff_ids == [h("a"), h("b")]
    assert [e.empty_layer for e in config.history] == [False, True, False]
    assert config.history[2].created == datetime(2023, 5, 20, 8, 0, tzinfo=timezone.utc)
    assert config.history[2].comment == "buildkit.dockerfile.v0"
    assert config.raw == DOCKER_CONFIG_RAW
    assert config.digest == "sha256:" + hashlib.sha256(DOCKER_CONFIG_RAW).hexdigest()
    assert str(config.platform) == "linux/amd64"


def test_oci_config_fields() -> None:
    raw = json.dumps({
        "created": "2024-02-29T23:59:59.5-01:30",
        "author": "me",
        "architecture": "arm64", "os": "linux", "variant": "v8",
        "config": {"User": "1000:1000", "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                   "Env": ["A=b=c"], "Entrypoint": "/bin/sh -c", "Cmd": ["x"],
                   "Volumes": {"/data": {}}, "WorkingDir": "/srv",
                   "Labels": {"org.opencontainers.image.source": "https://example.com"},
                   "StopSignal": "SIGTERM"},
        "rootfs": {"type": "layers", "diff_ids": []},
    }).encode()
    config = ImageConfig.from_bytes(raw)
    assert config.created == datetime(2024, 3, 1, 1, 29, 59, 500000, tzinfo=timezone.utc)
    assert config.author == "me"
    c = config.config
    assert c.user == "1000:1000"
    assert c.exposed_ports == ["80/tcp", "53/udp"]
    assert c.env_dict == {"A": "b=c"}
    assert c.entrypoint == ["/bin/sh -c"]  # docker's strslice accepts a bare string
    assert c.volumes == ["/data"] and c.working_dir == "/srv" and c.stop_signal == "SIGTERM"
    assert c.labels["org.opencontainers.image.source"] == "https://example.com"
    assert str(config.platform) == "linux/arm64/v8"


@pytest.mark.parametrize("text, expected", [
    ("2023-05-19T20:19:33.744283519Z", datetime(2023, 5, 19, 20, 19, 33, 744283,
                                                 tzinfo=timezone.utc)),
    ("2023-05-19T20:19:33Z", datetime(2023, 5, 19, 20, 19, 33, tzinfo=timezone.utc)),
    ("2023-05-19t20:19:33.1z", datetime(2023, 5, 19, 20, 19, 33, 100000, tzinfo=timezone.utc)),
    ("2023-05-19T20:19:33+05:30", datetime(2023, 5, 19, 14, 49, 33, tzinfo=timezone.utc)),
    ("2023-05-19T20:19:33", datetime(2023, 5, 19, 20, 19, 33, tzinfo=timezone.utc)),
    ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=timezone.utc)),
    ("0001-01-01T00:00:00Z", None),
])
def test_parse_timestamp(text: str, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("created", ["yesterday", "2023-13-01T00:00:00Z", "2023-05-19",
                                     "2023-05-19T25:00:00Z", 12345, ["x"]])
def test_bad_created_names_field(created: Any) -> None:
    raw = json.dumps({"architecture": "amd64", "os": "linux", "created": created}).encode()
    with pytest.raises(InvalidManifestError, match="'created'"):
        ImageConfig.from_bytes(raw)


CONFIG_MUTATIONS = [
    (["architecture"], _DELETE, "architecture"),
    (["os"], 1, "os"),
    (["config"], "x", "config"),
    (["config", "Env"], "PATH=/bin", "config.Env"),
    (["config", "Cmd"], [1], "config.Cmd"),
    (["config", "Labels"], {"a": 1}, "config.Labels"),
    (["config", "Volumes"], ["/data"], "config.Volumes"),
    (["rootfs"], [], "rootfs"),
    (["rootfs", "diff_ids"], "sha256:x", "rootfs.diff_ids"),
    (["rootfs", "diff_ids", 1], "sha256:nothex", "rootfs.diff_ids[1]"),
    (["rootfs", "diff_ids", 0], 7, "rootfs.diff_ids[0]"),
    (["history"], {}, "history"),
    (["history", 0], "x", "history[0]"),
    (["history", 1, "empty_layer"], "yes", "history[1].empty_layer"),
    (["history", 2, "created_by"], ["RUN"], "history[2].created_by"),
    (["history", 2, "created"], "soon", "history[2].created"),
]


@pytest.mark.parametrize("path, value, field", CONFIG_MUTATIONS,
                         ids=[".".join(map(str, p)) for p, _, _ in CONFIG_MUTATIONS])
def test_invalid_config_names_field(path: list[Any], value: Any, field: str) -> None:
    raw = _mutate(json.loads(DOCKER_CONFIG_RAW), path, value)
    with pytest.raises(InvalidManifestError) as info:
        ImageConfig.from_bytes(raw)
    assert f"field {field!r}" in str(info.value)


# ------------------------------------------------------------------ layer history


def _manifest_with_layers(count: int) -> Manifest:
    layers = [Descriptor(OCI_LAYER_GZIP, "sha256:" + f"{i:064x}", 10 + i) for i in range(count)]
    return Manifest.build(Descriptor(OCI_CONFIG, h("c"), 100), layers)


def test_layer_history_skips_empty_layers() -> None:
    config = ImageConfig.from_bytes(DOCKER_CONFIG_RAW)
    entries = layer_history(config, _manifest_with_layers(2))
    assert [e.created_by if e else None for e in entries] == [
        "/bin/sh -c #(nop) ADD file:abc in / ", "RUN touch /x"]


def test_layer_history_mismatch_gives_none() -> None:
    config = ImageConfig.from_bytes(DOCKER_CONFIG_RAW)
    assert layer_history(config, _manifest_with_layers(3)) == [None, None, None]
    assert layer_history(config, _manifest_with_layers(1)) == [None]
    assert layer_history(config, _manifest_with_layers(0)) == []
    no_history = ImageConfig.build(diff_ids=[h("a")])
    assert layer_history(no_history, _manifest_with_layers(1)) == [None]


# ------------------------------------------------------------------ builders


def test_manifest_build_encoding() -> None:
    config = Descriptor(OCI_CONFIG, h("a"), 10)
    layer = Descriptor(OCI_LAYER_GZIP, h("b"), 100)
    m = Manifest.build(config, [layer], annotations={"k": "v"})
    assert m.raw == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        + h("a").encode() + b'","size":10},"layers":[{"mediaType":'
        b'"application/vnd.oci.image.layer.v1.tar+gzip","digest":"' + h("b").encode()
        + b'","size":100}],"annotations":{"k":"v"}}'
    )
    assert parse_manifest(m.raw) == m
    assert m.config == config and m.layers == [layer]
    assert Manifest.build(config, [layer], annotations={"k": "v"}).raw == m.raw  # stable
    docker = Manifest.build(Descriptor(DOCKER_CONFIG, h("a"), 10),
                            [Descriptor(DOCKER_LAYER, h("b"), 100)], media_type=DOCKER_MANIFEST)
    assert parse_manifest(docker.raw, DOCKER_MANIFEST) == docker
    with pytest.raises(UnsupportedMediaTypeError):
        Manifest.build(config, [], media_type=OCI_INDEX)


def test_index_build_and_select() -> None:
    config = ImageConfig.build(diff_ids=[h("a")], architecture="arm64", variant="v8")
    m = Manifest.build(config.descriptor(), [Descriptor(OCI_LAYER_GZIP, h("b"), 5)])
    index = Index.build([m.descriptor(config.platform),
                         m.descriptor(Platform("unknown", "unknown"))],
                        annotations={"a": "b"})
    assert parse_manifest(index.raw) == index
    assert index.select("linux/arm64").digest == m.digest
    assert index.manifests[0].size == len(m.raw)
    assert Index.build([], media_type=DOCKER_MANIFEST_LIST).manifests == []
    with pytest.raises(UnsupportedMediaTypeError):
        Index.build([], media_type=OCI_MANIFEST)


def test_image_config_build_round_trip() -> None:
    created = datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)
    run = ContainerConfig(user="app", env=["A=1"], entrypoint=["/bin/busybox"], cmd=["sh"],
                          working_dir="/w", labels={"x": "y"}, exposed_ports=["8080/tcp"],
                          volumes=["/v"], stop_signal="SIGINT")
    history = [HistoryEntry(created=created, created_by="COPY busybox /bin/busybox"),
               HistoryEntry(created_by="CMD sh", empty_layer=True, comment="c", author="a")]
    config = ImageConfig.build(diff_ids=[h("a")], created=created, author="me", config=run,
                               history=history)
    assert config.config == run
    assert config.history == history
    assert config.created == created
    assert b'"created":"2024-01-02T03:04:05.6Z"' in config.raw
    assert ImageConfig.from_bytes(config.raw) == config
    assert config.descriptor().digest == config.digest
    assert config.descriptor(DOCKER_CONFIG).media_type == DOCKER_CONFIG


def test_format_timestamp() -> None:
    assert format_timestamp(datetime(2024, 1, 1)) == "2024-01-01T00:00:00Z"
    assert parse_timestamp(format_timestamp(datetime(2024, 1, 1, 1, 2, 3, 450))) == datetime(
        2024, 1, 1, 1, 2, 3, 450, tzinfo=timezone.utc)


def test_times_keep_their_nanoseconds() -> None:
    raw = (b'{"created":"2024-01-02T05:04:05.123456789+02:00","architecture":"amd64",'
           b'"os":"linux","rootfs":{"type":"layers","diff_ids":[]},'
           b'"history":[{"created":"2024-01-02T03:04:05.000000001Z"}]}')
    config = ImageConfig.from_bytes(raw)
    assert config.created is not None and config.created.nanosecond == 789
    assert format_timestamp(config.created) == "2024-01-02T03:04:05.123456789Z"
    rebuilt = json.loads(ImageConfig.build(created=config.created, history=config.history).raw)
    assert rebuilt["created"] == "2024-01-02T03:04:05.123456789Z"
    assert rebuilt["history"] == [{"created": "2024-01-02T03:04:05.000000001Z"}]
    assert to_utc(config.created).value % 1_000_000_000 == 123_456_789  # the frame's time
    assert pickle.loads(pickle.dumps(config.created)).nanosecond == 789  # to Dask workers
    assert format_timestamp(parse_timestamp("2024-01-02T03:04:05.1Z")) == \
        "2024-01-02T03:04:05.1Z"  # Go's RFC3339Nano: trailing zeros dropped


def test_docker_schema2_to_oci_keeps_blobs_and_entries() -> None:
    foreign = Descriptor(DOCKER_FOREIGN_LAYER, h("f"), 30, urls=["https://example.com/f"])
    child = Manifest.build(Descriptor(DOCKER_CONFIG, h("c"), 10),
                           [Descriptor(DOCKER_LAYER, h("e"), 20), foreign], DOCKER_MANIFEST)
    oci_child = Manifest.build(Descriptor(OCI_CONFIG, h("d"), 10), [], OCI_MANIFEST)
    arm = Platform("linux", "arm64", "v8")
    index = Index.build([child.descriptor(platform=arm, annotations={"a": "b"}),
                         oci_child.descriptor(platform=Platform("linux", "amd64"))],
                        DOCKER_MANIFEST_LIST, {"top": "kept"})
    converted = to_oci(child)
    assert isinstance(converted, Manifest) and converted.media_type == OCI_MANIFEST
    assert converted.config == Descriptor(OCI_CONFIG, h("c"), 10)
    assert [(d.media_type, d.digest) for d in converted.layers] == [
        (OCI_LAYER_GZIP, h("e")), (OCI_LAYER_NONDISTRIBUTABLE_GZIP, h("f"))]
    assert converted.layers[1].urls == foreign.urls and converted.digest != child.digest
    assert to_oci(converted) is converted and to_oci(oci_child) is oci_child
    new_index = to_oci(index, {child.digest: converted})
    assert isinstance(new_index, Index) and new_index.media_type == OCI_INDEX
    first, second = new_index.manifests
    assert (first.media_type, first.digest, first.size) == (OCI_MANIFEST, converted.digest,
                                                            converted.size)
    assert (first.platform, first.annotations) == (arm, {"a": "b"})
    assert second == index.manifests[1] and new_index.annotations == {"top": "kept"}
    # an entry whose child was not converted keeps describing those bytes
    assert to_oci(index, {}).manifests == index.manifests


def test_descriptor_round_trip() -> None:
    d = Descriptor(OCI_MANIFEST, h("a"), 3, {"k": "v"}, Platform("linux", "arm", "v7"),
                   ["https://example.com/blob"], "application/x")
    assert Descriptor.from_dict(d.to_dict()) == d
    assert list(d.to_dict()) == ["mediaType", "digest", "size", "urls", "annotations",
                                 "platform", "artifactType"]
    content = Descriptor.for_content(OCI_CONFIG, b"{}")
    assert content.digest == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    assert content.size == 2


# ------------------------------------------------------------------ properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
_keys = st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "manifests",
                         "digest", "size", "platform", "annotations", "subject", "os",
                         "architecture", "urls", "artifactType"])
manifest_like = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(
        [2, 1, h("a"), "sha256:x", OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, OCI_CONFIG,
         "linux", "amd64", "", 2**70]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(_keys, children, max_size=6),
    max_leaves=40,
)
content_types = st.none() | st.sampled_from(
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, "application/json",
     manifest_mod.DOCKER_SCHEMA1_SIGNED_MANIFEST, "text/html; charset=utf-8", ""])


def _only_registry_errors(raw: bytes, content_type: str | None) -> None:
    try:
        result = parse_manifest(raw, content_type)
    except RegistryError:
        return
    assert isinstance(result, (Manifest, Index))
    assert result.raw == raw
    if isinstance(result, Index):
        try:
            result.select("linux/amd64")
        except ManifestNotFoundError:
            pass


@settings(max_examples=500)
@given(json_values, content_types)
def test_arbitrary_json_raises_only_registry_errors(value: Any, content_type: str | None) -> None:
    _only_registry_errors(json.dumps(value).encode(), content_type)


@settings(max_examples=500)
@given(manifest_like, content_types)
def test_manifest_like_json_raises_only_registry_errors(value: Any,
                                                        content_type: str | None) -> None:
    _only_registry_errors(json.dumps(value).encode(), content_type)
    try:
        ImageConfig.from_bytes(json.dumps(value).encode())
    except RegistryError:
        pass


@settings(max_examples=200)
@given(st.binary(max_size=200), content_types)
def test_arbitrary_bytes_raise_only_registry_errors(raw: bytes,
                                                    content_type: str | None) -> None:
    _only_registry_errors(raw, content_type)
    try:
        ImageConfig.from_bytes(raw)
    except RegistryError:
        pass


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, prefix + (index,))
    return out


@settings(max_examples=500)
@given(st.sampled_from([DOCKER_V2, OCI_IMAGE, INDEX_RAW, MANIFEST_LIST, DOCKER_CONFIG_RAW]),
       st.data(), json_values)
def test_mutated_documents_raise_only_registry_errors(raw: bytes, data: st.DataObject,
                                                      value: Any) -> None:
    doc = json.loads(raw)
    path = data.draw(st.sampled_from(_paths(doc)))
    mutated = _mutate(doc, list(path), value)
    _only_registry_errors(mutated, None)
    try:
        ImageConfig.from_bytes(mutated)
    except RegistryError:
        pass


_descriptors = st.builds(
    Descriptor,
    media_type=st.sampled_from([OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER]),
    digest=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(
        "sha256:".__add__),
    size=st.integers(0, 2**63 - 1),
    annotations=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
)


@settings(max_examples=200)
@given(_descriptors, st.lists(_descriptors, max_size=5),
       st.sampled_from(sorted(IMAGE_MANIFEST_MEDIA_TYPES)),
       st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_built_manifests_parse_back(config: Descriptor, layers: list[Descriptor],
                                    media_type: str, annotations: dict[str, str]) -> None:
    m = Manifest.build(config, layers, media_type, annotations)
    assert parse_manifest(m.raw) == m
    assert m.layers == layers and m.config == config and m.annotations == annotations
    assert m.compressed_size == sum(layer.size for layer in layers)
