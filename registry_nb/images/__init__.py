"""Images: one abstraction over where images live, and the ways they move and are read.

:mod:`~registry_nb.images.image` (``open_image`` → ``Image``/``ImageIndex``, the store
and sink interfaces, a registry repository as a store), :mod:`~registry_nb.images.layout`
(OCI image layouts), :mod:`~registry_nb.images.archive` (``docker save`` archives),
:mod:`~registry_nb.images.copy` (verified copies between any store and sink),
:mod:`~registry_nb.images.assemble` (images from folders),
:mod:`~registry_nb.images.layers` (layer tar streams),
:mod:`~registry_nb.images.scan` (layers stacked) and :mod:`~registry_nb.images.packages`
(package databases). Built on ``oci`` and ``remote``; the layer-reading names are
re-exported here.
"""

from __future__ import annotations

from .layers import (
    MAX_ENTRIES,
    MAX_PARSE_BYTES,
    UNSAFE_FLAGS,
    LayerReadError,
    LayerScan,
    MergeResult,
    Package,
    TarEntry,
    WastedFile,
    read_layer,
)
from .packages import (
    package_database,
    parse_apk_installed,
    parse_dpkg_status,
    parse_python_metadata,
)
from .scan import ImageScan, scan_image

__all__ = [
    "MAX_ENTRIES", "MAX_PARSE_BYTES", "UNSAFE_FLAGS", "ImageScan", "LayerReadError",
    "LayerScan", "MergeResult", "Package", "TarEntry", "WastedFile", "package_database",
    "parse_apk_installed", "parse_dpkg_status", "parse_python_metadata", "read_layer",
    "scan_image",
]
