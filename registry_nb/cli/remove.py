"""``rm`` and ``retention``: delete images the registry's way, and clean up with a plan."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import RegistryError
from ..images.delete import GC_REMINDER
from .common import (
    CliError,
    add_json,
    add_registry_flags,
    cli_hint,
    emit,
    frame_records,
    image_ref,
    open_registry,
    table,
)


def _cmd_rm(args: argparse.Namespace) -> int:
    results, failed = [], 0
    for text in args.images:
        ref = image_ref(text)
        name = f"{ref.repository}@{ref.digest}" if ref.digest else f"{ref.repository}:{ref.tag}"
        with open_registry(args, ref.registry) as reg:
            try:
                if ref.digest:
                    result = reg.delete_manifest(name, force=args.force)
                else:
                    result = reg.delete_tag(name, force=args.force)
                results.append({**result, "image": text})
            except RegistryError as exc:
                if len(args.images) == 1:
                    raise
                failed += 1
                hint = cli_hint(exc)
                message = exc.message.rstrip(".") + "."
                results.append({"image": text, "status": "failed",
                                "error": message + (f" {hint}" if hint else "")})

    def text() -> str:
        lines = []
        for r in results:
            if r.get("status") == "failed":
                lines.append(f"failed  {r['image']}: {r['error']}")
            else:
                tags = ", ".join(r.get("tags_deleted") or []) or "none"
                lines.append(f"deleted {r['image']} ({r['digest'][:19]}…; tags gone: {tags})")
        return "\n".join(lines + ([GC_REMINDER] if failed < len(results) else []))

    emit(args, results, text)
    return 1 if failed else 0


def _cmd_retention(args: argparse.Namespace) -> int:
    if args.keep_last is None and args.older_than is None:
        raise CliError("a retention plan needs --keep-last N or --older-than DAYS (or both); "
                       "without either it deletes nothing",
                       "For example `registry-nb retention HOST/REPO --keep-last 5` shows "
                       "which tags a clean-up keeping the 5 newest images would delete.",
                       code=2)
    ref = image_ref(args.repository)
    with open_registry(args, ref.registry) as reg:
        plan = reg.retention_plan(ref.repository, keep_last=args.keep_last,
                                  older_than_days=args.older_than, keep_tags=args.keep_tag)
        outcome = reg.apply_retention(plan, dry_run=not args.apply)
    columns = ["tag", "digest", "action", "status", "reason", "error"]
    emit(args, frame_records(outcome[columns]), lambda: _retention_text(outcome, args.apply))
    return 1 if (outcome["status"] == "failed").any() else 0


def _retention_text(outcome: Any, applied: bool) -> str:
    """The plan's rows (reasons in full), then what happened or would happen."""
    columns = ["tag", "digest", "action", "status", "reason"]
    if outcome["error"].notna().any():
        columns.append("error")
    doomed = outcome[outcome["action"] == "delete"]
    images = doomed["digest"].nunique()
    if not applied:
        manifests = f"{images} manifest" + ("" if images == 1 else "s")
        summary = (f"Dry run: {len(doomed)} of {len(outcome)} tags ({manifests}) "
                   "would be deleted; nothing was deleted. Run again with --apply to "
                   "delete them." if len(doomed) else
                   f"Dry run: all {len(outcome)} tags are kept; nothing to delete.")
        return f"{table(outcome, columns)}\n\n{summary}"
    counts = outcome["status"].value_counts()
    summary = "Tags: " + ", ".join(f"{counts[status]} {status}" for status in
                                   ("deleted", "skipped", "failed", "kept") if counts.get(status))
    summary += "." if counts.get("deleted") else "; nothing was deleted."
    return f"{table(outcome, columns)}\n\n{summary}" + \
        (f"\n{GC_REMINDER}" if counts.get("deleted") else "")


def register(commands: Any) -> None:
    """Add ``rm`` and ``retention``."""
    rm = commands.add_parser("rm", help="delete tags or manifests (the registry's own way)",
                             description="Delete host/repo:tag (the tag, where the registry "
                             "can delete a tag alone) or host/repo@sha256:… (the manifest and "
                             "every tag on it).")
    rm.add_argument("images", nargs="+", metavar="IMAGE")
    rm.add_argument("--force", action="store_true",
                    help="also when other tags share the digest or an index lists it")
    add_registry_flags(rm)
    add_json(rm)
    rm.set_defaults(func=_cmd_rm)
    ret = commands.add_parser("retention", help="plan (and with --apply, run) a clean-up",
                              description="Show which tags of host/repo a retention plan "
                              "keeps and deletes, and why; --apply deletes the plan's rows.")
    ret.add_argument("repository", metavar="REPO", help="host/repo")
    ret.add_argument("--keep-last", type=int, metavar="N", help="keep the N newest images")
    ret.add_argument("--older-than", type=float, metavar="DAYS",
                     help="delete images older than DAYS (outside --keep-last)")
    ret.add_argument("--keep-tag", action="append", default=[], metavar="REGEX",
                     help="always keep tags matching REGEX (repeatable)")
    ret.add_argument("--apply", action="store_true", help="delete (default: a dry run)")
    add_registry_flags(ret)
    add_json(ret)
    ret.set_defaults(func=_cmd_retention)
