"""ImageDiffView: two images compared (``ContainerRegistry.diff_images``), in tabs and a chart.

A and B are ``repository:tag`` (or ``repository@sha256:…``) in the view's registry, or
full references of any registry. **Compare** (or :meth:`ImageDiffView.compare`) runs
the diff on a worker thread; the view shows the summary, the layers (shared, added,
removed), files, packages and config, each a tab, and ``charts.diff_chart``. The
registry browser embeds one (its *Set as A* / *Set as B* buttons fill the fields).
Widgets are created on the main thread; the worker only sets values inside
``hold_sync()``. A newer comparison makes an older one's result be dropped.
"""

from __future__ import annotations

import html
import logging
import threading
from typing import Any

import ipywidgets as widgets
import pandas as pd
from IPython.display import Image

from ..charts import counted, diff_chart
from ..registry import ContainerRegistry
from ._common import FormInputError, describe_error, ensure_shell, held, human_bytes, kv_table
from .charts import figure_png

__all__ = ["ImageDiffView", "diff_summary_html", "DIFF_TABS"]

log = logging.getLogger(__name__)

#: The tabs, in order: their title and the ImageDiff attribute each shows.
DIFF_TABS = (("Summary", "summary"), ("Layers", "layers"), ("Files", "files"),
             ("Packages", "packages"), ("Config", "config"))
#: Headers stay on one line; values wrap at spaces, and the first column (a path, a
#: field name) anywhere, so the table fits the tab instead of being cut at its right edge.
_TABLE_STYLE = ("<style>.registry-nb-diff-table th, .registry-nb-diff-table td "
                "{padding: 2px 12px 2px 0; text-align: left !important; vertical-align: top;"
                " line-height: 1.4}"
                ".registry-nb-diff-table th {white-space: nowrap}"
                ".registry-nb-diff-table td:first-child {overflow-wrap: anywhere}"
                "</style>")
#: Column headers as a person reads them (the frames keep their snake_case names).
_HEADERS = {"size_bytes": "size", "size_bytes_a": "size A", "size_bytes_b": "size B",
            "size_change_bytes": "change", "mode_a": "mode A", "mode_b": "mode B",
            "version_a": "version A", "version_b": "version B", "index_a": "index in A",
            "index_b": "index in B", "in_shared_base": "in shared base", "diff_id": "diff ID",
            "other": "other side", "a": "A", "b": "B"}


def diff_summary_html(summary: dict[str, Any]) -> str:
    """The summary tab: what changed in one line, then sizes and layer counts."""
    line = (f"{counted(summary['files_added'], 'file')} added, {summary['files_removed']} "
            f"removed, {summary['files_changed']} changed; "
            f"{counted(summary['packages_changed'], 'package')} changed; "
            f"{counted(summary['shared_layers'], 'shared layer')} "
            f"({human_bytes(summary['shared_bytes'])}"
            + (", read)" if summary["shared_read"] else ", not read)"))
    change = summary["size_change_bytes"]
    shown = {
        "A": f"{summary['a']} ({summary['digest_a'][:19]}…)",
        "B": f"{summary['b']} ({summary['digest_b'][:19]}…)",
        "size": f"{human_bytes(summary['size_bytes_a'])} → "
                f"{human_bytes(summary['size_bytes_b'])} "
                f"({'+' if change >= 0 else '−'}{human_bytes(abs(change))})",
        "layers": f"{summary['layers_a']} → {summary['layers_b']} "
                  f"({summary['shared_layers']} shared, {summary['layers_read']} read)",
    }
    return (f'<div class="registry-nb-diff-line"><b>{html.escape(line)}</b></div>'
            + kv_table(shown))


def _signed_bytes(n: Any) -> str:
    """A size change: ``+8.19 kB``, ``−25 B``, ``0 B``; empty when unknown."""
    if n is None or pd.isna(n):
        return ""
    n = int(n)
    return _unbroken(("+" if n > 0 else "−" if n < 0 else "") + human_bytes(abs(n)))


def _unbroken(size: str) -> str:
    """``12.3 kB`` that never wraps between the number and its unit."""
    return size.replace(" ", "\u00a0")


def _frame_html(frame: pd.DataFrame, what: str, max_rows: int) -> str:
    if frame.empty:
        return f"<i>no {what} differ</i>"
    view = frame.head(max_rows).astype(object)
    for column in view.columns:
        if column == "size_change_bytes":
            view[column] = view[column].map(_signed_bytes)
        elif column.startswith("size") and "bytes" in column:
            view[column] = view[column].map(
                lambda n: _unbroken(human_bytes(int(n))) if pd.notna(n) else "")
        elif column in ("digest", "diff_id"):
            view[column] = view[column].map(
                lambda d: d[:19] + "…" if isinstance(d, str) else "")
        elif column == "other":  # the other side's file is in the shared base, not read
            view[column] = view[column].map(
                lambda o: "shared base, not read" if isinstance(o, str) and o == "base" else o)
    view = view.where(view.notna(), "")  # nothing shown where a side has no value
    view = view.rename(columns=_HEADERS)
    counts = ""
    if "status" in frame.columns:
        counts = ", ".join(f"{n} {status}" for status, n in
                           frame["status"].value_counts().sort_index().items())
    elif "changed" in frame.columns:  # the config: every field, and how many differ
        what = "config fields"
        counts = f"{int(frame['changed'].sum())} changed"
    more = (f"<div><i>first {max_rows} of {len(frame)} rows; the view's .diff has all"
            "</i></div>" if len(frame) > max_rows else "")
    head = f"<div><b>{len(frame)} {what}</b>" + (f": {counts}" if counts else "") + "</div>"
    table = view.to_html(index=False, escape=True, border=0, na_rep="",
                         classes="registry-nb-diff-table")
    return head + _TABLE_STYLE + table + more


class ImageDiffView(widgets.VBox):
    """Compare two images: fields A and B, a Compare button, five tabs and the chart.

    ``diff`` (the :class:`~registry_nb.audits.diff.ImageDiff`), ``chart_png`` and
    ``error`` can be read after :meth:`wait`; ``max_rows`` bounds each table.
    """

    def __init__(self, registry: ContainerRegistry, *, a: str = "", b: str = "",
                 max_rows: int = 200) -> None:
        ensure_shell()
        self.registry = registry
        self.max_rows = max_rows
        self.diff: Any = None
        self.chart_png: bytes | None = None
        self.error: BaseException | None = None
        self._generation = 0
        self._thread: threading.Thread | None = None
        style = {"description_width": "20px"}
        self.a = widgets.Text(value=a, description="A", placeholder="repository:tag",
                              layout=widgets.Layout(width="330px"), style=style)
        self.b = widgets.Text(value=b, description="B", placeholder="repository:tag",
                              layout=widgets.Layout(width="330px"), style=style)
        self.compare_button = widgets.Button(description="Compare", icon="exchange",
                                             tooltip="Compare A with B: layers, files, "
                                             "packages, config")
        self.status = widgets.HTML("")
        pages = [widgets.HTML("", layout=widgets.Layout(overflow="auto")) for _ in DIFF_TABS]
        self.tabs = widgets.Tab(children=pages,
                                titles=[title for title, _ in DIFF_TABS],
                                layout=widgets.Layout(display="none"))
        self.tabs.add_class("registry-nb-diff-tabs")
        self.chart = widgets.Output()
        self.chart.add_class("registry-nb-diff-chart")
        self.compare_button.on_click(lambda _button: self.compare())
        super().__init__(children=[
            widgets.HTML("<b>Compare two images</b>"),
            widgets.HBox([self.a, self.b, self.compare_button]),
            self.status, self.tabs, self.chart,
        ])
        self.add_class("registry-nb-diff")

    def compare(self, a: str | None = None, b: str | None = None) -> None:
        """Compare ``a`` with ``b`` (default: the fields) on a worker thread."""
        if a is not None:
            self.a.value = a
        if b is not None:
            self.b.value = b
        first, second = self.a.value.strip(), self.b.value.strip()
        self._generation += 1
        generation = self._generation
        self.diff, self.chart_png, self.error = None, None, None
        with held(self.status, self.tabs, self.tabs.layout, self.chart):
            self.tabs.layout.display = "none"
            self.chart.outputs = ()
            self.status.value = f"<i>Comparing {html.escape(first)} with " \
                                f"{html.escape(second)}…</i>"
        self._thread = threading.Thread(target=self._run, args=(first, second, generation),
                                        name="registry-nb-diff", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = 60) -> None:
        """Wait for the comparison in flight; TimeoutError after ``timeout`` seconds."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the comparison is still running after {timeout} s")

    def _run(self, a: str, b: str, generation: int) -> None:
        try:
            if not a or not b:
                raise FormInputError("compare needs two images, A and B",
                                     hint="Type repository:tag in both fields (or pick a "
                                          "tag in the browser and press Set as A / B).")
            diff = self.registry.diff_images(a, b)
            png = figure_png(diff_chart(diff))
            pages = [diff_summary_html(diff.summary)] + [
                _frame_html(getattr(diff, name), name, self.max_rows)
                for _, name in DIFF_TABS[1:]]
        except Exception as exc:  # shown as message and hint, never a traceback
            if generation == self._generation:
                log.debug("comparing %s with %s failed", a, b, exc_info=True)
                self.error = exc
                message, hint = describe_error(exc, "Check both names and compare again.")
                self.status.value = (f'<span style="color:#c0392b">Failed: '
                                     f"{html.escape(message)}</span><br>"
                                     f'<span style="color:#444">{html.escape(hint)}</span>')
            return
        if generation != self._generation:
            return
        self.diff, self.chart_png = diff, png
        with held(self.status, self.tabs, self.tabs.layout, self.chart, *self.tabs.children):
            for page, value in zip(self.tabs.children, pages, strict=True):
                page.value = value
            self.tabs.layout.display = "flex"
            self.status.value = f"<b>{html.escape(a)}</b> → <b>{html.escape(b)}</b>"
            self.chart.outputs = ()
            self.chart.append_display_data(Image(data=png, format="png"))
