"""``seed``, ``lab`` and ``env``: the demo images, JupyterLab, and how a new shell reaches
the engine and registry that ``scripts/lab.sh`` (``scripts/services.py``) started."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from .common import CliError, add_json, emit

DEFAULT_STATE = "/tmp/registry-nb-services"


def _cmd_seed(args: argparse.Namespace) -> int:
    from ..demo import seed_demo_images

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


def _services_script() -> str:
    """How to run ``scripts/services.py`` of this checkout (or where it would be)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "services.py"
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def _cmd_env(args: argparse.Namespace) -> int:
    state = Path(os.environ.get("REGISTRY_NB_STATE") or DEFAULT_STATE)
    path = state / "services.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CliError(f"no services were started here: {path} does not exist.",
                       "Start the registry and engine with scripts/lab.sh (or `python "
                       "scripts/services.py start`), or set REGISTRY_NB_STATE to their "
                       "folder.") from None
    values = {"REGISTRY_NB_STATE": str(state)}
    if info.get("docker_host"):
        values["DOCKER_HOST"] = info["docker_host"]
    if info.get("open", {}).get("host"):
        values["REGISTRY_NB_REGISTRY"] = info["open"]["host"]
    stop = f"REGISTRY_NB_STATE={shlex.quote(str(state))} {_services_script()} stop"
    data = {"variables": values, "stop": stop, "services_json": str(path)}

    def text() -> str:
        lines = ["# registry-nb services (eval \"$(registry-nb env)\" in a new shell)"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
        lines.append(f"# stop them: {stop}")
        return "\n".join(lines)

    emit(args, data, text)
    return 0


def register(commands: Any) -> None:
    """Add ``seed``, ``lab`` and ``env``."""
    seed = commands.add_parser("seed", help="push the demo images into a registry",
                               description="Push the notebooks' demo images (demo/*) into a "
                                           "registry, without a Docker engine. Idempotent.")
    seed.add_argument("registry", nargs="?", default="127.0.0.1:5000",
                      help="registry host[:port] (127.0.0.1:5000)")
    seed.set_defaults(func=_cmd_seed)

    lab = commands.add_parser("lab", help="start JupyterLab on the tour notebook",
                              description="Start JupyterLab on a notebook (the tour by "
                                          "default).")
    lab.add_argument("--notebook", default="notebooks/01-registry-tour.ipynb")
    lab.add_argument("--root", default=".", help="folder JupyterLab serves (.)")
    lab.add_argument("--ip", default="127.0.0.1")
    lab.add_argument("--port", type=int, default=8888)
    lab.set_defaults(func=_cmd_lab)

    env = commands.add_parser(
        "env", help="print the exports that reach lab.sh's engine and registry",
        description="Print `export` lines for a new shell (DOCKER_HOST, "
                    "REGISTRY_NB_REGISTRY) from $REGISTRY_NB_STATE/services.json, and how "
                    "to stop the services. Use: eval \"$(registry-nb env)\".")
    add_json(env)
    env.set_defaults(func=_cmd_env)
