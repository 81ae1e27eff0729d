"""The layering of DESIGN.md and the README, checked in the source and at run time.

Each top-level unit of ``registry_nb`` (a package such as ``remote/`` or a module such
as ``registry.py``) has a rank; a unit imports only units of its rank or lower. The
static test reads every import statement (relative ones resolved); the run-time tests
import each unit in a fresh interpreter and look at what ``sys.modules`` then holds, so
an import hidden in a re-export or a function called at import time is caught too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "registry_nb"

#: Rank of every top-level unit: lower ranks never import higher ones (README table).
LAYERS: dict[str, int] = {
    "_version": 0, "errors": 0, "progress": 0, "interrupt": 0,
    "oci": 1,
    "remote": 2,
    "images": 3,
    "engine": 4, "frames": 4,
    "audits": 5,
    "registry": 6, "listings": 6, "fleet": 6,
    "widgets": 7, "cli": 7, "charts": 7, "demo": 7, "demo_supply": 7, "demo_ops": 7, "__main__": 7,
    "_aliases": 8, "__init__": 8,
}
#: Third-party packages a unit must not load, even indirectly.
BANNED = {
    "oci": {"requests", "urllib3", "pandas", "docker", "ipywidgets", "matplotlib"},
    "remote": {"pandas", "docker", "ipywidgets", "matplotlib"},
    "images": {"pandas", "docker", "ipywidgets", "matplotlib"},
    "engine": {"pandas", "ipywidgets", "matplotlib"},
    "audits": {"docker", "ipywidgets"},
    "__init__": {"requests", "pandas", "docker", "ipywidgets", "matplotlib"},
}
#: Most lines in a module without a written reason at its top.
MAX_LINES = 600


def _unit(module: str) -> str:
    """``registry_nb.remote.auth`` -> ``remote``; ``registry_nb`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, names) of every import of a registry_nb module in ``path``."""
    here = _module_of(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == "registry_nb" or module.startswith("registry_nb."):
                out.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, []) for alias in node.names
                       if alias.name.startswith("registry_nb."))
    return out


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer():
    units = {_unit(_module_of(p)) for p in _sources()}
    unknown = sorted(units - set(LAYERS))
    assert not unknown, f"add these to a layer (README architecture): {unknown}"


def test_lower_layers_never_import_higher_ones():
    problems = []
    for path in _sources():
        here = _unit(_module_of(path))
        for module, names in _imports(path):
            targets = [module] if module != "registry_nb" else [f"registry_nb.{n}" for n in names]
            for target in targets:
                there = _unit(target)
                if there in LAYERS and LAYERS[there] > LAYERS[here]:
                    problems.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not problems, problems


def test_no_module_imports_another_modules_private_names():
    problems = []
    for path in _sources():
        here = _module_of(path)
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and module != here:
                problems.append(f"{path.relative_to(PACKAGE)}: {private} from {module}")
    assert not problems, problems


def test_no_module_reaches_into_another_modules_private_attributes():
    """``obj._name`` is allowed only for names the same module defines (its own classes)."""
    problems = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        own = {node.name for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        own |= {target.attr for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Attribute)}
        own |= {node.target.attr for node in ast.walk(tree)
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and node.attr not in own):
                problems.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(node)}")
    assert not problems, problems


def test_modules_stay_small_or_say_why():
    long = []
    for path in _sources():
        lines = path.read_text().splitlines()
        head = "\n".join(lines[:30])
        if len(lines) > MAX_LINES and "longer than 600 lines" not in head.lower():
            long.append(f"{path.relative_to(PACKAGE)}: {len(lines)} lines")
    assert not long, long


def _loaded_by(module: str) -> dict[str, list[str]]:
    code = (
        "import json, sys\n"
        f"import {module}\n"
        "print(json.dumps({'own': sorted(m for m in sys.modules if m.startswith('registry_nb')),"
        " 'all': sorted(sys.modules)}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("unit", ["oci", "remote", "images", "engine", "audits", "registry"])
def test_importing_a_layer_loads_only_lower_layers(unit):
    loaded = _loaded_by(f"registry_nb.{unit}")
    higher = [m for m in loaded["own"]
              if LAYERS.get(_unit(m), 99) > LAYERS[unit] and _unit(m) not in ("__init__",
                                                                             "_aliases")]
    assert not higher, f"import registry_nb.{unit} loads {higher}"
    banned = {m.split(".")[0] for m in loaded["all"]} & BANNED.get(unit, set())
    assert not banned, f"import registry_nb.{unit} loads {sorted(banned)}"


def test_importing_the_package_loads_nothing_heavy():
    loaded = _loaded_by("registry_nb")
    assert set(loaded["own"]) <= {"registry_nb", "registry_nb._aliases", "registry_nb._version"}
    banned = {m.split(".")[0] for m in loaded["all"]} & BANNED["__init__"]
    assert not banned, banned


def test_old_module_paths_still_import():
    code = (
        "import registry_nb.distribution as old, registry_nb.remote.distribution as new\n"
        "assert old is new and old.__spec__.name == 'registry_nb.remote.distribution'\n"
        "from registry_nb.manifest import Platform, OCI_INDEX, ImageConfig\n"
        "from registry_nb.auth import RegistryCredentials, parse_www_authenticate\n"
        "from registry_nb.audit import RULES, audit_rules\n"
        "from registry_nb import reference, layout, copy, assemble, image, layers, vulns, cache\n"
        "from registry_nb.transport import Transport\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_lazy_exports_are_the_real_objects():
    import registry_nb
    from registry_nb.registry import ContainerRegistry
    from registry_nb.remote.credentials import RegistryCredentials

    assert registry_nb.ContainerRegistry is ContainerRegistry
    assert registry_nb.RegistryCredentials is RegistryCredentials
    assert registry_nb.CodomyrmexError is registry_nb.RegistryError
    assert set(registry_nb.__all__) <= set(dir(registry_nb))
    with pytest.raises(AttributeError):
        registry_nb.no_such_name  # noqa: B018
