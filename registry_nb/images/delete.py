"""Deleting tags and manifests, each registry's way, without taking more than was named.

Registries differ (see ``REGISTRIES.md``): Quay and GitLab remove a tag alone
(``DELETE /v2/<name>/manifests/<tag>``; GitLab also ``/v2/<name>/tags/reference/<tag>``);
CNCF distribution deletes only by digest, which removes every tag on it, and only with
``storage.delete.enabled`` (405 ``UNSUPPORTED`` otherwise); Docker Hub deletes a digest
only once no tag names it (403 otherwise, 405 for a tag); Harbor refuses a tag; GHCR
refuses every delete. :func:`delete_tag` tries the tag delete first and falls back to the
digest, refusing when other tags share it; :func:`delete_manifest` refuses a manifest
that an index of the same repository still lists. ``force=True`` does both anyway and
says what went. Every result and refusal reminds how distribution frees the space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from ..errors import (
    AuthenticationError,
    DeletionRefusedError,
    ManifestNotFoundError,
    NotFoundError,
    RegistryError,
    UnsupportedOperationError,
)
from ..oci import Index
from ..oci.mediatypes import INDEX_MEDIA_TYPES
from ..oci.reference import parse_digest
from ..remote.deletes import send_delete
from ..remote.distribution import RegistryClient
from ..remote.responses import error_codes, error_from_response

__all__ = ["GC_REMINDER", "RepositoryState", "repository_state", "delete_tag",
           "delete_manifest", "delete_digest"]

#: Said with every deletion: the registry's bytes stay until its garbage collection.
GC_REMINDER = (
    "A CNCF distribution registry frees the space only after its garbage collection: "
    "make the registry read-only (storage.maintenance.readonly.enabled: true) or stop it, "
    "run `registry garbage-collect CONFIG.yml` (add --delete-untagged to drop manifests "
    "no tag names), then start it again."
)

Mapper = Callable[[Callable[[Any], Any], list[Any]], list[Any]]

#: Statuses and codes with which a registry says "not this way" to a tag DELETE.
_REFUSED_STATUSES = frozenset({400, 404, 405})
_REFUSED_CODES = frozenset({"UNSUPPORTED", "DIGEST_INVALID", "MANIFEST_UNKNOWN",
                            "TAG_INVALID", "UNKNOWN"})


@dataclass
class RepositoryState:
    """One repository as seen at one moment: which digest each tag names, and which
    manifests each index lists."""

    repository: str
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest
    media_types: dict[str, str | None] = field(default_factory=dict)  # digest -> type
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)  # index -> digests
    errors: dict[str, str] = field(default_factory=dict)  # tag -> why it could not be read

    def tags_of(self, digest: str) -> list[str]:
        """The tags naming ``digest``, sorted."""
        return sorted(t for t, d in self.tags.items() if d == digest)

    def indexes_listing(self, digest: str) -> list[str]:
        """Digests of the indexes here whose manifests include ``digest``."""
        return sorted(i for i, kids in self.children.items() if digest in kids and i != digest)

    def describe_indexes(self, digests: list[str]) -> str:
        """``sha256:… (tags a, b)`` for each index, joined."""
        return "; ".join(f"{d} (tags {', '.join(self.tags_of(d)) or 'none'})" for d in digests)

    def forget(self, digest: str) -> None:
        """Drop ``digest`` and its tags (after it was deleted)."""
        self.tags = {t: d for t, d in self.tags.items() if d != digest}
        self.children.pop(digest, None)


def _serial(func: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return [func(i) for i in items]


def repository_state(client: RegistryClient, repository: str, *,
                     mapper: Mapper = _serial) -> RepositoryState:
    """Read every tag's digest (HEAD, ``mapper`` runs them concurrently) and every index.

    A repository without tags (or unknown) gives an empty state. A tag that cannot be
    read is recorded in ``errors``; callers that delete must not guess around it.
    """
    state = RepositoryState(repository)
    try:
        tags = sorted(client.tags(repository))
    except NotFoundError:
        return state

    def head(tag: str) -> tuple[str, str | None, str | None, str | None]:
        try:
            found = client.head_manifest(repository, tag)
            if found is None:
                return tag, None, None, "the tag disappeared while it was read"
            digest, media_type = found.digest, found.media_type
            if digest is None:  # a registry that sends no Docker-Content-Digest
                manifest = client.get_manifest(repository, tag)
                digest, media_type = manifest.digest, manifest.media_type
            return tag, digest, media_type, None
        except RegistryError as exc:
            return tag, None, None, f"{type(exc).__name__}: {exc}"

    for tag, digest, media_type, error in mapper(head, tags):
        if error is not None or digest is None:
            state.errors[tag] = error or "no digest"
            continue
        state.tags[tag] = digest
        state.media_types[digest] = media_type
    indexes = sorted({d for d, m in state.media_types.items() if m in INDEX_MEDIA_TYPES})

    def children(digest: str) -> tuple[str, tuple[str, ...]]:
        index = client.get_manifest(repository, digest)
        return digest, tuple(e.digest for e in index.manifests) if isinstance(index, Index) \
            else ()

    state.children.update(mapper(children, indexes))
    return state


def _full(client: RegistryClient, repository: str, digest: str) -> str:
    return f"{client.host}/{repository}@{digest}"


def _unsupported(client: RegistryClient, repository: str, what: str,
                 cause: RegistryError) -> UnsupportedOperationError:
    host = client.host
    if host == "ghcr.io":
        instead = ("GHCR deletes nothing through the registry API: delete the package "
                   "version on github.com or with the GitHub REST API "
                   "(DELETE /user/packages/container/<name>/versions/<id>).")
    elif host == "docker.io":
        instead = ("Docker Hub deletes a manifest by digest only once no tag names it: "
                   "delete the tags on hub.docker.com (or with Hub's API) first.")
    else:
        instead = ("A CNCF distribution registry deletes only with `storage: {delete: "
                   "{enabled: true}}` in its config (restart it after the change); other "
                   "registries delete through their own UI or API.")
    return UnsupportedOperationError(f"{host} does not allow {what} in {repository} "
                                     f"({cause.message})", hint=f"{instead} {GC_REMINDER}")


def _send_delete(client: RegistryClient, path: str, repository: str) -> requests.Response:
    return send_delete(client.transport, path, repository)


def delete_digest(client: RegistryClient, repository: str, digest: str) -> bool:
    """DELETE ``repository@digest``; True when deleted, False when it was already gone.

    A refusal of the operation raises :class:`UnsupportedOperationError` saying what
    the registry allows instead. When the answer is lost (the transport retried and the
    registry says the manifest is unknown), a HEAD decides whether it went.
    """
    parse_digest(digest)
    what = f"delete the manifest {repository}@{digest}"
    response = _send_delete(client, f"/v2/{repository}/manifests/{digest}", repository)
    if response.status_code < 400:
        response.close()
        return True
    error = error_from_response(response, what)
    if isinstance(error, ManifestNotFoundError) and \
            client.head_manifest(repository, digest) is None:
        return False
    if response.status_code == 405 or getattr(error, "code", None) == "UNSUPPORTED" or (
            isinstance(error, AuthenticationError) and response.status_code == 403
            and client.host == "docker.io"):
        raise _unsupported(client, repository, "deleting manifests", error)
    raise error


def _deleted(client: RegistryClient, repository: str, digest: str, tags: list[str],
             **extra: Any) -> dict[str, Any]:
    return {"status": "deleted", "image": _full(client, repository, digest), "digest": digest,
            "tags_deleted": tags, **extra, "note": GC_REMINDER}


def delete_manifest(client: RegistryClient, repository: str, digest: str, *,
                    force: bool = False, state: RepositoryState | None = None,
                    mapper: Mapper = _serial) -> dict[str, Any]:
    """Delete the manifest ``digest`` and (on distribution) every tag on it.

    Refused with :class:`DeletionRefusedError` while an index of the repository lists it,
    unless ``force``. Returns ``{"status": "deleted", "image", "digest", "tags_deleted",
    "indexes_still_listing", "note"}``.
    """
    parse_digest(digest)
    if client.head_manifest(repository, digest) is None:
        raise ManifestNotFoundError(f"{client.host} has no manifest {digest} in {repository}.",
                                    hint="List the repository's tags and digests "
                                    "(registry_images_frame) and check the digest.")
    state = state or repository_state(client, repository, mapper=mapper)
    parents = state.indexes_listing(digest)
    if parents and not force:
        raise DeletionRefusedError(
            f"the manifest {digest} in {repository} is listed by the index "
            f"{state.describe_indexes(parents)}: deleting it would break that index",
            hint="Delete the index first, or pass force=True to delete this manifest anyway "
            f"(the index stays, with a platform that cannot be pulled). {GC_REMINDER}",
        )
    tags = state.tags_of(digest)
    children = list(state.children.get(digest, ()))
    delete_digest(client, repository, digest)
    state.forget(digest)
    # an index's platform manifests stay, untagged, until garbage-collected
    return _deleted(client, repository, digest, tags, indexes_still_listing=parents,
                    children_left=children)


def _tag_refused(response: requests.Response) -> bool:
    """True when a tag DELETE was answered "not this way" (and nothing was deleted)."""
    if response.status_code not in _REFUSED_STATUSES:
        return False
    codes = set(error_codes(response))
    return not codes or bool(codes & _REFUSED_CODES)


def delete_tag(client: RegistryClient, repository: str, tag: str, *, force: bool = False,
               mapper: Mapper = _serial) -> dict[str, Any]:
    """Delete ``repository:tag``: the tag alone where the registry can, else its manifest.

    A registry that cannot remove a tag alone (distribution, Harbor, Docker Hub) deletes
    the manifest by digest, which takes every tag on it: when other tags share the
    digest this is refused with :class:`UnsupportedOperationError` naming them, unless
    ``force`` (the result's ``tags_deleted`` then lists them). Returns ``{"status":
    "deleted", "image", "digest", "tags_deleted", "method" ("tag" or "digest"), "note"}``.
    """
    found = client.head_manifest(repository, tag)
    if found is None:
        raise ManifestNotFoundError(f"{client.host} has no tag {tag!r} in {repository}.",
                                    hint="List the repository's tags (registry_images_frame) "
                                    "and check the name.")
    digest = found.digest or client.get_manifest(repository, tag).digest
    for path in (f"/v2/{repository}/manifests/{tag}", f"/v2/{repository}/tags/reference/{tag}"):
        response = _send_delete(client, path, repository)
        if response.status_code < 400:
            response.close()
            return _deleted(client, repository, digest, [tag], method="tag")
        if not _tag_refused(response):
            raise error_from_response(response, f"delete the tag {repository}:{tag}")
    state = repository_state(client, repository, mapper=mapper)
    if state.tags.get(tag) != digest:
        raise DeletionRefusedError(
            f"the tag {repository}:{tag} moved while it was being deleted "
            f"(it named {digest}); nothing was deleted",
            hint="Look at the repository again and repeat the delete if it still applies.")
    others = [t for t in state.tags_of(digest) if t != tag]
    if others and not force:
        raise UnsupportedOperationError(
            f"{client.host} cannot delete the tag {tag!r} alone: it deletes by digest, and "
            f"{digest} is also tagged {', '.join(others)} in {repository}",
            hint="Pass force=True to delete the manifest with all these tags, or push the "
            f"other tags elsewhere first; nothing was deleted. {GC_REMINDER}",
        )
    result = delete_manifest(client, repository, digest, force=force, state=state)
    return {**result, "method": "digest"}
