"""The services a run uses: its own (started and stopped through scripts/services.py)
or the shared test services (smoke mode), plus the CPU time of a registry process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES_SCRIPT = ROOT / "scripts" / "services.py"

#: The full run's own services: the listing registry and the engine...
LISTING_STATE = {"REGISTRY_NB_STATE": "/tmp/registry-nb-bench",
                 "REGISTRY_NB_PORT_OPEN": "5100", "REGISTRY_NB_PORT_BASIC": "5101",
                 "REGISTRY_NB_PORT_TOKEN": "5102", "REGISTRY_NB_PORT_TOKEN_SERVICE": "5103"}
#: ...and a second open registry for transfers, so the listing's catalog stays
#: exactly 200 repositories.
TRANSFER_STATE = {"REGISTRY_NB_STATE": "/tmp/registry-nb-bench-transfer",
                  "REGISTRY_NB_PORT_OPEN": "5110", "REGISTRY_NB_PORT_BASIC": "5111",
                  "REGISTRY_NB_PORT_TOKEN": "5112", "REGISTRY_NB_PORT_TOKEN_SERVICE": "5113"}


@dataclass
class Services:
    """Where the run's registries and engine are."""

    listing: str  # host:port
    transfer: str  # host:port
    docker_host: str | None
    listing_pid: int | None  # the listing registry's process, for its CPU time
    data_dir: Path  # generated images, kept between runs
    started: list[dict[str, str]]  # states to stop at the end
    storage: Path | None = None  # the shared registry's storage (smoke runs clean up there)


def _services_json(state: str) -> dict:
    return json.loads((Path(state) / "services.json").read_text())


def _pid(state: str, service: str) -> int | None:
    try:
        return int((Path(state) / service / "pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _run_services(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, str(SERVICES_SCRIPT), *args], env={**os.environ, **env},
                   check=True, stdout=subprocess.DEVNULL)


def start_own(data_dir: Path | None = None) -> Services:
    """Start the benchmark's own registries and engine (idempotent; data is kept)."""
    _run_services(LISTING_STATE, "start", "open", "docker")
    _run_services(TRANSFER_STATE, "start", "open")
    listing = _services_json(LISTING_STATE["REGISTRY_NB_STATE"])
    transfer = _services_json(TRANSFER_STATE["REGISTRY_NB_STATE"])
    state = LISTING_STATE["REGISTRY_NB_STATE"]
    return Services(
        listing=listing["open"]["host"], transfer=transfer["open"]["host"],
        docker_host=listing["docker_host"], listing_pid=_pid(state, "registry-open"),
        data_dir=data_dir or Path(state) / "bench-data",
        started=[LISTING_STATE, TRANSFER_STATE],
    )


def shared(data_dir: Path) -> Services:
    """The running test services (``$REGISTRY_NB_STATE``), used as they are."""
    state = os.environ.get("REGISTRY_NB_STATE") or "/tmp/registry-nb-services"
    try:
        info = _services_json(state)
    except OSError as exc:
        raise SystemExit(f"the test services are not running ({exc}): run "
                         "`python scripts/services.py start`") from None
    return Services(listing=info["open"]["host"], transfer=info["open"]["host"],
                    docker_host=info.get("docker_host"), listing_pid=_pid(state, "registry-open"),
                    data_dir=data_dir, started=[],
                    storage=Path(info["open"]["storage"]) if "storage" in info["open"] else None)


def remove_repositories(services: Services, prefix: str) -> None:
    """Delete the repositories under ``prefix`` from the shared registry's storage (the
    API cannot remove a repository from the catalog; the tests clean up the same way)."""
    if services.storage is None or not prefix or "/" in prefix:
        return
    shutil.rmtree(services.storage / "docker" / "registry" / "v2" / "repositories" / prefix,
                  ignore_errors=True)


def stop(services: Services) -> None:
    """Stop what :func:`start_own` started."""
    for env in services.started:
        _run_services(env, "stop")


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (None when unreadable)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
