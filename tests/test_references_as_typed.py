"""Images named the way people type them, wherever the facade takes a name (issue 14).

Against the real open registry and dockerd: ``repo:tag``, ``repo@sha256:…`` and
``host/repo:tag`` of the facade's own registry mean the same image as the
(``image_name``, ``image_tag``) pair; a tag given twice that disagrees, or a name on
another registry, is an InvalidReferenceError that says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_nb import ContainerRegistry
from registry_nb.errors import InvalidReferenceError, RegistryError

pytestmark = pytest.mark.usefixtures("empty_docker_config")


@pytest.fixture
def pushed(open_registry, unique_repo: str, tmp_path: Path) -> tuple[ContainerRegistry, str, str]:
    """A one-layer image at ``unique_repo:1``: (facade, repository, manifest digest)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello\n")
    reg = ContainerRegistry(open_registry.host)
    result = reg.image_from_directory(site, unique_repo, "1")
    return reg, unique_repo, result["digest"]


def test_every_spelling_names_the_same_image(pushed) -> None:
    reg, repo, digest = pushed
    host = reg.registry_host
    spellings = [(repo, "1"), (f"{repo}:1", None), (f"{host}/{repo}:1", None),
                 (f"{repo}@{digest}", None), (repo, digest), (f"{repo}:1", "1")]
    described = [reg.describe_image(name, tag) for name, tag in spellings]
    assert {image.digest for image in described} == {digest}
    frames = [reg.layers_frame(name, tag) for name, tag in spellings]
    assert all(frame.equals(frames[0]) for frame in frames)
    assert reg.image_config(f"{repo}:1").digest == reg.image_config(repo, "1").digest


def test_a_tag_given_twice_that_disagrees_is_refused(pushed) -> None:
    reg, repo, _ = pushed
    with pytest.raises(InvalidReferenceError, match="disagree") as caught:
        reg.describe_image(f"{repo}:1", "2")
    assert caught.value.part == "tag"
    assert "Give the tag once" in str(caught.value)


def test_a_name_on_another_registry_is_refused_before_any_request(pushed) -> None:
    reg, repo, _ = pushed
    with pytest.raises(InvalidReferenceError, match="not this registry") as caught:
        reg.layers_frame(f"ghcr.io/{repo}:1")
    assert "copy_image" in str(caught.value)


def test_a_write_needs_a_tag_not_a_digest(pushed, tmp_path: Path) -> None:
    reg, repo, digest = pushed
    with pytest.raises(InvalidReferenceError, match="writes a tag"):
        reg.save_image(f"{repo}@{digest}", None, tmp_path / "layout")
    saved = reg.save_image(f"{repo}:1", None, tmp_path / "layout")
    assert saved["tag"] == "1"
    assert saved["image"] == f"{reg.registry_host}/{repo}:1"


def test_pull_takes_repo_colon_tag(pushed, docker_host: str) -> None:
    reg, repo, _ = pushed
    result = reg.pull_image(f"{repo}:1")
    assert result["status"] == "success"
    assert f"{reg.registry_host}/{repo}:1" in result["tags"]
    assert result["image"] == f"{reg.registry_host}/{repo}:1"
    same = reg.pull_image(f"{reg.registry_host}/{repo}", "1")
    assert same["image_id"] == result["image_id"]


def test_messages_and_hints_are_sentences() -> None:
    assert str(RegistryError("it failed", hint="Try again.")) == "it failed. Try again."
    assert str(RegistryError("it failed.", hint="Try again.")) == "it failed. Try again."
    assert str(RegistryError("no hint")) == "no hint"
