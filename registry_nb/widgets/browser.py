"""RegistryBrowser: repositories (filtered) -> tags table -> one tag's layers, config and
attachments; two tags compared.

A tag that is an index (several platforms) says so in the tags table and in its
details, and a platform picker chooses which image's layers and config to show.
The details list what is attached to the image (signatures, SBOMs, attestations:
``ContainerRegistry.referrers``). *Set as A* / *Set as B* put the tag shown (for an
index, the platform's manifest by digest) into the :class:`~.compare.ImageDiffView`
below, which compares them (``diff_images``: summary, layers, files, packages, config,
and the diff chart); the two may be of different repositories.

Every registry call runs on a worker thread; the widgets, created here on the
main thread, only get values set (inside ``hold_sync()``). The catalog is read
page by page and the list shows the first page while the rest loads, redrawn
at most every ``interval`` seconds. A newer request (another repository, a
refresh) makes older loads' results be dropped.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import ipywidgets as widgets
import pandas as pd
from IPython.display import Image

from ..charts import counted
from ..errors import RegistryError
from ..oci import ImageConfig, Index
from ..registry import ContainerRegistry
from ._common import describe_error, ensure_shell, held, human_bytes, kv_table
from .charts import figure_png, layer_chart
from .compare import ImageDiffView

__all__ = ["RegistryBrowser", "config_summary", "attachments_html"]

log = logging.getLogger(__name__)

#: Columns of the tags table, in order (from ``registry_images_frame``).
TABLE_COLUMNS = ("tag", "platforms", "digest", "size_bytes", "layer_count", "created",
                 "architecture", "os", "error")


def config_summary(config: ImageConfig) -> dict[str, Any]:
    """What the browser shows of a config: labels, env NAMES (never values), entrypoint,
    cmd, user, working dir, created, platform."""
    run = config.config
    return {
        "created": config.created.isoformat() if isinstance(config.created, datetime) else None,
        "platform": str(config.platform),
        "user": run.user or "(root)",
        "entrypoint": run.entrypoint,
        "cmd": run.cmd,
        "working_dir": run.working_dir,
        "env_names": sorted(run.env_dict),
        "labels": dict(run.labels),
    }


def _summary_html(summary: dict[str, Any]) -> str:
    shown = {
        "created": summary["created"] or "unknown",
        "platform": summary["platform"],
        "user": summary["user"],
        "entrypoint": " ".join(summary["entrypoint"]) if summary["entrypoint"] else "(none)",
        "cmd": " ".join(summary["cmd"]) if summary["cmd"] else "(none)",
        "working dir": summary["working_dir"] or "/",
        "env (names only)": ", ".join(summary["env_names"]) or "(none)",
    }
    labels = summary["labels"]
    table = kv_table(shown)
    label_html = kv_table(labels) if labels else "<i>no labels</i>"
    return f"{table}<div style=\"margin-top:4px\"><b>Labels</b></div>{label_html}"


_TABLE_STYLE = ("<style>.registry-nb-tags th, .registry-nb-tags td "
                "{padding: 2px 12px 2px 0; text-align: left !important; white-space: nowrap}"
                "</style>")
#: Columns of the attachments table (from ``referrers``).
ATTACHMENT_COLUMNS = ("kind", "format", "artifact_type", "found_by", "digest", "subject")


def attachments_html(frame: pd.DataFrame | None, problem: str = "") -> str:
    """The details' attachments: one row per signature, SBOM or attestation found."""
    title = '<div style="margin-top:4px"><b>Attachments</b></div>'
    if frame is None:
        return f"{title}<i>not read: {html.escape(problem)}</i>"
    if frame.empty:
        return f"{title}<i>none (no signature, SBOM or attestation found)</i>"
    view = pd.DataFrame({c: frame[c] for c in ATTACHMENT_COLUMNS if c in frame.columns})
    for column in ("digest", "subject"):
        if column in view:
            view[column] = view[column].map(
                lambda d: d[:19] + "…" if isinstance(d, str) else d)
    table = view.fillna("").to_html(index=False, escape=True, border=0,
                                    classes="registry-nb-tags registry-nb-attachments")
    return f"{title}{_TABLE_STYLE}{table}"


def _table_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<i>no tags</i>"
    view = pd.DataFrame({c: frame[c] for c in TABLE_COLUMNS if c in frame.columns})
    if "digest" in view:
        view["digest"] = view["digest"].map(lambda d: d[:19] + "…" if isinstance(d, str) else d)
    if "size_bytes" in view:
        view["size_bytes"] = view["size_bytes"].map(
            lambda n: human_bytes(n) if pd.notna(n) else "")
        view = view.rename(columns={"size_bytes": "size"})
    if "created" in view:
        view["created"] = view["created"].map(
            lambda t: t.strftime("%Y-%m-%d %H:%M") if pd.notna(t) else "")
    if "platforms" in view:  # an index: the platforms it holds
        view["platforms"] = view["platforms"].map(
            lambda p: ", ".join(map(str, p)) if isinstance(p, (list, tuple)) else "")
    view = view.fillna("")
    # a column with nothing in it (no index among the tags, no error) is not shown
    view = view[[c for c in view.columns if c not in ("platforms", "error")
                 or (view[c].astype(str) != "").any()]]
    return _TABLE_STYLE + view.to_html(index=False, escape=True, border=0,
                                       classes="registry-nb-tags")


class RegistryBrowser(widgets.VBox):
    """Browse a registry: filter repositories, see a repository's tags, pick a tag to see
    its layer chart, config summary and attachments; for an index, pick one of its
    platforms. ``set_a_button`` / ``set_b_button`` put the tag shown into ``comparison``
    (an :class:`~.compare.ImageDiffView`); :meth:`compare` compares two names at once.

    ``repositories``, ``tags`` (Selects), ``platform`` (a Dropdown shown for an
    index), ``filter`` (Text) and ``refresh_button`` are what a person uses;
    ``all_repositories``, ``frame`` (the tags DataFrame), ``summary`` and
    ``attachments`` (of the selected tag), ``chart_png`` and ``error`` can be read, and
    :meth:`wait` waits for the loads in flight. ``max_options`` bounds the list shown
    (filter to see the rest).
    """

    def __init__(self, registry: ContainerRegistry, *, page_size: int = 100,
                 max_options: int = 2000, interval: float = 0.25, autoload: bool = True) -> None:
        ensure_shell()
        self.registry = registry
        self.page_size = page_size
        self.max_options = max_options
        self.interval = interval
        self.all_repositories: list[str] = []
        self.catalog_complete = False
        self.frame: pd.DataFrame | None = None
        self.summary: dict[str, Any] | None = None
        self.chart_png: bytes | None = None
        self.attachments: pd.DataFrame | None = None
        self.shown_reference: str | None = None  # the tag shown, as the comparison names it
        self.error: BaseException | None = None
        self._generation = {"catalog": 0, "tags": 0, "details": 0}
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        self._options_lock = threading.RLock()
        self._quiet = False

        self.filter = widgets.Text(placeholder="type part of a name", description="Filter",
                                   continuous_update=True)
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.status = widgets.HTML("")
        self.repositories = widgets.Select(options=[], rows=14, description="Repositories",
                                           layout=widgets.Layout(width="360px"),
                                           style={"description_width": "90px"})
        self.tags = widgets.Select(options=[], rows=14, description="Tags",
                                   layout=widgets.Layout(width="260px"),
                                   style={"description_width": "40px"})
        self.platform = widgets.Dropdown(options=[], description="Platform",
                                         layout=widgets.Layout(width="360px", display="none"),
                                         style={"description_width": "90px"})
        self.platform.add_class("registry-nb-platform")
        self.tags_table = widgets.HTML("")
        self.details = widgets.HTML("")
        self.chart = widgets.Output()
        self.chart.add_class("registry-nb-chart")
        self.set_a_button = widgets.Button(description="Set as A", icon="arrow-down",
                                           disabled=True, tooltip="Compare this tag (A)")
        self.set_b_button = widgets.Button(description="Set as B", icon="arrow-down",
                                           disabled=True, tooltip="with this one (B)")
        self.comparison = ImageDiffView(registry)
        self.set_a_button.on_click(lambda _button: self._set_side(self.comparison.a))
        self.set_b_button.on_click(lambda _button: self._set_side(self.comparison.b))

        self.filter.observe(lambda _change: self._show_repositories(), names="value")
        self.repositories.observe(self._on_repository, names="value")
        self.tags.observe(self._on_tag, names="value")
        self.platform.observe(self._on_platform, names="value")
        self.refresh_button.on_click(lambda _button: self.refresh())
        super().__init__(children=[
            widgets.HTML(f"<b>Registry</b> <code>{html.escape(registry.registry_host)}</code>"),
            widgets.HBox([self.filter, self.refresh_button]),
            self.status,
            widgets.HBox([self.repositories, self.tags]),
            self.platform,
            self.tags_table,
            self.details,
            self.chart,
            widgets.HBox([self.set_a_button, self.set_b_button]),
            self.comparison,
        ])
        self.add_class("registry-nb-browser")
        if autoload:
            self.refresh()

    # ------------------------------------------------------------ public API

    def refresh(self) -> None:
        """Reload the catalog (and the selected repository's tags) on a worker thread."""
        gen = self._bump("catalog")
        self._set_status("Loading the catalog…")
        self._spawn("catalog", lambda: self._load_catalog(gen))
        repo = self.repositories.value
        if repo:
            self._request_tags(repo)

    def compare(self, a: str, b: str) -> None:
        """Compare two images (``repository:tag`` here, or full references) below."""
        self.comparison.compare(a, b)

    def wait(self, timeout: float | None = 30) -> None:
        """Wait until no load (nor comparison) is in flight; TimeoutError after
        ``timeout`` seconds."""
        self.comparison.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._threads_lock:
                running = [t for t in self._threads if t.is_alive()]
            if not running:
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"the browser is still loading after {timeout} s")
            running[0].join(left)

    @property
    def loading(self) -> bool:
        """True while some load is in flight."""
        with self._threads_lock:
            return any(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------ threads

    def _bump(self, kind: str) -> int:
        with self._threads_lock:
            self._generation[kind] += 1
            return self._generation[kind]

    def _current(self, kind: str, gen: int) -> bool:
        return self._generation[kind] == gen

    def _spawn(self, kind: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # shown in the status line, never escapes the thread
                log.debug("browser %s load failed", kind, exc_info=True)
                self.error = exc
                message, hint = describe_error(exc, "Press Refresh to try again.")
                with self.status.hold_sync():
                    self._set_status(f"Failed: {message}", hint, color="#c0392b")
            finally:
                with self._threads_lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"registry-nb-browser-{kind}", daemon=True)
        with self._threads_lock:
            self._threads.add(thread)
        thread.start()

    def _set_status(self, text: str, detail: str = "", color: str = "#1f618d") -> None:
        value = f'<span style="color:{color}">{html.escape(text)}</span>'
        if detail:
            value += f'<br><span style="color:#444">{html.escape(detail)}</span>'
        self.status.value = value

    # ------------------------------------------------------------ catalog

    def _load_catalog(self, gen: int) -> None:
        self.error = None
        names: list[str] = []
        last = 0.0
        for name in self.registry.client.catalog(page_size=self.page_size):
            if not self._current("catalog", gen):
                return
            names.append(name)
            # The first page shows at once; later pages at most every `interval` seconds.
            if len(names) % self.page_size == 0 and (
                    len(names) == self.page_size or time.monotonic() - last >= self.interval):
                last = time.monotonic()
                self._publish(names, gen, done=False)
        self._publish(names, gen, done=True)

    def _publish(self, names: list[str], gen: int, *, done: bool) -> None:
        with self._options_lock:
            if not self._current("catalog", gen):
                return
            self.all_repositories = list(names)
            self.catalog_complete = done
            with held(self.status, self.repositories):
                self._show_repositories()

    def _show_repositories(self) -> None:
        """Set the list from ``all_repositories`` and the filter, keeping the selection."""
        with self._options_lock:
            needle = self.filter.value.strip().lower()
            matches = [n for n in self.all_repositories if needle in n.lower()]
            shown = tuple(matches[: self.max_options])
            selected = self.repositories.value
            if shown != tuple(self.repositories.options):
                self._quiet = True
                try:
                    with self.repositories.hold_sync():
                        self.repositories.options = shown
                        self.repositories.value = selected if selected in shown else None
                finally:
                    self._quiet = False
            text = (f"{len(self.all_repositories):,} repositories"
                    if self.catalog_complete else
                    f"Loading the catalog… {len(self.all_repositories):,} repositories so far")
            if needle:
                text += f"; {len(matches):,} match {self.filter.value.strip()!r}"
            if len(matches) > len(shown):
                text += f"; showing the first {len(shown):,} (type to narrow the list)"
            self._set_status(text + ".")

    # ------------------------------------------------------------ tags

    def _on_repository(self, change: dict[str, Any]) -> None:
        if self._quiet or not change["new"]:
            return
        self._request_tags(change["new"])

    def _request_tags(self, repository: str) -> None:
        gen = self._bump("tags")
        self._bump("details")
        with held(self.tags, self.tags_table, self.details, self.chart, self.platform.layout):
            self.platform.layout.display = "none"
            self._quiet = True
            try:
                self.tags.options = ()
            finally:
                self._quiet = False
            self.tags_table.value = f"<i>Loading the tags of {html.escape(repository)}…</i>"
            self.details.value = ""
            self.chart.outputs = ()
        self._spawn("tags", lambda: self._load_tags(repository, gen))

    def _load_tags(self, repository: str, gen: int) -> None:
        frame = self.registry.registry_images_frame(repository, limit=None)
        if not self._current("tags", gen):
            return
        self.frame = frame
        tags = tuple(str(t) for t in frame["tag"].dropna()) if not frame.empty else ()
        with held(self.tags, self.tags_table):
            self._quiet = True
            try:
                self.tags.options = tags
                self.tags.value = None
            finally:
                self._quiet = False
            self.tags_table.value = (f"<b>{html.escape(repository)}</b>: "
                                     f"{counted(len(tags), 'tag')}" + _table_html(frame))

    # ------------------------------------------------------------ one tag

    def _on_tag(self, change: dict[str, Any]) -> None:
        if self._quiet or not change["new"]:
            return
        self._request_details(change["new"], None)  # an index: the default platform first

    def _on_platform(self, change: dict[str, Any]) -> None:
        if self._quiet or not change["new"] or not self.tags.value:
            return
        self._request_details(self.tags.value, change["new"])

    def _set_side(self, field: widgets.Text) -> None:
        if self.shown_reference:
            field.value = self.shown_reference

    def _request_details(self, tag: str, platform: str | None) -> None:
        repository = self.repositories.value
        if not repository:
            return
        gen = self._bump("details")
        self.shown_reference = None
        with held(self.details, self.chart, self.set_a_button, self.set_b_button):
            self.set_a_button.disabled = self.set_b_button.disabled = True
            shown = f"{repository}:{tag}" + (f" ({platform})" if platform else "")
            self.details.value = f"<i>Loading {html.escape(shown)}…</i>"
            self.chart.outputs = ()
        self._spawn("details", lambda: self._load_details(repository, tag, platform, gen))

    def _load_details(self, repository: str, tag: str, platform: str | None, gen: int) -> None:
        top = self.registry.client.get_manifest(repository, tag)
        platforms: list[str] = []
        header = ""
        shown = f"{repository}:{tag}"
        if isinstance(top, Index):
            chosen = top.select(platform)
            platform = str(chosen.platform)
            platforms = [str(p) for p in top.platforms]
            header = (f'<div class="registry-nb-index"><b>Index</b> of {len(platforms)} '
                      f"platforms ({html.escape(', '.join(platforms))}); showing "
                      f"<code>{html.escape(platform)}</code>: "
                      f"<code>{html.escape(chosen.digest[:19])}…</code></div>")
            shown = f"{repository}@{chosen.digest}"  # the platform's image, for a comparison
        heading = (f'<div class="registry-nb-shown"><b>{html.escape(repository)}:'
                   f"{html.escape(tag)}</b> <code>{html.escape(top.digest[:19])}…</code></div>")
        summary = config_summary(self.registry.image_config(repository, tag, platform=platform))
        frame = self.registry.layers_frame(repository, tag, platform=platform)
        title = f"{repository}:{tag}" + (f" ({platform})" if platforms else "")
        png = figure_png(layer_chart(frame, title=title))
        try:
            attached: pd.DataFrame | None = self.registry.referrers(repository, tag)
            problem = ""
        except RegistryError as exc:  # the rest of the details still shows
            attached, problem = None, describe_error(exc, "")[0]
        if not self._current("details", gen):
            return
        self.summary, self.chart_png, self.attachments = summary, png, attached
        self.shown_reference = shown
        with held(self.details, self.chart, self.platform, self.platform.layout,
                  self.set_a_button, self.set_b_button):
            self.set_a_button.disabled = self.set_b_button.disabled = False
            self._quiet = True
            try:
                if platforms:
                    if tuple(self.platform.options) != tuple(platforms):
                        self.platform.options = platforms
                    self.platform.value = platform
                self.platform.layout.display = "flex" if platforms else "none"
            finally:
                self._quiet = False
            self.details.value = heading + header + _summary_html(summary) + \
                attachments_html(attached, problem)
            self.chart.outputs = ()
            self.chart.append_display_data(Image(data=png, format="png"))
