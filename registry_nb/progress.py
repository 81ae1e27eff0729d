"""One progress type for every transfer: events, an aggregator and a throttle.

The engine (and later the daemonless copier) turns whatever it observes into
:class:`ProgressEvent` values and hands each one to an optional
:data:`ProgressCallback`. It never sleeps and never drops an event. Front ends
that redraw a widget use :class:`ProgressAggregator` to keep per-layer and
overall state and :class:`Throttle` to bound the redraw rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "ProgressEvent",
    "ProgressCallback",
    "LayerProgress",
    "ProgressSnapshot",
    "ProgressAggregator",
    "Throttle",
    "fan_out",
    "FINAL_PHASES",
    "TRANSFER_PHASES",
]

#: Phases that end an operation: a throttle always delivers them.
FINAL_PHASES = frozenset({"done", "failed", "cancelled"})
#: Phases whose ``current``/``total`` count bytes moved over the wire.
TRANSFER_PHASES = frozenset({"download", "upload"})


@dataclass(frozen=True)
class ProgressEvent:
    """One observation of a running push, pull, build or copy.

    ``phase`` is the operation (``"build"``, ``"push"``, ``"pull"``) for status
    lines, the sub-step (``"download"``, ``"upload"``, ``"extract"``,
    ``"verify"``) for byte progress, or a final phase (``"done"``,
    ``"failed"``, ``"cancelled"``). ``layer`` is the layer id the event is
    about and ``current``/``total`` are bytes. ``completed`` means the phase is
    over for that layer: with a transfer phase ("Download complete") all its
    bytes moved; with any other phase ("Pull complete", "Pushed", "Already
    exists") the layer has nothing left to do. ``status`` is the engine's raw
    status text and ``step``/``steps`` number the build step ("Step 2/5").
    """

    phase: str
    layer: str | None = None
    current: int | None = None
    total: int | None = None
    message: str = ""
    status: str = ""
    completed: bool = False
    step: int | None = None
    steps: int | None = None

    @property
    def is_final(self) -> bool:
        """True for the event that ends an operation."""
        return self.phase in FINAL_PHASES


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class LayerProgress:
    """What is known about one layer: bytes transferred of ``total``, last status."""

    layer: str
    current: int = 0
    total: int | None = None
    status: str = ""
    phase: str = ""
    completed: bool = False


@dataclass(frozen=True)
class ProgressSnapshot:
    """A consistent view of an operation, as returned by :meth:`ProgressAggregator.snapshot`.

    ``current``/``total`` sum the transferred bytes of the layers whose size is
    known; ``layers_done``/``layers_total`` count layers.
    """

    phase: str = ""
    message: str = ""
    layers: Mapping[str, LayerProgress] = field(default_factory=lambda: MappingProxyType({}))
    current: int = 0
    total: int = 0
    layers_done: int = 0
    layers_total: int = 0
    step: int | None = None
    steps: int | None = None
    finished: bool = False
    events: int = 0

    @property
    def fraction(self) -> float | None:
        """Overall completion in [0, 1]: bytes if any total is known, else layers or steps."""
        if self.phase == "done":
            return 1.0
        if self.total > 0:
            return min(self.current / self.total, 1.0)
        if self.layers_total > 0:
            return self.layers_done / self.layers_total
        if self.step is not None and self.steps:
            return min(max(self.step - 1, 0) / self.steps, 1.0)
        return None


class ProgressAggregator:
    """Fold :class:`ProgressEvent`s into per-layer and overall state; thread-safe.

    Use it directly as a progress callback (it is callable) and read
    :meth:`snapshot` from any thread. A layer's byte count is what it has
    transferred (download or upload); it never goes backwards, is clipped to
    the layer's total, and equals the total once the layer completes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._layers: dict[str, LayerProgress] = {}
        self._phase = ""
        self._message = ""
        self._step: int | None = None
        self._steps: int | None = None
        self._finished = False
        self._events = 0

    def __call__(self, event: ProgressEvent) -> None:
        self.update(event)

    def update(self, event: ProgressEvent) -> None:
        """Fold one event into the state."""
        with self._lock:
            self._events += 1
            self._phase = event.phase
            if event.message:
                self._message = event.message
            if event.step is not None:
                self._step = event.step
            if event.steps is not None:
                self._steps = event.steps
            if event.layer is not None:
                self._layers[event.layer] = _fold_layer(
                    self._layers.get(event.layer) or LayerProgress(event.layer), event
                )
            if event.phase == "done":
                self._finished = True
                self._layers = {k: _complete(v) for k, v in self._layers.items()}
            elif event.is_final:
                self._finished = True

    def snapshot(self) -> ProgressSnapshot:
        """Return an immutable, consistent copy of the current state."""
        with self._lock:
            layers = dict(self._layers)
            phase, message = self._phase, self._message
            step, steps, finished, events = self._step, self._steps, self._finished, self._events
        sized = [lp for lp in layers.values() if lp.total is not None]
        return ProgressSnapshot(
            phase=phase,
            message=message,
            layers=MappingProxyType(layers),
            current=sum(lp.current for lp in sized),
            total=sum(lp.total or 0 for lp in sized),
            layers_done=sum(1 for lp in layers.values() if lp.completed),
            layers_total=len(layers),
            step=step,
            steps=steps,
            finished=finished,
            events=events,
        )


def _fold_layer(state: LayerProgress, event: ProgressEvent) -> LayerProgress:
    current, total = state.current, state.total
    if event.phase in TRANSFER_PHASES:
        if event.total is not None and event.total > 0:
            total = event.total
        if event.current is not None:
            current = max(current, event.current)
        if event.completed:
            # "Download complete": the transfer is over even if the last
            # byte count never reached the total.
            current = total if total is not None else current
    elif total is None and event.total is not None and event.total > 0:
        total = event.total
    if total is not None:
        current = min(current, total)
    new = LayerProgress(
        layer=state.layer,
        current=current,
        total=total,
        status=event.status or state.status,
        phase=event.phase,
        completed=state.completed,
    )
    if event.completed and event.phase not in TRANSFER_PHASES:
        new = _complete(new)
    return new


def _complete(state: LayerProgress) -> LayerProgress:
    total = state.total
    return LayerProgress(
        layer=state.layer,
        current=total if total is not None else state.current,
        total=total,
        status=state.status,
        phase=state.phase,
        completed=True,
    )


class Throttle:
    """Forward at most one event per ``interval`` seconds to ``callback``.

    An event that arrives too soon is held as "pending", replacing any older
    pending one (pair the throttle with a :class:`ProgressAggregator` when the
    callback needs every layer's state). A newer event let through supersedes
    it; :meth:`flush` delivers it; a final event (``done``, ``failed``,
    ``cancelled``) always passes, right after the pending one. So the last
    state reaches the callback once the operation ends. ``clock`` is
    injectable for tests. Thread-safe; delivery happens in order on the
    calling thread.
    """

    def __init__(
        self,
        callback: ProgressCallback,
        interval: float = 0.1,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self.callback = callback
        self.interval = interval
        self._clock = clock
        self._lock = threading.RLock()
        self._last: float | None = None
        self._pending: ProgressEvent | None = None
        self.delivered = 0
        self.coalesced = 0

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.is_final:
                self._deliver_pending()
                self._deliver(event)
                return
            now = self._clock()
            if self._last is None or now - self._last >= self.interval:
                self._pending = None
                self._deliver(event, now)
            else:
                if self._pending is not None:
                    self.coalesced += 1
                self._pending = event

    @property
    def pending(self) -> ProgressEvent | None:
        """The event held back for the next delivery, if any."""
        return self._pending

    def flush(self) -> None:
        """Deliver the held-back event now, if there is one."""
        with self._lock:
            self._deliver_pending()

    def _deliver_pending(self) -> None:
        if self._pending is not None:
            event, self._pending = self._pending, None
            self._deliver(event)

    def _deliver(self, event: ProgressEvent, now: float | None = None) -> None:
        self._last = self._clock() if now is None else now
        self.delivered += 1
        self.callback(event)


def fan_out(*callbacks: ProgressCallback | None) -> ProgressCallback:
    """Return one callback that calls each given callback in order (``None``s skipped)."""
    targets = tuple(cb for cb in callbacks if cb is not None)

    def call_all(event: ProgressEvent) -> None:
        for cb in targets:
            cb(event)

    return call_all
