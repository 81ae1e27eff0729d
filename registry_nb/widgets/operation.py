"""The base of every form: a worker thread per form, live progress, cancel, outcome.

Threading rules (what keeps a kernel's widgets sane): every widget is created on
the thread that builds the form or clicks its button (the kernel's main thread);
the worker only sets values, inside ``hold_sync()``, at most once per
``interval`` seconds (:class:`~registry_nb.progress.Throttle`) plus a final
redraw; its output goes through ``Output.append_stdout`` and
``append_display_data``, never ``with output:``.

The push, pull and build forms (:mod:`.forms`) and the sync form (:mod:`.sync`)
are built on :class:`OperationForm`.
"""

from __future__ import annotations

import html
import logging
import threading
import time
import traceback
from typing import Any, ClassVar

import ipywidgets as widgets
import pandas as pd
from IPython.display import HTML, Image

from ..errors import BuildError, OperationCancelled, RegistryError
from ..progress import ProgressCallback, ProgressEvent, Throttle
from ..registry import ContainerRegistry
from ..remote.credentials import RegistryCredentials
from ._common import (
    BoundedLog,
    FormInputError,
    describe_error,
    ensure_shell,
    held,
    human_bytes,
    kv_table,
    status_html,
)
from .charts import figure_png, layer_chart
from .tracking import LayerRow, Tracker

__all__ = ["OperationForm", "WIDE", "LABEL_STYLE", "required"]

log = logging.getLogger(__name__)

#: The layout and label style of a form's text fields.
WIDE = widgets.Layout(width="420px")
LABEL_STYLE = {"description_width": "110px"}
#: The log box is a column-reverse flex box (see ``log_output``); its one child (the
#: output area) must keep its height for the box to scroll instead of squeezing it.
_LOG_STYLE = "<style>.registry-nb-log > * {flex-shrink: 0}</style>"


class OperationForm(widgets.VBox):
    """Base of the push, pull and build forms (see the module doc for the threading rules).

    ``run_button.click()`` (or :meth:`start`) runs the operation on a worker
    thread; :meth:`wait` returns its result dict or raises what it raised;
    ``result``, ``error``, ``state`` and ``progress`` can be read at any time.
    ``progress=`` adds a listener that sees every :class:`ProgressEvent`.
    Credentials typed into ``username``/``password`` are used for one run only: the
    password box is emptied when the run starts. A password without a username is
    sent as a registry token.
    """

    kind: ClassVar[str] = "operation"
    verb: ClassVar[str] = "Run"
    done_verb: ClassVar[str] = "Done"
    icon: ClassVar[str] = "play"

    def __init__(self, registry: ContainerRegistry, *, progress: ProgressCallback | None = None,
                 interval: float = 0.1, max_log_lines: int = 400,
                 max_layer_bars: int = 24) -> None:
        ensure_shell()
        self.registry = registry
        self.listener = progress
        self.interval = interval
        self.max_layer_bars = max_layer_bars
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.state = "idle"
        self.run_count = 0
        self.redraws = 0
        self.chart_png: bytes | None = None
        self._lock = threading.Lock()
        self._running = False
        self._done = threading.Event()
        self._done.set()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._rows: list[LayerRow] = []

        self.username = widgets.Text(description="Username", placeholder="optional",
                                     style=LABEL_STYLE, layout=WIDE)
        self.password = widgets.Password(description="Password",
                                         placeholder="optional; not kept after use",
                                         style=LABEL_STYLE, layout=WIDE)
        self.run_button = widgets.Button(description=self.verb, button_style="primary",
                                         icon=self.icon, tooltip=f"{self.verb} the image")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True,
                                            tooltip="Stop after the current progress event")
        self.progress = widgets.FloatProgress(value=0, min=0, max=100, description="Overall",
                                              style=LABEL_STYLE,
                                              layout=widgets.Layout(width="420px"))
        self.progress.add_class("registry-nb-overall")
        self.transfer = widgets.Label("")
        self.transfer.add_class("registry-nb-transfer")
        self.layers_box = widgets.VBox([])
        self.layers_more = widgets.Label("", layout=widgets.Layout(display="none"))
        self.status = widgets.HTML(status_html("idle", "Ready."))
        # column-reverse: the browser keeps a scrolled box's view at its end, so the
        # log follows its newest line (until the reader scrolls up to read)
        self.log_output = widgets.Output(layout=widgets.Layout(
            max_height="180px", overflow="auto", border="1px solid #ddd", display="flex",
            flex_flow="column-reverse"))
        self.log_output.add_class("registry-nb-log")
        self.result_panel = widgets.Output()
        self.result_panel.add_class("registry-nb-result")
        self._log = BoundedLog(self.log_output, max_log_lines)

        self.run_button.on_click(lambda _button: self.start())
        self.cancel_button.on_click(lambda _button: self.cancel())
        super().__init__(children=[
            widgets.HTML(f"{_LOG_STYLE}<b>{html.escape(self.title())}</b> "
                         f"<code>{html.escape(registry.registry_host or 'docker.io')}</code>"),
            *self._inputs(),
            self.username, self.password,
            widgets.HBox([self.run_button, *self._extra_buttons(), self.cancel_button]),
            widgets.HBox([self.progress, self.transfer]),
            self.layers_box, self.layers_more,
            self.status,
            widgets.Label("Log"), self.log_output,
            self.result_panel,
        ])
        self.add_class("registry-nb-form")
        self.add_class(f"registry-nb-{self.kind}")

    # ------------------------------------------------------------ subclass API

    def title(self) -> str:
        """The heading shown above the inputs."""
        return f"{self.verb} an image"

    def _inputs(self) -> list[widgets.Widget]:
        """The operation's own input widgets (created in the subclass's __init__)."""
        return []

    def _extra_buttons(self) -> list[widgets.Button]:
        """Buttons that start a run too (between Run and Cancel; disabled while running)."""
        return []

    def _read(self) -> dict[str, Any]:
        """Copy the input values (main thread) for the worker."""
        return {}

    def _operate(self, registry: ContainerRegistry, params: dict[str, Any],
                 progress: ProgressCallback, cancel: threading.Event) -> dict[str, Any]:
        raise NotImplementedError

    def _chart_target(self, params: dict[str, Any]) -> tuple[str, str]:
        return params["name"], params["tag"]

    def _describe(self, result: dict[str, Any]) -> str:
        return f"{self.done_verb} {result.get('image', '')}"

    def _result_state(self, result: dict[str, Any]) -> str:
        """The form's ``state`` after a run that returned ``result``."""
        return "simulated" if result.get("status") == "simulated" else "success"

    def _stored_size(self, result: dict[str, Any]) -> int | None:
        """The compressed bytes the registry holds for the result (push, build), else None."""
        return None

    # ------------------------------------------------------------ public API

    @property
    def log_text(self) -> str:
        """The log's newest lines (at most ``max_log_lines``) as one string."""
        return "\n".join(self._log.lines)

    @property
    def running(self) -> bool:
        """True while a run is in progress."""
        return self._running

    @property
    def cancel_requested(self) -> bool:
        """True once Cancel was pressed (or :meth:`cancel` called) during the latest run."""
        return self._cancel.is_set()

    def start(self) -> bool:
        """Start a run on a worker thread; False (and nothing started) if one is running."""
        with self._lock:
            if self._running:
                return False
            self._running = True
        params = self._read()
        credentials = self._take_credentials()
        self._cancel = threading.Event()
        self._done.clear()
        self.result = None
        self.error = None
        self.chart_png = None
        self.state = "running"
        self.run_count += 1
        self._ensure_rows()
        starters = [self.run_button, *self._extra_buttons()]
        with held(self.progress, self.transfer, self.status, *starters,
                  self.cancel_button, self.layers_more, self.log_output, self.result_panel):
            for row in self._rows:
                row.hide()
            self.layers_more.layout.display = "none"
            self.progress.value = 0
            self.progress.bar_style = "info"
            self.progress.description = "Overall"
            self.transfer.value = ""
            self._log.clear()
            self.result_panel.outputs = ()
            self.status.value = status_html("running", f"{self.verb}: starting…")
            for button in starters:
                button.disabled = True
            self.cancel_button.disabled = False
        self._thread = threading.Thread(target=self._work, args=(params, credentials),
                                        name=f"registry-nb-{self.kind}-form", daemon=True)
        self._thread.start()
        return True

    def cancel(self) -> None:
        """Ask the running operation to stop at its next progress event."""
        if not self._running or self._cancel.is_set():
            return
        self._cancel.set()
        with held(self.status, self.cancel_button):
            self.cancel_button.disabled = True
            self.status.value = status_html("running", "Cancelling…",
                                            "stopping at the next progress event")

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the run; return its result dict or raise what the operation raised.

        Raises :class:`TimeoutError` if it is still running after ``timeout`` seconds.
        """
        if self.run_count == 0:
            raise RuntimeError("nothing has run yet: click the run button (or call start())")
        if not self._done.wait(timeout):
            raise TimeoutError(f"the {self.kind} is still running after {timeout} s")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    # ------------------------------------------------------------ internals

    def _take_credentials(self) -> RegistryCredentials | None:
        """Credentials for this run; the password box is emptied at once."""
        secret = self.password.value
        if secret:
            self.password.value = ""
        user = self.username.value.strip()
        if not secret:
            return None
        url = self.registry.registry_url
        if user:
            return RegistryCredentials(username=user, password=secret, registry_url=url)
        return RegistryCredentials(token=secret, registry_url=url)

    def _registry_for(self, credentials: RegistryCredentials | None) -> ContainerRegistry:
        """The form's registry, or a copy of it with this run's credentials."""
        base = self.registry
        if credentials is None:
            return base
        return base.with_credentials(credentials)

    def _ensure_rows(self) -> None:
        """Create the layer bars once, on the calling (main) thread; the worker shows them."""
        if not self._rows:
            self._rows = [LayerRow() for _ in range(self.max_layer_bars)]
            self.layers_box.children = [row.box for row in self._rows]

    def _new_tracker(self) -> Tracker:
        return Tracker()

    def _work(self, params: dict[str, Any], credentials: RegistryCredentials | None) -> None:
        """The worker thread: run, redraw (throttled), then show the outcome."""
        tracker = self._new_tracker()
        throttle = Throttle(lambda _event: self._redraw(tracker), self.interval)
        registry = self.registry
        started = time.monotonic()

        def on_event(event: ProgressEvent) -> None:
            tracker.update(event)
            line = tracker.log_line(event)
            if line:
                self._log.add(line)
            throttle(event)
            if self.listener is not None:
                try:
                    self.listener(event)
                except Exception:  # a listener's bug never stops the operation
                    log.exception("progress listener failed")

        result: dict[str, Any] | None = None
        error: BaseException | None = None
        try:
            registry = self._registry_for(credentials)
            credentials = None
            result = self._operate(registry, params, on_event, self._cancel)
        except BaseException as exc:  # shown in the form, re-raised by wait()
            error = exc
        if error is None and not isinstance(result, dict):
            error = TypeError(f"the {self.kind} returned {type(result).__name__}, not a dict")
        try:
            throttle.flush()
            self._finish(tracker, params, registry, result, error, time.monotonic() - started)
        except Exception:  # the outcome still reaches result/error below
            log.exception("the %s form could not show its outcome", self.kind)
        finally:
            if error is not None:
                self.state = "cancelled" if isinstance(error, OperationCancelled) else "failed"
            else:
                assert result is not None
                self.state = self._result_state(result)
            self.result = None if error is not None else result
            self.error = error
            if registry is not self.registry:
                try:
                    registry.client.close()
                except Exception:
                    log.debug("closing the run's registry client failed", exc_info=True)
            starters = [self.run_button, *self._extra_buttons()]
            with held(*starters, self.cancel_button):
                for button in starters:
                    button.disabled = False
                self.cancel_button.disabled = True
            self._running = False
            self._done.set()

    def _redraw(self, tracker: Tracker, final: bool = False) -> None:
        """Set the live widgets from the tracker (worker thread, inside hold_sync)."""
        self.redraws += 1
        snap = tracker.layer_snapshot()
        layers = list(snap.layers.values())
        shown = layers[: len(self._rows)]
        row_widgets = [w for row in self._rows[: len(shown)] for w in row.widgets]
        with held(self.progress, self.transfer, self.status, self.layers_more,
                  self.layers_more.layout, self.log_output, *row_widgets):
            fraction = tracker.fraction()
            if fraction is not None:
                self.progress.value = round(100.0 * fraction, 1)
            self.transfer.value = tracker.transfer_text()
            for row, layer in zip(self._rows, shown, strict=False):
                row.show(layer)
            extra = len(layers) - len(shown) if self._rows else 0  # no bars, no "more"
            self.layers_more.value = (f"+ {extra} more layers (counted in the overall bar)"
                                      if extra > 0 else "")
            self.layers_more.layout.display = "flex" if extra > 0 else "none"
            if not final:
                if self._cancel.is_set():
                    self.status.value = status_html("running", "Cancelling…",
                                                    "stopping at the next progress event")
                else:
                    self.status.value = status_html("running", f"{self.verb}: "
                                                    f"{tracker.headline()}")
            self._log.flush()

    def _finish(self, tracker: Tracker, params: dict[str, Any], registry: ContainerRegistry,
                result: dict[str, Any] | None, error: BaseException | None,
                elapsed: float) -> None:
        """Show the outcome: an error as its message and hint, else :meth:`_show_outcome`."""
        self._redraw(tracker, final=True)
        if error is not None:
            self._show_error(error)
            return
        assert result is not None
        self._show_outcome(tracker, params, registry, result, elapsed)

    def _show_outcome(self, tracker: Tracker, params: dict[str, Any],
                      registry: ContainerRegistry, result: dict[str, Any],
                      elapsed: float) -> None:
        """A run's result: success (with the layer chart) or simulated."""
        if result.get("status") == "simulated":
            with held(self.progress, self.status, self.result_panel):
                self.progress.bar_style = "warning"
                self.progress.description = "Simulated"
                self.status.value = status_html(
                    "simulated", f"Simulated: nothing was {self.done_verb.lower()}.",
                    str(result.get("message", "")))
                self.result_panel.append_display_data(HTML(
                    "<p><b>Simulated result</b> (no Docker engine): "
                    f"{html.escape(str(result.get('message', '')))}</p>" + kv_table(result)))
            return
        speed = tracker.average_speed(elapsed)
        with held(self.progress, self.transfer, self.status, self.result_panel):
            self.progress.value = self.progress.max
            self.progress.bar_style = "success"
            self.progress.description = "Overall"
            if speed:
                self.transfer.value = f"{tracker.transfer_text(speed=False)} · " \
                                      f"avg {human_bytes(speed)}/s"
            self.status.value = status_html("success", self._describe(result),
                                            f"in {elapsed:.1f} s; loading the layer chart…")
            self.result_panel.append_display_data(HTML(kv_table(result)))
        name, tag = self._chart_target(params)
        with held(self.status, self.result_panel):
            frame, note = self._show_chart(registry, name, tag,
                                           title=str(result.get("image", "")))
            self.status.value = status_html("success", self._describe(result),
                                            f"in {elapsed:.1f} s{note}")
        stored = self._stored_size(result)
        if stored is not None and frame is not None:
            self._show_stored(tracker, registry, name, tag, frame, stored)

    def _show_chart(self, registry: ContainerRegistry, name: str, tag: str,
                    title: str) -> tuple[pd.DataFrame | None, str]:
        """Append the layer chart to the result panel; return the layers frame (None if
        it could not be read) and a note if the chart failed."""
        try:
            frame = registry.layers_frame(name, tag)
            png = figure_png(layer_chart(frame, title=title or f"{name}:{tag}"))
        except Exception as exc:
            message, _ = describe_error(exc, "")
            self.result_panel.append_stdout(f"(no layer chart: {message})\n")
            return None, f" (no layer chart: {message})"
        self.chart_png = png
        self.result_panel.append_display_data(Image(data=png, format="png"))
        return frame, ""

    def _show_stored(self, tracker: Tracker, registry: ContainerRegistry, name: str,
                     tag: str, frame: pd.DataFrame, stored: int) -> None:
        """End on the registry's sizes: docker's push progress counts each layer's file
        content (its ``Size``: 29 B for a 29-byte file), the registry stores the
        compressed tar (139 B), which is what the result and the chart say."""
        sizes: dict[str, int] = {}
        try:  # docker names a pushed layer by its diff_id's first 12 hex digits
            diff_ids = registry.image_config(name, tag).diff_ids
            sizes = {d.split(":", 1)[-1][:12]: int(size)
                     for d, size in zip(diff_ids, frame["size_bytes"], strict=False)}
        except Exception:  # the total below still agrees with the result
            log.debug("layer sizes of %s:%s not read", name, tag, exc_info=True)
        layers = list(tracker.layer_snapshot().layers.values())
        rows = list(zip(self._rows, layers, strict=False))
        with held(self.transfer, *(row.text for row, _ in rows)):
            for row, layer in rows:
                if layer.layer in sizes:
                    row.text.value = " · ".join(p for p in (
                        layer.status, f"{human_bytes(sizes[layer.layer])} compressed") if p)
            self.transfer.value = tracker.stored_text(stored)

    def _show_error(self, error: BaseException) -> None:
        cancelled = isinstance(error, OperationCancelled)
        state = "cancelled" if cancelled else "failed"
        if cancelled:
            headline, hint = "Cancelled.", "Nothing partial was kept; run again when ready."
        else:
            message, hint = describe_error(error, self._default_hint(error))
            headline = f"Failed: {message}"
        detail = ""
        if isinstance(error, BuildError) and error.log_tail:
            # the log already shows the build's output; add only lines it lacks
            shown = set(self._log.lines)
            missing = [line for line in error.log_tail.splitlines()
                       if line.strip() and line.rstrip() not in shown]
            if missing:
                detail = "\n--- build output not in the log ---\n" + "\n".join(missing) + "\n"
        if not isinstance(error, RegistryError):
            detail += "".join(traceback.format_exception(error))
        with held(self.progress, self.status, self.result_panel):
            self.progress.bar_style = "warning" if cancelled else "danger"
            self.status.value = status_html(state, headline, hint)
            if detail:
                self.result_panel.append_stdout(detail)

    def _default_hint(self, error: BaseException) -> str:
        if isinstance(error, BuildError):
            return "Fix the failing step in the Dockerfile; the log shows its output."
        return "Check the inputs and try again."


def required(value: str, what: str) -> str:
    """``value`` stripped; a :class:`FormInputError` naming the field when it is empty."""
    text = value.strip()
    if not text:
        raise FormInputError(f"the {what} is empty", hint=f"Type the {what} and run again.")
    return text
