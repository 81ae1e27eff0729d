"""Attestations checked on their own: their DSSE signatures and what they are about.

``supply.check_attestation`` on the real fixtures in ../shared/data/supply-chain (cosign's
keyless DSSE bundle, trivy's DSSE envelope, BuildKit's bare statements), then
``supply_chain_frame`` on images seeded in the real distribution registry with cosign
``.att`` tags (signed, tampered, about another image) and an SBOM referrer carrying its
own cosign signature (a referrer of a referrer, found through the fallback tag).
"""

from __future__ import annotations

import base64
import json
import secrets

import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from supply_fixtures import COSIGN_BUNDLE_SUBJECT, flip_b64, read_bytes, read_json, supply_path

from registry_nb import ContainerRegistry
from registry_nb.audits import supply
from registry_nb.images.referrers import attach
from registry_nb.oci import Descriptor, Manifest
from registry_nb.oci.artifacts import (
    COSIGN_SIMPLE_SIGNING,
    DSSE_ENVELOPE,
    EMPTY_DIGEST,
    cosign_tag,
)

OTHER = "sha256:" + "cd" * 32
PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
SPDX = "application/spdx+json"
_EMPTY = Descriptor("application/vnd.oci.empty.v1+json", EMPTY_DIGEST, 2)


def statement(digest: str, predicate_type: str = PROVENANCE_V1) -> bytes:
    return json.dumps({"_type": "https://in-toto.io/Statement/v1",
                       "predicateType": predicate_type,
                       "subject": [{"name": "demo", "digest": {"sha256": digest[7:]}}],
                       "predicate": {"buildDefinition": {"buildType": "x"}}}).encode()


def pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


# ------------------------------------------------------------------ the real fixtures


def test_cosigns_keyless_dsse_bundle_is_a_verified_attestation_of_its_subject() -> None:
    bundle = read_bytes("cosign/oci-attestation.sigstore.json")
    root = supply.load_trusted_root(supply_path("cosign/trusted_root_pgi.json"))
    check = supply.check_attestation(bundle, "sigstore-bundle", digest=COSIGN_BUNDLE_SUBJECT,
                                     trusted_root=root)
    assert check.signed and check.subject_ok is True
    assert check.verification.verified is True, check.verification.reason
    assert check.predicate_type == "https://cosign.sigstore.dev/attestation/v1"
    elsewhere = supply.check_attestation(bundle, "sigstore-bundle", digest=OTHER,
                                         trusted_root=root)
    assert elsewhere.subject_ok is False and COSIGN_BUNDLE_SUBJECT in elsewhere.subject_reason
    assert OTHER in elsewhere.subject_reason
    assert elsewhere.verification.verified is False


def test_trivys_dsse_envelope_is_signed_but_cannot_be_verified() -> None:
    envelope = read_bytes("trivy/centos-7-cyclonedx.intoto.jsonl")
    subject = "sha256:be65f488b7764ad3638f236b7b515b3678369a5124c47b8d32916d6487418ea4"
    check = supply.check_attestation(envelope, "dsse", digest=subject)
    assert check.signed and check.subject_ok is True
    assert check.verification.verified is False and "keys=" in check.verification.reason
    assert check.predicate_type == "https://cyclonedx.org/bom"
    assert supply.check_attestation(envelope, "dsse", digest=OTHER).subject_ok is False


@pytest.mark.parametrize("name", ["buildkit.slsa-provenance-v1.mode-min.intoto.json",
                                  "buildkit.slsa-provenance-v0.2.mode-max.intoto.json"])
def test_buildkits_bare_statements_are_unsigned_and_name_their_subject(name: str) -> None:
    doc = read_json(f"buildkit-buildx/{name}")
    subject = "sha256:" + doc["subject"][0]["digest"]["sha256"]
    raw = read_bytes(f"buildkit-buildx/{name}")
    check = supply.check_attestation(raw, "in-toto", digest=subject)
    assert (check.signed, check.verification, check.subject_ok) == (False, None, True)
    assert supply.check_attestation(raw, "in-toto", digest=OTHER).subject_ok is False


def test_a_flipped_byte_in_a_dsse_payload_never_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = "sha256:" + "ab" * 32
    envelope = supply.sign_dsse(statement(digest), key)
    good = supply.check_attestation(json.dumps(envelope).encode(), "dsse", digest=digest,
                                    keys=pem(key))
    assert good.verification.verified is True, good.verification.reason
    length = len(base64.b64decode(envelope["payload"]))
    for position in range(0, length, 7):
        tampered = dict(envelope, payload=flip_b64(envelope["payload"], position))
        check = supply.check_attestation(json.dumps(tampered).encode(), "dsse", digest=digest,
                                         keys=pem(key))
        assert check.verification.verified is False
        assert check.verification.reason
    unsigned = dict(envelope, signatures=[])
    check = supply.check_attestation(json.dumps(unsigned).encode(), "dsse", digest=digest)
    assert (check.signed, check.verification) == (False, None)


# ------------------------------------------------------------------ in a registry


def _manifest(reg: ContainerRegistry, repository: str, blobs: list[tuple[str, bytes, dict]],
              subject: str | None = None, artifact_type: str | None = None) -> Manifest:
    reg.client.upload_blob(repository, b"{}", EMPTY_DIGEST)
    layers = []
    for media_type, data, notes in blobs:
        layer = Descriptor.for_content(media_type, data, annotations=notes)
        reg.client.upload_blob(repository, data, layer.digest)
        layers.append(layer)
    head = reg.client.head_manifest(repository, subject) if subject else None
    return Manifest.build(_EMPTY, layers, artifact_type=artifact_type,
                          subject=Descriptor(head.media_type or "", subject, head.size or 0)
                          if head and subject else None)


def _image(reg: ContainerRegistry, repository: str, tag: str, tmp_path) -> str:
    folder = tmp_path / tag
    folder.mkdir()
    (folder / "hello.txt").write_text(f"{repository}:{tag} {secrets.token_hex(4)}\n")
    return str(reg.image_from_directory(folder, repository, tag, created=0)["digest"])


def _att(reg: ContainerRegistry, repository: str, digest: str, envelope: dict) -> None:
    """A cosign ``.att`` tag: one DSSE envelope layer with its predicateType annotation."""
    att = _manifest(reg, repository, [(DSSE_ENVELOPE, json.dumps(envelope).encode(),
                                       {"predicateType": PROVENANCE_V1})])
    reg.client.put_manifest(repository, cosign_tag(digest, "att"), att.raw, att.media_type)


def _sig(reg: ContainerRegistry, repository: str, digest: str, key, *, names: str) -> None:
    """A cosign ``.sig`` tag for ``digest`` whose payload names ``names``."""
    payload = supply.cosign_payload(names, f"{reg.registry_host}/{repository}")
    sig = _manifest(reg, repository, [(COSIGN_SIMPLE_SIGNING, payload, {
        "dev.cosignproject.cosign/signature": supply.sign_cosign(payload, key)})])
    reg.client.put_manifest(repository, cosign_tag(digest, "sig"), sig.raw, sig.media_type)


@pytest.fixture(scope="module")
def attested(services_info, tmp_path_factory):
    """One repository: images attested by cosign ``.att`` tags (signed, tampered, about
    another image) and images with an SBOM referrer signed by its own ``.sig`` tag
    (once over the SBOM, once over something else)."""
    tmp_path = tmp_path_factory.mktemp("attested")
    repo = f"test/attested-{secrets.token_hex(3)}"
    key = ec.generate_private_key(ec.SECP256R1())
    with ContainerRegistry(services_info["open"]["host"], cache=False) as reg:
        good = _image(reg, repo, "att", tmp_path)
        _att(reg, repo, good, supply.sign_dsse(statement(good), key))
        flipped = _image(reg, repo, "att-tampered", tmp_path)
        envelope = supply.sign_dsse(statement(flipped), key)
        _att(reg, repo, flipped, dict(envelope, payload=flip_b64(envelope["payload"], 40)))
        moved = _image(reg, repo, "att-elsewhere", tmp_path)
        _att(reg, repo, moved, supply.sign_dsse(statement(OTHER), key))
        for tag, signs_itself in (("sbom-signed", True), ("sbom-signed-elsewhere", False)):
            digest = _image(reg, repo, tag, tmp_path)
            sbom = _manifest(reg, repo, [(SPDX, read_bytes("cosign/bom-go-mod.spdx.json"), {})],
                             subject=digest, artifact_type=SPDX)
            attach(reg.client, repo, sbom, digest)
            _sig(reg, repo, sbom.digest, key, names=sbom.digest if signs_itself else OTHER)
        yield reg, repo, pem(key)


def _frame(reg, repo, **trust):
    frame = reg.supply_chain_frame(repo, **trust)
    return frame[~frame["orphan"].fillna(False).astype(bool)].set_index("tag")


def test_attestation_signatures_are_verified_and_bound_to_the_image(attested) -> None:
    reg, repo, public_key = attested
    frame = _frame(reg, repo, keys=public_key)
    good = frame.loc["att"]
    assert (good["attestations"], good["attestations_signed"],
            good["attestations_verified"]) == (1, 1, 1)
    [entry] = good["attestation_signatures"]
    assert entry["verified"] is True and entry["via"] == "dsse"
    assert entry["predicate_type"] == PROVENANCE_V1
    assert good["subject_mismatches"] == []
    assert not {"attestation-not-verified", "attestation-subject-mismatch"} & \
        set(good["findings"])

    tampered = frame.loc["att-tampered"]
    assert (tampered["attestations_signed"], tampered["attestations_verified"]) == (1, 0)
    assert tampered["attestation_signatures"][0]["verified"] is False
    assert tampered["attestation_signatures"][0]["reason"]
    assert "attestation-not-verified" in tampered["findings"]

    elsewhere = frame.loc["att-elsewhere"]
    assert "attestation-subject-mismatch" in elsewhere["findings"]
    [reason] = elsewhere["subject_mismatches"]
    assert OTHER in reason and elsewhere["digest"] in reason
    # the signature is good, but it signs a statement about another digest
    assert "attestation-not-verified" in elsewhere["findings"]
    assert OTHER in elsewhere["attestation_signatures"][0]["reason"]


def test_a_signature_on_an_sbom_is_followed_one_level(attested) -> None:
    reg, repo, public_key = attested
    frame = _frame(reg, repo, keys=public_key)
    signed = frame.loc["sbom-signed"]
    assert signed["sbom_format"] == "spdx"
    [entry] = signed["attestation_signatures"]
    assert (entry["kind"], entry["via"], entry["verified"]) == ("sbom", "cosign-tag", True)
    assert (signed["attestations_signed"], signed["attestations_verified"]) == (1, 1)
    assert "attestation-not-verified" not in signed["findings"]
    wrong = frame.loc["sbom-signed-elsewhere"]
    assert wrong["attestation_signatures"][0]["verified"] is False
    assert OTHER in wrong["attestation_signatures"][0]["reason"]
    assert "attestation-not-verified" in wrong["findings"]
    # without the key nothing verifies, and the frame says so
    untrusted = _frame(reg, repo)
    assert pd.Series(untrusted["attestations_verified"]).fillna(0).sum() == 0
    assert "attestation-not-verified" in untrusted.loc["att", "findings"]
