"""Unit tests of registry_nb.progress: events, aggregator, throttle."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from registry_nb.progress import (
    ProgressAggregator,
    ProgressEvent,
    Throttle,
    fan_out,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pull_sequence(layer: str, size: int) -> list[ProgressEvent]:
    """What the engine makes of docker's events for one pulled layer."""
    return [
        ProgressEvent("pull", layer, status="Pulling fs layer"),
        ProgressEvent("download", layer, current=size // 3, total=size, status="Downloading"),
        ProgressEvent("download", layer, current=size - 7, total=size, status="Downloading"),
        ProgressEvent("verify", layer, status="Verifying Checksum"),
        ProgressEvent("download", layer, status="Download complete", completed=True),
        ProgressEvent("extract", layer, current=10, total=size, status="Extracting"),
        ProgressEvent("extract", layer, current=size, total=size, status="Extracting"),
        ProgressEvent("pull", layer, status="Pull complete", completed=True),
    ]


def test_event_is_frozen_and_knows_final_phases() -> None:
    event = ProgressEvent("download", "abc", current=1, total=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.current = 2  # type: ignore[misc]
    assert not event.is_final
    assert ProgressEvent("done").is_final
    assert ProgressEvent("failed").is_final
    assert ProgressEvent("cancelled").is_final
    assert event.message == "" and event.status == "" and not event.completed


def test_aggregator_pull_reaches_total_and_never_goes_backwards() -> None:
    agg = ProgressAggregator()
    events = pull_sequence("aaa", 3000) + pull_sequence("bbb", 500)
    seen = []
    for event in events:
        agg(event)
        seen.append(agg.snapshot().current)
    assert seen == sorted(seen), "overall bytes went backwards"
    snap = agg.snapshot()
    assert (snap.current, snap.total) == (3500, 3500)
    assert (snap.layers_done, snap.layers_total) == (2, 2)
    assert snap.layers["aaa"].status == "Pull complete"
    assert snap.fraction == 1.0
    assert snap.events == len(events)


def test_aggregator_download_complete_fills_the_layer_before_extraction() -> None:
    agg = ProgressAggregator()
    for event in pull_sequence("aaa", 3000)[:5]:
        agg(event)
    snap = agg.snapshot()
    assert snap.current == snap.total == 3000
    assert snap.layers_done == 0  # still to extract


def test_aggregator_push_clips_overshoot_and_counts_existing_layers() -> None:
    agg = ProgressAggregator()
    agg(ProgressEvent("push", "l1", status="Preparing"))
    agg(ProgressEvent("push", "l2", status="Preparing"))
    agg(ProgressEvent("upload", "l1", current=512, total=6, status="Pushing"))
    agg(ProgressEvent("upload", "l2", current=100, total=1000, status="Pushing"))
    snap = agg.snapshot()
    assert snap.layers["l1"].current == 6
    assert (snap.current, snap.total) == (106, 1006)
    agg(ProgressEvent("push", "l1", status="Pushed", completed=True))
    agg(ProgressEvent("push", "l3", status="Layer already exists", completed=True))
    agg(ProgressEvent("push", "l2", status="Pushed", completed=True))
    snap = agg.snapshot()
    assert (snap.current, snap.total) == (1006, 1006)
    assert (snap.layers_done, snap.layers_total) == (3, 3)
    assert snap.layers["l3"].total is None


def test_aggregator_done_completes_every_layer() -> None:
    agg = ProgressAggregator()
    agg(ProgressEvent("download", "x", current=5, total=10, status="Downloading"))
    assert not agg.snapshot().finished
    agg(ProgressEvent("done", message="ok"))
    snap = agg.snapshot()
    assert snap.finished and snap.phase == "done" and snap.message == "ok"
    assert snap.current == snap.total == 10
    assert snap.layers_done == 1


def test_aggregator_tracks_build_steps() -> None:
    agg = ProgressAggregator()
    assert agg.snapshot().fraction is None
    agg(ProgressEvent("build", message="Step 2/4 : RUN x", step=2, steps=4))
    agg(ProgressEvent("build", message=" ---> Running in abc"))
    snap = agg.snapshot()
    assert (snap.step, snap.steps) == (2, 4)
    assert snap.message == " ---> Running in abc"
    assert snap.fraction == 0.25


def test_snapshot_is_immutable_and_detached() -> None:
    agg = ProgressAggregator()
    agg(ProgressEvent("download", "x", current=1, total=10))
    snap = agg.snapshot()
    with pytest.raises(TypeError):
        snap.layers["y"] = snap.layers["x"]  # type: ignore[index]
    agg(ProgressEvent("download", "y", current=1, total=10))
    assert list(snap.layers) == ["x"]


def test_aggregator_is_thread_safe() -> None:
    agg = ProgressAggregator()
    layers, steps = 8, 500

    def feed(i: int) -> None:
        for n in range(1, steps + 1):
            agg(ProgressEvent("download", f"l{i}", current=n, total=steps))
            agg.snapshot()
        agg(ProgressEvent("pull", f"l{i}", status="Pull complete", completed=True))

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(layers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = agg.snapshot()
    assert snap.events == layers * (steps + 1)
    assert (snap.current, snap.total) == (layers * steps, layers * steps)
    assert snap.layers_done == layers


def test_throttle_bounds_the_rate_with_a_fake_clock() -> None:
    clock = FakeClock()
    got: list[tuple[float, ProgressEvent]] = []
    throttle = Throttle(lambda e: got.append((clock(), e)), interval=0.1, clock=clock)
    for n in range(1000):  # one event a millisecond for one second
        throttle(ProgressEvent("download", "x", current=n, total=1000))
        clock.advance(0.001)
    assert 9 <= len(got) <= 11
    times = [t for t, _ in got]
    assert all(b - a >= 0.1 - 1e-9 for a, b in zip(times, times[1:], strict=False))
    assert throttle.delivered == len(got)
    assert throttle.pending is not None


def test_throttle_never_drops_the_final_event_and_delivers_the_last_state_first() -> None:
    clock = FakeClock()
    got: list[ProgressEvent] = []
    throttle = Throttle(got.append, interval=0.1, clock=clock)
    throttle(ProgressEvent("download", "x", current=1, total=3))
    throttle(ProgressEvent("download", "x", current=2, total=3))
    throttle(ProgressEvent("pull", "x", status="Pull complete", completed=True))
    throttle(ProgressEvent("done", message="pulled"))
    assert [e.phase for e in got] == ["download", "pull", "done"]
    assert got[1].completed  # the last state, not the coalesced middle one
    assert throttle.coalesced == 1
    assert throttle.pending is None


@pytest.mark.parametrize("final", ["done", "failed", "cancelled"])
def test_throttle_final_phases_pass_even_right_after_another_event(final: str) -> None:
    clock = FakeClock()
    got: list[ProgressEvent] = []
    throttle = Throttle(got.append, interval=10.0, clock=clock)
    throttle(ProgressEvent("upload", "x", current=1, total=2))
    throttle(ProgressEvent(final))
    assert [e.phase for e in got] == ["upload", final]


def test_throttle_flush_delivers_the_pending_event_once() -> None:
    clock = FakeClock()
    got: list[ProgressEvent] = []
    throttle = Throttle(got.append, interval=1.0, clock=clock)
    throttle(ProgressEvent("build", message="a"))
    throttle(ProgressEvent("build", message="b"))
    throttle(ProgressEvent("build", message="c"))
    assert [e.message for e in got] == ["a"]
    throttle.flush()
    throttle.flush()
    assert [e.message for e in got] == ["a", "c"]
    clock.advance(1.0)
    throttle(ProgressEvent("build", message="d"))
    assert [e.message for e in got] == ["a", "c", "d"]


def test_throttle_with_zero_interval_forwards_everything() -> None:
    got: list[ProgressEvent] = []
    throttle = Throttle(got.append, interval=0)
    for n in range(50):
        throttle(ProgressEvent("download", "x", current=n, total=50))
    assert len(got) == 50


def test_throttle_rejects_negative_interval() -> None:
    with pytest.raises(ValueError):
        Throttle(lambda e: None, interval=-1)


def test_throttle_from_many_threads_keeps_the_bound_and_the_final_event() -> None:
    got: list[ProgressEvent] = []
    throttle = Throttle(got.append, interval=0.05)

    def feed(i: int) -> None:
        for n in range(200):
            throttle(ProgressEvent("download", f"l{i}", current=n, total=200))

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    throttle(ProgressEvent("done"))
    assert got[-1].phase == "done"
    assert throttle.delivered == len(got)


def test_fan_out_calls_each_callback_in_order_and_skips_none() -> None:
    calls: list[str] = []
    agg = ProgressAggregator()
    callback = fan_out(lambda e: calls.append("a"), None, agg, lambda e: calls.append("b"))
    callback(ProgressEvent("download", "x", current=1, total=2))
    assert calls == ["a", "b"]
    assert agg.snapshot().current == 1
