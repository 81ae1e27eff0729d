"""SyncForm, headless, between the real test registries (open -> Basic).

Each test fills the form, presses Preview or Start, waits, and checks what a person
would see (the bar, the status line, the result table) next to what skopeo says
the registries hold. Images come from the test helpers (skopeo), never from the
code under test.
"""

from __future__ import annotations

import os
import re

import pandas as pd
import pytest
from faultproxy import FaultProxy
from helpers import RegistryService, seed_image, skopeo_digest

from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.errors import NotFoundError, RegistryError
from registry_nb.widgets import SyncForm
from registry_nb.widgets.sync import sync_table_html

pytestmark = pytest.mark.usefixtures("empty_docker_config")


def destination(registry: RegistryService, host: str | None = None) -> ContainerRegistry:
    host = host or registry.host
    return ContainerRegistry(host, RegistryCredentials(
        username=registry.username, password=registry.password, registry_url=host))


@pytest.fixture
def source_repo(open_registry: RegistryService, unique_repo: str) -> dict[str, str]:
    """One repository with three tags in the open registry: tag -> digest (skopeo's)."""
    for tag in ("v1", "v2", "dev"):
        seed_image(open_registry, unique_repo, tag,
                   files={f"{tag}.bin": os.urandom(16 * 1024)}, layers=2)
    return {tag: skopeo_digest(open_registry.ref(unique_repo, tag))
            for tag in ("v1", "v2", "dev")}


def rows_in_table(form: SyncForm) -> list[str]:
    """The result table's HTML (what the result panel shows)."""
    return [o["data"]["text/html"] for o in form.result_panel.outputs
            if "text/html" in o.get("data", {})]


def test_preview_then_start_copies_the_tags_with_the_sources_digests(
    open_registry: RegistryService, basic_registry: RegistryService, unique_repo: str,
    source_repo: dict[str, str],
) -> None:
    with destination(basic_registry) as reg:
        form = SyncForm(reg, source=ContainerRegistry(open_registry.host),
                        repositories=unique_repo, tags=r"^v\d")
        assert form.run_button.description == "Start" and form.source.value == \
            open_registry.host
        # Preview: a dry run, nothing written
        assert form.preview_button.click() is None
        preview = form.wait(60)
        assert preview["status"] == "dry run" and preview["missing"] == 2
        assert sorted(preview["rows"].tag) == ["v1", "v2"]
        assert "Preview: 2 of 2 to copy" in form.status.value
        assert "Nothing was written" in form.status.value
        assert form.state == "success" and form.progress.value == 100
        # a dry run copies nothing: the line under the bar says what it found
        assert form.transfer.value == "dry run · 2 to copy · 0 present"
        assert "the registry copied into" in form.username.placeholder
        with pytest.raises(NotFoundError):
            reg.client.tags(unique_repo)
        # Start: the tags arrive with the source's digests, the bar at 100 %
        form.run_button.click()
        result = form.wait(120)
        assert result["status"] == "synced" and result["copied"] == 2
        for tag in ("v1", "v2"):
            assert skopeo_digest(basic_registry.ref(unique_repo, tag),
                                 basic_registry.creds) == source_repo[tag]
        assert reg.client.tags(unique_repo) == ["v1", "v2"]  # dev did not match
        assert form.progress.value == form.progress.max == 100
        assert form.progress.bar_style == "success" and form.state == "success"
        assert "Synced 2 tags from" in form.status.value
        assert "2 tags copied" in form.transfer.value and "blobs" in form.transfer.value
        table = rows_in_table(form)[-1]
        assert table.count('data-status="copied"') == 2
        assert source_repo["v1"][:19] in table
        assert form.layers_box.children == () and form.layers_more.value == ""
        assert not form.run_button.disabled and not form.preview_button.disabled
        # again: everything present, no bytes moved
        form.run_button.click()
        again = form.wait(60)
        assert again["present"] == 2 and again["copied"] == 0 and again["bytes"] == 0


def test_errors_show_their_message_and_hint_never_a_traceback(
    open_registry: RegistryService, basic_registry: RegistryService, unique_repo: str,
    source_repo: dict[str, str],
) -> None:
    with destination(basic_registry) as reg:
        form = SyncForm(reg, source=open_registry.host, repositories=unique_repo, tags="(")
        form.run_button.click()
        with pytest.raises(RegistryError) as caught:
            form.wait(60)
        assert form.state == "failed" and form.progress.bar_style == "danger"
        assert "is not a regular expression" in form.status.value
        assert "Write tags as regular expressions" in form.status.value  # the hint
        assert caught.value.hint and "Traceback" not in str(form.result_panel.outputs)
        # the destination itself as the source: a typed input error
        form.source.value = reg.registry_host
        form.tags.value = ""
        form.run_button.click()
        with pytest.raises(RegistryError, match="the registry the form copies into"):
            form.wait(30)
        assert "Type another registry as the source" in form.status.value
        # nothing listens there: the source is unreachable
        form.source.value = "127.0.0.1:9"
        form.run_button.click()
        with pytest.raises(RegistryError) as unreachable:
            form.wait(60)
        assert unreachable.value.message.split(":")[0] in form.status.value
        assert "Traceback" not in str(form.result_panel.outputs)


def test_a_tag_that_fails_is_a_row_with_its_error_and_start_again_finishes(
    open_registry: RegistryService, basic_registry: RegistryService, unique_repo: str,
    source_repo: dict[str, str],
) -> None:
    """The proxy in front of the source loses v2's own layer (a 404): one row fails, the
    others arrive; a second Start copies only what is left."""
    with destination(basic_registry) as reg:
        with FaultProxy(open_registry.url) as proxy:
            with ContainerRegistry(open_registry.host) as src:
                manifest = src.client.get_manifest(unique_repo, "v2")
            proxy.add_fault("GET", f"/blobs/{manifest.layers[0].digest}", status=404,
                            times=None)
            form = SyncForm(reg, source=proxy.host, repositories=unique_repo, workers=1)
            form.run_button.click()
            result = form.wait(120)
        assert result["failed"] == 1 and result["copied"] == 2
        assert form.state == "failed" and form.progress.bar_style == "danger"
        assert "1 of 3 failed" in form.status.value
        assert "a second run copies only what is left" in form.status.value
        table = rows_in_table(form)[-1]
        assert table.count('data-status="failed"') == 1 and "NotFoundError" in table
        # the error on a row of its own under the failed tag, the table's whole width
        assert re.search(r'data-status="failed">.*?</tr><tr class="registry-nb-sync-error">'
                         r'<td class="error" colspan="7">[^<]*NotFoundError', table)
        assert "<th>error</th>" not in table
        form.source.value = open_registry.host
        form.run_button.click()
        second = form.wait(120)
        assert (second["copied"], second["present"], second["failed"]) == (1, 2, 0)
        assert skopeo_digest(basic_registry.ref(unique_repo, "v2"),
                             basic_registry.creds) == source_repo["v2"]


def test_no_matching_tag_says_so_and_digest_tags_are_shortened(
    open_registry: RegistryService, basic_registry: RegistryService, unique_repo: str,
    source_repo: dict[str, str],
) -> None:
    with destination(basic_registry) as reg:
        form = SyncForm(reg, source=open_registry.host, repositories=unique_repo,
                        tags="^nomatch$")
        form.preview_button.click()
        assert form.wait(60)["missing"] == 0
        assert f"No tags matched in {open_registry.host}: nothing to copy." in \
            form.status.value
        assert "Check the repository names and the tag patterns" in form.status.value
        assert "0 of 0" not in form.status.value
    fallback = "sha256-" + "ab" * 32
    frame = pd.DataFrame([{"repository": unique_repo, "tag": fallback, "kind": "fallback",
                           "status": "copied", "digest": "sha256:" + "cd" * 32,
                           "bytes": 10, "error": None}])
    table = sync_table_html(frame)
    assert f'<td title="{fallback}">sha256-abababababab…</td>' in table
    assert "<th>error</th>" not in table and 'class="error"' not in table
    # blobs mounted from another repository of the destination are counted per row
    assert "<th>mounted</th>" in table and table.count("<td></td></tr>") == 1
    mounted = sync_table_html(frame.assign(mounted=2))
    assert "<td>10 B</td><td>2</td></tr>" in mounted


def test_cancel_stops_the_sync(open_registry: RegistryService, basic_registry: RegistryService,
                               unique_repo: str, source_repo: dict[str, str]) -> None:
    with destination(basic_registry) as reg:
        form = SyncForm(reg, source=open_registry.host, repositories=unique_repo, workers=1,
                        progress=lambda event: form.cancel()
                        if event.status == "copied" else None)
        form.run_button.click()
        result = form.wait(120)
        assert result["copied"] == 1 and result["failed"] == 2
        assert form.state == "cancelled" and "Cancelled: 1 copied, 2 not done" in \
            form.status.value
