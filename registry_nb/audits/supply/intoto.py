"""In-toto statements and the DSSE envelopes around them (pure functions over bytes).

in-toto-attestation's protobuf bindings reject Statement v0.1, which BuildKit and cosign
still write, and securesystemslib's ``Envelope.verify`` matches signatures by ``keyid``
(cosign leaves it empty), so both are read here as plain JSON (SUPPLY_CHAIN.md §3).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidAttestationError

__all__ = [
    "DsseSignature", "DsseEnvelope", "Subject", "Statement", "pae", "parse_envelope",
    "parse_statement", "load_document", "b64decode",
]

IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1")
#: Attached documents are small; past this they are not what they claim to be.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
_HINT = "The tool that attached it wrote a malformed document; attach it again."


def load_document(data: bytes | str | Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON object from bytes, text or a mapping; anything else is InvalidAttestationError."""
    if isinstance(data, Mapping):
        return dict(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > MAX_DOCUMENT_BYTES:
            raise InvalidAttestationError(
                f"invalid {what}: {len(data)} bytes is over the {MAX_DOCUMENT_BYTES}-byte limit",
                hint=_HINT)
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidAttestationError(f"invalid {what}: not UTF-8 JSON ({exc})",
                                          hint=_HINT) from None
    if not isinstance(data, str):
        raise InvalidAttestationError(f"invalid {what}: expected JSON bytes, text or a dict, "
                                      f"not {type(data).__name__}", hint=_HINT)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidAttestationError(f"invalid {what}: not valid JSON ({exc})",
                                      hint=_HINT) from None
    if not isinstance(doc, dict):
        raise InvalidAttestationError(f"invalid {what}: the document must be a JSON object",
                                      hint=_HINT)
    return doc


def b64decode(text: Any, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE allows either)."""
    if not isinstance(text, str):
        raise InvalidAttestationError(f"invalid {what}: expected a base64 string", hint=_HINT)
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded.encode("ascii"))
        return base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidAttestationError(f"invalid {what}: not valid base64", hint=_HINT) from None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class DsseSignature:
    """One signature of an envelope (``keyid`` is often empty, as cosign writes it)."""

    keyid: str
    sig: bytes = field(repr=False)


@dataclass(frozen=True)
class DsseEnvelope:
    """A DSSE envelope: the payload bytes, their type, and the signatures over their PAE."""

    payload_type: str
    payload: bytes = field(repr=False)
    signatures: tuple[DsseSignature, ...]

    @property
    def signed_bytes(self) -> bytes:
        """The PAE of the payload, which each signature signs."""
        return pae(self.payload_type, self.payload)


def parse_envelope(data: bytes | str | Mapping[str, Any]) -> DsseEnvelope:
    """Read a DSSE envelope (a cosign ``.att`` layer, a bundle's ``dsseEnvelope``)."""
    doc = load_document(data, "DSSE envelope")
    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str):
        raise InvalidAttestationError("invalid DSSE envelope: 'payloadType' must be a string",
                                      hint=_HINT)
    payload = b64decode(doc.get("payload"), "DSSE envelope: field 'payload'")
    signatures = doc.get("signatures")
    if not isinstance(signatures, list):
        raise InvalidAttestationError("invalid DSSE envelope: 'signatures' must be an array",
                                      hint=_HINT)
    out = []
    for i, item in enumerate(signatures):
        if not isinstance(item, Mapping):
            raise InvalidAttestationError(f"invalid DSSE envelope: signatures[{i}] must be an "
                                          "object", hint=_HINT)
        keyid = item.get("keyid") or ""
        out.append(DsseSignature(str(keyid), b64decode(item.get("sig"),
                                                       f"DSSE envelope: signatures[{i}].sig")))
    return DsseEnvelope(payload_type, payload, tuple(out))


@dataclass(frozen=True)
class Subject:
    """One subject of a statement: a name and its digests (``{"sha256": hex}``)."""

    name: str
    digest: dict[str, str]


@dataclass(frozen=True)
class Statement:
    """An in-toto statement (v0.1 or v1): what it is about and what it says."""

    type: str
    predicate_type: str
    subjects: tuple[Subject, ...]
    predicate: Any = field(repr=False)

    @property
    def subject_digests(self) -> tuple[str, ...]:
        """Every subject digest as ``alg:hex``."""
        return tuple(f"{alg}:{value}" for s in self.subjects for alg, value in s.digest.items())

    def names(self, digest: str) -> bool:
        """True when one of the subjects is ``digest`` (``alg:hex``)."""
        algorithm, _, value = digest.partition(":")
        return any(s.digest.get(algorithm, "").lower() == value.lower() and value
                   for s in self.subjects)


def parse_statement(data: bytes | str | Mapping[str, Any] | DsseEnvelope) -> Statement:
    """Read an in-toto statement from its JSON, a DSSE envelope, or a sigstore bundle."""
    if isinstance(data, DsseEnvelope):
        if data.payload_type != IN_TOTO_PAYLOAD:
            raise InvalidAttestationError(
                f"the DSSE envelope carries {data.payload_type!r}, not an in-toto statement "
                f"({IN_TOTO_PAYLOAD})", hint="Read this envelope's payload as its type says.")
        data = data.payload
    doc = load_document(data, "in-toto statement")
    if "payloadType" in doc and "payload" in doc:
        return parse_statement(parse_envelope(doc))
    if isinstance(doc.get("dsseEnvelope"), Mapping):  # a sigstore bundle (cosign v3 attest)
        return parse_statement(parse_envelope(doc["dsseEnvelope"]))
    kind = doc.get("_type")
    if kind not in STATEMENT_TYPES:
        raise InvalidAttestationError(
            f"invalid in-toto statement: '_type' is {kind!r}, not one of "
            f"{', '.join(STATEMENT_TYPES)}", hint=_HINT)
    predicate_type = doc.get("predicateType")
    if not isinstance(predicate_type, str):
        raise InvalidAttestationError("invalid in-toto statement: 'predicateType' must be a "
                                      "string", hint=_HINT)
    subjects = doc.get("subject") or []
    if not isinstance(subjects, list):
        raise InvalidAttestationError("invalid in-toto statement: 'subject' must be an array",
                                      hint=_HINT)
    parsed = []
    for i, item in enumerate(subjects):
        digest = item.get("digest") if isinstance(item, Mapping) else None
        if not isinstance(digest, Mapping):
            raise InvalidAttestationError(f"invalid in-toto statement: subject[{i}] needs a "
                                          "'digest' object", hint=_HINT)
        parsed.append(Subject(str(item.get("name") or ""),
                              {str(k): str(v) for k, v in digest.items()}))
    return Statement(kind, predicate_type, tuple(parsed), doc.get("predicate"))
