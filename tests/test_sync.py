"""Mirroring (ContainerRegistry.sync_repositories) between the real test registries.

Images are made by the test helpers and pushed with skopeo; what the sync leaves in
the destination is compared with skopeo's view of the source. A FaultProxy in front
of the source counts requests (what a second run reads) and fails blob reads (a sync
cut half way).
"""

from __future__ import annotations

import json
import os

import pytest
from faultproxy import FaultProxy
from helpers import RegistryService, seed_image, skopeo_digest

from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.errors import RegistryError
from registry_nb.oci import OCI_INDEX, Index, Platform
from registry_nb.oci.artifacts import cosign_tag, fallback_tag, referrers_index
from registry_nb.progress import ProgressAggregator, ProgressEvent
from registry_nb.remote.distribution import RegistryClient

pytestmark = pytest.mark.usefixtures("empty_docker_config")

OCI_EMPTY = "application/vnd.oci.empty.v1+json"


def facade(registry: RegistryService) -> ContainerRegistry:
    creds = None
    if registry.username:
        creds = RegistryCredentials(username=registry.username, password=registry.password,
                                    registry_url=registry.host)
    return ContainerRegistry(registry.host, creds)


def files(n: int = 1) -> dict[str, bytes]:
    return {f"f{i}.bin": os.urandom(4096) for i in range(n)}


def push_signature(client: RegistryClient, repo: str, subject: str) -> str:
    """A cosign-style signature manifest under ``sha256-<hex>.sig``, plus a fallback tag
    ``sha256-<hex>`` whose index lists it; returns the signature's digest."""
    client.upload_blob(repo, b"{}", "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe7"
                                    "7e8310c060f61caaff8a")
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": subject}}}).encode()
    import hashlib
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    client.upload_blob(repo, payload, digest)
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": OCI_EMPTY, "size": 2,
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060"
                             "f61caaff8a"},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "size": len(payload), "digest": digest}],
    }
    raw = json.dumps(manifest).encode()
    sig = client.put_manifest(repo, cosign_tag(subject, "sig"), raw,
                              "application/vnd.oci.image.manifest.v1+json")
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sig,
             "size": len(raw)}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    client.put_manifest(repo, fallback_tag(subject), index.encode(), OCI_INDEX)
    return sig


@pytest.fixture
def source_repos(open_registry: RegistryService, unique_repo: str) -> dict:
    """Two repositories in the open registry: ``app`` (3 tags, one signed) and ``multi``
    (an index of two platforms and its two images); returns names and digests."""
    app, multi = f"{unique_repo}-app", f"{unique_repo}-multi"
    digests = {}
    for tag in ("v1", "v2", "dev"):
        digests[(app, tag)] = seed_image(open_registry, app, tag, files=files(2), layers=2)
    with RegistryClient.connect(open_registry.host) as client:
        signature = push_signature(client, app, digests[(app, "v1")])
        entries = []
        for arch in ("amd64", "arm64"):
            d = seed_image(open_registry, multi, arch, files=files(),
                           config_overrides={"architecture": arch})
            digests[(multi, arch)] = d
            entries.append(client.get_manifest(multi, d).descriptor(Platform("linux", arch)))
        index = Index.build(entries, OCI_INDEX)
        client.put_manifest(multi, "1", index.raw, index.media_type)
        digests[(multi, "1")] = index.digest
    return {"app": app, "multi": multi, "digests": digests, "signature": signature}


def source_view(registry: RegistryService, repo: str, tag: str) -> str:
    return skopeo_digest(registry.ref(repo, tag), registry.creds)


def test_sync_copies_tags_indexes_and_referrers_then_finds_them_present(
    source_repos: dict, open_registry: RegistryService, basic_registry: RegistryService,
) -> None:
    app, multi = source_repos["app"], source_repos["multi"]
    events: list[ProgressEvent] = []
    aggregate = ProgressAggregator()
    with FaultProxy(open_registry.url) as proxy, facade(basic_registry) as reg:
        source = ContainerRegistry(proxy.host)
        frame = reg.sync_repositories(source, [app, multi],
                                      progress=lambda e: (events.append(e), aggregate(e)))
        rows = {(r.repository, r.tag): r for r in frame.itertuples()}
        assert list(frame.columns[:7]) == ["repository", "tag", "kind", "status", "digest",
                                           "bytes", "error"]
        # 6 tags + the .sig and fallback tags of app:v1
        assert len(frame) == 8 and set(frame.status) == {"copied"}, frame.error.tolist()
        v1 = source_repos["digests"][(app, "v1")]
        assert rows[(app, cosign_tag(v1, "sig"))].kind == "sig"
        assert rows[(app, fallback_tag(v1))].subject == v1
        for (repo, tag), row in rows.items():
            assert row.digest == source_view(open_registry, repo, tag)
            assert skopeo_digest(basic_registry.ref(repo, tag), basic_registry.creds) == \
                row.digest
        assert frame.loc[frame.tag == "v2", "bytes"].iloc[0] > 8192
        # one stream: the whole sync's bytes known up front, one final event, at 100 %
        finals = [e for e in events if e.is_final]
        assert [e.phase for e in finals] == ["done"] and events[-1] is finals[0]
        snap = aggregate.snapshot()
        assert snap.fraction == 1.0 and snap.total == snap.current > 30_000
        # the signature's manifest (listed by the fallback index) reached the destination
        assert reg.client.head_manifest(app, source_repos["signature"]) is not None

        proxy.requests.clear()
        again = reg.sync_repositories(source, [app, multi], tags=[r"^v", "^1$", "dev", "64$"])
        assert len(again) == 8 and set(again.status) == {"present"}
        assert again.bytes.sum() == 0
        # present = HEADs only: no manifest body, no blob read at the source
        assert proxy.matching("GET", "/blobs/") == []
        assert proxy.matching("GET", "/manifests/") == []


def test_sync_filters_tags_and_platforms(source_repos: dict, open_registry: RegistryService,
                                         token_registry: RegistryService) -> None:
    app, multi = source_repos["app"], source_repos["multi"]
    with facade(token_registry) as reg:
        frame = reg.sync_repositories(open_registry.host, [app, multi], tags=r"^(v2|1)$",
                                      platforms="linux/arm64", referrers=False)
        assert sorted(frame.tag) == ["1", "v2"], frame.to_dict("records")
        one = frame[frame.tag == "1"].iloc[0]
        assert one.digest == source_repos["digests"][(multi, "arm64")]  # the arm64 image alone
        assert reg.client.tags(multi) == ["1"]
        # a single image of another platform is not copied, and its row says why
        v2 = frame[frame.tag == "v2"].iloc[0]
        assert v2.status == "failed" and "single image for linux/amd64" in v2.error
        with pytest.raises(RegistryError, match="not a regular expression"):
            reg.sync_repositories(open_registry.host, [app], tags="(")


def test_sync_cut_half_way_resumes_with_only_what_is_left(
    source_repos: dict, open_registry: RegistryService, basic_registry: RegistryService,
) -> None:
    app, multi = source_repos["app"], source_repos["multi"]
    with facade(basic_registry) as reg:
        with FaultProxy(open_registry.url) as proxy:
            # after 4 blob reads the source "loses" every blob (a 404 is not retried)
            proxy.add_fault("GET", r"/blobs/sha256:", status=404, times=None, skip=4)
            first = reg.sync_repositories(ContainerRegistry(proxy.host), [app, multi],
                                          workers=1)
        assert "failed" in set(first.status) and "copied" in set(first.status)
        assert first[first.status == "failed"].error.str.contains("NotFound").all()
        # which blobs of the failed tags the destination has before the second run
        with RegistryClient.connect(open_registry.host) as src:
            had, missing = set(), set()
            for row in first[first.status == "failed"].itertuples():
                for digest in src_blobs(src, row.repository, row.tag):
                    there = reg.client.blob_exists(row.repository, digest)
                    (had if there else missing).add((row.repository, digest))
        assert missing
        with FaultProxy(open_registry.url) as proxy:
            second = reg.sync_repositories(ContainerRegistry(proxy.host), [app, multi],
                                           workers=1)
            blob_gets = {(r.path.split("/v2/", 1)[1].rsplit("/blobs/", 1)[0],
                          r.path.rsplit("/", 1)[1])
                         for r in proxy.matching("GET", "/blobs/sha256:")}
        assert set(second.status) == {"copied", "present"}
        # redone: the tags that failed, and the referrers of those (never reached)
        redo = second[(second.status == "copied") & (second.kind == "tag")]
        assert set(zip(redo.repository, redo.tag, strict=True)) == \
            set(zip(first[first.status == "failed"].repository,
                    first[first.status == "failed"].tag, strict=True))
        # every missing blob was read, none that the destination had
        assert missing <= blob_gets and not had & blob_gets
        for row in second.itertuples():
            assert skopeo_digest(basic_registry.ref(row.repository, row.tag),
                                 basic_registry.creds) == \
                source_view(open_registry, row.repository, row.tag)


def src_blobs(client: RegistryClient, repo: str, tag: str) -> set[str]:
    top = client.get_manifest(repo, tag)
    manifests = [top] if not isinstance(top, Index) else \
        [client.get_manifest(repo, e.digest) for e in top.manifests]
    out = set()
    for m in manifests:
        if isinstance(m, Index):
            out |= {e.digest for e in m.manifests}
            continue
        out |= {m.config.digest, *(d.digest for d in m.layers)}
    return out


def test_sync_reads_the_referrers_api_where_the_source_has_one(
    source_repos: dict, open_registry: RegistryService, basic_registry: RegistryService,
) -> None:
    """distribution 2.8 has no referrers API: the proxy plays a registry that has one,
    answering for app:v2 with the index that lists the signature manifest."""
    app = source_repos["app"]
    v2 = source_repos["digests"][(app, "v2")]
    with RegistryClient.connect(open_registry.host) as client:
        sig = client.get_manifest(app, source_repos["signature"])
    body = referrers_index([sig.descriptor(None)])
    with FaultProxy(open_registry.url) as proxy, facade(basic_registry) as reg:
        proxy.add_fault("GET", f"/referrers/{v2}", status=200, body=body, times=None,
                        headers={"Content-Type": OCI_INDEX})
        frame = reg.sync_repositories(ContainerRegistry(proxy.host), [app], tags="^v2$")
        found = frame[frame.kind == "referrer"]
        assert len(found) == 1 and found.digest.iloc[0] == sig.digest
        assert found.subject.iloc[0] == v2 and found.status.iloc[0] == "copied"
        assert reg.client.head_manifest(app, sig.digest) is not None
        # distribution 2.8 has no referrers API: the copy is listed in the fallback tag
        listed = reg.client.get_manifest(app, fallback_tag(v2))
        assert [e.digest for e in listed.manifests] == [sig.digest]
        # other digests: the proxy forwards, the registry answers 404, the API is dropped
        assert len(proxy.matching("GET", "/referrers/")) >= 2


def test_cancel_stops_the_sync_and_a_second_run_finishes_it(
    source_repos: dict, open_registry: RegistryService, basic_registry: RegistryService,
) -> None:
    import threading

    app, multi = source_repos["app"], source_repos["multi"]
    cancel = threading.Event()
    events: list[ProgressEvent] = []

    def progress(event: ProgressEvent) -> None:
        events.append(event)
        if event.status == "copied":
            cancel.set()  # after the first tag

    with facade(basic_registry) as reg:
        first = reg.sync_repositories(open_registry.host, [app, multi], workers=1,
                                      progress=progress, cancel=cancel)
        assert (first.status == "copied").sum() == 1
        cancelled = first[first.status == "failed"]
        assert len(cancelled) >= 4 and cancelled.error.str.startswith("OperationCancelled").all()
        assert [e.phase for e in events if e.is_final] == ["cancelled"]
        second = reg.sync_repositories(open_registry.host, [app, multi], workers=1)
        assert set(second.status) == {"copied", "present"}
        assert (second.status == "present").sum() == 1
        for row in second.itertuples():
            assert skopeo_digest(basic_registry.ref(row.repository, row.tag),
                                 basic_registry.creds) == \
                source_view(open_registry, row.repository, row.tag)


def test_blobs_shared_across_repositories_are_mounted_not_sent_twice(
    tmp_path, open_registry: RegistryService, basic_registry: RegistryService, unique_repo: str,
) -> None:
    """An app image on a base in another repository: the base layer reaches the
    destination once and is mounted into the second repository (seen at a proxy
    in front of the destination)."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "big.bin").write_bytes(os.urandom(64 * 1024))
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.txt").write_text("app\n")
    base, app = f"{unique_repo}-a-base", f"{unique_repo}-b-app"
    with ContainerRegistry(open_registry.host) as src:
        made = src.image_from_directory(tmp_path / "base", base, "1")
        src.image_from_directory(tmp_path / "app", app, "1",
                                 base=f"{open_registry.host}/{base}:1")
        with FaultProxy(basic_registry.url) as proxy:
            dst = ContainerRegistry(proxy.host, RegistryCredentials(
                username=basic_registry.username, password=basic_registry.password,
                registry_url=proxy.host))
            frame = dst.sync_repositories(src, [base, app], workers=1)
            assert set(frame.status) == {"copied"}
            layer = made["layer_digest"].split(":", 1)[1]  # paths carry it URL-encoded
            mounts = proxy.matching("POST", f"/v2/{app}/blobs/uploads/\\?mount=")
            assert [m.status for m in mounts if layer in m.path] == [201]
            assert not [r for r in proxy.matching("PUT", f"/v2/{app}/blobs/uploads/")
                        if layer in r.path]  # the base layer was not uploaded to the app
            assert [r.status for r in proxy.matching("PUT", f"/v2/{base}/blobs/uploads/")
                    if layer in r.path] == [201]  # but once, to the base repository
            dst.close()
        app_row = frame[frame.repository == app].iloc[0]
        assert app_row.bytes < 64 * 1024  # only the app's own layer and config moved


def test_dry_run_lists_what_a_sync_would_copy_and_writes_nothing(
    source_repos: dict, open_registry: RegistryService, token_registry: RegistryService,
) -> None:
    app, multi = source_repos["app"], source_repos["multi"]
    events: list[ProgressEvent] = []
    with FaultProxy(token_registry.url) as proxy:
        reg = ContainerRegistry(proxy.host, RegistryCredentials(
            username=token_registry.username, password=token_registry.password,
            registry_url=proxy.host))
        preview = reg.sync_repositories(open_registry.host, [app, multi], dry_run=True,
                                        progress=events.append)
        # the same 8 rows a sync writes (tags, the .sig and fallback tags of app:v1)
        assert len(preview) == 8 and set(preview.status) == {"missing"}, preview.error.tolist()
        for row in preview.itertuples():
            assert row.digest == source_view(open_registry, row.repository, row.tag)
        assert (preview[preview.kind == "tag"].bytes > 4096).all()  # a 4 KiB file at least
        assert [e.phase for e in events if e.is_final] == ["done"]
        assert "nothing was written" in events[-1].message
        # reads only: no upload, no manifest written
        assert [r for r in proxy.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")] \
            == []
        reg.close()
    with facade(token_registry) as reg:
        reg.sync_repositories(open_registry.host, [app], tags="^v1$", referrers=False)
        again = reg.sync_repositories(open_registry.host, [app], tags="^v", dry_run=True,
                                      referrers=False)
        assert dict(zip(again.tag, again.status, strict=True)) == \
            {"v1": "present", "v2": "missing"}
