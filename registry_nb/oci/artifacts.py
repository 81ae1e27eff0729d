"""Supply-chain conventions on a registry, as pure data (no I/O).

Four ways attach a signature, SBOM or attestation to an image, and this module knows
the shape of each (sources in ``shared/docs/SUPPLY_CHAIN.md``):

- the OCI 1.1 referrers API, whose answer is an index of descriptors;
- the referrers *fallback tag* ``<alg>-<hex>`` on registries without that API, whose
  index go-containerregistry wrote without ``artifactType`` and annotations before
  ggcr#2269, so each child is classified from its own manifest, never from the entry;
- cosign's tags ``sha256-<hex>.sig``, ``.att`` and ``.sbom``;
- BuildKit's attestation manifests inside the image index (``unknown/unknown``), in
  the legacy fake-config shape and the ``artifactType`` shape of BuildKit v0.32+.

:func:`classify_manifest` tells what a child manifest is (kind, format, and one
:class:`Part` per layer); ``found_by`` values come from :data:`FOUND_BY`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidManifestError
from .jsonfields import load_json
from .manifest import Descriptor, Index
from .mediatypes import MAX_MANIFEST_BYTES, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST
from .reference import sha256_digest

__all__ = [
    "FOUND_BY", "REFERRERS_API", "FALLBACK_TAG", "COSIGN_TAG", "IN_INDEX",
    "KINDS", "SIGNATURE", "SBOM", "PROVENANCE", "VULN_REPORT", "ATTESTATION", "OTHER",
    "DigestTag", "fallback_tag", "cosign_tag", "parse_digest_tag", "is_digest_tag",
    "split_digest_tags",
    "referrers_index", "parse_referrers_index", "merge_referrers", "referrer_descriptor",
    "effective_artifact_type",
    "InIndexAttestation", "in_index_attestations",
    "Part", "Classification", "classify_manifest", "classify_predicate", "classify_media_type",
]

# ------------------------------------------------------------------ vocabulary

#: How an attachment was found (the ``found_by`` column).
REFERRERS_API = "referrers-api"
FALLBACK_TAG = "fallback-tag"
COSIGN_TAG = "cosign-tag"
IN_INDEX = "in-index"
FOUND_BY = (REFERRERS_API, FALLBACK_TAG, COSIGN_TAG, IN_INDEX)

#: What an attachment is.
SIGNATURE = "signature"
SBOM = "sbom"
PROVENANCE = "provenance"
VULN_REPORT = "vuln-report"
ATTESTATION = "attestation"  # a manifest holding several kinds (BuildKit, cosign .att)
OTHER = "other"
KINDS = (SIGNATURE, SBOM, PROVENANCE, VULN_REPORT, ATTESTATION, OTHER)

EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"  # OCI 1.1-rc only
IN_TOTO = "application/vnd.in-toto+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
COSIGN_SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ARTIFACT_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
DOCKER_ATTESTATION_MANIFEST = "application/vnd.docker.attestation.manifest.v1+json"
#: Index annotations BuildKit puts on attestation entries.
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
#: Layer annotations naming the predicate (BuildKit, cosign .att) and bundle content.
PREDICATE_ANNOTATIONS = ("in-toto.io/predicate-type", "predicateType",
                         "dev.sigstore.bundle.predicateType")
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

#: Media types (artifactType, config or layer) -> (kind, format, envelope).
_MEDIA_TYPES: dict[str, tuple[str, str | None, str | None]] = {
    COSIGN_SIMPLE_SIGNING: (SIGNATURE, "cosign", "simple-signing"),
    COSIGN_ARTIFACT_SIG: (SIGNATURE, "cosign", None),
    NOTATION_SIGNATURE: (SIGNATURE, "notation", None),
    "application/jose+json": (SIGNATURE, "notation", "jws"),
    "application/cose": (SIGNATURE, "notation", "cose"),
    "application/spdx+json": (SBOM, "spdx", None),
    "text/spdx+json": (SBOM, "spdx", None),
    "text/spdx": (SBOM, "spdx", None),
    "application/spdx": (SBOM, "spdx", None),
    "application/vnd.cyclonedx+json": (SBOM, "cyclonedx", None),
    "application/vnd.cyclonedx+xml": (SBOM, "cyclonedx", None),
    "application/vnd.cyclonedx": (SBOM, "cyclonedx", None),
    "application/vnd.syft+json": (SBOM, "syft", None),
    "application/sarif+json": (VULN_REPORT, "sarif", None),
    "application/vnd.openvex+json": (VULN_REPORT, "openvex", None),
    DOCKER_ATTESTATION_MANIFEST: (ATTESTATION, None, None),
}
_SIGSTORE_BUNDLE_RE = re.compile(
    r"application/vnd\.dev\.sigstore\.bundle(?:\.v0\.[0-9]+\+json|\+json;version=0\.[0-9]+)")

#: Predicate type prefixes -> (kind, format); versioned forms (``…/v1.6``) match too.
_PREDICATES: list[tuple[str, str, str]] = [
    ("https://slsa.dev/provenance/v0.1", PROVENANCE, "slsa-v0.1"),
    ("https://slsa.dev/provenance/v0.2", PROVENANCE, "slsa-v0.2"),
    ("https://slsa.dev/provenance/v1", PROVENANCE, "slsa-v1"),
    ("https://spdx.dev/Document", SBOM, "spdx"),
    ("https://cyclonedx.org/bom", SBOM, "cyclonedx"),
    ("https://syft.dev/bom", SBOM, "syft"),
    ("https://cosign.sigstore.dev/attestation/vuln/v1", VULN_REPORT, "cosign-vuln"),
    ("https://in-toto.io/attestation/vulns", VULN_REPORT, "in-toto-vulns"),
    ("https://openvex.dev/ns", VULN_REPORT, "openvex"),
    (COSIGN_SIGN_PREDICATE, SIGNATURE, "sigstore-bundle"),
]


def classify_predicate(predicate_type: str | None) -> tuple[str, str | None]:
    """``(kind, format)`` of an in-toto predicate type; ``("other", None)`` if unknown."""
    for prefix, kind, fmt in _PREDICATES:
        if predicate_type and (predicate_type == prefix or predicate_type.startswith(prefix + "/")
                               or predicate_type.startswith(prefix + ".")):
            return kind, fmt
    return OTHER, None


def classify_media_type(media_type: str | None) -> tuple[str, str | None]:
    """``(kind, format)`` of an artifact or layer media type; ``("other", None)`` if unknown."""
    kind, fmt, _ = _media_type_info(media_type)
    return kind, fmt


def _media_type_info(media_type: str | None) -> tuple[str, str | None, str | None]:
    if not media_type:
        return OTHER, None, None
    base = media_type.split(";")[0].strip() if "sigstore" not in media_type else media_type
    if _SIGSTORE_BUNDLE_RE.fullmatch(base.replace(" ", "")):
        return SIGNATURE, "sigstore-bundle", "sigstore-bundle"
    return _MEDIA_TYPES.get(base, (OTHER, None, None))


# ------------------------------------------------------------------ digest tags

_TAG_RE = re.compile(r"(?P<alg>sha256|sha512)-(?P<hex>[0-9a-f]{64})(?:\.(?P<suffix>sig|att|sbom))?")
_DIGEST_RE = re.compile(r"(?P<alg>[a-z0-9]+(?:[+._-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)")
_TAG_CHAR = re.compile(r"[^a-zA-Z0-9._-]")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}


@dataclass(frozen=True)
class DigestTag:
    """A tag that names another manifest by digest: a fallback index or a cosign tag.

    ``kind`` is ``"fallback"``, ``"sig"``, ``"att"`` or ``"sbom"``. ``subject_digest`` is
    the digest it names, or None when the tag holds only a truncated prefix (sha512).
    """

    tag: str
    kind: str
    algorithm: str
    encoded: str

    @property
    def subject_digest(self) -> str | None:
        """The full digest this tag names, when the tag is long enough to hold it."""
        if len(self.encoded) == _HEX_LENGTH.get(self.algorithm, -1):
            return f"{self.algorithm}:{self.encoded}"
        return None

    def names(self, digest: str) -> bool:
        """True when this tag is the one written for ``digest``."""
        algorithm, _, encoded = digest.partition(":")
        return algorithm == self.algorithm and encoded[:64] == self.encoded


def _split_digest(digest: str) -> tuple[str, str]:
    match = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if not match:
        raise InvalidManifestError(
            f"{digest!r} is not a digest",
            hint="Name the subject by its manifest digest, such as sha256:<64 hex digits>.")
    return match["alg"], match["hex"]


def fallback_tag(digest: str) -> str:
    """The referrers fallback tag of ``digest``: ``<alg>-<hex>``, truncated as the spec says.

    The algorithm keeps 32 characters, the encoded part 64, and characters a tag may
    not hold become ``-``.
    """
    algorithm, encoded = _split_digest(digest)
    return _TAG_CHAR.sub("-", algorithm[:32]) + "-" + _TAG_CHAR.sub("-", encoded[:64])


def cosign_tag(digest: str, suffix: str) -> str:
    """cosign's tag for ``digest``: ``sha256-<hex>.sig`` (suffix ``sig``, ``att`` or ``sbom``)."""
    if suffix not in ("sig", "att", "sbom"):
        raise ValueError(f"cosign tags end in sig, att or sbom, not {suffix!r}")
    algorithm, encoded = _split_digest(digest)
    return f"{algorithm}-{encoded}.{suffix}"


def parse_digest_tag(tag: str) -> DigestTag | None:
    """The :class:`DigestTag` a tag is, or None for an ordinary tag."""
    match = _TAG_RE.fullmatch(tag) if isinstance(tag, str) else None
    if not match:
        return None
    return DigestTag(tag, match["suffix"] or "fallback", match["alg"], match["hex"])


def is_digest_tag(tag: str) -> bool:
    """True for fallback and cosign tags (``sha256-<hex>[.sig|.att|.sbom]``)."""
    return parse_digest_tag(tag) is not None


def split_digest_tags(tags: Iterable[str]) -> tuple[list[str], list[DigestTag]]:
    """``(ordinary tags, digest tags)`` in the order given, so listings can hide the latter."""
    kept: list[str] = []
    hidden: list[DigestTag] = []
    for tag in tags:
        parsed = parse_digest_tag(tag)
        if parsed is None:
            kept.append(tag)
        else:
            hidden.append(parsed)
    return kept, hidden


# ------------------------------------------------------------------ referrers index

def _load(raw: bytes | str | Mapping[str, Any], what: str) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    return load_json(raw, what, MAX_MANIFEST_BYTES)


def _descriptor(data: Any, where: str) -> Descriptor:
    return Descriptor.from_dict(data, where=where, kind="referrers index")


def referrers_index(referrers: Iterable[Descriptor]) -> bytes:
    """An OCI image index listing ``referrers``, as a referrers answer or fallback tag holds."""
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [d.to_dict() for d in referrers]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_referrers_index(raw: bytes | str | Mapping[str, Any]) -> list[Descriptor]:
    """The descriptors of a referrers answer or fallback index, old shape or new.

    Entries of the old shape have ``artifact_type`` None and no annotations: read the
    child manifest (:func:`classify_manifest`) to learn what each is.
    """
    data = _load(raw, "referrers index")
    entries = data.get("manifests", [])
    if not isinstance(entries, list):
        raise InvalidManifestError(
            "invalid referrers index: field 'manifests' must be an array",
            hint="The tool that wrote this referrers index wrote it malformed; rewrite it.")
    return [_descriptor(item, f"manifests[{i}]") for i, item in enumerate(entries)]


def merge_referrers(existing: bytes | str | Mapping[str, Any] | None, *,
                    add: Iterable[Descriptor] = (), remove: Iterable[str] = ()) -> bytes:
    """A fallback index with ``add`` put in (replacing same digests) and ``remove`` taken out.

    Entries other writers put there are kept in their order, which makes the
    read-modify-write of a fallback tag safe to retry after a conflicting write.
    """
    current = parse_referrers_index(existing) if existing is not None else []
    removed = set(remove)
    pending = {d.digest: d for d in add if d.digest not in removed}
    out: list[Descriptor] = []
    seen: set[str] = set()
    for entry in current:
        if entry.digest in removed or entry.digest in seen:
            continue
        seen.add(entry.digest)
        out.append(pending.pop(entry.digest, entry))
    out.extend(pending.values())
    return referrers_index(out)


def effective_artifact_type(manifest: Mapping[str, Any]) -> str | None:
    """``artifactType``, else the config media type unless it is the empty descriptor's."""
    artifact_type = manifest.get("artifactType")
    if isinstance(artifact_type, str) and artifact_type:
        return artifact_type
    config = manifest.get("config")
    if isinstance(config, Mapping):
        media_type = config.get("mediaType")
        if isinstance(media_type, str) and media_type != OCI_EMPTY:
            return media_type
    return None


def referrer_descriptor(raw: bytes, media_type: str | None = None) -> Descriptor:
    """The descriptor a referrers index lists for the child manifest ``raw``.

    It carries the child's effective ``artifactType`` and its annotations, as the
    distribution spec asks (and as pre-ggcr#2269 fallback writers did not).
    """
    data = _load(raw, "manifest")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        annotations = {}
    kind = media_type or data.get("mediaType") or OCI_MANIFEST
    return Descriptor(str(kind), sha256_digest(bytes(raw)), len(raw),
                      {str(k): str(v) for k, v in annotations.items()},
                      artifact_type=effective_artifact_type(data))


# ------------------------------------------------------------------ in-index attestations


@dataclass(frozen=True)
class InIndexAttestation:
    """A BuildKit attestation manifest listed in an image index, and the image it is about."""

    descriptor: Descriptor
    subject_digest: str | None
    found_by: str = IN_INDEX


def in_index_attestations(index: Index) -> list[InIndexAttestation]:
    """The attestation entries of ``index`` (legacy ``unknown/unknown`` and ``artifactType``)."""
    out = []
    for entry in index.manifests:
        if entry.is_attestation or entry.artifact_type == DOCKER_ATTESTATION_MANIFEST:
            out.append(InIndexAttestation(entry, entry.annotations.get(REFERENCE_DIGEST) or None))
    return out


# ------------------------------------------------------------------ classification


@dataclass(frozen=True)
class Part:
    """One layer (blob) of a child manifest and what it holds.

    ``envelope`` says how the content is wrapped: ``"in-toto"`` (a bare statement),
    ``"dsse"``, ``"sigstore-bundle"``, ``"simple-signing"``, ``"jws"``, ``"cose"`` or None.
    """

    media_type: str
    digest: str
    size: int
    kind: str
    format: str | None
    predicate_type: str | None = None
    envelope: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Classification:
    """What a child manifest is, read from its own bytes.

    ``kind`` is one of :data:`KINDS` (``attestation`` when its parts are of several
    kinds); ``attestation_shape`` is ``"fake-config"`` (BuildKit legacy) or
    ``"artifact"`` (BuildKit v0.32+) for BuildKit attestation manifests, else None.
    """

    kind: str
    format: str | None
    artifact_type: str | None
    media_type: str | None
    subject_digest: str | None
    parts: tuple[Part, ...]
    annotations: dict[str, str]
    attestation_shape: str | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of the parts, in layer order, without repeats."""
        return tuple(dict.fromkeys(p.kind for p in self.parts if p.kind != OTHER))

    @property
    def created(self) -> str | None:
        """The ``org.opencontainers.image.created`` annotation, when the writer set it."""
        return self.annotations.get("org.opencontainers.image.created")


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)}


def _part(layer: Any, where: str, manifest_annotations: dict[str, str],
          artifact_info: tuple[str, str | None, str | None]) -> Part:
    d = _descriptor(layer, where)
    predicate = next((d.annotations[k] for k in PREDICATE_ANNOTATIONS if k in d.annotations),
                     None)
    kind, fmt, envelope = _media_type_info(d.media_type)
    if d.media_type in (IN_TOTO, DSSE_ENVELOPE) or envelope == "sigstore-bundle":
        envelope = "in-toto" if d.media_type == IN_TOTO else (
            "dsse" if d.media_type == DSSE_ENVELOPE else "sigstore-bundle")
        predicate = predicate or manifest_annotations.get("dev.sigstore.bundle.predicateType")
        kind, fmt = classify_predicate(predicate) if predicate else (OTHER, None)
        if envelope == "sigstore-bundle" and not predicate:
            kind, fmt = SIGNATURE, "sigstore-bundle"  # a message signature has no predicate
    elif kind == OTHER and artifact_info[0] != OTHER:
        kind, fmt = artifact_info[0], artifact_info[1]  # trivy/oras: a generic layer type
    return Part(d.media_type, d.digest, d.size, kind, fmt, predicate, envelope, d.annotations)


def classify_manifest(raw: bytes | str | Mapping[str, Any]) -> Classification:
    """Classify a child manifest (image manifest, index or OCI 1.1-rc artifact manifest)."""
    data = _load(raw, "manifest")
    media_type = data.get("mediaType") if isinstance(data.get("mediaType"), str) else None
    annotations = _string_map(data.get("annotations"))
    artifact_type = effective_artifact_type(data)
    subject = data.get("subject")
    subject_digest = _descriptor(subject, "subject").digest if subject is not None else None
    layers = data.get("blobs") if media_type == OCI_ARTIFACT_MANIFEST else data.get("layers")
    if layers is None and isinstance(data.get("manifests"), list):
        layers = []  # an artifact index: only its artifactType speaks
    if not isinstance(layers, list):
        raise InvalidManifestError(
            "invalid manifest: field 'layers' must be an array",
            hint="The tool that pushed this artifact wrote a malformed manifest; push it again.")
    info = _media_type_info(artifact_type)
    parts = tuple(_part(layer, f"layers[{i}]", annotations, info)
                  for i, layer in enumerate(layers))
    in_toto = bool(parts) and all(p.media_type == IN_TOTO for p in parts)
    shape = None
    if artifact_type == DOCKER_ATTESTATION_MANIFEST:
        shape = "artifact"
    elif in_toto and not data.get("artifactType"):
        shape = "fake-config"
    kind, fmt = _overall(parts, info)
    return Classification(kind, fmt, artifact_type, media_type, subject_digest, parts,
                          annotations, shape)


def _overall(parts: tuple[Part, ...], info: tuple[str, str | None, str | None]
             ) -> tuple[str, str | None]:
    known = [p for p in parts if p.kind != OTHER]
    kinds = {p.kind for p in known}
    if len(kinds) == 1:
        formats = {p.format for p in known}
        return known[0].kind, known[0].format if len(formats) == 1 else None
    if len(kinds) > 1:
        return ATTESTATION, None
    if info[0] == ATTESTATION:
        return ATTESTATION, None
    if info[0] != OTHER:
        return info[0], info[1]
    return OTHER, None
