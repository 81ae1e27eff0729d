"""``ls`` (a registry's tags) and ``images`` (the engine's images)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import InvalidReferenceError
from ..oci.reference import DOCKER_HUB, ImageReference
from .common import (
    CliError,
    add_json,
    add_registry_flags,
    emit,
    frame_records,
    open_registry,
    table,
)

REGISTRY_COLUMNS = ["repository", "tag", "digest", "size_mb", "layer_count", "created",
                    "architecture", "os", "error"]
LOCAL_COLUMNS = ["repository", "tag", "image_id", "size_mb", "created", "architecture"]


def _count(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _cmd_ls(args: argparse.Namespace) -> int:
    registry, repository = args.registry, args.repository
    if repository is None and "/" in registry.split("://", 1)[-1]:
        registry, repository = registry.split("://", 1)[-1].split("/", 1)  # host/repo[:tag]
    reg = open_registry(args, registry)
    with reg:
        tag = None
        if repository:
            ref = reg.images.reference(repository)
            repository, tag = ref.repository, ref.tag
        frame = reg.registry_images_frame(repository, limit=args.limit,
                                          platform=args.platform)
    if tag is not None:
        frame = frame[frame["tag"] == tag].reset_index(drop=True)
        if frame.empty:
            raise CliError(f"{repository} on {reg.registry_host} has no tag {tag!r}.",
                           f"List its tags with `registry-nb ls {reg.registry_host} "
                           f"{repository}`.")
    columns = list(REGISTRY_COLUMNS)
    if frame["error"].isna().all():
        columns.remove("error")
    emit(args, frame_records(frame), lambda: table(frame, columns))
    return 0


def _matches(local_name: str, wanted: ImageReference) -> bool:
    """A local repository is the one typed: same path, and same host if one was typed."""
    try:
        local = ImageReference.parse(local_name)
    except InvalidReferenceError:
        return False
    return local.repository == wanted.repository and \
        wanted.registry in (DOCKER_HUB, local.registry)


def _cmd_images(args: argparse.Namespace) -> int:
    from ..registry import ContainerRegistry

    with ContainerRegistry("") as reg:
        if not reg.is_available():
            where = os.environ.get("DOCKER_HOST") or reg.engine.base_url
            raise CliError(
                f"no Docker engine answers at {where}.",
                "Set DOCKER_HOST to a running engine: after scripts/lab.sh, "
                "`eval \"$(registry-nb env)\"` does that; or start dockerd.")
        frame = reg.local_images_frame(None)
    if args.repository:
        wanted = ImageReference.parse(args.repository)
        keep = frame["repository"].map(lambda name: _matches(str(name), wanted))
        if wanted.tag:
            keep &= frame["tag"] == wanted.tag
        frame = frame[keep].reset_index(drop=True)
    emit(args, frame_records(frame), lambda: table(frame, LOCAL_COLUMNS))
    return 0


def register(commands: Any) -> None:
    """Add ``ls`` and ``images``."""
    ls = commands.add_parser(
        "ls", help="list a registry's tags as a table",
        description="List a registry's tags with digest, compressed size and platform: "
                    "one repository's (or one tag: REPO:TAG), or the whole catalog's.")
    ls.add_argument("registry", help="registry host[:port] or URL (e.g. 127.0.0.1:5000), "
                                     "or host/repo[:tag]")
    ls.add_argument("repository", nargs="?", help="only this repository's tags (REPO[:TAG])")
    ls.add_argument("--limit", type=_count, default=100, help="at most this many rows (100)")
    ls.add_argument("--platform", help="platform an index row describes (os/arch[/variant])")
    add_registry_flags(ls)
    add_json(ls)
    ls.set_defaults(func=_cmd_ls)

    images = commands.add_parser(
        "images", help="list local images in the Docker engine",
        description="List the Docker engine's images, one row per tag. REPOSITORY "
                    "matches with or without its registry (demo/hello finds "
                    "127.0.0.1:5000/demo/hello).")
    images.add_argument("repository", nargs="?", help="only this repository (REPO[:TAG])")
    add_json(images)
    images.set_defaults(func=_cmd_images)
