"""The notebooks in a real JupyterLab, run by a real (headless) Chromium.

JupyterLab serves copies of ``notebooks/*.ipynb`` with the kernel pointed at the
open test registry (seeded with the demo images) and the project's dockerd. For
each notebook the test clears every output, runs all cells, waits until every code
cell has run, and asserts what a person would see:

- no cell shows an error, a traceback or anything on stderr;
- no output is a bare ``<Figure …>`` / ``<Axes …>`` repr instead of a picture;
- every chart cell (its source calls ``charts.<name>(…)``) holds a drawn ``img``
  (or ``svg``); in the forms notebook, each form's result panel holds its layer
  chart, and the registry browser draws one for a picked tag (for an index, of the
  platform picked); in the operations notebook (05), the SyncForm ends at 100 % with
  a row per tag and runs again from the page, and the browser compares two tags
  picked by hand (summary counts, Files and Packages tabs, the diff chart); in the
  supply-chain notebook (04), the verification table shows each tampered copy refused
  with its reason and each untampered one verified, one SBOM and one provenance per
  image however often it ran, digests shortened and every table within the page;
- no "Jupyter news" toast covers the page (the settings lab.sh writes).

Screenshots of every cell's outputs and of each form go to a temporary folder whose
path is printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from labdriver import chromium_page, running_lab
from playwright import sync_api as playwright_api

from registry_nb.demo import seed_demo_images

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHART_CALL = re.compile(r"\bcharts\.\w+\(")
BARE_REPR = re.compile(r"^\s*<(?:Figure|Axes|matplotlib\.)[^>]*>\s*$", re.MULTILINE)
RUN_TIMEOUT_MS = 240_000

pytestmark = pytest.mark.timeout(600)

#: JS prelude: the notebook panel of ``path`` (not whichever tab is current).
PANEL = """const panelFor = (path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main'))
    if (w.context && w.context.path === path && w.content && w.content.widgets) return w;
  return null;
};
const codeCells = (panel) => panel.content.widgets.filter(c => c.model.type === 'code');
"""

#: The panel's kernel is connected and idle.
READY = PANEL + """return (() => {
  const panel = panelFor(path);
  const ctx = panel && panel.sessionContext;
  const kernel = ctx && ctx.isReady && ctx.session && ctx.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
})();"""

#: Activate the panel and clear every output (execution counts go back to null).
CLEAR = PANEL + """return (async () => {
  const app = window.jupyterapp;
  app.shell.activateById(panelFor(path).id);
  await app.commands.execute('notebook:clear-all-cell-outputs');
})();"""

CLEARED = PANEL + """return codeCells(panelFor(path)).every(
  c => c.model.executionCount === null && c.model.outputs.length === 0);"""

RUN_ALL = PANEL + """return (() => {
  const app = window.jupyterapp;
  app.shell.activateById(panelFor(path).id);
  app.commands.execute('notebook:run-all-cells');
})();"""

#: 'done' when every code cell ran (counts were cleared, so any count is from this run)
#: and the kernel is idle; 'error' as soon as one failed.
RUN_FINISHED = PANEL + """return (() => {
  const panel = panelFor(path);
  const cells = codeCells(panel);
  if (cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error')))
    return 'error';
  const session = panel.sessionContext.session;
  const kernel = session && session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  return cells.every(c => c.model.executionCount !== null) ? 'done' : false;
})();"""

#: Every cell: its source, the outputs the kernel sent, and what the page shows.
CELLS = PANEL + """return panelFor(path).content.widgets.map((c, i) => {
  c.node.dataset.registryNbCell = String(i);
  const shown = Array.from(c.node.querySelectorAll('.jp-OutputArea-output'));
  return {
    index: i, type: c.model.type, source: c.model.sharedModel.getSource(),
    outputs: c.model.type === 'code' ? c.model.outputs.toJSON() : [],
    texts: shown.map(n => n.innerText),
    images: shown.flatMap(n => Array.from(n.querySelectorAll('img')))
                 .map(img => img.naturalWidth),
    svgs: shown.reduce((k, n) => k + n.querySelectorAll('svg.jp-RenderedSVG, '
                       + '.jp-RenderedSVGImage svg, [data-mime-type="image/svg+xml"] svg')
                       .length, 0),
  };
});"""


#: Where a form's log box is scrolled: does it overflow, and how far below the box's
#: bottom the content ends (0: the newest line is in view).
LOG_VIEW = """(form) => {
  const box = document.querySelector(form + ' .registry-nb-log');
  const content = box.firstElementChild;
  const outer = box.getBoundingClientRect(), inner = content.getBoundingClientRect();
  return {overflows: box.scrollHeight > box.clientHeight + 1,
          bottom_gap: inner.bottom - outer.bottom};
}"""


#: The rendered DataFrame tables of one cell: a list of rows (header -> cell text) each,
#: and whether the output area scrolls sideways (the table is wider than the page).
TABLES = """(index) => {
  const cell = document.querySelector(`[data-registry-nb-cell="${index}"]`);
  return Array.from(cell.querySelectorAll('.jp-OutputArea-output')).flatMap(out =>
    Array.from(out.querySelectorAll('table.dataframe')).map(table => {
      const head = Array.from(table.querySelectorAll('thead th')).map(th => th.innerText.trim());
      const rows = Array.from(table.querySelectorAll('tbody tr')).map(tr => {
        const cells = Array.from(tr.children).map(td => td.innerText.trim());
        return Object.fromEntries(head.map((h, i) => [h, cells[i]]));
      });
      return {rows, scrolls: out.scrollWidth > out.clientWidth + 1};
    }));
}"""


def js(body: str) -> str:
    """A page function of ``path`` from a body that ``return``s."""
    return f"(path) => {{ {body} }}"


@pytest.fixture(scope="module")
def lab(open_registry, docker_host, tmp_path_factory):
    """JupyterLab serving copies of the notebooks; the kernel sees the demo registry."""
    seed_demo_images(open_registry.host)  # idempotent
    work = tmp_path_factory.mktemp("notebooks-lab")
    root = work / "root"
    root.mkdir()
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(notebook, root / notebook.name)
    env = {"REGISTRY_NB_DEMO_REGISTRY": open_registry.host, "DOCKER_HOST": docker_host}
    # every cell rendered, on screen or not (JupyterLab's default skips off-screen ones)
    settings = {"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}}
    with running_lab(root, work, env, settings=settings) as server:
        yield server


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="registry-nb-notebooks-"))
    print(f"\nscreenshots: {folder}")
    return folder


def run_notebook(page, lab, name: str, shots: Path) -> list[dict]:
    """Open ``name``, clear it, run all cells; return :data:`CELLS` once all ran."""
    page.goto(lab.url(name) + "&reset", wait_until="domcontentloaded")  # a fresh workspace
    page.wait_for_function(js(READY), arg=name, polling=500)
    page.evaluate(js(CLEAR), name)
    page.wait_for_function(js(CLEARED), arg=name, polling=200)
    page.evaluate(js(RUN_ALL), name)
    try:
        state = page.wait_for_function(js(RUN_FINISHED), arg=name, polling=300,
                                       timeout=RUN_TIMEOUT_MS)
    except playwright_api.Error:
        page.screenshot(path=str(shots / f"{name}-stuck.png"))
        print(lab.log.read_text()[-3000:])
        raise
    cells = page.evaluate(js(CELLS), name)
    if state.json_value() == "error":
        page.screenshot(path=str(shots / f"{name}-error.png"))
        failed = [c for c in cells if any(o["output_type"] == "error" for o in c["outputs"])]
        pytest.fail(f"{name}: cell {failed[0]['index']} failed:\n{failed[0]['source']}\n"
                    + "\n".join(failed[0]["texts"])[-3000:])
    return cells


def check_cells(name: str, cells: list[dict]) -> list[dict]:
    """The assertions every notebook shares; returns the chart cells."""
    for cell in cells:
        stderr = [o.get("text", "") for o in cell["outputs"]
                  if o["output_type"] == "stream" and o.get("name") == "stderr"]
        assert not stderr, f"{name} cell {cell['index']} wrote to stderr:\n{''.join(stderr)}"
        for output in cell["outputs"]:
            data = output.get("data", {})
            plain = "".join(data.get("text/plain", ""))
            pictured = any(mime.startswith("image/") for mime in data)
            assert pictured or not BARE_REPR.search(plain), \
                f"{name} cell {cell['index']} sent only a repr, no picture: {plain!r}"
        for text in cell["texts"]:
            assert not BARE_REPR.search(text), \
                f"{name} cell {cell['index']} shows a repr, not a picture: {text!r}"
    charts = [c for c in cells if c["type"] == "code" and CHART_CALL.search(c["source"])]
    for cell in charts:
        drawn = [w for w in cell["images"] if w > 300]
        assert drawn or cell["svgs"], \
            f"{name} cell {cell['index']} should draw a chart; it shows {cell['texts']!r}"
    return charts


def shoot(page, cell: dict, path: Path) -> None:
    """A screenshot of one cell's outputs (scrolled into view first)."""
    outputs = page.locator(f'[data-registry-nb-cell="{cell["index"]}"] .jp-Cell-outputWrapper')
    outputs.scroll_into_view_if_needed()
    outputs.screenshot(path=str(path))


def assert_no_news_toast(page) -> None:
    assert page.get_by_text("official Jupyter news").count() == 0
    assert page.locator(".Toastify__toast").count() == 0, \
        page.locator(".Toastify__toast").all_inner_texts()


@pytest.mark.parametrize("name", ["01-registry-tour.ipynb", "02-image-audit.ipynb",
                                  "05-operate.ipynb"])
def test_notebook_charts_draw(lab, shots, name):
    with playwright_api.sync_playwright() as pw, chromium_page(pw) as page:
        cells = run_notebook(page, lab, name, shots)
        charts = check_cells(name, cells)
        assert charts, f"{name} should have chart cells (charts.<name>(...))"
        for cell in cells:  # every output, charts and tables, for a person to look at
            if cell["outputs"]:
                shoot(page, cell, shots / f"{name}-cell{cell['index']:02d}.png")
        assert_no_news_toast(page)
        page.screenshot(path=str(shots / f"{name}.png"))


def cell_with(cells: list[dict], text: str) -> dict:
    """The first code cell whose source holds ``text``."""
    return next(c for c in cells if c["type"] == "code" and text in c["source"])


def test_supply_chain_notebook_refuses_the_tampered_copies(lab, shots):
    """04 seeds supply/demo itself (fresh keys each run): the verification table shows
    every tampered signature refused with its reason, every untampered one verified."""
    name = "04-supply-chain.ipynb"
    with playwright_api.sync_playwright() as pw, chromium_page(pw) as page:
        cells = run_notebook(page, lab, name, shots)
        check_cells(name, cells)
        for cell in cells:
            if cell["outputs"]:
                shoot(page, cell, shots / f"{name}-cell{cell['index']:02d}.png")
        tables = {c["index"]: page.evaluate(TABLES, c["index"]) for c in cells
                  if c["type"] == "code" and re.search(r"^short\(", c["source"], re.M)}
        assert len(tables) == 6 and all(len(t) == 1 for t in tables.values()), tables
        for index, (table,) in tables.items():
            assert not table["scrolls"], f"{name} cell {index}: the table is wider than the page"
            text = " ".join(" ".join(row.values()) for row in table["rows"])
            assert not re.search(r"sha256[:-][0-9a-f]{64}", text), \
                f"{name} cell {index} shows a digest in full: {text[:300]}"
        (verification,) = tables[cell_with(cells, "signature_reason")["index"]]
        by_tag = {row["tag"]: row for row in verification["rows"]}
        for tag in ("cosign", "bundle", "notation", "buildkit"):
            assert by_tag[tag]["signature_verified"] == "True", by_tag[tag]
            assert by_tag[tag]["signature_reason"].startswith("verified"), by_tag[tag]
        for tag in ("cosign-tampered", "bundle-tampered", "notation-tampered"):
            row = by_tag[tag]
            assert (row["signed"], row["signature_verified"]) == ("True", "False"), row
            reason = row["signature_reason"]
            assert "does not verify" in reason and reason.endswith("."), row
            assert "..." not in reason and "…" not in reason, row  # in full, not cut
        assert by_tag["unsigned"]["signed"] == "False"
        # seeded again on every run: still one SBOM, one provenance, one signature
        (attached,) = tables[cell_with(cells, 'referrers(REPO, "cosign")')["index"]]
        kinds = sorted(row["kind"] for row in attached["rows"])
        assert kinds == ["provenance", "sbom", "signature"], attached["rows"]
        (rules,) = tables[cell_with(cells, '"tag", "findings"]')["index"]]
        findings = {row["tag"]: row["findings"].split(", ") for row in rules["rows"]}
        assert "attestation-not-verified" not in findings["cosign"], findings["cosign"]
        assert "signature-not-verified" in findings["cosign-tampered"]
        assert "verified without keys: 0" in "".join(
            cell_with(cells, "untrusted = ")["texts"])
        assert "fallback-tag ['scan-report.txt'] no findings" in "".join(
            cell_with(cells, "push_artifact")["texts"])
        assert_no_news_toast(page)
        page.screenshot(path=str(shots / f"{name}.png"))


def test_forms_notebook_draws_layer_charts(lab, shots):
    name = "03-build-push-pull.ipynb"
    with playwright_api.sync_playwright() as pw, chromium_page(pw) as page:
        cells = run_notebook(page, lab, name, shots)
        check_cells(name, cells)
        charts = page.locator(".registry-nb-result img")
        assert charts.count() == 3  # build, push, pull: each result shows its layers
        for i in range(3):
            assert charts.nth(i).evaluate("img => img.naturalWidth") > 300
        failed = page.locator('.registry-nb-status[data-state="failed"]')
        assert failed.count() == 0, failed.all_inner_texts()
        # the build's log scrolls and shows its newest line; its bar ends on the
        # registry's (compressed) size, the figure the result gives
        log_view = page.evaluate(LOG_VIEW, ".registry-nb-build")
        assert log_view["overflows"] and log_view["bottom_gap"] <= 2, log_view
        assert "compressed in the registry" in \
            page.locator(".registry-nb-build .registry-nb-transfer").inner_text()
        for form in ("build", "push", "pull"):
            result = page.locator(f".registry-nb-{form} .registry-nb-result")
            result.scroll_into_view_if_needed()
            page.locator(f".registry-nb-{form}").screenshot(path=str(shots / f"{name}-{form}.png"))

        browser = page.locator(".registry-nb-browser")
        browser.scroll_into_view_if_needed()
        repositories = browser.locator("select").nth(0)
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.registry-nb-browser select')[0]"
            ".options).some(o => o.value === 'demo/multiarch')", polling=300)
        repositories.select_option("demo/multiarch")
        tags = browser.locator("select").nth(1)
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.registry-nb-browser select')[1]"
            ".options).some(o => o.value === '1')", polling=300)
        tags.select_option("1")
        chart = browser.locator(".registry-nb-chart img")
        chart.wait_for(state="visible")
        assert chart.evaluate("img => img.naturalWidth") > 300
        # an index: the browser says so and picks a platform
        picker = browser.locator(".registry-nb-platform select")
        picker.wait_for(state="visible")
        assert picker.locator("option").all_inner_texts() == ["linux/amd64", "linux/arm64"]
        assert "Index of 2 platforms" in browser.inner_text()
        assert "linux/amd64, linux/arm64" in browser.locator(".registry-nb-tags").inner_text()
        picker.select_option("linux/arm64")
        browser.get_by_text("showing linux/arm64").wait_for()
        page.wait_for_function(
            "() => document.querySelector('.registry-nb-browser .registry-nb-chart img')",
            polling=200)
        assert browser.locator(".registry-nb-chart img").evaluate(
            "img => img.naturalWidth") > 300
        assert_no_news_toast(page)
        browser.screenshot(path=str(shots / f"{name}-browser.png"))


def test_operations_notebook_syncs_and_compares(lab, shots):
    """05: the SyncForm's run ends at 100 % with a row per tag; Start and Preview again
    from the page; the browser compares two tags picked by hand and draws the diff chart."""
    name = "05-operate.ipynb"
    with playwright_api.sync_playwright() as pw, chromium_page(pw) as page:
        cells = run_notebook(page, lab, name, shots)
        charts = check_cells(name, cells)
        assert charts, f"{name} should draw the diff chart"
        for cell in cells:
            if cell["outputs"]:
                shoot(page, cell, shots / f"{name}-cell{cell['index']:02d}.png")
        form = page.locator(".registry-nb-sync")
        form.scroll_into_view_if_needed()
        assert form.locator('.registry-nb-status[data-state="success"]').count() == 1
        assert form.locator(".registry-nb-overall .progress-bar").evaluate(
            "bar => bar.style.width") == "100%"
        assert form.locator(".registry-nb-sync-rows tbody tr").count() == 3
        assert form.locator('.registry-nb-sync-rows tr[data-status="copied"]').count() == 3
        form.screenshot(path=str(shots / f"{name}-sync.png"))
        # from the page: Start again copies back only ops/web:1, which the notebook deleted
        # from the mirror before its garbage collection; then a Preview finds all present
        form.get_by_role("button", name="Start").click()
        form.screenshot(path=str(shots / f"{name}-sync-running.png"))
        form.locator('.registry-nb-status[data-state="success"]',
                     has_text="1 copied, 2 present").wait_for()
        form.screenshot(path=str(shots / f"{name}-sync-again.png"))
        form.get_by_role("button", name="Preview").click()
        form.locator('.registry-nb-status[data-state="success"]',
                     has_text="Preview: 0 of 3 to copy").wait_for()

        browser = page.locator(".registry-nb-browser")
        browser.scroll_into_view_if_needed()
        # the notebook's own comparison (1.3 -> 1.5) drew its chart
        browser.locator(".registry-nb-diff-chart img").wait_for(state="visible")
        browser.locator("input").first.fill("ops/")  # the filter
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.registry-nb-browser select')[0]"
            ".options).some(o => o.value === 'ops/app')", polling=300)
        repositories, tags = browser.locator("select").nth(0), browser.locator("select").nth(1)
        repositories.select_option("ops/app")
        for tag, button in (("1.4", "Set as A"), ("1.5", "Set as B")):
            page.wait_for_function(
                "(tag) => Array.from(document.querySelectorAll('.registry-nb-browser select')[1]"
                ".options).some(o => o.value === tag)", arg=tag, polling=300)
            tags.select_option(tag)
            browser.locator(".registry-nb-shown", has_text=f"ops/app:{tag}").wait_for()
            page.wait_for_function(
                "(label) => Array.from(document.querySelectorAll('.registry-nb-browser button'))"
                ".some(b => b.innerText.trim() === label && !b.disabled)", arg=button,
                polling=200)
            browser.get_by_role("button", name=button).click()
        diff = browser.locator(".registry-nb-diff")
        assert diff.locator("input").nth(0).input_value() == "ops/app:1.4"
        assert diff.locator("input").nth(1).input_value() == "ops/app:1.5"
        diff.get_by_role("button", name="Compare").click()
        diff.get_by_text("ops/app:1.4 → ops/app:1.5").wait_for()
        # the SBOM attached to 1.5 is in its details
        assert "application/spdx+json" in browser.locator(".registry-nb-attachments").inner_text()
        summary = diff.locator(".registry-nb-diff-line").inner_text()
        assert "1 file added, 2 removed, 4 changed; 3 packages changed" in summary, summary
        assert diff.locator(".registry-nb-diff-chart img").evaluate(
            "img => img.naturalWidth") > 300
        diff.locator(".lm-TabBar-tab", has_text="Files").click()
        diff.get_by_text("7 files").wait_for()
        assert "/app/migrate.sh" in diff.inner_text()
        assert_no_news_toast(page)
        diff.screenshot(path=str(shots / f"{name}-browser-diff.png"))
        diff.locator(".lm-TabBar-tab", has_text="Packages").click()
        diff.get_by_text("openssl").wait_for()
        diff.screenshot(path=str(shots / f"{name}-diff-packages.png"))
