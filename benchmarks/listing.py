"""The listing benchmark: catalog + tags + manifest + config for every tag.

Data: ``repos`` repositories of ``tags`` tags each; every tag is its own image
(distinct config, so distinct manifest) sharing one tiny layer. Seeding pushes
the layer once, mounts it into the other repositories and puts the configs and
manifests through :class:`~registry_nb.distribution.RegistryClient`, many at a
time; data already present is reused.

Peers doing the same requests: python-dxf (one shared session, sequential), a
sequential ``requests`` loop, and a raw concurrent loop (plain ``requests``
threads on one session, the request rate the registry and this machine allow).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from registry_nb.oci import MANIFEST_ACCEPT, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST
from registry_nb.remote.distribution import RegistryClient

__all__ = ["ListingData", "seed_listing", "list_with_registry_nb", "list_with_dxf",
           "list_sequential", "list_concurrent_raw", "urllib3_cpu_per_get", "ListingRun"]


@dataclass
class ListingData:
    """Where the listing data lives and what it holds."""

    registry: str  # host:port
    prefix: str
    repos: int
    tags: int
    explicit: bool = False  # list these repositories instead of the whole catalog

    @property
    def repositories(self) -> list[str]:
        """The seeded repository names."""
        return [f"{self.prefix}/repo-{i:03d}" for i in range(self.repos)]

    @property
    def tag_names(self) -> list[str]:
        """The tags of each repository."""
        return [f"v{i:02d}" for i in range(self.tags)]

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.registry}"


@dataclass
class ListingRun:
    """One listing: rows found, seconds, requests sent (when counted)."""

    rows: int
    seconds: float
    requests: int | None = None
    errors: int = 0
    urls: list[str] = field(default_factory=list)


def _tiny_layer() -> tuple[bytes, str]:
    """A reproducible gzip tar with one small file: (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"registry-nb benchmark\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _config(repo: str, tag: str, diff_id: str, index: int) -> bytes:
    created = f"2024-01-{1 + index % 28:02d}T{index % 24:02d}:00:00Z"
    body = {
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Labels": {"org.opencontainers.image.title": repo,
                              "org.opencontainers.image.version": tag}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": f"benchmark {repo}:{tag}"}],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def seed_listing(data: ListingData, *, workers: int = 16,
                 log: Callable[[str], None] = print) -> int:
    """Make sure every repository has its tags; return the number of tags pushed."""
    layer, diff_id = _tiny_layer()
    layer_digest = _digest(layer)
    client = RegistryClient.connect(data.registry, pool_size=workers)
    repos = data.repositories
    try:
        def missing(repo: str) -> list[str]:
            try:
                have = set(client.tags(repo))
            except Exception:  # not there yet
                have = set()
            return [t for t in data.tag_names if t not in have]

        with ThreadPoolExecutor(workers) as pool:
            todo = dict(zip(repos, pool.map(missing, repos), strict=True))
        todo = {r: t for r, t in todo.items() if t}
        if not todo:
            return 0
        log(f"seeding {sum(map(len, todo.values()))} tags in {len(todo)} repositories "
            f"of {data.registry} ...")
        started = time.monotonic()
        client.upload_blob(repos[0], layer, layer_digest)
        counter = {"pushed": 0}
        lock = threading.Lock()

        def seed(repo: str) -> None:
            client.upload_blob(repo, layer, layer_digest, mount_from=repos[0])
            index0 = repos.index(repo) * data.tags
            for tag in todo[repo]:
                index = index0 + data.tag_names.index(tag)
                config = _config(repo, tag, diff_id, index)
                config_digest = _digest(config)
                client.upload_blob(repo, config, config_digest, skip_existing=False)
                manifest = {
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                               "size": len(config)},
                    "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest,
                                "size": len(layer)}],
                }
                raw = json.dumps(manifest, separators=(",", ":")).encode()
                client.put_manifest(repo, tag, raw, OCI_MANIFEST)
                with lock:
                    counter["pushed"] += 1

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(seed, list(todo)))
        log(f"seeded {counter['pushed']} tags in {time.monotonic() - started:.1f} s")
        return counter["pushed"]
    finally:
        client.close()


# ---------------------------------------------------------------- the listings


def _count_requests(session: requests.Session) -> list[int]:
    counter = [0]

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        counter[0] += 1

    session.hooks["response"].append(hook)
    return counter


def list_with_registry_nb(reg: Any, data: ListingData) -> ListingRun:
    """``registry_images_frame`` over the whole catalog (or the seeded repositories)."""
    counter = _count_requests(reg.client.transport.session)
    started = time.perf_counter()
    frame = reg.registry_images_frame(data.repositories if data.explicit else None, limit=None)
    rows, errors = len(frame), int(frame["error"].notna().sum())
    seconds = time.perf_counter() - started
    reg.client.transport.session.hooks["response"].clear()
    return ListingRun(rows=rows, seconds=seconds, requests=counter[0], errors=errors)


def list_with_dxf(data: ListingData) -> ListingRun:
    """python-dxf: the same listing, one shared session (its context manager)."""
    import dxf  # the benchmark extra

    started = time.perf_counter()
    base = dxf.DXFBase(data.registry, insecure=True)
    rows = requests_sent = errors = 0
    with base:
        counter = _count_requests(base._sessions[0])
        repos = data.repositories if data.explicit else list(base.list_repos())
        for repo in repos:
            client = dxf.DXF.from_base(base, repo)
            for tag in sorted(client.list_aliases()):
                rows += 1
                try:
                    manifest = json.loads(client.get_manifest(tag))
                    config = b"".join(client.pull_blob(manifest["config"]["digest"]))
                    json.loads(config)
                except Exception:
                    errors += 1
        requests_sent = counter[0]
    return ListingRun(rows=rows, seconds=time.perf_counter() - started,
                      requests=requests_sent, errors=errors)


def _pages(session: requests.Session, url: str, key: str, urls: list[str]) -> list[str]:
    out: list[str] = []
    next_url: str | None = url
    while next_url:
        urls.append(next_url)
        response = session.get(next_url, timeout=60)
        response.raise_for_status()
        out.extend(response.json().get(key) or [])
        link = response.links.get("next", {}).get("url")
        next_url = requests.compat.urljoin(url, link) if link else None
    return out


def list_sequential(data: ListingData) -> ListingRun:
    """A plain ``requests`` loop on one session, one request at a time.

    Keeps every URL it fetched (``urls``) for :func:`list_concurrent_raw`.
    """
    started = time.perf_counter()
    urls: list[str] = []
    rows = errors = 0
    with requests.Session() as session:
        session.trust_env = False
        base = data.base_url
        repos = data.repositories if data.explicit else \
            _pages(session, f"{base}/v2/_catalog", "repositories", urls)
        for repo in repos:
            for tag in sorted(_pages(session, f"{base}/v2/{repo}/tags/list", "tags", urls)):
                rows += 1
                url = f"{base}/v2/{repo}/manifests/{tag}"
                urls.append(url)
                response = session.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=60)
                if not response.ok:
                    errors += 1
                    continue
                digest = response.json()["config"]["digest"]
                url = f"{base}/v2/{repo}/blobs/{digest}"
                urls.append(url)
                config = session.get(url, timeout=60)
                if _digest(config.content) != digest:
                    errors += 1
                json.loads(config.content)
    return ListingRun(rows=rows, seconds=time.perf_counter() - started, requests=len(urls),
                      errors=errors, urls=urls)


def list_concurrent_raw(urls: Iterable[str], threads: int = 32) -> ListingRun:
    """The same GETs as the sequential loop, ``threads`` at a time on one session."""
    todo = list(urls)
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=threads)
    session.mount("http://", adapter)

    def get(url: str) -> int:
        response = session.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=60)
        _ = response.content
        return response.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(get, todo))
    seconds = time.perf_counter() - started
    session.close()
    return ListingRun(rows=0, seconds=seconds, requests=len(todo),
                      errors=sum(1 for s in statuses if s >= 400))


def urllib3_cpu_per_get(urls: Iterable[str], limit: int = 1000) -> float:
    """Client CPU (ms) per GET of urllib3's ``urlopen`` alone (sequential, one pool, the
    body read), on the first ``limit`` of ``urls``: the floor of any client built on it."""
    import urllib3

    todo = list(urls)[:limit]
    if not todo:
        return 0.0
    pool = urllib3.connection_from_url(todo[0], maxsize=1)  # one registry: one pool
    paths = [urllib3.util.parse_url(url).request_uri for url in todo]
    headers = {"Accept": MANIFEST_ACCEPT, "Accept-Encoding": "identity"}
    started = time.process_time()
    for path in paths:
        pool.urlopen("GET", path, headers=headers, redirect=False, retries=False).read()
    spent = time.process_time() - started
    pool.close()
    return 1000 * spent / len(todo)
