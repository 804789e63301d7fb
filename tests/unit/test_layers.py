"""The tree is the architecture: every module_utils file lives in a layer package, and imports only what its layer
may import (the `May import:` line of the package's docstring, which must say what ARCHITECTURE says).

Pure static analysis (the files are parsed, not imported), so a violation fails here before anything runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
MODULE_UTILS = PLUGINS / "module_utils"
COLLECTION = "ansible_collections.cnf.ebpf.plugins.module_utils"

# The diagram of docs/architecture.md, as data: each layer and the layers it borders below. Importing any other
# layer is reaching past a neighbour (the surface calling the kernel, planning reading a pin) or reaching up.
ARCHITECTURE: dict[str, set[str]] = {
    "types": set(),
    "kernel": {"types"},
    "resources": {"kernel", "types"},
    "planning": {"types"},
    "surface": {"resources", "planning"},
}
# Standard-library and third-party modules that do I/O: a pure layer imports none of them, so its functions cannot
# touch a file descriptor, a pin, a socket or a process. ctypes is the kernel layer's alone.
IO_MODULES = {"os", "io", "ctypes", "subprocess", "socket", "fcntl", "select", "shutil", "tempfile", "pyroute2", "glob"}
PURE_LAYERS = {"types", "planning"}


def _layer_files() -> dict[str, list[Path]]:
    return {layer: sorted((MODULE_UTILS / layer).glob("*.py")) for layer in ARCHITECTURE}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in the file, whatever its position (top level, function, TYPE_CHECKING
    block): a layer's dependencies are all of them."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import (ansible-test requires absolute ones)")
            found.append((node.lineno, node.module))
            # `from <package> import <module>` imports the module itself
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def _layer_of(module: str) -> str | None:
    """The layer package a dotted module of this collection lives in; None for anything else."""
    if not module.startswith(COLLECTION + "."):
        return None
    return module[len(COLLECTION) + 1 :].split(".")[0]


def _declared(layer: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((MODULE_UTILS / layer / "__init__.py").read_text())) or ""
    match = re.search(r"^May import: (.*?)\.$", doc, re.M)
    assert match, f"{layer}/__init__.py: the docstring has no 'May import: ...' line"
    text = match.group(1).strip()
    return set() if text == "nothing from this collection" else {w.strip() for w in text.split(",")}


def test_every_file_lives_in_a_layer() -> None:
    flat = sorted(p.name for p in MODULE_UTILS.glob("*.py") if p.name != "__init__.py")
    assert flat == [], f"module_utils files outside a layer package: {flat}"
    packages = sorted(p.name for p in MODULE_UTILS.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert packages == sorted(ARCHITECTURE)


@pytest.mark.parametrize("layer", sorted(ARCHITECTURE))
def test_docstring_says_what_the_layer_may_import(layer: str) -> None:
    assert _declared(layer) == ARCHITECTURE[layer]


def _violations(layer: str, path: Path) -> list[str]:
    allowed = ARCHITECTURE[layer] | {layer}
    where = path.relative_to(path.parents[1]) if path.is_relative_to(PLUGINS) else path.name
    wrong = []
    for line, module in _imports(path):
        target = _layer_of(module)
        root = module.split(".")[0]
        if target is not None and target not in allowed:
            wrong.append(f"{where}:{line}: imports {module} ({target} layer)")
        elif layer in PURE_LAYERS and root in IO_MODULES:
            wrong.append(f"{where}:{line}: imports {module} in the pure {layer} layer")
        elif root == "ctypes" and layer != "kernel":
            wrong.append(f"{where}:{line}: imports ctypes outside the kernel layer")
        elif root == "ansible" and layer != "surface":
            wrong.append(f"{where}:{line}: imports {module}: Ansible is the surface's")
    return wrong


@pytest.mark.parametrize("layer", sorted(ARCHITECTURE))
def test_layer_imports_only_its_neighbours(layer: str) -> None:
    assert [v for path in _layer_files()[layer] for v in _violations(layer, path)] == []


def test_modules_call_only_the_surface() -> None:
    wrong = []
    for path in sorted((PLUGINS / "modules").glob("*.py")):
        for line, module in _imports(path):
            target = _layer_of(module)
            if target is not None and target != "surface":
                wrong.append(f"{path.relative_to(PLUGINS)}:{line}: imports {module}")
    assert wrong == []


def test_the_graph_has_no_cycle() -> None:
    seen: dict[str, int] = {}

    def depth(layer: str, trail: tuple[str, ...] = ()) -> int:
        assert layer not in trail, f"cycle: {' -> '.join((*trail, layer))}"
        if layer not in seen:
            seen[layer] = 1 + max((depth(d, (*trail, layer)) for d in ARCHITECTURE[layer]), default=-1)
        return seen[layer]

    assert max(depth(layer) for layer in ARCHITECTURE) == 3  # types < kernel < resources < surface


def test_the_check_sees_violations(tmp_path: Path) -> None:
    """The analysis itself: a planning file that reads a pin through the kernel, a resource that asks the planner,
    a type that imports ctypes inside a function: each is caught."""
    bad = tmp_path / "_bad.py"
    bad.write_text(f"import os\nfrom {COLLECTION}.kernel import _libbpf\n")
    assert [v.split(": ", 1)[1] for v in _violations("planning", bad)] == [
        "imports os in the pure planning layer",
        f"imports {COLLECTION}.kernel (kernel layer)",
        f"imports {COLLECTION}.kernel._libbpf (kernel layer)",
    ]
    bad.write_text(f"from {COLLECTION}.planning._map_plan import plan_map\n")
    assert len(_violations("resources", bad)) == 2
    assert _violations("surface", bad) == []
    bad.write_text("def f():\n    import ctypes\n")
    assert _violations("types", bad) == ["_bad.py:2: imports ctypes in the pure types layer"]
