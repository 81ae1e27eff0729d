"""Ctrl-C during a transfer: a real ``registry-nb cp`` between two test registries on a
pseudo-terminal (so its tqdm bar draws), SIGINT once bytes move; one line, exit 130, no
traceback, and nothing tagged at the destination."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import requests
from helpers import RegistryService

from registry_nb import ContainerRegistry

SIZE = 96 * 1024 * 1024  # random bytes: gzip cannot shrink them


@pytest.fixture(scope="module")
def big_image(open_registry: RegistryService, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("big")
    with open(folder / "random.bin", "wb") as out:
        out.write(os.urandom(SIZE))
    repo = f"test/cli-interrupt-{os.urandom(3).hex()}"
    with ContainerRegistry(open_registry.host) as reg:
        reg.image_from_directory(folder, repo, "1")
    return f"{open_registry.host}/{repo}:1"


def _read_until(fd: int, process: subprocess.Popen, wanted: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
            if wanted in seen:
                return seen
    return seen


def _drain(fd: int) -> bytes:
    """What is left to read on the terminal after the process ended."""
    seen = b""
    while select.select([fd], [], [], 0.5)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_ctrl_c_during_a_copy(big_image: str, basic_registry: RegistryService,
                              tmp_path: Path) -> None:
    destination = f"{basic_registry.host}/test/cli-interrupted-{os.urandom(3).hex()}"
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "REGISTRY_NB_PASSWORD": basic_registry.password,
           "DOCKER_CONFIG": str(tmp_path), "COLUMNS": "100"}
    process = subprocess.Popen(
        [sys.executable, "-m", "registry_nb.cli", "cp", big_image, f"{destination}:1",
         "-u", basic_registry.username],
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    try:
        seen = _read_until(leader, process, b"MB/", timeout=60)  # the bar shows a rate
        assert b"copy:" in seen, seen.decode(errors="replace")
        assert process.poll() is None, "the copy ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        seen += _drain(leader)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    text = seen.decode(errors="replace")
    assert code == 130, text
    assert text.count("registry-nb: interrupted; nothing partial kept") == 1, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    repo = destination.split("/", 1)[1]
    answer = requests.get(f"{basic_registry.url}/v2/{repo}/tags/list",
                          auth=(basic_registry.username, basic_registry.password), timeout=10)
    assert answer.status_code == 404 or not answer.json().get("tags"), answer.text
