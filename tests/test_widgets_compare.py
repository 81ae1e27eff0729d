"""The registry browser's comparison (ImageDiffView) and attachments, headless.

A registry of the test's own (``docker-registry serve``, tests/opsregistry.py) holds
images pushed with skopeo (tests/helpers.py); the test picks tags in the browser as a
person would (repository, tag, Set as A, ..., Compare) and reads what the view shows.
"""

from __future__ import annotations

import re

import pytest
from helpers import RegistryService, seed_image, seed_index

from registry_nb import ContainerRegistry
from registry_nb.widgets import ImageDiffView, RegistryBrowser

pytestmark = pytest.mark.usefixtures("empty_docker_config")

PNG = b"\x89PNG\r\n\x1a\n"
OLD = {"keep.txt": b"the same in both\n", "old.txt": b"only in the first\n",
       "change.txt": b"one\n"}
NEW = {"keep.txt": b"the same in both\n", "change.txt": b"two, longer\n",
       "new.txt": b"only in the second\n", "docs/new2.txt": b"also new\n"}


@pytest.fixture(scope="module")
def own(own_registry: RegistryService) -> RegistryService:
    return own_registry


def pick(browser: RegistryBrowser, repository: str, tag: str) -> None:
    browser.repositories.value = repository
    browser.wait()
    browser.tags.value = tag
    browser.wait()


def test_two_tags_of_different_repositories_compared_in_the_browser(own) -> None:
    seed_image(own, "team/old", "1", files=OLD)
    seed_image(own, "team/new", "2", files=NEW)
    with ContainerRegistry(own.host) as reg:
        browser = RegistryBrowser(reg)
        browser.wait()
        assert browser.set_a_button.disabled  # nothing shown yet
        pick(browser, "team/old", "1")
        browser.set_a_button.click()
        pick(browser, "team/new", "2")
        browser.set_b_button.click()
        view = browser.comparison
        assert (view.a.value, view.b.value) == ("team/old:1", "team/new:2")
        view.compare_button.click()
        browser.wait(60)
        assert view.error is None
        summary = view.diff.summary
        assert (summary["files_added"], summary["files_removed"], summary["files_changed"]) \
            == (3, 1, 1)  # new.txt, docs/ and docs/new2.txt; old.txt; change.txt
        tabs = {view.tabs.get_title(i): page.value for i, page in enumerate(view.tabs.children)}
        assert list(tabs) == ["Summary", "Layers", "Files", "Packages", "Config"]
        assert "3 files added, 1 removed, 1 changed" in tabs["Summary"]
        assert "<b>5 files</b>: 3 added, 1 changed, 1 removed" in tabs["Files"]
        assert "/old.txt" in tabs["Files"] and "/docs/new2.txt" in tabs["Files"]
        assert "/keep.txt" not in tabs["Files"]
        assert "1 added" in tabs["Layers"] and "1 removed" in tabs["Layers"]
        assert "no packages differ" in tabs["Packages"]
        # what a person reads: sizes with a sign, nothing where a side has no value, the
        # config's count in words; a long value wraps in its cell instead of being cut
        change = len(NEW["change.txt"]) - len(OLD["change.txt"])
        assert f"<td>+{change}\u00a0B</td>" in tabs["Files"]  # never wrapped before its unit
        assert "shared base, not read" not in tabs["Files"]  # no base shared here
        assert "<th>size A</th>" in tabs["Files"] and "<th>change</th>" in tabs["Files"]
        assert "&lt;NA&gt;" not in tabs["Files"] + tabs["Layers"] and "None" not in \
            tabs["Config"]
        assert re.search(r"<b>\d+ config fields</b>: 0 changed", tabs["Config"])  # same config
        assert "overflow-wrap: anywhere" in tabs["Files"]
        assert view.tabs.layout.display == "flex"
        assert view.chart_png.startswith(PNG)
        assert view.chart.outputs[0]["data"]["image/png"]


def test_an_index_platform_is_compared_by_digest(own) -> None:
    digests = seed_index(own, "team/multi", "1", {
        "linux/amd64": {"arch.txt": b"amd64\n", "common.txt": b"same\n"},
        "linux/arm64": {"arch.txt": b"arm64 build\n", "common.txt": b"same\n",
                        "extra.txt": b"x\n"},
    })
    with ContainerRegistry(own.host) as reg:
        browser = RegistryBrowser(reg)
        browser.wait()
        pick(browser, "team/multi", "1")
        assert browser.shown_reference == f"team/multi@{digests['linux/amd64']}"
        browser.set_a_button.click()
        browser.platform.value = "linux/arm64"
        browser.wait()
        assert browser.shown_reference == f"team/multi@{digests['linux/arm64']}"
        browser.set_b_button.click()
        browser.comparison.compare_button.click()
        browser.wait(60)
        summary = browser.comparison.diff.summary
        assert (summary["files_added"], summary["files_removed"], summary["files_changed"]) \
            == (1, 0, 1)
        assert summary["digest_b"] == digests["linux/arm64"]
        assert browser.attachments is not None and browser.attachments.empty
        assert "none (no signature, SBOM or attestation found)" in browser.details.value


def test_attachments_show_in_the_details(own, tmp_path) -> None:
    digest = seed_image(own, "team/signed", "1", files={"app.txt": b"app\n"})
    report = tmp_path / "report.spdx.json"
    report.write_text('{"spdxVersion": "SPDX-2.3", "packages": []}')
    with ContainerRegistry(own.host) as reg:
        attached = reg.push_artifact(report, "team/signed", artifact_type="application/spdx+json",
                                     subject="1")
        browser = RegistryBrowser(reg)
        browser.wait()
        pick(browser, "team/signed", "1")
        frame = browser.attachments
        assert list(frame.digest) == [attached["digest"]] and list(frame.subject) == [digest]
        # one plain image: "1 tag", and no empty platforms or error columns
        assert "team/signed</b>: 1 tag<" in browser.tags_table.value
        assert "<th>platforms</th>" not in browser.tags_table.value
        assert "<th>error</th>" not in browser.tags_table.value
        assert "Attachments" in browser.details.value
        assert "application/spdx+json" in browser.details.value
        assert attached["digest"][:19] in browser.details.value


def test_a_failed_comparison_shows_its_message_and_hint(own) -> None:
    seed_image(own, "team/one", "1", files={"a.txt": b"a\n"})
    with ContainerRegistry(own.host) as reg:
        view = ImageDiffView(reg)
        view.compare("team/one:1", "team/absent:9")
        view.wait(60)
        assert view.error is not None and view.diff is None
        assert "Failed:" in view.status.value and "team/absent" in view.status.value
        assert view.error.hint and view.error.hint.split()[0] in view.status.value
        assert "Traceback" not in view.status.value
        view.compare("team/one:1", "")
        view.wait(10)
        assert "compare needs two images" in view.status.value
