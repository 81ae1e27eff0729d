"""Layer gzip benchmarks (issue 17): reading a 1 GiB layer's entries against the standard
library's ``gzip`` + ``tarfile``, the peak memory of reading it from a registry,
``image_from_directory`` of a 1 GiB folder pushed against ``docker build`` + ``docker
push``, and deflate / inflate speeds and ratios of the standard library and ISA-L.

The folder is generated, never downloaded: files of compressible text (lines drawn
from a vocabulary, like logs and sources) and of random bytes (like compressed
assets), small and large, from a fixed seed, kept in the run's data folder with the
layer the standard library makes of it (gzip level 6, what most tools write).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stats import Figure, Ratio, fmt
from .transfer import delete_blob_links, docker_cli, timed

__all__ = ["LayerSizes", "FULL_LAYERS", "SMOKE_LAYERS", "make_folder", "measure_layers"]

MIB = 1024 * 1024
_READ = MIB


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class LayerSizes:
    """How much work the section does."""

    folder_bytes: int
    read_rounds: int
    build_rounds: int
    rss_rounds: int
    codec_bytes: int
    codec_rounds: int


FULL_LAYERS = LayerSizes(folder_bytes=1024 * MIB, read_rounds=3, build_rounds=3, rss_rounds=1,
                         codec_bytes=128 * MIB, codec_rounds=3)
SMOKE_LAYERS = LayerSizes(folder_bytes=3 * MIB, read_rounds=1, build_rounds=1, rss_rounds=1,
                          codec_bytes=MIB, codec_rounds=1)


# ------------------------------------------------------------------ data


def _text(rng: random.Random, size: int, vocabulary: list[bytes]) -> bytes:
    parts: list[bytes] = []
    total = 0
    while total < size:
        lines = rng.choices(vocabulary, k=4096)
        parts.extend(lines)
        total += sum(map(len, lines))
    return b"".join(parts)[:size]


def make_folder(folder: Path, *, total: int, seed: int = 17) -> Path:
    """``total`` bytes of files under ``folder``: 60% compressible text, 40% random; many
    small files and a few large ones (reused when a previous run made the same)."""
    marker = {"total": total, "seed": seed, "version": 1}
    marker_file = folder.parent / f"{folder.name}.json"
    with contextlib.suppress(OSError, ValueError):
        if json.loads(marker_file.read_text()) == marker and folder.is_dir():
            return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = random.Random(seed)
    words = [bytes(rng.choices(range(97, 123), k=rng.randint(2, 9))) for _ in range(2000)]
    vocabulary = [b" ".join(rng.choices(words, k=rng.randint(4, 14))) + b"\n"
                  for _ in range(3000)]
    small_share, written, index = total // 10, 0, 0
    while written < total:
        left = total - written
        size = min(left, rng.randint(2_000, 60_000) if written < small_share
                   else rng.randint(4 * MIB, 48 * MIB))
        kind = "random" if rng.random() < 0.4 else "text"
        path = folder / f"dir{index % 23:02d}" / f"{kind}-{index:05d}.{kind[:3]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            left_here = size
            while left_here:
                step = min(8 * MIB, left_here)
                out.write(rng.randbytes(step) if kind == "random"
                          else _text(rng, step, vocabulary))
                left_here -= step
        written += size
        index += 1
    marker_file.write_text(json.dumps(marker))
    return folder


def _std_layer(folder: Path, target: Path) -> Any:
    """The folder as the standard library's gzip level 6 layer (reused when present)."""
    from registry_nb.images.assemble import LayerBlob, write_layer

    marker_file = target.with_suffix(".json")
    with contextlib.suppress(OSError, ValueError, TypeError):
        known = json.loads(marker_file.read_text())
        if target.stat().st_size == known["size"] and known["folder"] == folder.name:
            return LayerBlob(path=target, digest=known["digest"], diff_id=known["diff_id"],
                             size=known["size"], uncompressed_size=known["uncompressed_size"],
                             compression=known["compression"])
    layer = write_layer(folder, target, compressor="zlib", compresslevel=6)
    marker_file.write_text(json.dumps({
        "folder": folder.name, "digest": layer.digest, "diff_id": layer.diff_id,
        "size": layer.size, "uncompressed_size": layer.uncompressed_size,
        "compression": layer.compression}))
    return layer


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ):
            yield chunk


# ------------------------------------------------------------------ readers


def read_with_registry_nb(path: Path) -> int:
    """Entries of a gzip layer file as the audits read them (registry_nb.images.layers)."""
    from registry_nb.images.layers import read_layer
    from registry_nb.oci import OCI_LAYER_GZIP

    return len(read_layer(_chunks(path), media_type=OCI_LAYER_GZIP).entries)


def read_with_stdlib(path: Path, mode: str = "r|gz") -> int:
    """Entries of a gzip layer file by the standard library: streaming (``r|gz``, as
    registry_nb reads) or ``tarfile.open``'s seeking ``r:gz``."""
    with tarfile.open(path, mode=mode) as tar:
        return sum(1 for _ in tar)


def inflate_alone(path: Path) -> int:
    """Bytes of tar in a gzip file, by ISA-L with nothing else done: the readers' ceiling."""
    from isal import igzip

    total = 0
    with igzip.open(path, "rb") as stream:
        while piece := stream.read(_READ):
            total += len(piece)
    return total


def _kib(key: str) -> int:
    """A ``/proc/self/status`` figure in KiB (VmRSS, VmHWM)."""
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in lines if line.startswith(key + ":")).split()[1])


def read_rss_child(registry: str, repository: str) -> None:
    """In a fresh interpreter: ``layer_contents`` of ``repository:1``; print its peak RSS
    increase (KiB), seconds and entries as JSON."""
    import pandas  # noqa: F401 (the frame's library is loaded before the baseline)

    from registry_nb import ContainerRegistry

    reg = ContainerRegistry(registry)
    reg.client.ping()
    before = _kib("VmRSS")
    seconds, frame = timed(reg.layer_contents, repository, "1")
    print(json.dumps({"increase_kib": _kib("VmHWM") - before, "seconds": seconds,
                      "entries": len(frame)}))


def measure_read_rss(registry: str, repository: str) -> dict[str, float]:
    """:func:`read_rss_child` in a fresh interpreter; what it printed."""
    code = "import sys; from benchmarks.layers import read_rss_child; read_rss_child(*sys.argv[1:])"
    out = subprocess.run([sys.executable, "-c", code, registry, repository],
                         capture_output=True, text=True, check=False, timeout=1800,
                         cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement (layer read) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ codecs


def _sample(folder: Path, size: int) -> bytes:
    """The first ``size`` bytes of the folder's files in their sorted order (mixed)."""
    parts, total = [], 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts.append(path.read_bytes()[:size - total])
        total += len(parts[-1])
        if total >= size:
            break
    return b"".join(parts)


def _deflate_zlib(data: bytes, level: int) -> bytes:
    out = bytearray()
    squeeze = zlib.compressobj(level, zlib.DEFLATED, 31)
    for start in range(0, len(data), _READ):
        out += squeeze.compress(data[start:start + _READ])
    return bytes(out + squeeze.flush())


def _deflate_isal(data: bytes, level: int, threads: int) -> bytes:
    import io

    from registry_nb.images.compression import BlockGzipWriter

    out = io.BytesIO()
    with BlockGzipWriter(out, level=level, threads=threads) as gz:
        for start in range(0, len(data), _READ):
            gz.write(data[start:start + _READ])
    return out.getvalue()


def _inflate(blob: bytes, decoder: str) -> int:
    import io

    if decoder == "isal":
        from isal import igzip

        stream: Any = igzip.GzipFile(fileobj=io.BytesIO(blob), mode="rb")
    else:
        stream = gzip.GzipFile(fileobj=io.BytesIO(blob), mode="rb")
    total = 0
    while piece := stream.read(_READ):
        total += len(piece)
    return total


# ------------------------------------------------------------------ the section


def measure_layers(run: Any) -> None:
    """The layers section of a benchmark run (``run``: benchmarks.run.Run)."""
    from registry_nb import ContainerRegistry
    from registry_nb.images.compression import default_threads, isal_installed

    sizes = SMOKE_LAYERS if run.smoke else FULL_LAYERS
    table = run.table
    if not isal_installed():
        table.note("layers", "isal not installed (the fast extra): skipped")
        return
    base = run.services.data_dir / ("layers" if not run.smoke else f"layers-{run.tag}")
    base.mkdir(parents=True, exist_ok=True)
    size_mib = sizes.folder_bytes // MIB
    _say(f"layers: a {size_mib} MiB folder and its gzip level 6 layer (kept between runs)")
    folder = make_folder(base / f"folder-{size_mib}mib", total=sizes.folder_bytes)
    layer = _std_layer(folder, base / f"folder-{size_mib}mib.zlib6.tar.gz")
    host = run.services.transfer
    admin = ContainerRegistry(host)
    what = (f"{size_mib} MiB of files ({fmt(layer.uncompressed_size / 1e6)} MB of tar, "
            f"{fmt(layer.size / 1e6)} MB of gzip level 6 by the standard library)")
    table.note("layer", what)
    try:
        _reading(run, sizes, layer)
        _memory(run, sizes, admin, layer, size_mib)
        _building(run, sizes, admin, folder, size_mib)
        _codecs(run, sizes, folder, default_threads())
    finally:
        admin.close()
        if run.smoke:
            shutil.rmtree(base, ignore_errors=True)


def _reading(run: Any, sizes: LayerSizes, layer: Any) -> None:
    mb = layer.uncompressed_size / 1e6
    figs = {
        "std": Figure("layer entries: standard library gzip + tarfile, streaming (r|gz)",
                      "MB/s"),
        "seek": Figure("layer entries: standard library tarfile.open(path) (r:gz)", "MB/s"),
        "nb": Figure("layer entries: registry_nb read_layer (ISA-L)", "MB/s"),
        "alone": Figure("limit: ISA-L inflate alone of that layer, no tar parsing", "MB/s"),
    }
    work: dict[str, Callable[[], int]] = {
        "std": lambda: read_with_stdlib(layer.path),
        "seek": lambda: read_with_stdlib(layer.path, "r:gz"),
        "nb": lambda: read_with_registry_nb(layer.path),
        "alone": lambda: inflate_alone(layer.path),
    }
    counts: dict[str, int] = {}
    keys = list(work)
    for round_ in range(sizes.read_rounds):
        _say(f"layers: read round {round_ + 1}/{sizes.read_rounds}")
        for key in keys[round_ % len(keys):] + keys[:round_ % len(keys)]:
            seconds, counts[key] = timed(work[key])
            figs[key].add(mb / seconds)
    if not counts["nb"] == counts["std"] == counts["seek"]:
        raise RuntimeError(f"entries found: {counts}")
    if counts["alone"] != layer.uncompressed_size:
        raise RuntimeError(f"inflated {counts['alone']} bytes, not {layer.uncompressed_size}")
    for key in ("std", "seek", "nb"):
        figs[key].note = f"{counts['nb']} entries; MB of tar per second, from the page cache"
    for figure in figs.values():
        run.table.figure(figure)
    ratio = Ratio("ratio: registry_nb / standard library r|gz, a layer's entries", figs["nb"],
                  figs["std"])
    run.table.ratio(ratio)
    run.table.ratio(Ratio("ratio: registry_nb / standard library r:gz", figs["nb"],
                          figs["seek"]))
    run.table.ratio(Ratio("ceiling: ISA-L inflate alone / standard library r|gz",
                          figs["alone"], figs["std"]))
    run.target("reading a 1 GiB layer's entries vs gzip + tarfile", lambda: ratio.median,
               lambda v: v >= 3, ">= 3x", ratio.shown())


def _memory(run: Any, sizes: LayerSizes, admin: Any, layer: Any, size_mib: int) -> None:
    from registry_nb.images.assemble import append_layers
    from registry_nb.images.copy import copy_image

    repository = f"{run.prefix}/layer-{size_mib}mib"  # kept: later runs only HEAD its blobs
    copy_image(append_layers(None, [layer], created=0), admin.images.repository(repository),
               tag="1")
    rss = Figure(f"peak RSS increase, layer_contents of the {size_mib} MiB layer", "MiB")
    speed = Figure("speed", "MB/s")
    for round_ in range(sizes.rss_rounds):
        _say(f"layers: memory round {round_ + 1}/{sizes.rss_rounds}")
        out = measure_read_rss(run.services.transfer, repository)
        rss.add(out["increase_kib"] / 1024)
        speed.add(layer.size / 1e6 / out["seconds"])
    rss.note = (f"from the registry, digest verified, in a fresh interpreter; at "
                f"{speed.shown()} of gzip")
    run.table.figure(rss)
    worst = max(rss.samples)
    run.target(f"peak RSS reading a {size_mib} MiB layer", lambda: worst, lambda v: v < 64,
               "< 64 MiB", f"{fmt(worst)} MiB")


def _building(run: Any, sizes: LayerSizes, admin: Any, folder: Path, size_mib: int) -> None:
    from registry_nb import ContainerRegistry

    host = run.services.transfer
    docker_host = run.services.docker_host
    ours = Figure(f"image_from_directory of the {size_mib} MiB folder, pushed", "s")
    build = Figure("docker build (FROM scratch, COPY of the folder)", "s")
    push = Figure("docker push of that image", "s")
    docker = Figure("docker build + docker push", "s")
    have_docker = bool(docker_host) and shutil.which("docker") is not None
    counter = iter(range(10**6))
    notes: dict[str, str] = {}
    context = Path(tempfile.mkdtemp(prefix="bench-dockerfile-", dir=run.services.data_dir))
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")

    def fresh(kind: str) -> str:
        return f"{run.prefix}/build-{kind}-{run.tag}-{next(counter)}"

    def unlink(repository: str) -> None:
        manifest = admin.client.get_manifest(repository, "1")
        delete_blob_links(admin.client, repository, [d.digest for d in manifest.layers])

    def nb() -> None:
        repository = fresh("nb")
        with ContainerRegistry(host) as reg:
            seconds, result = timed(reg.image_from_directory, folder, repository, "1")
        ours.add(seconds)
        notes["nb"] = f"{result['compression']}; {fmt(result['size_bytes'] / 1e6)} MB pushed"
        unlink(repository)

    def cli() -> None:
        repository = fresh("docker")
        ref = f"{host}/{repository}:1"
        built, _ = timed(docker_cli, docker_host, "build", "--no-cache", "--quiet", "-t", ref,
                         "-f", str(context / "Dockerfile"), str(folder))
        pushed, _ = timed(docker_cli, docker_host, "push", ref)
        build.add(built)
        push.add(pushed)
        docker.add(built + pushed)
        size = admin.client.get_manifest(repository, "1").layers[0].size
        notes["docker"] = f"{fmt(size / 1e6)} MB pushed"
        unlink(repository)
        docker_cli(docker_host, "rmi", "-f", ref)  # the next build makes the layer again

    runs: list[Callable[[], None]] = [nb] + ([cli] if have_docker else [])
    try:
        for round_ in range(sizes.build_rounds):
            _say(f"layers: build round {round_ + 1}/{sizes.build_rounds}")
            for step in runs[round_ % len(runs):] + runs[:round_ % len(runs)]:
                step()
    finally:
        shutil.rmtree(context, ignore_errors=True)
    ours.note = notes.get("nb", "")
    run.table.figure(ours)
    if not have_docker:
        run.table.note("docker build", "no engine or docker CLI: skipped")
        return
    docker.note = notes.get("docker", "")
    for figure in (build, push, docker):
        run.table.figure(figure)
    ratio = Ratio("ratio: docker build + push time / image_from_directory time", ours, docker,
                  invert=True)
    run.table.ratio(ratio)
    run.target("image_from_directory of a 1 GiB folder vs docker build + push",
               lambda: ratio.median, lambda v: v >= 5, ">= 5x", ratio.shown())


def _codecs(run: Any, sizes: LayerSizes, folder: Path, threads: int) -> None:
    data = _sample(folder, sizes.codec_bytes)
    mb = len(data) / 1e6
    kinds: dict[str, Callable[[], bytes]] = {
        "zlib-6": lambda: _deflate_zlib(data, 6),
        "zlib-1": lambda: _deflate_zlib(data, 1),
        "isal-1": lambda: _deflate_isal(data, 1, 1),
        f"isal-1x{threads}": lambda: _deflate_isal(data, 1, threads),
    }
    names = {"zlib-6": "deflate: standard library zlib level 6 (compressor='zlib')",
             "zlib-1": "deflate: standard library zlib level 1",
             "isal-1": "deflate: isal level 1, 1 MiB blocks, 1 thread",
             f"isal-1x{threads}": f"deflate: isal level 1, 1 MiB blocks, {threads} threads "
                                  "(the default)"}
    deflate = {k: Figure(names[k], "MB/s") for k in kinds}
    sizes_out: dict[str, int] = {}
    inflate = {k: Figure(f"inflate: {n}", "MB/s")
               for k, n in (("std", "standard library gzip"), ("isal", "isal igzip"))}
    blobs: dict[str, bytes] = {}
    for round_ in range(sizes.codec_rounds):
        _say(f"layers: codec round {round_ + 1}/{sizes.codec_rounds}")
        for key, work in kinds.items():
            seconds, blob = timed(work)
            deflate[key].add(mb / seconds)
            sizes_out[key] = len(blob)
            blobs[key] = blob
        for key in ("std", "isal"):
            seconds, total = timed(_inflate, blobs["zlib-6"], key)
            if total != len(data):
                raise RuntimeError(f"inflating gave {total} bytes, not {len(data)}")
            inflate[key].add(mb / seconds)
    if len({_inflate(blob, "std") for blob in blobs.values()}) != 1:
        raise RuntimeError("the codecs did not inflate to the same bytes")
    for key, figure in deflate.items():
        figure.note = f"ratio {sizes_out[key] / len(data):.3f} (gzip / input)"
        run.table.figure(figure)
    for figure in inflate.values():
        figure.note = "of the zlib level 6 stream, MB of output per second"
        run.table.figure(figure)
    run.table.note("codec sample", f"{fmt(mb)} MB of the folder's files (mixed), in memory")
    run.table.ratio(Ratio("ratio: isal level 1 (default threads) / zlib level 6, deflate",
                          deflate[f"isal-1x{threads}"], deflate["zlib-6"]))
    run.table.ratio(Ratio("ratio: isal / standard library, inflate", inflate["isal"],
                          inflate["std"]))
