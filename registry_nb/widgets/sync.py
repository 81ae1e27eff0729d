"""SyncForm: mirror repositories from another registry into the form's registry.

The form is an :class:`~.operation.OperationForm` (worker thread, throttled redraws,
Cancel, errors as message and hint) around
:meth:`~registry_nb.registry.ContainerRegistry.sync_repositories`: **Preview** runs it
as a dry run (what would be copied, nothing written), **Start** copies. One bar follows
the sync's single progress stream (every blob of the sync is announced up front), and
the result is a table with one row per tag (and per signature, SBOM or attestation
carried along).
"""

from __future__ import annotations

import html
import re
import threading
from typing import Any

import ipywidgets as widgets
import pandas as pd
from IPython.display import HTML

from ..progress import ProgressCallback
from ..registry import ContainerRegistry
from ._common import FormInputError, held, human_bytes, status_html
from .operation import LABEL_STYLE, WIDE, OperationForm, required
from .tracking import SyncTracker, Tracker

__all__ = ["SyncForm", "sync_table_html"]

#: Rows shown in the result table (the whole frame is ``form.result["rows"]``).
MAX_TABLE_ROWS = 300
_STATUS_COLORS = {"copied": "#1e8449", "present": "#555", "missing": "#1f618d",
                  "failed": "#c0392b"}
_TABLE_STYLE = ("<style>.registry-nb-sync-rows th, .registry-nb-sync-rows td "
                "{padding: 2px 12px 2px 0; text-align: left !important; vertical-align: top}"
                ".registry-nb-sync-rows td.error {white-space: normal; color: #7b241c; "
                "padding-left: 1.5em; overflow-wrap: anywhere}"
                "</style>")
_COLUMNS = ("repository", "tag", "kind", "status", "digest", "bytes", "mounted")
#: A digest tag (fallback ``sha256-<hex>``, cosign ``sha256-<hex>.sig``): shown shortened.
_DIGEST_TAG = re.compile(r"^(sha256-[0-9a-f]{12})[0-9a-f]{52}")


def _words(text: str) -> list[str]:
    """Entries separated by commas or white space."""
    return [w for w in re.split(r"[\s,]+", text.strip()) if w]


def _tag_cell(tag: Any) -> str:
    if not isinstance(tag, str):
        return "<td>(by digest)</td>"
    shown = _DIGEST_TAG.sub(r"\1…", tag)
    title = f' title="{html.escape(tag)}"' if shown != tag else ""
    return f"<td{title}>{html.escape(shown)}</td>"


def sync_table_html(frame: pd.DataFrame, max_rows: int = MAX_TABLE_ROWS) -> str:
    """The result table: repository, tag, kind, status (coloured), digest, size, blobs
    mounted from another repository instead of sent; a failed
    row's error on a line of its own below it, the table's whole width."""
    if frame.empty:
        return "<i>no tags matched</i>"
    cells = []
    for row in frame.head(max_rows).itertuples():
        color = _STATUS_COLORS.get(row.status, "#555")
        digest = (f"<code>{html.escape(row.digest[:19])}…</code>"
                  if isinstance(row.digest, str) else "")
        size = human_bytes(int(row.bytes)) if row.bytes else ""
        mounted = int(getattr(row, "mounted", 0) or 0)
        cells.append(
            f"<tr data-status=\"{html.escape(row.status)}\">"
            f"<td>{html.escape(row.repository)}</td>{_tag_cell(row.tag)}"
            f"<td>{html.escape(row.kind)}</td>"
            f'<td style="color:{color};font-weight:600">{html.escape(row.status)}</td>'
            f"<td>{digest}</td><td>{size}</td><td>{mounted or ''}</td></tr>")
        if isinstance(row.error, str) and row.error:
            cells.append(f'<tr class="registry-nb-sync-error"><td class="error" '
                         f'colspan="{len(_COLUMNS)}">{html.escape(row.error)}</td></tr>')
    more = (f"<div><i>{len(frame) - max_rows} more rows in form.result['rows']</i></div>"
            if len(frame) > max_rows else "")
    head = "".join(f"<th>{h}</th>" for h in _COLUMNS)
    return (f'{_TABLE_STYLE}<table class="registry-nb-sync-rows"><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(cells)}</tbody></table>{more}")


class SyncForm(OperationForm):
    """Mirror repositories of ``source`` (a registry URL or a ContainerRegistry) into
    ``registry`` under the same names.

    Fields: source, repositories (separated by spaces or commas; empty: the source's
    whole catalog), tags (regular expressions separated by spaces; empty: every tag),
    platforms (e.g. ``linux/amd64``; empty: all) and referrers (carry signatures, SBOMs
    and attestations). :meth:`preview` (the Preview button) is a dry run, :meth:`start`
    (Start) copies; :meth:`wait` returns ``{"status", "copied", "present", "missing",
    "failed", "bytes", "rows"}`` with the frame of rows. A run whose tags partly failed
    ends in state ``failed`` (run it again: only what is left is copied).
    """

    kind = "sync"
    verb = "Sync"
    done_verb = "Synced"
    icon = "clone"

    def __init__(self, registry: ContainerRegistry, *, source: ContainerRegistry | str = "",
                 repositories: str | list[str] = "", tags: str | list[str] = "",
                 platforms: str | list[str] = "", referrers: bool = True, workers: int = 4,
                 **options: Any) -> None:
        options.setdefault("max_layer_bars", 0)  # one bar: the sync's blobs are many
        self.source_registry = source if isinstance(source, ContainerRegistry) else None
        shown = source.registry_host if isinstance(source, ContainerRegistry) else source
        self.workers = workers
        self.source = widgets.Text(value=shown, description="Source",
                                   placeholder="registry to copy from, e.g. 127.0.0.1:5000",
                                   style=LABEL_STYLE, layout=WIDE)
        self.repositories = widgets.Text(
            value=_joined(repositories, ", "), description="Repositories",
            placeholder="names, by spaces or commas; empty: the whole catalog",
            style=LABEL_STYLE, layout=WIDE)
        self.tags = widgets.Text(value=_joined(tags, " "), description="Tags",
                                 placeholder=r"regular expressions, e.g. ^v\d+ latest",
                                 style=LABEL_STYLE, layout=WIDE)
        self.platforms = widgets.Text(value=_joined(platforms, ", "), description="Platforms",
                                      placeholder="e.g. linux/amd64; empty: every platform",
                                      style=LABEL_STYLE, layout=WIDE)
        self.referrers = widgets.Checkbox(value=referrers, style=LABEL_STYLE, layout=WIDE,
                                          description="with signatures, SBOMs, attestations")
        self.preview_button = widgets.Button(description="Preview", icon="search",
                                             tooltip="List what a sync would copy; "
                                             "write nothing")
        self._dry_run_next = False
        super().__init__(registry, **options)
        self.run_button.description = "Start"
        self.run_button.tooltip = "Copy what the destination lacks"
        # the form's credentials are the destination's (the source's: the docker config)
        self.username.placeholder = "optional; for the registry copied into"
        self.preview_button.on_click(lambda _button: self.preview())

    def title(self) -> str:
        return "Mirror repositories into"

    def _inputs(self) -> list[widgets.Widget]:
        return [self.source, self.repositories, self.tags, self.platforms, self.referrers]

    def _extra_buttons(self) -> list[widgets.Button]:
        return [self.preview_button]

    def preview(self) -> bool:
        """Start a dry run (what a sync would copy); False if a run is in progress."""
        self._dry_run_next = True
        try:
            return self.start()
        finally:
            self._dry_run_next = False

    def _read(self) -> dict[str, Any]:
        return {"source": self.source.value, "repositories": self.repositories.value,
                "tags": self.tags.value, "platforms": self.platforms.value,
                "referrers": self.referrers.value, "dry_run": self._dry_run_next}

    def _new_tracker(self) -> Tracker:
        return SyncTracker()

    def _source_for(self, text: str, destination: ContainerRegistry) -> ContainerRegistry | str:
        url = required(text, "source registry")
        given = self.source_registry
        source: ContainerRegistry | str = \
            given if given is not None and url == given.registry_host else url
        host = source.registry_host if isinstance(source, ContainerRegistry) else \
            ContainerRegistry(url).registry_host
        if host == destination.registry_host:
            raise FormInputError(
                f"the source {url} is the registry the form copies into",
                hint="Type another registry as the source: a sync copies repositories "
                     "under the same names, so one registry into itself changes nothing.")
        return source

    def _operate(self, registry: ContainerRegistry, params: dict[str, Any],
                 progress: ProgressCallback, cancel: threading.Event) -> dict[str, Any]:
        source = self._source_for(params["source"], registry)
        frame = registry.sync_repositories(
            source, _words(params["repositories"]) or None,
            tags=params["tags"].split() or None,
            platforms=_words(params["platforms"]) or None, referrers=params["referrers"],
            progress=progress, workers=self.workers, cancel=cancel,
            dry_run=params["dry_run"])
        counts = frame["status"].value_counts()
        return {
            "status": "dry run" if params["dry_run"] else "synced",
            "source": source.registry_host if isinstance(source, ContainerRegistry)
            else source,
            "destination": registry.registry_host,
            **{status: int(counts.get(status, 0))
               for status in ("copied", "present", "missing", "failed")},
            "bytes": int(frame["bytes"].sum()) if not frame.empty else 0,
            "rows": frame,
        }

    def _result_state(self, result: dict[str, Any]) -> str:
        if result["failed"]:
            return "cancelled" if self.cancel_requested else "failed"
        return "success"

    def _show_outcome(self, tracker: Tracker, params: dict[str, Any],
                      registry: ContainerRegistry, result: dict[str, Any],
                      elapsed: float) -> None:
        """A status line and the table of rows."""
        state = self._result_state(result)
        headline, detail = _outcome(result, state, elapsed)
        with held(self.progress, self.transfer, self.status, self.result_panel):
            if state == "success":
                self.progress.value = self.progress.max
            self.progress.bar_style = {"success": "success", "cancelled": "warning"}.get(
                state, "danger")
            if result["status"] == "synced":
                self.transfer.value = tracker.transfer_text(speed=False)
            else:  # a dry run copies nothing: say what it found instead of "0 tags copied"
                self.transfer.value = (f"dry run · {result['missing']} to copy · "
                                       f"{result['present']} present")
            self.status.value = status_html(state, headline, detail)
            self.result_panel.append_display_data(HTML(sync_table_html(result["rows"])))


def _joined(value: str | list[str], separator: str) -> str:
    return value if isinstance(value, str) else separator.join(value)


def _outcome(result: dict[str, Any], state: str, elapsed: float) -> tuple[str, str]:
    """(headline, detail) of a finished run."""
    total = len(result["rows"])
    if total == 0:
        return (f"No tags matched in {result['source']}: nothing to copy.",
                "Check the repository names and the tag patterns (regular expressions, "
                "searched in each tag; empty: every tag).")
    if result["status"] == "dry run":
        headline = (f"Preview: {result['missing']} of {total} to copy "
                    f"({human_bytes(result['bytes'])} at most), {result['present']} present"
                    + (f", {result['failed']} failed" if result["failed"] else "") + ".")
        return headline, "Nothing was written; press Start to copy."
    moved = f"{human_bytes(result['bytes'])} moved"
    if state == "cancelled":
        return (f"Cancelled: {result['copied']} copied, {result['failed']} not done.",
                "What was copied stays; Start again copies only the rest.")
    if state == "failed":
        rows = result["rows"]
        first = rows[rows["status"] == "failed"]["error"].iloc[0]
        return (f"{result['failed']} of {total} failed ({result['copied']} copied, "
                f"{result['present']} present).",
                f"Start again: a second run copies only what is left. The first error: {first}")
    return (f"Synced {total} tags from {result['source']}: {result['copied']} copied, "
            f"{result['present']} present ({moved}).", f"in {elapsed:.1f} s")
