# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One map schema, three sides.

The map schemas `bpf_map` accepts (type, key, value, max_entries, flags, inner_map, plus `pinning` and, for
ringbuf/perf_event_array, `event_type`) become a C header (type definitions and `SEC(".maps")` definitions) here,
and Go (cilium/ebpf) bindings in `_codegen_go`. Both are emitted from the same model types (`_btf`), whose layout
code is cross-checked against clang, so the C struct, the Go struct and the YAML cannot drift apart. The reverse
direction reads map definitions and their types from a compiled object's BTF (through libbpf) back into schemas.

Pure text generation: no file is written here and nothing touches the kernel; the surface reads objects (through
`_objects.inspect_object`) and hands their map records to `schemas_from_object_maps`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._map_plan import (
    MANAGED_MAP_TYPES,
    SpecError,
    build_map_spec,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf, _btf_parse, _schema
from ansible_collections.cnf.ebpf.plugins.module_utils.types._abi import MAP_IN_MAP_TYPES, PERCPU_MAP_TYPES, flag_names

GENERATED_BY = "cnf.ebpf.bpf_codegen"
# The layout of the generated C is checked with this clang-format style (kernel-like: tabs, Linux braces).
CLANG_FORMAT_STYLE = (
    "{BasedOnStyle: LLVM, IndentWidth: 8, TabWidth: 8, UseTab: Always, ColumnLimit: 100, BreakBeforeBraces: Linux, "
    "AllowShortEnumsOnASingleLine: false, AllowShortFunctionsOnASingleLine: None, SortIncludes: false}"
)
PINNING = ("none", "by_name")
EVENT_MAP_TYPES = ("ringbuf", "perf_event_array")
MAPS_OF_MAPS = MAP_IN_MAP_TYPES
# Map types libbpf records no key/value BTF for in an object (events: none declared; maps of maps: the value).
NO_BTF_TYPES = EVENT_MAP_TYPES
SCHEMA_KEYS = (
    "name",
    "type",
    "key",
    "key_size",
    "value",
    "value_size",
    "max_entries",
    "flags",
    "numa_node",
    "inner_map",
    "pinning",
    "path",
    "event_type",
)
EVENT_ANCHOR = "__cnf_event_"
INNER_ANCHOR = "__cnf_inner_"
ANCHOR_SECTION = ".cnf_types"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PAGE_SIZE = 4096  # ringbuf sizes are checked against it; the header does not depend on the host's page size


@dataclass
class CodegenMap:
    """One map as the generators see it: validated, with model types for every side that has one."""

    name: str  # the C variable (libbpf's map name and the pin's file name with pinning: by_name)
    type: str
    key: _btf.BtfType | None
    value: _btf.BtfType | None
    key_size: int
    value_size: int
    max_entries: int | None  # None: perf_event_array sized by libbpf to the number of CPUs
    flags: list[str] = field(default_factory=list)
    pinning: str = "none"
    path: str | None = None  # where the map is pinned, for the Go side's default Open
    inner: CodegenMap | None = None
    event: _btf.BtfType | None = None  # what a ringbuf / perf_event_array carries

    @property
    def percpu(self) -> bool:
        return self.type in PERCPU_MAP_TYPES


def _fail(path: str, problem: str) -> SpecError:
    return SpecError(f"{path}: {problem}")


def _nested(path: str, exc: Exception) -> SpecError:
    """A SpecError/BtfError from the bpf_map validators ("key: ...", "inner_map.type: ...") under a schema's path."""
    msg = str(exc)
    return SpecError(f"{path}.{msg}" if re.match(r"^[a-z_]+[.:\[]", msg) else f"{path}: {msg}")


def _type_field(raw: dict[str, Any], side: str, path: str) -> _btf.BtfType | None:
    if raw.get(side) is None:
        return None
    try:
        return _schema.type_from_schema(raw[side], path=side)
    except _btf.BtfError as exc:
        raise _nested(path, exc) from None


def _named(t: _btf.BtfType | None, name: str) -> _btf.BtfType | None:
    """Anonymous top-level structs/unions/enums get a name (`<map>_key`...): C's `__type()` and Go need one."""
    if isinstance(t, _btf.Struct) and not t.name:
        return _btf.Struct(name, t.size, t.members, t.is_union, t.align, t.packed)
    if isinstance(t, _btf.Enum) and not t.name:
        return _btf.Enum(name, t.size, t.signed, t.values)
    return t


def map_from_schema(raw: Any, path: str) -> CodegenMap:
    """Validate one map schema (what `bpf_map` takes, named) into a CodegenMap; errors name the field."""
    if not isinstance(raw, dict):
        raise _fail(path, f"expected a map schema (a mapping with name and type), got {raw!r}")
    unknown = sorted(str(k) for k in raw if k not in SCHEMA_KEYS)
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(SCHEMA_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not _IDENT.match(name):
        raise _fail(
            f"{path}.name", f"{name!r} is not a C identifier (letters, digits and _, not starting with a digit)"
        )
    map_type = raw.get("type")
    if map_type not in MANAGED_MAP_TYPES:
        raise _fail(f"{path}.type", f"{map_type!r} is not one of {', '.join(MANAGED_MAP_TYPES)}")
    pinning = raw.get("pinning") or "none"
    if pinning not in PINNING:
        raise _fail(f"{path}.pinning", f"{pinning!r} is not one of {', '.join(PINNING)}")
    pin_path = raw.get("path")
    if pin_path is not None and (not isinstance(pin_path, str) or not pin_path.startswith("/")):
        raise _fail(f"{path}.path", f"{pin_path!r} must be an absolute path on bpffs")
    event = None
    if raw.get("event_type") is not None:
        if map_type not in EVENT_MAP_TYPES:
            raise _fail(f"{path}.event_type", f"only ringbuf and perf_event_array maps carry events, not {map_type}")
        event = _named(_type_field(raw, "event_type", path), f"{name}_event")
    params = {k: raw.get(k) for k in SCHEMA_KEYS if k not in ("pinning", "event_type", "name", "path")}
    # The kernel's 15-character limit applies to the name it records, which libbpf cuts; the C name may be longer.
    params.update(name=name[:15], path=pin_path or f"/sys/fs/bpf/{name}")
    try:
        spec = build_map_spec(params, page_size=_PAGE_SIZE, possible_cpus=1)
    except SpecError as exc:
        raise _nested(path, exc) from None
    if spec.inner_path:
        raise _fail(
            f"{path}.inner_map", "code generation needs the inner map declared (type, key, value...), not a path"
        )
    inner_map = None
    if map_type in MAPS_OF_MAPS:
        inner_raw = dict(raw["inner_map"])
        inner_raw.setdefault("name", f"{name}_inner")
        inner_map = map_from_schema(inner_raw, f"{path}.inner_map")
    max_entries: int | None = spec.max_entries
    if map_type == "perf_event_array" and raw.get("max_entries") is None:
        max_entries = None
    return CodegenMap(
        name=name,
        type=map_type,
        key=_named(spec.key_type, f"{name}_key"),
        value=_named(spec.value_type, f"{name}_value"),
        key_size=spec.key_size,
        value_size=spec.value_size,
        max_entries=max_entries,
        flags=flag_names(spec.flags),
        pinning=pinning,
        path=pin_path,
        inner=inner_map,
        event=event,
    )


def maps_from_schemas(schemas: Any, path: str = "maps") -> list[CodegenMap]:
    if not isinstance(schemas, list) or not schemas:
        raise _fail(path, "expected a non-empty list of map schemas")
    maps = [map_from_schema(raw, f"{path}[{i}]") for i, raw in enumerate(schemas)]
    seen: dict[str, int] = {}
    for i, m in enumerate(maps):
        if m.name in seen:
            raise _fail(f"{path}[{i}].name", f"{m.name!r} is already the name of {path}[{seen[m.name]}]")
        seen[m.name] = i
    named_types(maps)  # conflicting type definitions fail here, before anything is written
    return maps


def map_to_schema(m: CodegenMap) -> dict[str, Any]:
    """The schema (as `bpf_map`/`bpf_map_entries` and this module take it) describing ``m``."""
    out: dict[str, Any] = {"name": m.name, "type": m.type}
    if m.key is not None and not (m.type in ("array", "percpu_array", "array_of_maps") and _is_u32(m.key)):
        out["key"] = _schema.to_schema(m.key)
    elif m.key is None and m.key_size and m.type not in ("perf_event_array",):
        out["key_size"] = m.key_size
    if m.value is not None:
        out["value"] = _schema.to_schema(m.value)
    elif m.value_size and m.type not in ("perf_event_array", *MAPS_OF_MAPS):
        out["value_size"] = m.value_size
    if m.max_entries is not None:
        out["max_entries"] = m.max_entries
    flags = [f for f in m.flags if not (m.type == "lpm_trie" and f == "no_prealloc")]
    if flags:
        out["flags"] = flags
    if m.inner is not None:
        inner = map_to_schema(m.inner)
        inner.pop("name", None)
        out["inner_map"] = inner
    if m.event is not None:
        out["event_type"] = _schema.to_schema(m.event)
    if m.pinning != "none":
        out["pinning"] = m.pinning
    if m.path:
        out["path"] = m.path
    return out


def _is_u32(t: _btf.BtfType) -> bool:
    r = _btf.resolve(t)
    return isinstance(r, _btf.Int) and r.size == 4 and not r.signed and not r.is_bool and not r.is_char


# ----------------------------------------------------------------------------------------------------------------
# Named types shared by both generators
# ----------------------------------------------------------------------------------------------------------------


def _roots(m: CodegenMap) -> list[tuple[str, _btf.BtfType]]:
    out = [(side, t) for side, t in (("key", m.key), ("value", m.value), ("event_type", m.event)) if t is not None]
    if m.inner is not None:
        out += [(f"inner_map.{side}", t) for side, t in _roots(m.inner)]
    return out


def named_types(maps: list[CodegenMap]) -> list[_btf.BtfType]:
    """Every struct, union and enum the maps use, each once, dependencies first. Anonymous types used as a named
    field's type are named `<parent>_<field>` (the same in C and Go); two different definitions of one name fail."""
    order: list[_btf.BtfType] = []
    by_name: dict[str, tuple[_btf.BtfType, Any, str]] = {}
    done: set[int] = set()

    def visit(t: _btf.BtfType, where: str, hint: str) -> None:
        r = _btf.resolve(t)
        while isinstance(r, _btf.Array):
            r = _btf.resolve(r.elem)
        if not isinstance(r, (_btf.Struct, _btf.Enum)) or id(r) in done:
            return
        if not r.name:
            # Renaming in place keeps identity: every use of this object shares the name.
            r.name = hint
        if isinstance(r, _btf.Struct):
            for member in r.members:
                if member.name:
                    visit(member.type, f"{where}.{member.name}", f"{r.name}_{member.name}")
                else:
                    visit_members(member.type, where, r.name)
        done.add(id(r))
        schema = _schema.to_schema(r)
        if r.name in by_name:
            _other, other_schema, other_where = by_name[r.name]
            if other_schema != schema:
                raise SpecError(f"{where}: {r.kind} {r.name} is defined differently at {other_where}")
            return
        by_name[r.name] = (r, schema, where)
        order.append(r)

    def visit_members(t: _btf.BtfType, where: str, parent: str) -> None:
        # An anonymous struct/union member stays anonymous in C; its own members' types are named after the parent.
        r = _btf.resolve(t)
        if isinstance(r, _btf.Struct):
            for member in r.members:
                if member.name:
                    visit(member.type, f"{where}.{member.name}", f"{parent}_{member.name}")
                else:
                    visit_members(member.type, where, parent)

    for i, m in enumerate(maps):
        for side, t in _roots(m):
            visit(t, f"maps[{i}].{side}", f"{m.name}_{side.replace('inner_map.', 'inner_')}")
    return order


# ----------------------------------------------------------------------------------------------------------------
# C
# ----------------------------------------------------------------------------------------------------------------

_C_SCALARS = {
    "u8": "__u8",
    "u16": "__u16",
    "u32": "__u32",
    "u64": "__u64",
    "s8": "__s8",
    "s16": "__s16",
    "s32": "__s32",
    "s64": "__s64",
    "u128": "unsigned __int128",
    "s128": "__int128",
    "char": "char",
    "bool": "_Bool",
    "float": "float",
    "double": "double",
    "__be16": "__be16",
    "__be32": "__be32",
    "__be64": "__be64",
}
_ARRAY_DIMS = re.compile(r"^(.*?)((?:\[\d+\])+)$")


def _c_type(schema: Any) -> tuple[str, str]:
    """(type spelling, array dimensions) for a canonical type schema (`_schema.to_schema` output)."""
    if isinstance(schema, str):
        m = _ARRAY_DIMS.match(schema.replace(" ", ""))
        base, dims = (m.group(1), m.group(2)) if m else (schema, "")
        return _C_SCALARS[base], dims
    if "count" in schema and "fields" not in schema and schema.get("kind") != "enum":
        inner, dims = _c_type(schema["type"])
        return inner, "[%d]%s" % (schema["count"], dims)
    kind = schema.get("kind", "struct")
    return f"{kind} {schema['name']}", ""


def _c_fields(schema: dict[str, Any], indent: str) -> list[str]:
    lines: list[str] = []
    for f in schema["fields"]:
        ftype = f["type"]
        if not f.get("name") and "bits" not in f:
            # An anonymous struct/union member: inline, as in the schema.
            lines.append(f"{indent}{ftype.get('kind', 'struct')} {{")
            lines += _c_fields(ftype, indent + "\t")
            lines.append(f"{indent}}}{' __attribute__((packed))' if ftype.get('packed') else ''};")
            continue
        spelling, dims = _c_type(ftype)
        decl = f"{spelling} {f['name']}{dims}" if f.get("name") else spelling
        if "bits" in f:
            decl += f" : {f['bits']}"
        if f.get("align"):
            decl += f" __attribute__((aligned({f['align']})))"
        lines.append(f"{indent}{decl};")
    return lines


def _c_definition(t: _btf.BtfType) -> list[str]:
    schema = _schema.to_schema(t)
    if isinstance(t, _btf.Enum):
        base = _C_SCALARS[("s" if t.signed else "u") + str(t.size * 8)]
        lines = [f"enum {t.name} : {base} {{"]
        lines += [f"\t{name} = {value}," for name, value in t.values]
        return [*lines, "};"]
    lines = [f"{schema['kind']} {t.name} {{", *_c_fields(schema, "\t")]
    return [*lines, f"}}{' __attribute__((packed))' if schema.get('packed') else ''};"]


def _c_side(t: _btf.BtfType | None) -> str:
    if t is None:
        return ""
    spelling, dims = _c_type(_schema.to_schema(t))
    if dims:
        # __type() needs a type name, and C spells array types as `T[N]`.
        return f"{spelling}{dims}"
    return spelling


def _c_map_body(m: CodegenMap, indent: str, inner: bool = False) -> list[str]:
    lines = [f"{indent}__uint(type, BPF_MAP_TYPE_{m.type.upper()});"]
    if m.max_entries is not None:
        lines.append(f"{indent}__uint(max_entries, {m.max_entries});")
    if m.type == "perf_event_array":
        lines += [f"{indent}__uint(key_size, sizeof(__u32));", f"{indent}__uint(value_size, sizeof(__u32));"]
    elif m.type != "ringbuf":
        for side, t, size in (("key", m.key, m.key_size), ("value", m.value, m.value_size)):
            if side == "value" and m.inner is not None:
                lines.append(f"{indent}__array(values, struct {_inner_def_name(m)});")
            elif t is not None and inner and _inner_by_size(t):
                # clang writes a struct reached through two pointers (__array -> definition -> __type) as a forward
                # declaration, whose size libbpf cannot tell: an inner map's struct types go by size.
                lines.append(f"{indent}__uint({side}_size, sizeof({_c_side(t)}));")
            elif t is not None:
                lines.append(f"{indent}__type({side}, {_c_side(t)});")
            elif size:
                lines.append(f"{indent}__uint({side}_size, {size});")
    if m.flags:
        lines.append(f"{indent}__uint(map_flags, {' | '.join('BPF_F_' + f.upper() for f in m.flags)});")
    if m.pinning == "by_name":
        lines.append(f"{indent}__uint(pinning, LIBBPF_PIN_BY_NAME);")
    return lines


def _inner_by_size(t: _btf.BtfType | None) -> bool:
    return t is not None and isinstance(_btf.resolve(t), (_btf.Struct, _btf.Enum))


def _anchors(maps: list[CodegenMap]) -> list[tuple[str, _btf.BtfType]]:
    out: list[tuple[str, _btf.BtfType]] = []
    for m in maps:
        if m.event is not None:
            out.append((f"{EVENT_ANCHOR}{m.name}", m.event))
        if m.inner is not None:
            out += [
                (f"{INNER_ANCHOR}{side}_{m.name}", t)
                for side, t in (("key", m.inner.key), ("value", m.inner.value))
                if t is not None and _inner_by_size(t)
            ]
    return out


def _inner_def_name(m: CodegenMap) -> str:
    return f"{m.name}_inner_map_def"


def c_header(maps: list[CodegenMap], guard: str, includes: list[str] | None = None) -> str:
    """The header: includes, every named type, then one `SEC(".maps")` definition per map."""
    includes = ["linux/bpf.h", "bpf/bpf_helpers.h"] if includes is None else includes
    out = [
        f"/* Code generated by {GENERATED_BY} from map schemas; DO NOT EDIT. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
    ]
    out += [f"#include <{inc}>" for inc in includes]
    for t in named_types(maps):
        out += ["", *_c_definition(t)]
    anchors = _anchors(maps)
    if anchors:
        # clang writes BTF only for types a global uses: an unused pointer in a section libbpf skips gives each event
        # type (and each inner map type given by size) its BTF, and no map. bpf_events decodes with it; bpf_codegen
        # reads it back by the anchor's name.
        out += ["", f'#define CNF_TYPE_ANCHOR __attribute__((section("{ANCHOR_SECTION}"), used))']
        for name, t in anchors:
            line = f"static const {_c_side(t)} *{name} CNF_TYPE_ANCHOR;"
            # clang-format's wrap of a declaration over the column limit
            out.append(line if len(line) <= 100 else f"static const {_c_side(t)}\n    *{name} CNF_TYPE_ANCHOR;")
    for m in maps:
        if m.inner is not None:
            # The inner map's definition is a named struct: clang-format cannot lay out one inline in __array().
            out += ["", f"struct {_inner_def_name(m)} {{", *_c_map_body(m.inner, "\t", inner=True), "};"]
        out += ["", "struct {", *_c_map_body(m, "\t"), f'}} {m.name} SEC(".maps");']
    out += ["", f"#endif /* {guard} */", ""]
    return "\n".join(out)


def header_guard(filename: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]", "_", filename.rsplit("/", 1)[-1]).upper()
    return f"CNF_EBPF_{stem}" if not stem.startswith("_") else f"CNF_EBPF{stem}"


# ----------------------------------------------------------------------------------------------------------------
# BTF -> schemas
# ----------------------------------------------------------------------------------------------------------------


def _schema_from_object_map(m: Any) -> dict[str, Any]:
    map_type = m.type
    schema: dict[str, Any] = {"name": m.name, "type": map_type}
    if m.key_type is not None and map_type not in EVENT_MAP_TYPES:
        schema["key"] = _schema.to_schema(m.key_type)
    elif m.key_size and map_type not in (*EVENT_MAP_TYPES, "queue", "stack"):
        schema["key_size"] = m.key_size
    if m.value_type is not None and map_type not in (*EVENT_MAP_TYPES, *MAPS_OF_MAPS):
        schema["value"] = _schema.to_schema(m.value_type)
    elif m.value_size and map_type not in (*EVENT_MAP_TYPES, *MAPS_OF_MAPS):
        schema["value_size"] = m.value_size
    if map_type != "perf_event_array" or m.max_entries:
        schema["max_entries"] = m.max_entries
    flags = [f for f in flag_names(m.flags) if not (map_type == "lpm_trie" and f == "no_prealloc")]
    if flags:
        schema["flags"] = flags
    inner = getattr(m, "inner", None)
    if inner is not None:
        inner_schema = _schema_from_object_map(inner)
        inner_schema.pop("name")
        schema["inner_map"] = inner_schema
    if getattr(m, "pin_path", None):
        schema["pinning"] = "by_name"
    return schema


def anchored_types(btf_raw: bytes | None) -> dict[str, _btf.BtfType]:
    """Anchor name (`__cnf_event_<map>`, `__cnf_inner_value_<map>`...) -> type, from the anchors a generated header
    leaves in the object's BTF."""
    if not btf_raw:
        return {}
    out: dict[str, _btf.BtfType] = {}
    for _tid, t in _btf_parse.Btf.from_raw(btf_raw).types():
        if isinstance(t, _btf.Datasec) and t.name == ANCHOR_SECTION:
            for var, _offset, _size in t.vars:
                target = _btf.resolve(var.type) if isinstance(var, _btf.Var) else None
                if isinstance(target, _btf.Ptr):
                    out[var.name] = target.target
    return out


def schemas_from_object_maps(
    maps: list[Any], source: str, names: list[str] | None = None, btf_raw: bytes | None = None
) -> list[dict[str, Any]]:
    """Map schemas from an object's map records (`_objects.inspect_object(...).maps`: name, type, sizes, flags and
    BTF key/value types). Internal maps (.rodata, .bss...) and map types the collection does not manage are left
    out; `names` picks maps."""
    out = [
        _schema_from_object_map(m)
        for m in maps
        if not m.internal and m.type in MANAGED_MAP_TYPES and (not names or m.name in names)
    ]
    anchored = anchored_types(btf_raw)
    for schema in out:
        name = schema["name"]
        if f"{EVENT_ANCHOR}{name}" in anchored and schema["type"] in EVENT_MAP_TYPES:
            schema["event_type"] = _schema.to_schema(anchored[f"{EVENT_ANCHOR}{name}"])
        for side in ("key", "value"):
            t = anchored.get(f"{INNER_ANCHOR}{side}_{name}")
            inner = schema.get("inner_map")
            if t is not None and inner is not None and inner.get(f"{side}_size") == t.size:
                del inner[f"{side}_size"]
                inner[side] = _schema.to_schema(t)
    if names:
        missing = sorted(set(names) - {s["name"] for s in out})
        if missing:
            raise SpecError(f"names: {', '.join(missing)} not among the maps of {source}")
    return out
