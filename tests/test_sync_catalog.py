"""Mirroring a whole catalog (``sync_repositories(source, re.compile(...))``) out of the
registries that need credentials (Basic, token) into the open one, and back.

The shared registries hold every test's repositories, so the catalog is filtered by a
pattern naming only this test's. Digests are checked against skopeo's view of both
sides (``skopeo inspect --raw --tls-verify=false --creds``). A FaultProxy in front of
the token registry shows the token the catalog request carried: it was asked for, and
granted, ``registry:catalog:*``; the token service's ``reader`` has no catalog rights
and gets an error saying to name the repositories.
"""

from __future__ import annotations

import os
import re

import pytest
from faultproxy import FaultProxy
from helpers import RegistryService, seed_image, skopeo_digest

from registry_nb import ContainerRegistry, RegistryCredentials
from registry_nb.errors import AuthenticationError
from registry_nb.remote.challenges import token_grants

pytestmark = pytest.mark.usefixtures("empty_docker_config")


def facade(registry: RegistryService, host: str | None = None, *,
           user: str | None = None) -> ContainerRegistry:
    """A client of ``registry`` (at ``host``, e.g. a proxy) as its own user or ``user``."""
    host = host or registry.host
    creds = None
    if registry.username:
        username = user or registry.username
        password = registry.users[username] if user else registry.password
        creds = RegistryCredentials(username=username, password=password, registry_url=host)
    return ContainerRegistry(host, creds, cache=False)


def seed(registry: RegistryService, prefix: str) -> dict[tuple[str, str], str]:
    """Two repositories under ``prefix`` (3 tags) and a decoy the pattern must not take."""
    digests = {}
    for repo, tags in ((f"{prefix}-a", ("v1", "v2")), (f"{prefix}-b", ("1",)),
                       (f"{prefix}.decoy", ("v1",))):
        for tag in tags:
            digests[(repo, tag)] = seed_image(registry, repo, tag,
                                              files={"f.bin": os.urandom(2048)})
    return digests


def check_mirrored(frame, source: RegistryService, destination: RegistryService,
                   seeded: dict[tuple[str, str], str], prefix: str) -> None:
    """Every seeded tag under ``prefix-`` copied, the decoy not; digests as skopeo sees."""
    wanted = {key: d for key, d in seeded.items() if key[0].startswith(prefix + "-")}
    rows = {(r.repository, r.tag): r for r in frame.itertuples()}
    assert set(rows) == set(wanted), frame[["repository", "tag", "status", "error"]]
    assert set(frame.status) == {"copied"}, frame.error.tolist()
    for (repo, tag), digest in wanted.items():
        assert rows[(repo, tag)].digest == digest
        assert skopeo_digest(source.ref(repo, tag), source.creds) == digest
        assert skopeo_digest(destination.ref(repo, tag), destination.creds) == digest


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_a_private_catalog_mirrors_into_the_open_registry_and_back(
    kind: str, request: pytest.FixtureRequest, open_registry: RegistryService,
    unique_repo: str,
) -> None:
    private: RegistryService = request.getfixturevalue(f"{kind}_registry")
    out_prefix, back_prefix = f"{unique_repo}-out", f"{unique_repo}-back"
    seeded = seed(private, out_prefix)
    with FaultProxy(private.url) as proxy, facade(open_registry) as dest, \
            facade(private, proxy.host) as source:
        frame = dest.sync_repositories(source, re.compile("^" + re.escape(out_prefix) + "-"))
        catalog_calls = proxy.matching("GET", "/v2/_catalog")
    check_mirrored(frame, private, open_registry, seeded, out_prefix)
    # the catalog page that answered carried the credentials (never shown on failure)
    answered = [c.header("Authorization") or "" for c in catalog_calls if c.status == 200]
    assert answered
    if kind == "token":
        grants = set().union(*(token_grants(a.removeprefix("Bearer ")) or frozenset()
                               for a in answered))
        assert ("registry", "catalog", "*") in grants
    else:
        assert all(a.startswith("Basic ") for a in answered)

    seeded = seed(open_registry, back_prefix)
    pattern = re.compile("^" + re.escape(back_prefix) + "-")
    with facade(private) as dest, facade(open_registry) as source:
        frame = dest.sync_repositories(source, pattern)
        again = dest.sync_repositories(source, pattern)
    check_mirrored(frame, open_registry, private, seeded, back_prefix)
    assert set(again.status) == {"present"} and again.bytes.sum() == 0


def test_a_reader_without_catalog_rights_is_told_to_name_repositories(
    token_registry: RegistryService, open_registry: RegistryService, unique_repo: str,
) -> None:
    seeded = seed(token_registry, unique_repo)
    with facade(open_registry) as dest, facade(token_registry, user="reader") as reader:
        with pytest.raises(AuthenticationError) as refused:
            dest.sync_repositories(reader, re.compile("^" + re.escape(unique_repo)))
        assert "catalog" in refused.value.message
        assert "Name the repositories to mirror" in (refused.value.hint or "")
        assert token_registry.users["reader"] not in str(refused.value)
        # named, the same reader mirrors them (pull is all it needs)
        named = [f"{unique_repo}-a", f"{unique_repo}-b"]
        frame = dest.sync_repositories(reader, named)
    check_mirrored(frame, token_registry, open_registry, seeded, unique_repo)
