"""What is attached to an image on a registry, attaching more, and carrying it along.

Discovery reads all four mechanisms (:mod:`registry_nb.oci.artifacts`): the referrers
API, the ``<alg>-<hex>`` fallback tag (read only where the API is missing), cosign's
``.sig``/``.att``/``.sbom`` tags and the attestation manifests inside an index; every
child is classified from its own manifest, never from the entry that lists it.

Attaching puts the manifest (with its ``subject``) by digest; where the registry has no
referrers API the fallback index is read, merged (``oci.artifacts.merge_referrers``,
which keeps every entry other writers put there), written, and read back: an entry
missing after the write (a writer in between) is merged in again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import NotFoundError, RegistryError
from ..oci import OCI_INDEX, Index, Manifest
from ..oci.artifacts import (
    COSIGN_TAG,
    FALLBACK_TAG,
    IN_INDEX,
    REFERRERS_API,
    Classification,
    classify_manifest,
    cosign_tag,
    fallback_tag,
    in_index_attestations,
    merge_referrers,
    parse_referrers_index,
    referrer_descriptor,
)
from ..oci.manifest import Descriptor
from ..remote.distribution import RegistryClient

__all__ = ["Attachment", "discover", "attach", "copy_referrers", "referrers_supported",
           "ATTACH_ATTEMPTS"]

log = logging.getLogger(__name__)

#: Read-modify-write rounds of a fallback tag before giving up.
ATTACH_ATTEMPTS = 8
#: Re-reads of a fallback index after it holds our entries, and the pause before each (s).
SETTLE_CHECKS = 2
SETTLE_PAUSE = (0.05, 0.15)
_COSIGN_SUFFIXES = ("sig", "att", "sbom")
_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class Attachment:
    """One thing attached to (or embedded next to) an image manifest.

    ``subject`` is the manifest digest it is about, ``digest``/``media_type``/``size``
    name the attachment's own manifest, ``tag`` the cosign or fallback tag it was read
    from, ``raw`` its manifest bytes.
    """

    found_by: str
    subject: str
    digest: str
    media_type: str
    size: int
    classification: Classification
    raw: bytes = field(repr=False)
    tag: str | None = None

    @property
    def kind(self) -> str:
        """signature, sbom, provenance, vuln-report, attestation or other."""
        return self.classification.kind

    @property
    def format(self) -> str | None:
        """cosign, notation, sigstore-bundle, spdx, cyclonedx, slsa-v1, … or None."""
        return self.classification.format

    @property
    def artifact_type(self) -> str | None:
        """The child's effective artifactType (its own, else its config media type)."""
        return self.classification.artifact_type

    @property
    def annotations(self) -> dict[str, str]:
        """The child manifest's annotations."""
        return self.classification.annotations


def _child(client: RegistryClient, repository: str, digest: str) -> Manifest | Index | None:
    try:
        return client.get_manifest(repository, digest)
    except NotFoundError:
        log.info("%s@%s is listed as a referrer but is gone", repository, digest)
        return None


def _tagged(client: RegistryClient, repository: str, tag: str,
            tags: set[str] | None) -> Manifest | Index | None:
    if tags is not None and tag not in tags:
        return None
    try:
        return client.get_manifest(repository, tag)
    except NotFoundError:
        return None


def _read(client: RegistryClient, repository: str, subject: str, found_by: str,
          entries: Iterable[Descriptor], tag: str | None = None) -> list[Attachment]:
    out = []
    for entry in entries:
        child = _child(client, repository, entry.digest)
        if child is not None:
            out.append(Attachment(found_by, subject, child.digest, child.media_type, child.size,
                                  classify_manifest(child.raw), child.raw, tag))
    return out


def referrers_supported(client: RegistryClient, repository: str, digest: str) -> bool:
    """True when the registry answers the referrers API for this repository."""
    return client.referrers(repository, digest) is not None


def discover(client: RegistryClient, repository: str, digest: str, *,
             tags: Iterable[str] | None = None, top: Manifest | Index | None = None,
             artifact_type: str | None = None) -> list[Attachment]:
    """Everything attached to ``repository@digest`` over the four mechanisms.

    ``tags`` (the repository's tags, digest tags included) saves a GET per cosign tag
    that is not there; ``top`` is the manifest itself, whose in-index attestations
    count when it is an index. ``artifact_type`` filters (the API filter, then here).
    """
    tag_set = set(tags) if tags is not None else None
    found: list[Attachment] = []
    answer = client.referrers(repository, digest, artifact_type=artifact_type)
    if answer is not None:
        found += _read(client, repository, digest, REFERRERS_API, answer.descriptors)
    else:
        tag = fallback_tag(digest)
        index = _tagged(client, repository, tag, tag_set)
        if index is not None:
            found += _read(client, repository, digest, FALLBACK_TAG,
                           parse_referrers_index(index.raw), tag)
    for suffix in _COSIGN_SUFFIXES:
        tag = cosign_tag(digest, suffix)
        child = _tagged(client, repository, tag, tag_set)
        if child is not None:
            found.append(Attachment(COSIGN_TAG, digest, child.digest, child.media_type,
                                    child.size, classify_manifest(child.raw), child.raw, tag))
    if isinstance(top, Index):
        for item in in_index_attestations(top):
            found += _read(client, repository, item.subject_digest or digest, IN_INDEX,
                           [item.descriptor])
    if artifact_type:
        found = [a for a in found if a.artifact_type == artifact_type]
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for item in found:  # the same child through the API and a stale fallback tag: once
        key = (item.found_by, item.subject, item.digest)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _lock(client: RegistryClient, repository: str, subject: str) -> threading.Lock:
    key = (client.host, repository, subject)
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _fallback_entries(client: RegistryClient, repository: str, tag: str
                      ) -> tuple[bytes | None, set[str]]:
    """(the fallback index's bytes or None, its entries' digests).

    distribution's filesystem driver answers 500 while another writer replaces the tag;
    the transport sends such a read again (remote.retry)."""
    try:
        index = client.get_manifest(repository, tag)
    except NotFoundError:
        return None, set()
    return index.raw, {d.digest for d in parse_referrers_index(index.raw)}


def attach(client: RegistryClient, repository: str, manifest: Manifest | Index,
           subject: str, *, tag: str | None = None) -> str:
    """Put ``manifest`` (which names ``subject``) and make it findable; return how.

    ``"referrers-api"`` when the registry lists it through the API after the put,
    else ``"fallback-tag"`` after the read-modify-write of ``<alg>-<hex>``.
    """
    client.put_manifest(repository, tag or manifest.digest, manifest.raw, manifest.media_type)
    if referrers_supported(client, repository, subject):
        return REFERRERS_API
    add_to_fallback(client, repository, subject, [referrer_descriptor(manifest.raw,
                                                                      manifest.media_type)])
    return FALLBACK_TAG


def add_to_fallback(client: RegistryClient, repository: str, subject: str,
                    entries: list[Descriptor]) -> None:
    """Merge ``entries`` into the fallback index of ``subject``, losing no other entry."""
    tag = fallback_tag(subject)
    wanted = {d.digest for d in entries}
    with _lock(client, repository, subject):
        for attempt in range(1, ATTACH_ATTEMPTS + 1):
            current, present = _fallback_entries(client, repository, tag)
            if wanted <= present:
                # Written (by us or another writer); look again after pauses, so that a
                # writer that read before our write and writes after it is caught. The
                # registry has no conditional PUT: a writer stalled longer than these
                # pauses can still drop an entry (the known limit of the fallback tag).
                for _ in range(SETTLE_CHECKS):
                    time.sleep(random.uniform(*SETTLE_PAUSE))
                    current, present = _fallback_entries(client, repository, tag)
                    if not wanted <= present:
                        break
                else:
                    return
            merged = merge_referrers(current, add=entries)
            client.put_manifest(repository, tag, merged, OCI_INDEX)
            log.debug("fallback tag %s of %s: round %d", tag, repository, attempt)
    raise RegistryError(
        f"the fallback tag {tag} of {repository} kept changing under {ATTACH_ATTEMPTS} "
        "writes; the attachment was pushed but may not be listed there",
        hint="Another tool is rewriting the tag at the same time; try again when it is done.")


def copy_referrers(source: RegistryClient, source_repository: str, destination: RegistryClient,
                   destination_repository: str, digests: Iterable[str]) -> list[Attachment]:
    """Copy what the referrers API, the fallback tag and cosign tags attach to ``digests``.

    Each attachment's manifest and blobs are copied (mounted or skipped where the
    destination has them), then made findable there: cosign tags under the same tag,
    referrers through the destination's API or its fallback tag. In-index
    attestations travel with their index and are not copied again.
    """
    from .copy import copy_image
    from .image import RegistryRepository

    src = RegistryRepository(source, source_repository)
    dst = RegistryRepository(destination, destination_repository)
    copied: list[Attachment] = []
    try:
        tags = list(source.tags(source_repository))
    except NotFoundError:
        tags = []
    for digest in dict.fromkeys(digests):
        for item in discover(source, source_repository, digest, tags=tags):
            if item.found_by == IN_INDEX:
                continue
            copy_image(src, dst, reference=item.digest, tag=item.tag
                       if item.found_by == COSIGN_TAG else None)
            if item.found_by != COSIGN_TAG:
                child = destination.get_manifest(destination_repository, item.digest)
                if not referrers_supported(destination, destination_repository, item.subject):
                    add_to_fallback(destination, destination_repository, item.subject,
                                    [referrer_descriptor(child.raw, child.media_type)])
            copied.append(item)
    return copied
