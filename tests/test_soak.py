"""A randomized, seeded, bounded soak: many operations under faults drawn at random.

Each step draws an operation of the fault matrix (listing, manifest, blob
download, upload, copy, save), a fault (or none), which request it strikes (the
operation's own data request, or the k-th request of any kind on either proxy)
and how often it fires, then runs the step with the matrix's checks. Steps are
counted as *completed* (every digest verified), *failed cleanly* (a typed
RegistryError, nothing partial left behind) or *lost or corrupt* (a wrong result,
a partial destination, an untyped exception or a step over the time bound), which
must stay 0. The counts are printed and written to ``soak.json`` in the test's
temp folder.

``REGISTRY_NB_SOAK_SEED`` and ``REGISTRY_NB_SOAK_STEPS`` change the seed (default
1) and the number of steps (default 200); a failing seed replays exactly the same
draws.
"""

from __future__ import annotations

import collections
import json
import os
import random
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_fault_matrix as matrix
from helpers import RegistryService

import registry_nb.remote.retry as retry_module
from registry_nb.remote.transport import Transport

SEED = int(os.environ.get("REGISTRY_NB_SOAK_SEED", "1"))
STEPS = int(os.environ.get("REGISTRY_NB_SOAK_STEPS", "200"))
#: Read timeout of every Transport in the soak (a stall lasts longer).
READ_TIMEOUT = 0.3
#: The whole soak must finish within this (a guard against runaway retries).
SOAK_BOUND = 0.75 * STEPS

#: Relative weights of the operations and of the faults drawn.
OP_WEIGHTS = {"catalog": 1, "tags": 2, "manifest": 3, "blob": 3, "upload": 3, "copy": 3,
              "save": 3}
FAULT_WEIGHTS = {"none": 6, "500": 1, "502": 2, "503": 2, "504": 1, "429": 2,
                 "429-retry-after": 1, "reset-before-headers": 3, "reset-mid-body": 3,
                 "truncated-body": 3, "corrupt-byte": 2, "stall": 2, "stall-mid-body": 2,
                 "redirect": 2}
#: How many times a fault fires (None: on every matching request).
TIMES = {1: 6, 2: 3, None: 1}


@pytest.fixture(scope="module")
def rig(basic_registry: RegistryService, token_registry: RegistryService,
        open_registry: RegistryService, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[matrix.Rig]:
    workdir = tmp_path_factory.mktemp("soak")
    built = matrix.build_rig(basic_registry, token_registry, open_registry, workdir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_CONFIG", str(workdir / "docker-config"))
        try:
            yield built
        finally:
            matrix.stop_rig(built)


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(Transport.__init__.__kwdefaults__, "timeout", (2.0, READ_TIMEOUT))
    monkeypatch.setattr(retry_module, "BACKOFF", 0.01)


def _pick(rng: random.Random, weights: dict[Any, int]) -> Any:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _plant_anywhere(rig: matrix.Rig, rng: random.Random, fault: str,
                    times: int | None) -> list[Any]:
    """Plant ``fault`` on the k-th request of any kind through one proxy."""
    proxy_name = rng.choice(["src", "dst"])
    side = rng.choice(["response", "request"])
    kwargs = matrix.FAULTS[fault].kwargs(side, rng.choice([0, 10, 100, 1000, 16000]),
                                         rig.recorder.url)
    if kwargs is None:  # no request-side form: strike the response instead
        kwargs = matrix.FAULTS[fault].kwargs("response", 100, rig.recorder.url)
    proxy = getattr(rig, proxy_name)
    return [proxy.add_fault(None, ".", skip=rng.randrange(0, 5), times=times, **kwargs)]


def _step(rig: matrix.Rig, rng: random.Random) -> dict[str, Any]:
    op = _pick(rng, OP_WEIGHTS)
    fault = _pick(rng, FAULT_WEIGHTS)
    if fault != "none" and not matrix.applicable(op, fault):
        fault = "none"
    times = _pick(rng, TIMES)
    anywhere = fault != "none" and rng.random() < 0.35
    skip = rng.choice([0, 0, 0, 0, 1])
    step: dict[str, Any] = {"op": op, "fault": fault, "times": times,
                            "where": "any request" if anywhere else "data request"}
    started = time.monotonic()
    try:
        plant = None
        if anywhere:
            def plant(r: matrix.Rig) -> list[Any]:
                return _plant_anywhere(r, rng, fault, times)

        record = matrix.run_case(rig, op, None if fault == "none" else fault, times,
                                 skip=skip, persistence=str(times), plant=plant)
        step["fired"] = record.fired
        step["outcome"] = "failed_cleanly" if record.outcome == "failed" else "completed"
        step["error"] = record.error
        if fault == "corrupt-byte" and not anywhere and skip == 0 \
                and record.outcome == "completed":
            step["outcome"] = "lost_or_corrupt"
            step["error"] = "a corrupted transfer completed"
    except matrix.UntypedError as exc:
        step["outcome"] = "untyped_error"
        step["error"] = str(exc)
    except AssertionError as exc:  # a wrong result, a partial destination, a leak, a hang
        step["outcome"] = "lost_or_corrupt"
        step["error"] = f"{exc}\n{traceback.format_exc(limit=3)}"
    step["seconds"] = round(time.monotonic() - started, 3)
    return step


def test_randomized_soak(rig: matrix.Rig, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    steps = [_step(rig, rng) for _ in range(STEPS)]
    elapsed = time.monotonic() - started

    # the source image survived everything, intact
    assert rig.basic_direct.get_manifest(rig.image.repo, matrix.TAG).digest == rig.image.digest
    for digest, size in rig.image.blobs.items():
        rig.basic_direct.read_blob(rig.image.repo, digest, size=size)

    counts = collections.Counter(s["outcome"] for s in steps)
    report = {
        "seed": SEED,
        "steps": STEPS,
        "seconds": round(elapsed, 1),
        "completed": counts["completed"],
        "failed_cleanly": counts["failed_cleanly"],
        "lost_or_corrupt": counts["lost_or_corrupt"],
        "untyped_error": counts["untyped_error"],
        "faults_drawn": sum(s["fault"] != "none" for s in steps),
        "faults_fired": sum(s.get("fired", 0) > 0 for s in steps),
        "slowest_step_seconds": max(s["seconds"] for s in steps),
        "by_operation": {op: dict(collections.Counter(s["outcome"] for s in steps
                                                      if s["op"] == op))
                         for op in OP_WEIGHTS},
        "by_fault": {fault: dict(collections.Counter(s["outcome"] for s in steps
                                                     if s["fault"] == fault))
                     for fault in FAULT_WEIGHTS},
        "steps_detail": steps,
    }
    out = tmp_path / "soak.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"\nsoak (seed {SEED}): {STEPS} operations in {report['seconds']} s, "
          f"{report['faults_drawn']} with a fault planted ({report['faults_fired']} fired): "
          f"{report['completed']} completed, "
          f"{report['failed_cleanly']} failed cleanly, {report['lost_or_corrupt']} lost or "
          f"corrupt, {report['untyped_error']} untyped errors; details in {out}")
    bad = [s for s in steps if s["outcome"] in ("lost_or_corrupt", "untyped_error")]
    assert not bad, json.dumps(bad[:5], indent=1)
    assert report["completed"] > STEPS // 3
    assert elapsed < SOAK_BOUND
