"""Small pieces the forms and the browser share: sync holding, formatting, errors,
build-args parsing."""

from __future__ import annotations

import contextlib
import html
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import ipywidgets as widgets

from ..charts import human_bytes
from ..errors import RegistryError

__all__ = ["FormInputError", "parse_build_args", "held", "human_bytes", "ensure_shell",
           "describe_error", "status_html", "kv_table", "SpeedMeter", "BoundedLog"]

#: Colours of the status line by state.
STATE_COLORS = {"idle": "#555", "running": "#1f618d", "success": "#1e8449",
                "failed": "#c0392b", "cancelled": "#b9770e", "simulated": "#7d3c98"}


class FormInputError(RegistryError, ValueError):
    """A form field holds something the operation cannot use."""


def parse_build_args(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines to a dict; blank lines and ``#`` comments are skipped."""
    args: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise FormInputError(f"build args line {number} ({line!r}) is not KEY=VALUE",
                                 hint="Write one KEY=VALUE per line.")
        args[key.strip()] = value
    return args


@contextlib.contextmanager
def held(*items: widgets.Widget) -> Iterator[None]:
    """``hold_sync()`` on every widget: each sends at most one update on exit."""
    with contextlib.ExitStack() as stack:
        for item in items:
            stack.enter_context(item.hold_sync())
        yield


def ensure_shell() -> None:
    """Make sure an IPython shell exists (``Output.append_display_data`` formats with it).

    In a kernel this is the kernel's shell; elsewhere (tests, scripts) one is created
    here, on the calling (main) thread, rather than later on a worker.
    """
    from IPython.core.interactiveshell import InteractiveShell

    if not InteractiveShell.initialized():
        InteractiveShell.instance()


def describe_error(exc: BaseException, default_hint: str) -> tuple[str, str]:
    """(one-line message, what to do) for a status line."""
    if isinstance(exc, RegistryError):
        message, hint = exc.message, exc.hint or default_hint
    else:
        message = f"{type(exc).__name__}: {exc}"
        hint = "This looks like a bug in registry_nb; form.error holds the exception."
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return first, hint


def status_html(state: str, headline: str, detail: str = "") -> str:
    """The status line: a coloured headline and an optional second line."""
    color = STATE_COLORS.get(state, "#555")
    text = f'<span style="color:{color};font-weight:600">{html.escape(headline)}</span>'
    if detail:
        text += f'<br><span style="color:#444">{html.escape(detail)}</span>'
    return f'<div class="registry-nb-status" data-state="{state}">{text}</div>'


def kv_table(rows: dict[str, Any]) -> str:
    """A two-column HTML table of ``rows`` (values escaped; dicts nested)."""
    cells = []
    for key, value in rows.items():
        shown = kv_table(value) if isinstance(value, dict) else html.escape(str(value))
        cells.append(f'<tr><th style="text-align:left;padding:1px 1em 1px 0;'
                     f'white-space:nowrap;vertical-align:top">{html.escape(key)}</th>'
                     f'<td style="text-align:left;padding:1px 0">{shown}</td></tr>')
    return f'<table class="registry-nb-kv">{"".join(cells)}</table>'


class SpeedMeter:
    """Bytes per second over the last ``window`` seconds of samples."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, done: int, now: float | None = None) -> float | None:
        """Record ``done`` bytes so far; return the recent speed (None until known)."""
        now = time.monotonic() if now is None else now
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.popleft()
        first_t, first_b = self._samples[0]
        if now - first_t < 0.05:
            return None
        return max(done - first_b, 0) / (now - first_t)


class BoundedLog:
    """A log shown in an ``Output`` through ``append_stdout``, at most ``max_lines`` kept.

    ``add`` may be called for every event (it only queues); ``flush`` writes the
    queued lines in one append, and when the shown lines would pass the bound it
    replaces the output with the newest ``max_lines`` and a note of what was dropped.
    """

    def __init__(self, output: widgets.Output, max_lines: int = 400) -> None:
        self.output = output
        self.max_lines = max_lines
        self._tail: deque[str] = deque(maxlen=max_lines)
        self._pending: list[str] = []
        self._shown = 0
        self._total = 0

    def clear(self) -> None:
        """Forget everything and empty the output."""
        self._tail.clear()
        self._pending = []
        self._shown = 0
        self._total = 0
        self.output.outputs = ()

    def add(self, line: str) -> None:
        """Queue one line (thread-safe enough: list.append is atomic)."""
        self._pending.append(line.rstrip("\n"))

    @property
    def dropped(self) -> int:
        """How many old lines were pushed out by the bound."""
        return self._total - len(self._tail)

    @property
    def lines(self) -> list[str]:
        """The newest lines (up to ``max_lines``), flushed or not."""
        return [*self._tail, *self._pending][-self.max_lines:]

    def flush(self) -> None:
        """Write the queued lines to the output (call inside ``hold_sync``)."""
        new, self._pending = self._pending, []
        if not new:
            return
        self._tail.extend(new)
        self._total += len(new)
        if self._shown + len(new) <= self.max_lines:
            self.output.append_stdout("\n".join(new) + "\n")
            self._shown += len(new)
            return
        self.output.outputs = ()
        self.output.append_stdout(f"[… {self.dropped} earlier lines not shown]\n"
                                  + "\n".join(self._tail) + "\n")
        self._shown = len(self._tail)
