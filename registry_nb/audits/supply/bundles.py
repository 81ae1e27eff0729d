"""Sigstore bundles v0.1-v0.3, verified offline against a trusted root the user gives.

Keyless bundles (a Fulcio certificate) go through the ``sigstore`` library: certificate
chain to the root's Fulcio CAs, SCT, Rekor inclusion proof or promise, and the
signature; then the signed statement or message digest must name the expected digest.
sigstore refuses bundles that carry a public-key hint instead of a certificate, so
those (cosign v3 ``--key``) are verified here with `cryptography`; nothing then
checks a transparency log, and the reason says so.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ...errors import InvalidAttestationError, TrustMaterialError
from .intoto import load_document, parse_statement
from .verify import (
    Verification,
    key_id,
    load_public_keys,
    refused,
    verify_dsse_envelope,
    verify_with_key,
)

__all__ = ["load_trusted_root", "verify_sigstore_bundle"]

_OIDC_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
_OIDC_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"


def load_trusted_root(source: Any) -> Any:
    """A sigstore ``TrustedRoot`` from a path, JSON bytes/text, or an existing one."""
    from sigstore.models import TrustedRoot
    if isinstance(source, TrustedRoot):
        return source
    try:
        if isinstance(source, (bytes, bytearray)) or (isinstance(source, str)
                                                      and source.lstrip().startswith("{")):
            data = source.encode() if isinstance(source, str) else bytes(source)
            with tempfile.NamedTemporaryFile(suffix=".json") as handle:
                handle.write(data)
                handle.flush()
                return TrustedRoot.from_file(handle.name)
        if isinstance(source, (str, Path)):
            return TrustedRoot.from_file(str(source))
    except OSError as exc:
        raise TrustMaterialError(f"cannot read the trusted root {str(source)!r}: {exc.strerror}",
                                 hint="Pass the path of a trusted_root.json.") from None
    except Exception as exc:  # pydantic and sigstore raise many kinds for a bad root
        raise TrustMaterialError(f"this is not a sigstore trusted root: {exc}",
                                 hint="Pass a trusted_root.json (trustedroot+json;version=0.1), "
                                 "as `cosign trusted-root create` or the TUF repository "
                                 "gives it.") from None
    raise TrustMaterialError(f"cannot use a {type(source).__name__} as a trusted root",
                             hint="Pass the path of a trusted_root.json or its bytes.")


class _AnyIdentity:
    """A policy that accepts every identity (the chain, log and signature are still checked)."""

    def verify(self, cert: Any) -> None:
        """Accept the certificate."""


def _policy(identity: str | None, issuer: str | None) -> Any:
    from sigstore.verify import policy
    if identity:
        return policy.Identity(identity=identity, issuer=issuer)
    if issuer:
        return policy.AnyOf([policy.OIDCIssuer(issuer), policy.OIDCIssuerV2(issuer)])
    return _AnyIdentity()


def _identity(cert: Any) -> tuple[str | None, str | None]:
    from cryptography import x509
    signer = issuer = None
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for general in names:
            value = general.value
            signer = value if isinstance(value, str) else signer
            if signer:
                break
    except x509.ExtensionNotFound:
        pass
    for oid, der in ((_OIDC_ISSUER_V2, True), (_OIDC_ISSUER_V1, False)):
        try:
            raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
        except x509.ExtensionNotFound:
            continue
        # v2 is a DER UTF8String (tag 0x0c, short length); v1 is the raw text
        issuer = raw[2:].decode("utf-8", "replace") if der and raw[:1] == b"\x0c" else \
            raw.decode("utf-8", "replace")
        break
    return signer, issuer


def _integrated_time(doc: Mapping[str, Any]) -> datetime | None:
    entries = (doc.get("verificationMaterial") or {}).get("tlogEntries") or []
    try:
        return datetime.fromtimestamp(int(entries[0]["integratedTime"]), timezone.utc)
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def _message_digest(doc: Mapping[str, Any]) -> str | None:
    try:
        message = doc["messageSignature"]["messageDigest"]
        raw = base64.b64decode(message["digest"])
    except (KeyError, TypeError, ValueError):
        return None
    algorithm = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512"}.get(
        message.get("algorithm"), str(message.get("algorithm")).lower())
    return f"{algorithm}:{raw.hex()}"


def verify_sigstore_bundle(bundle: bytes | str | Mapping[str, Any], *, digest: str,
                           trusted_root: Any = None, identity: str | None = None,
                           issuer: str | None = None, keys: Any = None) -> Verification:
    """Verify a sigstore bundle offline and bind it to ``digest``.

    Keyless bundles need ``trusted_root`` (a path, JSON or ``TrustedRoot``); with
    ``identity``/``issuer`` the certificate's SAN and OIDC issuer must match, without
    them any identity is accepted and reported. Key-based bundles need ``keys``.
    """
    try:
        doc = load_document(bundle, "sigstore bundle")
    except InvalidAttestationError as exc:
        return refused("sigstore-keyless", exc.message)
    material = doc.get("verificationMaterial")
    if isinstance(material, Mapping) and "publicKey" in material:
        return _verify_key_bundle(doc, digest, keys)
    method = "sigstore-keyless"
    if trusted_root is None:
        return refused(method, "no trusted root was given to verify a keyless bundle with; "
                       "pass trusted_root=")
    root = load_trusted_root(trusted_root)
    from sigstore.models import Bundle
    from sigstore.verify import Verifier
    try:
        parsed = Bundle.from_json(json.dumps(doc))
        signer, cert_issuer = _identity(parsed.signing_certificate)
    except Exception as exc:  # any unreadable bundle is simply not verified
        return refused(method, f"sigstore cannot read the bundle: {_first_line(exc)}")
    fields = {"signer": signer, "issuer": cert_issuer, "signed_at": _integrated_time(doc)}
    verifier = Verifier(trusted_root=root)
    policy = _policy(identity, issuer)
    try:
        if "dsseEnvelope" in doc:
            payload_type, payload = verifier.verify_dsse(parsed, policy)
            named = _statement_subject(payload, digest)
        else:
            named = _message_digest(doc)
            if named != digest:
                return refused(method, f"the bundle signs {named}, not {digest}",
                               subject_digest=named, **fields)
            verifier.verify_artifact(_hashed(digest), parsed, policy)
    except Exception as exc:  # VerificationError, CertValidationError, InvalidBundle, ...
        return refused(method, f"sigstore refused the bundle: {_first_line(exc)}", **fields)
    if named != digest:
        return refused(method, f"the signed statement names {named or 'no digest'}, "
                       f"not {digest}", subject_digest=named, **fields)
    checked = f"identity {signer} from {cert_issuer}" if identity or issuer else \
        f"signed by {signer} from {cert_issuer}; the identity was not checked"
    return Verification(True, f"verified against the trusted root, {checked}.", method, digest,
                        **fields)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


def _statement_subject(payload: bytes, digest: str) -> str | None:
    try:
        statement = parse_statement(payload)
    except InvalidAttestationError:
        return None
    if statement.names(digest):
        return digest
    return ", ".join(statement.subject_digests) or None


def _hashed(digest: str) -> Any:
    from sigstore.hashes import Hashed
    from sigstore_models.common.v1 import HashAlgorithm
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256":
        raise ValueError(f"sigstore message signatures here are sha256, not {algorithm}")
    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(value))


def _verify_key_bundle(doc: Mapping[str, Any], digest: str, keys: Any) -> Verification:
    method = "sigstore-key"
    note = "; no transparency log was checked (key-based bundle, offline)"
    hint = doc["verificationMaterial"]["publicKey"]
    public_keys = load_public_keys(keys)
    if not public_keys:
        return refused(method, "the bundle names a public key "
                       f"({hint.get('hint') if isinstance(hint, Mapping) else hint}), not a "
                       "certificate; pass keys= with that public key")
    if "dsseEnvelope" in doc:
        result = verify_dsse_envelope(doc["dsseEnvelope"], digest=digest, keys=public_keys,
                                      method=method)
        if not result.verified:
            return result
        return Verification(True, result.reason.rstrip(".") + note + ".", method,
                            result.subject_digest, result.signer,
                            signed_at=_integrated_time(doc))
    named = _message_digest(doc)
    if named != digest:
        return refused(method, f"the bundle signs {named}, not {digest}", subject_digest=named)
    try:
        signature = base64.b64decode(doc["messageSignature"]["signature"])
    except (KeyError, TypeError, ValueError):
        return refused(method, "the bundle's message signature is not base64")
    key = next((k for k in public_keys if _verify_prehashed(k, signature, digest)), None)
    if key is None:
        return refused(method, f"the signature does not verify with any of the "
                       f"{len(public_keys)} given public key(s)")
    return Verification(True, f"verified with key {key_id(key)}{note}.", method, digest,
                        key_id(key), signed_at=_integrated_time(doc))


def _verify_prehashed(key: Any, signature: bytes, digest: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    value = bytes.fromhex(digest.partition(":")[2])
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, value, ec.ECDSA(Prehashed(hashes.SHA256())))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, value, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        else:  # Ed25519 signs the message itself, which a digest alone cannot check
            return verify_with_key(key, signature, value)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
