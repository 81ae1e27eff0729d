"""registry_nb.engine against the real dockerd and the open / htpasswd registries."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import RegistryService, busybox_build_context

from registry_nb.engine import (
    Engine,
    EngineUnavailableError,
    classify_engine_message,
    progress_event_from_docker,
)
from registry_nb.errors import (
    AuthenticationError,
    BuildError,
    EngineError,
    ImageNotFoundError,
    InsecureRegistryError,
    OperationCancelled,
    RegistryUnavailableError,
)
from registry_nb.progress import ProgressAggregator, ProgressEvent, fan_out

# -- fixtures on the shared test services (tests/conftest.py) ------------------


@pytest.fixture
def engine(docker_host: str) -> Iterator[Engine]:
    eng = Engine(docker_host)
    yield eng
    eng.close()


@pytest.fixture
def open_host(open_registry: RegistryService) -> str:
    return open_registry.host


@pytest.fixture
def basic_host(basic_registry: RegistryService) -> str:
    return basic_registry.host


@pytest.fixture
def basic_auth(basic_registry: RegistryService) -> dict[str, str]:
    assert basic_registry.username and basic_registry.password
    return {"username": basic_registry.username, "password": basic_registry.password}


@pytest.fixture
def repo_name(unique_repo: str) -> str:
    return unique_repo


# -- helpers -------------------------------------------------------------------


def make_context(root: Path, dockerfile_tail: str = "", *, blob_bytes: int = 4096) -> Path:
    """Busybox FROM scratch plus a unique blob (step 4), so that every push moves bytes."""
    ctx = busybox_build_context(root, ["COPY blob /blob", *dockerfile_tail.splitlines()])
    (ctx / "blob").write_bytes(uuid.uuid4().bytes + os.urandom(blob_bytes))
    return ctx


def run_in(engine: Engine, image: str, command: list[str]) -> str:
    """Run ``command`` in ``image`` without network; return its output."""
    api = engine.api
    container = api.create_container(
        image, command, host_config=api.create_host_config(network_mode="none")
    )
    try:
        api.start(container)
        status = api.wait(container, timeout=60)
        assert status["StatusCode"] == 0, status
        return api.logs(container).decode()
    finally:
        api.remove_container(container, force=True)


def skopeo_digest(reference: str, *extra: str) -> str:
    out = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--tls-verify=false",
            *extra,
            "--format",
            "{{.Digest}}",
            f"docker://{reference}",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


@pytest.fixture
def built(engine: Engine, open_host: str, repo_name: str, tmp_path: Path):
    """A fresh local image tagged for the open registry; removed afterwards."""
    repository = f"{open_host}/{repo_name}"
    image_id = engine.build(
        make_context(tmp_path / "ctx", blob_bytes=256 * 1024), tag=f"{repository}:1"
    )
    yield repository, image_id
    engine.remove_image(image_id, force=True, missing_ok=True)


# -- no engine -----------------------------------------------------------------


def test_is_available_is_false_and_quick_when_nothing_listens(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/nothing.sock"
    eng = Engine.from_env(environment={"DOCKER_HOST": host})
    assert eng.base_url == host
    started = time.monotonic()
    assert eng.is_available() is False
    assert time.monotonic() - started < 2.0
    with pytest.raises(EngineUnavailableError) as info:
        eng.pull("127.0.0.1:5000/x", "1")
    assert isinstance(info.value, EngineError)
    assert "DOCKER_HOST" in str(info.value)
    with pytest.raises(EngineUnavailableError):
        eng.list_images()


def test_is_available_false_on_a_socket_that_accepts_nothing(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "dead.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))  # bound but never listening: connections are refused
    try:
        eng = Engine(f"unix://{path}", connect_timeout=1.0)
        started = time.monotonic()
        assert not eng.is_available()
        assert time.monotonic() - started < 2.0
    finally:
        server.close()


def test_cancel_before_start_touches_nothing(tmp_path: Path) -> None:
    eng = Engine(f"unix://{tmp_path}/nothing.sock")
    cancel = threading.Event()
    cancel.set()
    events: list[ProgressEvent] = []
    with pytest.raises(OperationCancelled):
        eng.pull("127.0.0.1:5000/x", "1", cancel=cancel, progress=events.append)
    assert [e.phase for e in events] == ["cancelled"]


# -- event translation and error classification (no engine) --------------------


def test_docker_events_become_progress_events() -> None:
    ev = progress_event_from_docker("pull", {"status": "Pulling from demo", "id": "1"})
    assert ev is not None and ev.layer is None and ev.phase == "pull"
    ev = progress_event_from_docker(
        "pull",
        {"status": "Downloading", "id": "a1b2", "progressDetail": {"current": 5, "total": 9}},
    )
    assert ev == ProgressEvent(
        "download", "a1b2", current=5, total=9, message="a1b2: Downloading", status="Downloading"
    )
    ev = progress_event_from_docker("pull", {"status": "Download complete", "id": "a1b2"})
    assert ev is not None and ev.phase == "download" and ev.completed
    for status in ("Pull complete", "Already exists"):
        ev = progress_event_from_docker("pull", {"status": status, "id": "a1b2"})
        assert ev is not None and ev.phase == "pull" and ev.completed
    for status in ("Pushed", "Layer already exists", "Mounted from other/repo"):
        ev = progress_event_from_docker("push", {"status": status, "id": "a1b2"})
        assert ev is not None and ev.phase == "push" and ev.completed
    ev = progress_event_from_docker(
        "push", {"status": "Pushing", "id": "c3", "progressDetail": {"current": 512, "total": 6}}
    )
    assert ev is not None and (ev.phase, ev.current, ev.total) == ("upload", 512, 6)
    ev = progress_event_from_docker("pull", {"status": "Verifying Checksum", "id": "a1b2"})
    assert ev is not None and ev.phase == "verify"
    ev = progress_event_from_docker(
        "pull", {"status": "Extracting", "id": "a", "progressDetail": {}}
    )
    assert ev is not None and ev.phase == "extract" and ev.current is None
    assert progress_event_from_docker("push", {"aux": {"Digest": "sha256:x"}}) is None


@pytest.mark.parametrize(
    ("operation", "message", "expected"),
    [
        ("push", "no basic auth credentials", AuthenticationError),
        ("push", "unauthorized: authentication required", AuthenticationError),
        ("push", "denied: requested access to the resource is denied", AuthenticationError),
        (
            "login",
            "login attempt to http://h/v2/ failed with status: 401 Unauthorized",
            AuthenticationError,
        ),
        (
            "pull",
            "manifest for h/x:1 not found: manifest unknown: manifest unknown",
            ImageNotFoundError,
        ),
        (
            "pull",
            "pull access denied for x, repository does not exist or may require "
            "'docker login': denied: requested access to the resource is denied",
            ImageNotFoundError,
        ),
        ("push", "An image does not exist locally with the tag: h/x", ImageNotFoundError),
        (
            "pull",
            'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            RegistryUnavailableError,
        ),
        (
            "pull",
            'Get "https://h/v2/": http: server gave HTTP response to HTTPS client',
            InsecureRegistryError,
        ),
        ("pull", "x509: certificate signed by unknown authority", InsecureRegistryError),
        ("push", "something odd happened", EngineError),
        (  # dockerd 20.10 on a zstd layer
            "pull",
            "failed to register layer: Error processing tar file(exit status 1): "
            "unexpected EOF",
            EngineError,
        ),
    ],
)
def test_engine_messages_map_to_typed_errors(operation: str, message: str, expected: type) -> None:
    err = classify_engine_message(operation, "h/x:1", message)
    assert type(err) is expected
    assert message.split(":")[0] in str(err)
    assert err.hint or expected is EngineError
    if "register layer" in message:
        assert "zstd" in err.hint and "Docker 23" in err.hint


# -- build ---------------------------------------------------------------------


@pytest.mark.services
def test_engine_is_available(engine: Engine) -> None:
    assert engine.is_available()


@pytest.mark.services
def test_build_with_build_args_and_no_cache(engine: Engine, tmp_path: Path, repo_name: str) -> None:
    ctx = make_context(
        tmp_path / "ctx",
        'ARG GREETING=hi\nLABEL greeting="$GREETING"\nRUN echo "$GREETING" > /greeting.txt\n',
    )
    tag = f"{repo_name}:args"
    events: list[ProgressEvent] = []
    agg = ProgressAggregator()
    image_id = engine.build(
        ctx,
        "Dockerfile",
        tag,
        build_args={"GREETING": "hello-args"},
        progress=fan_out(events.append, agg),
    )
    try:
        assert image_id.startswith("sha256:")
        attrs = engine.inspect_image(tag)
        assert attrs["Id"] == image_id
        assert attrs["Config"]["Labels"]["greeting"] == "hello-args"
        assert run_in(engine, tag, ["cat", "/greeting.txt"]).strip() == "hello-args"

        builds = [e for e in events if e.phase == "build"]
        assert any(e.message.startswith("Step 1/7 : FROM scratch") for e in builds)
        assert all("\n" not in e.message for e in builds)
        assert events[-1].phase == "done" and image_id in events[-1].message
        snap = agg.snapshot()
        assert snap.finished and (snap.step, snap.steps) == (7, 7)

        # Same build again: the cache is used unless no_cache is set.
        again: list[ProgressEvent] = []
        assert (
            engine.build(
                ctx, None, tag, build_args={"GREETING": "hello-args"}, progress=again.append
            )
            == image_id
        )
        assert any("Using cache" in e.message for e in again)
        fresh: list[ProgressEvent] = []
        new_id = engine.build(
            ctx,
            None,
            tag,
            build_args={"GREETING": "hello-args"},
            no_cache=True,
            progress=fresh.append,
        )
        assert not any("Using cache" in e.message for e in fresh)
        assert new_id != image_id
        engine.remove_image(new_id, force=True)
    finally:
        engine.remove_image(image_id, force=True, missing_ok=True)


@pytest.mark.services
def test_build_with_an_absolute_dockerfile_outside_the_context(
    engine: Engine, tmp_path: Path, repo_name: str
) -> None:
    ctx = make_context(tmp_path / "ctx")
    dockerfile = tmp_path / "elsewhere" / "Dockerfile.custom"
    dockerfile.parent.mkdir()
    dockerfile.write_text("FROM scratch\nCOPY busybox /bin/busybox\nLABEL where=outside\n")
    image_id = engine.build(ctx, dockerfile, f"{repo_name}:abs")
    try:
        assert engine.inspect_image(image_id)["Config"]["Labels"] == {"where": "outside"}
    finally:
        engine.remove_image(image_id, force=True)


@pytest.mark.services
def test_build_failure_reports_the_step_and_the_log_tail(engine: Engine, tmp_path: Path) -> None:
    lines = "".join(f"echo out-{n}; " for n in range(30))
    ctx = make_context(
        tmp_path / "ctx",
        # stdout and stderr travel separately: the pause keeps them in order.
        f"RUN {lines}sleep 0.5; echo to-stderr >&2; exit 3\nLABEL never=reached\n",
    )
    events: list[ProgressEvent] = []
    with pytest.raises(BuildError) as info:
        engine.build(ctx, tag="engine-test/fails:1", progress=events.append)
    err = info.value
    assert err.step is not None and err.step.startswith("Step 5/6 : RUN echo out-0")
    assert "returned a non-zero code: 3" in str(err)
    tail = err.log_tail.splitlines()
    assert 0 < len(tail) <= 20
    assert "out-29" in tail and "to-stderr" in tail
    assert "out-0" not in tail  # only the tail is kept
    assert not any("\x1b[" in line for line in tail)
    assert events[-1].phase == "failed"


@pytest.mark.services
def test_build_refused_before_any_step_is_a_build_error(engine: Engine, tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "ctx")
    (ctx / "Dockerfile.bad").write_text("FROM scratch\nNOTANINSTRUCTION x\n")
    with pytest.raises(BuildError, match="unknown instruction"):
        engine.build(ctx, "Dockerfile.bad", "engine-test/bad:1")
    with pytest.raises(BuildError, match="Dockerfile.nope"):
        engine.build(ctx, "Dockerfile.nope", "engine-test/bad:1")
    with pytest.raises(BuildError, match="not a directory"):
        engine.build(tmp_path / "missing", None, "engine-test/bad:1")


@pytest.mark.services
def test_build_copy_failure_names_the_step(engine: Engine, tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "ctx", "COPY not-there /x\n")
    with pytest.raises(BuildError) as info:
        engine.build(ctx, tag="engine-test/copyfail:1")
    assert info.value.step == "Step 5/5 : COPY not-there /x"
    assert "not-there" in str(info.value)


# -- push ----------------------------------------------------------------------


@pytest.mark.services
def test_push_returns_the_digest_skopeo_sees(engine: Engine, built) -> None:
    repository, image_id = built
    events: list[ProgressEvent] = []
    agg = ProgressAggregator()
    result = engine.push(repository, "1", progress=fan_out(events.append, agg))
    assert result["digest"].startswith("sha256:") and len(result["digest"]) == 71
    assert result["tag"] == "1" and result["repository"] == repository
    assert result["size"] > 0
    assert set(result["layers"].values()) <= {"Pushed", "Layer already exists"} | {
        v for v in result["layers"].values() if v.startswith("Mounted from")
    }
    assert skopeo_digest(f"{repository}:1") == result["digest"]

    assert any(e.phase == "upload" and e.current for e in events)
    assert events[-1].phase == "done" and result["digest"] in events[-1].message
    snap = agg.snapshot()
    assert snap.total > 0 and snap.current == snap.total
    assert snap.layers_done == snap.layers_total == len(result["layers"])
    assert events[-1].current == events[-1].total == snap.total


@pytest.mark.services
def test_push_of_a_missing_local_image(engine: Engine, open_host: str, repo_name: str) -> None:
    with pytest.raises(ImageNotFoundError, match="does not exist locally"):
        engine.push(f"{open_host}/{repo_name}", "nothere")


@pytest.mark.services
def test_push_to_the_basic_registry_needs_login(
    engine: Engine,
    built,
    basic_host: str,
    basic_auth: dict[str, str],
    repo_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, image_id = built
    target = f"{basic_host}/{repo_name}"
    engine.tag(image_id, target, "1")
    events: list[ProgressEvent] = []
    with pytest.raises(AuthenticationError) as refused:
        engine.push(target, "1", progress=events.append)
    assert events[-1].phase == "failed"
    assert "done" not in [e.phase for e in events]

    with pytest.raises(AuthenticationError) as wrong:
        engine.login(basic_host, {"username": "alice", "password": "wrong-pass-xyz"})
    assert "wrong-pass-xyz" not in str(wrong.value)

    fresh = Engine(engine.base_url)
    try:
        assert fresh.login(f"http://{basic_host}/", basic_auth)["Status"] == "Login Succeeded"
        result = fresh.push(target, "1")
        assert result["digest"] == skopeo_digest(
            f"{target}:1", f"--creds={basic_auth['username']}:{basic_auth['password']}"
        )
    finally:
        fresh.close()

    # An explicit auth_config works without login, on an engine that never logged in.
    other = Engine(engine.base_url)
    try:
        engine.tag(image_id, target, "2")
        assert other.push(target, "2", auth_config=basic_auth)["digest"] == result["digest"]
    finally:
        other.close()
        engine.remove_image(f"{target}:1")
        engine.remove_image(f"{target}:2")
    secret = basic_auth["password"]
    assert secret not in caplog.text
    assert secret not in str(refused.value)


def test_login_needs_a_username_and_password(tmp_path: Path) -> None:
    eng = Engine(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(AuthenticationError):
        eng.login("127.0.0.1:5001", {"username": "alice"})


# -- pull ----------------------------------------------------------------------


@pytest.mark.services
def test_pull_reports_progress_to_the_total(engine: Engine, built) -> None:
    repository, image_id = built
    pushed = engine.push(repository, "1")
    engine.remove_image(f"{repository}:1")
    events: list[ProgressEvent] = []
    agg = ProgressAggregator()
    attrs = engine.pull(repository, "1", progress=fan_out(events.append, agg))
    assert attrs["Id"] == image_id
    assert f"{repository}@{pushed['digest']}" in attrs["RepoDigests"]
    phases = {e.phase for e in events}
    assert {"download", "extract", "done"} <= phases
    snap = agg.snapshot()
    assert snap.total > 0 and snap.current == snap.total
    assert snap.layers_done == snap.layers_total > 0
    assert events[-1].phase == "done"
    # By digest, too.
    assert engine.pull(repository, pushed["digest"])["Id"] == image_id


@pytest.mark.services
def test_pull_of_a_missing_tag_or_repository(engine: Engine, built, open_host: str) -> None:
    repository, _ = built
    engine.push(repository, "1")
    events: list[ProgressEvent] = []
    with pytest.raises(ImageNotFoundError, match="manifest unknown"):
        engine.pull(repository, "no-such-tag", progress=events.append)
    assert events and events[-1].phase == "failed"
    with pytest.raises(ImageNotFoundError):
        engine.pull(f"{open_host}/engine-test/never-pushed-{uuid.uuid4().hex[:8]}", "1")


@pytest.mark.services
def test_pull_from_a_registry_that_is_not_there(engine: Engine) -> None:
    with pytest.raises(RegistryUnavailableError):
        engine.pull("127.0.0.1:9/engine-test/x", "1")


@pytest.mark.services
def test_cancel_mid_pull(engine: Engine, open_host: str, repo_name: str, tmp_path: Path) -> None:
    repository = f"{open_host}/{repo_name}"
    ctx = make_context(tmp_path / "ctx", blob_bytes=48 * 1024 * 1024)
    image_id = engine.build(ctx, tag=f"{repository}:big")
    engine.push(repository, "big")
    engine.remove_image(image_id, force=True)

    cancel = threading.Event()
    events: list[ProgressEvent] = []

    def on_event(event: ProgressEvent) -> None:
        events.append(event)
        if event.phase == "download" and event.current:
            cancel.set()

    with pytest.raises(OperationCancelled):
        engine.pull(repository, "big", progress=on_event, cancel=cancel)
    assert events[-1].phase == "cancelled"
    assert "done" not in [e.phase for e in events]
    # Had the engine kept pulling, 48 MB over loopback would have landed by now.
    time.sleep(2.0)
    with pytest.raises(ImageNotFoundError):
        engine.inspect_image(f"{repository}:big")
    # The engine is still usable after a cancelled stream.
    assert engine.pull(repository, "big")["Id"] == image_id
    engine.remove_image(image_id, force=True)


# -- local images --------------------------------------------------------------


@pytest.mark.services
def test_tag_list_history_and_remove(engine: Engine, built, repo_name: str) -> None:
    repository, image_id = built
    engine.tag(image_id, f"local/{repo_name}", "x")
    listed = engine.list_images(f"local/{repo_name}")
    assert [img["Id"] for img in listed] == [image_id]
    assert f"local/{repo_name}:x" in listed[0]["RepoTags"]
    assert any(img["Id"] == image_id for img in engine.list_images())
    history = engine.image_history(image_id)
    assert len(history) == 3 and any("COPY" in (h.get("CreatedBy") or "") for h in history)
    engine.remove_image(f"local/{repo_name}:x")
    assert engine.list_images(f"local/{repo_name}") == []
    with pytest.raises(ImageNotFoundError):
        engine.remove_image(f"local/{repo_name}:x")
    engine.remove_image(f"local/{repo_name}:x", missing_ok=True)
    with pytest.raises(ImageNotFoundError):
        engine.inspect_image(f"local/{repo_name}:x")
    with pytest.raises(ImageNotFoundError):
        engine.tag(f"local/{repo_name}:x", "local/other", "1")
    with pytest.raises(ImageNotFoundError):
        engine.image_history(f"local/{repo_name}:x")


@pytest.mark.services
def test_cancel_mid_build_stops_the_step(engine: Engine, tmp_path: Path) -> None:
    marker = f"end-{uuid.uuid4().hex[:8]}"
    ctx = make_context(tmp_path / "ctx", f"RUN echo started; sleep 60; echo {marker}\n")
    cancel = threading.Event()

    def on_event(event: ProgressEvent) -> None:
        if event.message == "started":
            cancel.set()

    began = time.monotonic()
    with pytest.raises(OperationCancelled):
        engine.build(ctx, tag="engine-test/cancelled:1", progress=on_event, cancel=cancel)
    assert time.monotonic() - began < 30

    def leftovers() -> list[dict]:
        return [c for c in engine.api.containers(all=True) if marker in (c.get("Command") or "")]

    deadline = time.monotonic() + 15
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers() == [], "the cancelled build's container is still there"
