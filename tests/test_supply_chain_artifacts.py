"""Supply-chain conventions on a registry, as pure data (``registry_nb.oci.artifacts``).

The digest tags (the OCI fallback tag ``<alg>-<hex>`` and cosign's ``.sig/.att/.sbom``),
the referrers index in the shapes writers produce (with and without ``artifactType`` and
annotations on each descriptor, as go-containerregistry wrote it before and after
ggcr#2269), BuildKit's in-index attestation manifests (read from the real buildkit and
buildx documentation examples in shared/), and the classification of a child manifest
from its own bytes. No network: these run without the test services.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from supply_fixtures import read_bytes, read_json

from registry_nb.errors import InvalidManifestError
from registry_nb.oci import artifacts as art
from registry_nb.oci.manifest import Descriptor, Index, parse_manifest

HEX = "ab" * 32
DIGEST = f"sha256:{HEX}"
OTHER = "sha256:" + "cd" * 32
EMPTY = {"mediaType": art.OCI_EMPTY, "digest": art.EMPTY_DIGEST, "size": 2}


def blob(media_type: str, data: bytes = b"x", **annotations: str) -> dict:
    out = {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
           "size": len(data)}
    if annotations:
        out["annotations"] = dict(annotations)
    return out


def manifest(layers: list[dict], *, config: dict | None = None, artifact_type: str | None = None,
             subject: str | None = DIGEST, annotations: dict | None = None) -> bytes:
    doc: dict = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config or EMPTY
    doc["layers"] = layers
    if subject:
        doc["subject"] = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "digest": subject, "size": 500}
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()


# ----------------------------------------------------------------- digest tags


def test_fallback_and_cosign_tag_names() -> None:
    assert art.fallback_tag(DIGEST) == f"sha256-{HEX}"
    assert [art.cosign_tag(DIGEST, s) for s in ("sig", "att", "sbom")] == \
        [f"sha256-{HEX}.sig", f"sha256-{HEX}.att", f"sha256-{HEX}.sbom"]
    # the spec truncates <ref> to 64 characters, so a sha512 tag keeps the first 64
    long = "sha512:" + "0f" * 64
    assert art.fallback_tag(long) == "sha512-" + ("0f" * 64)[:64]
    with pytest.raises(InvalidManifestError, match="digest"):
        art.fallback_tag("latest")
    with pytest.raises(ValueError, match="sig, att or sbom"):
        art.cosign_tag(DIGEST, "sigs")


def test_digest_tags_are_told_apart_from_real_tags() -> None:
    tags = ["1.0", "latest", f"sha256-{HEX}", f"sha256-{HEX}.sig", f"sha256-{HEX}.att",
            f"sha256-{HEX}.sbom", "sha256-abc", f"sha256-{HEX}.sig.bak", "v1.sig",
            f"SHA256-{HEX}", f"sha256-{'cd' * 32}.sig", "sha512-" + "0f" * 32]
    kept, hidden = art.split_digest_tags(tags)
    assert kept == ["1.0", "latest", "sha256-abc", f"sha256-{HEX}.sig.bak", "v1.sig",
                    f"SHA256-{HEX}"]
    assert [(h.tag, h.kind) for h in hidden] == [
        (f"sha256-{HEX}", "fallback"), (f"sha256-{HEX}.sig", "sig"),
        (f"sha256-{HEX}.att", "att"), (f"sha256-{HEX}.sbom", "sbom"),
        (f"sha256-{'cd' * 32}.sig", "sig"), ("sha512-" + "0f" * 32, "fallback")]
    assert all(h.subject_digest == DIGEST for h in hidden[:4])
    assert hidden[4].subject_digest == OTHER
    # a truncated sha512 tag cannot name its subject in full, but can say whether it fits
    assert hidden[5].subject_digest is None
    assert hidden[5].names("sha512:" + "0f" * 64) and not hidden[5].names(DIGEST)
    assert hidden[0].names(DIGEST) and not hidden[0].names(OTHER)
    assert art.is_digest_tag(f"sha256-{HEX}.att") and not art.is_digest_tag("1.0")
    assert art.parse_digest_tag("latest") is None


# ----------------------------------------------------------- referrers index


def test_referrers_index_new_shape_round_trips() -> None:
    sig = Descriptor("application/vnd.oci.image.manifest.v1+json", OTHER, 700,
                     {"dev.sigstore.bundle.content": "dsse-envelope"},
                     artifact_type=art.SIGSTORE_BUNDLE_V03)
    raw = art.referrers_index([sig])
    doc = json.loads(raw)
    assert doc["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert doc["manifests"][0]["artifactType"] == art.SIGSTORE_BUNDLE_V03
    parsed = art.parse_referrers_index(raw)
    assert parsed == [sig]


def test_referrers_index_old_shape_without_artifact_type() -> None:
    # go-containerregistry before #2269 wrote bare descriptors into the fallback tag
    old = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                     "digest": OTHER, "size": 612}]}).encode()
    [entry] = art.parse_referrers_index(old)
    assert (entry.digest, entry.size, entry.artifact_type, entry.annotations) == \
        (OTHER, 612, None, {})
    # an index with no mediaType at all (some writers leave it out) is read the same way
    bare = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert art.parse_referrers_index(bare) == []
    with pytest.raises(InvalidManifestError):
        art.parse_referrers_index(b'{"schemaVersion": 2, "manifests": {}}')
    with pytest.raises(InvalidManifestError):
        art.parse_referrers_index(b"not json")


def test_merge_referrers_keeps_concurrent_entries() -> None:
    first = Descriptor("application/vnd.oci.image.manifest.v1+json", OTHER, 10,
                       artifact_type="application/spdx+json")
    second = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "ef" * 32, 11,
                        artifact_type=art.NOTATION_SIGNATURE)
    raw = art.merge_referrers(None, add=[first])
    # another writer added `second` meanwhile: merging onto what is there now keeps both
    raw = art.merge_referrers(art.referrers_index([first, second]), add=[first])
    assert [d.digest for d in art.parse_referrers_index(raw)] == [first.digest, second.digest]
    # re-adding a digest replaces its descriptor, not duplicates it
    updated = Descriptor(first.media_type, first.digest, 10, {"a": "b"},
                         artifact_type="application/spdx+json")
    merged = art.parse_referrers_index(art.merge_referrers(raw, add=[updated]))
    assert merged == [updated, second]
    assert art.parse_referrers_index(art.merge_referrers(raw, remove=[first.digest])) == [second]


def test_referrer_descriptor_is_read_from_the_child_manifest() -> None:
    raw = manifest([blob("application/jose+json")], artifact_type=art.NOTATION_SIGNATURE,
                   annotations={"io.cncf.notary.x509chain.thumbprint#S256": "[\"ab\"]"})
    entry = art.referrer_descriptor(raw)
    assert entry.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert (entry.size, entry.artifact_type) == (len(raw), art.NOTATION_SIGNATURE)
    assert entry.annotations == {"io.cncf.notary.x509chain.thumbprint#S256": "[\"ab\"]"}
    # OCI 1.0 shape: no artifactType, the config media type stands in for it
    old = manifest([blob("application/jose+json")],
                   config=blob(art.NOTATION_SIGNATURE, b"{}"))
    assert art.referrer_descriptor(old).artifact_type == art.NOTATION_SIGNATURE
    assert art.effective_artifact_type(json.loads(old)) == art.NOTATION_SIGNATURE


# ------------------------------------------------------ in-index attestations


def test_buildkit_attestation_storage_index() -> None:
    raw = read_bytes("buildkit-buildx/buildkit.attestation-storage.image-index.json")
    index = parse_manifest(raw)
    assert isinstance(index, Index)
    [entry] = art.in_index_attestations(index)
    assert entry.descriptor.digest.startswith("sha256:02cb9aa7")
    assert entry.subject_digest == \
        "sha256:23678f31b3b3586c4fb318aecfe64a96a1f0916ba8faf9b2be2abee63fa9e827"
    assert entry.found_by == art.IN_INDEX


@pytest.mark.parametrize("name, platforms", [
    ("buildx.imagetools-inspect.crazymax-buildkit-attest.manifest.json", 1),
    ("buildx.imagetools-inspect.moby-buildkit-master.manifest.json", 6),
])
def test_buildx_real_indexes(name: str, platforms: int) -> None:
    doc = read_json(f"buildkit-buildx/{name}")
    # buildx's formatter adds top-level digest/size; the index itself is the rest
    doc.pop("digest"), doc.pop("size")
    index = parse_manifest(json.dumps(doc).encode())
    assert isinstance(index, Index)
    found = art.in_index_attestations(index)
    images = [d.digest for d in index.manifests if not d.is_attestation]
    assert len(found) == len(images) == platforms
    assert sorted(a.subject_digest for a in found) == sorted(images)
    assert {a.descriptor.digest for a in found}.isdisjoint(images)


def test_in_index_attestation_of_the_artifact_type_shape() -> None:
    # BuildKit v0.32+ lists the attestation with artifactType on its descriptor too
    image = Descriptor("application/vnd.oci.image.manifest.v1+json", DIGEST, 500,
                       platform=None)
    att = Descriptor("application/vnd.oci.image.manifest.v1+json", OTHER, 800,
                     {"vnd.docker.reference.digest": DIGEST,
                      "vnd.docker.reference.type": "attestation-manifest"},
                     artifact_type=art.DOCKER_ATTESTATION_MANIFEST)
    stray = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "ee" * 32, 9,
                       artifact_type=art.DOCKER_ATTESTATION_MANIFEST)
    index = Index.build([image, att, stray])
    found = art.in_index_attestations(index)
    assert [(a.descriptor.digest, a.subject_digest) for a in found] == \
        [(OTHER, DIGEST), (stray.digest, None)]


# ---------------------------------------------------------- classification


def test_buildkit_attestation_manifest_fixture() -> None:
    raw = read_bytes("buildkit-buildx/buildkit.attestation-storage.attestation-manifest.json")
    c = art.classify_manifest(raw)
    assert (c.kind, c.format) == ("sbom", "spdx")
    assert c.attestation_shape == "artifact"
    assert c.artifact_type == art.DOCKER_ATTESTATION_MANIFEST
    assert c.subject_digest == \
        "sha256:23678f31b3b3586c4fb318aecfe64a96a1f0916ba8faf9b2be2abee63fa9e827"
    [part] = c.parts
    assert (part.kind, part.format, part.predicate_type, part.envelope) == \
        ("sbom", "spdx", "https://spdx.dev/Document", "in-toto")


def test_legacy_fake_config_attestation_with_two_predicates() -> None:
    config = blob("application/vnd.oci.image.config.v1+json",
                  b'{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers"}}')
    raw = manifest([
        blob("application/vnd.in-toto+json", b"p",
             **{"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}),
        blob("application/vnd.in-toto+json", b"s",
             **{"in-toto.io/predicate-type": "https://spdx.dev/Document"}),
    ], config=config, subject=None)
    c = art.classify_manifest(raw)
    assert (c.kind, c.attestation_shape, c.subject_digest) == ("attestation", "fake-config", None)
    assert [(p.kind, p.format) for p in c.parts] == [("provenance", "slsa-v0.2"), ("sbom", "spdx")]
    assert c.kinds == ("provenance", "sbom")


SIMPLE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"


@pytest.mark.parametrize("raw, expected", [
    # cosign legacy .sig: a small image config, one simple-signing layer per signature
    (manifest([blob(SIMPLE, **{"dev.cosignproject.cosign/signature": "MEUC"})],
              config=blob("application/vnd.oci.image.config.v1+json", b"{}"), subject=None),
     ("signature", "cosign", "simple-signing")),
    # cosign 2.x experimental OCI 1.1 signature
    (manifest([blob(SIMPLE)], artifact_type=art.COSIGN_ARTIFACT_SIG,
              config=blob(art.COSIGN_ARTIFACT_SIG, b"{}")),
     ("signature", "cosign", "simple-signing")),
    # cosign .att: DSSE envelopes with a predicateType annotation
    (manifest([blob(DSSE, **{"predicateType": "https://slsa.dev/provenance/v1"})],
              config=blob("application/vnd.oci.image.config.v1+json", b"{}"), subject=None),
     ("provenance", "slsa-v1", "dsse")),
    (manifest([blob(DSSE, **{"predicateType": "https://cyclonedx.org/bom"})], subject=None,
              config=blob("application/vnd.oci.image.config.v1+json", b"{}")),
     ("sbom", "cyclonedx", "dsse")),
    (manifest([blob(DSSE, **{"predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1"})],
              config=blob("application/vnd.oci.image.config.v1+json", b"{}"), subject=None),
     ("vuln-report", "cosign-vuln", "dsse")),
    # cosign .sbom (deprecated): cosign's own SPDX media type
    (manifest([blob("text/spdx+json")], subject=None,
              config=blob("application/vnd.oci.image.config.v1+json", b"{}")),
     ("sbom", "spdx", None)),
    # cosign v3 default: a sigstore bundle v0.3 referrer, signature or attestation
    (manifest([blob(art.SIGSTORE_BUNDLE_V03)], artifact_type=art.SIGSTORE_BUNDLE_V03,
              annotations={"dev.sigstore.bundle.content": "dsse-envelope",
                           "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"}),
     ("signature", "sigstore-bundle", "sigstore-bundle")),
    (manifest([blob(art.SIGSTORE_BUNDLE_V03)], artifact_type=art.SIGSTORE_BUNDLE_V03,
              annotations={"dev.sigstore.bundle.content": "dsse-envelope",
                           "dev.sigstore.bundle.predicateType": "https://slsa.dev/provenance/v1"}),
     ("provenance", "slsa-v1", "sigstore-bundle")),
    # notation, OCI 1.1 and OCI 1.0 shapes, JWS and COSE
    (manifest([blob("application/jose+json")], artifact_type=art.NOTATION_SIGNATURE),
     ("signature", "notation", "jws")),
    (manifest([blob("application/cose")], config=blob(art.NOTATION_SIGNATURE, b"{}")),
     ("signature", "notation", "cose")),
    # trivy referrer put / oras attach with SBOM and report types
    (manifest([blob("application/vnd.cyclonedx+json")],
              artifact_type="application/vnd.cyclonedx+json"), ("sbom", "cyclonedx", None)),
    (manifest([blob("application/spdx+json")], artifact_type="application/spdx+json"),
     ("sbom", "spdx", None)),
    (manifest([blob("application/vnd.syft+json")], artifact_type="application/vnd.syft+json"),
     ("sbom", "syft", None)),
    (manifest([blob("application/sarif+json")], artifact_type="application/sarif+json"),
     ("vuln-report", "sarif", None)),
    (manifest([blob("application/octet-stream")], artifact_type="application/vnd.example+type"),
     ("other", None, None)),
])
def test_classify_child_manifests(raw: bytes, expected: tuple) -> None:
    c = art.classify_manifest(raw)
    assert (c.kind, c.format, c.parts[0].envelope if c.parts else None) == expected
    assert c.kind in art.KINDS


def test_classification_reads_the_manifest_not_the_index_entry() -> None:
    raw = manifest([blob("application/jose+json")], artifact_type=art.NOTATION_SIGNATURE,
                   subject=OTHER)
    c = art.classify_manifest(json.loads(raw))  # a dict works as well as bytes
    assert (c.kind, c.subject_digest) == ("signature", OTHER)
    # the pre-OCI-1.1 artifact manifest (blobs, not layers) still classifies
    old = json.dumps({"mediaType": "application/vnd.oci.artifact.manifest.v1+json",
                      "artifactType": "application/vnd.cncf.notary.signature",
                      "blobs": [blob("application/jose+json")],
                      "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                  "digest": DIGEST, "size": 1}}).encode()
    c = art.classify_manifest(old)
    assert (c.kind, c.format, c.subject_digest) == ("signature", "notation", DIGEST)
    # a plain runnable image is not a supply-chain artifact
    image = manifest([blob("application/vnd.oci.image.layer.v1.tar+gzip")], subject=None,
                     config=blob("application/vnd.oci.image.config.v1+json", b"{}"))
    assert art.classify_manifest(image).kind == "other"
    with pytest.raises(InvalidManifestError):
        art.classify_manifest(b"[1, 2]")


def test_predicate_and_media_type_vocabulary() -> None:
    assert art.classify_predicate("https://slsa.dev/provenance/v0.2") == ("provenance", "slsa-v0.2")
    assert art.classify_predicate("https://slsa.dev/provenance/v1") == ("provenance", "slsa-v1")
    assert art.classify_predicate("https://spdx.dev/Document/v2.3") == ("sbom", "spdx")
    assert art.classify_predicate("https://cyclonedx.org/bom/v1.6") == ("sbom", "cyclonedx")
    assert art.classify_predicate("https://openvex.dev/ns/v0.2.0") == ("vuln-report", "openvex")
    assert art.classify_predicate("https://example.com/mine") == ("other", None)
    assert art.classify_media_type("application/vnd.cyclonedx+xml") == ("sbom", "cyclonedx")
    assert set(art.FOUND_BY) == {"referrers-api", "fallback-tag", "cosign-tag", "in-index"}


def test_import_of_registry_nb_oci_stays_light() -> None:
    code = ("import sys, registry_nb.oci.artifacts; "
            "heavy = {'sigstore', 'cyclonedx', 'spdx_tools', 'cryptography', 'pydantic'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
