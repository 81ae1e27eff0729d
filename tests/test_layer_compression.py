"""Writing layer gzip (registry_nb.images.compression): ISA-L in fixed blocks on threads,
the standard library's single stream, and the choice between them.

Every output is inflated by the standard library (``gzip``/``zlib``), not only by ISA-L,
and the fallback without isal runs in a child process that cannot import it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zlib
from pathlib import Path

import pytest

from registry_nb.errors import CompressionSettingError
from registry_nb.images.assemble import append_layers, write_layer
from registry_nb.images.compression import (
    GZIP_BLOCK_SIZE,
    BlockGzipWriter,
    ChunkStream,
    LayerCompression,
    open_layer_stream,
)

pytest.importorskip("isal")

KIB = 1024
SMALL_BLOCK = 32 * KIB


def mixed(size: int, seed: int = 1) -> bytes:
    """Compressible text and random bytes in turn, ``size`` bytes."""
    parts, total, i = [], 0, 0
    while total < size:
        part = os.urandom(5000) if i % 2 else b"line %d of a compressible text\n" % i * 200
        parts.append(part)
        total += len(part)
        i += 1
    return b"".join(parts)[:size]


def block_gzip(data: bytes, threads: int, block_size: int = SMALL_BLOCK,
               level: int = 1, pieces: int = 7000) -> bytes:
    out = io.BytesIO()
    with BlockGzipWriter(out, level=level, block_size=block_size, threads=threads) as gz:
        for start in range(0, len(data), pieces):  # writes that straddle block edges
            gz.write(data[start:start + pieces])
    return out.getvalue()


def make_folder(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "a" / "mixed.bin").write_bytes(mixed(int(2.5 * GZIP_BLOCK_SIZE)))
    (root / "a" / "random.bin").write_bytes(os.urandom(GZIP_BLOCK_SIZE + 17))
    (root / "empty").write_bytes(b"")
    (root / "text.txt").write_text("hello\n" * 1000)
    return root


# ------------------------------------------------------------ the block writer


@pytest.mark.parametrize("size", [0, 1, SMALL_BLOCK - 1, SMALL_BLOCK, SMALL_BLOCK + 1,
                                  2 * SMALL_BLOCK, 40 * SMALL_BLOCK + 123])
def test_blocks_inflate_with_the_standard_library_whatever_the_threads(size: int) -> None:
    data = mixed(size)
    outputs = {threads: block_gzip(data, threads) for threads in (1, 2, 5)}
    assert len(set(outputs.values())) == 1, "the thread count changed the bytes"
    blob = outputs[1]
    assert gzip.decompress(blob) == data
    assert zlib.decompress(blob, 31) == data  # one member: zlib's single-member reader
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0
    assert int.from_bytes(blob[-8:-4], "little") == zlib.crc32(data)
    assert int.from_bytes(blob[-4:], "little") == size


def test_block_size_and_level_change_the_bytes_but_not_the_content() -> None:
    data = mixed(10 * SMALL_BLOCK)
    variants = {block_gzip(data, 2), block_gzip(data, 2, block_size=2 * SMALL_BLOCK),
                block_gzip(data, 2, level=2)}
    assert len(variants) == 3
    assert {gzip.decompress(blob) for blob in variants} == {data}


def test_each_block_uses_the_previous_window_as_its_dictionary() -> None:
    # a random block repeated: with the 32 KiB dictionary the repeats cost almost nothing
    chunk = os.urandom(SMALL_BLOCK)
    blob = block_gzip(chunk * 8, 2)
    assert len(blob) < 2 * SMALL_BLOCK


def test_an_error_inside_the_writer_leaves_no_threads_and_no_trailer() -> None:
    before = threading.active_count()
    out = io.BytesIO()
    with pytest.raises(RuntimeError), \
            BlockGzipWriter(out, block_size=SMALL_BLOCK, threads=3) as gz:
        gz.write(mixed(5 * SMALL_BLOCK))
        raise RuntimeError("stop")
    assert gz.closed and threading.active_count() == before
    with pytest.raises(EOFError):
        gzip.decompress(out.getvalue())


def test_small_blocks_are_refused() -> None:
    with pytest.raises(CompressionSettingError, match="32 KiB window"):
        BlockGzipWriter(io.BytesIO(), block_size=1000)


# ------------------------------------------------------------ choosing


def test_default_is_isal_level_1_and_bad_settings_are_typed() -> None:
    chosen = LayerCompression.choose()
    assert (chosen.compressor, chosen.level, chosen.block_size) == ("isal", 1, GZIP_BLOCK_SIZE)
    assert chosen.describe() == "gzip by isal level 1, 1 MiB blocks"
    assert LayerCompression.choose("zlib").describe() == "gzip by zlib level 6"
    with pytest.raises(CompressionSettingError, match="not a layer compressor") as bad:
        LayerCompression.choose("lz4")
    assert isinstance(bad.value, ValueError) and "compressor='zlib'" in str(bad.value)
    with pytest.raises(CompressionSettingError, match="levels 0 to 3, not 6"):
        LayerCompression.choose("isal", 6)
    with pytest.raises(CompressionSettingError, match="levels 0 to 9, not 10"):
        LayerCompression.choose("zlib", 10)


# ------------------------------------------------------------ layers


def test_a_folder_gives_one_digest_per_compression_and_one_tar(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "folder")
    layers = {}
    for name, compressor, level, threads in [("isal-1", "isal", 1, 1), ("isal-3t", "isal", 1, 3),
                                             ("isal-again", None, None, None),
                                             ("isal-l2", "isal", 2, 2), ("zlib", "zlib", None, 2),
                                             ("zlib-1", "zlib", 1, None)]:
        layers[name] = write_layer(folder, tmp_path / f"{name}.tar.gz", compressor=compressor,
                                   compresslevel=level, threads=threads)
    isal = layers["isal-1"]
    assert layers["isal-3t"].digest == layers["isal-again"].digest == isal.digest
    digests = {layer.digest for layer in layers.values()}
    assert len(digests) == 4  # isal 1, isal 2, zlib 6, zlib 1
    assert {layer.diff_id for layer in layers.values()} == {isal.diff_id}
    tars = {name: gzip.decompress((tmp_path / f"{name}.tar.gz").read_bytes()) for name in layers}
    assert len(set(tars.values())) == 1
    assert isal.diff_id == "sha256:" + hashlib.sha256(tars["zlib"]).hexdigest()
    assert isal.compression == "gzip by isal level 1, 1 MiB blocks"
    assert layers["zlib"].compression == "gzip by zlib level 6"
    # zlib is exactly the standard library's stream: the digests registry_nb made before isal
    legacy = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=legacy, compresslevel=6, mtime=0) as gz:
        gz.write(tars["zlib"])
    assert legacy.getvalue() == (tmp_path / "zlib.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "isal-1.tar.gz") as tar:
        assert tar.getnames() == ["a", "a/mixed.bin", "a/random.bin", "empty", "text.txt"]
        data = tar.extractfile("a/random.bin")
        assert data is not None and data.read() == (folder / "a" / "random.bin").read_bytes()
    # the layer reader sees the same tar in both
    for name in ("isal-1", "zlib"):
        blob = (tmp_path / f"{name}.tar.gz").read_bytes()
        stream, kind, notes = open_layer_stream(ChunkStream([blob]), "application/vnd.oci."
                                                "image.layer.v1.tar+gzip")
        assert (kind, notes, stream.read()) == ("gzip", [], tars[name])


def test_the_history_names_the_compression(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x").write_text("x")
    layer = write_layer(folder, tmp_path / "x.tar.gz", compressor="zlib", compresslevel=9)
    doc = json.loads(append_layers(None, [layer]).config_raw)
    assert doc["history"][-1]["comment"] == "gzip by zlib level 9"


FALLBACK = r"""
import sys
sys.modules["isal"] = None  # as if the fast extra were not installed
from pathlib import Path
from registry_nb.errors import CompressionSettingError
from registry_nb.images.assemble import write_layer
from registry_nb.images.compression import ChunkStream, gzip_reader, isal_installed
folder, out = Path(sys.argv[1]), Path(sys.argv[2])
assert not isal_installed()
layer = write_layer(folder, out)
print(layer.digest, layer.compression, sep="|")
print(len(gzip_reader(ChunkStream([out.read_bytes()])).read()))
try:
    write_layer(folder, out, compressor="isal")
except CompressionSettingError as error:
    print("refused:", error)
"""


def test_without_isal_the_standard_library_writes_and_reads(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "folder")
    child = subprocess.run([sys.executable, "-c", FALLBACK, str(folder), str(tmp_path / "f.gz")],
                           capture_output=True, text=True, timeout=120, check=True)
    first, size, refused = child.stdout.splitlines()
    zlib_layer = write_layer(folder, tmp_path / "zlib.tar.gz", compressor="zlib")
    assert first == f"{zlib_layer.digest}|gzip by zlib level 6"
    assert int(size) == zlib_layer.uncompressed_size
    assert refused.startswith("refused: compressor='isal' needs the isal module")
    assert "pip install 'registry-nb[fast]'" in refused
