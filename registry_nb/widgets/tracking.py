r"""What a form shows while it runs: a layer's bar and the trackers behind the bars.

:class:`Tracker` sums a run's :class:`~registry_nb.progress.ProgressEvent`\ s (an
aggregator, a speed meter, log de-duplication) and words the transfer line;
:class:`BuildTracker` gives a build's steps the first half of the bar and the push
the rest; :class:`SyncTracker` counts a sync's tags and blobs; :class:`LayerRow` is one
layer's bar. Used by :mod:`.forms` and :mod:`.sync`.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ..progress import ProgressAggregator, ProgressEvent, ProgressSnapshot
from ._common import SpeedMeter, human_bytes

__all__ = ["LayerRow", "Tracker", "BuildTracker", "SyncTracker"]


class LayerRow:
    """One layer's bar: short id, progress, bytes and status."""

    def __init__(self) -> None:
        self.name = widgets.Label(layout=widgets.Layout(width="110px"))
        self.bar = widgets.FloatProgress(value=0, min=0, max=100,
                                         layout=widgets.Layout(width="240px"))
        self.text = widgets.Label()
        self.box = widgets.HBox([self.name, self.bar, self.text],
                                layout=widgets.Layout(display="none"))
        self.box.add_class("registry-nb-layer")
        self.widgets = (self.name, self.bar, self.text, self.box, self.box.layout)

    def hide(self) -> None:
        self.box.layout.display = "none"
        self.bar.value = 0
        self.bar.bar_style = ""

    def show(self, layer: Any) -> None:
        """Show ``layer`` (a :class:`~registry_nb.progress.LayerProgress`)."""
        self.box.layout.display = "flex"
        self.name.value = layer.layer[:12]
        if layer.completed:
            percent = 100.0
        elif layer.total:
            percent = 100.0 * min(layer.current / layer.total, 1.0)
        else:
            percent = 0.0
        self.bar.value = percent
        self.bar.bar_style = "success" if layer.completed else ""
        size = (f"{human_bytes(layer.current)} / {human_bytes(layer.total)}"
                if layer.total else "")
        self.text.value = " · ".join(p for p in (layer.status, size) if p)


class Tracker:
    """What a form knows about its run: an aggregator, speed, log de-duplication."""

    def __init__(self) -> None:
        self.aggregator = ProgressAggregator()
        self.speed = SpeedMeter()
        self._last_status: dict[str | None, str] = {}
        self._recent: float | None = None

    def update(self, event: ProgressEvent) -> None:
        self.aggregator.update(event)

    def layer_snapshot(self) -> ProgressSnapshot:
        """The snapshot whose layers get bars."""
        return self.aggregator.snapshot()

    def fraction(self) -> float | None:
        """Overall completion: bytes moved (80 %) and layers finished (20 %), so a pull's
        extraction (or a push's last acknowledgements) keeps the bar short of its end."""
        snap = self.aggregator.snapshot()
        if snap.phase != "done" and snap.total > 0 and snap.layers_total > 0:
            return (0.8 * min(snap.current / snap.total, 1.0)
                    + 0.2 * snap.layers_done / snap.layers_total)
        return snap.fraction

    def log_line(self, event: ProgressEvent) -> str | None:
        """The log line for ``event``, or None for repeated byte progress. A failure
        logs its first line only: the output it may quote is already in the log."""
        if event.layer is not None and not event.completed and \
                self._last_status.get(event.layer) == event.status:
            return None  # repeated byte progress ("Downloading", "Extracting", ...)
        self._last_status[event.layer] = event.status
        text = event.message or event.status or None
        if text and event.phase == "failed":
            text = text.strip().splitlines()[0] if text.strip() else None
        return text

    def transfer_text(self, speed: bool = True) -> str:
        """``"12.3 MB / 45.6 MB · 8.1 MB/s · 2/3 layers"``."""
        snap = self.aggregator.snapshot()
        parts = []
        if snap.total:
            parts.append(f"{human_bytes(snap.current)} / {human_bytes(snap.total)}")
            if speed:
                rate = self.speed.add(snap.current)
                if rate is not None:
                    parts.append(f"{human_bytes(rate)}/s")
        if snap.layers_total:
            parts.append(f"{snap.layers_done}/{snap.layers_total} layers")
        return " · ".join(parts)

    def stored_text(self, stored: int) -> str:
        """The final transfer line: what the registry holds, as the result says it."""
        snap = self.aggregator.snapshot()
        parts = [f"{human_bytes(stored)} compressed in the registry"]
        if snap.layers_total:
            parts.append(f"{snap.layers_done}/{snap.layers_total} layers")
        return " · ".join(parts)

    def average_speed(self, elapsed: float) -> float | None:
        snap = self.aggregator.snapshot()
        return snap.current / elapsed if snap.current and elapsed > 0 else None

    def headline(self) -> str:
        snap = self.aggregator.snapshot()
        return snap.message or snap.phase or "working…"


class BuildTracker(Tracker):
    """Build then push: the build's steps fill the first half of the bar, the push the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.build = ProgressAggregator()
        self.pushing = False

    def update(self, event: ProgressEvent) -> None:
        if not self.pushing and event.phase in ("push", "upload"):
            self.pushing = True
        (self.aggregator if self.pushing else self.build).update(event)

    def fraction(self) -> float | None:
        if not self.pushing:
            built = self.build.snapshot().fraction
            return None if built is None else 0.5 * built
        return 0.5 + 0.5 * (super().fraction() or 0.0)

    def transfer_text(self, speed: bool = True) -> str:
        if self.pushing:
            return "push: " + (super().transfer_text(speed) or "starting")
        snap = self.build.snapshot()
        return f"build: step {snap.step}/{snap.steps}" if snap.step and snap.steps else "build"

    def stored_text(self, stored: int) -> str:
        return "push: " + super().stored_text(stored)

    def headline(self) -> str:
        if self.pushing:
            return super().headline()
        snap = self.build.snapshot()
        return snap.message or "building…"


class SyncTracker(Tracker):
    """A sync's one stream: every blob of a level is announced up front (the bar covers
    the whole sync), each tag copied says so (``status="copied"``)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags_copied = 0

    def update(self, event: ProgressEvent) -> None:
        if event.phase == "copy" and event.status == "copied" and event.layer is None:
            self.tags_copied += 1
        super().update(event)

    def transfer_text(self, speed: bool = True) -> str:
        """``"12.3 MB / 45.6 MB · 8.1 MB/s · 3 tags copied · 7/20 blobs"``."""
        snap = self.aggregator.snapshot()
        parts = []
        if snap.total:
            parts.append(f"{human_bytes(snap.current)} / {human_bytes(snap.total)}")
            rate = self.speed.add(snap.current) if speed else None
            if rate is not None:
                parts.append(f"{human_bytes(rate)}/s")
        parts.append(f"{self.tags_copied} tag{'s' if self.tags_copied != 1 else ''} copied")
        if snap.layers_total:
            parts.append(f"{snap.layers_done}/{snap.layers_total} blobs")
        return " · ".join(parts)
