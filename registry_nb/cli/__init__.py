"""The ``registry-nb`` command: registries and images from a terminal.

Each group of commands is one module of this package with a ``register(commands)``
function that adds its sub-parsers (``commands`` is argparse's sub-parsers action) and
sets ``func`` on each; :data:`COMMAND_MODULES` lists them in the order ``--help`` shows.
To add a command, write a module with ``register`` and add its name to the list
(``remove.py`` holds ``rm`` and ``retention``). Shared flags, ``--json``, progress
bars, Ctrl-C and error wording are in :mod:`registry_nb.cli.common`.

Exit codes: 0 success, 1 an error (one ``registry-nb: error:`` line and a hint in terms
of flags), 2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .common import PROG, Interrupted, report_error

__all__ = ["main", "COMMAND_MODULES", "build_parser"]

#: Modules of commands, in help order.
COMMAND_MODULES = ["listing", "inspecting", "transfer", "mirror", "remove", "auditing", "login",
                   "lab"]


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command module's sub-commands."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Container images and OCI registries, from a terminal "
        "and a notebook. Images are named host/repo:tag (a name without a host is on "
        "$REGISTRY_NB_REGISTRY, else Docker Hub).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``registry-nb`` command line; returns the exit code."""
    from ..errors import RegistryError
    from .common import CliError

    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except (RegistryError, CliError) as exc:
        return report_error(exc)
    except (Interrupted, KeyboardInterrupt):
        print(f"{PROG}: interrupted; nothing partial kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `registry-nb ls … | head`
        sys.stderr.close()
        return 0
