"""The latency mode: what a user feels with the registry ``rtt`` away.

Every contender talks to the transfer registry through one delaying proxy
(:mod:`benchmarks.delay`, its own process) per round-trip time:

- the cold listing: ``registry_images_frame`` of the named repositories with a fresh
  facade, against python-dxf (one shared session, sequential) and ``skopeo inspect``
  (one process per tag; measured on a sample of tags plus one ``skopeo list-tags``,
  extrapolated to the whole listing and labelled so);
- ``save_image`` / ``load_image`` against ``skopeo copy``, with the 3 x 100 MB image
  (:func:`benchmarks.shape.shape_image`).

The listing is smaller than the loopback one (20 repositories x 10 tags, not 200 x 10)
and there are fewer rounds: at 100 ms, python-dxf alone takes ~45 s per round.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import env
from .delay import DEFAULT_WINDOW, delaying_proxy
from .listing import ListingData, ListingRun, list_with_dxf, list_with_registry_nb, seed_listing
from .shape import shape_image, shape_label
from .stats import Figure, Ratio, Table, fmt, rotated
from .transfer import (
    delete_blob_links,
    skopeo_inspect,
    skopeo_list_tags,
    skopeo_load,
    skopeo_save,
    timed,
)

__all__ = ["LatencySizes", "FULL", "SMOKE", "measure_latency"]


@dataclass(frozen=True)
class LatencySizes:
    """How much work the latency mode does."""

    rtts: tuple[float, ...]  # seconds
    rounds: tuple[int, ...]  # per RTT
    repos: int
    tags: int
    skopeo_sample: int  # tags inspected with skopeo per round
    transfers: bool = True


FULL = LatencySizes(rtts=(0.02, 0.1), rounds=(3, 2), repos=20, tags=10, skopeo_sample=4)
SMOKE = LatencySizes(rtts=(0.005,), rounds=(1,), repos=2, tags=2, skopeo_sample=1)


def _ms(rtt: float) -> str:
    return f"{rtt * 1000:g} ms"


def _check(result: ListingRun, expected: int, who: str) -> None:
    if result.rows != expected or result.errors:
        raise RuntimeError(f"{who} behind the delaying proxy: listed {result.rows} tags with "
                           f"{result.errors} errors, expected {expected} without errors")


class _Latency:
    """One latency section: its data, and the rows it adds to ``table``."""

    def __init__(self, services: env.Services, table: Table, target: Callable[..., None],
                 sizes: LatencySizes, *, prefix: str, smoke: bool,
                 log: Callable[[str], None]) -> None:
        self.services = services
        self.table = table
        self.target = target
        self.sizes = sizes
        self.prefix = prefix
        self.smoke = smoke
        self.log = log
        self.have_dxf = importlib.util.find_spec("dxf") is not None
        self.have_skopeo = shutil.which("skopeo") is not None
        self.tag = secrets.token_hex(3)
        self.counter = iter(range(10**6))

    def run(self) -> None:
        from registry_nb import ContainerRegistry

        sizes = self.sizes
        host = self.services.transfer
        data = ListingData(host, self.prefix, sizes.repos, sizes.tags, explicit=True)
        seed_listing(data, log=self.log)
        image = None
        if sizes.transfers:
            image = shape_image(self.services.data_dir, smoke=self.smoke, log=self.log)
            self.admin = ContainerRegistry(host)
            self.big = f"{self.prefix}/big"
            self.admin.load_image(image.layout, self.big, image.tag)  # what is missing
        self.log("latency: warm-up listing, without the proxy")
        list_with_registry_nb(ContainerRegistry(host), data)  # imports pandas, warms caches
        self.table.note("latency", f"through benchmarks/delay.py: +RTT/2 per chunk each way, "
                        f"+1 RTT per connection, {DEFAULT_WINDOW // 2**20} MiB window")
        for rtt, rounds in zip(sizes.rtts, sizes.rounds, strict=True):
            with delaying_proxy(host, rtt) as proxy:
                self.listing(dataclasses.replace(data, registry=proxy), rtt, rounds)
                if image is not None:
                    self.transfers(proxy, image, rtt, rounds)
        if image is not None:
            self.admin.close()

    # ------------------------------------------------------------ listing

    def listing(self, data: ListingData, rtt: float, rounds: int) -> None:
        from registry_nb import ContainerRegistry

        n = data.repos * data.tags
        at = _ms(rtt)
        label = f"{data.repos} repositories x {data.tags} tags, {rounds} rounds"
        ours = Figure(f"latency {at}: listing, registry_images_frame, cold ({label})", "s")
        dxf = Figure(f"latency {at}: listing, python-dxf ({label})", "s")
        per_tag = Figure(f"latency {at}: skopeo inspect --no-tags, per tag "
                         f"(sample of {self.sizes.skopeo_sample} a round)", "s")
        per_repo = Figure(f"latency {at}: skopeo list-tags, per repository", "s")
        floor = Figure(f"latency {at}: the same cold listing without the proxy, same rounds "
                       "(CPU: client + registry on this machine)", "s")
        counts: dict[str, int | None] = {}
        repos, tags = data.repositories, data.tag_names

        def cold() -> None:
            reg = ContainerRegistry(data.registry)
            result = list_with_registry_nb(reg, data)
            reg.close()
            _check(result, n, "registry_nb")
            ours.add(result.seconds)
            counts["ours"] = result.requests

        def direct() -> None:  # the same listing without the proxy: what CPU alone costs
            reg = ContainerRegistry(self.services.transfer)
            result = list_with_registry_nb(reg, data)  # data.registry is only a label here
            reg.close()
            _check(result, n, "registry_nb without the proxy")
            floor.add(result.seconds)

        def with_dxf() -> None:
            result = list_with_dxf(data)
            _check(result, n, "python-dxf")
            dxf.add(result.seconds)
            counts["dxf"] = result.requests

        def with_skopeo() -> None:
            first = next(self.counter)
            seconds, _ = timed(skopeo_list_tags, data.registry, repos[first % len(repos)])
            per_repo.add(seconds)
            spent = 0.0
            for i in range(self.sizes.skopeo_sample):
                k = first * self.sizes.skopeo_sample + i
                seconds, _ = timed(skopeo_inspect, data.registry, repos[k % len(repos)],
                                   tags[(k // len(repos)) % len(tags)])
                spent += seconds
            per_tag.add(spent / self.sizes.skopeo_sample)

        contenders: list[Callable[[], None]] = [cold, direct]
        contenders += [with_dxf] if self.have_dxf else []
        contenders += [with_skopeo] if self.have_skopeo else []
        for round_ in range(rounds):
            self.log(f"latency {at}: listing round {round_ + 1}/{rounds}")
            for run in rotated(contenders, round_):
                run()

        for key, fig in (("ours", ours), ("dxf", dxf)):
            if counts.get(key) and fig.median:
                fig.note = f"{counts[key]} requests, {fmt(counts[key] / fig.median)} req/s"
        table = self.table
        table.figure(ours)
        table.figure(floor)
        if self.have_dxf:
            table.figure(dxf)
            ratio = Ratio(f"latency {at}: ratio python-dxf time / cold listing time", ours, dxf,
                          invert=True)
            table.ratio(ratio)
            if rtt == 0.02 or self.smoke and rtt == self.sizes.rtts[0]:
                self.target(f"cold listing vs python-dxf at {at} RTT", lambda: ratio.median,
                            lambda v: v >= 20, ">= 20x", ratio.shown())
        if self.have_skopeo:
            table.figure(per_tag)
            table.figure(per_repo)
            estimate = Figure(f"latency {at}: skopeo, whole listing EXTRAPOLATED "
                              f"({n} x inspect + {data.repos} x list-tags)", "s",
                              [t * n + r * data.repos
                               for t, r in zip(per_tag.samples, per_repo.samples, strict=True)])
            table.figure(estimate)
            table.ratio(Ratio(f"latency {at}: ratio skopeo EXTRAPOLATED / cold listing time",
                              ours, estimate, invert=True))

    # ------------------------------------------------------------ save and load

    def transfers(self, proxy: str, image: Any, rtt: float, rounds: int) -> None:
        from registry_nb import ContainerRegistry

        at = _ms(rtt)
        mb = image.size / 1e6
        label = shape_label(self.smoke)
        figs = {key: Figure(f"latency {at}: {what} ({label}, {rounds} rounds)", "MB/s")
                for key, what in (("save_nb", "registry -> OCI layout, registry_nb save_image"),
                                  ("save_sk", "registry -> OCI layout, skopeo copy"),
                                  ("load_nb", "OCI layout -> registry, registry_nb load_image"),
                                  ("load_sk", "OCI layout -> registry, skopeo copy"))}
        scratch = Path(tempfile.mkdtemp(prefix="bench-latency-", dir=self.services.data_dir))

        def fresh(kind: str) -> str:
            return f"{self.prefix}/{kind}-{self.tag}-{next(self.counter)}"

        def save_nb() -> None:
            target = scratch / f"nb-{next(self.counter)}"
            reg = ContainerRegistry(proxy)
            seconds, _ = timed(reg.save_image, self.big, image.tag, target)
            reg.close()
            figs["save_nb"].add(mb / seconds)
            shutil.rmtree(target)

        def save_sk() -> None:
            target = scratch / f"sk-{next(self.counter)}"
            seconds, _ = timed(skopeo_save, proxy, self.big, image.tag, target)
            figs["save_sk"].add(mb / seconds)
            shutil.rmtree(target)

        # Each load goes through a proxy of its own (a registry name never seen before):
        # skopeo's blob-info cache remembers where it saw each blob (the save's source,
        # earlier loads) and would mount it from there instead of uploading it.
        def load_nb() -> None:
            repo = fresh("load-nb")
            with delaying_proxy(self.services.transfer, rtt) as own:
                reg = ContainerRegistry(own)
                seconds, _ = timed(reg.load_image, image.layout, repo, image.tag)
                reg.close()
            figs["load_nb"].add(mb / seconds)
            delete_blob_links(self.admin.client, repo, image.layer_digests)

        def load_sk() -> None:
            repo = fresh("load-sk")
            with delaying_proxy(self.services.transfer, rtt) as own:
                seconds, _ = timed(skopeo_load, image.layout, image.tag, own, repo)
            figs["load_sk"].add(mb / seconds)
            delete_blob_links(self.admin.client, repo, image.layer_digests)

        runs = [save_nb, load_nb] + ([save_sk, load_sk] if self.have_skopeo else [])
        try:
            for round_ in range(rounds):
                self.log(f"latency {at}: save/load round {round_ + 1}/{rounds}")
                for run in rotated(runs, round_):
                    run()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for fig in figs.values():
            if fig.samples:
                self.table.figure(fig)
        if self.have_skopeo:
            self.table.ratio(Ratio(f"latency {at}: ratio registry_nb / skopeo, save",
                                   figs["save_nb"], figs["save_sk"]))
            self.table.ratio(Ratio(f"latency {at}: ratio registry_nb / skopeo, load",
                                   figs["load_nb"], figs["load_sk"]))


def measure_latency(services: env.Services, table: Table, target: Callable[..., None], *,
                    prefix: str, smoke: bool, log: Callable[[str], None]) -> float:
    """Run the latency section into ``table``; ``target(name, value, check, goal, shown)``
    records a target row. Returns the seconds it took."""
    started = time.monotonic()
    _Latency(services, table, target, SMOKE if smoke else FULL, prefix=prefix, smoke=smoke,
             log=log).run()
    return time.monotonic() - started
