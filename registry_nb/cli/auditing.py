"""``audit``: findings per tag of a repository or of a registry's catalog."""

from __future__ import annotations

import argparse
from typing import Any

from .common import (
    add_json,
    add_registry_flags,
    default_registry,
    emit,
    frame_records,
    open_registry,
    table,
)


def _target(text: str | None) -> tuple[str, str | None]:
    """(registry, repository or None) of ``host``, ``host/repo`` or ``repo``."""
    if not text:
        return default_registry(), None
    first, _, rest = text.partition("/")
    if "." in first or ":" in first or first == "localhost":
        return first, rest or None
    return default_registry(), text


def _cmd_audit(args: argparse.Namespace) -> int:
    registry, repository = _target(args.target)
    with open_registry(args, registry) as reg:
        frame = reg.audit(repository, limit=args.limit, platform=args.platform)
    shown = frame.copy()
    if "findings" in shown.columns:
        shown["findings"] = shown["findings"].map(
            lambda f: ",".join(f) if isinstance(f, (list, tuple)) and f else "-")
    columns = ["repository", "tag", "digest", "size_mb", "created", "findings"]
    emit(args, frame_records(frame), lambda: table(shown, columns))
    return 0


def register(commands: Any) -> None:
    """Add ``audit``."""
    audit = commands.add_parser(
        "audit", help="audit a repository's or a registry's tags",
        description="One row per tag with the audit rules each breaks (see the rules in "
                    "the README). TARGET is host/repo, a registry host (its catalog), or "
                    "repo on $REGISTRY_NB_REGISTRY.")
    audit.add_argument("target", nargs="?", metavar="REPO",
                       help="host/repo, host, or repo (default: $REGISTRY_NB_REGISTRY)")
    audit.add_argument("--limit", type=int, default=100, help="at most this many tags (100)")
    audit.add_argument("--platform", help="platform to audit in an index (os/arch)")
    add_registry_flags(audit)
    add_json(audit)
    audit.set_defaults(func=_cmd_audit)
