"""Delete, retention and rate limits against real CNCF distribution registries of our own
(delete enabled, and disabled), checked with skopeo; faults from tests/faultproxy.py.

Docker Hub's rate-limit headers and 429 answers cannot be had here: a small loopback
proxy in front of the real registry (``HubHeadersProxy`` below) adds them, as Hub sends
them (REGISTRIES.md), and plays the 429 on tag listings.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
import time
from datetime import timedelta

import pytest
import requests
from faultproxy import FaultProxy
from opsregistry import BASE_TIME, OwnRegistry, push_image, push_index, seed_days

from registry_nb import ContainerRegistry
from registry_nb.errors import DeletionRefusedError, RateLimitedError, UnsupportedOperationError
from registry_nb.oci.artifacts import cosign_tag


@pytest.fixture(scope="module")
def delete_registry(tmp_path_factory):
    registry = OwnRegistry(tmp_path_factory.mktemp("reg-delete"), delete=True)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def no_delete_registry(tmp_path_factory):
    registry = OwnRegistry(tmp_path_factory.mktemp("reg-nodelete"), delete=False)
    yield registry
    registry.stop()


@pytest.fixture
def reg(delete_registry):
    with ContainerRegistry(delete_registry.host, cache=False) as facade:
        yield facade


def skopeo_digest_or_none(host: str, repository: str, tag: str) -> str | None:
    """The digest skopeo sees for ``host/repository:tag``, None when it is gone."""
    done = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format",
                           "{{.Digest}}", f"docker://{host}/{repository}:{tag}"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        assert "manifest unknown" in done.stderr.lower() or "not found" in done.stderr.lower(), \
            done.stderr
        return None
    return done.stdout.strip()


# ------------------------------------------------------------------ delete

def test_delete_manifest_takes_every_tag_on_it_and_reminds_of_gc(reg, delete_registry,
                                                                  unique_repo):
    digest = push_image(reg.client, unique_repo, ["1", "one"], BASE_TIME)
    other = push_image(reg.client, unique_repo, ["2"], BASE_TIME + timedelta(days=1))
    result = reg.delete_manifest(f"{unique_repo}@{digest}")
    assert result["status"] == "deleted" and result["digest"] == digest
    assert result["tags_deleted"] == ["1", "one"]
    assert "registry garbage-collect" in result["note"]
    assert skopeo_digest_or_none(delete_registry.host, unique_repo, "1") is None
    assert skopeo_digest_or_none(delete_registry.host, unique_repo, "2") == other


def test_delete_tag_refuses_to_take_tags_that_share_its_digest(reg, delete_registry,
                                                                unique_repo):
    digest = push_image(reg.client, unique_repo, ["1", "latest", "stable"], BASE_TIME)
    with pytest.raises(UnsupportedOperationError) as refused:
        reg.delete_tag(unique_repo, "1")
    assert "latest, stable" in str(refused.value) and "force=True" in str(refused.value)
    assert "garbage-collect" in str(refused.value)
    assert skopeo_digest_or_none(delete_registry.host, unique_repo, "1") == digest
    result = reg.delete_tag(f"{unique_repo}:1", force=True)
    assert result["method"] == "digest"
    assert result["tags_deleted"] == ["1", "latest", "stable"]
    assert skopeo_digest_or_none(delete_registry.host, unique_repo, "stable") is None


def test_a_lone_tag_is_deleted_through_its_digest(reg, delete_registry, unique_repo):
    push_image(reg.client, unique_repo, ["old"], BASE_TIME)
    kept = push_image(reg.client, unique_repo, ["new"], BASE_TIME + timedelta(days=1))
    assert reg.delete_tag(unique_repo, "old")["tags_deleted"] == ["old"]
    assert reg.client.tags(unique_repo) == ["new"]
    assert skopeo_digest_or_none(delete_registry.host, unique_repo, "new") == kept


def test_deleting_a_manifest_an_index_lists_is_refused_naming_the_index(reg, unique_repo):
    amd = push_image(reg.client, unique_repo, ["amd"], BASE_TIME)
    arm = push_image(reg.client, unique_repo, ["arm"], BASE_TIME + timedelta(hours=1))
    index = push_index(reg.client, unique_repo, "multi", [amd, arm])
    with pytest.raises(DeletionRefusedError) as refused:
        reg.delete_manifest(unique_repo, amd)
    assert index in str(refused.value) and "tags multi" in str(refused.value)
    assert reg.client.head_manifest(unique_repo, amd) is not None
    result = reg.delete_manifest(unique_repo, amd, force=True)
    assert result["indexes_still_listing"] == [index]
    assert reg.client.head_manifest(unique_repo, amd) is None


def test_a_registry_without_delete_says_how_to_enable_it(no_delete_registry, unique_repo):
    with ContainerRegistry(no_delete_registry.host, cache=False) as reg:
        digest = push_image(reg.client, unique_repo, ["1"], BASE_TIME)
        with pytest.raises(UnsupportedOperationError) as refused:
            reg.delete_tag(unique_repo, "1")
        assert "storage: {delete: {enabled: true}}" in refused.value.hint
        assert reg.client.head_manifest(unique_repo, "1").digest == digest


def test_a_registry_that_deletes_tags_alone_is_asked_for_the_tag(delete_registry, unique_repo):
    """Quay's and GitLab's tag DELETE, played by the fault proxy answering 202 for it."""
    with FaultProxy(delete_registry.host) as proxy, \
            ContainerRegistry(proxy.host, cache=False) as reg:
        push_image(reg.client, unique_repo, ["1", "2"], BASE_TIME)
        proxy.add_fault("DELETE", r"/manifests/1$", status=202)
        result = reg.delete_tag(unique_repo, "1")
        assert result["method"] == "tag" and result["tags_deleted"] == ["1"]
        assert not proxy.matching("DELETE", "/manifests/sha256:")


def test_docker_hubs_refusals_become_what_to_do_instead(delete_registry, unique_repo):
    """Docker Hub, played by the fault proxy: a tag DELETE gets 405, a digest DELETE of a
    tagged manifest 403 (REGISTRIES.md); the client is told its host is docker.io."""
    with FaultProxy(delete_registry.host) as proxy, \
            ContainerRegistry(proxy.host, cache=False) as reg:
        digest = push_image(reg.client, unique_repo, ["1"], BASE_TIME)
        reg.client.transport.host = "docker.io"
        proxy.add_fault("DELETE", r"/manifests/1$", status=405, body=b'{"errors":[{"code":'
                        b'"UNSUPPORTED","message":"The operation is unsupported."}]}')
        proxy.add_fault("DELETE", r"/manifests/sha256:", status=403, body=b'{"errors":[{'
                        b'"code":"DENIED","message":"requested access to the resource is '
                        b'denied"}]}')
        with pytest.raises(UnsupportedOperationError) as refused:
            reg.delete_tag(unique_repo, "1")
        assert "delete the tags on hub.docker.com" in refused.value.hint
        assert reg.client.head_manifest(unique_repo, "1").digest == digest


# ------------------------------------------------------------------ retention

def _seed_for_retention(client, repository):
    digests = seed_days(client, repository, 8)  # t000 (oldest) .. t007
    client.put_manifest(repository, "v1", _raw(client, repository, "t001"),
                        "application/vnd.oci.image.manifest.v1+json")
    shared = push_image(client, repository, ["alias-a", "alias-b"], BASE_TIME - timedelta(days=30))
    child = push_image(client, repository, ["child"], BASE_TIME - timedelta(days=40))
    index = push_index(client, repository, "multi", [child, digests["t007"]])
    sig = push_image(client, repository, [cosign_tag(digests["t000"], "sig")],
                     BASE_TIME, label="signature of t000")
    return digests, shared, child, index, sig


def _raw(client, repository, tag):
    return requests.get(f"{client.transport.base_url}/v2/{repository}/manifests/{tag}",
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                        timeout=10).content


def test_retention_plan_explains_every_tag(reg, unique_repo):
    digests, shared, child, index, sig = _seed_for_retention(reg.client, unique_repo)
    plan = reg.retention_plan(unique_repo, keep_last=3, keep_tags=[r"^v\d+$"])
    by_tag = plan.set_index("tag")
    assert list(plan.columns) == ["repository", "tag", "digest", "created", "action", "reason"]
    assert str(plan["created"].dtype) == "datetime64[ns, UTC]"
    action = by_tag["action"].to_dict()
    # the three newest images: t007, t006, t005 (the index dates from its amd64 child)
    assert action["t007"] == action["t006"] == action["t005"] == "keep"
    assert action["t002"] == "delete" and "not among the 3 newest" in by_tag.loc["t002", "reason"]
    assert action["v1"] == "keep" and "keep pattern" in by_tag.loc["v1", "reason"]
    assert action["t001"] == "keep" and "'v1'" in by_tag.loc["t001", "reason"]
    assert action["alias-a"] == action["alias-b"] == "delete"
    # the index is old and deleted, so its old child may go too
    assert action["multi"] == "delete" and action["child"] == "delete"
    sig_tag = cosign_tag(digests["t000"], "sig")
    assert action["t000"] == "delete" and action[sig_tag] == "delete"
    assert "cosign .sig tag of 't000'" in by_tag.loc[sig_tag, "reason"]


def test_kept_indexes_keep_their_platform_manifests(reg, unique_repo):
    old = push_image(reg.client, unique_repo, ["old"], BASE_TIME)
    push_index(reg.client, unique_repo, "release", [old])
    plan = reg.retention_plan(unique_repo, keep_tags=["^release$"], older_than_days=1,
                              now=BASE_TIME + timedelta(days=10)).set_index("tag")
    assert plan.loc["old", "action"] == "keep"
    assert "platform manifest of the kept index tag 'release'" in plan.loc["old", "reason"]


def test_apply_retention_deletes_only_the_plan_and_skips_what_changed(reg, delete_registry,
                                                                      unique_repo):
    digests = seed_days(reg.client, unique_repo, 6)
    plan = reg.retention_plan(unique_repo, keep_last=2)
    dry = reg.apply_retention(plan)
    assert set(dry.loc[dry["action"] == "delete", "status"]) == {"would-delete"}
    assert sorted(reg.client.tags(unique_repo)) == sorted(digests)  # dry run: nothing gone
    # after the plan, t001 is also given to a new tag: its digest must survive
    reg.client.put_manifest(unique_repo, "pinned", _raw(reg.client, unique_repo, "t001"),
                            "application/vnd.oci.image.manifest.v1+json")
    outcome = reg.apply_retention(plan, dry_run=False).set_index("tag")
    assert outcome.loc["t001", "status"] == "skipped"
    assert "now also tagged pinned" in outcome.loc["t001", "error"]
    assert list(outcome.loc[["t000", "t002", "t003"], "status"]) == ["deleted"] * 3
    assert list(outcome.loc[["t004", "t005"], "status"]) == ["kept"] * 2
    for tag, digest in digests.items():
        seen = skopeo_digest_or_none(delete_registry.host, unique_repo, tag)
        assert seen == (None if tag in ("t000", "t002", "t003") else digest), tag
    assert skopeo_digest_or_none(delete_registry.host, unique_repo, "pinned") == digests["t001"]


def test_apply_deletes_an_index_before_the_manifests_it_lists(reg, delete_registry,
                                                              unique_repo):
    old = push_image(reg.client, unique_repo, ["old-amd"], BASE_TIME)
    index = push_index(reg.client, unique_repo, "old-multi", [old])
    new = push_image(reg.client, unique_repo, ["new"], BASE_TIME + timedelta(days=5))
    plan = reg.retention_plan(unique_repo, keep_last=1)
    assert set(plan.loc[plan.action == "delete", "digest"]) == {old, index}
    outcome = reg.apply_retention(plan, dry_run=False).set_index("tag")
    assert list(outcome.loc[["old-amd", "old-multi"], "status"]) == ["deleted", "deleted"]
    assert reg.client.tags(unique_repo) == ["new"]
    assert skopeo_digest_or_none(delete_registry.host, unique_repo, "new") == new


def test_a_failure_mid_apply_leaves_every_undeleted_row_intact(delete_registry, unique_repo):
    with FaultProxy(delete_registry.host) as proxy, \
            ContainerRegistry(proxy.host, cache=False) as reg:
        digests = seed_days(reg.client, unique_repo, 6)
        plan = reg.retention_plan(unique_repo, keep_last=1)
        # the second DELETE fails (500, not retried), a later one loses its answer (reset)
        faults = [proxy.add_fault("DELETE", r"/manifests/sha256:", skip=1, times=1, status=500),
                  proxy.add_fault("DELETE", r"/manifests/sha256:", skip=3, times=1, reset=True)]
        outcome = reg.apply_retention(plan, dry_run=False).set_index("tag")
        assert [f.hits for f in faults] == [1, 1]
    statuses = outcome["status"].to_dict()
    assert statuses["t005"] == "kept"
    failed = [t for t, s in statuses.items() if s == "failed"]
    assert len(failed) == 1 and "500" in outcome.loc[failed[0], "error"]
    deleted = [t for t, s in statuses.items() if s == "deleted"]
    assert len(deleted) == 4  # the lost answer counts: the registry had deleted it
    for tag, digest in digests.items():
        seen = skopeo_digest_or_none(delete_registry.host, unique_repo, tag)
        assert seen == (None if tag in deleted else digest), (tag, statuses[tag])


def test_the_command_line_plans_and_deletes(reg, delete_registry, unique_repo, capsys):
    from registry_nb.cli import main

    seed_days(reg.client, unique_repo, 3)
    host = delete_registry.host
    assert main(["retention", f"{host}/{unique_repo}", "--keep-last", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("would-delete") == 2
    assert "Dry run: 2 of 3 tags (2 manifests) would be deleted; nothing was deleted." in out
    # each reason in full (a person checks it), digests short, tags left-aligned
    assert "one of the 1 newest images (number 1, created 2026-01-03 00:00 UTC)" in out
    assert not re.search(r"sha256:[0-9a-f]{20}", out)
    assert [line.split()[0] for line in out.splitlines()[1:4]] == ["t000", "t001", "t002"]
    assert "<NA>" not in out and "error" not in out.splitlines()[0]  # no errors: no column
    assert sorted(reg.client.tags(unique_repo)) == ["t000", "t001", "t002"]
    # no rule: nothing could be deleted, so the command says what to give (a usage error)
    assert main(["retention", f"{host}/{unique_repo}", "--keep-tag", "t0"]) == 2
    assert "needs --keep-last N or --older-than DAYS" in capsys.readouterr().err
    assert main(["rm", f"{host}/{unique_repo}:t000", f"{host}/{unique_repo}:nope"]) == 1
    out = capsys.readouterr().out
    assert f"deleted {host}/{unique_repo}:t000 (sha256:" in out and "tags gone: t000" in out
    assert f"failed  {host}/{unique_repo}:nope:" in out and "garbage-collect" in out
    assert "registry_images_frame" not in out and "`registry-nb ls REGISTRY REPO`" in out
    assert sorted(reg.client.tags(unique_repo)) == ["t001", "t002"]
    assert main(["retention", f"{host}/{unique_repo}", "--keep-last", "1", "--apply"]) == 0
    out = capsys.readouterr().out
    assert "Tags: 1 deleted, 1 kept." in out and "garbage-collect" in out
    assert main(["rm", "--json", f"{host}/{unique_repo}:t002"]) == 0
    assert '"status": "deleted"' in capsys.readouterr().out


def test_retention_figures_on_300_tags(reg, unique_repo, capsys):
    seed_days(reg.client, unique_repo, 300)
    start = time.perf_counter()
    plan = reg.retention_plan(unique_repo, keep_last=100)
    plan_seconds = time.perf_counter() - start
    start = time.perf_counter()
    outcome = reg.apply_retention(plan, dry_run=False)
    apply_seconds = time.perf_counter() - start
    assert (outcome["status"] == "deleted").sum() == 200
    assert len(reg.client.tags(unique_repo)) == 100
    with capsys.disabled():
        print(f"\nretention_plan: 300 tags in {plan_seconds:.2f} s "
              f"({300 / plan_seconds:.0f} tags/s); apply_retention: 200 deletes of 300 rows "
              f"in {apply_seconds:.2f} s ({300 / apply_seconds:.0f} tags/s)")


# ------------------------------------------------------------------ rate limits

class HubHeadersProxy:
    """Plays Docker Hub's rate-limit headers in front of the real registry: every answer
    gets ``ratelimit-limit: 100;w=21600``, ``ratelimit-remaining`` (counted down by GETs
    of manifests, not HEADs, as Hub does) and ``docker-ratelimit-source``; with
    ``throttle_tags`` the tag listing answers Hub's 429."""

    def __init__(self, upstream: str) -> None:
        self.upstream = f"http://{upstream}"
        self.remaining = 76
        self.throttle_tags = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # noqa: D102
                pass

            def _headers(self):
                self.send_header("ratelimit-limit", "100;w=21600")
                self.send_header("ratelimit-remaining", f"{proxy.remaining};w=21600")
                self.send_header("docker-ratelimit-source", "192.0.2.7")

            def _any(self):
                if proxy.throttle_tags and "/tags/list" in self.path:
                    body = (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have '
                            b'reached your pull rate limit."}]}')
                    self.send_response(429)
                    self._headers()
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.command == "GET" and "/manifests/" in self.path:
                    proxy.remaining -= 1
                upstream = requests.request(
                    self.command, proxy.upstream + self.path, timeout=10,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self._headers()
                body = b"" if self.command == "HEAD" else upstream.content
                self.send_header("Content-Length", upstream.headers.get("Content-Length",
                                                                        str(len(body))))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = _any  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_rate_limit_reads_hubs_headers_with_an_uncounted_head(delete_registry, unique_repo):
    hub = HubHeadersProxy(delete_registry.host)
    try:
        with ContainerRegistry(hub.host, cache=False) as reg:
            push_image(ContainerRegistry(delete_registry.host).client, unique_repo, ["1"],
                       BASE_TIME)
            first = reg.rate_limit(f"{unique_repo}:1")
            assert first == {"limit": 100, "remaining": 76, "window_seconds": 21600,
                             "source": "192.0.2.7"}
            assert reg.rate_limit(f"{unique_repo}:1")["remaining"] == 76  # HEADs are free
            hub.throttle_tags = True
            with pytest.raises(RateLimitedError) as limited:
                reg.client.tags(unique_repo)
            error = limited.value
            assert error.limit == 100 and error.window_seconds == 21600
            assert "100 requests per 6.0 hours for 192.0.2.7" in error.hint
            assert "Try again in" in error.hint
    finally:
        hub.close()


def test_rate_limit_is_none_where_the_registry_sends_none(reg, unique_repo):
    push_image(reg.client, unique_repo, ["1"], BASE_TIME)
    assert reg.rate_limit(f"{unique_repo}:1") is None
