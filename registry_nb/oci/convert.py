"""Docker schema 2 → OCI: the media type conversion skopeo makes when it writes OCI.

The blobs stay byte for byte (the config and the layers keep their digests); only the
media types in the manifests change, so the manifests are new documents with new
digests. An index is converted after its children, whose new descriptors it takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .manifest import Descriptor, Index, Manifest
from .mediatypes import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
)

__all__ = ["DOCKER_TO_OCI", "is_docker_media_type", "to_oci"]

#: Docker schema 2 media type → the OCI one (containers/image's conversion table).
DOCKER_TO_OCI = {
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_MANIFEST_LIST: OCI_INDEX,
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER: OCI_LAYER_GZIP,
    DOCKER_FOREIGN_LAYER: OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": OCI_LAYER,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": OCI_LAYER_ZSTD,
}


def is_docker_media_type(media_type: str) -> bool:
    """True for the Docker schema 2 types :func:`to_oci` converts."""
    return media_type in DOCKER_TO_OCI


def _descriptor(d: Descriptor) -> Descriptor:
    return replace(d, media_type=DOCKER_TO_OCI.get(d.media_type, d.media_type))


def to_oci(document: Manifest | Index,
           converted: Mapping[str, Manifest | Index] | None = None) -> Manifest | Index:
    """``document`` with OCI media types (itself when it already has them).

    For an index, ``converted`` maps the digests of children already converted to
    their OCI form, whose descriptors replace the old entries (platform and
    annotations kept). Annotations, ``subject`` and ``artifactType`` are kept.
    """
    if isinstance(document, Manifest):
        if not (is_docker_media_type(document.media_type)
                or any(is_docker_media_type(d.media_type)
                       for d in (document.config, *document.layers))):
            return document
        return Manifest.build(_descriptor(document.config),
                              [_descriptor(layer) for layer in document.layers],
                              OCI_MANIFEST, document.annotations, subject=document.subject,
                              artifact_type=document.artifact_type)
    children = converted or {}
    entries = []
    for entry in document.manifests:
        child = children.get(entry.digest)
        if child is None:  # not converted: the entry must keep describing those bytes
            entries.append(entry)
        else:
            entries.append(replace(entry, media_type=child.media_type, digest=child.digest,
                                   size=child.size))
    if document.media_type == OCI_INDEX and entries == document.manifests:
        return document
    return Index.build(entries, OCI_INDEX, document.annotations, subject=document.subject,
                       artifact_type=document.artifact_type)
