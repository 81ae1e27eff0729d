"""Ctrl-C and kernel interrupts during a transfer: stop cleanly, say one line.

:func:`interruptible` runs a facade method that takes ``cancel=`` on a worker thread; a
``KeyboardInterrupt`` in the caller's thread (Ctrl-C in a terminal, "interrupt the
kernel" in JupyterLab) sets the cancel event, waits for the library to stop between
chunks and clean up (nothing is tagged, no partial file stays), and raises
:class:`~registry_nb.errors.OperationCancelled` without the libraries' frames. IPython
shows that error as one line (``OperationCancelled._render_traceback_``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import OperationCancelled

__all__ = ["interruptible", "run_interruptible", "INTERRUPTED"]

INTERRUPTED = "interrupted; nothing partial kept"
#: Seconds to wait for the library to stop after an interrupt (a second one leaves now).
STOP_WAIT = 30.0

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")


def run_interruptible(work: Callable[[], _T], cancel: threading.Event) -> _T:
    """``work()`` on a worker thread; an interrupt here sets ``cancel`` and raises
    :class:`OperationCancelled` once the worker has stopped."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="registry-nb-operation", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        cancel.set()
        try:
            worker.join(STOP_WAIT)
        except KeyboardInterrupt:
            pass
        raise OperationCancelled(INTERRUPTED) from None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def interruptible(method: _F) -> _F:
    """Decorate a method taking ``cancel=``: interrupts stop it cleanly (see module)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return method(*args, **kwargs)  # interrupts only reach the main thread
        cancel = kwargs.get("cancel") or threading.Event()
        kwargs["cancel"] = cancel
        return run_interruptible(lambda: method(*args, **kwargs), cancel)

    return wrapper  # type: ignore[return-value]
