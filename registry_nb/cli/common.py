"""What every ``registry-nb`` command shares: registry flags, image arguments, output
(tables, ``--json``), the progress bar, cancellable transfers and errors in CLI words.

A command module uses :func:`add_registry_flags`, :func:`add_json`, :func:`open_registry`,
:func:`image_ref`, :func:`emit` and :func:`transfer`; it raises :class:`CliError` (or lets a
:class:`~registry_nb.errors.RegistryError` through) and :func:`report_error` words it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    AuthenticationError,
    CredentialsRefusedError,
    InsecureRegistryError,
    NotARegistryError,
    OperationCancelled,
    RegistryError,
)
from ..interrupt import INTERRUPTED, run_interruptible
from ..oci.reference import ImageReference
from ..progress import ProgressAggregator, ProgressEvent

if TYPE_CHECKING:
    import pandas as pd

    from ..registry import ContainerRegistry
    from ..remote.credentials import RegistryCredentials

__all__ = ["CliError", "Interrupted", "add_registry_flags", "add_json", "open_registry",
           "image_ref", "default_registry", "emit", "table", "transfer", "report_error",
           "read_password", "PROG"]

PROG = "registry-nb"
_T = TypeVar("_T")


class CliError(Exception):
    """A failure worded for the terminal: ``message`` and a ``hint`` in terms of flags."""

    def __init__(self, message: str, hint: str | None = None, *, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


class Interrupted(Exception):
    """Ctrl-C stopped a command; a transfer was cancelled and cleaned up."""


# ------------------------------------------------------------------ arguments


def add_registry_flags(parser: argparse.ArgumentParser) -> None:
    """``--username``/``-u``, ``--password-stdin``, ``--insecure``, ``--ca-bundle``."""
    group = parser.add_argument_group("registry access")
    group.add_argument("-u", "--username",
                       help="log in as this user (default: the docker config, "
                            "see `registry-nb login`)")
    group.add_argument("--password-stdin", action="store_true",
                       help="read the password from stdin (else $REGISTRY_NB_PASSWORD)")
    group.add_argument("--insecure", action="store_true",
                       help="allow plain HTTP or unverified TLS for a non-loopback host")
    group.add_argument("--ca-bundle", metavar="FILE",
                       help="PEM file of CAs to trust for the registry")


def add_platforms(parser: argparse.ArgumentParser) -> None:
    """``--platform OS/ARCH``, repeatable: only these platforms of an index."""
    parser.add_argument("--platform", action="append", metavar="OS/ARCH",
                        help="only this platform of an index (repeat for several)")


def add_json(parser: argparse.ArgumentParser) -> None:
    """``--json``: print one JSON document with stable keys instead of text."""
    parser.add_argument("--json", action="store_true",
                        help="print JSON (stable keys) for scripts instead of text")


def default_registry() -> str:
    """The registry of a name typed without one: ``$REGISTRY_NB_REGISTRY``, else Docker Hub."""
    return os.environ.get("REGISTRY_NB_REGISTRY") or "docker.io"


def image_ref(text: str) -> ImageReference:
    """An image argument as people type it: ``host/repo:tag``, ``repo@sha256:…``."""
    return ImageReference.parse(text.strip(), default_registry=default_registry())


def read_password(args: argparse.Namespace) -> str:
    """The password of ``--username``: stdin with ``--password-stdin``, else the env."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return os.environ.get("REGISTRY_NB_PASSWORD", "")


def _credentials(args: argparse.Namespace, host: str) -> RegistryCredentials | None:
    from ..remote.credentials import RegistryCredentials

    if not getattr(args, "username", None):
        return None
    password = getattr(args, "_password", None)
    if password is None:
        password = read_password(args)
        args._password = password  # read stdin once, even for two registries
    return RegistryCredentials(username=args.username, password=password, registry_url=host)


def open_registry(args: argparse.Namespace, host: str) -> ContainerRegistry:
    """The facade on ``host`` with the command's registry flags."""
    from ..registry import ContainerRegistry

    return ContainerRegistry(host, _credentials(args, host),
                             insecure=getattr(args, "insecure", False),
                             ca_bundle=getattr(args, "ca_bundle", None))


def ask_password(prompt: str) -> str:
    """Ask on the terminal without echo (docker login does)."""
    return getpass.getpass(prompt)


# ------------------------------------------------------------------ output


#: A digest tag (referrers fallback ``sha256-<hex>``, cosign ``sha256-<hex>.sig``).
_DIGEST_TAG = re.compile(r"^(sha256-[0-9a-f]{12})[0-9a-f]{52}")


def _short_digest(value: object) -> object:
    if isinstance(value, str) and value.startswith("sha256:"):
        return value[:19]
    return value


def _short_tag(value: object) -> object:
    return _DIGEST_TAG.sub(r"\1…", value) if isinstance(value, str) else value


def table(frame: pd.DataFrame, columns: list[str]) -> str:
    """A frame's chosen columns as plain text: times to the minute, digests and digest
    tags shortened, text left-aligned and never cut, "-" where a value is missing."""
    if frame.empty:
        return "(nothing)"
    shown = frame[[c for c in columns if c in frame.columns]].copy()
    for name in shown.columns:
        if str(shown[name].dtype).startswith("datetime64"):
            shown[name] = shown[name].dt.strftime("%Y-%m-%d %H:%M")
        elif name in ("digest", "image_id"):
            shown[name] = shown[name].map(_short_digest)
        elif name == "tag":
            shown[name] = shown[name].map(_short_tag)
    shown = shown.astype(object).where(shown.notna(), "-")
    formatters = {}
    for name in shown.columns:
        if frame[name].dtype.kind not in "iufcb":  # text: left-aligned
            width = max(len(name), *(len(str(v)) for v in shown[name]))
            formatters[name] = f"{{:<{width}}}".format
    return "\n".join(line.rstrip() for line in shown.to_string(
        index=False, formatters=formatters, justify="left").splitlines())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    try:
        import math

        if isinstance(value, float) and math.isnan(value):
            return None
    except TypeError:
        pass
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready rows (NaN and NaT as null, times as ISO-8601)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return json.loads(json.dumps(rows, default=_jsonable))


def emit(args: argparse.Namespace, data: Any, text: str | Callable[[], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True, default=_jsonable))
    else:
        print(text() if callable(text) else text)


def human_bytes(count: int | None) -> str:
    """``12.3 MB`` style (decimal units, as docker prints sizes)."""
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


# ------------------------------------------------------------------ progress


class ProgressBar:
    """A tqdm bar on stderr fed by :class:`ProgressEvent`s; nothing when not a TTY."""

    def __init__(self, label: str, *, enabled: bool) -> None:
        self.enabled = enabled
        self.label = label
        self._state = ProgressAggregator()
        self._lock = threading.Lock()
        self._bar: Any = None
        if enabled:
            import shutil

            from tqdm import tqdm

            # A terminal that reports no size (0x0) would hide the bar: assume 80x24.
            size = shutil.get_terminal_size()
            self._bar = tqdm(total=None, desc=label, unit="B", unit_scale=True,
                             unit_divisor=1000, file=sys.stderr, leave=True,
                             ncols=size.columns or 80, nrows=size.lines or 24,
                             mininterval=0.1)

    def __call__(self, event: ProgressEvent) -> None:
        self._state(event)
        if self._bar is None:
            return
        snap = self._state.snapshot()
        with self._lock:
            if snap.total and snap.total != self._bar.total:
                self._bar.total = snap.total
            if snap.current > self._bar.n:
                self._bar.update(snap.current - self._bar.n)
            if snap.layers_total:
                self._bar.set_postfix_str(f"{snap.layers_done}/{snap.layers_total} blobs",
                                          refresh=False)

    def close(self, *, keep: bool = True) -> None:
        """End the bar; ``keep=False`` (a failure, Ctrl-C) erases it from the screen."""
        if self._bar is not None:
            with self._lock:
                self._bar.leave = keep
                self._bar.close()


def transfer(args: argparse.Namespace, label: str,
             work: Callable[[Callable[[ProgressEvent], None], threading.Event], _T]) -> _T:
    """Run ``work(progress, cancel)`` on a worker thread with a progress bar on a TTY.

    Ctrl-C sets ``cancel``, waits for the library to stop and clean up, and raises
    :class:`Interrupted`; a second Ctrl-C leaves at once.
    """
    bar = ProgressBar(label, enabled=sys.stderr.isatty() and not getattr(args, "json", False))
    cancel = threading.Event()
    try:
        value = run_interruptible(lambda: work(bar, cancel), cancel)
    except OperationCancelled as exc:
        bar.close(keep=False)
        if str(exc) == INTERRUPTED:
            raise Interrupted() from None
        raise
    except BaseException:
        bar.close(keep=False)
        raise
    bar.close()
    return value


# ------------------------------------------------------------------ errors

#: Python advice in library hints and the flags that say the same on the command line.
_FLAG_WORDS = [
    (re.compile(r"credentials=RegistryCredentials\([^)]*\)"),
     "--username USER --password-stdin"),
    (re.compile(r"pass credentials= explicitly"), "pass --username and --password-stdin"),
    (re.compile(r"ca_bundle='[^']*'"), "--ca-bundle FILE"),
    (re.compile(r"ca_bundle="), "--ca-bundle"),
    (re.compile(r"insecure=True"), "--insecure"),
    (re.compile(r"platforms?="), "--platform"),
    (re.compile(r"limit="), "--limit"),
    (re.compile(r"list_images"), "`registry-nb images`"),
    (re.compile(r"force=True"), "--force"),
    (re.compile(r"\(registry_images_frame\)"), "(`registry-nb ls REGISTRY REPO`)"),
]
#: What still looks like Python after the translation: such a hint is not shown.
_PYTHON = re.compile(r"\w\(|\w=|Engine\.|\bpass\s+\w+=")


def cli_hint(exc: RegistryError) -> str | None:
    """The hint of ``exc`` in terms of flags and commands, or None."""
    if isinstance(exc, CredentialsRefusedError):
        user = exc.username or "USER"
        return (f"Check the password given to --username {user} (--password-stdin or "
                f"$REGISTRY_NB_PASSWORD), or run `registry-nb login {exc.registry} -u {user}`.")
    if isinstance(exc, NotARegistryError):
        return exc.hint
    if isinstance(exc, AuthenticationError):
        host = re.search(r"(?:registry |^)([\w.-]+:\d+|[\w-]+\.[\w.-]+)", exc.message)
        where = host.group(1) if host else "REGISTRY"
        if "catalog" in exc.message:
            return (f"Pass a repository (`registry-nb ls {where} REPO`), or log in as a user "
                    "allowed to list the catalog: --username USER --password-stdin.")
        if "not allowed" in exc.message:
            return "Log in as a user allowed to do this: --username USER --password-stdin."
        return (f"Pass --username USER --password-stdin, or run "
                f"`registry-nb login {where} -u USER` first.")
    if isinstance(exc, InsecureRegistryError):
        return ("Pass --ca-bundle FILE with the registry's CA, or --insecure if you trust "
                "this network.")
    hint = exc.hint
    if not hint:
        return None
    for pattern, flag in _FLAG_WORDS:
        hint = pattern.sub(flag, hint)
    return None if _PYTHON.search(hint.replace("--", "")) else hint


def report_error(exc: BaseException) -> int:
    """Print ``registry-nb: error: …`` (and a hint line); return the exit code."""
    if isinstance(exc, CliError):
        message, hint, code = exc.message, exc.hint, exc.code
    elif isinstance(exc, RegistryError):
        message, hint, code = exc.message, cli_hint(exc), 1
    else:
        raise exc
    message = message.strip()
    if message and message[-1] not in ".!?":
        message += "."
    print(f"{PROG}: error: {message}", file=sys.stderr)
    if hint:
        print(f"{PROG}: hint: {hint}", file=sys.stderr)
    return code
