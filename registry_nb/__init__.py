"""registry_nb: container images and OCI registries from a Jupyter notebook.

``from registry_nb import ContainerRegistry`` is the usual start; widgets live in
``registry_nb.widgets`` (imported on demand, so the core imports fast).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .auth import RegistryCredentials
from .errors import CodomyrmexError, RegistryError
from .progress import ProgressEvent
from .reference import ImageReference
from .registry import ContainerImage, ContainerRegistry

__all__ = [
    "__version__",
    "ContainerImage",
    "ContainerRegistry",
    "CodomyrmexError",
    "ImageReference",
    "ProgressEvent",
    "RegistryCredentials",
    "RegistryError",
]
