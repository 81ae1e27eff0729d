"""Offline signature verification (``registry_nb.audits.supply``) on the real fixtures.

Each shared fixture verifies or fails exactly as shared/data/supply-chain/README.md says:
cosign's keyless DSSE bundle against the public-good trusted root, sigstore-python's
message-signature bundle against the staging root, notation-go's JWS against its pinned
self-signed certificate, trivy's attestation not at all (its public key was never
published). cosign key-based signatures have no real fixture, so they are made here with
`cryptography` the way cosign makes them. Every check also binds the signature to the
manifest digest, and a flipped byte in the payload, signature, certificate or digest
turns ``verified`` False with a reason, never True.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from supply_fixtures import (
    COSIGN_BUNDLE_IDENTITY,
    COSIGN_BUNDLE_SUBJECT,
    NOTATION_MANIFEST,
    SIGSTORE_PY_IDENTITY,
    b64_length,
    flip,
    flip_b64,
    positions,
    read_bytes,
    read_json,
    supply_path,
)

from registry_nb.audits import supply
from registry_nb.errors import TrustMaterialError

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
PGI_ROOT = "cosign/trusted_root_pgi.json"
STAGING_ROOT = "sigstore-python/trusted_root.staging.json"


@pytest.fixture(scope="module")
def pgi_root():
    return supply.load_trusted_root(supply_path(PGI_ROOT))


@pytest.fixture(scope="module")
def staging_root():
    return supply.load_trusted_root(read_bytes(STAGING_ROOT))


def assert_refused(result: supply.Verification, *words: str) -> None:
    assert result.verified is False
    assert result.reason and result.reason.endswith(".")
    for word in words:
        assert word in result.reason, result.reason


# ------------------------------------------------------- sigstore, keyless DSSE


def test_cosign_keyless_dsse_bundle_verifies(pgi_root) -> None:
    bundle = read_bytes("cosign/oci-attestation.sigstore.json")
    identity, issuer = COSIGN_BUNDLE_IDENTITY
    result = supply.verify_sigstore_bundle(bundle, digest=COSIGN_BUNDLE_SUBJECT,
                                           trusted_root=pgi_root, identity=identity, issuer=issuer)
    assert result.verified is True, result.reason
    assert (result.method, result.signer, result.issuer) == ("sigstore-keyless", identity, issuer)
    assert result.subject_digest == COSIGN_BUNDLE_SUBJECT
    assert result.signed_at == datetime(2025, 2, 28, 19, 18, 11, tzinfo=timezone.utc)
    # without an identity the chain, log and signature are still checked; the signer is reported
    loose = supply.verify_sigstore_bundle(bundle, digest=COSIGN_BUNDLE_SUBJECT,
                                          trusted_root=supply_path(PGI_ROOT))
    assert loose.verified is True and loose.signer == identity and loose.issuer == issuer
    assert "identity was not checked" in loose.reason


def test_cosign_keyless_bundle_refusals(pgi_root, staging_root) -> None:
    bundle = read_bytes("cosign/oci-attestation.sigstore.json")
    identity, issuer = COSIGN_BUNDLE_IDENTITY
    assert_refused(supply.verify_sigstore_bundle(bundle, digest=OTHER, trusted_root=pgi_root),
                   COSIGN_BUNDLE_SUBJECT, OTHER)
    assert_refused(supply.verify_sigstore_bundle(
        bundle, digest=COSIGN_BUNDLE_SUBJECT, trusted_root=pgi_root,
        identity="mallory@example.com", issuer=issuer), "mallory@example.com")
    assert_refused(supply.verify_sigstore_bundle(
        bundle, digest=COSIGN_BUNDLE_SUBJECT, trusted_root=pgi_root,
        identity=identity, issuer="https://accounts.google.com"))
    # the README: the staging root rejects this production bundle
    assert_refused(supply.verify_sigstore_bundle(bundle, digest=COSIGN_BUNDLE_SUBJECT,
                                                 trusted_root=staging_root))
    assert_refused(supply.verify_sigstore_bundle(b"{not json", digest=COSIGN_BUNDLE_SUBJECT,
                                                 trusted_root=pgi_root))
    with pytest.raises(TrustMaterialError, match="trusted root"):
        supply.load_trusted_root(b'{"mediaType": "nope"}')


def test_cosign_keyless_bundle_tampering(pgi_root) -> None:
    doc = read_json("cosign/oci-attestation.sigstore.json")
    envelope = doc["dsseEnvelope"]
    cert = doc["verificationMaterial"]["certificate"]
    targets = [("payload", envelope, "payload", 0),
               ("signature", envelope["signatures"][0], "sig", 24),
               ("certificate", cert, "rawBytes", 40)]
    tried = 0
    for label, holder, key, samples in targets:
        length = b64_length(holder[key])
        for position in (range(length) if not samples else positions(length, samples)):
            tampered = copy.deepcopy(doc)
            target = {"payload": tampered["dsseEnvelope"],
                      "signature": tampered["dsseEnvelope"]["signatures"][0],
                      "certificate": tampered["verificationMaterial"]["certificate"]}[label]
            target[key] = flip_b64(holder[key], position)
            result = supply.verify_sigstore_bundle(json.dumps(tampered),
                                                   digest=COSIGN_BUNDLE_SUBJECT,
                                                   trusted_root=pgi_root)
            assert result.verified is False, (label, position)
            assert result.reason, (label, position)
            tried += 1
    assert tried == b64_length(envelope["payload"]) + 24 + 40


@pytest.mark.parametrize("version", ["0.1", "0.2"])
def test_older_bundle_versions(pgi_root, version: str) -> None:
    # the same signed content in the v0.1/v0.2 wrapping (x509CertificateChain, not
    # certificate); the wrapping is not signed, so it must verify the same
    doc = read_json("cosign/oci-attestation.sigstore.json")
    doc["mediaType"] = f"application/vnd.dev.sigstore.bundle+json;version={version}"
    material = doc["verificationMaterial"]
    material["x509CertificateChain"] = {"certificates": [material.pop("certificate")]}
    result = supply.verify_sigstore_bundle(json.dumps(doc).encode(), digest=COSIGN_BUNDLE_SUBJECT,
                                           trusted_root=pgi_root,
                                           identity=COSIGN_BUNDLE_IDENTITY[0],
                                           issuer=COSIGN_BUNDLE_IDENTITY[1])
    assert result.verified is True, result.reason


# ------------------------------------------------- sigstore, message signature


def test_sigstore_python_message_signature_bundle(staging_root, pgi_root) -> None:
    artifact = read_bytes("sigstore-python/bundle_v3.txt")
    digest = "sha256:" + hashlib.sha256(artifact).hexdigest()
    bundle = read_bytes("sigstore-python/bundle_v3.txt.sigstore")
    identity, issuer = SIGSTORE_PY_IDENTITY
    result = supply.verify_sigstore_bundle(bundle, digest=digest, trusted_root=staging_root,
                                           identity=identity, issuer=issuer)
    assert result.verified is True, result.reason
    assert (result.signer, result.subject_digest) == (identity, digest)
    assert result.signed_at.year == 2024
    # the README: production roots reject this staging bundle
    assert_refused(supply.verify_sigstore_bundle(bundle, digest=digest, trusted_root=pgi_root))
    for position in positions(len(artifact), 12):
        other = "sha256:" + hashlib.sha256(flip(artifact, position)).hexdigest()
        assert_refused(supply.verify_sigstore_bundle(bundle, digest=other,
                                                     trusted_root=staging_root), other)
    doc = json.loads(bundle)
    for path, samples in ((("messageSignature", "signature"), 16),
                          (("verificationMaterial", "certificate", "rawBytes"), 24)):
        holder = doc
        for key in path[:-1]:
            holder = holder[key]
        for position in positions(b64_length(holder[path[-1]]), samples):
            tampered = copy.deepcopy(doc)
            inner = tampered
            for key in path[:-1]:
                inner = inner[key]
            inner[path[-1]] = flip_b64(holder[path[-1]], position)
            assert supply.verify_sigstore_bundle(json.dumps(tampered), digest=digest,
                                                 trusted_root=staging_root).verified is False


# --------------------------------------------------------------------- notation


@pytest.fixture(scope="module")
def notation_ca() -> bytes:
    return read_bytes("notation-go/jws_signature.x5c0.derived.pem")


def notation_manifest_digest() -> str:
    raw = read_bytes(f"notation-go/oci-layout/blobs/sha256/{NOTATION_MANIFEST[7:]}")
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_notation_jws_verifies_against_its_pinned_certificate(notation_ca) -> None:
    assert notation_manifest_digest() == NOTATION_MANIFEST
    envelope = read_bytes("notation-go/jws_signature.sig")
    result = supply.verify_notation_jws(envelope, digest=NOTATION_MANIFEST, size=481,
                                        trust_anchors=[notation_ca])
    assert result.verified is True, result.reason
    assert result.method == "notation-x509"
    assert result.signer == "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US"
    assert result.signed_at == datetime(2023, 3, 14, 8, 10, 2, tzinfo=timezone.utc)
    cert = x509.load_pem_x509_certificate(notation_ca)
    thumb = cert.fingerprint(hashes.SHA256()).hex()
    assert supply.verify_notation_jws(envelope, digest=NOTATION_MANIFEST,
                                      trust_anchors=supply_path(
                                          "notation-go/jws_signature.x5c0.derived.pem"),
                                      thumbprints=json.dumps([thumb])).verified is True
    assert_refused(supply.verify_notation_jws(envelope, digest=NOTATION_MANIFEST,
                                              trust_anchors=[notation_ca],
                                              thumbprints=json.dumps(["00" * 32])), "thumbprint")


def test_notation_jws_refusals(notation_ca) -> None:
    envelope = read_bytes("notation-go/jws_signature.sig")
    assert_refused(supply.verify_notation_jws(envelope, digest=OTHER, trust_anchors=[notation_ca]),
                   NOTATION_MANIFEST)
    assert_refused(supply.verify_notation_jws(envelope, digest=NOTATION_MANIFEST, size=480,
                                              trust_anchors=[notation_ca]), "481")
    stranger = self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048), "other")
    assert_refused(supply.verify_notation_jws(
        envelope, digest=NOTATION_MANIFEST,
        trust_anchors=[stranger.public_bytes(serialization.Encoding.PEM)]), "trusted")
    for position in positions(len(read_bytes(
            f"notation-go/oci-layout/blobs/sha256/{NOTATION_MANIFEST[7:]}")), 10):
        raw = flip(read_bytes(f"notation-go/oci-layout/blobs/sha256/{NOTATION_MANIFEST[7:]}"),
                   position)
        tampered_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        assert_refused(supply.verify_notation_jws(envelope, digest=tampered_digest,
                                                  trust_anchors=[notation_ca]))
    with pytest.raises(TrustMaterialError, match="certificate"):
        supply.verify_notation_jws(envelope, digest=NOTATION_MANIFEST, trust_anchors=[b"junk"])


def test_notation_jws_tampering(notation_ca) -> None:
    doc = json.loads(read_bytes("notation-go/jws_signature.sig"))
    tried = 0
    for key, samples in (("payload", 0), ("protected", 0), ("signature", 32)):
        length = b64_length(doc[key], urlsafe=True)
        for position in (range(length) if not samples else positions(length, samples)):
            tampered = dict(doc, **{key: flip_b64(doc[key], position, urlsafe=True)})
            result = supply.verify_notation_jws(json.dumps(tampered), digest=NOTATION_MANIFEST,
                                                trust_anchors=[notation_ca])
            assert result.verified is False and result.reason, (key, position)
            tried += 1
    leaf = doc["header"]["x5c"][0]
    for position in positions(b64_length(leaf), 48):
        tampered = copy.deepcopy(doc)
        tampered["header"]["x5c"][0] = flip_b64(leaf, position)
        assert supply.verify_notation_jws(json.dumps(tampered), digest=NOTATION_MANIFEST,
                                          trust_anchors=[notation_ca]).verified is False
        tried += 1
    assert tried > 400


def self_signed(key, name: str, *, days: int = 365, code_signing: bool = True,
                issuer_key=None, issuer_cert=None, ca: bool = False) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if code_signing:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def test_notation_signed_here_with_a_ca_chain_and_es256() -> None:
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = self_signed(ca_key, "Test CA", code_signing=False, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = self_signed(leaf_key, "signer", issuer_key=ca_key, issuer_cert=ca)
    target = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST,
              "size": 99}
    envelope = supply.sign_notation_jws(target, leaf_key, [leaf, ca])
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    result = supply.verify_notation_jws(envelope, digest=DIGEST, size=99, trust_anchors=[ca_pem])
    assert result.verified is True, result.reason
    assert result.signer == "CN=signer"
    # expired signatures and unknown critical headers are refused
    soon = supply.sign_notation_jws(target, leaf_key, [leaf, ca],
                                    expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    assert supply.verify_notation_jws(soon, digest=DIGEST, trust_anchors=[ca_pem]).verified
    assert_refused(supply.verify_notation_jws(soon, digest=DIGEST, trust_anchors=[ca_pem],
                                              at=later), "expired")
    crit = supply.sign_notation_jws(target, leaf_key, [leaf, ca],
                                    extra_critical={"io.example.mustUnderstand": "1"})
    assert_refused(supply.verify_notation_jws(crit, digest=DIGEST, trust_anchors=[ca_pem]),
                   "io.example.mustUnderstand")
    # a leaf without the code-signing usage is refused
    plain = self_signed(leaf_key, "plain", issuer_key=ca_key, issuer_cert=ca, code_signing=False)
    assert_refused(supply.verify_notation_jws(
        supply.sign_notation_jws(target, leaf_key, [plain, ca]), digest=DIGEST,
        trust_anchors=[ca_pem]), "code signing")


# ------------------------------------------------------- cosign, key-based


@pytest.fixture(scope="module")
def cosign_key():
    return ec.generate_private_key(ec.SECP256R1())


def pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def test_cosign_key_signature_verifies(cosign_key) -> None:
    payload = supply.cosign_payload(DIGEST, "127.0.0.1:5000/demo/app")
    doc = json.loads(payload)
    assert doc["critical"]["type"] == "cosign container image signature"
    assert doc["critical"]["image"]["docker-manifest-digest"] == DIGEST
    signature = supply.sign_cosign(payload, cosign_key)
    result = supply.verify_cosign_signature(payload, signature, digest=DIGEST,
                                            keys=[pem(ec.generate_private_key(ec.SECP256R1())),
                                                  pem(cosign_key)])
    assert result.verified is True, result.reason
    assert result.method == "cosign-key" and result.signer.startswith("sha256:")
    assert result.subject_digest == DIGEST
    # the spec spells the key Docker-manifest-digest: matched without regard to case
    spelled = json.dumps({"critical": {"identity": {"docker-reference": "x"},
                                       "image": {"Docker-manifest-digest": DIGEST},
                                       "type": "cosign container image signature"},
                          "optional": None}).encode()
    assert supply.verify_cosign_signature(spelled, supply.sign_cosign(spelled, cosign_key),
                                          digest=DIGEST, keys=pem(cosign_key)).verified


def test_cosign_key_signature_refusals_and_tampering(cosign_key, tmp_path) -> None:
    payload = supply.cosign_payload(DIGEST, "127.0.0.1:5000/demo/app")
    signature = supply.sign_cosign(payload, cosign_key)
    key_file = tmp_path / "cosign.pub"
    key_file.write_bytes(pem(cosign_key))
    assert supply.verify_cosign_signature(payload, signature, digest=DIGEST,
                                          keys=key_file).verified
    assert_refused(supply.verify_cosign_signature(payload, signature, digest=OTHER, keys=key_file),
                   DIGEST, OTHER)
    assert_refused(supply.verify_cosign_signature(
        payload, signature, digest=DIGEST, keys=pem(ec.generate_private_key(ec.SECP256R1()))),
        "key")
    for position in range(len(payload)):
        assert supply.verify_cosign_signature(flip(payload, position), signature, digest=DIGEST,
                                              keys=key_file).verified is False, position
    for position in range(b64_length(signature)):
        assert supply.verify_cosign_signature(payload, flip_b64(signature, position),
                                              digest=DIGEST, keys=key_file).verified is False
    wrong_type = payload.replace(b"cosign container image signature", b"something else")
    assert_refused(supply.verify_cosign_signature(
        wrong_type, supply.sign_cosign(wrong_type, cosign_key), digest=DIGEST, keys=key_file),
        "type")
    with pytest.raises(TrustMaterialError, match="public key"):
        supply.verify_cosign_signature(payload, signature, digest=DIGEST, keys=b"junk")


def test_cosign_signature_layer(cosign_key) -> None:
    # a .sig manifest's layer: the payload blob plus the signature annotation
    payload = supply.cosign_payload(DIGEST, "demo/app")
    layer = {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
             "digest": "sha256:" + hashlib.sha256(payload).hexdigest(), "size": len(payload),
             "annotations": {"dev.cosignproject.cosign/signature":
                             supply.sign_cosign(payload, cosign_key)}}
    assert supply.verify_cosign_layer(layer, payload, digest=DIGEST, keys=pem(cosign_key)).verified
    other = supply.cosign_payload(OTHER, "demo/app")
    assert_refused(supply.verify_cosign_layer(layer, other, digest=OTHER, keys=pem(cosign_key)),
                   "layer")
    bare = dict(layer, annotations={})
    assert_refused(supply.verify_cosign_layer(bare, payload, digest=DIGEST, keys=pem(cosign_key)),
                   "dev.cosignproject.cosign/signature")


def test_other_key_types(tmp_path) -> None:
    for key in (ed25519.Ed25519PrivateKey.generate(),
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                ec.generate_private_key(ec.SECP384R1())):
        payload = supply.cosign_payload(DIGEST, "demo/app")
        assert supply.verify_cosign_signature(payload, supply.sign_cosign(payload, key),
                                              digest=DIGEST, keys=pem(key)).verified, key


# ------------------------------------------------------------- DSSE, key-based


def statement(digest: str = DIGEST) -> bytes:
    return json.dumps({"_type": "https://in-toto.io/Statement/v1",
                       "predicateType": "https://slsa.dev/provenance/v1",
                       "subject": [{"name": "demo/app", "digest": {"sha256": digest[7:]}}],
                       "predicate": {}}).encode()


def test_dsse_key_envelope(cosign_key) -> None:
    envelope = supply.sign_dsse(statement(), cosign_key)
    assert envelope["signatures"][0]["keyid"] == ""  # as cosign writes them
    result = supply.verify_dsse_envelope(envelope, digest=DIGEST, keys=pem(cosign_key))
    assert result.verified is True and result.method == "dsse-key", result.reason
    assert_refused(supply.verify_dsse_envelope(envelope, digest=OTHER, keys=pem(cosign_key)),
                   OTHER)
    for position in range(b64_length(envelope["payload"])):
        tampered = dict(envelope, payload=flip_b64(envelope["payload"], position))
        assert supply.verify_dsse_envelope(tampered, digest=DIGEST,
                                           keys=pem(cosign_key)).verified is False
    tampered = dict(envelope, payloadType="application/json")
    assert supply.verify_dsse_envelope(tampered, digest=DIGEST, keys=pem(cosign_key)).verified \
        is False


def test_trivy_attestation_cannot_be_verified(cosign_key) -> None:
    # the README: its public key was never published, so no key verifies it
    envelope = read_bytes("trivy/centos-7-cyclonedx.intoto.jsonl")
    subject = "sha256:be65f488b7764ad3638f236b7b515b3678369a5124c47b8d32916d6487418ea4"
    assert_refused(supply.verify_dsse_envelope(envelope, digest=subject, keys=pem(cosign_key)),
                   "signature")


def test_key_based_sigstore_bundle(cosign_key, pgi_root) -> None:
    envelope = supply.sign_dsse(statement(), cosign_key)
    bundle = supply.sigstore_key_bundle(envelope, hint="demo-key")
    assert json.loads(bundle)["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    result = supply.verify_sigstore_bundle(bundle, digest=DIGEST, trusted_root=pgi_root,
                                           keys=pem(cosign_key))
    assert result.verified is True and result.method == "sigstore-key", result.reason
    assert "transparency log" in result.reason  # offline, key-based: no log to check
    assert_refused(supply.verify_sigstore_bundle(bundle, digest=DIGEST, trusted_root=pgi_root),
                   "keys=")
    doc = json.loads(bundle)
    doc["dsseEnvelope"]["signatures"][0]["sig"] = flip_b64(
        doc["dsseEnvelope"]["signatures"][0]["sig"], 10)
    assert supply.verify_sigstore_bundle(json.dumps(doc), digest=DIGEST, trusted_root=pgi_root,
                                         keys=pem(cosign_key)).verified is False
