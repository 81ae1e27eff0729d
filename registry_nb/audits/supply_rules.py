"""The supply-chain audit rules: what ``supply_chain_frame`` flags in ``findings``.

Rules are data, as in :mod:`.rules`; each check reads one row's facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..frames import AUDIT_RULE_COLUMNS, build_frame
from .rules import Rule

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SUPPLY_RULES", "supply_findings", "supply_rules"]


def _fact(name: str) -> Any:
    return lambda facts: bool(facts.get(name))


SUPPLY_RULES: tuple[Rule, ...] = (
    Rule("unsigned", "medium", "No signature",
         "Nothing signs this image manifest or the index that lists it, so nobody can tell "
         "who published it.",
         "Sign it (cosign sign --key, notation sign) and verify with keys= in audits.",
         lambda f: not f.get("orphan") and not f.get("signed")),
    Rule("signature-not-verified", "high", "Signature does not verify",
         "A signature is attached but none verified with the keys or trusted root given, "
         "or it names another digest; signature_reason says why.",
         "Pass the signer's public key (keys=), trusted_root= or trust_anchors=; re-sign "
         "if the image was changed after signing.",
         lambda f: bool(f.get("signed")) and not f.get("signature_verified")),
    Rule("attestation-not-verified", "high", "Attestation signature does not verify",
         "An SBOM, provenance or other attestation carries a signature (DSSE, sigstore "
         "bundle, or a signature attached to it) that did not verify with the keys or "
         "trusted root given; attestation_signatures gives each one's reason.",
         "Pass the attester's public key (keys=) or trusted_root=; re-attest if the "
         "document was changed after signing.",
         lambda f: (f.get("attestations_signed") or 0) > (f.get("attestations_verified") or 0)),
    Rule("attestation-subject-mismatch", "high", "Attestation about another image",
         "An attached or embedded in-toto statement names other subject digests than this "
         "image's: it was copied from another image, attached to the wrong one, or the "
         "image was rebuilt after it was made (subject_mismatches says which).",
         "Attach the statement that was made for this digest, or re-attest this image.",
         _fact("subject_mismatches")),
    Rule("index-signed-platforms-not", "medium", "Index signed, platform manifest not",
         "The index is signed but this platform's manifest is not; tools that resolve the "
         "platform first (Harbor's gate, cosign verify by digest) see it unsigned.",
         "Sign each platform manifest too (cosign sign --recursive).",
         _fact("index_only_signed")),
    Rule("orphan-attachment", "low", "Attachment whose subject is gone",
         "A fallback or cosign tag names a manifest that no longer exists; it only takes "
         "space and clutters tag lists.",
         "Delete the tag (and run the registry's garbage collection).",
         _fact("orphan")),
    Rule("no-sbom", "low", "No SBOM",
         "No SBOM is attached or embedded, so what the image contains cannot be checked "
         "without pulling it.",
         "Attach one (docker buildx build --sbom=true, or reg.push_artifact(sbom, subject=)).",
         lambda f: not f.get("orphan") and not f.get("sbom_format")),
    Rule("no-provenance", "low", "No provenance",
         "No SLSA provenance says how and from what this image was built.",
         "Build with docker buildx build --provenance=mode=max (or min).",
         lambda f: not f.get("orphan") and not f.get("provenance_version")),
    Rule("provenance-without-revision", "low", "Provenance without source revision",
         "The provenance names no source commit, so the image cannot be traced to code.",
         "Build from a git checkout (BUILDX_GIT_INFO=1) or pass the revision as a label.",
         lambda f: bool(f.get("provenance_version")) and not f.get("source_revision")),
    Rule("secret-build-args", "high", "Secret-looking build arguments recorded",
         "Max-mode provenance records build-arg values; some names look like secrets "
         "(names listed in secret_build_args, values never shown).",
         "Pass secrets with --secret, not --build-arg; rebuild and re-push.",
         _fact("secret_build_args")),
    Rule("base-image-drift", "medium", "Base image moved on",
         "A base image tag in the provenance now points at another digest than the one "
         "the build used (drifted_bases names it).",
         "Rebuild on the current base, or pin the base by digest.",
         _fact("drifted_bases")),
)


def supply_findings(facts: Mapping[str, Any]) -> list[str]:
    """Rule ids of :data:`SUPPLY_RULES` that fire for one row's facts."""
    return [rule.id for rule in SUPPLY_RULES if rule.check(facts)]


def supply_rules() -> pd.DataFrame:
    """The supply-chain rules: id, severity, title, explanation, fix."""
    return build_frame([{"id": r.id, "severity": r.severity, "title": r.title,
                         "explanation": r.explanation, "fix": r.fix} for r in SUPPLY_RULES],
                       AUDIT_RULE_COLUMNS)
