"""Interrupting a transfer from Python (Ctrl-C, or "interrupt the kernel" in JupyterLab).

A real process saves a 96 MiB image from the open test registry into an OCI layout and
gets SIGINT once bytes move: it ends with OperationCancelled ("interrupted; nothing
partial kept"), no frame of the HTTP libraries in what it prints, and a layout with no
image and no temporary file. IPython renders the error as one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import RegistryService

from registry_nb import ContainerRegistry
from registry_nb.errors import OperationCancelled
from registry_nb.interrupt import INTERRUPTED

SIZE = 96 * 1024 * 1024

SCRIPT = """
import sys
from registry_nb import ContainerRegistry
reg = ContainerRegistry(sys.argv[1])
def progress(event):
    if event.current and event.current > 8 * 1024 * 1024:
        print("moving", flush=True)
reg.save_image(sys.argv[2], "1", sys.argv[3], progress=progress)
print("finished", flush=True)
"""


@pytest.fixture(scope="module")
def big_repo(open_registry: RegistryService, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("big")
    (folder / "random.bin").write_bytes(os.urandom(SIZE))
    repo = f"test/interrupt-{os.urandom(3).hex()}"
    with ContainerRegistry(open_registry.host) as reg:
        reg.image_from_directory(folder, repo, "1")
    return repo


def test_sigint_during_save_stops_cleanly_and_keeps_nothing(open_registry, big_repo,
                                                            tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, open_registry.host, big_repo, str(layout)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.stdout.readline().strip() != "moving":
        pass
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, (out, err)
    assert "finished" not in out
    assert f"OperationCancelled: {INTERRUPTED}" in err
    for library in ("urllib3", "requests", "http/client", "ssl.py", "socket.py"):
        assert library not in err, err
    assert "KeyboardInterrupt" not in err
    leftovers = [p for p in layout.rglob("*") if p.is_file() and p.name != "oci-layout"]
    assert all(not p.name.startswith(".tmp-") for p in leftovers), leftovers
    index = layout / "index.json"
    assert not index.exists() or '"1"' not in index.read_text()


def test_ipython_shows_a_cancellation_as_one_line() -> None:
    error = OperationCancelled(INTERRUPTED)
    assert error._render_traceback_() == [f"OperationCancelled: {INTERRUPTED}"]
