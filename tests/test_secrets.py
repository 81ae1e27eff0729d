"""Secrets never show: every public operation, Basic and Bearer, at DEBUG logging.

Each scenario runs the facade's operations (listings, frames, describe, copy,
save, load, assemble, audits, and push, pull and build through dockerd) against
the Basic and the token registries, plus operations that are refused (a wrong
password, a reader pushing, a pre-obtained token without push), and the widgets
(forms run with the password typed in, the registry browser). Then it searches
everything a person or a log collector could see:

- every log record of every logger at DEBUG (registry_nb, urllib3, requests,
  docker), formatted with its traceback, and what went to stdout/stderr;
- reprs and strs of the facade, its credentials, client, transport, auth and
  engine, and of every result;
- messages, hints and full tracebacks (chained causes included) of refused
  operations;
- ``to_string()`` of every DataFrame;
- ``get_state()`` of every widget that exists after the forms ran;

for the passwords, their Basic header values, the docker config ``auth`` values,
a pre-obtained token and every token the token service issued to this process
(recorded by wrapping ``RegistryAuth._fetch_token``), and the signature part of
each token.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from helpers import RegistryService, busybox_build_context, make_oci_layout, seed_image

from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.errors import AuthenticationError, RegistryError
from registry_nb.remote import RegistryAuth


@dataclass
class Watch:
    """What must stay hidden, and everything that was shown."""

    secret_values: set[str] = field(default_factory=set)
    shown: list[tuple[str, str]] = field(default_factory=list)  # (where, text)
    issued: list[str] = field(default_factory=list)

    def secret(self, *values: str) -> None:
        for value in values:
            assert value, "an empty secret would match everything"
            self.secret_values.add(value)
            if value.count(".") == 2:  # a JWT: its signature alone is secret too
                self.secret_values.add(value.rsplit(".", 1)[1])

    def show(self, where: str, value: Any) -> None:
        if isinstance(value, pd.DataFrame):
            with pd.option_context("display.max_colwidth", None, "display.width", 10_000):
                self.show(where, value.to_string())
            return
        if isinstance(value, BaseException):
            self.show(where, "".join(traceback.format_exception(value)))
            self.show(where + " (repr)", repr(value))
            return
        self.shown.append((where, value if isinstance(value, str) else repr(value)))

    def result(self, where: str, value: Any) -> Any:
        """Show an operation's result (and the frames inside it)."""
        self.show(where, value)
        for name, attr in vars(value).items() if hasattr(value, "__dict__") else []:
            if isinstance(attr, pd.DataFrame):
                self.show(f"{where}.{name}", attr)
        return value

    def refused(self, where: str, call: Callable[[], Any],
                expected: type[BaseException] = RegistryError) -> BaseException:
        with pytest.raises(expected) as info:
            call()
        self.show(where, info.value)
        return info.value

    def leaks(self) -> list[str]:
        found = []
        for where, text in self.shown:
            for value in self.secret_values:
                if value in text:
                    at = text.index(value)
                    found.append(f"{where}: …{text[max(0, at - 60):at]}<SECRET>…")
        return found


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def watch(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Watch]:
    """DEBUG everywhere, issued tokens recorded, an empty docker config."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    caplog.set_level(logging.DEBUG)
    names = ("registry_nb", "urllib3", "requests", "docker", "charset_normalizer")
    for name in names:
        caplog.set_level(logging.DEBUG, logger=name)
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    seen = Watch()
    original = RegistryAuth._fetch_token

    def recording(self: RegistryAuth, realm: str, service: str, scopes: tuple[str, ...]) -> Any:
        token = original(self, realm, service, scopes)
        seen.issued.append(token.value)
        seen.secret(token.value)
        return token

    monkeypatch.setattr(RegistryAuth, "_fetch_token", recording)
    try:
        yield seen
    finally:
        root.removeHandler(handler)
    records = [r for phase in ("setup", "call") for r in caplog.get_records(phase)]
    formatter = logging.Formatter("%(name)s %(message)s %(exc_info)s")
    seen.show("caplog", "\n".join(formatter.format(r) for r in records))
    seen.show("root handler", "\n".join(handler.lines))
    out, err = capfd.readouterr()
    seen.show("stdout", out)
    seen.show("stderr", err)
    for name in ("urllib3", "registry_nb", "docker"):
        assert any(r.levelno == logging.DEBUG and r.name.startswith(name) for r in records), \
            f"{name} debug logging was not captured"
    leaks = seen.leaks()
    assert not leaks, "secrets shown:\n" + "\n".join(leaks[:20])


def _basic(reg: RegistryService, user: str | None = None) -> RegistryCredentials:
    user = user or reg.username or ""
    password = reg.users.get(user) or reg.password or ""
    return RegistryCredentials(username=user, password=password, registry_url=reg.host)


def _remember(seen: Watch, creds: RegistryCredentials) -> None:
    seen.secret(creds.password, creds.get_auth_header().split(" ", 1)[1])


def _write_docker_config(seen: Watch, *entries: tuple[RegistryService, RegistryCredentials]
                         ) -> None:
    auths = {}
    for registry, creds in entries:
        encoded = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        seen.secret(encoded)
        auths[registry.host] = {"auth": encoded}
    path = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    path.write_text(json.dumps({"auths": auths}))


def _reprs(seen: Watch, where: str, reg: ContainerRegistry) -> None:
    seen.show(f"{where} repr(reg)", reg)
    seen.show(f"{where} vars(reg)", vars(reg))
    seen.show(f"{where} credentials", reg.credentials)
    seen.show(f"{where} str(credentials)", str(reg.credentials))
    seen.show(f"{where} client", reg.client)
    transport = reg.client.transport
    seen.show(f"{where} transport", transport)
    seen.show(f"{where} vars(transport)", vars(transport))
    seen.show(f"{where} session headers", dict(transport.session.headers))
    seen.show(f"{where} auth", transport.auth)
    seen.show(f"{where} vars(auth)", vars(transport.auth))
    seen.show(f"{where} tokens", transport.auth._tokens)
    if reg._engine is not None:
        seen.show(f"{where} engine", reg._engine)
        seen.show(f"{where} vars(engine)", vars(reg._engine))


def _exercise(seen: Watch, reg: ContainerRegistry, repo: str, other: str, tmp: Path,
              engine: bool) -> None:
    """Every public operation of the facade on ``repo`` (``other``: another registry)."""
    host = reg.registry_host
    w = seen.result
    w("list_registry_images", reg.list_registry_images(repo))
    w("registry_images_frame", reg.registry_images_frame(repo, uncompressed=True))
    w("layers_frame", reg.layers_frame(repo, "v1", uncompressed=True))
    w("describe_image", reg.describe_image(repo, "v1"))
    w("copy_image (same registry)", reg.copy_image(f"{host}/{repo}:v1", f"{host}/{repo}-c:v1"))
    w("copy_image (other registry)", reg.copy_image(f"{host}/{repo}:v1", f"{other}/{repo}:v1"))
    w("save_image", reg.save_image(repo, "v1", tmp / "saved"))
    layout = tmp / "made"
    make_oci_layout(layout, {"made.txt": os.urandom(300)}, tag="v1")
    w("load_image", reg.load_image(layout, f"{repo}-loaded", "v1"))
    folder = tmp / "site"
    folder.mkdir()
    (folder / "index.html").write_text("hello")
    w("image_from_directory", reg.image_from_directory(folder, f"{repo}-dir", "v1",
                                                       base=f"{host}/{repo}:v1"))
    w("audit", reg.audit(repo))
    w("audit_rules", reg.audit_rules())
    w("storage_frame", reg.storage_frame(repo))
    w("layer_contents", reg.layer_contents(repo, "v1"))
    w("wasted_space", reg.wasted_space(repo, "v1"))
    w("packages_frame", reg.packages_frame(repo, "v1"))
    if engine:
        w("pull_image", reg.pull_image(repo, "v1"))
        w("push_image", reg.push_image(repo, "pushed", local_image=f"{host}/{repo}:v1"))
        ctx = busybox_build_context(tmp / "ctx", ["RUN echo built > /built"])
        w("build_and_push", reg.build_and_push(ctx, f"{repo}-built", "v1"))
        w("list_images", reg.list_images(repo))
        w("local_images_frame", reg.local_images_frame(repo))
    _reprs(seen, "after operations", reg)


def _seed(registry: RegistryService, repo: str, creds: RegistryCredentials) -> str:
    files = {"etc/os-release": b"ID=alpine\n", "app.bin": os.urandom(2000),
             "lib/apk/db/installed": b"P:busybox\nV:1.36.1-r0\nA:x86_64\n\n"}
    return seed_image(registry, repo, "v1", files=files, creds=(creds.username, creds.password),
                      layers=2)


# ------------------------------------------------------------------ scenarios


def test_basic_credentials_never_show(basic_registry: RegistryService,
                                      token_registry: RegistryService, unique_repo: str,
                                      tmp_path: Path, watch: Watch, docker_client) -> None:
    creds = _basic(basic_registry)
    other = _basic(token_registry)
    for c in (creds, other):
        _remember(watch, c)
    _write_docker_config(watch, (token_registry, other))
    _seed(basic_registry, unique_repo, creds)
    with ContainerRegistry(basic_registry.host, credentials=creds) as reg:
        _exercise(watch, reg, unique_repo, token_registry.host, tmp_path, engine=True)
    _refusals(watch, basic_registry, token_registry, unique_repo, tmp_path)


def test_bearer_credentials_never_show(token_registry: RegistryService,
                                       basic_registry: RegistryService, unique_repo: str,
                                       tmp_path: Path, watch: Watch, docker_client) -> None:
    creds = _basic(token_registry)
    other = _basic(basic_registry)
    reader = _basic(token_registry, "reader")
    for c in (creds, other, reader):
        _remember(watch, c)
    _write_docker_config(watch, (basic_registry, other))
    _seed(token_registry, unique_repo, creds)
    with ContainerRegistry(token_registry.host, credentials=creds) as reg:
        _exercise(watch, reg, unique_repo, basic_registry.host, tmp_path, engine=True)
        assert watch.issued, "no token was issued to this process"
    _refusals(watch, token_registry, basic_registry, unique_repo, tmp_path)

    # a pre-obtained token: listings work, a push is refused, the token never shows
    token = requests.get(token_registry.realm, params=[
        ("service", token_registry.service), ("scope", f"repository:{unique_repo}:pull")],
        auth=(reader.username, reader.password), timeout=10).json()["token"]
    watch.secret(token)
    with ContainerRegistry(token_registry.host, RegistryCredentials(token=token)) as reg:
        watch.result("token: describe_image", reg.describe_image(unique_repo, "v1"))
        error = watch.refused("token: load_image", lambda: reg.load_image(
            tmp_path / "made", unique_repo, "t"), AuthenticationError)
        assert "not allowed to push" in str(error)
        _reprs(watch, "token facade", reg)

    # the reader may pull, not push: the message names only what was refused
    with ContainerRegistry(token_registry.host, reader) as reg:
        watch.result("reader: frame", reg.registry_images_frame(unique_repo))
        error = watch.refused("reader: load_image", lambda: reg.load_image(
            tmp_path / "made", unique_repo, "r"), AuthenticationError)
        assert "user reader is not allowed to push repository" in str(error)
        assert "pull and push" not in str(error)


def _refusals(seen: Watch, registry: RegistryService, other: RegistryService, repo: str,
              tmp: Path) -> None:
    """Operations with a wrong password: typed errors whose text holds no secret."""
    wrong = RegistryCredentials(username="alice", password=f"Wr0ng-{secrets.token_hex(8)}",
                                registry_url=registry.host)
    _remember(seen, wrong)
    with ContainerRegistry(registry.host, credentials=wrong) as reg:
        calls: dict[str, Callable[[], Any]] = {
            "list_registry_images": lambda: reg.list_registry_images(repo),
            "describe_image": lambda: reg.describe_image(repo, "v1"),
            "layers_frame": lambda: reg.layers_frame(repo, "v1"),
            "copy_image": lambda: reg.copy_image(f"{registry.host}/{repo}:v1",
                                                 f"{other.host}/{repo}-x:v1"),
            "save_image": lambda: reg.save_image(repo, "v1", tmp / "refused"),
            "load_image": lambda: reg.load_image(tmp / "made", repo, "x"),
            "layer_contents": lambda: reg.layer_contents(repo, "v1"),
            "pull_image": lambda: reg.pull_image(repo, "v1"),
            "push_image": lambda: reg.push_image(repo, "x", local_image=f"{registry.host}/"
                                                 f"{repo}:v1"),
        }
        for name, call in calls.items():
            error = seen.refused(f"wrong password: {name}", call)
            assert "refused" in str(error) or "unauthorized" in str(error).lower() \
                or "denied" in str(error).lower(), str(error)
        seen.refused("wrong password: registry_images_frame",
                     lambda: reg.registry_images_frame(repo))
        seen.refused("wrong password: audit", lambda: reg.audit(repo))
        _reprs(seen, "wrong password facade", reg)


# ------------------------------------------------------------------ widgets


def _all_widget_states() -> list[tuple[str, str]]:
    import ipywidgets as widgets
    from ipywidgets.widgets import widget as widget_module

    instances = getattr(widget_module, "_instances", None)  # every live widget (8.1)
    if instances is None:
        instances = widgets.Widget.widgets
    out = []
    for model_id, widget in list(instances.items()):
        try:
            state = widget.get_state()
        except Exception as exc:  # a closed widget: nothing to show
            state = {"error": repr(exc)}
        out.append((f"widget {type(widget).__name__} {model_id}",
                    json.dumps(state, default=repr)))
    return out


def test_widgets_never_show_secrets(basic_registry: RegistryService,
                                    token_registry: RegistryService, unique_repo: str,
                                    tmp_path: Path, watch: Watch, docker_client) -> None:
    forms = pytest.importorskip("registry_nb.widgets")
    for registry in (basic_registry, token_registry):
        creds = _basic(registry)
        _remember(watch, creds)
        _seed(registry, unique_repo, creds)
        reg = ContainerRegistry(registry.host)  # credentials typed into the forms only
        pull = forms.PullForm(reg, image=unique_repo, tag="v1")
        pull.username.value, pull.password.value = creds.username, creds.password
        pull.run_button.click()
        watch.result(f"{registry.name} PullForm", pull.wait(120))
        assert pull.password.value == ""
        push = forms.PushForm(reg, image=unique_repo, tag="pushed",
                              local_image=f"{registry.host}/{unique_repo}:v1")
        push.username.value, push.password.value = creds.username, creds.password
        push.run_button.click()
        watch.result(f"{registry.name} PushForm", push.wait(120))
        build = forms.BuildForm(reg, dockerfile=str(busybox_build_context(
            tmp_path / f"ctx-{registry.name}")), image=f"{unique_repo}-built", tag="v1")
        build.username.value, build.password.value = creds.username, creds.password
        build.run_button.click()
        watch.result(f"{registry.name} BuildForm", build.wait(180))
        wrong = forms.PullForm(reg, image=unique_repo, tag="v1")
        wrong_password = f"Wr0ng-{secrets.token_hex(8)}"
        watch.secret(wrong_password)
        wrong.username.value, wrong.password.value = creds.username, wrong_password
        wrong.run_button.click()
        error = watch.refused(f"{registry.name} PullForm wrong password",
                              lambda form=wrong: form.wait(120))
        watch.show("wrong form error", error)
        browser = forms.RegistryBrowser(ContainerRegistry(registry.host, credentials=creds))
        browser.wait(60)
        browser.filter.value = unique_repo
        browser.repositories.value = unique_repo
        browser.wait(30)
        browser.tags.value = "v1"
        browser.wait(30)
        watch.show(f"{registry.name} browser frame", browser.frame)
        for form in (pull, push, build, wrong):
            watch.show(f"{registry.name} {type(form).__name__} log", form.log_text)
            watch.show(f"{registry.name} {type(form).__name__} state", form.state)
    states = _all_widget_states()
    assert len(states) > 50
    for where, text in states:
        watch.show(where, text)


def test_the_search_finds_planted_leaks() -> None:
    """The machinery above would notice a secret in a log line, a repr or a frame."""
    seen = Watch()
    handler = _Collect()
    logger = logging.getLogger("urllib3.connectionpool")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        logger.debug("sending Authorization: Bearer %s", "hdr.payload.s1gnature")
    finally:
        logging.getLogger().removeHandler(handler)
        logger.setLevel(old_level)
    seen.secret("hdr.payload.s1gnature", "pa55word")
    seen.show("log", "\n".join(handler.lines))
    seen.show("frame", pd.DataFrame({"x": ["user pa55word"]}))
    seen.show("truncated token", "token …payload.s1gnature")
    leaks = seen.leaks()
    assert len(leaks) == 4 and any(leak.startswith("frame") for leak in leaks)
