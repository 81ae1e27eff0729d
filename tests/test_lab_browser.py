"""The pull form in a real JupyterLab, driven by a real (headless) Chromium.

Starts JupyterLab on a free loopback port with a token and a temporary root
holding ``tests/notebooks/lab_pull_form.ipynb``, opens the notebook with
Playwright (Debian's ``/usr/bin/chromium``; no browser is ever downloaded), runs
all cells, clicks **Pull** in the rendered form and waits for the overall bar to
reach 100 % and the layer chart to appear. The screenshot's path is printed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import seed_image
from playwright import sync_api as playwright_api

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).resolve().parent / "notebooks" / "lab_pull_form.ipynb"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 90  # seconds for JupyterLab to answer (generous: first start builds caches)
STEP_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(open_registry, unique_repo, docker_host, tmp_path) -> Iterator[dict]:
    """A running JupyterLab whose kernel sees the test registry, image and dockerd."""
    files = {f"layer{i}.bin": os.urandom(2_000_000) for i in range(3)}
    seed_image(open_registry, unique_repo, "1", files=files, layers=3)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "DOCKER_HOST": docker_host,
        "REGISTRY_NB_LAB_REGISTRY": open_registry.host,
        "REGISTRY_NB_LAB_IMAGE": unique_repo,
        "REGISTRY_NB_LAB_TAG": "1",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "MPLBACKEND": "Agg",
    }
    args = [
        str(Path(sys.executable).parent / "jupyter"), "lab",
        "--ServerApp.open_browser=False", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    # no "Jupyter news?" toast over the form (and no request for news)
    labconfig = tmp_path / "jupyter-config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    if os.geteuid() == 0:
        args.append("--allow-root")
    log_path = tmp_path / "jupyter.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=root, start_new_session=True)
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
        yield {"url": f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", "log": log_path,
               "image": f"{open_registry.host}/{unique_repo}:1"}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        session.close()


KERNEL_READY = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const ctx = panel && panel.sessionContext;
  if (!ctx || !ctx.isReady || !panel.content || !panel.content.widgets) return false;
  const kernel = ctx.session && ctx.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""

PROGRESS_FULL = """() => {
  const bar = document.querySelector('.registry-nb-pull .registry-nb-overall .progress-bar');
  return !!bar && bar.style.width === '100%';
}"""


def test_pull_form_in_jupyterlab(lab, docker_client):
    if not CHROMIUM.exists():  # the test command installs it; never download a browser
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    started = time.monotonic()
    shots = Path(tempfile.mkdtemp(prefix="registry-nb-lab-"))
    with playwright_api.sync_playwright() as pw, \
            tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1400})
        page = context.new_page()
        page.set_default_timeout(STEP_TIMEOUT_MS)
        try:
            page.goto(lab["url"], wait_until="domcontentloaded")
            page.wait_for_function(KERNEL_READY, polling=500)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            form = page.locator(".registry-nb-pull")
            pull = form.locator("button", has_text="Pull")
            pull.wait_for(state="visible")
            assert form.locator(".registry-nb-overall").is_visible()
            pull.click()
            page.wait_for_function(PROGRESS_FULL, polling=200)
            chart = form.locator(".registry-nb-result img")
            chart.wait_for(state="visible")
            status = form.locator(".registry-nb-status")
            status.wait_for(state="visible")
            page.wait_for_function(
                "() => document.querySelector('.registry-nb-pull .registry-nb-status')"
                ".dataset.state === 'success'", polling=200)
            assert "Pulled" in status.inner_text()
            assert form.locator(".registry-nb-overall .progress-bar-success").count() == 1
            assert form.locator(".registry-nb-layer:visible").count() == 3
            assert chart.evaluate("img => img.naturalWidth") > 300
            form.scroll_into_view_if_needed()
            path = shots / "pull-form.png"
            page.screenshot(path=str(path), full_page=True)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            print(f"screenshot of the failure: {shots / 'failure.png'}")
            print(lab["log"].read_text()[-4000:])
            raise
        finally:
            context.close()
    print(f"screenshot: {path}")
    assert docker_client.images.get(lab["image"]).tags == [lab["image"]]
    assert time.monotonic() - started < 120
