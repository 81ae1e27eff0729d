"""The Dask worker plugin that gives workers the pads of a fleet's sealed credentials."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from .spec import install_pads, remove_pads

__all__ = ["FleetKeys"]


class FleetKeys(WorkerPlugin):
    """Installs the pads of sealed credentials on every worker, those that join later too.

    Registered by :class:`~registry_nb.fleet.Fleet` with ``client.register_plugin``;
    the scheduler hands it to each worker that connects (a restarted one included).
    Its repr names no key; its pickle holds random pads, never a secret.
    """

    idempotent = False

    def __init__(self, pads: dict[str, bytes], name: str) -> None:
        self.pads = dict(pads)
        self.name = name

    def __repr__(self) -> str:
        return f"FleetKeys({len(self.pads)} keys)"

    def setup(self, worker: Any = None) -> None:
        install_pads(self.pads)

    def teardown(self, worker: Any = None) -> None:
        remove_pads(list(self.pads))
