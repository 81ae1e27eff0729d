"""Image references, registry hosts and digests.

Parsing follows the grammar of the CNCF distribution ``reference`` package::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ host [ ":" port ] "/" ] path-component ( "/" path-component )*
    host       := domain-component ( "." domain-component )* | "[" ipv6 "]"
    path-component := [a-z0-9]+ ( ( [._] | __ | [-]+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" encoded

with Docker's normalisation: the first component is a host only if it contains
``.`` or ``:``, is ``localhost``, has an upper-case letter (``Foo/bar`` is the
repository ``bar`` on the host ``Foo``, as distribution's ``splitDockerDomain`` has it)
or is a bracketed IPv6 address (hex and colons only: no zone, no embedded IPv4), and
is followed by ``/``; otherwise the image lives on Docker Hub (``docker.io``), where
one-component names get the ``library/`` prefix. The repository path (without the
host) is at most 255 characters, as distribution checks it. Digests are restricted to
the algorithms the OCI image-spec registers and this toolkit can verify: ``sha256``
(64 lowercase hex) and ``sha512`` (128 lowercase hex).

The canonical form (``str(ref)``) is ``registry/repository[:tag][@digest]``, and
``ImageReference.parse(str(ref)) == ref`` always holds.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from ..errors import InvalidReferenceError

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_API",
    "DOCKER_HUB_ALIASES",
    "DIGEST_ALGORITHMS",
    "NAME_TOTAL_LENGTH_MAX",
    "ImageReference",
    "normalize_registry",
    "is_loopback_host",
    "is_docker_hub",
    "sha256_digest",
    "digest_of",
    "parse_digest",
    "validate_digest",
    "validate_repository",
    "validate_tag",
    "validate_registry",
]

#: Canonical name of Docker Hub in references.
DOCKER_HUB = "docker.io"
#: Host that serves Docker Hub's registry HTTP API.
DOCKER_HUB_API = "registry-1.docker.io"
#: Host names that all mean Docker Hub (compared case-insensitively).
DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
#: Digest algorithms accepted, with the length of their lowercase hex encoding.
DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}
#: Longest allowed repository path, without the host (distribution/reference's limit).
NAME_TOTAL_LENGTH_MAX = 255
#: Longest allowed tag.
TAG_LENGTH_MAX = 128

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"  # distribution's ipv6address: no zone, no dotted IPv4
_HOST_RE = re.compile(rf"(?:{_DOMAIN_NAME}|(?P<ipv6>{_IPV6}))(?::(?P<port>[0-9]+))?")
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# OCI image-spec descriptor grammar (the algorithm is then checked against the registry).
_DIGEST_RE = re.compile(r"(?P<alg>[a-z0-9]+(?:[+._-][a-z0-9]+)*):(?P<enc>[a-zA-Z0-9=_-]+)")
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _fail(reference: str, part: str, reason: str) -> InvalidReferenceError:
    return InvalidReferenceError(reference, part, reason)


# ------------------------------------------------------------------ validators


def validate_tag(tag: str, *, reference: str | None = None) -> str:
    """Return ``tag`` if it is a valid tag, else raise ``InvalidReferenceError(part="tag")``."""
    ref = tag if reference is None else reference
    if not isinstance(tag, str):
        raise _fail(str(ref), "tag", "must be a string")
    if tag == "":
        raise _fail(ref, "tag", "is empty")
    if len(tag) > TAG_LENGTH_MAX:
        raise _fail(ref, "tag", f"is longer than {TAG_LENGTH_MAX} characters")
    if not _TAG_RE.fullmatch(tag):
        raise _fail(
            ref, "tag",
            f"{tag!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}} "
            "(letters, digits, '_', '.', '-'; not starting with '.' or '-')",
        )
    return tag


def parse_digest(text: str, *, reference: str | None = None) -> tuple[str, str]:
    """Split ``algorithm:hex`` into ``(algorithm, hex)`` after validating it.

    Only ``sha256`` (64 lowercase hex digits) and ``sha512`` (128) are accepted;
    anything else raises ``InvalidReferenceError(part="digest")``.
    """
    ref = text if reference is None else reference
    if not isinstance(text, str):
        raise _fail(str(ref), "digest", "must be a string")
    if text == "":
        raise _fail(ref, "digest", "is empty")
    match = _DIGEST_RE.fullmatch(text)
    if not match:
        raise _fail(ref, "digest", f"{text!r} must look like sha256:<64 lowercase hex digits>")
    algorithm, encoded = match["alg"], match["enc"]
    length = DIGEST_ALGORITHMS.get(algorithm)
    if length is None:
        known = ", ".join(sorted(DIGEST_ALGORITHMS))
        raise _fail(ref, "digest", f"uses the unsupported algorithm {algorithm!r} (use {known})")
    if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise _fail(
            ref, "digest",
            f"{algorithm} value must be exactly {length} lowercase hex digits "
            f"(got {len(encoded)} characters)",
        )
    return algorithm, encoded


def validate_digest(digest: str, *, reference: str | None = None) -> str:
    """Return ``digest`` if :func:`parse_digest` accepts it."""
    parse_digest(digest, reference=reference)
    return digest


def sha256_digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_of(data: bytes, like: str = "sha256:") -> str:
    """The digest of ``data`` with the algorithm of the digest ``like`` (sha256 or sha512)."""
    algorithm = like.split(":", 1)[0]
    if algorithm not in DIGEST_ALGORITHMS:
        raise _fail(like, "digest", f"uses the unsupported algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def validate_repository(name: str, *, reference: str | None = None) -> str:
    """Return ``name`` if it is a valid repository path (no host), else raise.

    Raises ``InvalidReferenceError(part="repository")``. The length limit on the
    full ``registry/repository`` name is checked by :class:`ImageReference`.
    """
    ref = name if reference is None else reference
    if not isinstance(name, str):
        raise _fail(str(ref), "repository", "must be a string")
    if name == "":
        raise _fail(ref, "repository", "is empty")
    if name != name.lower():
        raise _fail(ref, "repository", f"path {name!r} must be lowercase")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _fail(ref, "repository", f"is longer than {NAME_TOTAL_LENGTH_MAX} characters")
    for component in name.split("/"):
        if component == "":
            raise _fail(ref, "repository", f"path {name!r} has an empty component")
        if not _PATH_COMPONENT_RE.fullmatch(component):
            raise _fail(
                ref, "repository",
                f"component {component!r} must be lowercase letters and digits, "
                "separated by '.', '_', '__' or dashes (not at either end)",
            )
    return name


def validate_registry(host: str, *, reference: str | None = None) -> str:
    """Return ``host`` if it is a valid ``host[:port]`` (IPv6 in brackets), else raise.

    Raises ``InvalidReferenceError(part="registry")``.
    """
    ref = host if reference is None else reference
    if not isinstance(host, str):
        raise _fail(str(ref), "registry", "must be a string")
    if host == "":
        raise _fail(ref, "registry", "is empty")
    match = _HOST_RE.fullmatch(host)
    if not match:
        raise _fail(
            ref, "registry",
            f"{host!r} must be host[:port]: letters, digits, '-' and '.', or [IPv6]",
        )
    if match["ipv6"]:
        try:
            ipaddress.IPv6Address(match["ipv6"][1:-1])
        except ValueError:
            raise _fail(ref, "registry", f"{match['ipv6']!r} is not an IPv6 address") from None
    return host


def _looks_like_host(component: str) -> bool:
    """Docker's rule: a first component is a host with '.' or ':', as localhost, or upper case."""
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.startswith("[")
        or component != component.lower()
    )


# ------------------------------------------------------------------ host helpers


def _strip_host(text: str) -> str:
    """``host[:port]`` of a host or URL, without scheme, API path or trailing slash."""
    raw = text.strip()
    scheme = _SCHEME_RE.match(raw)
    if scheme:
        if scheme.group(0).lower() not in ("http://", "https://"):
            raise _fail(text, "registry", f"has the unsupported scheme {scheme.group(0)!r}")
        raw = raw[scheme.end() :]
    raw = raw.rstrip("/")
    for suffix in ("/v1", "/v2"):
        if raw.lower().endswith(suffix):
            raw = raw[: -len(suffix)].rstrip("/")
    return raw


def normalize_registry(url_or_host: str) -> str:
    """Turn a registry host or URL into ``host[:port]``.

    Accepts ``host[:port]``, ``http(s)://host[:port][/]`` (a trailing ``/v1/`` or
    ``/v2/`` API path is dropped) and any Docker Hub spelling; ``""`` and Docker Hub
    give ``"docker.io"``. The host is lowercased. Anything else (a path, bad
    characters) raises ``InvalidReferenceError(part="registry")``.
    """
    if url_or_host is None:
        return DOCKER_HUB
    if not isinstance(url_or_host, str):
        raise _fail(str(url_or_host), "registry", "must be a string")
    host = _strip_host(url_or_host)
    if host == "":
        return DOCKER_HUB
    if "/" in host:
        raise _fail(url_or_host, "registry", "must be host[:port] without a path")
    validate_registry(host, reference=url_or_host)
    host = host.lower()
    if host in DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    return host


def is_docker_hub(host: str) -> bool:
    """True for any spelling of Docker Hub (``docker.io``, ``index.docker.io``, ``""``...)."""
    try:
        return normalize_registry(host) == DOCKER_HUB
    except InvalidReferenceError:
        return False


def _host_name(host: str) -> str:
    """The host part of ``host[:port]`` (IPv6 brackets removed)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``), 127.0.0.0/8 and ``::1``, port or not."""
    if not isinstance(host, str):
        return False
    try:
        raw = _strip_host(host).split("/", 1)[0]
    except InvalidReferenceError:
        return False
    name = _host_name(raw).lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# ------------------------------------------------------------------ references


def _normalize(
    reference: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> tuple[str, str]:
    """Validate parts; return the normalised ``(registry, repository)``."""
    validate_registry(registry, reference=reference)
    if registry.lower() in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if isinstance(repository, str) and repository and "/" not in repository:
            repository = f"library/{repository}"
    elif not _looks_like_host(registry):
        raise _fail(
            reference, "registry",
            f"{registry!r} is not recognisable as a host: it needs a '.', a ':port' or an "
            "upper-case letter, or must be 'localhost'",
        )
    validate_repository(repository, reference=reference)
    if tag is not None:
        validate_tag(tag, reference=reference)
    if digest is not None:
        validate_digest(digest, reference=reference)
    return registry, repository


@dataclass(frozen=True)
class ImageReference:
    """A parsed, normalised image reference.

    Build one with :meth:`parse`; constructing directly validates and normalises
    the parts the same way (Docker Hub aliases become ``docker.io``, one-component
    Docker Hub repositories get ``library/``).
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        text = _compose(self.registry, self.repository, self.tag, self.digest)
        registry, repository = _normalize(
            text, self.registry, self.repository, self.tag, self.digest
        )
        object.__setattr__(self, "registry", registry)
        object.__setattr__(self, "repository", repository)

    @classmethod
    def parse(cls, text: str, *, default_registry: str = DOCKER_HUB) -> ImageReference:
        """Parse ``[host[:port]/]path[:tag][@digest]``.

        Names without a host go to ``default_registry`` (Docker Hub unless told
        otherwise). A bad reference raises :class:`InvalidReferenceError` naming
        the part at fault: ``"registry"``, ``"repository"``, ``"tag"`` or ``"digest"``.
        """
        if not isinstance(text, str):
            raise _fail(repr(text), "repository", "reference must be a string")
        if text == "":
            raise _fail(text, "repository", "is empty (the reference is an empty string)")
        name, at, digest_text = text.partition("@")
        digest = None
        if at:
            digest = validate_digest(digest_text, reference=text)
        tag = None
        colon = name.rfind(":")
        if colon != -1 and "/" not in name[colon + 1 :]:
            tag = validate_tag(name[colon + 1 :], reference=text)
            name = name[:colon]
        slash = name.find("/")
        if slash != -1 and _looks_like_host(name[:slash]):
            registry, repository = name[:slash], name[slash + 1 :]
        else:
            if _IDENTIFIER_RE.fullmatch(name) and tag is None and digest is None:
                raise _fail(
                    text, "repository",
                    "is a 64-character hex image ID, not a repository name",
                )
            registry = normalize_registry(default_registry)
            repository = name
        registry, repository = _normalize(text, registry, repository, tag, digest)
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def is_docker_hub(self) -> bool:
        """True when the image lives on Docker Hub."""
        return self.registry == DOCKER_HUB

    @property
    def api_host(self) -> str:
        """Host serving the registry HTTP API (``registry-1.docker.io`` for Docker Hub)."""
        return DOCKER_HUB_API if self.is_docker_hub else self.registry

    @property
    def identifier(self) -> str:
        """What to ask the manifest endpoint for: the digest, else the tag, else ``latest``."""
        return self.digest or self.tag or "latest"

    @property
    def familiar(self) -> str:
        """Docker's short form: ``busybox:latest``, ``org/app:1``, ``127.0.0.1:5000/demo:1``."""
        if self.is_docker_hub and not _looks_like_host(self.repository.split("/", 1)[0]):
            path = self.repository
            if path.startswith("library/") and path.count("/") == 1:
                path = path[len("library/") :]
        else:  # keep the host when the first component would read as one ("docker.io/a.b/c")
            path = self.name
        return _compose_tail(path, self.tag, self.digest)

    def with_tag(self, tag: str) -> ImageReference:
        """Same repository with ``tag`` (any digest is dropped: the tag names new content)."""
        return ImageReference(self.registry, self.repository, validate_tag(tag), None)

    def with_digest(self, digest: str) -> ImageReference:
        """Same repository and tag, pinned to ``digest``."""
        return ImageReference(self.registry, self.repository, self.tag, validate_digest(digest))

    def __str__(self) -> str:
        return _compose(self.registry, self.repository, self.tag, self.digest)


def _compose_tail(name: str, tag: str | None, digest: str | None) -> str:
    text = name
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    return text


def _compose(registry: object, repository: object, tag: object, digest: object) -> str:
    return _compose_tail(
        f"{registry}/{repository}",
        None if tag is None else str(tag),
        None if digest is None else str(digest),
    )
