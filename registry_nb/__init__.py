"""registry_nb: container images and OCI registries from a Jupyter notebook."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import CodomyrmexError, RegistryError

__all__ = ["__version__", "RegistryError", "CodomyrmexError"]
