"""The ``registry-nb`` commands against the test services, run through ``main()``
(the same function the console script calls) and, for the entry point, a subprocess."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import RegistryService, seed_image, skopeo_digest

from registry_nb.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


COMMANDS = ["ls", "images", "inspect", "digest", "layers", "cp", "save", "load", "tag",
            "pull", "push", "audit", "login", "env", "seed", "lab"]


def test_every_command_has_help_and_the_entry_point_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "registry_nb.cli", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for name in COMMANDS:
        assert f"    {name} " in done.stdout, name
    for name in COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        main(["inspect"])  # missing IMAGE: a usage error
    assert info.value.code == 2


def test_ls_keeps_the_tag(capsys: pytest.CaptureFixture[str], open_registry: RegistryService,
                          unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "1")
    d2 = seed_image(open_registry, unique_repo, "2", files={"f": b"2"})
    rows = as_json(capsys, "ls", open_registry.host, f"{unique_repo}:2")
    assert [(r["tag"], r["digest"]) for r in rows] == [("2", d2)]
    rows = as_json(capsys, "ls", f"{open_registry.host}/{unique_repo}:2")
    assert [r["tag"] for r in rows] == ["2"]
    code, _, err = run(capsys, "ls", open_registry.host, f"{unique_repo}:9")
    assert code == 1 and "has no tag '9'" in err and "registry-nb ls" in err


def test_inspect_digest_layers(capsys: pytest.CaptureFixture[str],
                               open_registry: RegistryService, unique_repo: str) -> None:
    digest = seed_image(open_registry, unique_repo, "1", layers=2)
    image = f"{open_registry.host}/{unique_repo}:1"
    code, out, _ = run(capsys, "digest", image)
    assert code == 0 and out.strip() == digest
    data = as_json(capsys, "inspect", image)
    assert data["digest"] == digest and data["layers"] == 2 and data["platforms"] == []
    assert data["platform"] == "linux/amd64" and data["config"]["architecture"] == "amd64"
    code, out, _ = run(capsys, "inspect", image)
    assert code == 0 and f"digest      {digest}" in out and "layers      2" in out
    raw = subprocess.run([sys.executable, "-m", "registry_nb.cli", "inspect", "--raw", image],
                         capture_output=True, timeout=60).stdout
    assert "sha256:" + __import__("hashlib").sha256(raw).hexdigest() == digest
    rows = as_json(capsys, "layers", f"{open_registry.host}/{unique_repo}@{digest}")
    assert [r["index"] for r in rows] == [0, 1]
    assert all(r["digest"].startswith("sha256:") for r in rows)


def test_cp_tag_save_load(capsys: pytest.CaptureFixture[str], open_registry: RegistryService,
                          basic_registry: RegistryService, unique_repo: str, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch, empty_docker_config: Path) -> None:
    digest = seed_image(open_registry, unique_repo, "1", files={"a": b"a" * 5000})
    src = f"{open_registry.host}/{unique_repo}:1"
    monkeypatch.setenv("REGISTRY_NB_PASSWORD", basic_registry.password)
    result = as_json(capsys, "cp", src, f"{basic_registry.host}/{unique_repo}:copied",
                     "-u", basic_registry.username)
    assert result["digest"] == digest and result["copied_blobs"] == 2
    assert skopeo_digest(f"{basic_registry.host}/{unique_repo}:copied",
                         basic_registry.creds) == digest
    result = as_json(capsys, "tag", src, "again")
    assert result == {"source": src, "image": f"{open_registry.host}/{unique_repo}:again",
                      "digest": digest}
    assert skopeo_digest(f"{open_registry.host}/{unique_repo}:again") == digest
    layout = tmp_path / "layout"
    result = as_json(capsys, "save", src, str(layout))
    assert result["tag"] == "1" and (layout / "index.json").is_file()
    code, out, _ = run(capsys, "load", str(layout), f"{open_registry.host}/{unique_repo}:back")
    assert code == 0 and digest in out
    assert skopeo_digest(f"{open_registry.host}/{unique_repo}:back") == digest
    code, _, err = run(capsys, "load", str(tmp_path / "absent"), src)
    assert code == 1 and err.startswith("registry-nb: error: ") and "does not exist" in err


def test_audit(capsys: pytest.CaptureFixture[str], open_registry: RegistryService,
               unique_repo: str) -> None:
    seed_image(open_registry, unique_repo, "1")
    rows = as_json(capsys, "audit", f"{open_registry.host}/{unique_repo}")
    assert [r["tag"] for r in rows] == ["1"] and "runs-as-root" in rows[0]["findings"]
    code, out, _ = run(capsys, "audit", f"{open_registry.host}/{unique_repo}")
    assert code == 0 and "runs-as-root" in out.splitlines()[1]


def test_pull_images_push(capsys: pytest.CaptureFixture[str], open_registry: RegistryService,
                          unique_repo: str, docker_client) -> None:
    seed_image(open_registry, unique_repo, "1")
    full = f"{open_registry.host}/{unique_repo}:1"
    try:
        result = as_json(capsys, "pull", full)
        assert result["status"] == "success" and result["image_id"].startswith("sha256:")
        rows = as_json(capsys, "images", unique_repo)  # found without its registry
        assert [(r["repository"], r["tag"]) for r in rows] == \
            [(f"{open_registry.host}/{unique_repo}", "1")]
        assert as_json(capsys, "images", f"{unique_repo}:2") == []
        pushed = f"{open_registry.host}/{unique_repo}-pushed:1"
        result = as_json(capsys, "push", pushed, "--local", full)
        assert result["digest"] == skopeo_digest(pushed)
    finally:
        for name in (full, f"{open_registry.host}/{unique_repo}-pushed:1"):
            try:
                docker_client.images.remove(name, force=True)
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass


def test_images_without_an_engine_says_how_to_reach_one(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    code, out, err = run(capsys, "images", "demo/hello")
    assert code == 1 and out == ""
    assert "no Docker engine answers" in err and 'eval "$(registry-nb env)"' in err


def test_env(capsys: pytest.CaptureFixture[str], services_info: dict,
             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REGISTRY_NB_STATE", services_info["state"])
    code, out, _ = run(capsys, "env")
    assert code == 0
    assert f"export DOCKER_HOST={services_info['docker_host']}" in out
    assert f"export REGISTRY_NB_REGISTRY={services_info['open']['host']}" in out
    assert "# stop them:" in out and "services.py stop" in out
    # the exports work in a new shell: the engine answers through them
    shell = subprocess.run(["bash", "-c", f'eval "$({sys.executable} -m registry_nb.cli env)"'
                            f' && {sys.executable} -m registry_nb.cli images --json'],
                           capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
    assert shell.returncode == 0, shell.stderr
    assert isinstance(json.loads(shell.stdout), list)
    monkeypatch.setenv("REGISTRY_NB_STATE", str(tmp_path))
    code, _, err = run(capsys, "env")
    assert code == 1 and "scripts/lab.sh" in err


def test_login_writes_the_docker_config(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch,
                                        basic_registry: RegistryService,
                                        token_registry: RegistryService,
                                        docker_config_dir: Path) -> None:
    import io

    config = docker_config_dir / "config.json"
    config.write_text(json.dumps({"auths": {"other:1": {"auth": "eDp5"}}, "HttpHeaders": {}}))
    monkeypatch.setattr("sys.stdin", io.StringIO(basic_registry.password + "\n"))
    code, out, err = run(capsys, "login", basic_registry.host, "-u", "alice",
                         "--password-stdin")
    assert code == 0, err
    assert "Login Succeeded" in out
    data = json.loads(config.read_text())
    assert base64.b64decode(data["auths"][basic_registry.host]["auth"]).decode() == \
        f"alice:{basic_registry.password}"
    assert data["auths"]["other:1"] == {"auth": "eDp5"} and "HttpHeaders" in data
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert [p.name for p in docker_config_dir.iterdir()] == ["config.json"]  # no temp left
    # the stored login is used: ls without --username works now
    code, _, err = run(capsys, "ls", basic_registry.host, "--limit", "1")
    assert code == 0, err
    # a refused password changes nothing
    before = config.read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
    code, _, err = run(capsys, "login", token_registry.host, "-u", "alice", "--password-stdin")
    assert code == 1 and "refused the credentials for user alice" in err
    assert config.read_bytes() == before


@pytest.mark.parametrize("where", ["credsStore", "credHelpers"])
def test_login_respects_a_credential_helper(where: str, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch,
                                            basic_registry: RegistryService,
                                            docker_config_dir: Path, tmp_path: Path) -> None:
    import io

    stored = tmp_path / "stored.json"
    helper = tmp_path / "bin" / "docker-credential-clitest"
    helper.parent.mkdir()
    helper.write_text(f"#!/bin/sh\n[ \"$1\" = store ] && cat > {stored}\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    config = docker_config_dir / "config.json"
    # credHelpers for the host wins over credsStore, as in docker (this store is absent)
    named = {"credsStore": "clitest"} if where == "credsStore" else \
        {"credsStore": "not-installed", "credHelpers": {basic_registry.host: "clitest"}}
    config.write_text(json.dumps(named))
    monkeypatch.setattr("sys.stdin", io.StringIO(basic_registry.password + "\n"))
    code, out, err = run(capsys, "login", basic_registry.host, "-u", "alice",
                         "--password-stdin", "--json")
    assert code == 0, err
    assert json.loads(out)["helper"] == "clitest"
    assert json.loads(stored.read_text()) == {"ServerURL": basic_registry.host,
                                              "Username": "alice",
                                              "Secret": basic_registry.password}
    data = json.loads(config.read_text())
    assert data == {**named, "auths": {basic_registry.host: {}}}
    assert basic_registry.password not in config.read_text()


def test_unknown_repository_and_bad_reference(capsys: pytest.CaptureFixture[str],
                                              open_registry: RegistryService) -> None:
    code, _, err = run(capsys, "inspect", f"{open_registry.host}/no/such-{uuid.uuid4().hex[:6]}:1")
    assert code == 1 and err.startswith("registry-nb: error: ") and "no such" in err
    code, _, err = run(capsys, "digest", f"{open_registry.host}/Bad Name")
    assert code == 1 and "invalid image reference" in err
