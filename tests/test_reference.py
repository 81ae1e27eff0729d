"""Tests of registry_nb.reference: parsing, normalisation, host and digest helpers."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from registry_nb.errors import InvalidReferenceError, RegistryError
from registry_nb.oci.reference import (
    ImageReference,
    is_docker_hub,
    is_loopback_host,
    normalize_registry,
    parse_digest,
    sha256_digest,
    validate_registry,
    validate_repository,
    validate_tag,
)

D256 = "sha256:" + "a" * 64
D512 = "sha512:" + "0123456789abcdef" * 8

# text -> (registry, repository, tag, digest)
VALID = [
    ("busybox", ("docker.io", "library/busybox", None, None)),
    ("busybox:latest", ("docker.io", "library/busybox", "latest", None)),
    ("library/busybox", ("docker.io", "library/busybox", None, None)),
    ("docker.io/busybox", ("docker.io", "library/busybox", None, None)),
    ("docker.io/library/busybox:1.36", ("docker.io", "library/busybox", "1.36", None)),
    ("index.docker.io/busybox", ("docker.io", "library/busybox", None, None)),
    ("registry-1.docker.io/org/app:1", ("docker.io", "org/app", "1", None)),
    ("registry.hub.docker.com/org/app", ("docker.io", "org/app", None, None)),
    ("org/app:1", ("docker.io", "org/app", "1", None)),
    ("localhost", ("docker.io", "library/localhost", None, None)),
    ("localhost/foo", ("localhost", "foo", None, None)),
    ("localhost:5000/foo:bar", ("localhost:5000", "foo", "bar", None)),
    ("localhost:5000", ("docker.io", "library/localhost", "5000", None)),
    ("127.0.0.1:5000/demo:1", ("127.0.0.1:5000", "demo", "1", None)),
    (f"127.0.0.1:5000/a/b@{D256}", ("127.0.0.1:5000", "a/b", None, D256)),
    (f"ghcr.io/org/app:v1.2.3@{D256}", ("ghcr.io", "org/app", "v1.2.3", D256)),
    (f"quay.io/org/app@{D512}", ("quay.io", "org/app", None, D512)),
    ("[::1]:5000/demo:1", ("[::1]:5000", "demo", "1", None)),
    ("[2001:db8::1]/x/y", ("[2001:db8::1]", "x/y", None, None)),
    ("Registry.Example.COM:443/app", ("Registry.Example.COM:443", "app", None, None)),
    ("example.com/a.b_c__d-e---f/g", ("example.com", "a.b_c__d-e---f/g", None, None)),
    ("example.com/app:_x", ("example.com", "app", "_x", None)),
    ("example.com/app:UPPER.case-1", ("example.com", "app", "UPPER.case-1", None)),
    ("foo.bar/baz", ("foo.bar", "baz", None, None)),
    ("foo_bar", ("docker.io", "library/foo_bar", None, None)),
    ("a/b/c/d/e/f", ("docker.io", "a/b/c/d/e/f", None, None)),
]


@pytest.mark.parametrize("text, parts", VALID, ids=[t for t, _ in VALID])
def test_parse_valid(text: str, parts: tuple[str, str, str | None, str | None]) -> None:
    ref = ImageReference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == parts
    assert ImageReference.parse(str(ref)) == ref
    assert ImageReference.parse(ref.familiar) == ref


# text -> part named in the error
INVALID = [
    ("", "repository"),
    ("Foo/Bar", "repository"),  # the host Foo, the path Bar
    ("foo/Bar", "repository"),
    ("ghcr.io/Org/app", "repository"),
    ("a:b:c", "repository"),
    ("foo//bar", "repository"),
    ("foo/", "repository"),
    ("/foo", "repository"),
    ("-foo", "repository"),
    ("foo-", "repository"),
    ("foo..bar", "repository"),
    ("foo___bar", "repository"),
    ("foo bar", "repository"),
    ("a" * 64, "repository"),  # an image ID, not a name
    ("example.com/" + "a" * 256, "repository"),  # the path alone is over 255
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "registry"),  # no dotted IPv4 in brackets
    ("[fe80::1%eth0]:5000/debian", "registry"),
    ("@" + D256, "repository"),
    (":tag", "repository"),
    ("foo:", "tag"),
    ("foo:.bad", "tag"),
    ("foo:-bad", "tag"),
    ("foo:" + "a" * 129, "tag"),
    ("foo:t@g", "digest"),
    ("foo@", "digest"),
    ("foo@sha256:abc", "digest"),
    ("foo@sha256:" + "A" * 64, "digest"),
    ("foo@sha256:" + "a" * 65, "digest"),
    ("foo@sha512:" + "a" * 64, "digest"),
    ("foo@md5:" + "a" * 32, "digest"),
    ("foo@" + "a" * 64, "digest"),
    (f"foo@{D256}@{D256}", "digest"),
    ("exa_mple.com/foo", "registry"),
    ("-example.com/foo", "registry"),
    ("example.com:port/foo", "registry"),
    ("[zz::1]:5000/foo", "registry"),
    ("[::1", "repository"),
    ("[::1]", "tag"),
]


@pytest.mark.parametrize("text, part", INVALID, ids=[t[:40] for t, _ in INVALID])
def test_parse_invalid(text: str, part: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        ImageReference.parse(text)
    assert info.value.part == part
    assert info.value.reference == text
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RegistryError)


def test_uppercase_path_error_says_lowercase() -> None:
    with pytest.raises(InvalidReferenceError, match="must be lowercase"):
        ImageReference.parse("foo/Bar")


def test_uppercase_first_component_is_a_host() -> None:
    # distribution's splitDockerDomain: an upper-case first component is a domain
    ref = ImageReference.parse("Foo/bar:1")
    assert (ref.registry, ref.repository, ref.tag) == ("Foo", "bar", "1")
    assert ref.familiar == "Foo/bar:1" and ImageReference.parse(str(ref)) == ref
    assert ImageReference.parse("LOCALDOMAIN/library/debian").registry == "LOCALDOMAIN"


def test_path_limit_excludes_the_host() -> None:
    ref = ImageReference.parse("example.com/" + "a" * 255 + ":tag")
    assert len(ref.repository) == 255


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidReferenceError):
        ImageReference.parse(None)  # type: ignore[arg-type]


def test_properties_docker_hub() -> None:
    ref = ImageReference.parse("busybox:latest")
    assert str(ref) == "docker.io/library/busybox:latest"
    assert ref.familiar == "busybox:latest"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.is_docker_hub
    assert ref.identifier == "latest"
    assert ref.name == "docker.io/library/busybox"
    assert ImageReference.parse("busybox").identifier == "latest"
    assert str(ImageReference.parse("busybox")) == "docker.io/library/busybox"


def test_properties_private() -> None:
    ref = ImageReference.parse(f"127.0.0.1:5000/demo:1@{D256}")
    assert ref.familiar == f"127.0.0.1:5000/demo:1@{D256}"
    assert ref.api_host == "127.0.0.1:5000"
    assert not ref.is_docker_hub
    assert ref.identifier == D256
    assert ImageReference.parse("org/app:1").familiar == "org/app:1"
    assert ImageReference.parse("docker.io/library/a/b").familiar == "library/a/b"
    # a Docker Hub path whose first component looks like a host keeps docker.io
    assert ImageReference.parse("docker.io/a.b/c:1").familiar == "docker.io/a.b/c:1"


def test_with_tag_and_digest() -> None:
    ref = ImageReference.parse(f"ghcr.io/org/app:1@{D256}")
    assert str(ref.with_tag("2")) == "ghcr.io/org/app:2"
    assert str(ref.with_tag("2").with_digest(D512)) == f"ghcr.io/org/app:2@{D512}"
    with pytest.raises(InvalidReferenceError) as info:
        ref.with_tag("bad tag")
    assert info.value.part == "tag"
    with pytest.raises(InvalidReferenceError) as info:
        ref.with_digest("sha256:nope")
    assert info.value.part == "digest"


def test_default_registry() -> None:
    ref = ImageReference.parse("demo:1", default_registry="http://127.0.0.1:5000/")
    assert str(ref) == "127.0.0.1:5000/demo:1"
    assert str(ImageReference.parse("demo", default_registry="")) == "docker.io/library/demo"
    # an explicit host wins over the default
    assert ImageReference.parse("ghcr.io/a/b", default_registry="127.0.0.1:5000").registry == (
        "ghcr.io"
    )


def test_direct_construction_normalises_and_validates() -> None:
    ref = ImageReference("index.docker.io", "busybox", "1")
    assert ref == ImageReference.parse("busybox:1")
    with pytest.raises(InvalidReferenceError) as info:
        ImageReference("example", "foo")
    assert info.value.part == "registry"
    with pytest.raises(InvalidReferenceError) as info:
        ImageReference("ghcr.io", "Foo")
    assert info.value.part == "repository"
    with pytest.raises(InvalidReferenceError) as info:
        ImageReference("ghcr.io", "foo", digest="sha256:1")
    assert info.value.part == "digest"


def test_frozen() -> None:
    ref = ImageReference.parse("busybox")
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]


@pytest.mark.parametrize("given_, expected", [
    ("127.0.0.1:5000", "127.0.0.1:5000"),
    ("http://127.0.0.1:5000", "127.0.0.1:5000"),
    ("https://ghcr.io/", "ghcr.io"),
    ("HTTPS://GHCR.IO", "ghcr.io"),
    ("  localhost:5000  ", "localhost:5000"),
    ("docker.io", "docker.io"),
    ("index.docker.io", "docker.io"),
    ("registry.hub.docker.com", "docker.io"),
    ("registry-1.docker.io", "docker.io"),
    ("https://index.docker.io/v1/", "docker.io"),
    ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
    ("", "docker.io"),
    ("[::1]:5000", "[::1]:5000"),
])
def test_normalize_registry(given_: str, expected: str) -> None:
    assert normalize_registry(given_) == expected


@pytest.mark.parametrize("bad", ["ftp://host", "host/path", "ho st", "exa_mple.com", "[::1"])
def test_normalize_registry_rejects(bad: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        normalize_registry(bad)
    assert info.value.part == "registry"


@pytest.mark.parametrize("host, expected", [
    ("localhost", True), ("localhost:5000", True), ("LOCALHOST:5000", True),
    ("127.0.0.1", True), ("127.0.0.1:5000", True), ("127.255.1.2:80", True),
    ("::1", True), ("[::1]", True), ("[::1]:5000", True), ("http://127.0.0.1:5000/", True),
    ("[::ffff:127.0.0.1]:5000", True),
    ("128.0.0.1", False), ("10.0.0.1:5000", False), ("ghcr.io", False),
    ("docker.io", False), ("localhost.example.com", False), ("", False), ("[::2]:5000", False),
])
def test_is_loopback_host(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


@pytest.mark.parametrize("host, expected", [
    ("docker.io", True), ("index.docker.io", True), ("registry-1.docker.io", True),
    ("registry.hub.docker.com", True), ("https://index.docker.io/v1/", True), ("", True),
    ("ghcr.io", False), ("127.0.0.1:5000", False), ("docker.io.evil.com", False),
    ("not a host", False),
])
def test_is_docker_hub(host: str, expected: bool) -> None:
    assert is_docker_hub(host) is expected


def test_sha256_digest() -> None:
    assert sha256_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert sha256_digest(b"abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()


def test_parse_digest() -> None:
    assert parse_digest(D256) == ("sha256", "a" * 64)
    assert parse_digest(D512) == ("sha512", "0123456789abcdef" * 8)
    for bad in ["", "sha256", "sha256:", ":" + "a" * 64, "SHA256:" + "a" * 64,
                "sha256:" + "g" * 64, "blake3:" + "a" * 64]:
        with pytest.raises(InvalidReferenceError) as info:
            parse_digest(bad)
        assert info.value.part == "digest"


def test_validators() -> None:
    assert validate_repository("a/b-c") == "a/b-c"
    assert validate_tag("v1") == "v1"
    assert validate_registry("[::1]:5000") == "[::1]:5000"
    with pytest.raises(InvalidReferenceError, match="lowercase"):
        validate_repository("A")
    with pytest.raises(InvalidReferenceError):
        validate_tag("")


# ------------------------------------------------------------------ properties

_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_sep = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    first = draw(_alnum)
    rest = draw(st.lists(st.tuples(_sep, _alnum), max_size=3))
    return first + "".join(s + a for s, a in rest)


paths = st.lists(path_components(), min_size=1, max_size=4).map("/".join)
_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_port = st.integers(min_value=1, max_value=65535).map(str)


@st.composite
def registries(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["fixed", "domain", "domain_port", "single_port", "ipv4"]))
    if kind == "fixed":
        return draw(st.sampled_from([
            "docker.io", "index.docker.io", "localhost", "localhost:5000", "[::1]:5000",
            "[::1]", "[2001:db8::5]:443", "ghcr.io", "quay.io", "registry.hub.docker.com",
        ]))
    if kind == "ipv4":
        octets = draw(st.lists(st.integers(0, 255), min_size=4, max_size=4))
        return ".".join(map(str, octets)) + draw(st.one_of(st.just(""), _port.map(":".__add__)))
    if kind == "single_port":
        return f"{draw(_label)}:{draw(_port)}"
    labels = draw(st.lists(_label, min_size=2, max_size=4))
    host = ".".join(labels)
    return f"{host}:{draw(_port)}" if kind == "domain_port" else host


tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
_hex = "0123456789abcdef"
digests = st.one_of(
    st.text(alphabet=_hex, min_size=64, max_size=64).map("sha256:".__add__),
    st.text(alphabet=_hex, min_size=128, max_size=128).map("sha512:".__add__),
)


@settings(max_examples=400)
@given(registries(), paths, st.none() | tags, st.none() | digests, st.booleans())
def test_valid_references_round_trip(
    registry: str, path: str, tag: str | None, digest: str | None, explicit: bool
) -> None:
    hostlike = "." in path.split("/")[0]  # "a.b/c" alone names host a.b
    name = f"{registry}/{path}" if explicit or hostlike or registry != "docker.io" else path
    assume(len(f"{registry}/library/{path}") <= 255)
    text = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = ImageReference.parse(text)
    assert ref.tag == tag
    assert ref.digest == digest
    assert ImageReference.parse(str(ref)) == ref
    assert ImageReference.parse(ref.familiar) == ref
    assert str(ImageReference.parse(str(ref))) == str(ref)
    if is_docker_hub(registry):
        assert ref.registry == "docker.io"
        assert ref.repository == (path if "/" in path else f"library/{path}")
    else:
        assert (ref.registry, ref.repository) == (registry, path)


@settings(max_examples=300)
@given(registries(), paths, st.text(max_size=140))
def test_invalid_tags_name_the_tag(registry: str, path: str, tag: str) -> None:
    assume(not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag))
    assume(not any(c in tag for c in "/:@"))
    with pytest.raises(InvalidReferenceError) as info:
        ImageReference.parse(f"{registry}/{path}:{tag}")
    assert info.value.part == "tag"


_bad_digests = st.one_of(
    st.text(max_size=150),
    st.text(alphabet=_hex, max_size=140).map("sha256:".__add__),
    st.text(alphabet=_hex + "ABCDEFg", min_size=64, max_size=64).map("sha256:".__add__),
    st.text(alphabet=_hex, min_size=64, max_size=64).map(lambda h: "sha256:" + h + "\n"),
    st.text(alphabet=_hex, min_size=64, max_size=64).map("md5:".__add__),
)


@settings(max_examples=300)
@given(registries(), paths, _bad_digests)
def test_invalid_digests_name_the_digest(registry: str, path: str, digest: str) -> None:
    assume(not re.fullmatch(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}", digest))
    with pytest.raises(InvalidReferenceError) as info:
        ImageReference.parse(f"{registry}/{path}@{digest}")
    assert info.value.part == "digest"
    with pytest.raises(InvalidReferenceError):
        parse_digest(digest)


_path_re = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)"
                      r"[a-z0-9]+)*)*")


@settings(max_examples=300)
@given(st.text(alphabet="abcXYZ09._-/ é\t", min_size=0, max_size=30))
def test_invalid_paths_name_the_repository(path: str) -> None:
    assume(not _path_re.fullmatch(path))
    with pytest.raises(InvalidReferenceError) as info:
        ImageReference.parse(f"example.com/{path}")
    assert info.value.part == "repository"


@settings(max_examples=200)
@given(st.text(alphabet="abc019.-_Z!é", min_size=1, max_size=20), paths)
def test_invalid_hosts_name_the_registry(host: str, path: str) -> None:
    host = host + ".com"
    try:
        validate_registry(host)
    except InvalidReferenceError:
        pass
    else:
        assume(False)
    with pytest.raises(InvalidReferenceError) as info:
        ImageReference.parse(f"{host}/{path}")
    assert info.value.part == "registry"


@settings(max_examples=1000)
@given(st.text())
def test_parse_arbitrary_text(text: str) -> None:
    try:
        ref = ImageReference.parse(text)
    except InvalidReferenceError as exc:
        assert exc.part in {"registry", "repository", "tag", "digest"}
        return
    assert ImageReference.parse(str(ref)) == ref


@settings(max_examples=300)
@given(st.text(alphabet="abc:/@.[]1-_A", max_size=40))
def test_parse_reference_like_text(text: str) -> None:
    try:
        ref = ImageReference.parse(text)
    except InvalidReferenceError as exc:
        assert exc.part in {"registry", "repository", "tag", "digest"}
        return
    assert ImageReference.parse(str(ref)) == ref
    assert ImageReference.parse(ref.familiar) == ref


@given(st.text())
def test_helpers_never_crash(text: str) -> None:
    assert isinstance(is_loopback_host(text), bool)
    assert isinstance(is_docker_hub(text), bool)
    try:
        assert isinstance(normalize_registry(text), str)
    except InvalidReferenceError as exc:
        assert exc.part == "registry"
