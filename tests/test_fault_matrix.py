"""The fault matrix: every injected fault against every kind of registry operation.

Operations (each through :class:`faultproxy.FaultProxy` in front of the real
registries, with the facade's credentials so every request carries an
``Authorization`` header that must never leave the registry's host):

========  =====================================================  ==================
op        what runs                                              faulted request
========  =====================================================  ==================
catalog   ``client.catalog()`` on the Basic registry             GET /v2/_catalog
tags      ``list_registry_images(repo)``                         GET …/tags/list
manifest  ``describe_image(repo, tag)``                          GET …/manifests/v1
blob      ``client.fetch_blob(repo, layer, path)``               GET …/blobs/<layer>
upload    ``load_image(OCI layout, repo, tag)``                  PUT …/blobs/uploads/…
copy      ``copy_image`` Basic registry → token registry         both of the above
save      ``save_image(repo, tag, OCI layout)``                  GET …/blobs/<layer>
========  =====================================================  ==================

Faults: 500, 502, 503, 504, 429, 429 with ``Retry-After``, a reset before the
response headers (after the registry acted on the request), a reset mid-body, a
truncated body, one corrupted byte, a stall longer than the read timeout (before
the headers, and mid-body), and a 307 redirect to another host (a recording proxy
in front of a third registry that holds the same image). For uploads the body
faults hit the request body instead (the registry sees a cut, truncated or
corrupted upload). Each fault fires once (``once``: a transient fault) or on every
matching request (``always``).

Each case must either complete with every digest verified or raise a typed
:class:`~registry_nb.errors.RegistryError` within a bounded time; the destination
(registry repository, OCI layout, download folder) holds no partial image; the
redirect target never sees credentials. Transient faults the client promises to
absorb (retryable statuses, resets, drops, stalls, redirects) must complete;
corruption must never complete. Timeouts and backoff are shortened by fixtures so
the matrix runs in seconds per case. Every case's outcome and time go to
``fault_matrix.json`` in the pytest base temp folder.

The harness (:class:`Rig`, :data:`OPS`, :data:`FAULTS`, :func:`run_case`) is shared
with ``test_soak.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Fault, FaultProxy
from helpers import RegistryService, make_oci_layout, push_layout_with_skopeo

import registry_nb.remote.retry as retry_module
from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.errors import RegistryError
from registry_nb.images.layout import TEMP_PREFIX, OCILayout
from registry_nb.oci.reference import validate_repository
from registry_nb.remote.distribution import RegistryClient
from registry_nb.remote.transport import Transport

KIB = 1024
#: Read timeout of every Transport in these tests (a stall lasts longer).
READ_TIMEOUT = 0.5
#: How long a stalled response stays silent before the proxy drops it.
STALL = 2.0
#: No case may take longer than this (a hang or runaway retries fail the case).
CASE_BOUND = 20.0
TAG = "v1"


# ------------------------------------------------------------------ faults


@dataclass(frozen=True)
class FaultSpec:
    """One kind of fault: the proxy arguments for responses and for request bodies."""

    name: str
    response: dict[str, Any]
    request: dict[str, Any] | None = None  # None: same as response
    offset: bool = False  # the arguments take the operation's byte offset

    def kwargs(self, side: str, offset: int, redirect: str) -> dict[str, Any] | None:
        spec = self.response if side == "response" or self.request is None else self.request
        if not spec:
            return None  # this fault has no form for this side
        out: dict[str, Any] = {}
        for key, value in spec.items():
            if value == "OFFSET":
                value = offset
            elif value == "REDIRECT":
                value = redirect
            out[key] = value
        return out


_UNKNOWN = json.dumps({"errors": [{"code": "UNKNOWN", "message": "injected failure"}]}).encode()

FAULTS: dict[str, FaultSpec] = {f.name: f for f in [
    FaultSpec("500", {"status": 500, "body": _UNKNOWN,
                      "headers": {"Content-Type": "application/json"}}),
    FaultSpec("502", {"status": 502}),
    FaultSpec("503", {"status": 503}),
    FaultSpec("504", {"status": 504}),
    FaultSpec("429", {"status": 429}),
    FaultSpec("429-retry-after", {"status": 429, "headers": {"Retry-After": "1"}}),
    FaultSpec("reset-before-headers", {"reset": True}),
    FaultSpec("reset-mid-body", {"cut_response_after": "OFFSET", "rst": True},
              {"cut_request_after": "OFFSET"}),
    FaultSpec("truncated-body", {"cut_response_after": "OFFSET"},
              {"cut_request_after": "OFFSET", "forward_partial": True}),
    FaultSpec("corrupt-byte", {"corrupt_at": "OFFSET"}, {"corrupt_request_at": "OFFSET"}),
    FaultSpec("stall", {"stall": STALL}),
    FaultSpec("stall-mid-body", {"stall": STALL, "stall_after": "OFFSET"}, {}),
    FaultSpec("redirect", {"redirect_to": "REDIRECT"}),
]}
PERSISTENCE = {"once": 1, "always": None}

#: Faults a client must absorb when they happen once (README: retries, resumes).
TRANSIENT_OK = frozenset({"502", "503", "504", "429", "429-retry-after",
                          "reset-before-headers", "reset-mid-body", "truncated-body",
                          "stall", "stall-mid-body", "redirect"})


# ------------------------------------------------------------------ the rig


@dataclass
class SeededImage:
    repo: str
    layout: Path
    digest: str
    blobs: dict[str, int]  # digest -> size (config and layers)
    layers: list[str]


@dataclass
class Rig:
    """Registries, proxies, a seeded image and clients that bypass the proxies."""

    basic: RegistryService
    token: RegistryService
    open: RegistryService
    src: FaultProxy  # in front of the Basic registry (the facade's own host)
    dst: FaultProxy  # in front of the token registry (docker config credentials)
    recorder: FaultProxy  # redirect target, in front of the open registry
    image: SeededImage
    workdir: Path
    basic_direct: RegistryClient = field(init=False)
    token_direct: RegistryClient = field(init=False)

    def __post_init__(self) -> None:
        self.basic_direct = RegistryClient.connect(self.basic.host, self.basic_creds(),
                                                   use_docker_config=False)
        self.token_direct = RegistryClient.connect(self.token.host, self.token_creds(),
                                                   use_docker_config=False)

    def basic_creds(self) -> RegistryCredentials:
        return RegistryCredentials(username=self.basic.username or "",
                                   password=self.basic.password or "",
                                   registry_url=self.src.host)

    def token_creds(self) -> RegistryCredentials:
        return RegistryCredentials(username="alice", password=self.token.users["alice"],
                                   registry_url=self.token.host)

    def facade(self) -> ContainerRegistry:
        return ContainerRegistry(self.src.host, credentials=self.basic_creds(), max_workers=4)

    def clear(self) -> None:
        for proxy in (self.src, self.dst, self.recorder):
            proxy.clear()

    def close(self) -> None:
        self.basic_direct.close()
        self.token_direct.close()

    def fresh(self, prefix: str) -> str:
        return f"test/{prefix}-{secrets.token_hex(4)}"

    def scratch(self, prefix: str) -> Path:
        path = self.workdir / f"{prefix}-{secrets.token_hex(4)}"
        path.mkdir(parents=True)
        return path


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _docker_config(folder: Path, host: str, user: str, password: str) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))



def build_rig(basic: RegistryService, token: RegistryService, open_: RegistryService,
              workdir: Path) -> Rig:
    """Seed one two-layer image (same digests) into all three registries; start proxies.

    The caller stops the proxies (``stop_rig``) and points ``DOCKER_CONFIG`` at
    ``workdir / "docker-config"`` (credentials for the destination proxy).
    """
    repo = f"test/faults-{secrets.token_hex(4)}"
    layout = workdir / "seed-layout"
    files = {"a.bin": os.urandom(40 * KIB), "b.bin": os.urandom(40 * KIB)}
    made = make_oci_layout(layout, files, tag=TAG, layers=2)
    push_layout_with_skopeo(layout, TAG, basic.ref(repo, TAG), basic.creds)
    push_layout_with_skopeo(layout, TAG, token.ref(repo, TAG), token.creds)
    push_layout_with_skopeo(layout, TAG, open_.ref(repo, TAG))
    blobs = {made.config_digest: made.manifest["config"]["size"]}
    blobs.update({layer.digest: layer.size for layer in made.layers})
    image = SeededImage(repo, layout, made.manifest_digest, blobs,
                        [layer.digest for layer in made.layers])
    src = FaultProxy(basic.url).start()
    dst = FaultProxy(token.url).start()
    recorder = FaultProxy(open_.url).start()
    config = workdir / "docker-config"
    config.mkdir(exist_ok=True)
    _docker_config(config, dst.host, "alice", token.users["alice"])
    return Rig(basic, token, open_, src, dst, recorder, image, workdir)


def stop_rig(rig: Rig) -> None:
    rig.close()
    for proxy in (rig.src, rig.dst, rig.recorder):
        proxy.stop()


# ------------------------------------------------------------------ operations


@dataclass(frozen=True)
class Target:
    """A request an operation makes that a fault is planted on."""

    proxy: str  # "src" or "dst"
    method: str
    path: str  # regex on path + query
    side: str  # "response" (body faults hit what comes back) or "request"
    offset: int  # byte where body faults strike


def _upload_put(digest: str) -> str:
    return r"/blobs/uploads/[^?]*\?(.*&)?digest=sha256(:|%3A)" + digest.split(":", 1)[1]


def _blob_get(digest: str) -> str:
    return "/blobs/" + digest + "$"


@dataclass
class Op:
    """One kind of operation: its faulted requests, how to run it and how to check it."""

    name: str
    targets: Callable[[Rig], list[Target]]
    run: Callable[[Rig, dict[str, Any]], Any]
    verify: Callable[[Rig, dict[str, Any], str, Any], None]
    sides: tuple[str, ...] = ("response",)  # what the faulted requests' body faults hit


def _prepare(rig: Rig) -> dict[str, Any]:
    """A facade whose auth is settled (so faults hit data requests, not the 401 dance)."""
    reg = rig.facade()
    reg.client.ping()
    return {"reg": reg}


def _run_catalog(rig: Rig, ctx: dict[str, Any]) -> list[str]:
    return list(ctx["reg"].client.catalog(page_size=100))


def _verify_catalog(rig: Rig, ctx: dict[str, Any], outcome: str, result: Any) -> None:
    if outcome != "completed":
        return
    assert rig.image.repo in result
    assert len(set(result)) == len(result)
    for name in result:
        validate_repository(name)


def _run_tags(rig: Rig, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    return ctx["reg"].list_registry_images(rig.image.repo)


def _verify_tags(rig: Rig, ctx: dict[str, Any], outcome: str, result: Any) -> None:
    if outcome == "completed":
        assert [row["tag"] for row in result] == [TAG]
        assert {row["name"] for row in result} == {rig.image.repo}


def _run_manifest(rig: Rig, ctx: dict[str, Any]) -> Any:
    return ctx["reg"].describe_image(rig.image.repo, TAG)


def _verify_manifest(rig: Rig, ctx: dict[str, Any], outcome: str, result: Any) -> None:
    if outcome == "completed":
        assert result.digest == rig.image.digest
        assert result.layer_count == 2
        assert result.size_bytes == sum(rig.image.blobs[d] for d in rig.image.layers)


def _run_blob(rig: Rig, ctx: dict[str, Any]) -> int:
    ctx["folder"] = folder = rig.scratch("blob")
    return ctx["reg"].client.fetch_blob(rig.image.repo, rig.image.layers[0], folder / "blob")


def _verify_blob(rig: Rig, ctx: dict[str, Any], outcome: str, result: Any) -> None:
    folder: Path = ctx["folder"]
    left = sorted(p.name for p in folder.iterdir())
    if outcome == "completed":
        assert left == ["blob"]
        assert _file_digest(folder / "blob") == rig.image.layers[0]
        assert result == rig.image.blobs[rig.image.layers[0]]
    else:
        assert left == [], f"a failed download left {left}"


def _run_upload(rig: Rig, ctx: dict[str, Any]) -> dict[str, Any]:
    ctx["dest_repo"] = repo = rig.fresh("faults-up")
    return ctx["reg"].load_image(rig.image.layout, repo, TAG)


def _check_registry_dest(client: RegistryClient, rig: Rig, repo: str, outcome: str,
                         result: Any) -> None:
    """Completed: the tag serves the image and every blob verifies. Failed: no tag.

    Either way every blob the repository holds must hash to its digest.
    """
    head = client.head_manifest(repo, TAG)
    if outcome == "completed":
        assert result["digest"] == rig.image.digest
        assert head is not None and head.digest == rig.image.digest
        assert client.get_manifest(repo, TAG).digest == rig.image.digest
    else:
        assert head is None, f"a failed transfer left the tag {repo}:{TAG}"
    for digest, size in rig.image.blobs.items():
        present = client.blob_size(repo, digest)
        if outcome == "completed":
            assert present == size
        if present is not None:
            client.read_blob(repo, digest, size=size)  # raises unless intact


def _verify_upload(rig: Rig, ctx: dict[str, Any], outcome: str, result: Any) -> None:
    _check_registry_dest(rig.basic_direct, rig, ctx["dest_repo"], outcome, result)


def _run_copy(rig: Rig, ctx: dict[str, Any]) -> dict[str, Any]:
    ctx["dest_repo"] = repo = rig.fresh("faults-cp")
    return ctx["reg"].copy_image(f"{rig.src.host}/{rig.image.repo}:{TAG}",
                                 f"{rig.dst.host}/{repo}:{TAG}")


def _verify_copy(rig: Rig, ctx: dict[str, Any], outcome: str, result: Any) -> None:
    _check_registry_dest(rig.token_direct, rig, ctx["dest_repo"], outcome, result)


def _run_save(rig: Rig, ctx: dict[str, Any]) -> dict[str, Any]:
    ctx["layout"] = layout = rig.scratch("save") / "layout"
    return ctx["reg"].save_image(rig.image.repo, TAG, layout)


def check_layout(layout: Path, image: SeededImage, outcome: str) -> None:
    """Completed: the tag names the image, blobs verify. Failed: no entry, no blob, no temp."""
    temps = [p for p in layout.rglob(f"{TEMP_PREFIX}*")] if layout.exists() else []
    assert temps == [], f"temporary files left: {temps}"
    blob_files = sorted(p for p in (layout / "blobs").rglob("*") if p.is_file()) \
        if (layout / "blobs").exists() else []
    for path in blob_files:
        assert _file_digest(path) == f"{path.parent.name}:{path.name}", f"{path} is corrupt"
    if outcome == "completed":
        store = OCILayout(layout)
        assert store.resolve(TAG).digest == image.digest
        assert store.get_manifest(TAG).digest == image.digest
        names = {f"sha256:{p.name}" for p in blob_files}
        assert set(image.blobs) <= names
    else:
        index = layout / "index.json"
        if index.exists():
            tags = OCILayout(layout).tags()
            assert TAG not in tags, "a failed save left an index entry"
        assert blob_files == [], f"a failed save left blobs {blob_files}"


def _verify_save(rig: Rig, ctx: dict[str, Any], outcome: str, result: Any) -> None:
    check_layout(ctx["layout"], rig.image, outcome)
    if outcome == "completed":
        assert result["digest"] == rig.image.digest


OPS: dict[str, Op] = {op.name: op for op in [
    Op("catalog", lambda r: [Target("src", "GET", r"/v2/_catalog", "response", 30)],
       _run_catalog, _verify_catalog),
    Op("tags", lambda r: [Target("src", "GET", r"/tags/list", "response", 10)],
       _run_tags, _verify_tags),
    Op("manifest", lambda r: [Target("src", "GET", rf"/manifests/{TAG}$", "response", 100)],
       _run_manifest, _verify_manifest),
    Op("blob", lambda r: [Target("src", "GET", _blob_get(r.image.layers[0]), "response",
                                 16000)],
       _run_blob, _verify_blob),
    Op("upload", lambda r: [Target("src", "PUT", _upload_put(r.image.layers[0]), "request",
                                   16000)],
       _run_upload, _verify_upload, sides=("request",)),
    Op("copy", lambda r: [Target("src", "GET", _blob_get(r.image.layers[0]), "response", 16000),
                          Target("dst", "PUT", _upload_put(r.image.layers[1]), "request",
                                 16000)],
       _run_copy, _verify_copy, sides=("response", "request")),
    Op("save", lambda r: [Target("src", "GET", _blob_get(r.image.layers[0]), "response",
                                 16000)],
       _run_save, _verify_save),
]}
READ_OPS = frozenset({"catalog", "tags", "manifest", "blob", "save"})
RESUMING_OPS = frozenset({"blob", "save", "copy"})
BODY_FAULTS = frozenset({"reset-mid-body", "truncated-body", "stall-mid-body"})


def applicable(op: str, fault: str) -> bool:
    """False when the fault has no form for any request the operation makes."""
    return any(FAULTS[fault].kwargs(side, 0, "") is not None for side in OPS[op].sides)


def expectation(op: str, fault: str, persistence: str) -> str:
    """"completed", "failed" or "either": what the design promises for this case."""
    if fault == "corrupt-byte":
        return "failed"  # corrupt content never completes
    if persistence == "once":
        return "completed" if fault in TRANSIENT_OK else "either"
    if fault == "redirect":  # every time to a host that serves the same content
        return "completed" if op in READ_OPS else "either"
    if op in READ_OPS and not (op in RESUMING_OPS and fault in BODY_FAULTS):
        return "failed"  # every answer is broken: nothing can succeed
    return "either"


# ------------------------------------------------------------------ one case


@dataclass
class CaseRecord:
    op: str
    fault: str
    persistence: str
    outcome: str  # "completed" | "failed"
    error: str | None
    seconds: float
    fired: int
    requests: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class UntypedError(AssertionError):
    """An operation raised something that is not a RegistryError."""


def install(rig: Rig, op: str, fault: str, times: int | None, skip: int = 0) -> list[Fault]:
    planted = []
    for target in OPS[op].targets(rig):
        kwargs = FAULTS[fault].kwargs(target.side, target.offset, rig.recorder.url)
        if kwargs is None:
            continue
        proxy: FaultProxy = getattr(rig, target.proxy)
        planted.append(proxy.add_fault(target.method, target.path, times=times, skip=skip,
                                       **kwargs))
    return planted


def run_case(rig: Rig, op: str, fault: str | None, times: int | None, *,
             skip: int = 0, persistence: str = "",
             plant: Callable[[Rig], list[Fault]] | None = None) -> CaseRecord:
    """Run one operation with one planted fault; check everything the matrix promises.

    ``plant`` replaces the default placement (the operation's own data requests).

    Raises AssertionError (or UntypedError) when a promise is broken: an untyped
    exception, a case over CASE_BOUND, a partial destination, a wrong result, or
    credentials seen by the redirect target.
    """
    rig.clear()
    ctx = _prepare(rig)
    if plant is not None:
        planted = plant(rig)
    else:
        planted = install(rig, op, fault, times, skip) if fault else []
    started = time.monotonic()
    error: BaseException | None = None
    result: Any = None
    try:
        result = OPS[op].run(rig, ctx)
    except RegistryError as exc:
        error = exc
    except Exception as exc:  # the bug this matrix hunts
        raise UntypedError(f"{op} with {fault} ({persistence}) raised "
                           f"{type(exc).__module__}.{type(exc).__name__}: {exc}") from exc
    finally:
        ctx["reg"].close()
    elapsed = time.monotonic() - started
    outcome = "failed" if error is not None else "completed"
    assert elapsed < CASE_BOUND, f"{op} with {fault} took {elapsed:.1f} s"
    OPS[op].verify(rig, ctx, outcome, result)
    # credentials never reach the redirect target, nor the Basic ones the other registry
    basic_header = RegistryCredentials(username=rig.basic.username or "",
                                       password=rig.basic.password or "").get_auth_header()
    for seen in rig.recorder.requests:
        assert seen.header("Authorization") is None, f"credentials sent to {seen.path}"
    for seen in rig.dst.requests:
        assert seen.header("Authorization") != basic_header
    for seen in rig.src.requests + rig.dst.requests:  # digests are of the bytes as stored
        assert seen.header("Accept-Encoding") in (None, "identity"), seen.path
    if fault == "redirect" and any(p.hits for p in planted):
        assert rig.recorder.requests, "the redirect was not followed"
    return CaseRecord(op, fault or "none", persistence, outcome,
                      None if error is None else f"{type(error).__name__}: {error}"[:300],
                      round(elapsed, 3), sum(p.hits for p in planted),
                      len(rig.src.requests) + len(rig.dst.requests)
                      + len(rig.recorder.requests))


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def rig(basic_registry: RegistryService, token_registry: RegistryService,
        open_registry: RegistryService, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Rig]:
    workdir = tmp_path_factory.mktemp("fault-matrix")
    built = build_rig(basic_registry, token_registry, open_registry, workdir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_CONFIG", str(workdir / "docker-config"))
        try:
            yield built
        finally:
            stop_rig(built)


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small read timeout on every Transport, and a short retry backoff."""
    monkeypatch.setitem(Transport.__init__.__kwdefaults__, "timeout", (2.0, READ_TIMEOUT))
    monkeypatch.setattr(retry_module, "BACKOFF", 0.01)


RECORDS: list[CaseRecord] = []


@pytest.fixture(scope="module", autouse=True)
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    RECORDS.clear()
    yield
    if not RECORDS:
        return
    out = tmp_path_factory.getbasetemp() / "fault_matrix.json"
    summary: dict[str, Any] = {
        "cases": len(RECORDS),
        "completed": sum(r.outcome == "completed" for r in RECORDS),
        "failed_cleanly": sum(r.outcome == "failed" for r in RECORDS),
        "seconds_total": round(sum(r.seconds for r in RECORDS), 1),
        "seconds_max": max(r.seconds for r in RECORDS),
        "records": [r.as_dict() for r in RECORDS],
    }
    out.write_text(json.dumps(summary, indent=1))
    print(f"\nfault matrix: {summary['cases']} cases, {summary['completed']} completed, "
          f"{summary['failed_cleanly']} failed cleanly, {summary['seconds_total']} s of "
          f"operations (slowest {summary['seconds_max']} s); details in {out}")


CASES = [
    pytest.param(op, fault, persistence, id=f"{op}-{fault}-{persistence}")
    for op in OPS for fault in FAULTS for persistence in PERSISTENCE
    if applicable(op, fault)
]


# ------------------------------------------------------------------ tests


def test_baseline_without_faults(rig: Rig) -> None:
    for op in OPS:
        record = run_case(rig, op, None, None, persistence="none")
        assert record.outcome == "completed", record.error


@pytest.mark.parametrize(("op", "fault", "persistence"), CASES)
def test_fault(rig: Rig, op: str, fault: str, persistence: str) -> None:
    record = run_case(rig, op, fault, PERSISTENCE[persistence], persistence=persistence)
    RECORDS.append(record)
    assert record.fired, f"the fault never fired ({op}, {fault})"
    expected = expectation(op, fault, persistence)
    if expected != "either":
        assert record.outcome == expected, (
            f"{op} with {fault} ({persistence}): expected {expected}, got {record.outcome} "
            f"({record.error})")
    if fault == "429-retry-after" and persistence == "once" and record.outcome == "completed":
        assert record.seconds >= 1.0, "Retry-After was not honoured"
    if record.error:
        assert "Traceback" not in record.error

