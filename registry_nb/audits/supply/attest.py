"""Attestations checked on their own: the signatures on them and what they are about.

An attestation is an in-toto statement, bare (BuildKit's in-index layers), inside a DSSE
envelope (cosign ``.att`` layers, ``oras attach`` of an envelope) or inside a sigstore
bundle (cosign v3 ``attest``). :func:`check_attestation` reads one: whether its
statement is about the image it is attached to (its subject digests), and, when it is
signed, whether the signature verifies offline with the keys or trusted root given, the
same way image signatures do (:mod:`.verify`, :mod:`.bundles`). Nothing here raises for
what a registry served: a malformed document is a reason, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import InvalidAttestationError
from .bundles import verify_sigstore_bundle
from .intoto import parse_envelope, parse_statement
from .verify import Verification, verify_dsse_envelope

__all__ = ["AttestationCheck", "check_attestation", "SIGNED_ENVELOPES"]

#: Envelopes that carry their own signatures.
SIGNED_ENVELOPES = ("dsse", "sigstore-bundle")


@dataclass(frozen=True)
class AttestationCheck:
    """What one attestation says about itself.

    ``signed`` is True when the envelope carries a signature (a DSSE envelope with at
    least one, or a sigstore bundle); ``verification`` is then its outcome, else None.
    ``subject_ok`` is True when the statement names ``digest``, False when it names
    others (``subject_reason`` says which), None when the statement cannot be read.
    """

    predicate_type: str | None
    envelope: str | None
    signed: bool
    verification: Verification | None
    subject_ok: bool | None
    subject_reason: str


def _subject(blob: bytes, digest: str, predicate_type: str | None
             ) -> tuple[str | None, bool | None, str]:
    try:
        statement = parse_statement(blob)
    except InvalidAttestationError as exc:
        return predicate_type, None, f"the statement cannot be read: {exc.message}."
    predicate_type = statement.predicate_type or predicate_type
    if statement.names(digest):
        return predicate_type, True, f"the statement is about {digest}."
    named = ", ".join(statement.subject_digests) or "no digest"
    return predicate_type, False, (f"the in-toto statement ({predicate_type}) is about "
                                   f"{named}, not about this image {digest}.")


def check_attestation(blob: bytes, envelope: str | None, *, digest: str,
                      predicate_type: str | None = None, keys: Any = None,
                      trusted_root: Any = None) -> AttestationCheck:
    """Check the attestation ``blob`` (wrapped as ``envelope`` says: ``"in-toto"``,
    ``"dsse"`` or ``"sigstore-bundle"``) attached to the image ``digest``.

    A DSSE signature is verified with ``keys`` (the statement must also name
    ``digest``); a sigstore bundle with ``trusted_root`` (keyless) or ``keys``.
    """
    predicate_type, subject_ok, subject_reason = _subject(blob, digest, predicate_type)
    verification: Verification | None = None
    signed = False
    if envelope == "dsse":
        try:
            signed = bool(parse_envelope(blob).signatures)
        except InvalidAttestationError:
            signed = True  # claims to be an envelope: its verification says what is wrong
        if signed:
            verification = verify_dsse_envelope(blob, digest=digest, keys=keys)
    elif envelope == "sigstore-bundle":
        signed = True
        verification = verify_sigstore_bundle(blob, digest=digest, trusted_root=trusted_root,
                                              keys=keys)
    return AttestationCheck(predicate_type, envelope, signed, verification, subject_ok,
                            subject_reason)
