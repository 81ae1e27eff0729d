"""OCI data: references, digests, media types, platforms, descriptors, manifests, configs.

Pure data and the rules that govern it: no I/O, no pandas, no docker-py. Everything a
higher layer needs from here is re-exported by this package, so
``from registry_nb.oci import Platform, parse_manifest`` is the short form.
"""

from __future__ import annotations

from .config import (
    ContainerConfig,
    HistoryEntry,
    ImageConfig,
    format_timestamp,
    layer_history,
    parse_timestamp,
)
from .manifest import Descriptor, Index, Manifest, parse_manifest
from .mediatypes import *  # noqa: F403  (the constants, listed in mediatypes.__all__)
from .mediatypes import __all__ as _MEDIA_TYPE_NAMES
from .platform import Platform
from .reference import ImageReference, parse_digest, sha256_digest

__all__ = [
    *_MEDIA_TYPE_NAMES,
    "ContainerConfig", "Descriptor", "HistoryEntry", "ImageConfig", "ImageReference", "Index",
    "Manifest", "Platform", "format_timestamp", "layer_history", "parse_digest",
    "parse_manifest", "parse_timestamp", "sha256_digest",
]
