"""docs/architecture.md is what tools/cnf-ebpf-architecture makes of the tree today: a file added, moved or
re-described without regenerating it fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> Any:
    spec = importlib.util.spec_from_file_location("cnf_ebpf_architecture", ROOT / "tools" / "architecture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_architecture_doc_is_current() -> None:
    assert (ROOT / "docs" / "architecture.md").read_text() == _tool().render(), (
        "docs/architecture.md is stale: run tools/cnf-ebpf-architecture --write"
    )


def test_every_layer_file_is_described() -> None:
    tool = _tool()
    for layer in tool.LAYERS:
        for path in tool._files(layer):
            assert tool._first_sentence(tool._docstring(path)), f"{path}: no module docstring to describe it"
