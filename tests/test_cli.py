"""The ``registry-nb`` console entry: ``main([...])`` with captured output."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from helpers import RegistryService, busybox_build_context, seed_image

from registry_nb.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


@pytest.mark.parametrize("argv", [[], ["ls"], ["images"]])
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: registry-nb")
    if not argv:
        assert "ls" in out and "images" in out and "lab" in out
    elif argv == ["ls"]:
        assert "registry" in out and "repository" in out and "--limit" in out
    else:
        assert "repository" in out


def test_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ls", "127.0.0.1:5000", "--limit", "-3"])
    assert info.value.code == 2
    assert "--limit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])


def test_ls_one_repository(capsys: pytest.CaptureFixture[str], open_registry: RegistryService,
                           unique_repo: str) -> None:
    d1 = seed_image(open_registry, unique_repo, "1")
    d2 = seed_image(open_registry, unique_repo, "2", files={"f": b"x" * 3000})
    code, out, err = run(capsys, "ls", open_registry.host, unique_repo)
    assert code == 0 and err == ""
    table = lines(out)
    assert table[0] == ["repository", "tag", "digest", "size_mb", "layer_count", "created",
                        "architecture", "os"]
    assert [row[:3] for row in table[1:]] == [[unique_repo, "1", d1[:19]],
                                             [unique_repo, "2", d2[:19]]]
    assert table[1][-2:] == ["amd64", "linux"]
    assert " ".join(table[1][5:7]) == "2023-11-14 22:13"


def test_ls_catalog_with_limit(capsys: pytest.CaptureFixture[str],
                               open_registry: RegistryService, unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "1")
    code, out, _ = run(capsys, "ls", f"http://{open_registry.host}", "--limit", "2")
    assert code == 0
    table = lines(out)
    assert table[0][:2] == ["repository", "tag"] and len(table) == 3


def test_ls_errors_say_what_to_do(capsys: pytest.CaptureFixture[str],
                                  token_registry: RegistryService,
                                  open_registry: RegistryService) -> None:
    code, out, err = run(capsys, "ls", token_registry.host)
    assert code == 1 and out == ""
    assert "catalog" in err and "Pass a repository" in err
    code, _, err = run(capsys, "ls", open_registry.host, f"no/such-{uuid.uuid4().hex[:8]}")
    assert code == 1 and "no such repository" in err


def test_ls_with_a_username(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                            token_registry: RegistryService, unique_repo: str) -> None:
    digest = seed_image(token_registry, unique_repo, "1")
    monkeypatch.setattr("sys.stdin", io.StringIO(token_registry.users["reader"] + "\n"))
    code, out, _ = run(capsys, "ls", token_registry.host, unique_repo,
                       "--username", "reader", "--password-stdin")
    assert code == 0 and digest[:19] in out
    monkeypatch.setenv("REGISTRY_NB_PASSWORD", "wrong")
    code, _, err = run(capsys, "ls", token_registry.host, unique_repo, "--username", "reader")
    assert code == 1 and "reader" in err


def test_images(capsys: pytest.CaptureFixture[str], docker_client, tmp_path: Path) -> None:
    repo = f"cli-test-{uuid.uuid4().hex[:8]}"
    ctx = busybox_build_context(tmp_path / "ctx", ["LABEL purpose=cli"])
    image, _ = docker_client.images.build(path=str(ctx), tag=f"{repo}:a", network_mode="none",
                                          rm=True)
    image.tag(repo, "b")
    try:
        code, out, err = run(capsys, "images", repo)
        assert code == 0 and err == ""
        table = lines(out)
        assert table[0] == ["repository", "tag", "image_id", "size_mb", "created",
                            "architecture"]
        assert [row[:3] for row in table[1:]] == [[repo, "a", image.id[:19]],
                                                 [repo, "b", image.id[:19]]]
        assert table[1][-1] == image.attrs["Architecture"]
        code, out, _ = run(capsys, "images", f"{repo}-absent")
        assert code == 0 and out.strip() == "(nothing)"
        code, out, _ = run(capsys, "images")
        assert code == 0 and repo in out
    finally:
        docker_client.images.remove(image.id, force=True)


def test_images_without_an_engine(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    code, out, err = run(capsys, "images")
    assert code == 1 and out == ""
    assert "no Docker engine" in err and "DOCKER_HOST" in err
