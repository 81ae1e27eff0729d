"""registry_nb: container images and OCI registries from a Jupyter notebook.

``from registry_nb import ContainerRegistry`` is the usual start; widgets live in
``registry_nb.widgets``. Names are exported lazily (PEP 562): ``import registry_nb``
loads neither pandas, docker-py, requests nor ipywidgets until a name that needs them
is used.

The packages are the layers, each importing only those above it in this list:
``errors``/``progress`` (used by all), ``oci`` (pure data), ``remote`` (the HTTP API),
``images`` (stores, copy, assembly, layer reading), ``engine`` (docker-py), ``audits``,
then the facade (``registry``, ``frames``) and the front ends (``widgets``, ``cli``,
``charts``, ``demo``). The module paths of the first round (``registry_nb.reference``,
``registry_nb.distribution``, ...) still import, as aliases (see ``_aliases``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import _aliases
from ._version import __version__

if TYPE_CHECKING:
    from .errors import CodomyrmexError, RegistryError
    from .oci.reference import ImageReference
    from .progress import ProgressEvent
    from .registry import ContainerImage, ContainerRegistry
    from .remote.credentials import RegistryCredentials

#: Public name -> module that defines it.
_EXPORTS = {
    "ContainerImage": ".registry",
    "ContainerRegistry": ".registry",
    "CodomyrmexError": ".errors",
    "RegistryError": ".errors",
    "ImageReference": ".oci.reference",
    "ProgressEvent": ".progress",
    "RegistryCredentials": ".remote.credentials",
}

__all__ = [
    "__version__",
    "CodomyrmexError",
    "ContainerImage",
    "ContainerRegistry",
    "ImageReference",
    "ProgressEvent",
    "RegistryCredentials",
    "RegistryError",
]

_aliases.install(__name__)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
