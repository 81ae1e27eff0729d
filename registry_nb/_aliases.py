"""The first round's module paths, kept working as aliases of where the code lives now.

``import registry_nb.distribution`` gives the module ``registry_nb.remote.distribution``
itself (the same object, so attributes set on one are seen through the other). A module
that was split in two is aliased to the package that re-exports all its public names.
Write new code against the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: old module (relative to the package) -> where its code lives now
ALIASES = {
    "reference": "oci.reference",
    "manifest": "oci",
    "transport": "remote.transport",
    "auth": "remote",
    "distribution": "remote.distribution",
    "cache": "remote.cache",
    "image": "images.image",
    "layout": "images.layout",
    "copy": "images.copy",
    "assemble": "images.assemble",
    "layers": "images",
    "audit": "audits",
    "vulns": "audits.vulns",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.target_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the target is executed); undo the alias's ``__spec__`` on it."""
        module.__spec__ = self.target_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def __init__(self, package: str) -> None:
        self.names = {f"{package}.{old}": f"{package}.{new}" for old, new in ALIASES.items()}

    def find_spec(self, fullname: str, path: object, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        new = self.names.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install(package: str) -> None:
    """Make the old module paths of ``package`` importable (once per interpreter)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder(package))
