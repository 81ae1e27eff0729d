"""The supply chain of an image, as pure functions over bytes and dicts (no network).

In-toto statements and DSSE envelopes (:mod:`.intoto`), SLSA provenance
(:mod:`.provenance`), SBOMs in and out (:mod:`.sbom`, :mod:`.export`), and offline
verification: cosign key signatures and DSSE (:mod:`.verify`), sigstore bundles
(:mod:`.bundles`), notation JWS (:mod:`.notation`), attestations' own signatures and
subjects (:mod:`.attest`); :mod:`.sign` makes signatures with
a private key. The heavy libraries (sigstore, spdx-tools, cyclonedx-python-lib,
cryptography) are imported inside the functions that need them.
"""

from __future__ import annotations

from .attest import AttestationCheck, check_attestation
from .bundles import load_trusted_root, verify_sigstore_bundle
from .export import SBOM_FORMATS, export_sbom, purl_for
from .intoto import (
    DsseEnvelope,
    DsseSignature,
    Statement,
    Subject,
    pae,
    parse_envelope,
    parse_statement,
)
from .notation import load_certificates, verify_notation_jws
from .provenance import Material, Provenance, parse_provenance, secret_like_build_args
from .sbom import Sbom, SbomPackage, parse_sbom, purl_type
from .sign import (
    cosign_payload,
    sign_cosign,
    sign_dsse,
    sign_notation_jws,
    sigstore_key_bundle,
)
from .verify import (
    Verification,
    key_id,
    load_public_keys,
    verify_cosign_layer,
    verify_cosign_signature,
    verify_dsse_envelope,
)

__all__ = [
    "DsseEnvelope", "DsseSignature", "Statement", "Subject", "pae", "parse_envelope",
    "parse_statement",
    "Material", "Provenance", "parse_provenance", "secret_like_build_args",
    "Sbom", "SbomPackage", "parse_sbom", "purl_type", "SBOM_FORMATS", "export_sbom", "purl_for",
    "Verification", "key_id", "load_public_keys", "verify_cosign_signature",
    "verify_cosign_layer", "verify_dsse_envelope", "load_trusted_root",
    "verify_sigstore_bundle", "load_certificates", "verify_notation_jws",
    "cosign_payload", "sign_cosign", "sign_dsse", "sigstore_key_bundle", "sign_notation_jws",
    "AttestationCheck", "check_attestation",
]
