"""A thin wrapper over docker-py's low-level streaming API.

:class:`Engine` runs build, push and pull against a Docker engine, turns each
JSON event of docker's stream into a :class:`~registry_nb.progress.ProgressEvent`,
and maps every failure, including an ``error`` line inside a stream, to a typed
:mod:`registry_nb.errors` exception. It connects lazily; when no engine answers
it raises :class:`EngineUnavailableError` (and :meth:`Engine.is_available` is
False), which the facade turns into its "simulated" result. The module is a little
longer than 600 lines: one class over docker-py's streams, each operation a method.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

import docker
import docker.errors
import requests

from ..errors import (
    AuthenticationError,
    BuildError,
    EngineError,
    ImageNotFoundError,
    OperationCancelled,
    RegistryError,
)
from ..oci.reference import is_docker_hub
from ..progress import ProgressAggregator, ProgressCallback, ProgressEvent
from .inputs import credential_field, strip_scheme
from .messages import (
    ANSI,
    BuildLog,
    api_error_text,
    classify_engine_message,
    naming_refusals,
    progress_event_from_docker,
    short_error,
    stream_error_text,
)

__all__ = [
    "Engine",
    "EngineUnavailableError",
    "progress_event_from_docker",
    "classify_engine_message",
]

log = logging.getLogger(__name__)

#: Layers of build output kept for a :class:`BuildError`.
BUILD_LOG_TAIL = 20

class EngineUnavailableError(EngineError):
    """No Docker engine answers at the configured address (``DOCKER_HOST``)."""


class _StreamState:
    """Per-operation bookkeeping shared by the stream loop and its handler."""

    def __init__(self, operation: str, progress: ProgressCallback | None) -> None:
        self.operation = operation
        self.progress = progress
        self.aggregator = ProgressAggregator()

    def emit(self, event: ProgressEvent) -> None:
        self.aggregator.update(event)
        if self.progress is not None:
            self.progress(event)

    def emit_done(self, message: str) -> None:
        snap = self.aggregator.snapshot()
        self.emit(
            ProgressEvent(
                phase="done",
                current=snap.current if snap.total else None,
                total=snap.total or None,
                message=message,
                status="done",
                step=snap.step,
                steps=snap.steps,
            )
        )


class Engine:
    """A Docker engine reached through docker-py's low-level ``APIClient``.

    ``base_url`` is a docker host (``unix:///run/docker.sock``,
    ``tcp://host:2376``); ``None`` reads ``DOCKER_HOST`` (and the TLS variables)
    from the environment. Nothing connects until the first call.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 3.0,
        tls: Any = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        if base_url is None:
            env_kwargs = docker.utils.kwargs_from_env(
                environment=dict(environment) if environment is not None else None
            )
            base_url = env_kwargs.get("base_url")
            if tls is None:
                tls = env_kwargs.get("tls")
        self._base_url = base_url
        self._tls = tls or False
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._client: docker.APIClient | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    @classmethod
    def from_env(
        cls, *, timeout: float = 60.0, environment: Mapping[str, str] | None = None
    ) -> Engine:
        """An engine at ``DOCKER_HOST`` (or the default socket), like the docker CLI."""
        return cls(None, timeout=timeout, environment=environment)

    @property
    def base_url(self) -> str:
        """The docker host this engine talks to."""
        return self._base_url or "unix:///var/run/docker.sock"

    def __repr__(self) -> str:
        return f"Engine({self.base_url!r})"

    # -- connection ---------------------------------------------------------

    @property
    def api(self) -> docker.APIClient:
        """The connected low-level client (connects on first use)."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> docker.APIClient:
        try:
            # version="auto" asks the daemon for its API version: that is the
            # connection check, done with the short timeout.
            client = docker.APIClient(
                base_url=self._base_url,
                version="auto",
                timeout=self.connect_timeout,
                tls=self._tls,
            )
        except Exception as exc:  # DockerException, bad URL, socket errors
            raise EngineUnavailableError(
                f"no Docker engine answers at {self.base_url}: {short_error(exc)}",
                hint="Start dockerd or point DOCKER_HOST at a running engine.",
            ) from exc
        client.timeout = self.timeout
        client.hooks["response"].append(self._remember_response)
        log.debug("connected to %s (API %s)", self.base_url, client.api_version)
        return client

    def _remember_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # The stream's HTTP response, so that a cancel can close it.
        self._local.response = response

    def is_available(self) -> bool:
        """True when an engine answers a ping; False on any connection error, quickly."""
        try:
            return bool(self.api.ping())
        except Exception:
            return False

    def close(self) -> None:
        """Close the connection pool; the next call reconnects."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- errors ---------------------------------------------------------------

    def _call(self, operation: str, subject: str, fn: Callable[[docker.APIClient], Any]) -> Any:
        client = self.api
        try:
            return fn(client)
        except docker.errors.APIError as exc:
            raise self._api_error(operation, subject, exc) from exc
        except requests.exceptions.ConnectionError as exc:
            raise self._lost(exc) from exc
        except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
            raise EngineError(f"{operation} {subject} failed: {short_error(exc)}") from exc

    def _api_error(
        self, operation: str, subject: str, exc: docker.errors.APIError
    ) -> RegistryError:
        text = api_error_text(exc)
        if isinstance(exc, docker.errors.NotFound) and operation not in ("push", "build"):
            if operation == "pull":
                return classify_engine_message(operation, subject, text, status_code=404)
            return ImageNotFoundError(
                f"no local image {subject!r} ({operation}): {text}",
                hint="Check the image name and tag (list_images shows what exists).",
            )
        return classify_engine_message(operation, subject, text, status_code=exc.status_code)

    def _lost(self, exc: BaseException) -> EngineError:
        return EngineUnavailableError(
            f"lost the Docker engine at {self.base_url}: {short_error(exc)}",
            hint="Check that dockerd is still running.",
        )

    # -- streams --------------------------------------------------------------

    def _run_stream(
        self,
        state: _StreamState,
        subject: str,
        start: Callable[[docker.APIClient], Iterable[Any]],
        handle: Callable[[dict[str, Any]], None],
        cancel: threading.Event | None,
        *,
        error_factory: Callable[[str], RegistryError] | None = None,
        api_error_factory: Callable[[docker.errors.APIError], RegistryError] | None = None,
    ) -> None:
        """Start a decoded stream, feed each event to ``handle``, honour ``cancel``."""
        operation = state.operation
        if cancel is not None and cancel.is_set():
            state.emit(ProgressEvent(phase="cancelled", message=f"{operation} cancelled"))
            raise OperationCancelled(f"{operation} of {subject} cancelled before it started")
        self._local.response = None
        stream: Any = None
        response: requests.Response | None = None
        try:
            try:
                stream = self._call(operation, subject, start)
            finally:
                response, self._local.response = self._local.response, None
            iterator: Iterator[Any] = iter(stream)
            while True:
                if cancel is not None and cancel.is_set():
                    raise OperationCancelled(f"{operation} of {subject} cancelled")
                try:
                    raw = next(iterator)
                except StopIteration:
                    break
                except docker.errors.APIError as exc:
                    if api_error_factory is not None:
                        raise api_error_factory(exc) from exc
                    raise self._api_error(operation, subject, exc) from exc
                except (
                    requests.exceptions.RequestException,
                    docker.errors.DockerException,
                    ValueError,
                ) as exc:
                    raise self._stream_broken(operation, subject, exc) from exc
                if not isinstance(raw, dict):
                    continue
                if "error" in raw or "errorDetail" in raw:
                    raise (error_factory or partial(classify_engine_message, operation, subject))(
                        stream_error_text(raw)
                    )
                handle(raw)
            if cancel is not None and cancel.is_set():
                raise OperationCancelled(f"{operation} of {subject} cancelled")
        except OperationCancelled as exc:
            _close(stream, response)  # first stop the engine, then tell the front end
            with contextlib.suppress(Exception):
                state.emit(ProgressEvent(phase="cancelled", message=exc.message))
            log.info("%s of %s cancelled", operation, subject)
            raise
        except RegistryError as exc:
            _close(stream, response)
            with contextlib.suppress(Exception):
                state.emit(ProgressEvent(phase="failed", message=exc.message))
            raise
        finally:
            _close(stream, response)

    def _stream_broken(self, operation: str, subject: str, exc: BaseException) -> RegistryError:
        if isinstance(exc, requests.exceptions.ConnectionError) and not self.is_available():
            return self._lost(exc)
        return EngineError(
            f"{operation} of {subject}: the engine's progress stream broke: {short_error(exc)}",
            hint="Retry; if it keeps failing, check the dockerd log.",
        )

    # -- operations -----------------------------------------------------------

    def login(
        self,
        registry: str,
        credentials: Any = None,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> dict[str, Any]:
        """Log the engine in to ``registry``; later push/pull there use these credentials.

        ``credentials`` is any object or mapping with ``username`` and
        ``password`` (a ``token`` is used as the password when there is none).
        Returns docker's answer (``{"Status": "Login Succeeded", ...}``).
        The password is never logged nor put in a message.
        """
        user = username if username is not None else credential_field(credentials, "username")
        secret = password if password is not None else credential_field(credentials, "password")
        if not secret:
            secret = credential_field(credentials, "token")
        server = strip_scheme(registry)
        if not user or not secret:
            raise AuthenticationError(
                f"login to {server or 'Docker Hub'} needs a username and a password",
                hint="Pass credentials with both set (a token counts as the password).",
            )
        log.info("logging in to %s as %s", server or "Docker Hub", user)
        with naming_refusals({"username": user, "serveraddress": server or "docker.io"},
                            "log in"):
            result = self._call(
                "login",
                f"to {server or 'Docker Hub'} as {user}",
                lambda c: c.login(
                    username=user,
                    password=secret,
                    registry=None if is_docker_hub(server) else server,
                    reauth=True,
                ),
            )
        return dict(result or {})

    def push(
        self,
        repository: str,
        tag: str = "latest",
        *,
        auth_config: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Push local ``repository:tag``; return what the registry stored.

        Returns ``{"repository", "tag", "digest", "size", "layers"}`` where
        ``digest``/``size`` are the manifest's (docker's final aux event) and
        ``layers`` maps each layer id to its last status ("Pushed", "Layer
        already exists", ...).
        """
        subject = f"{repository}:{tag}"
        state = _StreamState("push", progress)
        aux: dict[str, Any] = {}
        layers: dict[str, str] = {}

        def handle(raw: dict[str, Any]) -> None:
            if isinstance(raw.get("aux"), Mapping) and "Digest" in raw["aux"]:
                aux.update(raw["aux"])
                return
            event = progress_event_from_docker("push", raw)
            if event is not None:
                if event.layer:
                    layers[event.layer] = event.status
                state.emit(event)

        log.info("pushing %s", subject)
        with naming_refusals(auth_config, "push"):
            self._run_stream(
                state,
                subject,
                lambda c: c.push(
                    repository,
                    tag,
                    stream=True,
                    decode=True,
                    auth_config=dict(auth_config) if auth_config is not None else None,
                ),
                handle,
                cancel,
            )
        if not aux.get("Digest"):
            raise EngineError(
                f"push of {subject} ended without a digest from the registry",
                hint="Check the dockerd log; the push may not have completed.",
            )
        result = {
            "repository": repository,
            "tag": str(aux.get("Tag") or tag),
            "digest": str(aux["Digest"]),
            "size": int(aux.get("Size") or 0),
            "layers": layers,
        }
        state.emit_done(f"pushed {subject} {result['digest']}")
        return result

    def pull(
        self,
        repository: str,
        tag: str = "latest",
        *,
        auth_config: Mapping[str, str] | None = None,
        platform: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Pull ``repository:tag`` (or ``repository@sha256:…`` when tag is a digest).

        Returns the pulled image's attributes, as :meth:`inspect_image` gives them.
        """
        ref = f"{repository}@{tag}" if tag.startswith("sha256:") else f"{repository}:{tag}"
        state = _StreamState("pull", progress)

        def handle(raw: dict[str, Any]) -> None:
            event = progress_event_from_docker("pull", raw)
            if event is not None:
                state.emit(event)

        log.info("pulling %s", ref)
        with naming_refusals(auth_config, "pull"):
            self._run_stream(
                state,
                ref,
                lambda c: c.pull(
                    repository,
                    tag,
                    stream=True,
                    decode=True,
                    platform=platform,
                    auth_config=dict(auth_config) if auth_config is not None else None,
                ),
                handle,
                cancel,
            )
        attrs = self.inspect_image(ref)
        state.emit_done(f"pulled {ref} {attrs.get('Id', '')}")
        return attrs

    def build(
        self,
        context_dir: str | os.PathLike[str],
        dockerfile: str | os.PathLike[str] | None = None,
        tag: str | None = None,
        *,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        no_cache: bool = False,
        pull: bool = False,
        network_mode: str | None = "none",
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """Build ``context_dir`` with ``dockerfile`` (default ``Dockerfile``); return the image id.

        ``dockerfile`` is relative to the context or an absolute path. Each
        output line becomes a ``"build"`` event with ``step``/``steps``. A failed
        step raises :class:`BuildError` with the step and the last lines of output.
        """
        context = os.fspath(context_dir)
        if not os.path.isdir(context):
            raise BuildError(f"build context {context!r} is not a directory")
        dockerfile_arg = os.fspath(dockerfile) if dockerfile is not None else None
        if dockerfile_arg and os.path.isabs(dockerfile_arg) and not os.path.isfile(dockerfile_arg):
            raise BuildError(f"Dockerfile {dockerfile_arg!r} does not exist")
        subject = tag or context
        state = _StreamState("build", progress)
        build_log = BuildLog(state.emit, BUILD_LOG_TAIL)
        def build_failed(text: str) -> BuildError:
            build_log.flush()
            return BuildError(ANSI.sub("", text).strip(), step=build_log.step,
                              log_tail=build_log.tail_text())

        def api_failed(exc: docker.errors.APIError) -> BuildError:
            # The engine refused the build before any step (parse error, no Dockerfile).
            return BuildError(api_error_text(exc), step=build_log.step,
                              log_tail=build_log.tail_text())

        def start(c: docker.APIClient) -> Iterable[Any]:
            try:
                return c.build(
                    path=context,
                    dockerfile=dockerfile_arg,
                    tag=tag,
                    buildargs=dict(build_args) if build_args else None,
                    labels=dict(labels) if labels else None,
                    nocache=no_cache,
                    pull=pull,
                    rm=True,
                    forcerm=True,
                    network_mode=network_mode,
                    decode=True,
                )
            except docker.errors.APIError as exc:
                raise api_failed(exc) from exc
            except (TypeError, OSError) as exc:  # unreadable context / Dockerfile
                if isinstance(exc, requests.exceptions.RequestException):
                    raise
                raise BuildError(f"cannot read the build context: {exc}") from exc

        log.info("building %s from %s", subject, context)
        self._run_stream(
            state,
            subject,
            start,
            build_log.handle,
            cancel,
            error_factory=build_failed,
            api_error_factory=api_failed,
        )
        build_log.flush()
        image_id = build_log.image_id
        if image_id is None and build_log.short_id:
            image_id = self.inspect_image(build_log.short_id).get("Id")
        if not image_id:
            raise BuildError("the engine reported no image id", step=build_log.step,
                             log_tail=build_log.tail_text())
        state.emit_done(f"built {subject} {image_id}")
        return str(image_id)

    # -- images ---------------------------------------------------------------

    def inspect_image(self, image: str) -> dict[str, Any]:
        """The engine's attributes of a local image (``docker image inspect``)."""
        return dict(self._call("inspect", image, lambda c: c.inspect_image(image)))

    def image_history(self, image: str) -> list[dict[str, Any]]:
        """The image's history entries, newest first (``docker history``)."""
        return list(self._call("history of", image, lambda c: c.history(image)))

    def list_images(
        self, repository: str | None = None, *, all: bool = False
    ) -> list[dict[str, Any]]:
        """Local images (``docker images``), optionally only those of ``repository``."""
        return list(
            self._call(
                "list images", repository or "", lambda c: c.images(name=repository, all=all)
            )
            or []
        )

    def tag(self, image: str, repository: str, tag: str | None = None) -> None:
        """Give local ``image`` the name ``repository:tag``."""
        self._call("tag", image, lambda c: c.tag(image, repository, tag))

    def remove_image(self, image: str, *, force: bool = False, missing_ok: bool = False) -> None:
        """Remove a local image or tag; a missing one is an error unless ``missing_ok``."""
        try:
            self._call("remove", image, lambda c: c.remove_image(image, force=force))
        except ImageNotFoundError:
            if not missing_ok:
                raise


def _close(stream: Any, response: requests.Response | None) -> None:
    """Stop reading a docker stream and drop its connection."""
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()
    close = getattr(stream, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
