"""A real JupyterLab and a real (headless) Chromium for the browser tests.

:func:`running_lab` starts JupyterLab on a free loopback port with a random token,
its own config, runtime and IPython folders, and the same settings overrides that
``scripts/lab.sh`` writes (``scripts/quiet_jupyterlab.py``: no news toast, no news
or update requests). :func:`chromium_page` opens Debian's ``/usr/bin/chromium``
through Playwright with a fresh profile (no browser is ever downloaded).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 90  # seconds for JupyterLab to answer (generous: first start builds caches)
STEP_TIMEOUT_MS = 60_000
REPO = Path(__file__).resolve().parents[1]

#: JS: the current notebook panel has a connected, idle kernel.
KERNEL_READY = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const ctx = panel && panel.sessionContext;
  if (!ctx || !ctx.isReady || !panel.content || !panel.content.widgets) return false;
  const kernel = ctx.session && ctx.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


@dataclass
class LabServer:
    """A running JupyterLab: ``url(path)`` opens a file under ``root``."""

    base: str
    token: str
    root: Path
    log: Path

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quiet_settings(settings_dir: Path, extra: dict[str, dict] | None) -> None:
    """The settings overrides lab.sh writes (loaded from scripts/, which is no package),
    plus ``extra`` ones (plugin id -> settings)."""
    spec = importlib.util.spec_from_file_location(
        "quiet_jupyterlab", REPO / "scripts" / "quiet_jupyterlab.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = module.write_overrides(settings_dir)
    if extra:
        overrides = json.loads(path.read_text())
        for plugin, values in extra.items():
            overrides.setdefault(plugin, {}).update(values)
        path.write_text(json.dumps(overrides))


@contextlib.contextmanager
def running_lab(root: Path, work: Path, env: dict[str, str], *,
                settings: dict[str, dict] | None = None) -> Iterator[LabServer]:
    """JupyterLab serving ``root``; ``env`` is added to the kernel's environment and
    ``settings`` (plugin id -> settings) to the overrides lab.sh writes."""
    port, token = free_port(), secrets.token_hex(16)
    settings_dir = work / "lab-settings"
    _quiet_settings(settings_dir, settings)
    full_env = {
        **os.environ, **env,
        "JUPYTER_CONFIG_DIR": str(work / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(work / "jupyter-runtime"),
        "IPYTHONDIR": str(work / "ipython"),
    }
    full_env.pop("JUPYTER_TOKEN", None)
    args = [
        str(Path(sys.executable).parent / "jupyter"), "lab",
        "--ServerApp.open_browser=False", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.app_settings_dir={settings_dir}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log_path = work / "jupyter.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=root, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    session = requests.Session()
    session.trust_env = False
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{log_path.read_text()}")
            try:
                if session.get(f"{base}/api/status", params={"token": token},
                               timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in {START_TIMEOUT} s:\n"
                            f"{log_path.read_text()}")
            time.sleep(0.3)
        yield LabServer(base=base, token=token, root=root, log=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        session.close()


@contextlib.contextmanager
def chromium_page(pw, *, width: int = 1280, height: int = 1400):
    """A Playwright page in a fresh headless Chromium profile."""
    if not CHROMIUM.exists():  # the test command installs it; never download a browser
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height})
        try:
            page = context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            yield page
        finally:
            context.close()
