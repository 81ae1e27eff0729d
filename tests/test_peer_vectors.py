"""Other projects' own test vectors, run through registry_nb's public API.

One case per vector, named by the peer's ``where``. The data is read from
``../shared/data/peer/vectors`` (see ``peer_vectors.py``); small tables the vectors
README only names are written out, cited, in ``peer_cited_vectors.py``.

A vector either agrees, or is in :data:`DEVIATIONS` with the reason and a check of what
registry_nb does instead. A deviation's case asserts both that the peer's expectation
still fails and that our behaviour holds, so a deviation that stops deviating fails
here until it is removed from the list. The README's "Deviations from peer test
vectors" section is checked against the same list.

``python tests/test_peer_vectors.py`` prints the counts per file.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from peer_cited_vectors import cited_vectors
from peer_vectors import Ctx, Vector, challenges, file_vectors, refused, scheme_of

from registry_nb.errors import InvalidPlatformError, InvalidReferenceError, RegistryError
from registry_nb.oci.config import ImageConfig
from registry_nb.oci.manifest import Descriptor, Manifest, parse_manifest
from registry_nb.oci.platform import Platform
from registry_nb.oci.reference import ImageReference, validate_digest, validate_registry
from registry_nb.remote.challenges import parse_www_authenticate
from registry_nb.remote.credentials import credentials_from_docker_config

README = Path(__file__).resolve().parents[1] / "docs" / "deviations.md"
README_HEADING = "# Deviations from peer test vectors"


@dataclass(frozen=True)
class Deviation:
    """Why registry_nb differs, and a check of what it does instead."""

    reason: str
    ours: Callable[[Vector, Ctx], None]


def _nothing(vector: Vector, ctx: Ctx) -> None:
    """No separate check: the peer's expectation failing is the behaviour."""


def _sha512_accepted(v: Vector, ctx: Ctx) -> None:
    assert ImageReference.parse(v.data["input"]).digest.startswith("sha512:")


def _short_digest_refused(v: Vector, ctx: Ctx) -> None:
    error = refused(lambda: validate_digest(v.data["digest"]), InvalidReferenceError)
    assert error.part == "digest"


def _id_is_no_reference(v: Vector, ctx: Ctx) -> None:
    text = v.data["Reference"]
    if ":" in text:  # sha256:<hex> reads as the repository library/sha256, tag <hex>
        ref = ImageReference.parse(text)
        assert (ref.repository, ref.tag) == ("library/sha256", text.split(":")[1])
    else:
        assert "image ID" in refused(lambda: ImageReference.parse(text)).reason


def _bad_ipv6_refused(v: Vector, ctx: Ctx) -> None:
    assert "IPv6" in str(refused(lambda: validate_registry(v.data["input"])))


def _long_path_refused(v: Vector, ctx: Ctx) -> None:
    assert len(v.data["input"]) > 255
    assert "longer than 255" in str(refused(lambda: ImageReference.parse(v.data["input"])))


def _unbracketed_ipv6_refused(v: Vector, ctx: Ctx) -> None:
    refused(lambda: scheme_of(v.data["domain"]), InvalidReferenceError)
    assert scheme_of(f"[{v.data['domain']}]") == "http"


def _private_https(v: Vector, ctx: Ctx) -> None:
    host = v.data.get("domain") or v.data["reg"]
    assert scheme_of(host) == "https"


def _unix_key_matches_nothing(v: Vector, ctx: Ctx) -> None:
    config = {"auths": {v.data["input"]: {"auth": "cGVlcjpzZWNyZXQ="}}}
    for host in ("unix:", "docker.io", "var", "localhost"):
        assert credentials_from_docker_config(host, config) is None


def _quoted_scheme_skipped(v: Vector, ctx: Ctx) -> None:
    assert challenges(v.data["in"]) == []


def _malformed_keeps_scheme(v: Vector, ctx: Ctx) -> None:
    assert challenges(v.data["in"]) == [("basic", {})]


def _wildcard_refused(v: Vector, ctx: Ctx) -> None:
    refused(lambda: Platform.parse(v.data["input"]), InvalidPlatformError)


def _empty_layers_accepted(v: Vector, ctx: Ctx) -> None:
    manifest = parse_manifest(v.data["document"].encode())
    assert isinstance(manifest, Manifest) and manifest.layers == []


def _unverifiable_digest_refused(v: Vector, ctx: Ctx) -> None:
    document = v.data["document"].encode()
    parse = Descriptor.from_dict if v.data["kind"] == "descriptor" else None
    error = refused(lambda: parse(json.loads(document)) if parse else parse_manifest(document))
    assert "unsupported algorithm" in str(error)


def _env_without_value_kept(v: Vector, ctx: Ctx) -> None:
    assert ImageConfig.from_bytes(v.data["document"].encode()).config.env_dict == {"foo": ""}


def _token68(v: Vector, ctx: Ctx) -> None:
    (challenge,) = parse_www_authenticate(f"Bearer {v.data['params']}")
    assert (challenge.token68, challenge.params) == ("foo", {})


_D = "distribution/reference@0965666a6ade:"
_G = "google/go-containerregistry@3f4ff3ca60f5:pkg/name/registry_test.go:"
_R = "regclient/regclient@725072f65f14:internal/auth/auth_test.go:"
_C = "containerd/platforms@09756f59cb1d:platforms_test.go:"
_S = "opencontainers/image-spec@13cff54902ec:schema/"
_PY = "docker/docker-py@002c035e45ed:tests/unit/auth_test.py::LoadConfigTest."

SHA512 = ("registry_nb accepts sha512 digests, which the OCI image-spec registers and "
          "hashlib verifies; the peer's test links no sha512 into go-digest")
SHORT_DIGEST = ("the peer's WithTag/WithDigest tables use a 37-digit 'sha256:' digest that "
                "distribution does not check there; ImageReference validates every digest "
                "(and with_tag drops a digest: a new tag names new content)")
IMAGE_ID = ("an ImageReference names an image in a repository; a bare image ID or digest "
            "(ParseAnyReference) is an engine-local name, refused or read as a repository")
BAD_IPV6 = ("validate_registry checks that the bracketed text is an IPv6 address, which the "
            "peer's comment says later validation should")
LONG_NAME = ("the peer's regular expression has no length limit; ImageReference also applies "
             "distribution's 255-character limit on the path")
UNBRACKETED = ("an unbracketed IPv6 address is ambiguous with a port and is refused as a "
               "registry; [::1] is loopback and gets plain HTTP")
PRIVATE = ("plain HTTP is used for loopback hosts only (or insecure=True), never silently for "
           "RFC 1918 addresses, so that credentials never cross a network in the clear")
UNIX_KEY = ("docker marks ConvertToHostname('unix:///var/run/docker.sock') == 'unix:' as a "
            "FIXME; registry_nb lets a key with no host match no registry")
QUOTED = ("RFC 7235 allows no quoted auth scheme or parameter name; the challenge is skipped")
MALFORMED = ("parse_www_authenticate never raises (the 401 still becomes a typed "
             "AuthenticationError): a malformed challenge keeps its scheme and loses the "
             "parameters it could not parse, so no half-read realm is ever used")
WILDCARD = ("containerd skips these itself (its Parse refuses wildcards); Platform.parse "
            "refuses them too")
EMPTY_LAYERS = ("an image manifest with no layers is read: the spec says layers SHOULD have "
                "one entry, and docker pushes metadata-only FROM scratch images with none")
ALGORITHMS = ("digests are checked against the algorithms registry_nb can verify (sha256, "
              "sha512), not only the schema's grammar: content with an unverifiable digest "
              "is refused")
ENV = ("a config Env entry without '=' is read (env_dict maps it to ''), as docker's engine "
       "reads it, so the image can still be audited")
LEGACY = ("the pre-2015 ~/.dockercfg formats (no 'auths' key, 'auth = ...' lines) are not "
          "read; registry_nb reads config.json as the docker CLI writes it")
TOKEN68 = ("RFC 7235: a lone token after the scheme is a token68 (kept in Challenge.token68), "
           "not a parameter with an empty value")

DEVIATIONS: dict[str, Deviation] = {
    f"{_D}reference_test.go:100": Deviation(SHA512, _sha512_accepted),
    **{f"{_D}reference_test.go:{n}": Deviation(SHORT_DIGEST, _short_digest_refused)
       for n in (602, 644, 649, 654, 659)},
    **{f"{_D}normalize_test.go:{n}": Deviation(IMAGE_ID, _id_is_no_reference)
       for n in (448, 453)},
    f"{_D}regexp_test.go:147": Deviation(BAD_IPV6, _bad_ipv6_refused),
    f"{_D}regexp_test.go:309": Deviation(LONG_NAME, _long_path_refused),
    f"{_G}233": Deviation(UNBRACKETED, _unbracketed_ipv6_refused),
    **{f"{_G}{n}": Deviation(PRIVATE, _private_https) for n in (242, 170, 176, 179)},
    "docker/cli@28f756087eea:cli/config/credentials/file_store_test.go:243":
        Deviation(UNIX_KEY, _unix_key_matches_nothing),
    f"{_R}77": Deviation(QUOTED, _quoted_scheme_skipped),
    **{f"{_R}{n}": Deviation(MALFORMED, _malformed_keeps_scheme) for n in (92, 98, 104)},
    **{f"{_C}{n}": Deviation(WILDCARD, _wildcard_refused) for n in (53, 63, 73)},
    f"{_S}manifest_test.go:170": Deviation(EMPTY_LAYERS, _empty_layers_accepted),
    **{f"{_S}{name}": Deviation(ALGORITHMS, _unverifiable_digest_refused)
       for name in ("manifest_test.go:187", *(f"descriptor_test.go:{n}"
                                              for n in (288, 299, 310, 321, 332, 354, 365)))},
    f"{_S}config_test.go:232": Deviation(ENV, _env_without_value_kept),
    f"{_PY}test_load_config_custom_config_env": Deviation(LEGACY, _nothing),
    f"{_PY}test_load_legacy_config": Deviation(LEGACY, _nothing),
    "google/go-containerregistry@0341a1bb5e57:pkg/v1/remote/transport/ping_test.go:43"
    "::TestChallengeParsing": Deviation(TOKEN68, _token68),
}


# ------------------------------------------------------------------ the cases

ALL: list[Vector] = [*file_vectors(), *cited_vectors()]


def test_vector_ids_are_unique() -> None:
    counts = Counter(v.where for v in ALL)
    assert [w for w, n in counts.items() if n > 1] == []


def test_every_deviation_names_a_vector() -> None:
    wheres = {v.where for v in ALL}
    assert sorted(set(DEVIATIONS) - wheres) == []


@pytest.mark.parametrize("vector", ALL, ids=[v.where for v in ALL])
def test_peer_vector(vector: Vector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = Ctx(tmp_path, monkeypatch)
    deviation = DEVIATIONS.get(vector.where)
    if deviation is None:
        vector.check(ctx)
        return
    with pytest.raises((AssertionError, RegistryError, pytest.fail.Exception)):
        vector.check(ctx)
    deviation.ours(vector, ctx)


def _readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert README_HEADING in text, f"README.md has no {README_HEADING!r} section"
    section = text.split(README_HEADING, 1)[1]
    following = re.search(r"^## ", section, re.M)
    return section[: following.start()] if following else section


def test_readme_lists_the_deviations() -> None:
    section = _readme_section()
    missing = [where for where in DEVIATIONS if f"`{where}`" not in section]
    assert missing == [], "deviations missing from the README section"
    listed = set(re.findall(r"`([^`]+@[0-9a-f]{12}:[^`]+)`", section))
    assert sorted(listed - set(DEVIATIONS)) == [], "README lists vectors that now agree"
    counts = counts_by_source()
    for source, (agree, deviate, total) in counts.items():
        assert f"| {source} | {agree} | {deviate} | {total} |" in section, source


def counts_by_source() -> dict[str, tuple[int, int, int]]:
    """(agree, deviate, total) per vectors file (``cited`` for the written-out tables)."""
    totals: Counter[str] = Counter(v.source for v in ALL)
    deviating: Counter[str] = Counter(v.source for v in ALL if v.where in DEVIATIONS)
    return {source: (totals[source] - deviating[source], deviating[source], totals[source])
            for source in totals}


if __name__ == "__main__":
    counts = counts_by_source()
    print("| source | agree | deviate | total |\n|---|---|---|---|")
    for source, (agree, deviate, total) in counts.items():
        print(f"| {source} | {agree} | {deviate} | {total} |")
    print(f"| all | {sum(c[0] for c in counts.values())} | "
          f"{sum(c[1] for c in counts.values())} | {sum(c[2] for c in counts.values())} |")
    sys.exit(0)
