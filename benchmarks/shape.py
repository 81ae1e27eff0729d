"""The save shape of issue 17: a 3 x 100 MB (decimal) image of random gzip layers, saved
with a fresh ``ContainerRegistry`` (empty cache) against ``skopeo copy`` in the same
rounds, beside the transfer section's 4 x 100 MiB image."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .stats import Figure, Ratio, Table, fmt, rotated
from .transfer import BigImage, make_image_layout, skopeo_save, timed

__all__ = ["SHAPE_LAYERS", "SHAPE_LAYER_BYTES", "shape_image", "shape_label", "ShapeSaves"]

SHAPE_LAYERS = 3
SHAPE_LAYER_BYTES = 100_000_000  # decimal MB, as the issue measured
_SMOKE_LAYERS, _SMOKE_LAYER_BYTES = 2, 200_000


def shape_label(smoke: bool) -> str:
    """``3 x 100 MB`` (or the smoke run's tiny stand-in)."""
    if smoke:
        return f"{_SMOKE_LAYERS} x {_SMOKE_LAYER_BYTES // 1000} kB"
    return f"{SHAPE_LAYERS} x {SHAPE_LAYER_BYTES // 1_000_000} MB"


def shape_image(data_dir: Path, *, smoke: bool, log: Callable[[str], None]) -> BigImage:
    """The 3 x 100 MB image in an OCI layout under ``data_dir`` (kept and reused; a smoke
    run makes a tiny one of its own each time)."""
    if smoke:
        layout = data_dir / f"shape-{secrets.token_hex(3)}"
        return make_image_layout(layout, layers=_SMOKE_LAYERS, layer_bytes=_SMOKE_LAYER_BYTES,
                                 seed=secrets.randbits(31))
    log(f"shape: the {shape_label(smoke)} image (generated once, then reused)")
    return make_image_layout(data_dir / "image-3x100mb", layers=SHAPE_LAYERS,
                             layer_bytes=SHAPE_LAYER_BYTES, seed=3)


class ShapeSaves:
    """``save_image`` (fresh facade, empty cache) vs ``skopeo copy`` of the shape image."""

    def __init__(self, host: str, repository: str, data_dir: Path, *, smoke: bool,
                 log: Callable[[str], None], have_skopeo: bool) -> None:
        from registry_nb import ContainerRegistry

        self.host = host
        self.repository = repository
        self.scratch = Path(tempfile.mkdtemp(prefix="bench-shape-", dir=data_dir))
        self.log = log
        self.have_skopeo = have_skopeo
        label = shape_label(smoke)
        self.image = shape_image(data_dir, smoke=smoke, log=log)
        self.smoke = smoke
        with ContainerRegistry(host) as admin:
            admin.load_image(self.image.layout, repository, self.image.tag)  # what is missing
        self.ours = Figure(f"registry -> OCI layout ({label}): registry_nb save_image, "
                           "fresh facade", "MB/s")
        self.skopeo = Figure(f"registry -> OCI layout ({label}): skopeo copy", "MB/s")
        self.ratio = Ratio(f"ratio: registry_nb / skopeo, registry -> layout ({label})",
                           self.ours, self.skopeo)
        self._count = 0

    def _target(self, who: str) -> Path:
        self._count += 1
        return self.scratch / f"{who}-{self._count}"

    def save_nb(self) -> None:
        """One save_image with a new ContainerRegistry (its cache starts empty)."""
        from registry_nb import ContainerRegistry

        target = self._target("nb")
        reg = ContainerRegistry(self.host)
        seconds, _ = timed(reg.save_image, self.repository, self.image.tag, target)
        reg.close()
        self.ours.add(self.image.size / 1e6 / seconds)
        shutil.rmtree(target)

    def save_skopeo(self) -> None:
        """One ``skopeo copy docker://… oci:…``."""
        target = self._target("sk")
        seconds, _ = timed(skopeo_save, self.host, self.repository, self.image.tag, target)
        self.skopeo.add(self.image.size / 1e6 / seconds)
        shutil.rmtree(target)

    def measure(self, rounds: int) -> None:
        """``rounds`` interleaved rounds, the order rotating."""
        runs = [self.save_nb] + ([self.save_skopeo] if self.have_skopeo else [])
        for round_ in range(rounds):
            self.log(f"transfers: {shape_label(self.smoke)} save round {round_ + 1}/{rounds}")
            for run in rotated(runs, round_):
                run()

    def close(self) -> None:
        """Remove what the rounds wrote (and a smoke run's image)."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self.smoke:
            shutil.rmtree(self.image.layout, ignore_errors=True)

    def report(self, table: Table, target: Callable[..., None]) -> None:
        """The rows: both figures, their ratio, and the issue's target (>= 1.5x)."""
        table.note(f"image ({shape_label(self.smoke)})",
                   f"{SHAPE_LAYERS if not self.smoke else _SMOKE_LAYERS} gzip layers of random "
                   f"data, {fmt(self.image.size / 1e6)} MB, OCI manifest")
        table.figure(self.ours)
        if self.have_skopeo:
            table.figure(self.skopeo)
            table.ratio(self.ratio)
            target(f"registry -> OCI layout vs skopeo ({shape_label(self.smoke)})",
                   lambda: self.ratio.median, lambda v: v >= 1.5, ">= 1.5x", self.ratio.shown())
