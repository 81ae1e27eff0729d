"""Commands that move images: ``cp``, ``save``, ``load``, ``tag`` (registry API) and
``pull``, ``push`` (through the Docker engine). Each shows a progress bar on a TTY and
stops cleanly on Ctrl-C."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .common import (
    CliError,
    add_json,
    add_platforms,
    add_registry_flags,
    emit,
    human_bytes,
    image_ref,
    open_registry,
    transfer,
)


def _copied(result: dict[str, Any]) -> str:
    moved = (f"{result['copied_blobs']} copied, {result['mounted_blobs']} mounted, "
             f"{result['existing_blobs']} already there")
    return (f"{result['destination']} {result['digest']}\n  {result['blobs']} blobs "
            f"({moved}), {human_bytes(result['bytes_copied'])} moved in "
            f"{result['duration_seconds']:.1f} s")


def _cmd_cp(args: argparse.Namespace) -> int:
    src, dst = image_ref(args.source), image_ref(args.destination)
    with open_registry(args, dst.registry) as reg:
        result = transfer(args, "copy", lambda progress, cancel: reg.copy_image(
            src, dst, platforms=args.platform or None, progress=progress, cancel=cancel))
    emit(args, result, lambda: _copied(result))
    return 0


def _cmd_save(args: argparse.Namespace) -> int:
    ref = image_ref(args.image)
    tag = ref.tag or "latest"
    with open_registry(args, ref.registry) as reg:
        name = f"{ref.repository}@{ref.digest}" if ref.digest else ref.repository
        result = transfer(args, "save", lambda progress, cancel: reg.save_image(
            name, tag, args.directory, platforms=args.platform or None, progress=progress,
            cancel=cancel))
    emit(args, result, lambda: f"saved {result['image']} to {result['path']} "
                               f"(oci:{result['path']}:{result['tag']})\n"
                               f"  {human_bytes(result['bytes_copied'])} written")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    ref = image_ref(args.image)
    if not os.path.exists(args.source):
        raise CliError(f"{args.source} does not exist.",
                       "Give an OCI layout folder (registry-nb save writes one) or a "
                       "`docker save` tarball.")
    with open_registry(args, ref.registry) as reg:
        result = transfer(args, "load", lambda progress, cancel: reg.load_image(
            args.source, ref.repository, ref.tag or "latest", source_tag=args.source_tag,
            platforms=args.platform or None, progress=progress, cancel=cancel))
    emit(args, result, lambda: _copied(result))
    return 0


def _cmd_tag(args: argparse.Namespace) -> int:
    ref = image_ref(args.image)
    new = ref.with_tag(args.new_tag)  # validates the tag
    with open_registry(args, ref.registry) as reg:
        manifest = reg.client.get_manifest(ref.repository, ref.identifier)
        reg.client.put_manifest(ref.repository, args.new_tag, manifest.raw,
                                manifest.media_type)
    emit(args, {"source": str(ref), "image": str(new), "digest": manifest.digest},
         f"{new} {manifest.digest}")
    return 0


def _engine_result(args: argparse.Namespace, result: dict[str, Any], done: str) -> int:
    if result.get("status") == "simulated":
        raise CliError(result["message"].split(": start dockerd")[0] + ".",
                       "Set DOCKER_HOST to a running engine: `eval \"$(registry-nb env)\"` "
                       "after scripts/lab.sh, or start dockerd.")
    emit(args, result, done)
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    ref = image_ref(args.image)
    with open_registry(args, ref.registry) as reg:
        result = transfer(args, "pull", lambda progress, cancel: reg.pull_image(
            ref.repository, ref.identifier, progress=progress, cancel=cancel))
    return _engine_result(args, result, f"{result.get('image')} {result.get('image_id')}")


def _cmd_push(args: argparse.Namespace) -> int:
    ref = image_ref(args.image)
    with open_registry(args, ref.registry) as reg:
        result = transfer(args, "push", lambda progress, cancel: reg.push_image(
            ref.repository, ref.tag or "latest", local_image=args.local, progress=progress,
            cancel=cancel))
    return _engine_result(args, result, f"{result.get('image')} {result.get('digest')}")


def register(commands: Any) -> None:
    """Add ``cp``, ``save``, ``load``, ``tag``, ``pull`` and ``push``."""
    cp = commands.add_parser(
        "cp", help="copy an image between repositories or registries (no engine)",
        description="Copy an image or index from SRC to DST, across registries, without a "
                    "Docker engine. Blobs the destination has are skipped, blobs of the "
                    "same registry are mounted; nothing is tagged unless every blob "
                    "arrived. --username applies to DST's registry; SRC's credentials "
                    "come from the docker config (registry-nb login).")
    cp.add_argument("source", metavar="SRC", help="host/repo:tag or host/repo@sha256:…")
    cp.add_argument("destination", metavar="DST", help="host/repo[:tag]")
    add_platforms(cp)
    add_registry_flags(cp)
    add_json(cp)
    cp.set_defaults(func=_cmd_cp)

    save = commands.add_parser("save", help="save an image into an OCI layout folder",
                               description="Write IMAGE into the OCI image layout DIR "
                                           "(created if needed; skopeo reads oci:DIR:TAG).")
    save.add_argument("image", help="host/repo:tag")
    save.add_argument("directory", metavar="DIR")
    add_platforms(save)
    add_registry_flags(save)
    add_json(save)
    save.set_defaults(func=_cmd_save)

    load = commands.add_parser("load", help="push an OCI layout or docker-save tarball",
                               description="Push the image of an OCI layout folder or a "
                                           "`docker save` tarball as IMAGE.")
    load.add_argument("source", metavar="DIR|TAR")
    load.add_argument("image", help="host/repo:tag to push as")
    load.add_argument("--source-tag", help="the image in the layout or tarball (default: "
                                           "IMAGE's tag, else the only one)")
    add_platforms(load)
    add_registry_flags(load)
    add_json(load)
    load.set_defaults(func=_cmd_load)

    tag = commands.add_parser("tag", help="add a tag to an image, in the registry",
                              description="Tag IMAGE as NEWTAG in the same repository by "
                                          "copying its manifest (like crane tag): no "
                                          "blob moves.")
    tag.add_argument("image", help="host/repo:tag or host/repo@sha256:…")
    tag.add_argument("new_tag", metavar="NEWTAG")
    add_registry_flags(tag)
    add_json(tag)
    tag.set_defaults(func=_cmd_tag)

    pull = commands.add_parser("pull", help="pull an image into the Docker engine",
                               description="Pull IMAGE into the Docker engine ($DOCKER_HOST).")
    pull.add_argument("image", help="host/repo:tag")
    add_registry_flags(pull)
    add_json(pull)
    pull.set_defaults(func=_cmd_pull)

    push = commands.add_parser("push", help="push an image from the Docker engine",
                               description="Push the engine's image IMAGE (tagged first from "
                                           "--local when given) to its registry.")
    push.add_argument("image", help="host/repo:tag")
    push.add_argument("--local", metavar="NAME", help="local image to tag as IMAGE first")
    add_registry_flags(push)
    add_json(push)
    push.set_defaults(func=_cmd_push)
