"""registry_nb.widgets, headless: the forms and the browser against dockerd and the registries.

Each test builds a form, sets its inputs, clicks, waits, and checks what a person
would see (progress, layer bars, log, status line, result panel, chart) next to
what the registry and docker-py say. Images come from skopeo or docker-py, never
from the code under test.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator

import docker
import ipywidgets as widgets
import pytest
from helpers import busybox_build_context, seed_image, seed_index, skopeo_digest

from registry_nb import ContainerRegistry
from registry_nb.engine import Engine
from registry_nb.errors import (
    AuthenticationError,
    BuildError,
    ImageNotFoundError,
    InvalidReferenceError,
    OperationCancelled,
)
from registry_nb.widgets import (
    BuildForm,
    FormInputError,
    PullForm,
    PushForm,
    RegistryBrowser,
    human_bytes,
    instruction,
    parse_build_args,
)

PNG = b"\x89PNG\r\n\x1a\n"
BIG_LAYER_MB = 120
SECRET_ENV_VALUE = "hunter2-never-shown"


# -- helpers -------------------------------------------------------------------


def all_widgets(root: widgets.Widget) -> Iterator[widgets.Widget]:
    """``root`` and every widget it references (children, layouts, styles), once each."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        w = stack.pop()
        if w.model_id in seen:
            continue
        seen.add(w.model_id)
        yield w
        for name in w.keys:
            value = getattr(w, name)
            items = value if isinstance(value, (tuple, list)) else [value]
            stack.extend(v for v in items if isinstance(v, widgets.Widget))


def output_text(out: widgets.Output) -> str:
    """Everything an Output shows, as one string (stream text and display data)."""
    return json.dumps(out.outputs)


def stream_text(out: widgets.Output) -> str:
    """The text an Output shows from its streams (what a person reads)."""
    return "".join(o.get("text", "") for o in out.outputs if o.get("output_type") == "stream")


def has_png(out: widgets.Output) -> bool:
    return any("image/png" in o.get("data", {}) for o in out.outputs)


def shown_layer_rows(form) -> list:
    return [r for r in form._rows if r.box.layout.display != "none"]


def remove_local(client: docker.DockerClient, ref: str) -> None:
    try:
        client.images.remove(ref, force=True)
    except docker.errors.ImageNotFound:
        pass


@pytest.fixture
def reg(open_registry, docker_host) -> Iterator[ContainerRegistry]:
    registry = ContainerRegistry(open_registry.host)
    yield registry
    registry.close()


@pytest.fixture
def construction_threads(monkeypatch) -> list[str]:
    """Names of the threads on which widgets get constructed during the test."""
    names: list[str] = []
    original = widgets.Widget.__init__

    def record(self, **kwargs):
        names.append(threading.current_thread().name)
        original(self, **kwargs)

    monkeypatch.setattr(widgets.Widget, "__init__", record)
    return names


@pytest.fixture
def worker_changes(monkeypatch) -> list[tuple[str, str, bool]]:
    """(widget type, trait, inside hold_sync?) of every trait change made off the main thread."""
    seen: list[tuple[str, str, bool]] = []
    original = widgets.Widget.notify_change

    def record(self, change):
        if threading.current_thread() is not threading.main_thread():
            seen.append((type(self).__name__, change["name"], bool(self._holding_sync)))
        original(self, change)

    monkeypatch.setattr(widgets.Widget, "notify_change", record)
    return seen


@pytest.fixture(scope="session")
def big_image(open_registry, docker_client, tmp_path_factory) -> str:
    """``host/test/widgets-big:1``: one ~120 MB random layer (FROM scratch), in the
    open registry and not in the engine."""
    ctx = tmp_path_factory.mktemp("big-image")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY big /big\n")
    with open(ctx / "big", "wb") as f:
        for _ in range(BIG_LAYER_MB):
            f.write(os.urandom(1_000_000))
    repo = f"{open_registry.host}/test/widgets-big-{uuid.uuid4().hex[:6]}"
    docker_client.images.build(path=str(ctx), tag=f"{repo}:1", network_mode="none", rm=True)
    for line in docker_client.images.push(repo, "1", stream=True, decode=True):
        assert "error" not in line, line
    remove_local(docker_client, f"{repo}:1")
    (ctx / "big").unlink()
    return f"{repo}:1"


def big_pull_form(reg: ContainerRegistry, big_image: str, docker_client) -> PullForm:
    remove_local(docker_client, big_image)
    name = big_image.split("/", 1)[1].rsplit(":", 1)[0]
    return PullForm(reg, image=name, tag="1")


def wait_until(predicate, timeout: float = 30, step: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


# -- pure helpers ------------------------------------------------------------------


def test_parse_build_args():
    assert parse_build_args("A=1\n\n# comment\n B = two words\nC=\nD=x=y") == {
        "A": "1", "B": " two words", "C": "", "D": "x=y"}
    with pytest.raises(FormInputError, match="line 2"):
        parse_build_args("A=1\nnot an arg")


def test_instruction_labels():
    assert instruction("/bin/sh -c #(nop) COPY file:" + "ab" * 32 + " in /bin/busybox ") \
        == "COPY file:" + "ab" * 6 + " in /bin/busybox"
    assert instruction("|1 X=1 /bin/sh -c echo hi > /x") == "RUN echo hi > /x"
    assert instruction("/bin/sh -c apk add git") == "RUN apk add git"
    assert instruction("RUN /bin/sh -c make # buildkit") == "RUN /bin/sh -c make"
    assert instruction(None) == "(no history)"
    assert len(instruction("x" * 500)) == 60


def test_wait_before_any_run_and_empty_inputs(reg):
    form = PullForm(reg)
    with pytest.raises(RuntimeError, match="nothing has run"):
        form.wait(1)
    form.image.value = "   "
    form.run_button.click()
    with pytest.raises(FormInputError, match="image name is empty"):
        form.wait(10)
    assert isinstance(form.error, FormInputError)
    assert form.state == "failed"
    assert "image name is empty" in form.status.value
    assert "Type the image name" in form.status.value
    assert not form.run_button.disabled and form.cancel_button.disabled


# -- pull ------------------------------------------------------------------------


def test_pull_form_shows_progress_layers_log_and_chart(reg, open_registry, unique_repo,
                                                       docker_client, construction_threads,
                                                       worker_changes):
    files = {f"part{i}.bin": os.urandom(300_000) for i in range(3)}
    digest = seed_image(open_registry, unique_repo, "1", files=files, layers=3)
    events = []
    form = PullForm(reg, progress=events.append)
    form.image.value = unique_repo
    form.tag.value = "1"
    started = time.monotonic()
    form.run_button.click()
    result = form.wait(60)
    elapsed = time.monotonic() - started

    assert result["status"] == "success"
    assert result is form.result and form.error is None and form.state == "success"
    assert result["image"] == f"{open_registry.host}/{unique_repo}:1"
    local = docker_client.images.get(result["image"])
    assert local.id == result["image_id"]
    assert f"{open_registry.host}/{unique_repo}@{digest}" in local.attrs["RepoDigests"]
    # the overall bar ends at its maximum, one bar per layer, all complete
    assert form.progress.value == form.progress.max == 100
    assert form.progress.bar_style == "success"
    rows = shown_layer_rows(form)
    assert len(rows) == 3
    assert all(r.bar.value == 100 and "Pull complete" in r.text.value for r in rows)
    assert "3/3 layers" in form.transfer.value and "MB" in form.transfer.value
    # the listener saw every event; the log has the status changes, not every byte count
    assert events[-1].phase == "done"
    assert "Pulling fs layer" in form.log_text and "Status:" in form.log_text
    assert form.log_text.count("Downloading") <= 3
    assert "Pulled" in form.status.value and unique_repo in form.status.value
    # result panel: the dict and the layer chart (a PNG, labelled from the history)
    assert result["image_id"] in output_text(form.result_panel)
    assert has_png(form.result_panel) and form.chart_png.startswith(PNG)
    # redraws are throttled (~10 a second, plus the final ones); widgets made on main
    assert form.redraws <= 10 * elapsed + 4
    assert set(construction_threads) == {threading.main_thread().name}
    assert worker_changes and all(inside for _, _, inside in worker_changes), \
        [c for c in worker_changes if not c[2]]
    assert not form.run_button.disabled and form.cancel_button.disabled


def test_pull_missing_tag_shows_image_not_found(reg, open_registry, unique_repo):
    seed_image(open_registry, unique_repo, "1")
    form = PullForm(reg, image=unique_repo, tag="no-such-tag")
    form.run_button.click()
    with pytest.raises(ImageNotFoundError):
        form.wait(60)
    assert isinstance(form.error, ImageNotFoundError)
    assert form.result is None and form.state == "failed"
    assert form.progress.bar_style == "danger"
    status = form.status.value
    assert "Failed" in status
    assert form.error.message.splitlines()[0][:40] in status.replace("&#x27;", "'")
    assert form.error.hint and form.error.hint[:30] in status.replace("&#x27;", "'")
    assert not form.running and not form.run_button.disabled


def test_cancel_mid_pull_leaves_a_cancelled_state(reg, big_image, docker_client):
    form = big_pull_form(reg, big_image, docker_client)
    form.run_button.click()
    wait_until(lambda: form.progress.value > 0)
    form.cancel_button.click()
    assert form.cancel_button.disabled
    clicked = time.monotonic()
    with pytest.raises(OperationCancelled):
        form.wait(60)
    assert time.monotonic() - clicked < 10
    assert isinstance(form.error, OperationCancelled)
    assert form.state == "cancelled" and form.result is None
    assert "Cancelled" in form.status.value
    assert form.progress.value < form.progress.max
    assert form.progress.bar_style == "warning"
    assert not form.running and not form.run_button.disabled
    assert not has_png(form.result_panel)


def test_no_second_run_while_one_runs(reg, big_image, docker_client):
    form = big_pull_form(reg, big_image, docker_client)
    assert form.start() is True
    assert form.running and form.run_button.disabled
    assert form.start() is False
    form.run_button.click()
    assert form.run_count == 1
    form.cancel()
    with pytest.raises(OperationCancelled):
        form.wait(60)
    # once finished, the next run starts (and completes)
    form.run_button.click()
    assert form.run_count == 2
    result = form.wait(120)
    assert result["status"] == "success"
    assert form.progress.value == form.progress.max
    assert len(shown_layer_rows(form)) == 1
    assert "MB/s" in form.transfer.value
    remove_local(docker_client, big_image)


def test_simulated_when_no_engine_answers(open_registry, unique_repo, tmp_path):
    seed_image(open_registry, unique_repo, "1")
    dead = Engine(f"unix://{tmp_path}/no-dockerd.sock")
    reg = ContainerRegistry(open_registry.host, engine=dead)
    form = PullForm(reg, image=unique_repo, tag="1")
    form.run_button.click()
    result = form.wait(30)
    assert result["status"] == "simulated"
    assert form.state == "simulated" and form.error is None
    assert "Simulated" in form.status.value and "nothing was pulled" in form.status.value
    assert form.progress.value == 0 and form.progress.bar_style == "warning"
    assert "Simulated result" in output_text(form.result_panel)
    assert not has_png(form.result_panel) and form.chart_png is None


# -- push ------------------------------------------------------------------------


def test_push_form_pushes_a_local_image(reg, open_registry, unique_repo, docker_client,
                                       tmp_path):
    ctx = busybox_build_context(tmp_path / "ctx", ["COPY blob /blob"])
    (ctx / "blob").write_bytes(os.urandom(500_000))
    local = f"widgets-push-{uuid.uuid4().hex[:8]}:1"
    docker_client.images.build(path=str(ctx), tag=local, network_mode="none", rm=True)
    form = PushForm(reg)
    form.local_image.value = local
    form.image.value = unique_repo
    form.tag.value = "1"
    form.run_button.click()
    result = form.wait(120)
    assert result["status"] == "success"
    assert result["digest"] == skopeo_digest(open_registry.ref(unique_repo, "1"))
    assert form.progress.value == form.progress.max
    rows = shown_layer_rows(form)
    assert len(rows) == 3
    assert all(r.bar.value == 100 for r in rows)
    assert "Pushed" in form.status.value
    assert "The push refers to" in form.log_text
    assert has_png(form.result_panel)
    remove_local(docker_client, local)


# -- build -----------------------------------------------------------------------


def test_build_form_streams_the_log_and_pushes(reg, open_registry, unique_repo, tmp_path):
    marker = uuid.uuid4().hex
    ctx = busybox_build_context(tmp_path / "ctx", [
        "ARG GREETING", "RUN echo \"$GREETING\" && echo $GREETING > /greeting",
        "LABEL org.example.kind=widgets-test"])
    form = BuildForm(reg, dockerfile=str(ctx / "Dockerfile"), image=unique_repo, tag="2",
                     build_args=f"GREETING={marker}\n", no_cache=True)
    form.run_button.click()
    result = form.wait(180)
    assert result["status"] == "success"
    assert result["push_result"]["digest"] == skopeo_digest(open_registry.ref(unique_repo, "2"))
    log_text = form.log_text
    assert "Step 1/" in log_text and marker in log_text
    assert log_text.index("Step 1/") < log_text.index("The push refers to")
    assert form.progress.value == form.progress.max
    assert len(shown_layer_rows(form)) == 3
    assert "Built and pushed" in form.status.value
    assert has_png(form.result_panel)


def test_build_failure_and_bad_build_args(reg, unique_repo, tmp_path):
    ctx = busybox_build_context(tmp_path / "ctx", ["RUN echo about-to-fail && false"])
    form = BuildForm(reg, dockerfile=str(ctx), image=unique_repo, tag="1")
    form.run_button.click()
    with pytest.raises(BuildError):
        form.wait(120)
    assert "Failed" in form.status.value
    assert "Fix the failing step" in form.status.value
    assert "about-to-fail" in form.log_text
    # the build's output shows once: in the log, not again in the log or result panel
    shown = (stream_text(form.log_output) + stream_text(form.result_panel)).splitlines()
    assert shown.count("about-to-fail") == 1, shown

    form.build_args.value = "GOOD=1\nBAD LINE"
    form.run_button.click()
    with pytest.raises(FormInputError, match="line 2"):
        form.wait(30)


def test_log_stays_bounded(reg, unique_repo, tmp_path):
    ctx = busybox_build_context(tmp_path / "ctx", ["RUN seq 1 3000"])
    form = BuildForm(reg, dockerfile=str(ctx), image=unique_repo, tag="1", max_log_lines=200)
    form.run_button.click()
    form.wait(180)
    shown = "".join(o["text"] for o in form.log_output.outputs
                    if o.get("output_type") == "stream")
    assert len(shown.splitlines()) <= 201
    assert "earlier lines not shown" in shown
    assert "3000" in shown


# -- credentials -----------------------------------------------------------------


def test_password_is_used_once_and_never_kept(basic_registry, unique_repo, docker_host,
                                              tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-docker-config"))
    seed_image(basic_registry, unique_repo, "1", layers=2)
    secret = basic_registry.password
    reg = ContainerRegistry(basic_registry.host)
    caplog.set_level(logging.DEBUG)

    form = PullForm(reg, image=unique_repo, tag="1")
    form.username.value = basic_registry.username
    form.password.value = "wrong-" + secret
    form.run_button.click()
    with pytest.raises(AuthenticationError):
        form.wait(60)
    assert form.password.value == ""

    form.password.value = secret
    form.run_button.click()
    assert form.password.value == ""  # emptied as soon as the run starts
    result = form.wait(60)
    assert result["status"] == "success"
    assert has_png(form.result_panel)  # the chart's registry read used the run's credentials
    assert reg.credentials is None
    for w in all_widgets(form):
        state = json.dumps(w.get_state(), default=str)
        assert secret not in state, f"{type(w).__name__} holds the password"
    assert all(secret not in r.getMessage() for r in caplog.records)
    assert secret not in form.log_text
    reg.close()


# -- browser ---------------------------------------------------------------------


def test_browser_repositories_tags_layers_and_config(reg, open_registry, unique_repo,
                                                     construction_threads, worker_changes):
    config = {"config": {
        "Env": ["PATH=/bin", f"SECRET_TOKEN={SECRET_ENV_VALUE}"],
        "Labels": {"org.opencontainers.image.title": "widget browser"},
        "Entrypoint": ["/bin/app", "--serve"], "User": "1000:1000"}}
    seed_image(open_registry, unique_repo, "1", config_overrides=config)
    seed_image(open_registry, unique_repo, "2", layers=3, config_overrides=config)
    browser = RegistryBrowser(reg)
    browser.wait(60)
    assert browser.catalog_complete and browser.error is None
    assert unique_repo in browser.all_repositories
    assert f"{len(browser.all_repositories):,} repositories" in browser.status.value

    browser.filter.value = unique_repo.upper()
    assert browser.repositories.options == (unique_repo,)
    assert browser.repositories.value is None  # filtering never selects by itself
    browser.repositories.value = unique_repo
    browser.wait(30)
    assert browser.tags.options == ("1", "2")
    assert list(browser.frame["tag"]) == ["1", "2"]
    assert "layer_count" in browser.tags_table.value and "<td>2</td>" in browser.tags_table.value

    browser.tags.value = "2"
    browser.wait(30)
    summary = browser.summary
    assert summary["env_names"] == ["PATH", "SECRET_TOKEN"]
    assert summary["entrypoint"] == ["/bin/app", "--serve"]
    assert summary["user"] == "1000:1000"
    assert summary["created"].startswith("2023-11-14")
    assert summary["labels"] == {"org.opencontainers.image.title": "widget browser"}
    details = browser.details.value
    assert "SECRET_TOKEN" in details and "widget browser" in details and "/bin/app" in details
    for w in all_widgets(browser):
        assert SECRET_ENV_VALUE not in json.dumps(w.get_state(), default=str)
    assert has_png(browser.chart) and browser.chart_png.startswith(PNG)
    assert set(construction_threads) == {threading.main_thread().name}
    assert worker_changes and all(inside for _, _, inside in worker_changes), \
        [c for c in worker_changes if not c[2]]


class _SlowCatalogClient:
    """A registry client whose catalog serves one page, then waits to be released."""

    def __init__(self, names: list[str], page: int) -> None:
        self.names, self.page = names, page
        self.release = threading.Event()

    def catalog(self, *, page_size: int | None = None) -> Iterator[str]:
        yield from self.names[: self.page]
        assert self.release.wait(30)
        yield from self.names[self.page:]


class _SlowRegistry:
    registry_host = "registry.example:5000"

    def __init__(self, client: _SlowCatalogClient) -> None:
        self.client = client


def test_browser_shows_the_first_page_while_the_rest_loads():
    names = [f"team{i % 7}/app-{i:05d}" for i in range(5000)]
    client = _SlowCatalogClient(names, page=100)
    browser = RegistryBrowser(_SlowRegistry(client), page_size=100, max_options=1000)
    wait_until(lambda: len(browser.repositories.options) == 100, timeout=10)
    assert browser.loading and not browser.catalog_complete
    assert "so far" in browser.status.value
    browser.filter.value = "app-0004"  # the list answers while the catalog loads
    assert browser.repositories.options == tuple(n for n in names[:100] if "app-0004" in n)
    browser.filter.value = ""
    client.release.set()
    browser.wait(30)
    assert browser.all_repositories == names and browser.catalog_complete
    assert len(browser.repositories.options) == 1000
    assert "showing the first 1,000" in browser.status.value
    browser.filter.value = "team3/"
    assert len(browser.repositories.options) == 714


def test_browser_refresh_and_errors(reg, open_registry, unique_repo):
    browser = RegistryBrowser(reg)
    browser.wait(60)
    assert unique_repo not in browser.all_repositories
    seed_image(open_registry, unique_repo, "1")
    browser.refresh_button.click()
    browser.wait(60)
    assert unique_repo in browser.all_repositories

    down = RegistryBrowser(ContainerRegistry("127.0.0.1:9"))
    down.wait(60)
    assert down.error is not None
    assert "Failed" in down.status.value
    assert down.repositories.options == ()


# -- details a newcomer sees (issue 14) ---------------------------------------------


def test_log_follows_its_newest_line(reg):
    """The log box scrolls by itself to its newest line: a column-reverse flex box keeps
    the scroll position anchored at the end (the browser test checks it on screen)."""
    form = PullForm(reg)
    layout = form.log_output.layout
    assert layout.display == "flex" and layout.flex_flow == "column-reverse"
    assert layout.overflow == "auto" and layout.max_height  # still a bounded, scrolling box


def test_build_bar_and_result_agree_on_the_size(reg, open_registry, unique_repo, tmp_path):
    """docker's push progress counts a layer's file content (its ``Size``), the result
    the compressed blob the registry stores; the form ends on the registry's figure."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text(f"Hello from a form build! {uuid.uuid4().hex}\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    form = BuildForm(reg, dockerfile=str(ctx), image=unique_repo, tag="1")
    form.run_button.click()
    result = form.wait(120)
    stored = result["push_result"]["size_bytes"]
    layers = reg.layers_frame(unique_repo, "1")
    assert stored == int(layers["size_bytes"].sum()) and stored > 100  # a gzip tar, not 58 B
    assert human_bytes(stored) in form.transfer.value, form.transfer.value
    content = len((ctx / "hello.txt").read_bytes())
    assert human_bytes(content) not in form.transfer.value  # docker's figure is gone
    rows = shown_layer_rows(form)
    assert len(rows) == 1 and human_bytes(stored) in rows[0].text.value
    assert f"<td style=\\\"text-align:left;padding:1px 0\\\">{stored}</td>" in \
        output_text(form.result_panel)  # the result's size_bytes


def test_browser_shows_the_platforms_of_an_index_and_picks_one(reg, open_registry,
                                                                unique_repo):
    digests = seed_index(open_registry, unique_repo, "multi", {
        "linux/amd64": {"amd.txt": b"amd64 files\n"},
        "linux/arm64/v8": {"arm.txt": b"arm64 files\n", "more.txt": b"two layers? no\n"},
    })
    seed_image(open_registry, unique_repo, "single")
    browser = RegistryBrowser(reg)
    browser.wait(60)
    browser.repositories.value = unique_repo
    browser.wait(30)
    assert "linux/amd64, linux/arm64/v8" in browser.tags_table.value  # the platforms column
    assert browser.platform.layout.display == "none"  # nothing picked yet

    browser.tags.value = "multi"
    browser.wait(30)
    assert browser.platform.layout.display != "none"
    assert browser.platform.options == ("linux/amd64", "linux/arm64/v8")
    assert browser.platform.value == "linux/amd64" == browser.summary["platform"]
    first_chart = browser.chart_png
    assert "2 platforms" in browser.details.value

    browser.platform.value = "linux/arm64/v8"
    browser.wait(30)
    assert browser.summary["platform"] == "linux/arm64/v8"
    assert browser.chart_png != first_chart and has_png(browser.chart)
    assert digests["linux/arm64/v8"][:19] in browser.details.value

    browser.tags.value = "single"
    browser.wait(30)
    assert browser.platform.layout.display == "none"
    assert browser.summary["platform"] == "linux/amd64"


def test_pull_form_takes_a_name_with_its_tag(reg, open_registry, unique_repo, docker_client):
    """``repo:tag`` typed into the image field, the Tag field left at its default."""
    seed_image(open_registry, unique_repo, "1", files={"a.txt": b"a\n"}, layers=1)
    form = PullForm(reg, image=f"{unique_repo}:1")
    assert form.tag.value == "latest"
    form.run_button.click()
    result = form.wait(60)
    assert result["image"] == f"{open_registry.host}/{unique_repo}:1"
    form = PullForm(reg, image=f"{unique_repo}:1", tag="2")
    form.run_button.click()
    with pytest.raises(InvalidReferenceError, match="disagree"):
        form.wait(60)
    assert "disagree" in form.status.value
