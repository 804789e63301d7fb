# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Go bindings for github.com/cilium/ebpf from the same model types as the C header.

The types are placed by `_codegen_go_types` (exactly the C layout: same size, every field at its C offset, what Go
cannot place kept as bytes behind a getter and a setter); this module writes the file: the type declarations,
compile-time assertions that make a layout difference a build error, and a typed wrapper per map. Because the memory
layout equals the map's, values cross the syscall boundary as raw memory (no reflection, no encoding/binary). The
runtime helpers the file may need are the static text of `_codegen_go_helpers`.

`MarshalJSON` on every generated type writes what `cnf.ebpf.bpf_map_entries` (state gathered) returns for the same
bytes, so a Go agent and a playbook report the same entries the same way.

The output is gofmt-clean: the emitter aligns struct fields and constants as gofmt does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._codegen import (
    GENERATED_BY,
    MAPS_OF_MAPS,
    CodegenMap,
    named_types,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.planning._codegen_go_helpers import HELPERS
from ansible_collections.cnf.ebpf.plugins.module_utils.planning._codegen_go_types import (
    Go,
    GoField,
    GoStruct,
    GoType,
    go_name,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf

_GO_MAP_TYPES = {
    "hash": "Hash",
    "lru_hash": "LRUHash",
    "percpu_hash": "PerCPUHash",
    "lru_percpu_hash": "LRUCPUHash",
    "hash_of_maps": "HashOfMaps",
    "array": "Array",
    "percpu_array": "PerCPUArray",
    "array_of_maps": "ArrayOfMaps",
    "ringbuf": "RingBuf",
    "perf_event_array": "PerfEventArray",
    "queue": "Queue",
    "stack": "Stack",
    "lpm_trie": "LPMTrie",
}
# Kernel batch operations per map type (generic batch ops: hash and array kinds; not LPM tries).
_BATCH_TYPES = frozenset({"hash", "lru_hash", "array"})
_DELETE_TYPES = frozenset({"hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "hash_of_maps", "lpm_trie"})


def _align_block(rows: list[list[str]], indent: str = "\t") -> list[str]:
    """gofmt's alignment: cells padded to the widest in their column, runs broken by rows of another shape."""
    out: list[str] = []
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and len(rows[j]) == len(rows[i]):
            j += 1
        run = rows[i:j]
        if len(run[0]) == 1:
            out += [indent + r[0] for r in run]
        else:
            widths = [max(len(r[c]) for r in run) for c in range(len(run[0]) - 1)]
            for r in run:
                cells = [r[c].ljust(widths[c]) for c in range(len(r) - 1)] + [r[-1]]
                out.append(indent + " ".join(cells))
        i = j
    return out


def _bit_expr(span: str, span_offset: int, m: _btf.Member, gt: GoType) -> tuple[str, str]:
    """(getter expression, setter statement) for a bitfield member stored in the bytes `span` (starting at byte
    span_offset of the struct)."""
    shift = m.bit_offset - span_offset * 8
    width = m.bitfield_size
    signed = gt.kind in ("int", "char", "enum") and gt.signed
    get = f"bitsGet({span}, {shift}, {width}, {'true' if signed else 'false'})"
    if gt.kind == "bool":
        return f"{get} != 0", f"bitsSet({span}, {shift}, {width}, boolBits(v))"
    return f"{gt.expr}({get})", f"bitsSet({span}, {shift}, {width}, uint64(v))"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def block(self, *lines: str) -> None:
        if self.lines:
            self.lines.append("")
        self.lines.extend(lines)


def _planned(maps: list[CodegenMap]) -> tuple[Go, list[_btf.BtfType]]:
    g = Go()
    types = named_types(maps)
    for t in types:
        if isinstance(t, _btf.Struct):
            g.plan(t)
        else:
            g.type_name(t)
    return g, types


def go_type_names(maps: list[CodegenMap]) -> dict[str, str]:
    """C struct/union/enum name -> Go type name."""
    g, types = _planned(maps)
    out = {t.name: g.type_name(t) for t in types}
    out.update({s.name: g.names[id(s)] for s in g.order if s.name})  # anonymous members' types have no C name
    return dict(sorted(out.items()))


def go_layout(maps: list[CodegenMap]) -> dict[str, dict[str, Any]]:
    """Go type -> its C size and where each Go struct field sits: what the generated file asserts at compile time."""
    g, _types = _planned(maps)
    out: dict[str, dict[str, Any]] = {}
    for s in g.order:
        gs = g.structs[id(s)]
        fields = {
            f.name: {"offset": f.offset, "size": f.size, "c": f.member.name if f.member else None, "kind": f.kind}
            for f in gs.fields
            if f.kind != "pad"
        }
        out[gs.name] = {"c": s.name, "size": s.size, "fields": fields}
    return out


def go_source(maps: list[CodegenMap], package: str) -> str:
    """The Go file: types with C layout, their JSON and per-CPU sums, and a typed wrapper per map."""
    g, types = _planned(maps)
    w = _Writer()
    # Enums first, then structs in dependency order (plan() appends members before parents).
    for t in types:
        if isinstance(t, _btf.Enum):
            _emit_enum(g, w, t)
    for s in list(g.order):
        _emit_struct(g, w, g.structs[id(s)])
    for m in maps:
        _emit_map(g, w, m)
    _emit_helpers(g, w)
    head = [
        f"// Code generated by {GENERATED_BY} from map schemas; DO NOT EDIT.",
        "",
        f"// Package {package} holds the types and typed map wrappers of the maps it was generated for.",
        f"package {package}",
        "",
        "import (",
    ]
    std = sorted(i for i in g.imports if "." not in i.split("/")[0])
    ext = sorted(i for i in g.imports if "." in i.split("/")[0])
    head += [f'\t"{i}"' for i in std]
    if std and ext:
        head.append("")
    head += [f'\t"{i}"' for i in ext]
    head.append(")")
    return "\n".join([*head, "", *w.lines]) + "\n"


def _emit_enum(g: Go, w: _Writer, t: _btf.Enum) -> None:
    name = g.type_name(t)
    base = f"{'int' if t.signed else 'uint'}{t.size * 8}"
    w.block(f"// {name} is C's enum {t.name}.", f"type {name} {base}")
    # Enumerators keep C's spelling: C enumerators are global names already.
    w.block("const (", *_align_block([[vname, name, f"= {value}"] for vname, value in t.values]), ")")
    first: dict[int, str] = {}
    for vname, value in t.values:
        first.setdefault(value, vname)  # the first name of a value wins, as in the collection's decoder
    number = "strconv.AppendInt(b, int64(e), 10)" if t.signed else "strconv.AppendUint(b, uint64(e), 10)"
    w.block(
        "// String is the enumerator's C name, or the number when it has none.",
        f"func (e {name}) String() string {{",
        "\treturn string(e.appendName(nil, false))",
        "}",
    )
    w.block(
        f"func (e {name}) appendName(b []byte, quoted bool) []byte {{",
        "\tswitch e {",
        *[
            line
            for value, vname in first.items()
            for line in (
                f"\tcase {vname}:",
                f'\t\tname := "{vname}"',
                "\t\tif quoted {",
                "\t\t\treturn strconv.AppendQuote(b, name)",
                "\t\t}",
                "\t\treturn append(b, name...)",
            )
        ],
        "\t}",
        f"\treturn {number}",
        "}",
    )
    w.block(
        f"func (e {name}) appendJSON(b []byte) []byte {{",
        "\treturn e.appendName(b, true)",
        "}",
    )
    w.block(
        "// MarshalJSON writes the enumerator's name, as cnf.ebpf.bpf_map_entries does.",
        f"func (e {name}) MarshalJSON() ([]byte, error) {{",
        "\treturn e.appendJSON(nil), nil",
        "}",
    )


def _emit_struct(g: Go, w: _Writer, gs: GoStruct) -> None:
    s = gs.c
    kind = "union" if s.is_union else "struct"
    rows = [[f.expr] if f.kind == "embed" else [f.name, f.expr] for f in gs.fields]
    w.block(
        f"// {gs.name} is C's {kind} {s.name} ({s.size} bytes{', packed' if s.packed and not s.is_union else ''}).",
        f"type {gs.name} struct {{",
        *_align_block(rows),
        "}",
    )
    # Layout assertions: a negative array length stops the build if Go's layout ever differs from C's.
    asserts = [
        f"var _ [unsafe.Sizeof({gs.name}{{}}) - {s.size}]byte",
        f"var _ [{s.size} - unsafe.Sizeof({gs.name}{{}})]byte",
    ]
    for f in gs.fields:
        if f.kind in ("native", "embed") and f.offset:
            asserts.append(f"var _ [unsafe.Offsetof({gs.name}{{}}.{f.name}) - {f.offset}]byte")
            asserts.append(f"var _ [{f.offset} - unsafe.Offsetof({gs.name}{{}}.{f.name})]byte")
    w.block(*asserts)
    w.block(
        "// MarshalBinary returns the C bytes of the value (cilium/ebpf uses it for keys and values).",
        f"func (s {gs.name}) MarshalBinary() ([]byte, error) {{",
        "\treturn append([]byte(nil), rawBytes(&s)...), nil",
        "}",
    )
    w.block(
        "// UnmarshalBinary reads the value from its C bytes.",
        f"func (s *{gs.name}) UnmarshalBinary(data []byte) error {{",
        f"\treturn rawRead(s, data, {s.name!r})".replace("'", '"'),
        "}",
    )
    json_fields: list[list[str]] = []
    adds: list[str] = []
    if s.is_union:
        for i, m in enumerate(s.members):
            json_fields.append(_union_member(g, w, gs, i, m))
    else:
        for f in gs.fields:
            if f.kind == "pad":
                continue
            if f.kind == "bits":
                for m in f.bit_members:
                    if not m.name:
                        continue
                    gt = g.go_type(m.type)
                    get, set_ = _bit_expr(f"s.{f.name}[:]", f.offset, m, gt)
                    getter = _accessor_name(gs, m.name)
                    w.block(
                        f"// {getter} is the {m.bitfield_size}-bit field {m.name}.",
                        f"func (s *{gs.name}) {getter}() {gt.expr} {{",
                        f"\treturn {get}",
                        "}",
                    )
                    w.block(
                        f"// Set{getter} sets the {m.bitfield_size}-bit field {m.name} (extra high bits are dropped).",
                        f"func (s *{gs.name}) Set{getter}(v {gt.expr}) {{",
                        f"\t{set_}",
                        "}",
                    )
                    g.helpers.add("bits")
                    json_fields.append(_json_field(g, m.name, f"s.{getter}()", gt))
                    if gt.kind == "int":
                        adds += [f"s.Set{getter}(s.{getter}() + o.{getter}())"]
                continue
            if f.member is None or f.gtype is None:
                raise AssertionError(f"{gs.name}.{f.name}: a {f.kind} field without its member")
            if f.kind == "embed":
                json_fields.append([f"b = s.{f.name}.appendJSONFields(b)"])
                adds += [f"s.{f.name}.addFrom(&o.{f.name})"]
                continue
            if f.kind == "native":
                json_fields.append(_json_field(g, f.member.name, f"s.{f.name}", f.gtype))
                adds += g.add_lines(f"s.{f.name}", f"o.{f.name}", f.gtype)
                continue
            # raw: bytes at the C offset behind a getter and a setter
            getter = _accessor_name(gs, f.member.name or g.names[id(_btf.resolve(f.member.type))])
            what = f"field {f.member.name}" if f.member.name else "anonymous member"
            w.block(
                f"// {getter} reads the {what}: bytes at offset {f.offset}, {_why_raw(gs, f)}.",
                f"func (s *{gs.name}) {getter}() {f.gtype.expr} {{",
                f"\tvar v {f.gtype.expr}",
                f"\tcopy(rawBytes(&v), s.{f.name}[:])",
                "\treturn v",
                "}",
            )
            w.block(
                f"// Set{getter} writes the {what}.",
                f"func (s *{gs.name}) Set{getter}(v {f.gtype.expr}) {{",
                f"\tcopy(s.{f.name}[:], rawBytes(&v))",
                "}",
            )
            if f.member.name:
                json_fields.append(_json_field(g, f.member.name, f"s.{getter}()", f.gtype))
            else:
                json_fields.append([f"v := s.{getter}()", "b = v.appendJSONFields(b)"])
            if g.summable(f.gtype):
                adds += [
                    "{",
                    f"\tx, y := s.{getter}(), o.{getter}()",
                    *["\t" + line for line in g.add_lines("x", "y", f.gtype)],
                    f"\ts.Set{getter}(x)",
                    "}",
                ]
    w.block(
        f"func (s *{gs.name}) appendJSONFields(b []byte) []byte {{",
        *["\t" + line for group in json_fields for line in _scoped_block(group)],
        "\treturn b",
        "}",
    )
    w.block(
        f"func (s *{gs.name}) appendJSON(b []byte) []byte {{",
        "\tb = append(b, '{')",
        "\tb = s.appendJSONFields(b)",
        "\tif b[len(b)-1] == ',' {",
        "\t\tb = b[:len(b)-1]",
        "\t}",
        "\treturn append(b, '}')",
        "}",
    )
    w.block(
        "// MarshalJSON writes the value as cnf.ebpf.bpf_map_entries (state gathered) returns it.",
        f"func (s {gs.name}) MarshalJSON() ([]byte, error) {{",
        "\treturn s.appendJSON(nil), nil",
        "}",
    )
    w.block(
        "// addFrom adds o's integer fields into s (per-CPU sums; other fields keep s's value).",
        f"func (s *{gs.name}) addFrom(o *{gs.name}) {{",
        *["\t" + line for line in adds],
        "}",
    )


def _json_field(g: Go, c_name: str, value: str, gt: GoType) -> list[str]:
    key = f'b = append(b, `"{c_name}":`...)'
    if value.endswith("()") and gt.kind in ("cstring", "array", "struct", "enum", "be", "int128"):
        # A getter's result is not addressable: hold it in a variable.
        return [key, f"v := {value}", *g.json_lines("v", gt), "b = append(b, ',')"]
    return [key, *g.json_lines(value, gt), "b = append(b, ',')"]


def _why_raw(gs: GoStruct, f: GoField) -> str:
    t = f.gtype.expr if f.gtype is not None else "field"
    if f.gtype is not None and f.offset % f.gtype.align:
        return f"misaligned for a Go {t}"
    return f"since a Go {t} field would pad the {gs.c.size}-byte struct"


def _accessor_name(gs: GoStruct, c_name: str) -> str:
    name = go_name(c_name)
    taken = {f.name for f in gs.fields}
    while name in taken or name in ("MarshalJSON", "MarshalBinary", "UnmarshalBinary", "String"):
        name += "Field"
    gs.accessors[c_name] = name
    return name


def _union_member(g: Go, w: _Writer, gs: GoStruct, index: int, m: _btf.Member) -> list[str]:
    gt = g.go_type(m.type)
    if m.bitfield_size:
        start, end = m.bit_offset // 8, (m.bit_offset + m.bitfield_size + 7) // 8
        get, set_ = _bit_expr(f"s.raw[{start}:{end}]", start, m, gt)
        getter = _accessor_name(gs, m.name)
        g.helpers.add("bits")
        w.block(f"func (s *{gs.name}) {getter}() {gt.expr} {{", f"\treturn {get}", "}")
        w.block(f"func (s *{gs.name}) Set{getter}(v {gt.expr}) {{", f"\t{set_}", "}")
        return _json_field(g, m.name, f"s.{getter}()", gt) if m.name else []
    getter = _accessor_name(gs, m.name) if m.name else _accessor_name(gs, g.names[id(_btf.resolve(m.type))])
    size = m.type.size
    w.block(
        f"// {getter} reads the union as its member {m.name or '(anonymous)'}.",
        f"func (s *{gs.name}) {getter}() {gt.expr} {{",
        f"\tvar v {gt.expr}",
        f"\tcopy(rawBytes(&v), s.raw[:{size}])",
        "\treturn v",
        "}",
    )
    w.block(
        f"// Set{getter} writes the member {m.name or '(anonymous)'} (the union's other bytes are left as they are).",
        f"func (s *{gs.name}) Set{getter}(v {gt.expr}) {{",
        f"\tcopy(s.raw[:{size}], rawBytes(&v))",
        "}",
    )
    if m.name:
        return _json_field(g, m.name, f"s.{getter}()", gt)
    return [f"v := s.{getter}()", "b = v.appendJSONFields(b)"]


# ------------------------------------------------------------------------------------------------------------------
# Maps
# ------------------------------------------------------------------------------------------------------------------


def _side(g: Go, t: _btf.BtfType | None, size: int) -> GoType:
    if t is not None:
        return g.go_type(t)
    return GoType(f"[{size}]byte", 1, "array", elem=GoType("uint8", 1, "int"), count=size)


def _lpm_cidr(m: CodegenMap) -> tuple[_btf.Member, int] | None:
    """The LPM key's data member when gathered shows the key as CIDR text (4 or 16 bytes of address)."""
    r = _btf.resolve(m.key) if m.key is not None else None
    if not isinstance(r, _btf.Struct) or len(r.members) != 2:
        return None
    data = r.members[1]
    if data.bitfield_size or not data.name or data.bit_offset % 8 or data.type.size not in (4, 16):
        return None
    return data, data.type.size


def _emit_map(g: Go, w: _Writer, m: CodegenMap) -> None:
    name = go_name(m.name)
    wrapper = f"{name}Map"
    g.taken.add(wrapper)
    desc = f"{m.type}"
    if m.max_entries is not None:
        desc += f", {m.max_entries} {'bytes' if m.type == 'ringbuf' else 'entries'}"
    w.block(
        f"// {wrapper} is the {m.name} map ({desc}). Close it when done.",
        f"type {wrapper} struct {{",
        "\t*ebpf.Map",
        "}",
    )
    if m.path:
        w.block(f"// {name}PinPath is where the {m.name} map is pinned.", f'const {name}PinPath = "{m.path}"')
    w.block(
        f"// Open{name} opens the {m.name} map pinned at path and checks its type and sizes against the schema.",
        f"func Open{name}(path string) (*{wrapper}, error) {{",
        f'\tm, err := openPinned(path, "{m.name}", ebpf.{_GO_MAP_TYPES[m.type]}, {m.key_size}, {m.value_size})',
        "\tif err != nil {",
        "\t\treturn nil, err",
        "\t}",
        f"\treturn &{wrapper}{{m}}, nil",
        "}",
    )
    g.helpers.add("open")
    g.imports.add("fmt")
    if m.type in ("ringbuf", "perf_event_array"):
        _emit_event_map(g, w, m, wrapper)
        return
    if m.type in ("queue", "stack"):
        _emit_queue(g, w, m, wrapper)
        return
    key = _side(g, m.key, m.key_size)
    if m.type in MAPS_OF_MAPS:
        _emit_map_of_maps(g, w, m, wrapper, key)
        if m.inner is not None:
            _emit_map(g, w, dataclasses.replace(m.inner, path=None))
        return
    value = _side(g, m.value, m.value_size)
    entry = f"{name}Entry"
    g.taken.add(entry)
    percpu = m.percpu
    vexpr = f"[]{value.expr}" if percpu else value.expr
    w.block(
        f"// {entry} is one entry of the {m.name} map{' (a value per CPU)' if percpu else ''}.",
        f"type {entry} struct {{",
        *_align_block([["Key", key.expr], ["Value", vexpr]]),
        "}",
    )
    key_json = g.json_lines("e.Key", key)
    cidr = _lpm_cidr(m) if m.type == "lpm_trie" else None
    if cidr is not None:
        data, _width = cidr
        r = _btf.resolve(m.key)
        if not isinstance(r, _btf.Struct):
            raise AssertionError(f"{m.name}: an LPM key with data is a struct")
        kgs = g.plan(r)
        g.imports.add("net")
        g.helpers.add("cidr")
        pl = "e.Key.Prefixlen" if "prefixlen" not in kgs.accessors else f"e.Key.{kgs.accessors['prefixlen']}()"
        data_field = next((f for f in kgs.fields if f.member is data), None)
        if data_field is not None and data_field.kind == "native":
            key_json = [f"b = appendCIDR(b, uint32({pl}), rawBytes(&e.Key.{data_field.name}))"]
        else:
            getter = kgs.accessors.get(data.name, go_name(data.name))
            key_json = [f"d := e.Key.{getter}()", f"b = appendCIDR(b, uint32({pl}), rawBytes(&d))"]
    if percpu:
        value_json = [
            'b = append(b, `{"per_cpu":[`...)',
            "for i, v := range e.Value {",
            "\tif i > 0 {",
            "\t\tb = append(b, ',')",
            "\t}",
            *["\t" + line for line in g.json_lines("v", value, 1)],
            "}",
            'b = append(b, `],"sum":`...)',
            f"sum := Sum{name}(e.Value)",
            *g.json_lines("sum", value),
            "b = append(b, '}')",
        ]
    else:
        value_json = g.json_lines("e.Value", value)
    w.block(
        "// MarshalJSON writes the entry as cnf.ebpf.bpf_map_entries (state gathered) returns it.",
        f"func (e {entry}) MarshalJSON() ([]byte, error) {{",
        '\tb := []byte(`{"key":`)',
        *["\t" + line for line in _scoped_block(key_json)],
        '\tb = append(b, `,"value":`...)',
        *["\t" + line for line in _scoped_block(value_json)],
        "\treturn append(b, '}'), nil",
        "}",
    )
    if percpu:
        adds = g.add_lines("out", "v", value)
        w.block(
            f"// Sum{name} adds the per-CPU values of a {m.name} entry (integers add; other fields are CPU 0's).",
            f"func Sum{name}(values []{value.expr}) {value.expr} {{",
            f"\tvar out {value.expr}",
            "\tif len(values) == 0 {",
            "\t\treturn out",
            "\t}",
            "\tout = values[0]",
            *(["\tfor _, v := range values[1:] {", *["\t\t" + line for line in adds], "\t}"] if adds else []),
            "\treturn out",
            "}",
        )
        w.block(
            "// Lookup returns the value of every CPU for key.",
            f"func (m *{wrapper}) Lookup(key {key.expr}) ([]{value.expr}, error) {{",
            f"\tvar values []{value.expr}",
            "\terr := m.Map.Lookup(unsafe.Pointer(&key), &values)",
            "\treturn values, err",
            "}",
        )
        w.block(
            "// LookupSum returns the values of key summed over the CPUs.",
            f"func (m *{wrapper}) LookupSum(key {key.expr}) ({value.expr}, error) {{",
            "\tvalues, err := m.Lookup(key)",
            f"\treturn Sum{name}(values), err",
            "}",
        )
        w.block(
            "// Update writes one value per CPU (CPUs past the end of values get zeroes).",
            f"func (m *{wrapper}) Update(key {key.expr}, values []{value.expr}, flags ebpf.MapUpdateFlags) error {{",
            "\treturn m.Map.Update(unsafe.Pointer(&key), values, flags)",
            "}",
        )
    else:
        w.block(
            "// Lookup returns the value stored for key (ebpf.ErrKeyNotExist when there is none).",
            f"func (m *{wrapper}) Lookup(key {key.expr}) ({value.expr}, error) {{",
            f"\tvar value {value.expr}",
            "\terr := m.Map.Lookup(unsafe.Pointer(&key), unsafe.Pointer(&value))",
            "\treturn value, err",
            "}",
        )
        w.block(
            "// Update writes value for key (flags: ebpf.UpdateAny, UpdateNoExist, UpdateExist).",
            f"func (m *{wrapper}) Update(key {key.expr}, value {value.expr}, flags ebpf.MapUpdateFlags) error {{",
            "\treturn m.Map.Update(unsafe.Pointer(&key), unsafe.Pointer(&value), flags)",
            "}",
        )
    if m.type in _DELETE_TYPES:
        w.block(
            "// Delete removes key.",
            f"func (m *{wrapper}) Delete(key {key.expr}) error {{",
            "\treturn m.Map.Delete(unsafe.Pointer(&key))",
            "}",
        )
    iter_value = "values" if percpu else "value"
    w.block(
        "// Iterate calls fn for each entry until fn returns false (one lookup per entry; see Entries for batches).",
        f"func (m *{wrapper}) Iterate(fn func(key {key.expr}, {iter_value} {vexpr}) bool) error {{",
        f"\tvar key {key.expr}",
        f"\tvar {iter_value} {vexpr}",
        "\tit := m.Map.Iterate()",
        f"\tfor it.Next(unsafe.Pointer(&key), {'&values' if percpu else 'unsafe.Pointer(&value)'}) {{",
        f"\t\tif !fn(key, {iter_value}) {{",
        "\t\t\treturn nil",
        "\t\t}",
        "\t}",
        "\treturn it.Err()",
        "}",
    )
    if m.type in _BATCH_TYPES:
        g.helpers.add("batch")
        g.imports.add("errors")
        w.block(
            "// Entries reads every entry, in batches where the kernel supports them (one lookup per entry if not).",
            f"func (m *{wrapper}) Entries() ([]{entry}, error) {{",
            f"\tvar out []{entry}",
            f"\tkeys := make([]{key.expr}, batchSize)",
            f"\tvalues := make([]{value.expr}, batchSize)",
            f"\tvar cursor, next {key.expr}",
            "\tvar prev interface{}",
            "\tfor {",
            "\t\tn, err := m.Map.BatchLookup(prev, unsafe.Pointer(&next), rawSlice["
            + key.expr
            + "](keys), rawSlice["
            + value.expr
            + "](values), nil)",
            "\t\tfor i := 0; i < n; i++ {",
            f"\t\t\tout = append(out, {entry}{{keys[i], values[i]}})",
            "\t\t}",
            "\t\tif errors.Is(err, ebpf.ErrKeyNotExist) {",
            "\t\t\treturn out, nil",
            "\t\t}",
            "\t\tif errors.Is(err, ebpf.ErrNotSupported) {",
            "\t\t\treturn m.entriesOneByOne()",
            "\t\t}",
            "\t\tif err != nil {",
            "\t\t\treturn out, err",
            "\t\t}",
            "\t\tcursor = next",
            "\t\tprev = unsafe.Pointer(&cursor)",
            "\t}",
            "}",
        )
        w.block(
            f"func (m *{wrapper}) entriesOneByOne() ([]{entry}, error) {{",
            f"\tvar out []{entry}",
            f"\terr := m.Iterate(func(key {key.expr}, value {value.expr}) bool {{",
            f"\t\tout = append(out, {entry}{{key, value}})",
            "\t\treturn true",
            "\t})",
            "\treturn out, err",
            "}",
        )
        w.block(
            "// BatchUpdate writes many entries in one system call; it returns how many were written.",
            f"func (m *{wrapper}) BatchUpdate(keys []{key.expr}, values []{value.expr}, "
            "flags ebpf.MapUpdateFlags) (int, error) {",
            "\topts := &ebpf.BatchOptions{ElemFlags: uint64(flags)}",
            f"\treturn m.Map.BatchUpdate(rawSlice[{key.expr}](keys), rawSlice[{value.expr}](values), opts)",
            "}",
        )
        if m.type in _DELETE_TYPES:
            w.block(
                "// BatchDelete removes many keys in one system call; it returns how many were removed.",
                f"func (m *{wrapper}) BatchDelete(keys []{key.expr}) (int, error) {{",
                f"\treturn m.Map.BatchDelete(rawSlice[{key.expr}](keys), nil)",
                "}",
            )
    else:
        why = "per-CPU maps are read" if percpu else "LPM tries have no batch operations: read"
        w.block(
            f"// Entries reads every entry ({why} one entry at a time).",
            f"func (m *{wrapper}) Entries() ([]{entry}, error) {{",
            f"\tvar out []{entry}",
            f"\terr := m.Iterate(func(key {key.expr}, {iter_value} {vexpr}) bool {{",
            f"\t\tout = append(out, {entry}{{key, {iter_value}}})",
            "\t\treturn true",
            "\t})",
            "\treturn out, err",
            "}",
        )


def _scoped_block(lines: list[str]) -> list[str]:
    if any(" := " in x and not x.startswith("for ") for x in lines):
        return ["{", *["\t" + x for x in lines], "}"]
    return lines


def _emit_map_of_maps(g: Go, w: _Writer, m: CodegenMap, wrapper: str, key: GoType) -> None:
    inner = f"{go_name(m.inner.name)}Map" if m.inner is not None else "ebpf.Map"
    w.block(
        "// Lookup opens the inner map stored at key.",
        f"func (m *{wrapper}) Lookup(key {key.expr}) (*{inner}, error) {{",
        "\tvar inner *ebpf.Map",
        "\tif err := m.Map.Lookup(unsafe.Pointer(&key), &inner); err != nil {",
        "\t\treturn nil, err",
        "\t}",
        f"\treturn &{inner}{{inner}}, nil" if m.inner is not None else "\treturn inner, nil",
        "}",
    )
    w.block(
        "// Update stores the inner map at key (it must match the inner map template).",
        f"func (m *{wrapper}) Update(key {key.expr}, inner *ebpf.Map, flags ebpf.MapUpdateFlags) error {{",
        "\treturn m.Map.Update(unsafe.Pointer(&key), inner, flags)",
        "}",
    )
    if m.type in _DELETE_TYPES:
        w.block(
            "// Delete removes the inner map stored at key.",
            f"func (m *{wrapper}) Delete(key {key.expr}) error {{",
            "\treturn m.Map.Delete(unsafe.Pointer(&key))",
            "}",
        )
    w.block(
        "// IDs returns the kernel id of the inner map at each key (what cnf.ebpf.bpf_map_entries gathers).",
        f"func (m *{wrapper}) IDs() (map[{key.expr}]uint32, error) {{",
        f"\tout := map[{key.expr}]uint32{{}}",
        f"\tvar key {key.expr}",
        "\tvar id uint32",
        "\tit := m.Map.Iterate()",
        "\tfor it.Next(unsafe.Pointer(&key), unsafe.Pointer(&id)) {",
        "\t\tout[key] = id",
        "\t}",
        "\treturn out, it.Err()",
        "}",
    )


def _emit_queue(g: Go, w: _Writer, m: CodegenMap, wrapper: str) -> None:
    value = _side(g, m.value, m.value_size)
    order = "oldest" if m.type == "queue" else "newest"
    w.block(
        f"// Push adds value to the {m.type}.",
        f"func (m *{wrapper}) Push(value {value.expr}) error {{",
        "\treturn m.Map.Update(nil, unsafe.Pointer(&value), ebpf.UpdateAny)",
        "}",
    )
    w.block(
        f"// Pop removes and returns the {order} value (ebpf.ErrKeyNotExist when empty).",
        f"func (m *{wrapper}) Pop() ({value.expr}, error) {{",
        f"\tvar value {value.expr}",
        "\terr := m.Map.LookupAndDelete(nil, unsafe.Pointer(&value))",
        "\treturn value, err",
        "}",
    )
    w.block(
        f"// Peek returns the {order} value without removing it.",
        f"func (m *{wrapper}) Peek() ({value.expr}, error) {{",
        f"\tvar value {value.expr}",
        "\terr := m.Map.Lookup(nil, unsafe.Pointer(&value))",
        "\treturn value, err",
        "}",
    )


def _emit_event_map(g: Go, w: _Writer, m: CodegenMap, wrapper: str) -> None:
    g.imports.add("context")
    g.imports.add("errors")
    ev = g.go_type(m.event) if m.event is not None else None
    ev_expr = ev.expr if ev is not None else "[]byte"
    decode = (
        [
            f"\t\tvar ev {ev.expr}",
            "\t\tif err := ev.UnmarshalBinary(rec.RawSample); err != nil {",
            "\t\t\treturn err",
            "\t\t}",
        ]
        if ev is not None and ev.kind == "struct"
        else (
            [
                f"\t\tvar ev {ev.expr}",
                "\t\tif err := rawRead(&ev, rec.RawSample, " + f'"{m.name} event"' + "); err != nil {",
                "\t\t\treturn err",
                "\t\t}",
            ]
            if ev is not None
            else ["\t\tev := rec.RawSample"]
        )
    )
    if m.type == "ringbuf":
        g.imports.add("github.com/cilium/ebpf/ringbuf")
        w.block(
            "// ReadEvents decodes each record of the ring buffer and calls fn, until ctx is done (it returns",
            "// ctx.Err()) or fn returns an error.",
            f"func (m *{wrapper}) ReadEvents(ctx context.Context, fn func(ev {ev_expr}) error) error {{",
            "\trd, err := ringbuf.NewReader(m.Map)",
            "\tif err != nil {",
            "\t\treturn err",
            "\t}",
            "\tdefer rd.Close()",
            "\tgo func() {",
            "\t\t<-ctx.Done()",
            "\t\trd.Close()",
            "\t}()",
            "\tfor {",
            "\t\trec, err := rd.Read()",
            "\t\tif errors.Is(err, ringbuf.ErrClosed) {",
            "\t\t\treturn ctx.Err()",
            "\t\t}",
            "\t\tif err != nil {",
            "\t\t\treturn err",
            "\t\t}",
            *decode,
            "\t\tif err := fn(ev); err != nil {",
            "\t\t\treturn err",
            "\t\t}",
            "\t}",
            "}",
        )
        return
    g.imports.add("github.com/cilium/ebpf/perf")
    w.block(
        "// ReadEvents decodes each sample of the perf buffers and calls fn with the CPU it came from; lost (may be",
        "// nil) hears of samples the kernel dropped. It runs until ctx is done (returning ctx.Err()) or fn fails.",
        f"func (m *{wrapper}) ReadEvents(ctx context.Context, perCPUBuffer int, fn func(cpu int, ev {ev_expr}) error, "
        "lost func(cpu int, count uint64)) error {",
        "\trd, err := perf.NewReader(m.Map, perCPUBuffer)",
        "\tif err != nil {",
        "\t\treturn err",
        "\t}",
        "\tdefer rd.Close()",
        "\tgo func() {",
        "\t\t<-ctx.Done()",
        "\t\trd.Close()",
        "\t}()",
        "\tfor {",
        "\t\trec, err := rd.Read()",
        "\t\tif errors.Is(err, perf.ErrClosed) {",
        "\t\t\treturn ctx.Err()",
        "\t\t}",
        "\t\tif err != nil {",
        "\t\t\treturn err",
        "\t\t}",
        "\t\tif rec.LostSamples > 0 {",
        "\t\t\tif lost != nil {",
        "\t\t\t\tlost(rec.CPU, rec.LostSamples)",
        "\t\t\t}",
        "\t\t\tcontinue",
        "\t\t}",
        *decode,
        "\t\tif err := fn(rec.CPU, ev); err != nil {",
        "\t\t\treturn err",
        "\t\t}",
        "\t}",
        "}",
    )


def _emit_helpers(g: Go, w: _Writer) -> None:
    for name in ("raw", "open", "batch", "float", "cstring", "be", "int128", "bits", "cidr"):
        if name in g.helpers:
            w.block(*HELPERS[name])
