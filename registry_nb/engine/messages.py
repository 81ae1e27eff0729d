"""What docker's JSON streams say: progress events and the meaning of error messages.

Pure functions over the dicts docker-py yields: :func:`progress_event_from_docker`
turns one stream event into a :class:`~registry_nb.progress.ProgressEvent`, and
:func:`classify_engine_message` maps an engine's error text to a typed error.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import (
    AuthenticationError,
    CredentialsRefusedError,
    EngineError,
    ImageNotFoundError,
    InsecureRegistryError,
    InvalidReferenceError,
    RegistryError,
    RegistryUnavailableError,
)
from ..progress import ProgressEvent

__all__ = ["naming_refusals", "progress_event_from_docker", "classify_engine_message",
           "BuildLog", "short_error",
           "api_error_text", "stream_error_text", "ANSI",
           "STEP", "BUILT"]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STEP = re.compile(r"^Step (\d+)/(\d+) : ")
BUILT = re.compile(r"^Successfully built ([0-9a-f]+)")

# docker status text -> (phase, completed); None phase means "the operation's own phase".
_STATUS_PHASES: dict[str, tuple[str | None, bool]] = {
    "Downloading": ("download", False),
    "Download complete": ("download", True),
    "Verifying Checksum": ("verify", False),
    "Extracting": ("extract", False),
    "Pull complete": (None, True),
    "Already exists": (None, True),
    "Pushing": ("upload", False),
    "Pushed": (None, True),
    "Layer already exists": (None, True),
}
_NOT_LAYER_PREFIXES = ("Pulling from ", "Digest:", "Status:", "Pulling repository", "The push ")



def progress_event_from_docker(operation: str, raw: Mapping[str, Any]) -> ProgressEvent | None:
    """Translate one decoded docker push/pull status event; None if it carries no status.

    ``operation`` ("push", "pull" or "build") is the phase given to status lines
    that are not byte progress.
    """
    status = raw.get("status")
    if not isinstance(status, str):
        return None
    ident = raw.get("id")
    layer = (
        ident
        if isinstance(ident, str) and ident and not status.startswith(_NOT_LAYER_PREFIXES)
        else None
    )
    phase, completed = _STATUS_PHASES.get(status, (None, False))
    if status.startswith("Mounted from"):
        phase, completed = None, True
    detail = raw.get("progressDetail") or {}
    current = detail.get("current") if isinstance(detail, Mapping) else None
    total = detail.get("total") if isinstance(detail, Mapping) else None
    if not isinstance(current, int) or isinstance(current, bool):
        current = None
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        total = None
    if layer is None and ident and status.startswith("Pulling from "):
        message = f"{status} ({ident})"
    else:
        message = f"{layer}: {status}" if layer else status
    return ProgressEvent(
        phase=phase or operation,
        layer=layer,
        current=current,
        total=total,
        message=message,
        status=status,
        completed=completed,
    )


_AUTH_MARKERS = (
    "no basic auth credentials",
    "unauthorized",
    "authentication required",
    "incorrect username or password",
    "denied",
)
_UNREACHABLE_MARKERS = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "no route to host",
    "dial tcp",
    "connection reset",
    "tls handshake timeout",
)


def classify_engine_message(
    operation: str,
    subject: str,
    message: str,
    *,
    status_code: int | None = None,
) -> RegistryError:
    """Map a docker error text (stream ``error`` line or API explanation) to a typed error.

    ``operation`` is "push", "pull", "login", ... and ``subject`` the reference
    or registry it was about; both only shape the message and hint.
    """
    text = message.strip() or f"HTTP {status_code}"
    if text[-1] not in ".!?":
        text += "."
    low = text.lower()
    what = (
        f"{operation} of {subject}" if operation in ("push", "pull") else f"{operation} {subject}"
    )
    if "pull access denied" in low or "repository does not exist" in low:
        return ImageNotFoundError(
            f"{what} failed: {text}",
            hint="Check the repository name; if it is private, log in first.",
        )
    if "an image does not exist locally" in low or "no such image" in low:
        return ImageNotFoundError(
            f"{what} failed: {text}",
            hint="Build or tag the image locally first (list_images shows what exists).",
        )
    if "manifest unknown" in low or ("manifest for" in low and "not found" in low):
        return ImageNotFoundError(
            f"{what} failed: {text}", hint="Check that the repository and tag exist."
        )
    if status_code == 401 or any(m in low for m in _AUTH_MARKERS):
        if operation == "login":
            hint = "Check the username and password (or token) for this registry."
        else:
            hint = (
                f"Log in with credentials allowed to {operation} this repository "
                "(Engine.login or auth_config=)."
            )
        return AuthenticationError(f"{what} refused: {text}", hint=hint)
    if "server gave http response to https client" in low:
        return InsecureRegistryError(
            f"{what} failed: {text}",
            hint="The registry speaks plain HTTP: add it to the engine's insecure-registries "
            "or serve it over TLS (loopback addresses are trusted without this).",
        )
    if "x509" in low or "certificate" in low:
        return InsecureRegistryError(
            f"{what} failed: {text}",
            hint="The engine does not trust the registry's certificate: install its CA "
            "as /etc/docker/certs.d/<host:port>/ca.crt.",
        )
    if any(m in low for m in _UNREACHABLE_MARKERS):
        return RegistryUnavailableError(
            f"{what} failed: the engine could not reach the registry: {text}",
            hint="Check the registry address and that it runs and is reachable "
            "from the Docker engine.",
        )
    if "failed to register layer" in low:  # dockerd 20.10 on a zstd layer: "unexpected EOF"
        return EngineError(
            f"{what} failed: the engine could not unpack a layer: {text}",
            hint="Docker engines before 23.0 read zstd-compressed layers as plain tar and fail "
            "this way: pull with Docker 23 or later, or copy the image with gzip layers "
            "(skopeo copy --dest-compress-format=gzip).",
        )
    if "invalid reference format" in low:
        return InvalidReferenceError(subject, "reference", text.rstrip("."))
    if status_code == 404 or "not found" in low:
        return ImageNotFoundError(f"{what} failed: {text}", hint="Check the name and tag.")
    return EngineError(f"{what} failed: {text}")


class BuildLog:
    """Reads a classic build's stream: whole output lines, the current step, the image id.

    ``handle`` takes each decoded stream event; every finished line goes to ``emit`` as
    a ``"build"`` event with ``step``/``steps``; the last ``keep`` lines are kept for a
    :class:`~registry_nb.errors.BuildError`.
    """

    def __init__(self, emit: Callable[[ProgressEvent], None], keep: int) -> None:
        self.emit = emit
        self.tail: deque[str] = deque(maxlen=keep)
        self.step: str | None = None
        self.number: int | None = None
        self.steps: int | None = None
        self.image_id: str | None = None
        self.short_id: str | None = None
        self._unfinished: list[str] = []

    def tail_text(self) -> str:
        """The last lines of output, joined."""
        return "\n".join(self.tail)

    def line(self, text: str) -> None:
        """One whole line of build output."""
        text = ANSI.sub("", text).rstrip()
        if not text:
            return
        self.tail.append(text)
        step = STEP.match(text)
        if step:
            self.step, self.number, self.steps = text, int(step[1]), int(step[2])
        built = BUILT.match(text)
        if built:
            self.short_id = built[1]
        self.emit(ProgressEvent(phase="build", message=text, step=self.number,
                                steps=self.steps))

    def flush(self) -> None:
        """Emit a last line that came without its newline."""
        if self._unfinished:
            text = "".join(self._unfinished)
            self._unfinished.clear()
            self.line(text)

    def handle(self, raw: dict[str, Any]) -> None:
        """One event of the build stream (output text, the image id, or progress)."""
        chunk = raw.get("stream")
        if isinstance(chunk, str):
            parts = chunk.split("\n")
            self._unfinished.append(parts[0])
            for part in parts[1:]:
                self.flush()
                self._unfinished.append(part)
            if self._unfinished == [""]:
                self._unfinished.clear()
            return
        aux = raw.get("aux")
        if isinstance(aux, Mapping) and isinstance(aux.get("ID"), str):
            self.image_id = aux["ID"]
            return
        event = progress_event_from_docker("build", raw)
        if event is not None:
            self.emit(event)


def short_error(exc: BaseException) -> str:
    """An exception as at most 300 characters of text."""
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def api_error_text(exc: Any) -> str:
    """The engine's own explanation of a docker-py ``APIError``."""
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc).strip()


def stream_error_text(raw: Mapping[str, Any]) -> str:
    """The message of an ``error`` event in a docker stream."""
    detail = raw.get("errorDetail")
    message = detail.get("message") if isinstance(detail, Mapping) else None
    return str(message or raw.get("error") or "unknown error")


REFUSAL_MARKERS = ("authentication required", "invalid username or password",
                    "incorrect username or password", "unauthorized")


@contextlib.contextmanager
def naming_refusals(auth_config: Mapping[str, str] | None, operation: str) -> Iterator[None]:
    """An engine's "unauthorized" with a username given becomes CredentialsRefusedError.

    Docker says ``unauthorized: authentication required`` both when no credentials were
    sent and when the password was wrong; with a username in ``auth_config`` it is the
    password. "denied" (the user may not do this) stays an AuthenticationError.
    """
    try:
        yield
    except CredentialsRefusedError:
        raise
    except AuthenticationError as exc:
        user = (auth_config or {}).get("username")
        text = exc.message.lower()
        if not user or "denied" in text or not any(m in text for m in REFUSAL_MARKERS):
            raise
        server = (auth_config or {}).get("serveraddress") or "the registry"
        raise CredentialsRefusedError(server, user, operation=operation) from exc
