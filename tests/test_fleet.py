"""Fleets (registry_nb.fleet) against the three test registries, on a real LocalCluster.

Each registry sits behind a loopback FaultProxy of ours that only forwards and records
requests, so the blob GETs of an audit are counted where the registry sees them. The
seeded images share layers inside a registry and across registries (the layers are
reproducible, so the same folder gives the same digest everywhere).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import secrets
import signal
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from faultproxy import FaultProxy

from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.errors import OperationCancelled
from registry_nb.fleet import Fleet, LayerCache, SealedCredentials
from registry_nb.images.layer_cache import scan_from_bytes, scan_to_bytes
from registry_nb.images.layers import LayerScan, TarEntry

distributed = pytest.importorskip("distributed")

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
DPKG = (b"Package: base-files\nStatus: install ok installed\nVersion: 12\nArchitecture: amd64\n\n"
        b"Package: libc6\nStatus: install ok installed\nVersion: 2.36\nArchitecture: amd64\n")


def _write(root: Path, files: dict[str, bytes]) -> Path:
    """A folder holding ``files`` (relative names) for image_from_directory."""
    for path, data in ((root / name, data) for name, data in files.items()):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture(scope="module")
def seeded(open_registry, basic_registry, token_registry, tmp_path_factory):
    """Proxies in front of the three registries, images seeded, a docker config for token."""
    tmp = tmp_path_factory.mktemp("fleet")
    prefix = f"test/fleet-{secrets.token_hex(3)}"
    base = _write(tmp / "base", {"var/lib/dpkg/status": DPKG, "opt/big.txt": b"x" * 20000,
                                 "etc/os-release": b"ID=fleet\n"})
    app1 = _write(tmp / "app1", {"opt/big.txt": b"y" * 5000,
                                 "usr/lib/python3/site-packages/foo-1.0.dist-info/METADATA":
                                 b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n"})
    app2 = _write(tmp / "app2", {"srv/app2.txt": b"two\n"})
    app3 = _write(tmp / "app3", {"srv/app3.txt": b"three\n" * 100})
    services = [open_registry, basic_registry, token_registry]
    creds = {"basic": RegistryCredentials(basic_registry.username, basic_registry.password,
                                          basic_registry.host),
             "token": RegistryCredentials("alice", token_registry.users["alice"],
                                          token_registry.host)}
    for service in services:
        reg = ContainerRegistry(service.host, creds.get(service.name))
        reg.image_from_directory(base, f"{prefix}-base", "1")
        base_ref = f"{service.host}/{prefix}-base:1"
        reg.image_from_directory(app1, f"{prefix}-a", "1", base=base_ref)
        reg.image_from_directory(app2, f"{prefix}-a", "2", base=base_ref)
        reg.image_from_directory(app1, f"{prefix}-b", "1", base=base_ref)
        if service.name == "open":
            reg.image_from_directory(app3, f"{prefix}-c", "1", base=base_ref)
        reg.close()
    proxies = [FaultProxy(s.url).start() for s in services]
    config = tmp / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"alice:{token_registry.users['alice']}".encode()).decode()
    (config / "config.json").write_text(json.dumps(
        {"auths": {proxies[2].url.split("://")[1]: {"auth": auth}}}))
    environment = pytest.MonkeyPatch()
    environment.setenv("DOCKER_CONFIG", str(config))  # before the cluster: workers inherit it
    yield {"prefix": prefix, "proxies": proxies, "services": services, "creds": creds,
           "repos": [f"{prefix}-{n}" for n in ("base", "a", "b", "c")]}
    for proxy in proxies:
        proxy.stop()
    environment.undo()


@pytest.fixture(scope="module")
def client(seeded):
    """One real LocalCluster for the module: 2 worker processes, 1 thread each."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    dask_client = distributed.Client(cluster)
    yield dask_client
    dask_client.close()
    cluster.close()


def _facades(seeded) -> list[ContainerRegistry]:
    """Open registry by URL-less facade, Basic with explicit credentials, token from config."""
    open_proxy, basic_proxy, token_proxy = seeded["proxies"]
    basic = seeded["creds"]["basic"]
    return [ContainerRegistry(open_proxy.url),
            ContainerRegistry(basic_proxy.url, RegistryCredentials(
                basic.username, basic.password, basic_proxy.url)),
            ContainerRegistry(token_proxy.url)]


def _layer_gets(seeded) -> dict[str, int]:
    """Blob GETs per digest at the proxies (configs included; callers pick layers)."""
    counts: dict[str, int] = {}
    for proxy in seeded["proxies"]:
        for request in proxy.requests:
            found = re.search(r"/blobs/(sha256:[0-9a-f]{64})", request.path)
            if request.method == "GET" and found:
                counts[found.group(1)] = counts.get(found.group(1), 0) + 1
    return counts


def _layers_of(audit: pd.DataFrame, facades) -> set[str]:
    out = set()
    by_host = {f.registry_host: f for f in facades}
    for host, repo, tag in zip(audit["registry_url"], audit["repository"], audit["tag"],
                               strict=True):
        manifest = by_host[host].images.resolve(repo, tag).manifest
        out.update(layer.digest for layer in manifest.layers)
    return out


def _clear(seeded) -> None:
    for proxy in seeded["proxies"]:
        proxy.clear()


@pytest.fixture(scope="module")
def expected(seeded):
    """The facades' own frames on the same data (what every fleet must equal)."""
    facades = _facades(seeded)
    repos = seeded["repos"]  # the "-c" repository is only in the open registry
    present = {f.registry_host: [r for r in repos if not r.endswith("-c") or i == 0]
               for i, f in enumerate(facades)}
    images = pd.concat([f.registry_images_frame(present[f.registry_host], limit=None)
                        for f in facades], ignore_index=True)
    audit = pd.concat([f.audit(present[f.registry_host], limit=None, now=NOW) for f in facades],
                      ignore_index=True)
    waste, packages = {}, []
    by_host = {f.registry_host: f for f in facades}
    for host, repo, tag in zip(audit["registry_url"], audit["repository"], audit["tag"],
                               strict=True):
        facade = by_host[host]
        waste[(host, repo, tag)] = facade.wasted_space(repo, tag)
        frame = facade.packages_frame(repo, tag)
        frame.insert(0, "tag", tag)
        frame.insert(0, "repository", repo)
        frame.insert(0, "registry_url", host)
        packages.append(frame)
    return {"present": present, "images": images, "audit": audit, "waste": waste,
            "packages": pd.concat(packages, ignore_index=True),
            "layers": _layers_of(audit, facades)}


def _check_against_facade(fleet_audit: pd.DataFrame, expected) -> None:
    facade_columns = list(expected["audit"].columns)
    pd.testing.assert_frame_equal(fleet_audit[facade_columns], expected["audit"])
    for row in fleet_audit.itertuples():
        report = expected["waste"][(row.registry_url, row.repository, row.tag)]
        assert (row.wasted_bytes, row.file_bytes, row.efficiency) == \
            (report.wasted_bytes, report.total_bytes, report.efficiency)
    assert fleet_audit["wasted_bytes"].gt(0).any()  # app1 overwrites /opt/big.txt


def _check_packages(fleet_packages: pd.DataFrame, expected) -> None:
    got = fleet_packages.drop(columns=["image_digest"])
    want = expected["packages"][list(got.columns)]
    key = ["registry_url", "repository", "tag", "ecosystem", "name"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  want.sort_values(key).reset_index(drop=True),
                                  check_dtype=False)
    assert {"base-files", "libc6", "foo"} <= set(got["name"])


def test_local_fleet_equals_the_facades_and_reads_each_layer_once(seeded, expected):
    fleet = Fleet(_facades(seeded))
    images = fleet.images_frame(expected["present"])
    pd.testing.assert_frame_equal(images, expected["images"])
    _clear(seeded)
    audit = fleet.audit(expected["present"], now=NOW)
    _check_against_facade(audit, expected)
    gets = _layer_gets(seeded)
    assert {d: gets.get(d) for d in expected["layers"]} == dict.fromkeys(expected["layers"], 1)
    assert fleet.stats.unique_layers == len(expected["layers"]) == 4
    assert fleet.stats.layer_references > fleet.stats.unique_layers
    _clear(seeded)
    _check_packages(fleet.packages_frame(expected["present"]), expected)  # memory cache
    assert not set(_layer_gets(seeded)) & expected["layers"]
    assert fleet.stats.layers_read == 0 and fleet.stats.cache_hits == 4


def test_dask_fleet_reads_each_layer_once_and_a_second_audit_none(seeded, expected, client,
                                                                  tmp_path):
    cache = tmp_path / "scans"
    _clear(seeded)
    with Fleet(_facades(seeded), client, cache=cache) as fleet:
        _clear(seeded)
        audit = fleet.audit(expected["present"], now=NOW)
        gets = _layer_gets(seeded)
        pd.testing.assert_frame_equal(fleet.images_frame(expected["present"]),
                                      expected["images"])
    _check_against_facade(audit, expected)
    assert {d: gets.get(d) for d in expected["layers"]} == dict.fromkeys(expected["layers"], 1)
    assert fleet.stats.layers_read == 4 and fleet.stats.cache_hits == 0
    assert len(list(cache.rglob("*.scan"))) == 4

    _clear(seeded)
    with Fleet(_facades(seeded), client, cache=str(cache)) as again:
        second = again.audit(expected["present"], now=NOW)
        _check_packages(again.packages_frame(expected["present"]), expected)
    assert not set(_layer_gets(seeded)) & expected["layers"]
    assert again.stats.layers_read == 0 and again.stats.cache_hits == 4
    pd.testing.assert_frame_equal(second, audit)


def test_secrets_never_reach_tasks_logs_or_task_names(seeded, expected, client, tmp_path):
    basic = seeded["creds"]["basic"]
    token_password = seeded["creds"]["token"].password
    secrets_ = [basic.password, token_password,
                base64.b64encode(f"{basic.username}:{basic.password}".encode()).decode()]
    seen_bearer: list[str] = []
    fleet = Fleet(_facades(seeded), client)
    fleet.audit(expected["present"], now=NOW)
    specs = pickle.dumps(fleet._targets)
    texts = [repr(fleet._targets), str(fleet._targets), specs.decode("latin-1")]

    def scheduler_view(dask_scheduler):
        out = [repr(list(dask_scheduler.tasks)), repr(list(dask_scheduler.task_prefixes))]
        out.extend(pickle.dumps(ts.run_spec).decode("latin-1")
                   for ts in dask_scheduler.tasks.values() if ts.run_spec is not None)
        return out

    texts += client.run_on_scheduler(scheduler_view)
    texts += [repr(client.get_scheduler_logs(n=10_000))]
    texts += [repr(logs) for logs in client.get_worker_logs(n=10_000).values()]
    for text in texts:
        for secret in secrets_:
            assert secret not in text
        seen_bearer += re.findall(r"eyJ[A-Za-z0-9_-]{20,}", text)  # a JWT would start so
    assert not seen_bearer
    prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert {p for p in prefixes if p.startswith("fleet")} >= {"fleet-plan", "fleet-image"}
    fleet.close()


def test_sealed_credentials_show_nothing_and_open_only_where_the_pad_is():
    creds = RegistryCredentials("alice", "pa55-w0rd-xyz", "127.0.0.1:1")
    sealed = SealedCredentials.seal(creds)
    blob = pickle.dumps(sealed)
    for text in (repr(sealed), str(sealed), blob.decode("latin-1")):
        assert "pa55-w0rd-xyz" not in text
    assert pickle.loads(blob).open() == creds
    code = ("import pickle,sys\nfrom registry_nb.errors import AuthenticationError\n"
            "try:\n pickle.loads(sys.stdin.buffer.read()).open()\n"
            "except AuthenticationError as e:\n print('refused:', e.hint)\n")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         check=True)
    assert out.stdout.startswith(b"refused: Build the Fleet")


def test_a_killed_worker_does_not_change_the_result(seeded, expected, client):
    pids_before = set(client.run(os.getpid).values())
    killed: list[int] = []

    def kill_one(event) -> None:
        if not killed and event.status in ("plan", "layers"):
            victim = sorted(pids_before)[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    with Fleet(_facades(seeded), client, retries=3) as fleet:
        audit = fleet.audit(expected["present"], now=NOW, progress=kill_one)
    assert killed
    _check_against_facade(audit, expected)
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in set(client.run(os.getpid).values())


def test_cancel_stops_the_submitted_tasks(seeded, expected, client):
    cancel = threading.Event()
    events = []

    def on_event(event) -> None:
        events.append(event)
        cancel.set()

    fleet = Fleet(_facades(seeded), client)
    with pytest.raises(OperationCancelled):
        fleet.audit(expected["present"], now=NOW, progress=on_event, cancel=cancel)
    assert events[-1].phase == "cancelled"
    assert all(f.status in ("cancelled", "finished") for f in fleet.futures)
    assert any(f.status == "cancelled" for f in fleet.futures) or len(fleet.futures) == 0
    fleet.close()


def test_to_parquet_partitions_by_registry(seeded, expected, tmp_path):
    fleet = Fleet(_facades(seeded))
    paths = fleet.to_parquet(tmp_path / "out", expected["present"])
    audit = pd.read_parquet(paths["audit"])
    folders = [p for p in Path(paths["audit"]).iterdir() if p.is_dir()]
    assert len(folders) == 3 and all(p.name.startswith("registry_url=") for p in folders)
    assert sorted(audit["registry_url"].astype(str).unique()) == sorted(expected["present"])
    assert len(audit) == len(expected["audit"])
    assert json.loads(audit["labels"].iloc[0]) == expected["audit"]["labels"].iloc[0]
    assert len(Fleet.dask_frame(tmp_path / "out", "packages").compute()) == \
        len(expected["packages"])


def test_layer_cache_rejects_damaged_entries(tmp_path):
    digest = "sha256:" + "ab" * 32
    scan = LayerScan(3, digest, "application/vnd.oci.image.layer.v1.tar+gzip", "gzip", 10, 20,
                     [TarEntry(3, "/a", "a", "file", 5, 0o644, 0, 0, 0.0)],
                     {"/var/lib/dpkg/status": b"Package: x\n"})
    assert scan_from_bytes(scan_to_bytes(scan), digest).entries[0].layer == 0
    assert scan_from_bytes(scan_to_bytes(scan), "sha256:" + "cd" * 32) is None
    cache = LayerCache(tmp_path / "c")
    cache.put(scan)
    path = Path(cache.path(digest))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    fresh = LayerCache(tmp_path / "c")
    assert fresh.get(digest) is None
    assert fresh.stats.rejects == 1 and fresh.stats.misses == 1
    memory = LayerCache(f"memory://fleet-{secrets.token_hex(3)}")
    memory.put(scan)
    other = pickle.loads(pickle.dumps(memory))  # what a worker gets: same URL, empty memory
    assert other.get(digest).contents == scan.contents and other.stats.hits == 1
