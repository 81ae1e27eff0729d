"""Run every benchmark and print the table (``python -m benchmarks [--smoke]``).

A full run starts its own registries and engine (scripts/services.py with the
state folders in :mod:`benchmarks.env`), seeds 200 repositories x 10 tags and a
4 x 100 MiB image (both kept for the next run), measures, prints the table and
stops the services (``--keep-services`` leaves them up). ``--smoke`` uses the
running test services and tiny sizes; it only proves the script still works.

Every comparison runs its contenders in the same round, one after the other, in
an order that rotates between rounds; figures are medians with their range.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import env
from .fleet import measure_fleet, seed_fleet
from .latency import measure_latency
from .layers import measure_layers
from .listing import (
    ListingData,
    list_concurrent_raw,
    list_sequential,
    list_with_dxf,
    list_with_registry_nb,
    seed_listing,
    urllib3_cpu_per_get,
)
from .operations import measure_operations
from .shape import ShapeSaves
from .stats import Figure, Ratio, Table, Target, fmt
from .transfer import (
    FormProgress,
    delete_blob_links,
    docker_cli,
    make_blob_layout,
    make_image_layout,
    measure_rss,
    skopeo_load,
    skopeo_save,
    timed,
)

MIB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    """How much work a run does."""

    rounds: int
    repos: int
    tags: int
    layers: int
    layer_bytes: int
    blob_bytes: int
    hash_bytes: int
    import_rounds: int
    rss_rounds: int
    raw_threads: int = 32


FULL = Sizes(rounds=5, repos=200, tags=10, layers=4, layer_bytes=100 * MIB,
             blob_bytes=1024 * MIB, hash_bytes=512 * MIB, import_rounds=7, rss_rounds=3)
SMOKE = Sizes(rounds=2, repos=3, tags=3, layers=2, layer_bytes=MIB // 2, blob_bytes=4 * MIB,
              hash_bytes=8 * MIB, import_rounds=2, rss_rounds=1, raw_threads=4)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _rotated(items: list[Any], shift: int) -> list[Any]:
    shift %= len(items)
    return items[shift:] + items[:shift]


def _mb(nbytes: float) -> float:
    return nbytes / 1e6


class Run:
    """One benchmark run: its services, sizes, names and the table it fills."""

    def __init__(self, services: env.Services, sizes: Sizes, smoke: bool) -> None:
        self.services = services
        self.sizes = sizes
        self.smoke = smoke
        self.tag = secrets.token_hex(3)
        # Smoke runs share registries with the tests: every name is fresh.
        self.prefix = f"nbbench{self.tag}" if smoke else "bench"
        if smoke:
            _say(f"smoke run: repositories under {self.prefix}/ (removed at the end)")
        self.table = Table(self._title())
        self.targets: list[tuple[Target, str]] = []
        self.misses: list[str] = []
        services.data_dir.mkdir(parents=True, exist_ok=True)

    def _title(self) -> str:
        mode = "smoke run (tiny sizes; figures mean nothing)" if self.smoke else "full run"
        cpu = "unknown CPU"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        return (f"registry_nb benchmarks, {mode}: {dt.date.today().isoformat()}, "
                f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
                f"{self.sizes.rounds} interleaved rounds")

    def target(self, name: str, value: Callable[[], float | None],
               check: Callable[[float], bool], goal: str, shown: str) -> None:
        """Record a target row (and its verdict for the summary)."""
        target = Target(name, value, check, goal)
        self.table.target(target, shown)
        if target.verdict() == "MISS":
            self.misses.append(name)

    # ------------------------------------------------------------ listing

    def listing(self) -> None:
        from registry_nb import ContainerRegistry
        from registry_nb.remote.cache import ContentCache

        sizes = self.sizes
        data = ListingData(self.services.listing, self.prefix, sizes.repos, sizes.tags,
                           explicit=self.smoke)
        seed_listing(data, log=_say)
        _say("listing: warm-up pass")
        urls = list_sequential(data).urls  # also warms the registry's page cache
        disk_dir = Path(tempfile.mkdtemp(prefix="bench-cache-", dir=self.services.data_dir))
        list_with_registry_nb(ContainerRegistry(data.registry,
                                                cache=ContentCache(directory=disk_dir)), data)
        n = sizes.repos * sizes.tags
        figs = {
            "dxf": Figure("listing: python-dxf, one shared session", "s"),
            "seq": Figure("listing: plain requests loop, sequential", "s"),
            "cold": Figure("listing: registry_images_frame, cold", "s"),
            "warm": Figure("listing: registry_images_frame, warm (same facade)", "s"),
            "disk": Figure("listing: registry_images_frame, new facade + disk cache", "s"),
            "raw": Figure(f"limit: raw concurrent GETs ({sizes.raw_threads} requests threads, "
                          "one session)", "req/s"),
        }
        cpu = {k: Figure(f"registry CPU: {k}", "s") for k in ("dxf", "cold", "warm")}
        client = {k: Figure(f"client CPU: {k}", "s") for k in ("dxf", "cold", "warm")}
        per_request = Figure("client CPU per listing request (cold)", "ms")
        floor = Figure("limit: client CPU per GET of urllib3's urlopen alone", "ms")
        counts: dict[str, int | None] = {}
        have_dxf = _has_module("dxf")

        def cold_and_warm() -> None:
            reg = ContainerRegistry(data.registry)
            for key in ("cold", "warm"):
                used, mine = env.process_cpu_seconds(self.services.listing_pid), _own_cpu()
                result = list_with_registry_nb(reg, data)
                spent = env.process_cpu_seconds(self.services.listing_pid)
                client[key].add(_own_cpu() - mine)
                _check_listing(result, n, key)
                if key == "cold" and result.requests:
                    per_request.add(1000 * client[key].samples[-1] / result.requests)
                figs[key].add(result.seconds)
                counts[key] = result.requests
                if used is not None and spent is not None:
                    cpu[key].add(spent - used)
            reg.close()

        def disk() -> None:
            reg = ContainerRegistry(data.registry, cache=ContentCache(directory=disk_dir))
            result = list_with_registry_nb(reg, data)
            _check_listing(result, n, "disk")
            figs["disk"].add(result.seconds)
            counts["disk"] = result.requests
            reg.close()

        def dxf() -> None:
            used, mine = env.process_cpu_seconds(self.services.listing_pid), _own_cpu()
            result = list_with_dxf(data)
            spent = env.process_cpu_seconds(self.services.listing_pid)
            client["dxf"].add(_own_cpu() - mine)
            _check_listing(result, n, "dxf")
            figs["dxf"].add(result.seconds)
            counts["dxf"] = result.requests
            if used is not None and spent is not None:
                cpu["dxf"].add(spent - used)

        def seq() -> None:
            result = list_sequential(data)
            _check_listing(result, n, "seq")
            figs["seq"].add(result.seconds)
            counts["seq"] = result.requests

        def raw() -> None:
            result = list_concurrent_raw(urls, sizes.raw_threads)
            figs["raw"].add(result.requests / result.seconds)
            floor.add(urllib3_cpu_per_get(urls))

        contenders: list[Callable[[], None]] = [cold_and_warm, seq, raw, disk]
        if have_dxf:
            contenders.append(dxf)
        for round_ in range(sizes.rounds):
            _say(f"listing: round {round_ + 1}/{sizes.rounds}")
            for run in _rotated(contenders, round_):
                run()
        shutil.rmtree(disk_dir, ignore_errors=True)

        def per_second(key: str) -> str:
            median = figs[key].median
            count = counts.get(key)
            if not median or not count:
                return ""
            return f"{count} requests, {fmt(count / median)} req/s"

        what = f"catalog + tags + manifest + config, {n} tags in {sizes.repos} repositories"
        table = self.table
        table.note("listing", what)
        if not have_dxf:
            table.note("python-dxf", "not installed (pip install '.[bench]'): skipped")
        for key in ("dxf", "seq", "cold", "warm", "disk"):
            figs[key].note = per_second(key)
            if key != "dxf" or have_dxf:
                table.figure(figs[key])
        table.figure(figs["raw"])
        cores = os.cpu_count() or 1
        for key in ("dxf", "cold", "warm"):
            if cpu[key].samples:
                cpu[key].name = f"registry CPU per listing: {key}"
                client[key].name = f"client CPU per listing: {key}"
                table.figure(cpu[key])
                table.figure(client[key])
        table.figure(per_request)
        table.figure(floor)
        if cpu["cold"].median and client["cold"].median:
            both = cpu["cold"].median + client["cold"].median
            table.note("bound: cold listing, registry + client CPU / cores",
                       f"{fmt(both / cores)} s on {cores} cores "
                       f"(registry alone: {fmt(cpu['cold'].median / cores)} s)")
        cold_vs_dxf = Ratio("ratio: python-dxf time / cold time", figs["cold"], figs["dxf"],
                            invert=True)
        warm_vs_cold = Ratio("ratio: cold time / warm time", figs["warm"], figs["cold"],
                             invert=True)
        cold_vs_seq = Ratio("ratio: sequential loop time / cold time", figs["cold"],
                            figs["seq"], invert=True)
        raw_time = Figure("raw", "s", [counts.get("cold", 0) / r for r in figs["raw"].samples])
        cold_vs_raw = Ratio("ratio: cold time at the raw rate / cold time", figs["cold"],
                            raw_time, invert=True)
        for ratio in (cold_vs_dxf, cold_vs_seq, warm_vs_cold, cold_vs_raw):
            table.ratio(ratio)
        if have_dxf:
            self.target("cold listing vs python-dxf", lambda: cold_vs_dxf.median,
                        lambda v: v >= 2.5, ">= 2.5x", cold_vs_dxf.shown())
        self.target("client CPU per listing request", lambda: per_request.median,
                    lambda v: v <= 0.3, "<= 0.3 ms", per_request.shown())
        self.target("warm listing vs cold", lambda: warm_vs_cold.median, lambda v: v >= 2.0,
                    ">= 2x", warm_vs_cold.shown())

    # ------------------------------------------------------------ transfers

    def transfers(self) -> None:
        from registry_nb import ContainerRegistry
        from registry_nb.engine import Engine

        sizes = self.sizes
        host = self.services.transfer
        seed = secrets.randbits(31) if self.smoke else 1
        _say(f"transfers: generating a {sizes.layers} x {sizes.layer_bytes // MIB} MiB image")
        image = make_image_layout(self.services.data_dir / f"image-{self.tag}"
                                  if self.smoke else self.services.data_dir / "image",
                                  layers=sizes.layers, layer_bytes=sizes.layer_bytes, seed=seed)
        big = f"{self.prefix}/big"
        admin = ContainerRegistry(host)
        admin.load_image(image.layout, big, image.tag)  # only what is missing moves
        mb = _mb(image.size)
        scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=self.services.data_dir))
        figs = {k: Figure(f"{name}", "MB/s") for k, name in (
            ("save_nb", "registry -> OCI layout: registry_nb save_image"),
            ("save_sk", "registry -> OCI layout: skopeo copy"),
            ("load_nb", "OCI layout -> registry: registry_nb load_image"),
            ("load_sk", "OCI layout -> registry: skopeo copy"),
        )}
        have_skopeo = shutil.which("skopeo") is not None
        counter = iter(range(10**6))

        def fresh(kind: str) -> str:
            return f"{self.prefix}/{kind}-{self.tag}-{next(counter)}"

        def unlink(repo: str) -> None:
            delete_blob_links(admin.client, repo, image.layer_digests)

        def save_nb() -> None:
            target = scratch / f"nb-{next(counter)}"
            seconds, _ = timed(ContainerRegistry(host).save_image, big, image.tag, target)
            figs["save_nb"].add(mb / seconds)
            shutil.rmtree(target)

        def save_sk() -> None:
            target = scratch / f"sk-{next(counter)}"
            seconds, _ = timed(skopeo_save, host, big, image.tag, target)
            figs["save_sk"].add(mb / seconds)
            shutil.rmtree(target)

        def load_nb() -> None:
            repo = fresh("load-nb")
            seconds, _ = timed(ContainerRegistry(host).load_image, image.layout, repo,
                               image.tag)
            figs["load_nb"].add(mb / seconds)
            unlink(repo)

        def load_sk() -> None:
            repo = fresh("load-sk")
            seconds, _ = timed(skopeo_load, image.layout, image.tag, host, repo)
            figs["load_sk"].add(mb / seconds)
            unlink(repo)

        saves: list[Callable[[], None]] = [save_nb] + ([save_sk] if have_skopeo else [])
        for round_ in range(sizes.rounds):
            _say(f"transfers: save round {round_ + 1}/{sizes.rounds}")
            for run in _rotated(saves, round_):
                run()
        shape = ShapeSaves(host, f"{self.prefix}/shape", self.services.data_dir,
                           smoke=self.smoke, log=_say, have_skopeo=have_skopeo)
        shape.measure(sizes.rounds)
        shape.close()

        engine_rows = self._engine(host, big, image, admin, Engine, ContainerRegistry,
                                   fresh, unlink, phase="pull")
        # From here on no repository can lend these layers (skopeo and the engine would
        # mount them instead of sending the bytes; both remember where they saw them).
        _scrub(admin, self.prefix)
        loads: list[Callable[[], None]] = [load_nb] + ([load_sk] if have_skopeo else [])
        for round_ in range(sizes.rounds):
            _say(f"transfers: load round {round_ + 1}/{sizes.rounds}")
            for run in _rotated(loads, round_):
                run()
        engine_rows += self._engine(host, big, image, admin, Engine, ContainerRegistry,
                                    fresh, unlink, phase="push")
        shutil.rmtree(scratch, ignore_errors=True)
        if self.smoke:
            shutil.rmtree(image.layout, ignore_errors=True)

        table = self.table
        table.note("image", f"{sizes.layers} gzip layers of {sizes.layer_bytes // MIB} MiB random "
                   f"data, {fmt(mb)} MB, OCI manifest")
        if not have_skopeo:
            table.note("skopeo", "not installed: skipped")
        for fig in figs.values():
            if fig.samples:
                table.figure(fig)
        save = Ratio("ratio: registry_nb / skopeo, registry -> layout", figs["save_nb"],
                     figs["save_sk"])
        load = Ratio("ratio: registry_nb / skopeo, layout -> registry", figs["load_nb"],
                     figs["load_sk"])
        table.ratio(save)
        table.ratio(load)
        if have_skopeo:
            self.target("registry -> OCI layout vs skopeo", lambda: save.median,
                        lambda v: v >= 1.5, ">= 1.5x", save.shown())
            self.target("OCI layout -> registry vs skopeo", lambda: load.median,
                        lambda v: v >= 1.5, ">= 1.5x", load.shown())
        shape.report(table, self.target)
        for row in engine_rows:
            row()

    def _engine(self, host: str, big: str, image: Any, admin: Any, engine_cls: Any,
                registry_cls: Any, fresh: Callable[[str], str], unlink: Callable[[str], None],
                *, phase: str) -> list[Callable[[], None]]:
        """Pull (or push) rounds through the engine: docker CLI vs the facade with a form's
        progress callback. Returns the table rows to add later (in order)."""
        docker_host = self.services.docker_host
        if not docker_host or shutil.which("docker") is None:
            return [lambda: self.table.note(f"engine {phase}", "no engine or docker CLI: skipped")]
        engine = engine_cls(base_url=docker_host)
        if not engine.is_available():
            return [lambda: self.table.note(f"engine {phase}", "engine not answering: skipped")]
        reg = registry_cls(host, engine=engine)
        source = f"{host}/{big}:{image.tag}"
        cli = Figure(f"engine {phase}: docker CLI", "s")
        ours = Figure(f"engine {phase}: registry_nb {phase}_image + form progress", "s")
        rate = Figure(f"progress redraws during {phase}_image (Throttle 0.1 s)", "/s")
        mb = _mb(image.size)

        def forget() -> None:
            # by id: every tag goes (pushes tag it too), so its layers go as well
            with contextlib.suppress(RuntimeError):
                docker_cli(docker_host, "rmi", "-f", image.config_digest)

        def pull_cli() -> None:
            forget()
            seconds, _ = timed(docker_cli, docker_host, "pull", source)
            cli.add(seconds)

        def pull_nb() -> None:
            forget()
            progress = FormProgress()
            seconds, _ = timed(reg.pull_image, big, image.tag, progress=progress)
            ours.add(seconds)
            rate.add(progress.redraws / seconds)

        pushed: list[str] = []

        def push_cli() -> None:
            repo = fresh("push-cli")
            docker_cli(docker_host, "tag", source, f"{host}/{repo}:{image.tag}")
            seconds, _ = timed(docker_cli, docker_host, "push", f"{host}/{repo}:{image.tag}")
            cli.add(seconds)
            pushed.append(repo)
            _unlink_pushed(admin, repo, image.tag)

        def push_nb() -> None:
            repo = fresh("push-nb")
            progress = FormProgress()
            seconds, _ = timed(reg.push_image, repo, image.tag, local_image=source,
                               progress=progress)
            ours.add(seconds)
            rate.add(progress.redraws / seconds)
            pushed.append(repo)
            _unlink_pushed(admin, repo, image.tag)

        if phase == "pull":
            runs = [pull_cli, pull_nb]
        else:
            if not any(img.get("RepoTags") and source in img["RepoTags"]
                       for img in engine.list_images()):
                docker_cli(docker_host, "pull", source)
            runs = [push_cli, push_nb]
        for round_ in range(self.sizes.rounds):
            _say(f"engine: {phase} round {round_ + 1}/{self.sizes.rounds}")
            for run in _rotated(runs, round_):
                run()
        if phase == "push":
            for repo in pushed:
                with contextlib.suppress(RuntimeError):
                    docker_cli(docker_host, "rmi", f"{host}/{repo}:{image.tag}")
            forget()
        ratio = Ratio(f"ratio: registry_nb {phase} time / docker CLI {phase} time", ours, cli)
        cli.note = f"{fmt(mb / cli.median)} MB/s" if cli.median else ""
        ours.note = f"{fmt(mb / ours.median)} MB/s" if ours.median else ""

        def rows() -> None:
            self.table.figure(cli)
            self.table.figure(ours)
            self.table.ratio(ratio)
            self.target(f"engine {phase} with a form vs docker CLI", lambda: ratio.median,
                        lambda v: v <= 1.05, "<= 1.05x the CLI's time", ratio.shown())
            self.table.figure(rate)
            self.target(f"progress redraws per second ({phase})", lambda: rate.median,
                        lambda v: v <= 10.5, "<= ~10/s", rate.shown())

        engine.close()
        return [rows]

    def latency(self) -> None:
        """Listing and save/load against peers behind a delaying proxy (benchmarks/latency)."""
        seconds = measure_latency(self.services, self.table, self.target, smoke=self.smoke,
                                  prefix=f"{self.prefix}/lat" if self.smoke else "benchlat",
                                  log=_say)
        self.table.note("latency section", f"{seconds:.0f} s")

    def operations(self) -> None:
        """Retention plan and apply, and a many-repository mirror vs skopeo sync."""
        measure_operations(self, _say)

    def layers(self) -> None:
        """Layer gzip: a 1 GiB layer's entries and memory, a folder pushed vs docker build."""
        measure_layers(self)

    # ------------------------------------------------------------ memory

    def fleet(self) -> None:
        """Layer reads of a seeded fleet: naive, read-once (threads, Dask 1/2), cache."""
        if not _has_module("distributed"):
            self.table.note("fleet", "dask[distributed] not installed (fleet extra): skipped")
            return
        hosts = list(dict.fromkeys([self.services.listing, self.services.transfer]))
        repos, tags, base = (3, 2, 256 * 1024) if self.smoke else (10, 5, 2 * MIB)
        names = seed_fleet(hosts, self.prefix, repos, tags, base, _say)
        _say(f"fleet: measuring over {len(hosts)} registries")
        for figure in measure_fleet(hosts, names):
            self.table.figure(figure)

    def memory(self) -> None:
        from registry_nb import ContainerRegistry

        sizes = self.sizes
        host = self.services.transfer
        seed = secrets.randbits(31) if self.smoke else 2
        size_mib = sizes.blob_bytes // MIB
        _say(f"memory: one {size_mib} MiB blob, in fresh interpreters")
        layout_dir = self.services.data_dir / (f"blob-{self.tag}" if self.smoke else "blob")
        image = make_blob_layout(layout_dir, size=sizes.blob_bytes, seed=seed)
        admin = ContainerRegistry(host)
        source = f"{self.prefix}/blob"
        admin.load_image(image.layout, source, image.tag)
        figs = {m: Figure(f"peak RSS increase, {size_mib} MiB blob: {what}", "MiB") for m, what in (
            ("save", "registry -> OCI layout"), ("load", "OCI layout -> registry"),
            ("copy", "registry -> registry (no mount)"))}
        speed = {m: Figure(m, "MB/s") for m in figs}
        counter = iter(range(10**6))

        def run(mode: str) -> None:
            if mode == "save":
                target = str(self.services.data_dir / f"rss-{self.tag}-{next(counter)}")
                out = measure_rss("save", host, source, target)
                shutil.rmtree(target, ignore_errors=True)
            else:
                target = f"{self.prefix}/rss-{mode}-{self.tag}-{next(counter)}"
                src = str(image.layout) if mode == "load" else source
                out = measure_rss(mode, host, src, target)
                delete_blob_links(admin.client, target, image.layer_digests)
            figs[mode].add(out["increase_kib"] / 1024)
            speed[mode].add(_mb(out["bytes"]) / out["seconds"])

        modes = list(figs)
        for round_ in range(sizes.rss_rounds):
            for mode in _rotated(modes, round_):
                run(mode)
        if self.smoke:
            shutil.rmtree(layout_dir, ignore_errors=True)
        for mode, fig in figs.items():
            fig.note = f"at {speed[mode].shown()}"
            self.table.figure(fig)
        worst = max((max(f.samples) for f in figs.values() if f.samples), default=None)
        self.target(f"peak RSS copying a {size_mib} MiB blob (worst case)", lambda: worst,
                    lambda v: v < 64, "< 64 MiB", f"{fmt(worst or 0)} MiB")

    # ------------------------------------------------------------ limits

    def limits(self) -> None:
        sizes = self.sizes
        hashing = Figure("limit: sha256 in Python, one core, 1 MiB chunks", "MB/s")
        data = os.urandom(MIB)
        for _ in range(sizes.rounds):
            hasher = hashlib.sha256()
            started = time.perf_counter()
            for _ in range(sizes.hash_bytes // MIB):
                hasher.update(data)
            hashing.add(_mb(sizes.hash_bytes) / (time.perf_counter() - started))
        self.table.figure(hashing)
        imports = Figure("import registry_nb (fresh interpreter)", "s")
        heavy: set[str] = set()
        code = ("import sys, time; t = time.perf_counter(); import registry_nb; "
                "print(time.perf_counter() - t); "
                "print(' '.join(m for m in ('pandas', 'docker', 'ipywidgets', 'matplotlib') "
                "if m in sys.modules))")
        for _ in range(sizes.import_rounds):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True, cwd=env.ROOT).stdout.splitlines()
            imports.add(float(out[0]))
            heavy.update((out[1] if len(out) > 1 else "").split())
        imports.note = ("also imports " + ", ".join(sorted(heavy))) if heavy \
            else "pandas, docker, widgets not imported"
        self.table.figure(imports)
        self.target("import registry_nb", lambda: imports.median, lambda v: v < 0.5, "< 0.5 s",
                    imports.shown())


def _own_cpu() -> float:
    """CPU seconds of this process, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _has_module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _check_listing(result: Any, expected: int, who: str) -> None:
    if result.rows != expected or result.errors:
        raise RuntimeError(f"{who}: listed {result.rows} tags with {result.errors} errors, "
                           f"expected {expected} without errors")


def _scrub(admin: Any, prefix: str) -> None:
    """Unlink the layers of every image in the repositories under ``prefix``."""
    for repo in admin.client.catalog(page_size=1000):
        if not repo.startswith(prefix + "/"):
            continue
        for tag in admin.client.tags(repo):
            with contextlib.suppress(Exception):  # an image already gone is fine
                _unlink_pushed(admin, repo, tag)


def _unlink_pushed(admin: Any, repo: str, tag: str) -> None:
    """Unlink a pushed image's layers so the next push cannot mount them."""
    manifest = admin.client.get_manifest(repo, tag)
    delete_blob_links(admin.client, repo, [layer.digest for layer in manifest.layers])


@contextlib.contextmanager
def _services(smoke: bool, keep: bool) -> Iterator[env.Services]:
    if smoke:
        with tempfile.TemporaryDirectory(prefix="registry-nb-bench-smoke-") as tmp:
            yield env.shared(Path(tmp))
        return
    _say("starting the benchmark's own services")
    services = env.start_own()
    try:
        yield services
    finally:
        if not keep:
            _say("stopping the benchmark's services")
            env.stop(services)


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the sections, print the table; 1 when a target was missed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes against the running test services")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per comparison")
    parser.add_argument("--keep-services", action="store_true",
                        help="leave the benchmark's own services running")
    parser.add_argument("--only", action="append",
                        choices=["listing", "transfers", "latency", "memory", "limits",
                                 "fleet", "layers", "operations"],
                        help="run only these sections (repeatable; fleet runs only so)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.rounds:
        sizes = Sizes(**{**sizes.__dict__, "rounds": args.rounds})
    sections = args.only or ["listing", "transfers", "latency", "memory", "limits", "layers",
                             "operations"]
    started = time.monotonic()
    with _services(args.smoke, args.keep_services) as services:
        run = Run(services, sizes, args.smoke)
        try:
            for section in sections:
                getattr(run, section)()
        finally:
            if args.smoke:
                env.remove_repositories(services, run.prefix)
    print(run.table.render())
    verdict = "every target met" if not run.misses else "missed: " + ", ".join(run.misses)
    print(f"\n{verdict} ({time.monotonic() - started:.0f} s)")
    return 1 if run.misses and not args.smoke else 0


if __name__ == "__main__":
    raise SystemExit(main())
