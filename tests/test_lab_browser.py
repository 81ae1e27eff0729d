"""The pull form in a real JupyterLab, driven by a real (headless) Chromium.

Starts JupyterLab on a free loopback port with a token and a temporary root
holding ``tests/notebooks/lab_pull_form.ipynb``, opens the notebook with
Playwright (Debian's ``/usr/bin/chromium``; no browser is ever downloaded), runs
all cells, clicks **Pull** in the rendered form and waits for the overall bar to
reach 100 % and the layer chart to appear. The screenshot's path is printed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import seed_image
from labdriver import KERNEL_READY, chromium_page, running_lab
from playwright import sync_api as playwright_api

NOTEBOOK = Path(__file__).resolve().parent / "notebooks" / "lab_pull_form.ipynb"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def lab(open_registry, unique_repo, docker_host, tmp_path) -> Iterator[dict]:
    """A running JupyterLab whose kernel sees the test registry, image and dockerd."""
    files = {f"layer{i}.bin": os.urandom(2_000_000) for i in range(3)}
    seed_image(open_registry, unique_repo, "1", files=files, layers=3)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    env = {
        "DOCKER_HOST": docker_host,
        "REGISTRY_NB_LAB_REGISTRY": open_registry.host,
        "REGISTRY_NB_LAB_IMAGE": unique_repo,
        "REGISTRY_NB_LAB_TAG": "1",
        "MPLBACKEND": "Agg",
    }
    with running_lab(root, tmp_path, env) as server:
        yield {"url": server.url(NOTEBOOK.name), "log": server.log,
               "image": f"{open_registry.host}/{unique_repo}:1"}


PROGRESS_FULL = """() => {
  const bar = document.querySelector('.registry-nb-pull .registry-nb-overall .progress-bar');
  return !!bar && bar.style.width === '100%';
}"""


def test_pull_form_in_jupyterlab(lab, docker_client):
    started = time.monotonic()
    shots = Path(tempfile.mkdtemp(prefix="registry-nb-lab-"))
    with playwright_api.sync_playwright() as pw, chromium_page(pw) as page:
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
    print(f"screenshot: {path}")
    assert docker_client.images.get(lab["image"]).tags == [lab["image"]]
    assert time.monotonic() - started < 120
