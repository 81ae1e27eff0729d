"""``sync`` and ``diff``: mirror repositories between registries, compare two images."""

from __future__ import annotations

import argparse
from typing import Any

from .common import (
    add_json,
    add_platforms,
    add_registry_flags,
    emit,
    frame_records,
    human_bytes,
    image_ref,
    open_registry,
    table,
    transfer,
)

SYNC_SHOWN = ["repository", "tag", "kind", "status", "digest", "bytes", "mounted"]


def _cmd_sync(args: argparse.Namespace) -> int:
    with open_registry(args, args.destination) as reg:
        frame = transfer(args, "sync", lambda progress, cancel: reg.sync_repositories(
            args.source, args.repositories or None, tags=args.tag or None,
            platforms=args.platform or None, referrers=not args.no_referrers,
            progress=progress, workers=args.workers, cancel=cancel, dry_run=args.dry_run))
        destination = reg.registry_host
    emit(args, frame_records(frame),
         lambda: _sync_text(frame, args.source, destination, args.dry_run))
    return 1 if (frame["status"] == "failed").any() else 0


def _sync_text(frame: Any, source: str, destination: str, dry_run: bool) -> str:
    """One row per tag (sizes in kB/MB), each failure's error below, then the outcome."""
    if frame.empty:
        return (f"No tags matched in {source}: nothing to copy. Check the repository names "
                "and the --tag patterns (regular expressions, searched in each tag).")
    shown = frame.assign(bytes=frame["bytes"].map(lambda n: human_bytes(int(n)) if n else ""),
                         mounted=frame["mounted"].map(lambda n: str(int(n)) if n else ""))
    lines = [table(shown, SYNC_SHOWN)]
    failed = frame[frame["status"] == "failed"]
    for row in failed.itertuples():
        lines.append(f"failed  {row.repository}:{row.tag}: {row.error}")
    counts = frame["status"].value_counts()
    done = ", ".join(f"{counts[s]} {s}" for s in ("copied", "missing", "present", "failed")
                     if counts.get(s))
    if dry_run:
        lines.append(f"\nDry run of {len(frame)} tags from {source} into {destination}: "
                     f"{done.replace('missing', 'to copy')}; nothing was written. Run again "
                     "without --dry-run to copy.")
    elif len(failed):
        lines.append(f"\nSync from {source} into {destination} not finished: {done}. Run the "
                     "same command again: it copies only what is left.")
    else:
        moved = human_bytes(int(frame["bytes"].sum()))
        lines.append(f"\nSynced {len(frame)} tags from {source} into {destination}: {done} "
                     f"({moved} moved).")
    return "\n".join(lines)


def _cmd_diff(args: argparse.Namespace) -> int:
    a, b = image_ref(args.a), image_ref(args.b)
    with open_registry(args, a.registry) as reg:
        diff = reg.diff_images(str(a), str(b), platform=args.platform)
    summary = diff.summary
    data = {"summary": summary, **{name: frame_records(getattr(diff, name))
                                   for name in ("layers", "files", "packages", "config")}}
    emit(args, data, lambda: _diff_text(diff))
    return 0


def _diff_text(diff: Any) -> str:
    """What changed in one line, sizes and layers, then the files, packages and settings
    that differ (the whole frames are in --json)."""
    s = diff.summary
    change = s["size_change_bytes"]
    lines = [
        f"{s['a']} ({s['digest_a'][:19]}) -> {s['b']} ({s['digest_b'][:19]})",
        f"size    {human_bytes(s['size_bytes_a'])} -> {human_bytes(s['size_bytes_b'])} "
        f"({'+' if change >= 0 else '-'}{human_bytes(abs(change))})",
        f"layers  {s['layers_a']} -> {s['layers_b']} ({s['shared_layers']} shared, "
        f"{human_bytes(s['shared_bytes'])}, {'read' if s['shared_read'] else 'not read'})",
        f"files   {s['files_added']} added, {s['files_removed']} removed, "
        f"{s['files_changed']} changed; packages: {s['packages_changed']} changed",
    ]
    if not diff.files.empty:
        files = diff.files.assign(**{f"size_{side}": diff.files[f"size_bytes_{side}"].map(
            lambda n: human_bytes(int(n)), na_action="ignore") for side in ("a", "b")})
        lines += ["", table(files, ["status", "path", "type", "size_a", "size_b"])]
    if not diff.packages.empty:
        lines += ["", table(diff.packages, ["status", "ecosystem", "name", "version_a",
                                            "version_b"])]
    config = diff.config[diff.config["changed"]]
    if not config.empty:
        shown = config.assign(a=config["a"].map(_value), b=config["b"].map(_value))
        lines += ["", table(shown, ["field", "a", "b"])]
    return "\n".join(lines)


def _value(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


def register(commands: Any) -> None:
    """Add ``sync`` and ``diff``."""
    sync = commands.add_parser(
        "sync", help="mirror repositories from one registry into another",
        description="Copy the tags of REPO... (default: SRC's whole catalog) from the "
                    "registry SRC into DST under the same names, skipping what DST has "
                    "(a HEAD), mounting blobs DST holds elsewhere, with signatures, SBOMs "
                    "and attestations. A second run after a failure copies only what is "
                    "left. --username applies to DST; SRC's credentials come from the "
                    "docker config (registry-nb login).")
    sync.add_argument("source", metavar="SRC", help="registry to copy from (host[:port])")
    sync.add_argument("destination", metavar="DST", help="registry to copy into")
    sync.add_argument("repositories", nargs="*", metavar="REPO")
    sync.add_argument("--tag", action="append", metavar="REGEX",
                      help="only tags matching REGEX (repeatable; default: every tag)")
    add_platforms(sync)
    sync.add_argument("--no-referrers", action="store_true",
                      help="leave signatures, SBOMs and attestations behind")
    sync.add_argument("--dry-run", action="store_true",
                      help="list what would be copied; write nothing")
    sync.add_argument("--workers", type=int, default=4, metavar="N",
                      help="tags copied at once (default 4)")
    add_registry_flags(sync)
    add_json(sync)
    sync.set_defaults(func=_cmd_sync)

    diff = commands.add_parser(
        "diff", help="compare two images: layers, files, packages, config",
        description="Compare image A with image B (host/repo:tag or @sha256:…, any two "
                    "registries): sizes, layers, the files added, removed and changed, "
                    "packages and config fields that differ. Layers both share are not "
                    "read. --json has every row.")
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.add_argument("--platform", metavar="OS/ARCH", help="the platform of an index")
    add_registry_flags(diff)
    add_json(diff)
    diff.set_defaults(func=_cmd_diff)
