"""The supply chain of a registry's images as frames: attachments, SBOMs, provenance,
signatures verified offline, and the findings of the supply-chain rules.

Discovery is :func:`registry_nb.images.referrers.discover`; parsing and verification
are :mod:`registry_nb.audits.supply`. Nothing here trusts an attachment's index entry:
each child is classified and read from its own manifest and blobs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidAttestationError, NotFoundError, RegistryError
from ..frames import REFERRER_COLUMNS, build_frame
from ..images.listing import RegistryImages
from ..images.referrers import Attachment, discover
from ..oci import Index, Manifest
from ..oci.artifacts import PROVENANCE, SBOM, SIGNATURE, Part
from . import supply

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["image_attachments", "referrers_frame", "read_part", "provenance_of", "sbom_of",
           "verify_attachment", "MAX_ATTACHMENT_BYTES"]

log = logging.getLogger(__name__)

#: Largest attachment blob read into memory (SBOMs of big images run to a few MB).
MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024


def image_attachments(images: RegistryImages, repository: str, reference: str, *,
                      tags: Iterable[str] | None = None, artifact_type: str | None = None,
                      top: Manifest | Index | None = None) -> list[Attachment]:
    """Attachments of the manifest ``reference`` names and, for an index, of each child."""
    client = images.client
    if top is None:
        top = client.get_manifest(repository, reference)
    if tags is None:
        tags = list(client.tags(repository))
    tags = list(tags)
    found = discover(client, repository, top.digest, tags=tags, top=top,
                     artifact_type=artifact_type)
    if isinstance(top, Index):
        for entry in top.manifests:
            if not entry.is_attestation:
                found += discover(client, repository, entry.digest, tags=tags,
                                  artifact_type=artifact_type)
    return found


def referrers_frame(images: RegistryImages, repository: str, reference: str, *,
                    artifact_type: str | None = None) -> pd.DataFrame:
    """One row per attachment (README columns), ``found_by`` saying which mechanism."""
    rows = [{"found_by": a.found_by, "artifact_type": a.artifact_type, "kind": a.kind,
             "format": a.format, "digest": a.digest, "media_type": a.media_type,
             "size": a.size, "annotations": a.annotations, "subject": a.subject, "tag": a.tag}
            for a in image_attachments(images, repository, reference,
                                       artifact_type=artifact_type)]
    return build_frame(rows, REFERRER_COLUMNS)


def read_part(images: RegistryImages, repository: str, part: Part) -> bytes:
    """The verified bytes of one layer of an attachment."""
    return images.client.read_blob(repository, part.digest, max_bytes=MAX_ATTACHMENT_BYTES,
                                   size=part.size)


def _parts(attachments: Iterable[Attachment], kind: str) -> Iterable[tuple[Attachment, Part]]:
    for item in attachments:
        for part in item.classification.parts:
            if part.kind == kind:
                yield item, part


def provenance_of(images: RegistryImages, repository: str,
                  attachments: Iterable[Attachment]) -> supply.Provenance | None:
    """The first SLSA provenance among ``attachments`` that parses, or None."""
    for item, part in _parts(attachments, PROVENANCE):
        try:
            return supply.parse_provenance(read_part(images, repository, part))
        except (InvalidAttestationError, RegistryError) as exc:
            log.info("provenance %s of %s unreadable: %s", part.digest, item.subject, exc)
    return None


def sbom_of(images: RegistryImages, repository: str,
            attachments: Iterable[Attachment]) -> supply.Sbom | None:
    """The first SBOM among ``attachments`` that parses, or None."""
    for item, part in _parts(attachments, SBOM):
        try:
            return supply.parse_sbom(read_part(images, repository, part), part.media_type,
                                     validate=False)
        except (InvalidAttestationError, RegistryError) as exc:
            log.info("SBOM %s of %s unreadable: %s", part.digest, item.subject, exc)
    return None


def verify_attachment(images: RegistryImages, repository: str, item: Attachment, *,
                      keys: Any = None, trusted_root: Any = None,
                      trust_anchors: Any = None) -> list[supply.Verification]:
    """Verify every signature layer of a signature attachment against its subject."""
    out: list[supply.Verification] = []
    for part in item.classification.parts:
        if part.kind != SIGNATURE:
            continue
        try:
            blob = read_part(images, repository, part)
        except RegistryError as exc:
            out.append(supply.Verification(False, f"the signature blob cannot be read: "
                                           f"{exc.message}.", "read"))
            continue
        if part.envelope == "simple-signing":
            out.append(supply.verify_cosign_layer(
                {"digest": part.digest, "annotations": part.annotations}, blob,
                digest=item.subject, keys=keys))
        elif part.envelope == "sigstore-bundle" or part.format == "sigstore-bundle":
            out.append(supply.verify_sigstore_bundle(blob, digest=item.subject,
                                                     trusted_root=trusted_root, keys=keys))
        elif part.format == "notation" and part.envelope == "jws":
            thumbprints = item.annotations.get("io.cncf.notary.x509chain.thumbprint#S256")
            if trust_anchors is None:
                out.append(supply.Verification(False, "no CA certificate was given to verify "
                                               "the notation signature; pass trust_anchors=.",
                                               "notation-jws"))
            else:
                out.append(supply.verify_notation_jws(blob, digest=item.subject,
                                                      trust_anchors=trust_anchors,
                                                      thumbprints=thumbprints))
        else:
            out.append(supply.Verification(False, f"signatures of type {part.media_type} "
                                           "are not verified here.", "unsupported"))
    return out


def require(found: Any, what: str, name: str) -> Any:
    """``found``, or :class:`NotFoundError` saying no ``what`` is attached to ``name``."""
    if found is None:
        raise NotFoundError(f"no readable {what} is attached to {name}",
                            hint="See reg.referrers(...) for what is attached; attach one "
                            "with reg.push_artifact(..., subject=...).")
    return found
