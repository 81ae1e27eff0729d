"""Notary Project (notation) JWS signatures, verified offline against CAs the user gives.

What is checked, after notaryproject/specifications ``signature-envelope-jws.md`` and
``signature-specification.md``: the JWS signature (PS256/384/512, ES256/384/512) with
the leaf certificate of ``x5c``; that every critical header is one this reader
understands; the chain from the leaf to a certificate of ``trust_anchors`` (each
certificate directly issued by the next, valid at ``at``); the leaf's code-signing
usage; ``io.cncf.notary.expiry``; and that ``targetArtifact`` names the expected
digest (and size and media type, when given). Not done: trust policies, revocation
(OCSP/CRL), RFC 3161 timestamps and COSE envelopes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ...errors import InvalidAttestationError, TrustMaterialError
from ...oci.config import parse_timestamp
from .intoto import b64decode, load_document
from .verify import Verification, material_bytes, refused

__all__ = ["verify_notation_jws", "load_certificates", "NOTATION_PAYLOAD"]

NOTATION_PAYLOAD = "application/vnd.cncf.notary.payload.v1+json"
SIGNING_TIME = "io.cncf.notary.signingTime"
EXPIRY = "io.cncf.notary.expiry"
AUTHENTIC_TIME = "io.cncf.notary.authenticSigningTime"
SIGNING_SCHEME = "io.cncf.notary.signingScheme"
_UNDERSTOOD = {SIGNING_SCHEME, EXPIRY, AUTHENTIC_TIME}
_METHOD = "notation-x509"


def load_certificates(source: Any) -> list[Any]:
    """X.509 certificates from PEM/DER bytes or text, paths, certificate objects, or a list."""
    from cryptography import x509
    if source is None:
        return []
    items = [source] if isinstance(source, (str, bytes, bytearray, Path, x509.Certificate)) \
        or not isinstance(source, Iterable) else list(source)
    out = []
    for item in items:
        if isinstance(item, x509.Certificate):
            out.append(item)
            continue
        data = material_bytes(item, "certificate")
        try:
            if data is not None and b"-----BEGIN" in data:
                out.extend(x509.load_pem_x509_certificates(data))
            else:
                out.append(x509.load_der_x509_certificate(data))
        except (ValueError, TypeError):
            raise TrustMaterialError("this is not an X.509 certificate (PEM or DER)",
                                     hint="Pass the CA certificate(s) that notation's trust "
                                     "store would hold.") from None
    return out


def _signature_ok(cert: Any, alg: str, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    hash_cls = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}.get(alg[2:])
    try:
        key = cert.public_key()
        if alg.startswith("PS") and hash_cls and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PSS(mgf=padding.MGF1(hash_cls()),
                                                    salt_length=hash_cls.digest_size),
                       hash_cls())
        elif alg.startswith("ES") and hash_cls and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            if len(signature) % 2 or half == 0:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                       int.from_bytes(signature[half:], "big"))
            key.verify(der, data, ec.ECDSA(hash_cls()))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _issued_by(cert: Any, issuer: Any) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # ValueError, TypeError, InvalidSignature: not issued by it
        return False
    return True


def _chain_problem(chain: list[Any], anchors: list[Any], at: datetime) -> str | None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    for cert in chain:
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            return (f"the certificate {cert.subject.rfc4514_string()} is not valid at "
                    f"{at.isoformat()}")
    for cert, issuer in zip(chain, chain[1:], strict=False):
        if not _issued_by(cert, issuer):
            return (f"the certificate {cert.subject.rfc4514_string()} is not issued by the next "
                    "one in x5c")
    leaf = chain[0]
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if x509.oid.ExtendedKeyUsageOID.CODE_SIGNING not in usages:
            return "the signing certificate is not for code signing (extended key usage)"
    except x509.ExtensionNotFound:
        return "the signing certificate has no code signing extended key usage"
    fingerprints = {a.fingerprint(hashes.SHA256()) for a in anchors}
    if any(c.fingerprint(hashes.SHA256()) in fingerprints for c in chain):
        return None
    if any(_issued_by(chain[-1], anchor) for anchor in anchors):
        return None
    return "the certificate chain does not lead to a trusted CA (none of trust_anchors)"


def _now(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(timezone.utc)
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def _time(header: Mapping[str, Any], key: str) -> datetime | None:
    value = header.get(key)
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def verify_notation_jws(envelope: bytes | str | Mapping[str, Any], *, digest: str,
                        trust_anchors: Any, size: int | None = None,
                        media_type: str | None = None, at: datetime | None = None,
                        thumbprints: str | list[str] | None = None) -> Verification:
    """Verify a notation JWS envelope (JSON serialization) for the manifest ``digest``.

    ``trust_anchors`` are the CA (or pinned) certificates to trust; ``thumbprints`` is
    the manifest's ``io.cncf.notary.x509chain.thumbprint#S256`` annotation, checked
    against ``x5c`` when given; ``at`` is the verification time (default now).
    """
    anchors = load_certificates(trust_anchors)
    try:
        doc = load_document(envelope, "JWS envelope")
        protected_b64, payload_b64 = doc["protected"], doc["payload"]
        if not isinstance(protected_b64, str) or not isinstance(payload_b64, str):
            raise InvalidAttestationError("invalid JWS envelope: protected and payload must be "
                                          "strings")
        header = json.loads(b64decode(protected_b64, "JWS protected header"))
        payload = json.loads(b64decode(payload_b64, "JWS payload"))
        signature = b64decode(doc["signature"], "JWS signature")
        chain = _x5c(doc.get("header"))
    except (InvalidAttestationError, TrustMaterialError) as exc:
        return refused(_METHOD, exc.message)
    except (KeyError, TypeError, ValueError, RecursionError):
        return refused(_METHOD, "the JWS envelope is not a notation JSON serialization")
    if not isinstance(header, Mapping) or not isinstance(payload, Mapping):
        return refused(_METHOD, "the JWS protected header and payload must be JSON objects")
    alg = header.get("alg")
    signed = (protected_b64 + "." + payload_b64).encode("ascii")
    if not isinstance(alg, str) or not _signature_ok(chain[0], alg, signature, signed):
        return refused(_METHOD, f"the {alg} signature does not verify with the signing "
                       "certificate in x5c")
    try:  # cryptography parses certificate fields lazily: a damaged one fails here
        fields = {"signer": chain[0].subject.rfc4514_string(),
                  "issuer": chain[-1].issuer.rfc4514_string(),
                  "signed_at": _time(header, AUTHENTIC_TIME) or _time(header, SIGNING_TIME)}
        problem = _header_problem(header, _now(at)) or _chain_problem(chain, anchors, _now(at)) \
            or _thumbprint_problem(chain, thumbprints)
    except ValueError as exc:
        return refused(_METHOD, f"a certificate in x5c cannot be read ({_first(exc)})")
    if problem:
        return refused(_METHOD, problem, **fields)
    target = payload.get("targetArtifact") if isinstance(payload.get("targetArtifact"),
                                                         Mapping) else {}
    named = target.get("digest")
    if named != digest:
        return refused(_METHOD, f"the signature is for {named}, not {digest}",
                       subject_digest=named if isinstance(named, str) else None, **fields)
    if size is not None and target.get("size") != size:
        return refused(_METHOD, f"the signature is for {target.get('size')} bytes, not {size}",
                       subject_digest=named, **fields)
    if media_type is not None and target.get("mediaType") != media_type:
        return refused(_METHOD, f"the signature is for a {target.get('mediaType')}, not a "
                       f"{media_type}", subject_digest=named, **fields)
    return Verification(True, f"verified: signed by {fields['signer']}, chain trusted.",
                        _METHOD, digest, **fields)


def _x5c(header: Any) -> list[Any]:
    from cryptography import x509
    certs = header.get("x5c") if isinstance(header, Mapping) else None
    if not isinstance(certs, list) or not certs:
        raise InvalidAttestationError("the JWS unprotected header has no x5c certificate chain")
    try:
        return [x509.load_der_x509_certificate(b64decode(c, "x5c certificate")) for c in certs]
    except ValueError:
        raise InvalidAttestationError("a certificate in x5c cannot be read") from None


def _header_problem(header: Mapping[str, Any], at: datetime) -> str | None:
    critical = header.get("crit")
    if not isinstance(critical, list) or SIGNING_SCHEME not in critical:
        return f"the protected header must mark {SIGNING_SCHEME} critical"
    unknown = [str(name) for name in critical if name not in _UNDERSTOOD]
    if unknown:
        return f"the protected header has critical fields this reader does not know: " \
               f"{', '.join(unknown)}"
    missing = [name for name in critical if name not in header]
    if missing:
        return f"the critical fields {', '.join(missing)} are missing from the protected header"
    if header.get("cty") != NOTATION_PAYLOAD:
        return f"the payload type is {header.get('cty')!r}, not {NOTATION_PAYLOAD}"
    if header.get(SIGNING_SCHEME) not in ("notary.x509", "notary.x509.signingAuthority"):
        return f"the signing scheme {header.get(SIGNING_SCHEME)!r} is not a notary one"
    if _time(header, SIGNING_TIME) is None and _time(header, AUTHENTIC_TIME) is None:
        return "the protected header has no signing time"
    expiry = _time(header, EXPIRY)
    if EXPIRY in header and expiry is None:
        return "the expiry in the protected header is not a time"
    if expiry is not None and expiry < at:
        return f"the signature expired at {expiry.isoformat()}"
    return None


def _thumbprint_problem(chain: list[Any], thumbprints: str | list[str] | None) -> str | None:
    if thumbprints is None:
        return None
    if isinstance(thumbprints, str):
        try:
            thumbprints = json.loads(thumbprints)
        except ValueError:
            return "the x509chain thumbprint annotation is not a JSON array"
    actual = [hashlib.sha256(c.public_bytes(_der())).hexdigest() for c in chain]
    if [str(t).lower() for t in thumbprints or []] != actual:
        return "the x509chain thumbprint annotation does not match the certificates in x5c"
    return None


def _der() -> Any:
    from cryptography.hazmat.primitives import serialization
    return serialization.Encoding.DER


def _first(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(exc).__name__
