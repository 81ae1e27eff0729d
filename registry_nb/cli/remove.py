"""``rm`` and ``retention``: delete images the registry's way, and clean up with a plan."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import RegistryError
from ..images.delete import GC_REMINDER
from .common import add_json, add_registry_flags, emit, frame_records, image_ref, open_registry


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
                results.append({"image": text, **result})
            except RegistryError as exc:
                if len(args.images) == 1:
                    raise
                failed += 1
                results.append({"image": text, "status": "failed", "error": str(exc)})

    def text() -> str:
        lines = []
        for r in results:
            if r.get("status") == "failed":
                lines.append(f"{r['image']}: failed: {r['error']}")
            else:
                tags = ", ".join(r.get("tags_deleted") or []) or "-"
                lines.append(f"deleted {r['image']} {r['digest']} (tags: {tags})")
        return "\n".join([*lines, GC_REMINDER])

    emit(args, results, text)
    return 1 if failed else 0


def _cmd_retention(args: argparse.Namespace) -> int:
    ref = image_ref(args.repository)
    with open_registry(args, ref.registry) as reg:
        plan = reg.retention_plan(ref.repository, keep_last=args.keep_last,
                                  older_than_days=args.older_than, keep_tags=args.keep_tag)
        outcome = reg.apply_retention(plan, dry_run=not args.apply)
    columns = ["tag", "digest", "action", "status", "reason", "error"]

    def text() -> str:
        body = outcome[columns].to_string(index=False, na_rep="-", max_colwidth=60)
        return f"{body}\n{GC_REMINDER}" if args.apply else \
            f"{body}\n(dry run: nothing deleted; add --apply to delete the 'delete' rows)"

    emit(args, frame_records(outcome[columns]), text)
    return 1 if (outcome["status"] == "failed").any() else 0


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
    ret.add_argument("--keep-last", type=int, help="keep the N newest images")
    ret.add_argument("--older-than", type=float, metavar="DAYS",
                     help="delete images older than DAYS (outside --keep-last)")
    ret.add_argument("--keep-tag", action="append", default=[], metavar="REGEX",
                     help="always keep tags matching REGEX (repeatable)")
    ret.add_argument("--apply", action="store_true", help="delete (default: a dry run)")
    add_registry_flags(ret)
    add_json(ret)
    ret.set_defaults(func=_cmd_retention)
