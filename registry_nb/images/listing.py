"""A registry's images as readers see them: tag listings, images resolved by platform,
the blobs each tag needs.

:class:`RegistryImages` is the one read path over a registry for everything above this
layer (the facade's frames, audits, the browser): list tags into a :class:`TagListing`,
:meth:`~RegistryImages.resolve` a tag (open the image, select the platform, read its
config) into a :class:`~registry_nb.images.image.ResolvedImage`, and walk the blobs a
tag reaches. Manifests by digest and configs come from the client's content cache, so
a digest is fetched once however many readers ask.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import (
    AuthenticationError,
    CredentialsRefusedError,
    InvalidReferenceError,
    NotFoundError,
    RegistryError,
    RegistryHTTPError,
)
from ..oci import Index, Manifest, Platform
from ..oci.artifacts import DigestTag, split_digest_tags
from ..oci.reference import DOCKER_HUB, ImageReference, normalize_registry
from ..remote.distribution import RegistryClient
from .image import RegistryRepository, ResolvedImage, resolve_image

__all__ = ["full_name", "display_name", "reference_on", "TagEntry", "TagListing", "ReachableBlobs",
           "RegistryImages", "DEFAULT_WORKERS", "stores_for"]

#: Concurrent manifest/config fetches in a listing (one shared session; the transport
#: lowers it while the registry answers 429). 32 beat 16 and 8 by 5-15% (benchmarks/).
DEFAULT_WORKERS = 32

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class TagEntry:
    """One tag of a listing; ``tag`` is None when the repository's tags could not be
    listed, and ``error`` says why."""

    repository: str  # as the API names it (library/busybox on Docker Hub)
    tag: str | None
    error: str | None = None


@dataclass
class TagListing:
    """Tags of one repository, several, or the catalog, in listing order.

    What frames and audits take as their input; build one with
    :meth:`RegistryImages.listing`.
    """

    host: str
    entries: list[TagEntry] = field(default_factory=list)
    #: Digest tags (``sha256-<hex>`` fallback and cosign tags) left out of ``entries``,
    #: by repository: they name attachments, not images.
    digest_tags: dict[str, list[DigestTag]] = field(default_factory=dict)

    @property
    def hidden_digest_tags(self) -> int:
        """How many digest tags the listing left out."""
        return sum(len(tags) for tags in self.digest_tags.values())

    def keep_entries(self, entries: Iterable[TagEntry]) -> list[TagEntry]:
        """``entries`` without digest tags, which are remembered in :attr:`digest_tags`."""
        kept = []
        for entry in entries:
            _, hidden = split_digest_tags([entry.tag] if entry.tag else [])
            if hidden:
                self.digest_tags.setdefault(entry.repository, []).extend(hidden)
            else:
                kept.append(entry)
        return kept

    def __iter__(self) -> Iterator[TagEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def repositories(self) -> list[str]:
        """The repositories listed, in order, once each."""
        return list(dict.fromkeys(entry.repository for entry in self.entries))

    def tags_of(self, repository: str) -> set[str]:
        """The tags listed for one repository."""
        return {e.tag for e in self.entries if e.repository == repository and e.tag}


@dataclass(frozen=True)
class ReachableBlobs:
    """Everything a tag needs: the top digest, every blob with its size, and which of
    those blobs are manifests (the top one included)."""

    top: str
    sizes: dict[str, int]
    manifests: frozenset[str]


def full_name(host: str, name: str, tag: str | None = None) -> str:
    """The name docker uses: ``host/name[:tag]``, without a host for Docker Hub."""
    name = name.strip("/")
    base = name if host == DOCKER_HUB else f"{host}/{name}"
    return f"{base}:{tag}" if tag else base


def display_name(host: str, repository: str) -> str:
    """A repository as users write it (``busybox`` for Docker Hub's ``library/busybox``)."""
    if host == DOCKER_HUB and repository.startswith("library/"):
        return repository[len("library/"):]
    return repository


def reference_on(host: str, name: str, tag: str | None = None) -> ImageReference:
    """An image of registry ``host`` as people type it, parsed.

    ``name`` is ``repo``, ``repo:tag``, ``repo@sha256:…`` or any of those behind this
    registry's ``host/`` (``library/`` is added on Docker Hub); ``tag`` is a tag or a
    digest given apart. A tag (or digest) both in ``name`` and in ``tag`` must agree; a
    name behind another registry's host is refused: each raises
    :class:`InvalidReferenceError` saying so.
    """
    if not isinstance(name, str):
        raise InvalidReferenceError(repr(name), "repository", "must be a string")
    typed = ImageReference.parse(name.strip().strip("/"), default_registry=host)
    if typed.registry != host:
        raise InvalidReferenceError(
            name, "registry", f"is {typed.registry}, not this registry ({host})",
            hint=f"Name images of {host} as repo:tag, or use a ContainerRegistry for "
            f"{typed.registry} (copy_image moves images between registries).",
        )
    given_tag, given_digest = (None, tag) if tag and ":" in tag else (tag or None, None)
    for part, typed_value, given in (("tag", typed.tag, given_tag),
                                     ("digest", typed.digest, given_digest)):
        if typed_value and given and typed_value != given:
            raise InvalidReferenceError(
                f"{name} ({part} {given})", part,
                f"is given twice and the two disagree: {typed_value!r} in the name, "
                f"{given!r} as the {part} argument",
                hint=f"Give the {part} once, in the name or as the argument.",
            )
    return ImageReference(host, typed.repository, typed.tag or given_tag,
                          typed.digest or given_digest)


class RegistryImages:
    """The images of one registry, read through its API by ``workers`` threads at most."""

    def __init__(self, client: RegistryClient, *, workers: int = DEFAULT_WORKERS) -> None:
        self.client = client
        self.workers = workers

    def __repr__(self) -> str:
        return f"RegistryImages({self.host!r})"

    @property
    def host(self) -> str:
        """The registry host as users name it (``docker.io`` for Docker Hub)."""
        return self.client.host

    @property
    def is_docker_hub(self) -> bool:
        """True for Docker Hub (no catalog; official images under ``library/``)."""
        return self.host == DOCKER_HUB

    # ------------------------------------------------------------ names

    def full_name(self, name: str, tag: str | None = None) -> str:
        """The name docker uses for ``name[:tag]`` here (see :func:`full_name`)."""
        return full_name(self.host, name, tag)

    def reference(self, name: str, tag: str | None = None) -> ImageReference:
        """``name[:tag]`` on this registry, parsed (see :func:`reference_on`)."""
        return reference_on(self.host, name, tag)

    def api_repository(self, name: str) -> str:
        """The repository as the API names it."""
        return self.reference(name).repository

    def display_name(self, repository: str) -> str:
        """The repository as users write it (see :func:`display_name`)."""
        return display_name(self.host, repository)

    def repository(self, repository: str) -> RegistryRepository:
        """One repository as an image store and sink."""
        return RegistryRepository(self.client, repository)

    # ------------------------------------------------------------ listings

    def catalog(self) -> Iterator[str]:
        """Repository names from the catalog (all pages), with errors that say what to do."""
        if self.is_docker_hub:
            raise RegistryError(
                "Docker Hub has no catalog to list.",
                hint="Pass a repository, e.g. list_registry_images('library/busybox').",
            )
        hint = "Pass a repository to list only its tags."
        try:
            yield from self.client.catalog()
        except CredentialsRefusedError:
            raise  # a wrong password is not about the catalog: say only that
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"{self.host} refused to list its catalog (/v2/_catalog): {exc.message}",
                hint=f"{hint} Or use credentials allowed to list the catalog.",
            ) from exc
        except (RegistryHTTPError, NotFoundError) as exc:
            status = getattr(exc, "status", None)
            if isinstance(exc, NotFoundError) or status in (404, 405) or \
                    getattr(exc, "code", None) == "UNSUPPORTED":
                raise RegistryHTTPError(
                    f"{self.host} does not offer a catalog (/v2/_catalog).",
                    status=status, code=getattr(exc, "code", None), hint=hint,
                ) from exc
            raise

    def repository_names(self, repository: str | Iterable[str] | None = None,
                         limit: int | None = None) -> list[str]:
        """API names of one repository, several, or the catalog's (at most ``limit``)."""
        if repository is None:
            names = self.catalog()
            return list(names if limit is None else itertools.islice(names, limit))
        if isinstance(repository, str):
            return [self.api_repository(repository)]
        return [self.api_repository(name) for name in repository]

    def _entries(self, repository: str, junk: bool) -> list[TagEntry]:
        """A repository's tags, sorted; ``junk``: plus one entry per listed non-tag."""
        listed = self.client.list_tags(repository)
        out = [TagEntry(repository, tag) for tag in sorted(listed.names)]
        if junk:
            out.extend(TagEntry(repository, None, f"the registry listed {entry} among the tags "
                                f"of {repository}; it is not a tag, so it was skipped")
                       for entry in listed.skipped)
        return out

    def _entries_or_error(self, repository: str, junk: bool) -> list[TagEntry] | RegistryError:
        try:
            return self._entries(repository, junk)
        except NotFoundError:  # in the catalog but without tags (all deleted)
            return []
        except RegistryError as exc:
            return exc

    def listing(self, repository: str | Iterable[str] | None = None,
                limit: int | None = 100, *, keep_errors: bool = True,
                junk: bool = False) -> TagListing:
        """Tags of one repository (sorted), several, or every catalog repository.

        At most ``limit`` entries (None: all). Catalog repositories are listed
        ``workers`` at a time. ``keep_errors`` turns a catalog repository whose tags
        cannot be listed into one entry with ``error`` instead of raising; a repository
        named by the caller always raises. ``junk`` adds an entry (tag None, ``error``
        saying so) for each thing the registry listed that is not a tag (``null``, a
        digest: Nexus, Artifactory); they are skipped either way.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, not {limit}")
        listing = TagListing(self.host)
        if limit == 0:
            return listing
        if repository is not None:
            # several named repositories are listed ``workers`` at a time (one round
            # trip each, not one after the other); the first failure raises
            names = self.repository_names(repository)
            for found in self.map(lambda name: self._entries(name, junk), names):
                listing.entries.extend(listing.keep_entries(found))
            listing.entries = listing.entries[:limit]
            return listing
        names = self.catalog()
        while batch := list(itertools.islice(names, self.workers)):
            found_all = self.map(lambda name: self._entries_or_error(name, junk), batch)
            for name, found in zip(batch, found_all, strict=True):
                if isinstance(found, RegistryError):
                    if not keep_errors:
                        raise found
                    listing.entries.append(TagEntry(name, None, f"{type(found).__name__}: "
                                                                f"{found}"))
                else:
                    listing.entries.extend(listing.keep_entries(found))
                if limit is not None and len(listing) >= limit:
                    listing.entries = listing.entries[:limit]
                    return listing
        return listing

    # ------------------------------------------------------------ images

    def resolve(self, repository: str, reference: str,
                platform: Platform | str | None = None) -> ResolvedImage:
        """Open ``repository:reference``, select ``platform`` of an index, read its config."""
        return resolve_image(self.repository(repository), reference, platform)

    def blobs(self, repository: str, reference: str) -> ReachableBlobs:
        """Every blob the tag or digest needs (manifests, configs, layers, all platforms)."""
        top = self.client.get_manifest(repository, reference)
        sizes: dict[str, int] = {top.digest: top.size}
        manifests = {top.digest}
        pending: list[Manifest | Index] = [top]
        while pending:
            current = pending.pop()
            if isinstance(current, Index):
                for entry in current.manifests:
                    if entry.digest not in sizes:
                        sizes[entry.digest] = entry.size
                        manifests.add(entry.digest)
                        pending.append(self.client.get_manifest(repository, entry.digest))
            else:
                sizes[current.config.digest] = current.config.size
                sizes.update((layer.digest, layer.size) for layer in current.layers)
        return ReachableBlobs(top.digest, sizes, frozenset(manifests))

    def compressed_size(self, repository: str, digest: str) -> int:
        """Sum of the layer sizes of manifest ``digest`` (an index: its images' distinct
        layers, attestations left out)."""
        top = self.client.get_manifest(repository, digest)
        if isinstance(top, Manifest):
            return top.compressed_size
        layers: dict[str, int] = {}
        for entry in top.manifests:
            if entry.is_attestation:
                continue
            child = self.client.get_manifest(repository, entry.digest)
            if isinstance(child, Manifest):
                layers.update((layer.digest, layer.size) for layer in child.layers)
        return sum(layers.values())

    # ------------------------------------------------------------ concurrency

    def map(self, func: Callable[[_T], _R], items: list[_T]) -> list[_R]:
        """``func`` over ``items`` in order, on a bounded pool when there are several."""
        if len(items) <= 1:
            return [func(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items)),
                                thread_name_prefix="registry-nb") as pool:
            return list(pool.map(func, items))


@contextmanager
def stores_for(client: RegistryClient, workers: int = DEFAULT_WORKERS
               ) -> Iterator[Callable[[ImageReference], RegistryRepository]]:
    """``store(reference)``: a repository store on any registry, for one operation.

    ``client``'s registry is served by ``client``; each other host gets one client (with
    credentials from the docker config), closed when the block ends.
    """
    opened: dict[str, RegistryClient] = {}

    def store(ref: ImageReference) -> RegistryRepository:
        host = normalize_registry(ref.registry)
        if host == client.host:
            return RegistryRepository(client, ref.repository)
        if host not in opened:
            opened[host] = RegistryClient.connect(host, None, pool_size=max(workers, 4))
        return RegistryRepository(opened[host], ref.repository)

    try:
        yield store
    finally:
        for other in opened.values():
            other.close()
