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
from ..oci.artifacts import DSSE_ENVELOPE, IN_TOTO, OTHER, PROVENANCE, SBOM, SIGNATURE, Part
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
    """Parts of ``kind``, then parts only their content can tell (an in-toto statement
    attached by ``oras attach --artifact-type application/vnd.in-toto+json``)."""
    items = list(attachments)
    for item in items:
        for part in item.classification.parts:
            if part.kind == kind:
                yield item, part
    for item in items:
        if item.artifact_type in (IN_TOTO, DSSE_ENVELOPE):
            for part in item.classification.parts:
                if part.kind == OTHER:
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


# ------------------------------------------------------------------ the frame


def _drift(images: RegistryImages, provenance: supply.Provenance) -> list[str]:
    """Base images (of this registry) whose tag now names another digest than the build's."""
    drifted = []
    for material in provenance.materials:
        reference, digest = material.image_reference, material.digest
        if not reference or not digest or "@" in reference:
            continue
        host, _, rest = reference.partition("/")
        if host != images.host or ":" not in rest:
            continue  # only tags in this registry can be read here
        repository, _, tag = rest.rpartition(":")
        try:
            now = images.client.get_manifest(repository, tag)
        except RegistryError:
            continue
        children = {e.digest for e in now.manifests} if isinstance(now, Index) else set()
        if digest != now.digest and digest not in children:
            drifted.append(reference)
    return drifted


def _signature_facts(images: RegistryImages, repository: str, items: list[Attachment],
                     trust: dict[str, Any]) -> dict[str, Any]:
    signatures = [a for a in items if a.kind == SIGNATURE]
    if not signatures:
        return {"signed": False}
    results = [(a, v) for a in signatures
               for v in verify_attachment(images, repository, a, **trust)]
    good = [(a, v) for a, v in results if v.verified]
    chosen = good[0] if good else (results[0] if results else (signatures[0], None))
    item, verification = chosen
    return {"signed": True, "signature_verified": bool(good),
            "signature_format": item.format,
            "signature_reason": verification.reason if verification else "nothing to verify",
            "signer": verification.signer if verification else None,
            "signed_at": (verification.signed_at if verification else None)
            or item.classification.created}


_STATEMENT_ENVELOPES = ("in-toto", "dsse", "sigstore-bundle")


def _signature_entry(item: Attachment, via: str, kind: str, predicate_type: str | None,
                     verification: supply.Verification) -> dict[str, Any]:
    return {"attachment": item.digest, "kind": kind, "predicate_type": predicate_type,
            "via": via, "verified": verification.verified, "reason": verification.reason,
            "signer": verification.signer}


def _attestation_facts(images: RegistryImages, repository: str, digest: str,
                       items: list[Attachment], tags: list[str],
                       trust: dict[str, Any]) -> dict[str, Any]:
    """Signatures on the attestations of ``digest`` and what their statements are about.

    Each statement (bare, DSSE, sigstore bundle) must name ``digest``; a DSSE or bundle
    signature is verified with ``trust``. Attachments that are not signatures are
    followed one level further: a signature attached to an SBOM or an attestation
    manifest (cosign tag, fallback tag, referrers API) is verified against that
    attachment's digest.
    """
    entries: list[dict[str, Any]] = []
    mismatches: list[str] = []
    statements = 0
    bundle_trust = {"keys": trust.get("keys"), "trusted_root": trust.get("trusted_root")}
    for item in items:
        if item.kind == SIGNATURE:
            continue
        for part in item.classification.parts:
            if part.envelope not in _STATEMENT_ENVELOPES or part.kind == SIGNATURE:
                continue
            try:
                blob = read_part(images, repository, part)
            except RegistryError as exc:
                mismatches.append(f"the attestation {part.digest} cannot be read: "
                                  f"{exc.message}")
                continue
            statements += 1
            check = supply.check_attestation(blob, part.envelope, digest=digest,
                                             predicate_type=part.predicate_type,
                                             **bundle_trust)
            if check.subject_ok is False:
                mismatches.append(check.subject_reason)
            if check.verification is not None:
                entries.append(_signature_entry(item, part.envelope or "", part.kind,
                                                check.predicate_type, check.verification))
        for signature in discover(images.client, repository, item.digest, tags=tags):
            if signature.kind != SIGNATURE:
                continue
            for verification in verify_attachment(images, repository, signature, **trust):
                entries.append(_signature_entry(item, signature.found_by, item.kind,
                                                None, verification))
    verified = sum(bool(e["verified"]) for e in entries)
    return {"attestations": statements, "attestations_signed": len(entries),
            "attestations_verified": verified, "attestation_signatures": entries,
            "subject_mismatches": mismatches}


def _row(images: RegistryImages, repository: str, tag: str, digest: str, platform: str | None,
         top: Manifest | Index, tags: list[str], index_items: list[Attachment],
         trust: dict[str, Any]) -> dict[str, Any]:
    from .supply_rules import supply_findings

    own = discover(images.client, repository, digest, tags=tags)
    embedded = [a for a in index_items if a.subject == digest]  # in-index attestations
    index_level = [a for a in index_items if a.subject != digest]
    items = own + embedded + index_level
    row: dict[str, Any] = {
        "repository": images.display_name(repository), "tag": tag, "platform": platform,
        "digest": digest, "index_digest": top.digest if isinstance(top, Index) else None,
        "attachments": len(items), "found_by": sorted({a.found_by for a in items}),
    }
    row.update(_signature_facts(images, repository, own, trust))
    if not row["signed"] and index_level:
        index_facts = _signature_facts(images, repository, index_level, trust)
        if index_facts["signed"]:
            row.update(index_facts)
            row["index_only_signed"] = True
    sbom = sbom_of(images, repository, own + embedded)
    if sbom is not None:
        row.update(sbom_format=sbom.format, sbom_packages=len(sbom.packages))
    provenance = provenance_of(images, repository, own + embedded)
    if provenance is not None:
        row.update(provenance_version=provenance.slsa_version, provenance_mode=provenance.mode,
                   provenance_builder=provenance.builder_id,
                   source_repository=provenance.source_repository,
                   source_revision=provenance.source_revision,
                   build_finished=provenance.finished_on,
                   secret_build_args=supply.secret_like_build_args(provenance)
                   if provenance.mode == "max" else [],
                   drifted_bases=_drift(images, provenance))
    row.update(_attestation_facts(images, repository, digest, own + embedded, tags, trust))
    row["findings"] = supply_findings(row)
    return row


def _tag_rows(images: RegistryImages, repository: str, tag: str, tags: list[str],
              trust: dict[str, Any]) -> list[dict[str, Any]]:
    top = images.client.get_manifest(repository, tag)
    if isinstance(top, Manifest):
        return [_row(images, repository, tag, top.digest, None, top, tags, [], trust)]
    index_items = discover(images.client, repository, top.digest, tags=tags, top=top)
    return [_row(images, repository, tag, entry.digest,
                 str(entry.platform) if entry.platform else None, top, tags, index_items,
                 trust)
            for entry in top.manifests if not entry.is_attestation]


def _orphans(images: RegistryImages, repository: str, tags: list[str]) -> list[dict[str, Any]]:
    from ..oci.artifacts import parse_digest_tag
    from .supply_rules import supply_findings

    rows = []
    for tag in tags:
        parsed = parse_digest_tag(tag)
        subject = parsed.subject_digest if parsed else None
        if subject and images.client.head_manifest(repository, subject) is None:
            row = {"repository": images.display_name(repository), "tag": tag,
                   "digest": subject, "orphan": True, "attachments": 1,
                   "found_by": ["fallback-tag" if parsed and parsed.kind == "fallback"
                                else "cosign-tag"]}
            row["findings"] = supply_findings(row)
            rows.append(row)
    return rows


def supply_chain_frame(images: RegistryImages, listing: Any, *, keys: Any = None,
                       trusted_root: Any = None, trust_anchors: Any = None) -> pd.DataFrame:
    """One row per image and platform of ``listing`` (README columns), plus orphan rows.

    ``listing`` is a :class:`~registry_nb.images.listing.TagListing` (digest tags hidden,
    kept in ``listing.digest_tags``). Signatures are verified offline with ``keys``
    (cosign), ``trusted_root`` (sigstore keyless) and ``trust_anchors`` (notation CAs).
    """
    from ..frames import SUPPLY_CHAIN_COLUMNS

    trust = {"keys": keys, "trusted_root": trusted_root, "trust_anchors": trust_anchors}
    if trusted_root is not None:
        trust["trusted_root"] = supply.load_trusted_root(trusted_root)
    by_repo: dict[str, list[str]] = {}
    for entry in listing:
        if entry.tag:
            by_repo.setdefault(entry.repository, []).append(entry.tag)
    hidden = getattr(listing, "digest_tags", {})

    def rows_of(item: tuple[str, str]) -> list[dict[str, Any]]:
        repository, tag = item
        tags = by_repo[repository] + [d.tag for d in hidden.get(repository, [])]
        try:
            return _tag_rows(images, repository, tag, tags, trust)
        except RegistryError as exc:
            return [{"repository": images.display_name(repository), "tag": tag,
                     "error": f"{type(exc).__name__}: {exc}"}]

    work = [(repo, tag) for repo, tags in by_repo.items() for tag in tags]
    rows = [row for group in images.map(rows_of, work) for row in group]
    for repository in listing.repositories():
        rows += _orphans(images, repository, [d.tag for d in hidden.get(repository, [])])
    return build_frame(rows, SUPPLY_CHAIN_COLUMNS)


def sbom_packages_frame(sbom: supply.Sbom) -> pd.DataFrame:
    """The packages of a parsed SBOM, one row each (README columns)."""
    from ..frames import SBOM_PACKAGE_COLUMNS

    frame = build_frame([{"name": p.name, "version": p.version, "purl": p.purl,
                          "type": p.type, "ecosystem": p.ecosystem, "licenses": list(p.licenses),
                          "cpe": p.cpe} for p in sbom.packages], SBOM_PACKAGE_COLUMNS)
    frame.attrs["sbom_format"] = sbom.format
    return frame
