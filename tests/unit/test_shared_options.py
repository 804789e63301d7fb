"""Options several modules share are spec'd once (plugins/module_utils/surface/_options.py) and documented once
(plugins/doc_fragments/): this proves the two agree, and that every module takes both or neither.

Pure: the modules' DOCUMENTATION is parsed from their source, the fragments and the surface modules are imported
(nothing touches the kernel)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _options

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
COLLECTION = "cnf.ebpf"
PACKAGE = "ansible_collections.cnf.ebpf.plugins"
# The documented properties an argument spec also has: validate-modules compares these, and so does this test.
DOC_KEYS = ("type", "default", "choices", "elements", "required", "aliases")
# What a shared spec may hold besides them (no_log is not documented).
SPEC_ONLY_KEYS = {"no_log"}
TYPE_SCHEMAS = f"{COLLECTION}.encoding.type_schemas"


def _fragment_attributes() -> dict[str, dict[str, Any]]:
    """Every fragment of the collection, by the name a module extends it with (`cnf.ebpf.<file>.<attribute>`, lower
    case, as ansible-core resolves it; plain `cnf.ebpf.<file>` for DOCUMENTATION), parsed."""
    found = {}
    for path in sorted((PLUGINS / "doc_fragments").glob("*.py")):
        if path.name == "__init__.py":
            continue
        cls = importlib.import_module(f"{PACKAGE}.doc_fragments.{path.stem}").ModuleDocFragment
        for attr, text in vars(cls).items():
            if attr.isupper() and isinstance(text, str):
                name = f"{COLLECTION}.{path.stem}" + ("" if attr == "DOCUMENTATION" else f".{attr.lower()}")
                found[name] = yaml.safe_load(text)
    return found


FRAGMENTS = _fragment_attributes()
# Each shared option: the fragment documenting it and the helper giving its spec.
SHARED = {
    option: (fragment, getattr(_options, option))
    for fragment, doc in FRAGMENTS.items()
    for option in (doc.get("options") or {})
}


def _module_doc_and_spec(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A module's own DOCUMENTATION (fragments not merged) and the ARGUMENT_SPEC its main() uses."""
    tree = ast.parse(path.read_text(), str(path))
    doc = surface = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            doc = yaml.safe_load(node.value.value)
        elif isinstance(node, ast.ImportFrom) and any(a.name == "ARGUMENT_SPEC" for a in node.names):
            surface = node.module
    assert doc is not None and surface is not None, f"{path.name}: no DOCUMENTATION or no ARGUMENT_SPEC import"
    return doc, importlib.import_module(surface).ARGUMENT_SPEC


MODULES = {path.stem: _module_doc_and_spec(path) for path in sorted((PLUGINS / "modules").glob("*.py"))}


def _extends(doc: dict[str, Any]) -> list[str]:
    return list(doc.get("extends_documentation_fragment") or [])


def _documented(option_doc: dict[str, Any]) -> dict[str, Any]:
    """The properties of a documented option that its argument spec must match, with ansible's defaults filled."""
    props = {k: option_doc[k] for k in DOC_KEYS if k in option_doc}
    props.setdefault("type", "str")
    props.setdefault("required", False)
    return props


def _spec_props(spec: dict[str, Any]) -> dict[str, Any]:
    props = {k: spec[k] for k in DOC_KEYS if k in spec}
    props.setdefault("type", "str")
    props.setdefault("required", False)
    return props


def _walk_specs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every option's spec, suboptions included."""
    found = []
    for option in spec.values():
        found.append(option)
        found.extend(_walk_specs(option.get("options") or {}))
    return found


def test_the_collection_shares_these_options() -> None:
    assert sorted(SHARED) == ["formats", "lock_timeout", "pin_root", "state_dir"]
    assert set(FRAGMENTS) >= {TYPE_SCHEMAS}


@pytest.mark.parametrize("option", sorted(SHARED))
def test_fragment_documents_the_helper_spec(option: str) -> None:
    fragment, helper = SHARED[option]
    spec = helper()
    assert set(spec) - set(DOC_KEYS) <= SPEC_ONLY_KEYS
    assert _documented(FRAGMENTS[fragment]["options"][option]) == _spec_props(spec)
    assert helper() is not spec and helper() == spec  # a new dict per call: no shared mutable default


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_takes_shared_options_from_helper_and_fragment(module: str) -> None:
    doc, spec = MODULES[module]
    own = doc.get("options") or {}
    extends = _extends(doc)
    for name in extends:
        if name.startswith(f"{COLLECTION}."):
            assert name in FRAGMENTS, f"{module}: unknown fragment {name}"
    for option, (fragment, helper) in SHARED.items():
        documented_by_fragment = fragment in extends
        assert (option in spec) == documented_by_fragment, (
            f"{module}: {option} must come from both _options.{option}() and {fragment}, or from neither"
        )
        if documented_by_fragment:
            assert option not in own, f"{module}: documents {option} itself as well as through {fragment}"
            assert spec[option] == helper(), f"{module}: ARGUMENT_SPEC[{option!r}] is not _options.{option}()"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_with_type_schemas_carry_the_schema_note(module: str) -> None:
    doc, spec = MODULES[module]
    takes_schemas = any(option == _options.type_schema() for option in _walk_specs(spec))
    assert takes_schemas == (TYPE_SCHEMAS in _extends(doc))


def test_type_schema_options_are_all_the_helper_spec() -> None:
    """Every raw option that is a type schema (no_log=False: its name may say "key") is the helper's spec, so the
    schema options of all modules stay one thing."""
    for module, (_doc, spec) in MODULES.items():
        for option in _walk_specs(spec):
            if option.get("type") == "raw" and "no_log" in option:
                assert option == _options.type_schema(), module


def test_fragment_names_resolve_as_ansible_resolves_them() -> None:
    """ansible-core first loads `a.b.c.d` as a fragment file, then as file `a.b.c` with attribute `D` (upper case)."""
    from ansible_collections.cnf.ebpf.plugins.doc_fragments import application

    assert yaml.safe_load(application.ModuleDocFragment.PIN_ROOT) == FRAGMENTS["cnf.ebpf.application.pin_root"]
    for name in (n for doc, _spec in MODULES.values() for n in _extends(doc) if n.startswith(f"{COLLECTION}.")):
        file, attr = name[len(COLLECTION) + 1 :].rsplit(".", 1)
        assert hasattr(importlib.import_module(f"{PACKAGE}.doc_fragments.{file}").ModuleDocFragment, attr.upper())
