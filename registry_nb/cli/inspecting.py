"""``inspect``, ``digest`` and ``layers``: what an image or index is, read from its registry."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..oci import Index
from .common import (
    add_json,
    add_registry_flags,
    emit,
    frame_records,
    human_bytes,
    image_ref,
    open_registry,
    table,
)


def _image_args(parser: argparse.ArgumentParser, *, platform: bool = True) -> None:
    parser.add_argument("image", help="host/repo:tag or host/repo@sha256:…")
    if platform:
        parser.add_argument("--platform", help="the image of an index for os/arch[/variant] "
                                               "(default: linux/amd64 or the only one)")
    add_registry_flags(parser)
    add_json(parser)


def _cmd_inspect(args: argparse.Namespace) -> int:
    ref = image_ref(args.image)
    with open_registry(args, ref.registry) as reg:
        resolved = reg.images.resolve(ref.repository, ref.identifier, args.platform)
    top, manifest, config = resolved.top, resolved.manifest, resolved.config
    if args.raw:
        chosen = manifest if args.platform or not isinstance(top, Index) else top
        sys.stdout.buffer.write(chosen.raw)
        sys.stdout.buffer.flush()
        return 0
    platforms = [{"platform": str(d.platform) if d.platform else None, "digest": d.digest,
                  "size": d.size, "media_type": d.media_type}
                 for d in top.manifests] if isinstance(top, Index) else []
    data: dict[str, Any] = {
        "reference": str(ref), "digest": top.digest, "media_type": top.media_type,
        "platforms": platforms, "image_digest": manifest.digest,
        "platform": str(config.platform), "config_digest": manifest.config.digest,
        "created": config.created.isoformat() if config.created else None,
        "size_bytes": manifest.compressed_size, "layers": len(manifest.layers),
        "manifest": json.loads(manifest.raw), "config": json.loads(config.raw),
    }

    def text() -> str:
        cfg = config.config
        lines = [f"{ref}", f"  digest      {top.digest}", f"  media type  {top.media_type}"]
        if platforms:
            lines.append(f"  platforms   {len(platforms)}")
            lines += [f"    {p['platform'] or '-':<18} {p['digest']}" for p in platforms]
            lines.append(f"  showing     {config.platform} ({manifest.digest[:19]})")
        if not platforms:
            lines.append(f"  platform    {config.platform}")
        lines += [
            f"  created     {data['created'] or '-'}",
            f"  layers      {len(manifest.layers)} ({human_bytes(manifest.compressed_size)} "
            "compressed)",
            f"  config      {manifest.config.digest}",
            f"  entrypoint  {json.dumps(cfg.entrypoint) if cfg.entrypoint else '-'}",
            f"  cmd         {json.dumps(cfg.cmd) if cfg.cmd else '-'}",
        ]
        lines += [f"  env         {e}" for e in cfg.env]
        lines += [f"  label       {k}={v}" for k, v in sorted(cfg.labels.items())]
        return "\n".join(lines)

    emit(args, data, text)
    return 0


def _cmd_digest(args: argparse.Namespace) -> int:
    ref = image_ref(args.image)
    with open_registry(args, ref.registry) as reg:
        if args.platform:
            digest = reg.images.resolve(ref.repository, ref.identifier,
                                        args.platform).manifest.digest
        else:
            digest = reg.client.get_manifest(ref.repository, ref.identifier).digest
    emit(args, {"reference": str(ref), "digest": digest}, digest)
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    ref = image_ref(args.image)
    with open_registry(args, ref.registry) as reg:
        frame = reg.layers_frame(ref.repository, ref.identifier, platform=args.platform)
    columns = ["index", "digest", "size_mb", "media_type", "created_by"]
    emit(args, frame_records(frame), lambda: table(frame, columns))
    return 0


def register(commands: Any) -> None:
    """Add ``inspect``, ``digest`` and ``layers``."""
    inspect = commands.add_parser(
        "inspect", help="manifest, config and platforms of an image or index",
        description="Show an image's digest, platforms (for an index), config and layers; "
                    "--raw prints the manifest bytes as the registry serves them.")
    _image_args(inspect)
    inspect.add_argument("--raw", action="store_true",
                         help="print the raw manifest (the index's, or --platform's image)")
    inspect.set_defaults(func=_cmd_inspect)

    digest = commands.add_parser("digest", help="print the digest of an image or index",
                                 description="Print the manifest digest a tag names "
                                             "(--platform: that image's, inside an index).")
    _image_args(digest)
    digest.set_defaults(func=_cmd_digest)

    layers = commands.add_parser("layers", help="an image's layers with their history",
                                 description="List an image's layers in order with size "
                                             "and the build step that made each.")
    _image_args(layers)
    layers.set_defaults(func=_cmd_layers)
