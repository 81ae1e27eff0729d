"""The content-addressed cache: memory LRU, disk store, one fetch per digest, and the
listing against the real registry (cold fetches every digest once, warm only
re-resolves tags)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest
import requests

from registry_nb import ContainerRegistry
from registry_nb.errors import RegistryUnavailableError
from registry_nb.oci import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST
from registry_nb.remote.cache import CachedContent, ContentCache, default_cache_dir
from registry_nb.remote.distribution import RegistryClient


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(n: int, size: int = 100) -> tuple[str, bytes]:
    data = (f"{n:08d}" * (size // 8 + 1)).encode()[:size]
    return _digest(data), data


# ------------------------------------------------------------------ memory


def test_memory_lru_is_bounded_in_bytes_and_keeps_recent_items():
    cache = ContentCache(memory_bytes=350)
    items = [_blob(i) for i in range(4)]
    for digest, data in items[:3]:
        cache.put(digest, data)
    assert cache.get(items[0][0]).data == items[0][1]  # 0 is now the most recent
    cache.put(*items[3])  # 400 bytes > 350: the least recent (1) goes
    assert cache.get(items[1][0]) is None
    assert cache.get(items[0][0]) is not None and cache.get(items[3][0]) is not None
    assert cache.memory_used <= 350
    assert cache.stats.evictions == 1


def test_oversized_items_are_not_kept():
    cache = ContentCache(max_item_bytes=50)
    digest, data = _blob(1, 100)
    cache.put(digest, data)
    assert cache.get(digest) is None


def test_kinds_are_separate_and_media_types_kept():
    cache = ContentCache()
    digest, data = _blob(1)
    cache.put(digest, data, "application/x-test", kind="manifest")
    assert cache.get(digest, "blob") is None
    assert cache.get(digest, "manifest") == CachedContent(data, "application/x-test")
    with pytest.raises(ValueError):
        cache.get(digest, "layer")


def test_fetch_loads_each_digest_once_for_concurrent_callers():
    cache = ContentCache()
    digest, data = _blob(7)
    calls = []

    def load() -> CachedContent:
        calls.append(1)
        time.sleep(0.2)
        return CachedContent(data)

    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(cache.fetch(digest, load).data))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    assert results == [data] * 8
    assert cache.stats.shared_fetches == 7
    assert cache.fetch(digest, load).data == data and calls == [1]


def test_a_failed_fetch_reaches_every_waiter_and_keeps_nothing():
    cache = ContentCache()
    digest, data = _blob(8)
    started = threading.Event()

    def fail() -> CachedContent:
        started.set()
        time.sleep(0.2)
        raise RegistryUnavailableError("gone")

    errors: list[BaseException] = []

    def call() -> None:
        try:
            cache.fetch(digest, fail)
        except RegistryUnavailableError as exc:
            errors.append(exc)

    first = threading.Thread(target=call)
    first.start()
    started.wait(5)
    others = [threading.Thread(target=call) for _ in range(3)]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join()
    assert len(errors) == 4
    assert cache.get(digest) is None
    assert cache.fetch(digest, lambda: CachedContent(data)).data == data


def test_tag_hints_are_only_hints():
    cache = ContentCache()
    cache.remember_tag('"sha256:x"', "sha256:" + "a" * 64, "host", "repo", "1", "accept")
    assert cache.tag_hint("host", "repo", "1", "accept") == ('"sha256:x"', "sha256:" + "a" * 64)
    cache.forget_tag("host", "repo", "1", "accept")
    assert cache.tag_hint("host", "repo", "1", "accept") is None


# ------------------------------------------------------------------ disk


def test_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "registry-nb"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "registry-nb"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ContentCache(directory=True).directory == tmp_path / "xdg" / "registry-nb"


def test_disk_entries_survive_a_new_cache_and_leave_no_temporary_files(tmp_path):
    digest, data = _blob(3)
    ContentCache(directory=tmp_path).put(digest, data, "application/json", kind="manifest")
    fresh = ContentCache(directory=tmp_path)
    assert fresh.get(digest, "manifest") == CachedContent(data, "application/json")
    assert fresh.stats.disk_hits == 1
    assert fresh.get(digest, "manifest") is not None and fresh.stats.memory_hits == 1
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_a_damaged_disk_entry_is_a_miss_and_is_removed(tmp_path):
    digest, data = _blob(4)
    ContentCache(directory=tmp_path).put(digest, data)
    [path] = [p for p in tmp_path.rglob("*") if p.is_file()]
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    fresh = ContentCache(directory=tmp_path)
    assert fresh.get(digest) is None
    assert fresh.stats.disk_rejects == 1
    assert not path.exists()
    truncated = ContentCache(directory=tmp_path)
    truncated.put(digest, data)
    path.write_bytes(b"no newline")
    assert ContentCache(directory=tmp_path).get(digest) is None


def test_the_disk_folder_is_bounded(tmp_path):
    cache = ContentCache(directory=tmp_path, disk_bytes=2000)
    items = [_blob(i, 300) for i in range(12)]
    for digest, data in items:
        cache.put(digest, data)
    on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk <= 2000
    assert ContentCache(directory=tmp_path).get(items[-1][0]) is not None  # newest kept
    cache.clear(disk=True)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# ------------------------------------------------------------------ the registry


def _push(client: RegistryClient, repo: str, tags: dict[str, int],
          shared_config: bool = False) -> dict[str, str]:
    """Tiny images: one shared layer; a config per image number (or one for all)."""
    layer = b"\x1f\x8b" + b"layer" * 10
    layer_digest = _digest(layer)
    client.upload_blob(repo, layer, layer_digest)
    digests = {}
    for tag, number in tags.items():
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "created": "2024-01-01T00:00:00Z",
                             "config": {"Labels": {"n": str(0 if shared_config else number)}},
                             "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
        client.upload_blob(repo, config, _digest(config))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest,
                        "size": len(layer)}],
            "annotations": {"n": str(number)},
        }).encode()
        digests[tag] = client.put_manifest(repo, tag, manifest, OCI_MANIFEST)
    return digests


class _Counter:
    """Counts requests by kind on a facade's session."""

    def __init__(self, reg: ContainerRegistry) -> None:
        self.seen: list[tuple[str, str, int]] = []
        reg.client.transport.session.hooks["response"].append(self._hook)

    def _hook(self, response: requests.Response, *args, **kwargs) -> None:
        path = response.request.path_url
        kind = ("blob" if "/blobs/" in path else "manifest" if "/manifests/" in path
                else "tags" if "/tags/" in path else "other")
        self.seen.append((response.request.method, kind, response.status_code))

    def take(self) -> list[tuple[str, str, int]]:
        out, self.seen = self.seen, []
        return out


def test_a_warm_listing_only_re_resolves_tags(open_registry, unique_repo):
    with RegistryClient.connect(open_registry.host) as client:
        digests = _push(client, unique_repo, {"a": 1, "b": 2, "c": 3})
    reg = ContainerRegistry(open_registry.host)
    counter = _Counter(reg)
    cold = reg.registry_images_frame(unique_repo, limit=None)
    first = counter.take()
    assert sorted(k for _, k, _ in first) == ["blob"] * 3 + ["manifest"] * 3 + ["tags"]
    warm = reg.registry_images_frame(unique_repo, limit=None)
    second = counter.take()
    assert sorted(second) == [("GET", "manifest", 304)] * 3 + [("GET", "tags", 200)]
    assert warm.drop(columns=["labels", "platforms"]).equals(
        cold.drop(columns=["labels", "platforms"]))
    assert list(warm["digest"]) == [digests["a"], digests["b"], digests["c"]]


def test_a_moved_tag_is_seen_by_the_warm_listing(open_registry, unique_repo):
    with RegistryClient.connect(open_registry.host) as client:
        _push(client, unique_repo, {"a": 1, "b": 2})
        reg = ContainerRegistry(open_registry.host)
        reg.registry_images_frame(unique_repo)
        moved = _push(client, unique_repo, {"a": 3})["a"]
    counter = _Counter(reg)
    frame = reg.registry_images_frame(unique_repo)
    assert frame.set_index("tag").loc["a", "digest"] == moved
    assert frame.set_index("tag").loc["a", "labels"] == {"n": "3"}
    statuses = sorted((k, s) for _, k, s in counter.take())
    assert statuses == [("blob", 200), ("manifest", 200), ("manifest", 304), ("tags", 200)]


def test_a_cold_listing_fetches_a_shared_config_once(open_registry, unique_repo):
    with RegistryClient.connect(open_registry.host) as client:
        _push(client, unique_repo, {f"t{i}": i for i in range(6)}, shared_config=True)
    reg = ContainerRegistry(open_registry.host)
    counter = _Counter(reg)
    frame = reg.registry_images_frame(unique_repo)
    assert len(frame) == 6 and frame["error"].isna().all()
    assert [k for _, k, _ in counter.take()].count("blob") == 1


def test_a_digest_is_fetched_once_and_no_cache_means_no_cache(open_registry, unique_repo):
    with RegistryClient.connect(open_registry.host) as client:
        digest = _push(client, unique_repo, {"a": 1})["a"]
    reg = ContainerRegistry(open_registry.host)
    counter = _Counter(reg)
    assert reg.client.get_manifest(unique_repo, digest).digest == digest
    assert reg.client.get_manifest(unique_repo, digest).digest == digest
    assert len(counter.take()) == 1
    plain = ContainerRegistry(open_registry.host, cache=False)
    assert plain.cache is None and plain.client.cache is None
    counter = _Counter(plain)
    plain.client.get_manifest(unique_repo, digest)
    plain.client.get_manifest(unique_repo, digest)
    assert len(counter.take()) == 2


def test_a_disk_cache_serves_configs_to_a_new_facade(open_registry, unique_repo, tmp_path):
    with RegistryClient.connect(open_registry.host) as client:
        _push(client, unique_repo, {"a": 1, "b": 2})
    first = ContainerRegistry(open_registry.host, cache=ContentCache(directory=tmp_path))
    cold = first.registry_images_frame(unique_repo)
    second = ContainerRegistry(open_registry.host, cache=ContentCache(directory=tmp_path))
    counter = _Counter(second)
    again = second.registry_images_frame(unique_repo)
    kinds = sorted(k for _, k, _ in counter.take())
    assert kinds == ["manifest", "manifest", "tags"]  # tags re-resolved, configs from disk
    assert list(again["digest"]) == list(cold["digest"])
    assert second.cache.stats.disk_hits == 2


def test_a_wrong_cached_manifest_never_comes_back(open_registry, unique_repo, tmp_path):
    with RegistryClient.connect(open_registry.host) as client:
        digest = _push(client, unique_repo, {"a": 1})["a"]
    cache = ContentCache(directory=tmp_path)
    ContainerRegistry(open_registry.host, cache=cache).client.get_manifest(unique_repo, digest)
    [path] = [p for p in Path(tmp_path, "manifest").rglob("*") if p.is_file()]
    path.write_bytes(path.read_bytes().replace(b'"n"', b'"m"'))
    reg = ContainerRegistry(open_registry.host, cache=ContentCache(directory=tmp_path))
    assert reg.client.get_manifest(unique_repo, digest).digest == digest
    assert reg.cache.stats.disk_rejects == 1


# ------------------------------------------------------------------ concurrency


def test_the_request_limit_halves_on_429_and_grows_back():
    from registry_nb.remote.transport import AdaptiveLimit

    limit = AdaptiveLimit(8)
    limit.observe(429)
    assert limit.limit == 4 and limit.throttled == 1
    for _ in range(3):
        limit.observe(429)
    assert limit.limit == 1  # never below one
    for _ in range(1 + 2 + 3):  # one calm answer per slot, then one more slot
        limit.observe(200)
    assert limit.limit == 4
    for _ in range(100):
        limit.observe(200)
    assert limit.limit == 8  # never above the maximum


def test_the_request_limit_bounds_requests_in_flight():
    from registry_nb.remote.transport import AdaptiveLimit

    limit = AdaptiveLimit(3)
    peak = [0]
    lock = threading.Lock()

    def work() -> None:
        with limit:
            with lock:
                peak[0] = max(peak[0], limit.in_flight)
            time.sleep(0.02)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 3 and limit.in_flight == 0


def test_a_registry_answering_429_lowers_the_transports_concurrency():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from registry_nb.remote.transport import Transport

    seen = {"n": 0, "busy": 0, "peak": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            with lock:
                seen["n"] += 1
                seen["busy"] += 1
                seen["peak"] = max(seen["peak"], seen["busy"])
                throttle = seen["n"] <= 4
            time.sleep(0.02)
            with lock:
                seen["busy"] -= 1
            self.send_response(429 if throttle else 200)
            if throttle:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transport = Transport(f"127.0.0.1:{server.server_port}", pool_size=8,
                              use_docker_config=False)

        def get() -> int:
            return transport.request("GET", "/v2/").status_code

        first = [threading.Thread(target=get) for _ in range(4)]
        for t in first:
            t.start()
        for t in first:
            t.join()
        assert transport.limit.throttled == 4
        assert transport.limit.limit < 8
        with lock:
            seen["peak"] = 0
        statuses: list[int] = []
        more = [threading.Thread(target=lambda: statuses.append(get())) for _ in range(16)]
        for t in more:
            t.start()
        for t in more:
            t.join()
        assert statuses == [200] * 16
        # the limit only grew while these ran: they never exceeded its final value
        assert seen["peak"] <= transport.limit.limit < 8
        transport.close()
    finally:
        server.shutdown()
        server.server_close()
