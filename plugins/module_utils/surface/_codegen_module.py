# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_codegen: argument spec, generate() (shared by the module and the CLI) and the
command line, cli_main() (run by `tools/cnf-ebpf-codegen`)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.planning import _codegen, _codegen_go
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._files import atomic_file
from ansible_collections.cnf.ebpf.plugins.module_utils.surface import _options
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import with_defaults

# no_log=False: "key" is a map key type, not a secret (validate-modules flags the name).
MAP_SCHEMA_OPTIONS: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "type": {"type": "str", "required": True},
    "key": _options.type_schema(),
    "key_size": {"type": "int", "no_log": False},
    "value": _options.type_schema(),
    "value_size": {"type": "int"},
    "max_entries": {"type": "int"},
    "flags": {"type": "list", "elements": "str"},
    "numa_node": {"type": "int"},
    "inner_map": {"type": "dict"},
    "event_type": _options.type_schema(),
    "pinning": {"type": "str", "choices": list(_codegen.PINNING), "default": "none"},
    "path": {"type": "str"},
}
ARGUMENT_SPEC: dict[str, Any] = {
    "maps": {"type": "list", "elements": "dict", "options": MAP_SCHEMA_OPTIONS},
    "src": {"type": "path"},
    "object": {"type": "path"},
    "names": {"type": "list", "elements": "str"},
    "c_header": {"type": "path"},
    "c_includes": {"type": "list", "elements": "str", "default": ["linux/bpf.h", "bpf/bpf_helpers.h"]},
    "go": {"type": "path"},
    "go_package": {"type": "str"},
    "schemas": {"type": "path"},
    "mode": {"type": "raw", "default": "0644"},
}
MUTUALLY_EXCLUSIVE = [("maps", "src", "object")]
REQUIRED_ONE_OF = [("maps", "src", "object")]
_GO_PACKAGE = re.compile(r"^[a-z_][a-z0-9_]*$")


class CodegenError(ValueError):
    """Bad input; the message starts with the option at fault."""


def _load_schemas(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise CodegenError(f"src: cannot read {path}: {exc.strerror}") from None
    try:
        import yaml  # PyYAML comes with ansible-core; the command line takes JSON without it
    except ImportError:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CodegenError(f"src: {path} is not JSON (and PyYAML, for YAML, is not installed): {exc}") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CodegenError(f"src: {path} is not YAML/JSON: {exc}") from None
    if isinstance(data, dict) and "maps" in data:
        data = data["maps"]
    return data


def _schemas(p: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    if p.get("object"):
        from ansible_collections.cnf.ebpf.plugins.module_utils.resources._objects import inspect_object  # needs libbpf

        if not os.path.isfile(p["object"]):
            raise CodegenError(f"object: {p['object']} does not exist")
        spec = inspect_object(p["object"])
        return _codegen.schemas_from_object_maps(spec.maps, p["object"], p.get("names"), spec.btf_raw), "object"
    if p.get("names"):
        raise CodegenError("names: only used with object (it picks maps of the object)")
    if p.get("src"):
        return _load_schemas(p["src"]), "src"
    return p["maps"], "maps"


def _mode(value: Any) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise CodegenError(f"mode: {value!r} is not an octal file mode such as '0644'") from None


def _go_package(p: dict[str, Any]) -> str:
    name = p.get("go_package")
    if not name:
        name = re.sub(r"[^a-z0-9_]", "", os.path.basename(os.path.dirname(os.path.abspath(p["go"]))).lower()) or "maps"
        if name[0].isdigit():
            name = "maps"
    if not _GO_PACKAGE.match(name):
        raise CodegenError(f"go_package: {name!r} is not a Go package name (lower-case letters, digits and _)")
    return name


def _schemas_text(schemas: list[dict[str, Any]]) -> str:
    import yaml

    head = f"# Map schemas written by {_codegen.GENERATED_BY}; bpf_map, bpf_map_entries and bpf_codegen take them.\n"
    return head + yaml.safe_dump(schemas, sort_keys=False, default_flow_style=False)


def generate(params: dict[str, Any], check_mode: bool = False, diff: bool = False) -> dict[str, Any]:
    """Validate everything, render every requested file, then write only the files whose content changed."""
    p = with_defaults(ARGUMENT_SPEC, params)
    if not (p.get("c_header") or p.get("go") or p.get("schemas")):
        raise CodegenError("c_header, go, schemas: give at least one file to write")
    raw, source = _schemas(p)
    try:
        maps = _codegen.maps_from_schemas(raw, path=source)
    except ValueError as exc:  # SpecError / BtfError name the field
        raise CodegenError(str(exc)) from None
    mode = _mode(p["mode"])
    outputs: list[tuple[str, str]] = []
    if p.get("c_header"):
        guard = _codegen.header_guard(p["c_header"])
        outputs.append((p["c_header"], _codegen.c_header(maps, guard, list(p["c_includes"]))))
    if p.get("go"):
        outputs.append((p["go"], _codegen_go.go_source(maps, _go_package(p))))
    normalised = [_codegen.map_to_schema(m) for m in maps]
    if p.get("schemas"):
        outputs.append((p["schemas"], _schemas_text(normalised)))
    files: dict[str, str] = {}
    diffs: list[dict[str, str]] = []
    for path, text in outputs:
        try:
            with open(path, encoding="utf-8") as f:
                old: str | None = f.read()
        except FileNotFoundError:
            old = None
        mode_changed = old is not None and (os.stat(path).st_mode & 0o7777) != mode
        if old == text and not mode_changed:
            files[path] = "unchanged"
            continue
        files[path] = "created" if old is None else ("updated" if old != text else "mode")
        if diff and old != text:
            diffs.append({"before_header": path, "after_header": path, "before": old or "", "after": text})
        if not check_mode:
            if old == text:
                os.chmod(path, mode)
            else:
                with atomic_file(path, mode=mode) as f:
                    f.write(text)
    result: dict[str, Any] = {
        "changed": any(state != "unchanged" for state in files.values()),
        "files": files,
        "maps": normalised,
        "go_types": _codegen_go.go_type_names(maps) if p.get("go") else {},
    }
    if diff:
        result["diff"] = diffs
    return result


def run(module: Any) -> None:
    try:
        result = generate(module.params, check_mode=module.check_mode, diff=module._diff)
    except ValueError as exc:  # CodegenError, SpecError, BtfError: the message names the option
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename}: {exc.strerror}")
    except Exception as exc:  # BpfError reading an object: libbpf's own message
        module.fail_json(msg=f"object: {exc}")
    module.exit_json(**result)


def cli_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cnf-ebpf-codegen",
        description="Generate C map definitions and Go (cilium/ebpf) bindings from cnf.ebpf map schemas, "
        "or schemas from a compiled object's BTF.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--src", help="YAML/JSON file with a list of map schemas (or a mapping with 'maps')")
    source.add_argument("--object", help="compiled BPF object (clang -g -target bpf) to read map schemas from")
    parser.add_argument("--name", action="append", dest="names", help="with --object: only this map (repeatable)")
    parser.add_argument("--c-header", help="C header to write")
    parser.add_argument("--c-include", action="append", dest="c_includes", help="header the C header includes")
    parser.add_argument("--go", help="Go file to write")
    parser.add_argument("--go-package", help="Go package name (default: the Go file's directory name)")
    parser.add_argument("--schemas", help="YAML file to write the (normalised) map schemas to")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    parser.add_argument("--diff", action="store_true", help="print a diff of each changed file")
    args = parser.parse_args(argv)
    params = {k: v for k, v in vars(args).items() if k not in ("check", "diff") and v is not None}
    try:
        result = generate(params, check_mode=args.check, diff=args.diff)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"cnf-ebpf-codegen: {exc}\n")
        return 2
    if args.diff:
        import difflib

        for d in result.get("diff", []):
            sys.stdout.writelines(
                difflib.unified_diff(
                    d["before"].splitlines(True), d["after"].splitlines(True), d["before_header"], d["after_header"]
                )
            )
    for path, state in result["files"].items():
        sys.stderr.write(f"{path}: {state}\n")
    sys.stdout.write("" if args.diff else json.dumps({"changed": result["changed"], "files": result["files"]}) + "\n")
    return 1 if args.check and result["changed"] else 0
