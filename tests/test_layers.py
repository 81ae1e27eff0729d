"""registry_nb.layers: streamed tar reading, whiteouts, wasted space, packages, hostile input.

Layers are written here with Python's ``tarfile`` (and by hand for what tarfile
refuses to write), and read back both by registry_nb and by ``tarfile`` as the
oracle. The last tests read layers of skopeo-written OCI layouts.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest
from helpers import gzip_bytes, make_tar, seed_image, skopeo

from registry_nb.errors import DigestMismatchError, UnsupportedMediaTypeError
from registry_nb.images.layers import (
    MAX_META_BYTES,
    LayerReadError,
    TarEntry,
    package_database,
    parse_apk_installed,
    parse_dpkg_status,
    parse_python_metadata,
    read_layer,
)
from registry_nb.images.scan import ImageScan, scan_image
from registry_nb.oci import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, Descriptor

MTIME = 1_700_000_000


# -- building tars -------------------------------------------------------------


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT
           ) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, *, size: int = 0, mode: int = 0o644,
         link: str = "", uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    item = tarfile.TarInfo(name)
    item.type = kind
    item.size = size
    item.mode = mode
    item.linkname = link
    item.uid, item.gid = uid, gid
    item.mtime = MTIME
    return item


def file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return info(name, size=len(data), mode=mode), data


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def listing(entries: list[TarEntry]) -> dict[str, TarEntry]:
    return {e.raw_name: e for e in entries}


def scan_of(*layers: bytes) -> ImageScan:
    return ImageScan([read_layer([blob], index=i) for i, blob in enumerate(layers)])


# -- listing against tarfile ---------------------------------------------------


@pytest.mark.parametrize("compress", ["none", "gzip", "gzip-multimember"])
@pytest.mark.parametrize("chunk", [1, 7, 512, 1 << 20])
def test_listing_matches_tarfile(compress: str, chunk: int) -> None:
    raw = tar_of(
        (info("etc", tarfile.DIRTYPE, mode=0o755), None),
        file("etc/hostname", b"box\n"),
        file("usr/bin/tool", b"\x7fELF" + bytes(3000), 0o4755),
        (info("usr/bin/alias", tarfile.SYMTYPE, link="tool"), None),
        (info("usr/bin/hard", tarfile.LNKTYPE, link="usr/bin/tool"), None),
        (info("run/pipe", tarfile.FIFOTYPE), None),
        (info("dev/null", tarfile.CHRTYPE, mode=0o666), None),
        file("home/u/" + "n" * 150 + ".txt", b"long name", 0o600),  # PAX path
        file("data/\u00e9t\u00e9.txt", b"utf8", 0o644),
    )
    blob = {"none": raw, "gzip": gzip_bytes(raw),
            "gzip-multimember": gzip_bytes(raw[:5000]) + gzip_bytes(raw[5000:])}[compress]
    scan = read_layer(chunks(blob, chunk), media_type=OCI_LAYER_GZIP if compress != "none"
                      else OCI_LAYER)
    assert scan.compression == ("none" if compress == "none" else "gzip")
    assert scan.compressed_bytes == len(blob)
    assert scan.uncompressed_bytes == len(raw)
    assert scan.notes == []
    oracle = tarfile.open(fileobj=io.BytesIO(raw)).getmembers()
    got = listing(scan.entries)
    assert [e.raw_name.rstrip("/") for e in scan.entries] == [m.name for m in oracle]
    for member in oracle:
        entry = got.get(member.name) or got[member.name + "/"]
        assert entry.path == "/" + member.name
        assert entry.size == (member.size if member.isreg() else 0)
        assert entry.mode == member.mode
        assert (entry.uid, entry.gid) == (member.uid, member.gid)
        assert entry.mtime == member.mtime
        if member.issym() or member.islnk():
            assert entry.link_target == member.linkname
    assert got["usr/bin/alias"].type == "symlink"
    assert got["usr/bin/hard"].type == "hardlink"
    assert got["run/pipe"].type == "fifo"
    assert got["dev/null"].type == "char" and "device" in got["dev/null"].flags
    assert "setuid" in got["usr/bin/tool"].flags
    assert not any(e.unsafe for e in scan.entries)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_in_gnu_and_ustar(fmt: int) -> None:
    long_dir = "/".join(["d" * 60] * 3)  # 182 characters: ustar splits it into prefix/name
    raw = tar_of(file(f"{long_dir}/f.txt", b"x"),
                 (info("ln", tarfile.SYMTYPE, link="t" * 99), None), fmt=fmt)
    entries = read_layer([raw]).entries
    assert entries[0].path == f"/{long_dir}/f.txt"
    assert entries[1].link_target == "t" * 99


# -- compression ---------------------------------------------------------------


def test_zstd_needs_the_zstandard_module() -> None:
    try:
        import zstandard
    except ImportError:
        fake = b"\x28\xb5\x2f\xfd" + bytes(100)
        with pytest.raises(UnsupportedMediaTypeError, match="zstandard"):
            read_layer([fake], media_type=OCI_LAYER_ZSTD)
        return
    raw = make_tar({"z.txt": b"zstd"})
    scan = read_layer([zstandard.ZstdCompressor().compress(raw)], media_type=OCI_LAYER_ZSTD)
    assert scan.compression == "zstd" and scan.entries[0].path == "/z.txt"


def test_other_compressions_are_refused() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="bzip2"):
        read_layer([bz2.compress(make_tar({"a": b"a"}))])


def test_media_type_mismatch_is_noted() -> None:
    raw = make_tar({"a": b"a"})
    assert "uncompressed tar" in read_layer([raw], media_type=OCI_LAYER_GZIP).notes[0]
    assert "content is gzip" in read_layer([gzip_bytes(raw)], media_type=OCI_LAYER).notes[0]


def test_corrupt_streams_raise_typed_errors() -> None:
    raw = make_tar({"a.txt": b"a" * 5000, "b.txt": b"b"})
    packed = gzip_bytes(raw)
    with pytest.raises(LayerReadError, match="corrupt or cut short"):
        read_layer([packed[: len(packed) // 2]])
    flipped = bytearray(packed)
    flipped[-6] ^= 0xFF  # CRC
    with pytest.raises(LayerReadError):
        read_layer([bytes(flipped)])
    bad = bytearray(raw)
    bad[0] ^= 0x01  # the first header's checksum no longer matches
    with pytest.raises(LayerReadError, match="checksum"):
        read_layer([bytes(bad)])
    with pytest.raises(LayerReadError, match="inside a header"):
        read_layer([raw[:512 + 5120 + 100]])  # cut inside b.txt's header
    (cut,) = read_layer([raw[:700]]).entries  # cut inside a.txt's data
    assert "truncated" in cut.flags and cut.size == 700 - 512


def test_source_errors_pass_through_after_the_last_chunk() -> None:
    """A verifying source (iter_blob) raises at its end; the reader must drain it."""
    raw = make_tar({"a.txt": b"a"})

    def verifying():
        yield raw
        raise DigestMismatchError("bad blob", expected="sha256:aa", actual="sha256:bb")

    with pytest.raises(DigestMismatchError):
        read_layer(verifying())


# -- hostile input -------------------------------------------------------------


def test_escaping_and_absolute_paths_are_flagged_not_followed(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    passwd = Path("/etc/passwd").stat()
    raw = tar_of(
        file("../../etc/passwd", b"root::0:0::/:/bin/sh\n"),
        file("/etc/shadow", b"root:x\n"),
        file("a/../../escape.txt", b"e"),
        file("ok/../fine.txt", b"f"),
        (info("evil", tarfile.SYMTYPE, link="../../../../etc"), None),
        (info("usr/abs", tarfile.SYMTYPE, link="/etc/passwd"), None),
        (info("hard", tarfile.LNKTYPE, link="/etc/passwd"), None),
        (info("hard2", tarfile.LNKTYPE, link="../outside"), None),
        file("evil/cron", b"* * * * * boom"),
    )
    entries = listing(read_layer([gzip_bytes(raw)]).entries)
    up = entries["../../etc/passwd"]
    assert up.path == "../../etc/passwd" and up.unsafe and not up.in_root
    assert {"escapes-root", "parent-ref"} <= set(up.flags)
    shadow = entries["/etc/shadow"]
    assert shadow.path == "/etc/shadow" and "absolute-path" in shadow.flags and shadow.unsafe
    assert "escapes-root" in entries["a/../../escape.txt"].flags
    fine = entries["ok/../fine.txt"]
    assert fine.path == "/fine.txt" and fine.flags == ("parent-ref",) and not fine.unsafe
    assert "link-escapes-root" in entries["evil"].flags
    assert entries["usr/abs"].flags == ()  # absolute symlinks resolve inside the image
    assert "link-escapes-root" in entries["hard"].flags
    assert "link-escapes-root" in entries["hard2"].flags
    assert entries["evil/cron"].path == "/evil/cron"  # listed, never written through the link
    # nothing was written anywhere
    assert list(tmp_path.iterdir()) == []
    assert Path("/etc/passwd").stat().st_mtime == passwd.st_mtime
    # escaping entries stay out of the merged file system
    merged = scan_of(gzip_bytes(raw)).merge()
    assert "../../etc/passwd" not in merged.visible
    assert "/etc/shadow" in merged.visible and "/fine.txt" in merged.visible


def test_symlink_loops_are_flagged() -> None:
    raw = tar_of((info("a", tarfile.SYMTYPE, link="b"), None),
                 (info("b", tarfile.SYMTYPE, link="/a"), None),
                 (info("self", tarfile.SYMTYPE, link="./self"), None),
                 (info("c", tarfile.SYMTYPE, link="b/../x"), None),
                 (info("ok", tarfile.SYMTYPE, link="target"), None),
                 file("target", b"t"))
    scan = scan_of(raw)
    flagged = {e.path for e in scan.entries if "symlink-loop" in e.flags}
    assert flagged == {"/a", "/b", "/self", "/c"}  # c goes through b, as the kernel would
    assert scan.merge().loops == flagged


def _header(name: bytes, size_field: bytes, kind: bytes = b"0") -> bytes:
    head = bytearray(512)
    head[0:len(name)] = name
    head[100:108] = b"0000644\0"
    head[108:116] = b"0000000\0"
    head[116:124] = b"0000000\0"
    head[124:136] = size_field
    head[136:148] = b"%011o\0" % MTIME
    head[156:157] = kind
    head[257:263] = b"ustar\0"
    head[263:265] = b"00"
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


@pytest.mark.parametrize("size_field", [
    b"77777777777\0",                             # 8 GiB - 1, octal
    b"\x80" + (2**62).to_bytes(11, "big"),        # base-256, 4 EiB
])
def test_huge_declared_size_is_flagged_and_bounded(size_field: bytes) -> None:
    blob = gzip_bytes(_header(b"huge.bin", size_field) + b"x" * 3000)
    started = time.monotonic()
    scan = read_layer([blob])
    assert time.monotonic() - started < 5
    (entry,) = scan.entries
    assert "truncated" in entry.flags and entry.size == 3000
    assert "declares" in scan.notes[0]


def test_oversized_pax_header_is_refused() -> None:
    size = b"%011o\0" % (MAX_META_BYTES + 1)
    blob = _header(b"PaxHeader", size, b"x") + bytes(4096)
    with pytest.raises(LayerReadError, match="over the"):
        read_layer([blob])
    bad_pax = b"99 path=x\n"
    blob = _header(b"PaxHeader", b"%011o\0" % len(bad_pax), b"x") + bad_pax.ljust(512, b"\0")
    with pytest.raises(LayerReadError, match="PAX"):
        read_layer([blob])


def test_bad_numbers_and_names() -> None:
    with pytest.raises(LayerReadError, match="size"):
        read_layer([_header(b"x", b"12x45678901\0") + bytes(1024)])
    raw = _header(b"caf\xe9.txt", b"00000000001\0") + b"x".ljust(512, b"\0") + bytes(1024)
    (entry,) = read_layer([raw]).entries
    assert entry.raw_name == "caf\\xe9.txt" and "non-utf8-name" in entry.flags


def test_entry_cap() -> None:
    raw = make_tar({f"f{i}": b"" for i in range(20)})
    with pytest.raises(LayerReadError, match="more than 10 entries"):
        read_layer([raw], max_entries=10)


# -- whiteouts and wasted space ------------------------------------------------


def test_whiteouts_overwrites_and_efficiency() -> None:
    base = make_tar({"app/big.bin": b"B" * 1000, "app/keep.txt": b"keep",
                     "cache/a": b"A" * 100, "cache/sub/b": b"b" * 50, "conf": b"c" * 10,
                     "lib/x": b"x" * 20})
    upper = make_tar({"app/.wh.big.bin": b"", "cache/.wh..wh..opq": b"", "cache/new": b"n",
                      "app/keep.txt": b"keep2", "conf/now-a-dir": b"d", "lib": b"now a file"})
    scan = scan_of(gzip_bytes(base), upper)
    kinds = {e.path: e.type for e in scan.entries if e.layer == 1}
    assert kinds["/app/.wh.big.bin"] == "whiteout"
    assert kinds["/cache/.wh..wh..opq"] == "opaque"
    merged = scan.merge()
    wasted = {(w.path, w.how, w.layer, w.removed_in, w.size) for w in merged.wasted}
    assert wasted == {
        ("/app/big.bin", "deleted", 0, 1, 1000),
        ("/cache/a", "opaque", 0, 1, 100),
        ("/cache/sub/b", "opaque", 0, 1, 50),
        ("/app/keep.txt", "overwritten", 0, 1, 4),
        ("/conf", "replaced", 0, 1, 10),
        ("/lib/x", "replaced", 0, 1, 20),
    }
    total = 1000 + 4 + 100 + 50 + 10 + 20 + 1 + 5 + 1 + len(b"now a file")
    assert merged.total_bytes == total
    assert merged.wasted_bytes == 1184
    assert merged.efficiency == pytest.approx(1 - 1184 / total)
    assert set(merged.visible) >= {"/app/keep.txt", "/cache/new", "/conf/now-a-dir", "/lib"}
    assert "/cache/sub" not in merged.visible and "/app/big.bin" not in merged.visible
    assert merged.visible["/app/keep.txt"].layer == 1


def test_no_waste_means_full_efficiency() -> None:
    merged = scan_of(make_tar({"a": b"a"}), make_tar({"b": b"b"})).merge()
    assert merged.wasted == [] and merged.efficiency == 1.0
    assert scan_of(make_tar({})).merge().efficiency == 1.0


def test_whiteouts_in_the_same_layer_do_not_hide_its_own_files() -> None:
    lower = make_tar({"d/old": b"o"})
    upper = make_tar({"d/.wh..wh..opq": b"", "d/new": b"n"})
    merged = scan_of(lower, upper).merge()
    assert "/d/new" in merged.visible and "/d/old" not in merged.visible
    bogus = tar_of(file("d/.wh..", b""))
    (entry,) = [e for e in read_layer([bogus]).entries if e.raw_name == "d/.wh.."]
    assert "bad-whiteout" in entry.flags and entry.deletes is None


# -- packages ------------------------------------------------------------------

DPKG_V1 = b"""Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9
Description: GNU C Library
 multi-line description
 .
 more

Package: oldpkg
Status: deinstall ok config-files
Version: 0.1

Package: zlib1g
Status: install ok installed
Architecture: amd64
Version: 1:1.2.13
"""
DPKG_V2 = DPKG_V1.replace(b"1:1.2.13", b"1:1.3") + b"""
Package: curl
Status: install ok installed
Architecture: amd64
Version: 7.88.1-10
"""
APK = b"""C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
L:MIT

P:busybox
V:1.36.1-r5
A:x86_64
"""
METADATA = b"""Metadata-Version: 2.1
Name: requests
Version: 2.31.0
Summary: HTTP

Name: not-a-header
"""


def test_parsers() -> None:
    assert [(p["name"], p["version"], p["architecture"])
            for p in parse_dpkg_status(DPKG_V1.decode())] == [("libc6", "2.36-9", "amd64"),
                                                              ("zlib1g", "1:1.2.13", "amd64")]
    assert [(p["name"], p["version"]) for p in parse_apk_installed(APK.decode())] == \
        [("musl", "1.2.4-r2"), ("busybox", "1.36.1-r5")]
    assert parse_python_metadata(METADATA.decode()) == {"name": "requests",
                                                        "version": "2.31.0",
                                                        "architecture": None}
    assert parse_python_metadata("Summary: nothing\n") is None
    assert package_database("/var/lib/dpkg/status") == "deb"
    assert package_database("/var/lib/dpkg/status.d/base") == "deb"
    assert package_database("/var/lib/dpkg/status.d/base.md5sums") is None
    assert package_database("/lib/apk/db/installed") == "apk"
    assert package_database("/usr/lib/python3/site-packages/x-1.dist-info/METADATA") == \
        "python"
    assert package_database("/x/foo.egg-info/PKG-INFO") == "python"
    assert package_database("/etc/METADATA") is None


def test_packages_with_the_layer_they_came_from() -> None:
    site = "usr/lib/python3.11/site-packages"
    layer0 = gzip_bytes(make_tar({"var/lib/dpkg/status": DPKG_V1, "lib/apk/db/installed": APK}))
    layer1 = make_tar({
        "var/lib/dpkg/status": DPKG_V2,
        "var/lib/dpkg/status.d/tzdata": b"Package: tzdata\nVersion: 2024a\nArchitecture: all\n",
        "var/lib/dpkg/status.d/tzdata.md5sums": b"d41d8cd98f00b204e9800998ecf8427e  x\n",
        f"{site}/requests-2.31.0.dist-info/METADATA": METADATA,
        f"{site}/gone-1.0.dist-info/METADATA": b"Name: gone\nVersion: 1.0\n",
        f"{site}/legacy.egg-info/PKG-INFO": b"Name: legacy\nVersion: 0.9\n",
    })
    layer2 = make_tar({f"{site}/.wh.gone-1.0.dist-info": b""})
    packages = scan_of(layer0, layer1, layer2).packages()
    got = {(p.ecosystem, p.name, p.version, p.layer) for p in packages}
    assert got == {
        ("deb", "libc6", "2.36-9", 0),      # unchanged since layer 0
        ("deb", "zlib1g", "1:1.3", 1),      # upgraded in layer 1
        ("deb", "curl", "7.88.1-10", 1),
        ("deb", "tzdata", "2024a", 1),
        ("apk", "musl", "1.2.4-r2", 0),
        ("apk", "busybox", "1.36.1-r5", 0),
        ("python", "requests", "2.31.0", 1),
        ("python", "legacy", "0.9", 1),
    }
    curl = next(p for p in packages if p.name == "curl")
    assert curl.path == "/var/lib/dpkg/status" and curl.architecture == "amd64"


def test_oversized_database_is_flagged_not_read() -> None:
    raw = make_tar({"var/lib/dpkg/status": b"Package: a\nVersion: 1\n"})
    scan = read_layer([raw], max_keep_bytes=5)
    (entry,) = [e for e in scan.entries if e.type == "file"]
    assert "not-parsed" in entry.flags and scan.contents == {}


# -- skopeo-written layouts ----------------------------------------------------


def test_layers_of_a_skopeo_written_layout(open_registry, unique_repo: str,
                                           tmp_path: Path) -> None:
    files = {"etc/app.conf": b"x=1\n", "bin/run": (b"#!/bin/sh\n", 0o755),
             "var/lib/dpkg/status": b"Package: demo\nVersion: 1.0\n"
                                    b"Status: install ok installed\n"}
    seed_image(open_registry, unique_repo, "v1", files=files, layers=2)
    layout = tmp_path / "layout"
    skopeo("copy", "--quiet", "--src-tls-verify=false",
           f"docker://{open_registry.ref(unique_repo, 'v1')}", f"oci:{layout}:v1")
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.split(":", 1)[1]

    manifest = json.loads(blob(manifest_digest).read_bytes())
    layers = [Descriptor(d["mediaType"], d["digest"], d["size"]) for d in manifest["layers"]]

    def open_blob(descriptor: Descriptor):
        with blob(descriptor.digest).open("rb") as fh:
            while piece := fh.read(4096):
                yield piece

    scan = scan_image(layers, open_blob)
    for layer, scanned in zip(layers, scan.layers, strict=True):
        with gzip.open(blob(layer.digest)) as fh:
            oracle = [m.name for m in tarfile.open(fileobj=fh).getmembers()]
        assert [e.raw_name.rstrip("/") for e in scanned.entries] == oracle
    paths = {e.path: e for e in scan.entries}
    assert paths["/bin/run"].mode == 0o755 and paths["/etc/app.conf"].size == 4
    assert [(p.name, p.version) for p in scan.packages()] == [("demo", "1.0")]
    assert os.listdir(tmp_path) == ["layout"]  # reading wrote nothing


@pytest.mark.parametrize("decoder", ["isal", "stdlib"])
def test_gzip_layers_read_the_same_with_either_decoder(decoder, monkeypatch):
    """ISA-L (when installed) and the standard library give the same entries and errors."""
    import builtins
    import gzip as std_gzip

    if decoder == "stdlib":
        real_import = builtins.__import__

        def no_isal(name, *args, **kwargs):
            if name.startswith("isal"):
                raise ImportError("isal hidden by the test")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_isal)
    else:
        pytest.importorskip("isal")
    payload = bytes(range(256)) * 4096
    blob = std_gzip.compress(tar_of(file("etc/data.bin", payload), file("etc/x", b"x")))
    scan = read_layer([blob], media_type=OCI_LAYER_GZIP)
    assert {e.raw_name: e.size for e in scan.entries} == {"etc/data.bin": len(payload),
                                                         "etc/x": 1}
    assert scan.compression == "gzip"
    with pytest.raises(LayerReadError):
        read_layer([blob[: len(blob) // 2]], media_type=OCI_LAYER_GZIP)
