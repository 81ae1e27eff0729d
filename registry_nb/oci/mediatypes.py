"""Media types of OCI and Docker images, and the size limits of their documents."""

from __future__ import annotations

import re

__all__ = [
    "is_media_type",
    "OCI_MANIFEST", "OCI_INDEX", "OCI_CONFIG", "OCI_EMPTY",
    "OCI_LAYER", "OCI_LAYER_GZIP", "OCI_LAYER_ZSTD",
    "OCI_LAYER_NONDISTRIBUTABLE", "OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST", "DOCKER_CONFIG", "DOCKER_LAYER",
    "DOCKER_FOREIGN_LAYER", "DOCKER_SCHEMA1_MANIFEST", "DOCKER_SCHEMA1_SIGNED_MANIFEST",
    "SCHEMA1_MEDIA_TYPES", "INDEX_MEDIA_TYPES", "IMAGE_MANIFEST_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES", "CONFIG_MEDIA_TYPES", "LAYER_MEDIA_TYPES", "MANIFEST_ACCEPT",
    "MAX_MANIFEST_BYTES", "MAX_CONFIG_BYTES",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = OCI_LAYER_NONDISTRIBUTABLE + "+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = OCI_LAYER_NONDISTRIBUTABLE + "+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"

SCHEMA1_MEDIA_TYPES = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MANIFEST_MEDIA_TYPES
CONFIG_MEDIA_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_MEDIA_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
    OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD, DOCKER_LAYER, DOCKER_FOREIGN_LAYER,
})

#: ``Accept`` header for manifest requests: OCI manifest and index, Docker v2 and list.
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

#: Largest manifest accepted (what distribution and containerd accept).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Largest image config accepted.
MAX_CONFIG_BYTES = 8 * 1024 * 1024


# RFC 6838 section 4.2 restricted-name, for the type and the subtype (the image-spec schemas'
# mediaType pattern): a letter or digit, then up to 126 of letters, digits and !#$&^_.+-
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE_RE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")


def is_media_type(text: object) -> bool:
    """True for an RFC 6838 ``type/subtype`` (no parameters), as the OCI schemas require."""
    return isinstance(text, str) and _MEDIA_TYPE_RE.fullmatch(text) is not None
