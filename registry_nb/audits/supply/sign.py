"""Making signatures offline with a private key, the way cosign and notation make them.

For attaching signatures to images a registry_nb user owns (and for the demo seed and
the tests): cosign's simple-signing payload and key signature, a DSSE envelope over an
in-toto statement, a key-based sigstore bundle v0.3, and a notation JWS envelope.
Keyless signing needs Fulcio and Rekor online and is not offered.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ...oci.config import format_timestamp
from .intoto import IN_TOTO_PAYLOAD, pae
from .notation import EXPIRY, NOTATION_PAYLOAD, SIGNING_SCHEME, SIGNING_TIME
from .verify import COSIGN_SIGNATURE_TYPE

__all__ = ["cosign_payload", "sign_cosign", "sign_dsse", "sigstore_key_bundle",
           "sign_notation_jws"]

SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


def cosign_payload(digest: str, reference: str,
                   annotations: Mapping[str, str] | None = None) -> bytes:
    """cosign's simple-signing payload for the image ``reference`` at manifest ``digest``."""
    doc = {"critical": {"identity": {"docker-reference": reference},
                        "image": {"docker-manifest-digest": digest},
                        "type": COSIGN_SIGNATURE_TYPE},
           "optional": dict(annotations) if annotations else None}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _sign(private_key: Any, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        algorithm = {384: hashes.SHA384(), 521: hashes.SHA512()}.get(
            private_key.curve.key_size, hashes.SHA256())
        return private_key.sign(data, ec.ECDSA(algorithm))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(data)
    raise TypeError(f"cannot sign with a {type(private_key).__name__}; use an EC, RSA or "
                    "Ed25519 private key from cryptography")


def sign_cosign(payload: bytes, private_key: Any) -> str:
    """The base64 signature cosign stores in ``dev.cosignproject.cosign/signature``."""
    return base64.b64encode(_sign(private_key, payload)).decode("ascii")


def sign_dsse(payload: bytes, private_key: Any, *, payload_type: str = IN_TOTO_PAYLOAD,
              keyid: str = "") -> dict[str, Any]:
    """A DSSE envelope (as a dict) signing ``payload`` over its PAE; ``keyid`` empty as cosign."""
    signature = _sign(private_key, pae(payload_type, payload))
    return {"payloadType": payload_type, "payload": base64.b64encode(payload).decode("ascii"),
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode("ascii")}]}


def sigstore_key_bundle(envelope: Mapping[str, Any], *, hint: str = "") -> bytes:
    """A sigstore bundle v0.3 around a key-signed DSSE envelope (cosign v3 ``--key`` shape)."""
    doc = {"mediaType": SIGSTORE_BUNDLE_V03,
           "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
           "dsseEnvelope": dict(envelope)}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _jws_algorithm(private_key: Any) -> tuple[str, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "PS256", hashes.SHA256
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        hash_cls = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}.get(
            private_key.curve.key_size)
        if hash_cls is not None:
            return f"ES{hash_cls.digest_size * 8}", hash_cls
    raise TypeError("notation signs with RSA or EC (P-256, P-384, P-521) keys")


def _jws_sign(private_key: Any, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    alg, hash_cls = _jws_algorithm(private_key)
    if alg.startswith("PS"):
        return private_key.sign(data, padding.PSS(mgf=padding.MGF1(hash_cls()),
                                                  salt_length=hash_cls.digest_size), hash_cls())
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hash_cls())))
    width = (private_key.curve.key_size + 7) // 8
    return r.to_bytes(width, "big") + s.to_bytes(width, "big")


def sign_notation_jws(target: Mapping[str, Any], private_key: Any, chain: Sequence[Any], *,
                      signing_time: datetime | None = None, expiry: datetime | None = None,
                      extra_critical: Mapping[str, str] | None = None) -> bytes:
    """A notation JWS envelope signing the descriptor ``target`` (``notary.x509`` scheme).

    ``chain`` is the leaf certificate first, then its issuers (cryptography objects).
    """
    from cryptography.hazmat.primitives import serialization
    signing_time = signing_time or datetime.now(timezone.utc).replace(microsecond=0)
    header: dict[str, Any] = {"alg": _jws_algorithm(private_key)[0], "crit": [SIGNING_SCHEME],
                              "cty": NOTATION_PAYLOAD, SIGNING_SCHEME: "notary.x509",
                              SIGNING_TIME: format_timestamp(signing_time)}
    if expiry is not None:
        header["crit"].append(EXPIRY)
        header[EXPIRY] = format_timestamp(expiry.replace(microsecond=0))
    for key, value in (extra_critical or {}).items():
        header["crit"].append(key)
        header[key] = value
    payload = _b64url(json.dumps({"targetArtifact": dict(target)},
                                 separators=(",", ":")).encode())
    protected = _b64url(json.dumps(header, separators=(",", ":")).encode())
    signature = _jws_sign(private_key, f"{protected}.{payload}".encode("ascii"))
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
    envelope = {"payload": payload, "protected": protected,
                "header": {"x5c": x5c, "io.cncf.notary.signingAgent": "registry-nb"},
                "signature": _b64url(signature)}
    return json.dumps(envelope, separators=(",", ":")).encode("utf-8")
