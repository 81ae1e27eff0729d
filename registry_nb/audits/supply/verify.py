"""Key-based offline verification: cosign simple signing and DSSE envelopes (cryptography).

Every verifier returns a :class:`Verification` and never raises for what the registry
served: a malformed or tampered signature, payload or envelope gives ``verified=False``
and a reason. Only unusable trust material the *caller* gave (a key that is not a key)
raises :class:`~registry_nb.errors.TrustMaterialError`. A signature counts only when its
payload names the expected manifest digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import InvalidAttestationError, TrustMaterialError
from .intoto import b64decode, parse_envelope, parse_statement

__all__ = [
    "Verification", "load_public_keys", "material_bytes", "key_id", "verify_with_key",
    "verify_cosign_signature", "verify_cosign_layer", "verify_dsse_envelope",
    "COSIGN_SIGNATURE_TYPE",
]

COSIGN_SIGNATURE_TYPE = "cosign container image signature"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


@dataclass(frozen=True)
class Verification:
    """The outcome of one verification; ``reason`` is a sentence either way.

    ``subject_digest`` is the digest the signed payload names, ``signer`` the key id,
    certificate identity (SAN) or subject, ``issuer`` the OIDC issuer or CA, and
    ``signed_at`` the transparency-log or signing time when there is one.
    """

    verified: bool
    reason: str
    method: str
    subject_digest: str | None = None
    signer: str | None = None
    issuer: str | None = None
    signed_at: datetime | None = None


def refused(method: str, reason: str, **fields: Any) -> Verification:
    """A failed :class:`Verification` (the reason gets its full stop)."""
    return Verification(False, reason.rstrip(".") + ".", method, **fields)


# ------------------------------------------------------------------ keys


def material_bytes(item: Any, what: str) -> bytes | None:
    """The bytes of a key or certificate given as bytes, PEM text or a path (else None)."""
    if isinstance(item, Path) or (isinstance(item, str) and "-----BEGIN" not in item):
        try:
            return Path(item).read_bytes()
        except OSError as exc:
            raise TrustMaterialError(f"cannot read the {what} file {str(item)!r}: "
                                     f"{exc.strerror}",
                                     hint=f"Pass the {what} as PEM text, its path, or an "
                                     "object from cryptography.") from None
    if isinstance(item, str):
        return item.encode("ascii", "replace")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    return None


def _read_key(item: Any) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
    if isinstance(item, PublicKeyTypes):
        return item
    if isinstance(item, x509.Certificate):
        return item.public_key()
    data = material_bytes(item, "public key")
    if data is not None:
        for load in (serialization.load_pem_public_key, serialization.load_der_public_key):
            try:
                return load(data)
            except (ValueError, TypeError):
                pass
        for load in (x509.load_pem_x509_certificate, x509.load_der_x509_certificate):
            try:
                return load(data).public_key()
            except ValueError:
                pass
    raise TrustMaterialError("this is not a public key (PEM or DER SubjectPublicKeyInfo, or a "
                             "certificate)",
                             hint="Pass the cosign.pub file, its PEM text, or a key object.")


def load_public_keys(keys: Any) -> list[Any]:
    """Public keys from one or many PEM/DER bytes, PEM text, paths, certificates or key objects."""
    if keys is None:
        return []
    if isinstance(keys, (str, bytes, bytearray, Path)) or not isinstance(keys, Iterable):
        keys = [keys]
    return [_read_key(item) for item in keys]


def key_id(key: Any) -> str:
    """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo (a stable name for it)."""
    from cryptography.hazmat.primitives import serialization
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _ec_hash(key: Any) -> Any:
    from cryptography.hazmat.primitives import hashes
    return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size, hashes.SHA256())


def verify_with_key(key: Any, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` over ``data`` verifies with ``key`` the way cosign signs.

    ECDSA (DER, SHA-256 on P-256, SHA-384 on P-384, SHA-512 on P-521), RSA PKCS#1 v1.5
    with SHA-256, and Ed25519.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_ec_hash(key)))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _first_key(keys: list[Any], signature: bytes, data: bytes) -> Any:
    return next((k for k in keys if verify_with_key(k, signature, data)), None)


def _key_refusal(method: str, count: int) -> Verification:
    if count == 0:
        return refused(method, "no public key was given to verify with; pass keys=")
    return refused(method, f"the signature does not verify with any of the {count} given "
                   "public key(s)")


# ------------------------------------------------------------------ cosign simple signing


def _payload_digest(payload: bytes) -> tuple[str | None, str | None]:
    """(the digest a simple-signing payload names, the reason it cannot be read)."""
    try:
        doc = json.loads(payload)
        critical = doc["critical"]
        kind = critical.get("type")
        image = {k.lower(): v for k, v in critical["image"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, "the payload is not a cosign simple-signing document"
    if kind != COSIGN_SIGNATURE_TYPE:
        return None, f"the payload type is {kind!r}, not {COSIGN_SIGNATURE_TYPE!r}"
    named = image.get("docker-manifest-digest")
    if not isinstance(named, str):
        return None, "the payload names no docker-manifest-digest"
    return named, None


def verify_cosign_signature(payload: bytes, signature: str | bytes, *, digest: str,
                            keys: Any) -> Verification:
    """Verify a cosign key-based signature (base64 or raw) over a simple-signing payload."""
    method = "cosign-key"
    public_keys = load_public_keys(keys)
    try:
        raw = b64decode(signature, "cosign signature") if isinstance(signature, str) \
            else bytes(signature)
    except InvalidAttestationError as exc:
        return refused(method, exc.message)
    key = _first_key(public_keys, raw, bytes(payload))
    if key is None:
        return _key_refusal(method, len(public_keys))
    named, problem = _payload_digest(payload)
    if problem:
        return refused(method, problem, signer=key_id(key))
    if named != digest:
        return refused(method, f"the signed payload names {named}, not {digest}",
                       subject_digest=named, signer=key_id(key))
    return Verification(True, f"verified with key {key_id(key)}.", method, named, key_id(key))


def verify_cosign_layer(layer: Mapping[str, Any] | Any, payload: bytes, *, digest: str,
                        keys: Any) -> Verification:
    """Verify one layer of a cosign ``.sig`` manifest given the layer's payload blob.

    ``layer`` is the layer descriptor (a dict or a Descriptor) carrying the signature
    annotation; the payload must hash to the layer's digest.
    """
    annotations = layer.get("annotations") if isinstance(layer, Mapping) else layer.annotations
    layer_digest = layer.get("digest") if isinstance(layer, Mapping) else layer.digest
    actual = "sha256:" + hashlib.sha256(payload).hexdigest()
    if actual != layer_digest:
        return refused("cosign-key", f"the payload hashes to {actual}, not to the layer digest "
                       f"{layer_digest}")
    signature = (annotations or {}).get(COSIGN_SIGNATURE_ANNOTATION)
    if not signature:
        return refused("cosign-key", f"the layer has no {COSIGN_SIGNATURE_ANNOTATION} annotation")
    return verify_cosign_signature(payload, signature, digest=digest, keys=keys)


# ------------------------------------------------------------------ DSSE


def verify_dsse_envelope(envelope: Any, *, digest: str, keys: Any,
                         method: str = "dsse-key") -> Verification:
    """Verify a DSSE envelope (cosign ``.att``) with public keys and its statement's subject."""
    public_keys = load_public_keys(keys)
    try:
        parsed = parse_envelope(envelope)
    except InvalidAttestationError as exc:
        return refused(method, exc.message)
    signed = parsed.signed_bytes
    key = next((k for s in parsed.signatures for k in public_keys
                if verify_with_key(k, s.sig, signed)), None)
    if key is None:
        if not parsed.signatures:
            return refused(method, "the envelope carries no signature")
        return _key_refusal(method, len(public_keys))
    try:
        statement = parse_statement(parsed)
    except InvalidAttestationError as exc:
        return refused(method, exc.message, signer=key_id(key))
    if not statement.names(digest):
        named = ", ".join(statement.subject_digests) or "no digest"
        return refused(method, f"the signed statement names {named}, not {digest}",
                       subject_digest=statement.subject_digests[0]
                       if statement.subject_digests else None, signer=key_id(key))
    return Verification(True, f"verified with key {key_id(key)}.", method, digest, key_id(key))
