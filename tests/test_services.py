"""The local test services behave as the other tests assume."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests
from helpers import (
    busybox_build_context,
    get_token,
    jwt_claims,
    make_oci_layout,
    push_layout_with_skopeo,
    seed_image,
    skopeo_digest,
    skopeo_raw_manifest,
    token_stats,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def http():
    s = requests.Session()
    s.trust_env = False  # loopback only; ignore proxies and REQUESTS_CA_BUNDLE
    yield s
    s.close()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _challenge_params(header: str) -> dict:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


# -- registries ------------------------------------------------------------
def test_open_registry_answers_v2(http, open_registry):
    r = http.get(f"{open_registry.url}/v2/", timeout=5)
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_basic_registry_challenges_and_accepts_password(http, basic_registry):
    r = http.get(f"{basic_registry.url}/v2/", timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic ")
    assert _challenge_params(r.headers["WWW-Authenticate"])["realm"] == basic_registry.realm

    ok = http.get(f"{basic_registry.url}/v2/", timeout=5,
                  auth=(basic_registry.username, basic_registry.password))
    assert ok.status_code == 200
    bad = http.get(f"{basic_registry.url}/v2/", timeout=5,
                   auth=(basic_registry.username, "wrong"))
    assert bad.status_code == 401


def test_token_registry_challenges_with_the_token_service(http, token_registry):
    r = http.get(f"{token_registry.url}/v2/", timeout=5)
    assert r.status_code == 401
    header = r.headers["WWW-Authenticate"]
    assert header.startswith("Bearer ")
    params = _challenge_params(header)
    assert params["realm"] == token_registry.realm
    assert params["service"] == token_registry.service

    tok = get_token(token_registry)
    assert tok.status_code == 200
    ok = http.get(f"{token_registry.url}/v2/", headers=_bearer(tok.json()["token"]), timeout=5)
    assert ok.status_code == 200


def test_token_is_a_well_formed_rs256_jwt(token_registry):
    resp = get_token(token_registry, "repository:test/jwt:pull,push", "registry:catalog:*")
    body = resp.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == token_registry.expires_in
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["issued_at"])
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "RS256" and header["x5c"]
    claims = jwt_claims(body["token"])
    assert claims["aud"] == token_registry.service
    assert claims["sub"] == "alice"
    for key in ("iss", "exp", "nbf", "iat", "jti"):
        assert key in claims
    assert claims["exp"] - claims["iat"] == token_registry.expires_in
    assert {"type": "repository", "name": "test/jwt", "actions": ["pull", "push"]} in (
        claims["access"])
    assert {"type": "registry", "name": "catalog", "actions": ["*"]} in claims["access"]


def test_token_service_refuses_bad_passwords(token_registry):
    assert get_token(token_registry, "repository:x:pull", password="wrong").status_code == 401
    assert get_token(token_registry, "repository:x:pull", username="mallory",
                     password="x").status_code == 401


@pytest.mark.parametrize(
    ("who", "scope", "granted"),
    [
        ("anonymous", "repository:test/private:pull,push", []),
        ("anonymous", "repository:public/thing:pull,push", ["pull"]),
        ("anonymous", "registry:catalog:*", []),
        ("reader", "repository:test/any:pull,push,delete", ["pull"]),
        ("reader", "registry:catalog:*", []),
        ("alice", "repository:test/any:pull,push,delete", ["pull", "push", "delete"]),
    ],
)
def test_token_service_rules(token_registry, who, scope, granted):
    if who == "anonymous":
        resp = get_token(token_registry, scope, anonymous=True)
    else:
        resp = get_token(token_registry, scope, username=who)
    assert resp.status_code == 200
    (entry,) = jwt_claims(resp.json()["token"])["access"]
    assert entry["actions"] == granted


def test_registry_enforces_token_access(http, token_registry, unique_repo):
    """No push for anonymous or reader; alice can start an upload."""
    upload = f"{token_registry.url}/v2/{unique_repo}/blobs/uploads/"
    scope = f"repository:{unique_repo}:pull,push"
    anon = get_token(token_registry, scope, anonymous=True).json()["token"]
    reader = get_token(token_registry, scope, username="reader").json()["token"]
    alice = get_token(token_registry, scope).json()["token"]
    r = http.post(upload, headers=_bearer(anon), timeout=5)
    assert r.status_code == 401
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert http.post(upload, headers=_bearer(reader), timeout=5).status_code == 401
    started = http.post(upload, headers=_bearer(alice), timeout=5)
    assert started.status_code == 202
    http.delete(f"{token_registry.url}{started.headers['Location']}"
                if started.headers["Location"].startswith("/") else started.headers["Location"],
                headers=_bearer(alice), timeout=5)


def test_oauth2_post_flow_and_refresh_tokens(http, token_registry):
    realm, service = token_registry.realm, token_registry.service
    r = http.post(realm, timeout=5, data={
        "grant_type": "password", "username": "alice",
        "password": token_registry.users["alice"], "service": service,
        "scope": "repository:test/a:pull repository:test/b:pull,push",
        "client_id": "registry-nb-tests", "access_type": "offline",
    })
    assert r.status_code == 200
    body = r.json()
    assert body["access_token"] and body["refresh_token"]
    names = {a["name"] for a in jwt_claims(body["access_token"])["access"]}
    assert names == {"test/a", "test/b"}

    refreshed = http.post(realm, timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        "service": service, "scope": "repository:test/c:push",
    })
    assert refreshed.status_code == 200
    claims = jwt_claims(refreshed.json()["access_token"])
    assert claims["sub"] == "alice"
    assert claims["access"] == [{"type": "repository", "name": "test/c", "actions": ["push"]}]

    bad = http.post(realm, timeout=5, data={"grant_type": "refresh_token",
                                            "refresh_token": "nope", "service": service})
    assert bad.status_code == 401
    wrong = http.post(realm, timeout=5, data={"grant_type": "password", "username": "alice",
                                              "password": "wrong", "service": service})
    assert wrong.status_code == 401
    # GET flow: offline_token=true gives a refresh token too
    got = http.get(realm, timeout=5, auth=("alice", token_registry.users["alice"]),
                   params={"service": service, "scope": "repository:test/a:pull",
                           "offline_token": "true", "account": "alice"})
    assert got.json()["refresh_token"]


def test_token_stats_count_issued_tokens(token_registry):
    before = token_stats(token_registry)
    get_token(token_registry, "repository:test/stats:pull")
    get_token(token_registry, "repository:test/stats:pull", username="reader")
    get_token(token_registry, "repository:test/stats:pull", password="wrong")
    after = token_stats(token_registry)
    assert after["tokens_issued"] - before["tokens_issued"] == 2
    assert after["by_user"]["reader"] - before["by_user"].get("reader", 0) == 1
    assert after["refused"] - before["refused"] == 1
    assert after["recent"][-1]["user"] == "reader"


# -- images with skopeo ----------------------------------------------------
def test_oci_layout_is_deterministic_and_valid(tmp_path):
    files = {"etc/app.conf": b"x=1\n", "bin/tool": (b"#!/bin/sh\n", 0o755), "a.txt": b"a"}
    one = make_oci_layout(tmp_path / "one", files, tag="v1", layers=2)
    two = make_oci_layout(tmp_path / "two", files, tag="v1", layers=2)
    assert one.manifest_digest == two.manifest_digest
    assert len(one.layers) == 2
    assert one.config["rootfs"]["diff_ids"] == [layer.diff_id for layer in one.layers]
    assert len(one.config["history"]) == 2
    index = json.loads((tmp_path / "one" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    # skopeo reads it back unchanged
    out = subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", "--raw", f"oci:{tmp_path / 'one'}:v1"],
        capture_output=True, check=True).stdout
    assert out == one.manifest_bytes
    # a second tag in the same layout keeps the first
    make_oci_layout(tmp_path / "one", {"b.txt": b"b"}, tag="v2",
                    config_overrides={"config": {"Labels": {"k": "v"}}})
    refs = [m["annotations"]["org.opencontainers.image.ref.name"] for m in
            json.loads((tmp_path / "one" / "index.json").read_text())["manifests"]]
    assert refs == ["v1", "v2"]


@pytest.mark.parametrize("which", ["open_registry", "basic_registry", "token_registry"])
def test_seed_image_and_skopeo_agree(request, http, which, unique_repo):
    registry = request.getfixturevalue(which)
    digest = seed_image(registry, unique_repo, "v1", files={"hello.txt": b"hi\n"}, layers=2)
    assert digest.startswith("sha256:")
    assert skopeo_digest(registry.ref(unique_repo, "v1"), registry.creds) == digest
    manifest = json.loads(skopeo_raw_manifest(registry.ref(unique_repo, "v1"), registry.creds))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    for layer in manifest["layers"]:
        assert registry.blob_path(layer["digest"]).is_file()
    if which == "open_registry":
        r = http.get(f"{registry.url}/v2/{unique_repo}/manifests/v1", timeout=5,
                     headers={"Accept": manifest["mediaType"]})
        assert r.headers["Docker-Content-Digest"] == digest


def test_anonymous_push_to_token_registry_fails(tmp_path, token_registry, unique_repo):
    make_oci_layout(tmp_path / "l", {"x": b"x"}, tag="t")
    with pytest.raises(RuntimeError):
        push_layout_with_skopeo(tmp_path / "l", "t", token_registry.ref(unique_repo, "t"))
    with pytest.raises(RuntimeError):
        push_layout_with_skopeo(tmp_path / "l", "t", token_registry.ref(unique_repo, "t"),
                                creds=("reader", token_registry.users["reader"]))


# -- dockerd ---------------------------------------------------------------
def test_dockerd_builds_and_runs_busybox(docker_client, tmp_path, open_registry, unique_repo):
    assert docker_client.ping() is True
    ctx = busybox_build_context(tmp_path / "ctx", ["RUN echo built > /built.txt"])
    tag = f"registry-nb-test/busybox:{unique_repo.rsplit('-', 1)[1]}"
    image, _ = docker_client.images.build(path=str(ctx), tag=tag, network_mode="none", rm=True)
    try:
        out = docker_client.containers.run(tag, ["sh", "-c", "echo hello; cat /built.txt"],
                                           network_mode="none", remove=True)
        assert out == b"hello\nbuilt\n"
        # the engine pushes to the loopback registry over plain HTTP
        target = open_registry.ref(unique_repo, "v1")
        image.tag(target)
        lines = docker_client.images.push(target, stream=True, decode=True)
        digests = [ln["aux"]["Digest"] for ln in lines if "aux" in ln]
        assert digests and skopeo_digest(target) == digests[-1]
    finally:
        docker_client.images.remove(image.id, force=True)


# -- the services script ---------------------------------------------------
def test_services_script_status_and_env(services):
    py = sys.executable
    status = subprocess.run([py, str(ROOT / "scripts/services.py"), "status"],
                            capture_output=True, text=True)
    assert status.returncode == 0, status.stdout + status.stderr
    env = subprocess.run([py, str(ROOT / "scripts/services.py"), "env"],
                         capture_output=True, text=True, check=True).stdout
    assert f"export DOCKER_HOST={services['docker_host']}" in env
    assert f"export REGISTRY_NB_OPEN={services['open']['host']}" in env
    # start again is a no-op on running services
    t0 = time.monotonic()
    again = subprocess.run([py, str(ROOT / "scripts/services.py"), "start"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == 5
    assert time.monotonic() - t0 < 20


def test_unique_repo_is_a_valid_fresh_name(unique_repo):
    assert re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
                        unique_repo)
    assert unique_repo.startswith("test/")


def test_basic_auth_header_matches_what_clients_send(basic_registry, http):
    raw = f"{basic_registry.username}:{basic_registry.password}".encode()
    header = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    assert http.get(f"{basic_registry.url}/v2/_catalog", headers=header,
                    timeout=5).status_code == 200
