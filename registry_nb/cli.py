"""The ``registry-nb`` command: listings in the terminal and the JupyterLab launcher."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from .remote.credentials import RegistryCredentials

__all__ = ["main"]


def _short_digest(value: object) -> object:
    """``sha256:`` + the first 12 hex digits, as docker prints ids."""
    if isinstance(value, str) and value.startswith("sha256:"):
        return value[:19]
    return value


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    """A frame's chosen columns as plain text (times to the minute, digests shortened)."""
    if frame.empty:
        return "(nothing)"
    shown = frame[[c for c in columns if c in frame.columns]].copy()
    for name in shown.columns:
        if str(shown[name].dtype).startswith("datetime64"):
            shown[name] = shown[name].dt.strftime("%Y-%m-%d %H:%M")
        elif name in ("digest", "image_id"):
            shown[name] = shown[name].map(_short_digest)
    return shown.to_string(index=False, na_rep="-")


def _count(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _credentials(args: argparse.Namespace) -> RegistryCredentials | None:
    from .remote.credentials import RegistryCredentials

    if not args.username:
        return None
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else \
        os.environ.get("REGISTRY_NB_PASSWORD", "")
    return RegistryCredentials(username=args.username, password=password,
                               registry_url=args.registry)


def _cmd_ls(args: argparse.Namespace) -> int:
    from .registry import ContainerRegistry

    reg = ContainerRegistry(args.registry, _credentials(args), insecure=args.insecure,
                            ca_bundle=args.ca_bundle)
    with reg:
        frame = reg.registry_images_frame(args.repository, limit=args.limit,
                                          platform=args.platform)
    columns = ["repository", "tag", "digest", "size_mb", "layer_count", "created",
               "architecture", "os", "error"]
    if frame["error"].isna().all():
        columns.remove("error")
    print(_table(frame, columns))
    return 0


def _cmd_images(args: argparse.Namespace) -> int:
    from .registry import ContainerRegistry

    with ContainerRegistry("") as reg:
        if not reg.is_available():
            print(f"registry-nb: no Docker engine answers at {reg.engine.base_url}: "
                  "start dockerd or set DOCKER_HOST", file=sys.stderr)
            return 1
        frame = reg.local_images_frame(args.repository)
    print(_table(frame, ["repository", "tag", "image_id", "size_mb", "created",
                         "architecture"]))
    return 0


def _cmd_seed(args: argparse.Namespace) -> int:
    from .demo import seed_demo_images

    seed_demo_images(args.registry)
    return 0


def _cmd_lab(args: argparse.Namespace) -> int:
    notebook = Path(args.notebook)
    root = Path(args.root).resolve()
    command = [
        sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}",
        f"--ServerApp.ip={args.ip}", f"--ServerApp.port={args.port}", "--no-browser",
        "--ServerApp.open_browser=False",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    if notebook.is_file():
        try:
            command.append(f"--LabApp.default_url=/lab/tree/{notebook.resolve().relative_to(root)}")
        except ValueError:
            pass
    print("starting JupyterLab; its URL with the token is printed below", flush=True)
    os.execv(sys.executable, command)
    return 0  # pragma: no cover - execv does not return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry-nb", description="Container images and OCI registries, from a notebook."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ls = sub.add_parser(
        "ls", help="list a registry's tags as a table",
        description="List a registry's tags with digest, compressed size and platform: "
                    "one repository's, or the whole catalog's.")
    ls.add_argument("registry", help="registry host[:port] or URL (e.g. 127.0.0.1:5000)")
    ls.add_argument("repository", nargs="?", help="only this repository's tags")
    ls.add_argument("--limit", type=_count, default=100, help="at most this many rows (100)")
    ls.add_argument("--platform", help="platform an index row describes (os/arch[/variant])")
    ls.add_argument("--username", help="log in as this user (default: the docker config)")
    ls.add_argument("--password-stdin", action="store_true",
                    help="read the password from stdin (else $REGISTRY_NB_PASSWORD)")
    ls.add_argument("--insecure", action="store_true",
                    help="allow plain HTTP or unverified TLS for a non-loopback host")
    ls.add_argument("--ca-bundle", help="PEM file of CAs to trust for this registry")
    ls.set_defaults(func=_cmd_ls)

    images = sub.add_parser("images", help="list local images in the Docker engine",
                            description="List the Docker engine's images, one row per tag.")
    images.add_argument("repository", nargs="?", help="only this repository")
    images.set_defaults(func=_cmd_images)

    seed = sub.add_parser("seed", help="push the demo images into a registry",
                          description="Push the notebooks' demo images (demo/*) into a "
                                      "registry, without a Docker engine. Idempotent.")
    seed.add_argument("registry", nargs="?", default="127.0.0.1:5000",
                      help="registry host[:port] (127.0.0.1:5000)")
    seed.set_defaults(func=_cmd_seed)

    lab = sub.add_parser("lab", help="start JupyterLab on the tour notebook",
                         description="Start JupyterLab on a notebook (the tour by default).")
    lab.add_argument("--notebook", default="notebooks/01-registry-tour.ipynb")
    lab.add_argument("--root", default=".", help="folder JupyterLab serves (.)")
    lab.add_argument("--ip", default="127.0.0.1")
    lab.add_argument("--port", type=int, default=8888)
    lab.set_defaults(func=_cmd_lab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``registry-nb`` command line."""
    from .errors import RegistryError

    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RegistryError as exc:
        print(f"registry-nb: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
