"""The layering of DESIGN.md and the README: a module imports only its layer and those below."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "registry_nb"

#: Layer rank of every module (lower ranks never import higher ones).
LAYERS: dict[str, int] = {
    **dict.fromkeys(["errors", "reference", "manifest", "auth", "transport", "distribution",
                     "cache"], 0),
    **dict.fromkeys(["progress", "engine", "image", "layout", "copy", "assemble", "layers"], 1),
    **dict.fromkeys(["frames", "registry", "audit", "charts", "vulns"], 2),
    **dict.fromkeys(["widgets", "cli", "demo", "__init__", "__main__"], 3),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level == 1:
                names.update(alias.name for alias in node.names)
            elif node.level == 2 and node.module:  # inside widgets/
                names.add(node.module.split(".")[0])
            elif node.module and node.module.startswith("registry_nb."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("registry_nb."):
                    names.add(alias.name.split(".")[1])
    return names


def test_every_module_has_a_layer():
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    unknown = sorted(m for m in modules if m not in LAYERS and not m.startswith("_"))
    assert not unknown, f"add these modules to a layer (README architecture): {unknown}"


def test_lower_layers_never_import_higher_ones():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        here = _module_name(path)
        if here not in LAYERS:
            continue
        for name in _imported(path):
            if name in LAYERS and LAYERS[name] > LAYERS[here]:
                problems.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not problems, problems


def test_protocol_layer_uses_no_pandas_docker_or_widgets():
    for name, rank in LAYERS.items():
        path = PACKAGE / f"{name}.py"
        if rank != 0 or not path.exists():
            continue
        text = path.read_text()
        for banned in ("import pandas", "import docker", "import ipywidgets"):
            assert banned not in text, f"{name}.py: {banned}"


def test_importing_the_package_does_not_import_widgets():
    code = "import sys, registry_nb; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
