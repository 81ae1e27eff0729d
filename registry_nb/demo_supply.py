"""A demo registry's supply chain: images with every kind of attachment, and tampered copies.

:func:`seed_supply_chain_demo` pushes, into one repository of a registry, images signed
with a cosign ``.sig`` tag, a cosign v3 sigstore bundle referrer and a notation JWS
referrer (each with a tampered twin), an index carrying BuildKit-style in-index
attestations (max-mode SLSA provenance and an SPDX SBOM) that only the index signs, an
SBOM and provenance attached as referrers, an unsigned image and an orphan fallback tag.
Keys and certificates are made on the spot (cryptography); signatures with
:mod:`registry_nb.audits.supply.sign`. No Docker engine is needed. Seeding again gives the
same tags and attachments (the fallback tags are rewritten, not added to).
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .audits import supply
from .images.referrers import add_to_fallback, attach
from .oci import OCI_INDEX, Descriptor, Index, Manifest, Platform
from .oci.artifacts import (
    COSIGN_SIGN_PREDICATE,
    COSIGN_SIMPLE_SIGNING,
    DOCKER_ATTESTATION_MANIFEST,
    DSSE_ENVELOPE,
    EMPTY_DIGEST,
    IN_TOTO,
    NOTATION_SIGNATURE,
    SIGSTORE_BUNDLE_V03,
    cosign_tag,
    fallback_tag,
)

if TYPE_CHECKING:
    from .registry import ContainerRegistry

__all__ = ["seed_supply_chain_demo"]

_EMPTY = Descriptor("application/vnd.oci.empty.v1+json", EMPTY_DIGEST, 2)
SPDX = "application/spdx+json"


def _image(reg: ContainerRegistry, repository: str, tag: str) -> str:
    with tempfile.TemporaryDirectory(prefix="registry-nb-demo-") as tmp:
        Path(tmp, "hello.txt").write_text(f"{repository}:{tag}\n")
        return str(reg.image_from_directory(tmp, repository, tag, created=0)["digest"])


def _manifest(reg: ContainerRegistry, repository: str, blobs: list[tuple[str, bytes, dict]],
              *, artifact_type: str | None, subject: str | None,
              annotations: dict[str, str] | None = None) -> Manifest:
    client = reg.client
    client.upload_blob(repository, b"{}", EMPTY_DIGEST)
    layers = []
    for media_type, data, notes in blobs:
        layer = Descriptor.for_content(media_type, data, annotations=notes)
        client.upload_blob(repository, data, layer.digest)
        layers.append(layer)
    head = client.head_manifest(repository, subject) if subject else None
    return Manifest.build(_EMPTY, layers, annotations=annotations, artifact_type=artifact_type,
                          subject=Descriptor(head.media_type or "", subject, head.size or 0)
                          if head and subject else None)


def _image_without_attachments(reg: ContainerRegistry, repository: str, tag: str) -> str:
    """:func:`_image`, with the fallback tag an earlier seeding wrote for it emptied: what
    that seeding attached (signed with its own keys) is not listed next to this one's."""
    digest = _image(reg, repository, tag)
    if reg.client.head_manifest(repository, fallback_tag(digest)) is not None:
        empty = Index.build([], OCI_INDEX)
        reg.client.put_manifest(repository, fallback_tag(digest), empty.raw, empty.media_type)
    return digest


def _flip_b64(text: str, at: int = 10) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _cosign_sig(reg: ContainerRegistry, repository: str, digest: str, key: Any, *,
                tamper: bool = False) -> None:
    payload = supply.cosign_payload(digest, f"{reg.registry_host}/{repository}")
    signature = supply.sign_cosign(payload, key)
    if tamper:
        signature = _flip_b64(signature)
    sig = _manifest(reg, repository, [(COSIGN_SIMPLE_SIGNING, payload,
                                       {"dev.cosignproject.cosign/signature": signature})],
                    artifact_type=None, subject=None)
    reg.client.put_manifest(repository, cosign_tag(digest, "sig"), sig.raw, sig.media_type)


def _statement(digest: str, predicate_type: str, predicate: Any) -> bytes:
    return json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": predicate_type,
                       "subject": [{"name": "demo", "digest": {"sha256": digest[7:]}}],
                       "predicate": predicate}).encode()


def _bundle(reg: ContainerRegistry, repository: str, digest: str, key: Any, *,
            tamper: bool = False) -> None:
    statement = _statement(digest, COSIGN_SIGN_PREDICATE, {})
    envelope = supply.sign_dsse(statement, key)
    if tamper:
        envelope["signatures"][0]["sig"] = _flip_b64(envelope["signatures"][0]["sig"])
    notes = {"dev.sigstore.bundle.content": "dsse-envelope",
             "dev.sigstore.bundle.predicateType": COSIGN_SIGN_PREDICATE,
             "org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
    child = _manifest(reg, repository, [(SIGSTORE_BUNDLE_V03,
                                         supply.sigstore_key_bundle(envelope, hint="demo"), {})],
                      artifact_type=SIGSTORE_BUNDLE_V03, subject=digest, annotations=notes)
    attach(reg.client, repository, child, digest)


def _certificates() -> tuple[Any, list[Any]]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)

    def cert(key: Any, name: str, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer.subject if issuer else subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        return builder.sign(issuer_key or key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert(ca_key, "registry-nb demo CA", None, None, True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    return leaf_key, [cert(leaf_key, "registry-nb demo signer", ca, ca_key, False), ca]


def _notation(reg: ContainerRegistry, repository: str, digest: str, key: Any, chain: list[Any],
              *, tamper: bool = False) -> None:
    head = reg.client.head_manifest(repository, digest)
    assert head is not None
    target = {"mediaType": head.media_type, "digest": digest, "size": head.size}
    envelope = json.loads(supply.sign_notation_jws(target, key, chain))
    if tamper:
        text = envelope["signature"]
        envelope["signature"] = text[:4] + ("A" if text[4] != "A" else "B") + text[5:]
    child = _manifest(reg, repository, [("application/jose+json",
                                         json.dumps(envelope).encode(), {})],
                      artifact_type=NOTATION_SIGNATURE, subject=digest)
    attach(reg.client, repository, child, digest)


def _provenance(digest: str, base: str, base_digest: str, *, mode: str) -> bytes:
    args = {"build-arg:VERSION": "1.0"}
    if mode == "max":
        args["build-arg:API_TOKEN"] = "not-a-real-token"
    host, _, rest = base.partition("/")
    name, _, tag = rest.rpartition(":")
    uri = f"pkg:docker/{host.replace(':', '%3A')}/{name}@{tag}?platform=linux%2Famd64"
    predicate = {
        "buildDefinition": {
            "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/"
                         "slsa-definitions.md",
            "externalParameters": {
                "configSource": {"uri": "https://example.invalid/demo/app.git#main",
                                 "digest": {"sha1": "1" * 40}, "path": "Dockerfile"},
                "request": {"frontend": "dockerfile.v0", "args": args}},
            "resolvedDependencies": [{"uri": uri, "digest": {"sha256": base_digest[7:]}}]},
        "runDetails": {"builder": {"id": "https://example.invalid/ci/run/1"},
                       "metadata": {"invocationID": "demo", "startedOn": "2026-01-01T00:00:00Z",
                                    "finishedOn": "2026-01-01T00:01:00Z",
                                    "buildkit_metadata": {"vcs": {
                                        "source": "https://example.invalid/demo/app.git",
                                        "revision": "1" * 40}}}}}
    if mode == "max":
        predicate["buildDefinition"]["internalParameters"] = {"buildConfig": {"llbDefinition": []}}
    return _statement(digest, "https://slsa.dev/provenance/v1", predicate)


def _spdx(name: str) -> bytes:
    return json.dumps({
        "spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": name,
        "dataLicense": "CC0-1.0", "documentNamespace": f"https://example.invalid/{name}",
        "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: registry-nb"]},
        "packages": [{"SPDXID": f"SPDXRef-{n}", "name": n, "versionInfo": v,
                      "downloadLocation": "NOASSERTION",
                      "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER",
                                        "referenceType": "purl",
                                        "referenceLocator": f"pkg:generic/{n}@{v}"}]}
                     for n, v in (("busybox", "1.36.1"), ("musl", "1.2.4"))]}).encode()


def seed_supply_chain_demo(reg: ContainerRegistry, repository: str = "supply/demo"
                           ) -> dict[str, Any]:
    """Push the supply-chain demo into ``repository`` (and ``<repository>-base``).

    Returns ``{"repository", "public_key" (PEM of the cosign key), "trust_anchors" (PEM
    of the notation CA), "verified" (tag -> whether its signature should verify)}``;
    pass the key and the CA to ``supply_chain_frame(keys=…, trust_anchors=…)``.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    leaf_key, chain = _certificates()
    base_repo = f"{repository}-base"
    old_base = _image(reg, base_repo, "1")
    _image(reg, base_repo, "moved")  # the tag 1 moves on below: base-image drift
    reg.copy_image(f"{reg.registry_host}/{base_repo}:moved", f"{reg.registry_host}/{base_repo}:1")
    base = f"{reg.registry_host}/{base_repo}:1"

    verified: dict[str, bool] = {}
    for tag, tamper in (("cosign", False), ("cosign-tampered", True)):
        digest = _image_without_attachments(reg, repository, tag)
        _cosign_sig(reg, repository, digest, key, tamper=tamper)
        verified[tag] = not tamper
        if not tamper:  # an SBOM and signed provenance attached as referrers
            sbom = _manifest(reg, repository, [(SPDX, _spdx(tag), {})], artifact_type=SPDX,
                             subject=digest)
            attach(reg.client, repository, sbom, digest)
            envelope = supply.sign_dsse(_provenance(digest, base, old_base, mode="min"), key)
            prov = _manifest(reg, repository, [(DSSE_ENVELOPE, json.dumps(envelope).encode(),
                                                {"predicateType":
                                                 "https://slsa.dev/provenance/v1"})],
                             artifact_type="application/vnd.in-toto+json", subject=digest)
            attach(reg.client, repository, prov, digest)
    for tag, tamper in (("bundle", False), ("bundle-tampered", True)):
        digest = _image_without_attachments(reg, repository, tag)
        _bundle(reg, repository, digest, key, tamper=tamper)
        verified[tag] = not tamper
    for tag, tamper in (("notation", False), ("notation-tampered", True)):
        digest = _image_without_attachments(reg, repository, tag)
        _notation(reg, repository, digest, leaf_key, chain, tamper=tamper)
        verified[tag] = not tamper

    # BuildKit-style index: one platform plus its attestation manifest; only the index signed
    platform_digest = _image(reg, repository, "buildkit-amd64")
    attestation = _manifest(reg, repository, [
        (IN_TOTO, _provenance(platform_digest, base, old_base, mode="max"),
         {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v1"}),
        (IN_TOTO, _statement(platform_digest, "https://spdx.dev/Document",
                             json.loads(_spdx("buildkit"))),
         {"in-toto.io/predicate-type": "https://spdx.dev/Document"})],
        artifact_type=DOCKER_ATTESTATION_MANIFEST, subject=platform_digest)
    reg.client.put_manifest(repository, attestation.digest, attestation.raw,
                            attestation.media_type)
    platform_head = reg.client.head_manifest(repository, platform_digest)
    assert platform_head is not None
    index = Index.build([
        Descriptor(platform_head.media_type or "", platform_digest, platform_head.size or 0,
                   platform=Platform("linux", "amd64")),
        Descriptor(attestation.media_type, attestation.digest, attestation.size,
                   {"vnd.docker.reference.type": "attestation-manifest",
                    "vnd.docker.reference.digest": platform_digest},
                   platform=Platform("unknown", "unknown"))], OCI_INDEX)
    reg.client.put_manifest(repository, "buildkit", index.raw, index.media_type)
    _cosign_sig(reg, repository, index.digest, key)
    verified["buildkit"] = True
    _image_without_attachments(reg, repository, "unsigned")
    verified["unsigned"] = False
    # an orphan: a fallback tag of nothing (the same one every seeding, so none pile up)
    gone = "sha256:" + hashlib.sha256(f"{repository} orphan".encode()).hexdigest()
    left = _manifest(reg, repository, [(SPDX, _spdx("orphan"), {})], artifact_type=SPDX,
                     subject=None)
    reg.client.put_manifest(repository, left.digest, left.raw, left.media_type)
    add_to_fallback(reg.client, repository, gone, [Descriptor(left.media_type, left.digest,
                                                              left.size, artifact_type=SPDX)])
    return {"repository": repository, "verified": verified,
            "public_key": key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            "trust_anchors": chain[1].public_bytes(serialization.Encoding.PEM)}
