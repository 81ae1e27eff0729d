#!/usr/bin/env python3
"""Turn off JupyterLab's news pop-up and update check for one Python environment.

    python scripts/quiet_jupyterlab.py [SETTINGS_DIR]

A fresh JupyterLab 4 asks "Would you like to get notified about official Jupyter
news?" in a toast that covers the notebook, and may fetch news and check for
updates over the internet. This writes JupyterLab's *settings overrides*
(``overrides.json``: the defaults this environment starts with; a user can still
change them in Settings) with ``fetchNews: "false"`` and ``checkForUpdates:
false``. SETTINGS_DIR defaults to the environment's own
``{sys.prefix}/share/jupyter/lab/settings``, so nothing outside the project's
``.venv`` (or Binder's environment) is touched. Other overrides already in the
file are kept. Used by ``scripts/lab.sh``, ``binder/postBuild`` and the browser
tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PLUGIN = "@jupyterlab/apputils-extension:notification"
QUIET = {"fetchNews": "false", "checkForUpdates": False}


def default_settings_dir() -> Path:
    """Where JupyterLab reads this environment's settings overrides."""
    return Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"


def write_overrides(settings_dir: Path) -> Path:
    """Merge the quiet notification settings into ``settings_dir/overrides.json``."""
    path = settings_dir / "overrides.json"
    overrides = json.loads(path.read_text()) if path.is_file() else {}
    overrides.setdefault(PLUGIN, {}).update(QUIET)
    settings_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(overrides, indent=2) + "\n")
    return path


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else default_settings_dir()
    write_overrides(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
