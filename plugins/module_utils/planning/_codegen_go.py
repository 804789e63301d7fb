# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning layer (pure): Go bindings for github.com/cilium/ebpf from the same model types as the C header.

Every generated struct has exactly the C layout: the same size and every field at the C offset, with explicit
`_ [n]byte` padding where C has holes. A field Go cannot place at its C offset (a misaligned field of a packed
struct, a bitfield, a union member) is kept as bytes at that offset behind a getter and a setter. Compile-time
assertions in the generated file make a layout difference a build error, and because the memory layout equals the
map's, values cross the syscall boundary as raw memory (no reflection, no encoding/binary).

`MarshalJSON` on every generated type writes what `cnf.ebpf.bpf_map_entries` (state gathered) returns for the same
bytes, so a Go agent and a playbook report the same entries the same way.

The output is gofmt-clean: the emitter aligns struct fields and constants as gofmt does.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._codegen import (
    GENERATED_BY,
    MAPS_OF_MAPS,
    CodegenMap,
    named_types,
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
_INITIALISMS = {"id", "ip", "ipv4", "ipv6", "mac", "tcp", "udp", "cpu", "pid", "tid", "uid", "gid", "ttl", "url"}


def go_name(c_name: str) -> str:
    """flow_key -> FlowKey, src_ip -> SrcIP (Go's initialisms), _x -> X."""
    parts = [p for p in c_name.split("_") if p]
    out = "".join(p.upper() if p.lower() in _INITIALISMS else p[:1].upper() + p[1:] for p in parts) or "X"
    return "X" + out if out[0].isdigit() else out


def _lower(name: str) -> str:
    m = re.match(r"^[A-Z]+(?=[A-Z][a-z]|$)|^[A-Z]", name)
    return name if m is None else m.group(0).lower() + name[m.end() :]


def _pow2_divisor(n: int) -> int:
    return min(8, n & -n) if n else 8


@dataclass
class GoType:
    """A Go spelling of a model type: expression, alignment, and how its JSON and per-CPU sum are written."""

    expr: str
    align: int
    kind: str  # bool int uint float char enum be int128 cstring array struct
    elem: GoType | None = None
    count: int = 0
    signed: bool = False


@dataclass
class GoField:
    kind: str  # native embed raw bits pad
    name: str
    expr: str
    offset: int
    size: int
    member: _btf.Member | None = None
    gtype: GoType | None = None
    bit_members: list[_btf.Member] = field(default_factory=list)


@dataclass
class GoStruct:
    c: _btf.Struct
    name: str
    fields: list[GoField]
    align: int
    accessors: dict[str, str] = field(default_factory=dict)  # C member name -> Go getter (raw and bits members)


class _Go:
    def __init__(self) -> None:
        self.names: dict[int, str] = {}  # id(model type) -> Go name
        self.taken: set[str] = set()
        self.structs: dict[int, GoStruct] = {}
        self.order: list[_btf.BtfType] = []
        self.imports: set[str] = {"unsafe", "strconv", "github.com/cilium/ebpf"}
        self.helpers: set[str] = {"raw"}

    # -- names and types ---------------------------------------------------------------------------------------
    def type_name(self, t: _btf.BtfType, hint: str = "") -> str:
        key = id(t)
        if key not in self.names:
            base = go_name(t.name or hint)
            name, n = base, 2
            while name in self.taken:
                name, n = f"{base}{n}", n + 1
            self.taken.add(name)
            self.names[key] = name
        return self.names[key]

    def go_type(self, t: _btf.BtfType) -> GoType:
        probe = t
        while isinstance(probe, (_btf.Typedef, _btf.Modifier)):
            if isinstance(probe, _btf.Typedef) and probe.name in ("__be16", "__be32", "__be64"):
                self.helpers.add("be")
                self.imports.add("encoding/binary")
                return GoType(f"Be{probe.name[4:]}", 1, "be")
            probe = probe.type
        r = probe
        if isinstance(r, _btf.Int):
            if r.is_bool:
                return GoType("bool", 1, "bool")
            if r.is_char or r.name == "char":
                return GoType("int8" if r.signed else "uint8", 1, "char", signed=r.signed)
            if r.size == 16:
                self.helpers.add("int128")
                self.imports.add("math/big")
                return GoType("Int128" if r.signed else "Uint128", 1, "int128", signed=r.signed)
            return GoType(f"{'int' if r.signed else 'uint'}{r.size * 8}", r.size, "int", signed=r.signed)
        if isinstance(r, _btf.Float):
            self.helpers.add("float")
            return GoType(f"float{r.size * 8}", r.size, "float")
        if isinstance(r, _btf.Enum):
            return GoType(self.type_name(r), r.size, "enum", signed=r.signed)
        if isinstance(r, _btf.Array):
            elem = self.go_type(r.elem)
            if elem.kind == "char":
                self.helpers.add("cstring")
                return GoType(f"[{r.count}]byte", 1, "cstring", count=r.count)
            return GoType(f"[{r.count}]{elem.expr}", elem.align, "array", elem=elem, count=r.count)
        if isinstance(r, _btf.Struct):
            return GoType(self.type_name(r), self.plan(r).align, "struct")
        if isinstance(r, _btf.Ptr):
            return GoType("uint64", 8, "int")
        raise _btf.BtfError(f"{_btf.type_name(t)}: {r.kind} types have no Go spelling")

    # -- layout --------------------------------------------------------------------------------------------------
    def plan(self, s: _btf.Struct) -> GoStruct:
        if id(s) in self.structs:
            return self.structs[id(s)]
        name = self.type_name(s)
        if s.is_union:
            gs = GoStruct(s, name, [GoField("raw", "raw", f"[{s.size}]byte", 0, s.size)], 1)
            self.structs[id(s)] = gs
            self.order.append(s)
            for i, m in enumerate(s.members):
                if not m.name and not m.bitfield_size:
                    self._anon_name(s, i, m)
                if not m.bitfield_size:
                    self.go_type(m.type)
            return gs
        allowed = _pow2_divisor(s.size)
        fields: list[GoField] = []
        pos = 0
        members = s.members
        i = 0
        bits_n = 0
        align = 1
        used: set[str] = {"_"}

        def unique(base: str) -> str:
            out, n = base, 2
            while out in used:
                out, n = f"{base}{n}", n + 1
            used.add(out)
            return out

        while i < len(members):
            m = members[i]
            if m.bitfield_size:
                start = m.bit_offset // 8
                end_bit = m.bit_offset + m.bitfield_size
                group = [m]
                i += 1
                while i < len(members) and members[i].bitfield_size and members[i].bit_offset < (end_bit + 7) // 8 * 8:
                    end_bit = max(end_bit, members[i].bit_offset + members[i].bitfield_size)
                    group.append(members[i])
                    i += 1
                end = (end_bit + 7) // 8
                start = max(start, pos)
                if start > pos:
                    fields.append(GoField("pad", "_", f"[{start - pos}]byte", pos, start - pos))
                if end - start > 8:
                    raise _btf.BtfError(f"{s.name}: bitfields spanning more than 8 bytes have no Go accessors")
                gf = GoField("bits", unique(f"bits{bits_n}"), f"[{end - start}]byte", start, end - start)
                gf.bit_members = group
                bits_n += 1
                fields.append(gf)
                pos = end
                continue
            i += 1
            size = m.type.size
            if size == 0:
                continue
            off = m.offset
            if off > pos:
                fields.append(GoField("pad", "_", f"[{off - pos}]byte", pos, off - pos))
            if not m.name:
                anon = self._anon_name(s, members.index(m), m)
                gt = self.go_type(m.type)
                if gt.align <= allowed and off % gt.align == 0:
                    fields.append(GoField("embed", anon, anon, off, size, m, gt))
                    used.add(anon)
                    align = max(align, gt.align)
                else:
                    fields.append(GoField("raw", unique(_lower(anon)), f"[{size}]byte", off, size, m, gt))
                pos = off + size
                continue
            gt = self.go_type(m.type)
            if gt.align <= allowed and off % gt.align == 0:
                fields.append(GoField("native", unique(go_name(m.name)), gt.expr, off, size, m, gt))
                align = max(align, gt.align)
            else:
                fields.append(
                    GoField("raw", unique(_lower(go_name(m.name)) + "Raw"), f"[{size}]byte", off, size, m, gt)
                )
            pos = off + size
        if s.size > pos:
            fields.append(GoField("pad", "_", f"[{s.size - pos}]byte", pos, s.size - pos))
        gs = GoStruct(s, name, fields, align)
        self.structs[id(s)] = gs
        self.order.append(s)
        return gs

    def _anon_name(self, parent: _btf.Struct, index: int, m: _btf.Member) -> str:
        r = _btf.resolve(m.type)
        return self.type_name(r, f"{self.names.get(id(parent), parent.name)}_anon{index}")

    # -- emission helpers ----------------------------------------------------------------------------------------
    def json_lines(self, value: str, gt: GoType, depth: int = 0) -> list[str]:
        """Statements appending the JSON of `value` (an addressable expression of type gt) to b."""
        if gt.kind == "bool":
            return [f"b = strconv.AppendBool(b, {value})"]
        if gt.kind in ("int", "char"):
            if gt.signed:
                return [f"b = strconv.AppendInt(b, int64({value}), 10)"]
            return [f"b = strconv.AppendUint(b, uint64({value}), 10)"]
        if gt.kind == "float":
            return [f"b = appendFloat(b, float64({value}))"]
        if gt.kind == "cstring":
            return [f"b = appendCString(b, {value}[:])"]
        if gt.kind in ("enum", "be", "int128", "struct"):
            return [f"b = {value}.appendJSON(b)"]
        if gt.kind == "array" and gt.elem is not None:
            i = f"i{depth}"
            return [
                "b = append(b, '[')",
                f"for {i} := range {value} {{",
                f"\tif {i} > 0 {{",
                "\t\tb = append(b, ',')",
                "\t}",
                *["\t" + line for line in self.json_lines(f"{value}[{i}]", gt.elem, depth + 1)],
                "}",
                "b = append(b, ']')",
            ]
        raise AssertionError(gt.kind)

    def summable(self, gt: GoType) -> bool:
        if gt.kind in ("int", "int128"):
            return True
        if gt.kind == "array" and gt.elem is not None:
            return self.summable(gt.elem)
        return gt.kind == "struct"

    def add_lines(self, dst: str, src: str, gt: GoType, depth: int = 0) -> list[str]:
        """Statements adding src into dst (per-CPU sums: integers add, other fields keep CPU 0's value)."""
        if gt.kind == "int":
            return [f"{dst} += {src}"]
        if gt.kind == "int128":
            return [f"{dst} = {dst}.add({src})"]
        if gt.kind == "struct":
            return [f"{dst}.addFrom(&{src})"]
        if gt.kind == "array" and gt.elem is not None and self.summable(gt.elem):
            i = f"i{depth}"
            body = self.add_lines(f"{dst}[{i}]", f"{src}[{i}]", gt.elem, depth + 1)
            return [f"for {i} := range {dst} {{", *["\t" + line for line in body], "}"]
        return []


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


def _planned(maps: list[CodegenMap]) -> tuple[_Go, list[_btf.BtfType]]:
    g = _Go()
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


def _emit_enum(g: _Go, w: _Writer, t: _btf.Enum) -> None:
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


def _emit_struct(g: _Go, w: _Writer, gs: GoStruct) -> None:
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


def _json_field(g: _Go, c_name: str, value: str, gt: GoType) -> list[str]:
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


def _union_member(g: _Go, w: _Writer, gs: GoStruct, index: int, m: _btf.Member) -> list[str]:
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


def _side(g: _Go, t: _btf.BtfType | None, size: int) -> GoType:
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


def _emit_map(g: _Go, w: _Writer, m: CodegenMap) -> None:
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


def _emit_map_of_maps(g: _Go, w: _Writer, m: CodegenMap, wrapper: str, key: GoType) -> None:
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


def _emit_queue(g: _Go, w: _Writer, m: CodegenMap, wrapper: str) -> None:
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


def _emit_event_map(g: _Go, w: _Writer, m: CodegenMap, wrapper: str) -> None:
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


# ------------------------------------------------------------------------------------------------------------------
# Helpers (emitted once, only those in use)
# ------------------------------------------------------------------------------------------------------------------

_HELPERS = {
    "raw": [
        "// rawBytes is the memory of *v: the generated types have their C layout, so this is the C value.",
        "func rawBytes[T any](v *T) []byte {",
        "\treturn unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))",
        "}",
        "",
        "func rawRead[T any](v *T, data []byte, what string) error {",
        "\tif len(data) < int(unsafe.Sizeof(*v)) {",
        '\t\treturn fmt.Errorf("%s: %d bytes, want %d", what, len(data), unsafe.Sizeof(*v))',
        "\t}",
        "\tcopy(rawBytes(v), data)",
        "\treturn nil",
        "}",
    ],
    "batch": [
        "const batchSize = 256",
        "",
        "// rawSlice hands a slice to cilium/ebpf's batch calls as the C array it is in memory.",
        "type rawSlice[T any] []T",
        "",
        "func (s rawSlice[T]) MarshalBinary() ([]byte, error) {",
        "\tif len(s) == 0 {",
        "\t\treturn nil, nil",
        "\t}",
        "\treturn unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0]))), nil",
        "}",
        "",
        "func (s rawSlice[T]) UnmarshalBinary(data []byte) error {",
        "\tif len(s) > 0 {",
        "\t\tcopy(unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0]))), data)",
        "\t}",
        "\treturn nil",
        "}",
    ],
    "open": [
        "func openPinned(path, name string, typ ebpf.MapType, keySize, valueSize uint32) (*ebpf.Map, error) {",
        "\tm, err := ebpf.LoadPinnedMap(path, nil)",
        "\tif err != nil {",
        '\t\treturn nil, fmt.Errorf("%s: %w", name, err)',
        "\t}",
        "\tif m.Type() != typ || m.KeySize() != keySize || (m.ValueSize() != valueSize && typ != ebpf.RingBuf) {",
        "\t\tm.Close()",
        '\t\treturn nil, fmt.Errorf("%s: the map pinned at %s is a %s with %d-byte keys and %d-byte values; "+',
        '\t\t\t"the schema says %s, %d and %d",',
        "\t\t\tname, path, m.Type(), m.KeySize(), m.ValueSize(), typ, keySize, valueSize)",
        "\t}",
        "\treturn m, nil",
        "}",
    ],
    "float": [
        "func appendFloat(b []byte, f float64) []byte {",
        "\tif f == float64(int64(f)) && f < 1e21 && f > -1e21 {",
        "\t\treturn strconv.AppendFloat(b, f, 'f', 1, 64)",
        "\t}",
        "\treturn strconv.AppendFloat(b, f, 'g', -1, 64)",
        "}",
    ],
    "cstring": [
        "// appendCString writes a char array as the JSON string up to its first NUL.",
        "func appendCString(b []byte, chars []byte) []byte {",
        "\tfor i, c := range chars {",
        "\t\tif c == 0 {",
        "\t\t\tchars = chars[:i]",
        "\t\t\tbreak",
        "\t\t}",
        "\t}",
        "\treturn strconv.AppendQuote(b, string(chars))",
        "}",
    ],
    "be": [
        "// Be16 is a 16-bit integer in network byte order (C's __be16).",
        "type Be16 [2]byte",
        "",
        "// Be32 is a 32-bit integer in network byte order (C's __be32).",
        "type Be32 [4]byte",
        "",
        "// Be64 is a 64-bit integer in network byte order (C's __be64).",
        "type Be64 [8]byte",
        "",
        "// MakeBe16 stores v in network byte order.",
        "func MakeBe16(v uint16) (out Be16) {",
        "\tbinary.BigEndian.PutUint16(out[:], v)",
        "\treturn out",
        "}",
        "",
        "// MakeBe32 stores v in network byte order.",
        "func MakeBe32(v uint32) (out Be32) {",
        "\tbinary.BigEndian.PutUint32(out[:], v)",
        "\treturn out",
        "}",
        "",
        "// MakeBe64 stores v in network byte order.",
        "func MakeBe64(v uint64) (out Be64) {",
        "\tbinary.BigEndian.PutUint64(out[:], v)",
        "\treturn out",
        "}",
        "",
        "// Uint is the value in host byte order.",
        "func (v Be16) Uint() uint16 { return binary.BigEndian.Uint16(v[:]) }",
        "",
        "// Uint is the value in host byte order.",
        "func (v Be32) Uint() uint32 { return binary.BigEndian.Uint32(v[:]) }",
        "",
        "// Uint is the value in host byte order.",
        "func (v Be64) Uint() uint64 { return binary.BigEndian.Uint64(v[:]) }",
        "",
        "func (v Be16) appendJSON(b []byte) []byte { return strconv.AppendUint(b, uint64(v.Uint()), 10) }",
        "func (v Be32) appendJSON(b []byte) []byte { return strconv.AppendUint(b, uint64(v.Uint()), 10) }",
        "func (v Be64) appendJSON(b []byte) []byte { return strconv.AppendUint(b, v.Uint(), 10) }",
        "",
        "// MarshalJSON writes the number (in host order), as cnf.ebpf.bpf_map_entries does.",
        "func (v Be16) MarshalJSON() ([]byte, error) { return v.appendJSON(nil), nil }",
        "",
        "// MarshalJSON writes the number (in host order), as cnf.ebpf.bpf_map_entries does.",
        "func (v Be32) MarshalJSON() ([]byte, error) { return v.appendJSON(nil), nil }",
        "",
        "// MarshalJSON writes the number (in host order), as cnf.ebpf.bpf_map_entries does.",
        "func (v Be64) MarshalJSON() ([]byte, error) { return v.appendJSON(nil), nil }",
    ],
    "int128": [
        "// Uint128 is C's unsigned __int128 in host byte order (little-endian hosts).",
        "type Uint128 [16]byte",
        "",
        "// Int128 is C's __int128 in host byte order (little-endian hosts).",
        "type Int128 [16]byte",
        "",
        "func le128(b []byte, signed bool) *big.Int {",
        "\tbe := make([]byte, 16)",
        "\tfor i := range b {",
        "\t\tbe[15-i] = b[i]",
        "\t}",
        "\tv := new(big.Int).SetBytes(be)",
        "\tif signed && b[15]&0x80 != 0 {",
        "\t\tv.Sub(v, new(big.Int).Lsh(big.NewInt(1), 128))",
        "\t}",
        "\treturn v",
        "}",
        "",
        "func put128(v *big.Int) (out [16]byte) {",
        "\tm := new(big.Int).And(v, new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1)))",
        "\tbe := m.FillBytes(make([]byte, 16))",
        "\tfor i := range be {",
        "\t\tout[15-i] = be[i]",
        "\t}",
        "\treturn out",
        "}",
        "",
        "// Big is the value.",
        "func (v Uint128) Big() *big.Int { return le128(v[:], false) }",
        "",
        "// Big is the value.",
        "func (v Int128) Big() *big.Int { return le128(v[:], true) }",
        "",
        "// MakeUint128 stores v (modulo 2^128).",
        "func MakeUint128(v *big.Int) Uint128 { return Uint128(put128(v)) }",
        "",
        "// MakeInt128 stores v (two's complement, modulo 2^128).",
        "func MakeInt128(v *big.Int) Int128 { return Int128(put128(v)) }",
        "",
        "func (v Uint128) add(o Uint128) Uint128 { return MakeUint128(new(big.Int).Add(v.Big(), o.Big())) }",
        "func (v Int128) add(o Int128) Int128    { return MakeInt128(new(big.Int).Add(v.Big(), o.Big())) }",
        "",
        "func (v Uint128) appendJSON(b []byte) []byte { return v.Big().Append(b, 10) }",
        "func (v Int128) appendJSON(b []byte) []byte  { return v.Big().Append(b, 10) }",
        "",
        "// MarshalJSON writes the number.",
        "func (v Uint128) MarshalJSON() ([]byte, error) { return v.appendJSON(nil), nil }",
        "",
        "// MarshalJSON writes the number.",
        "func (v Int128) MarshalJSON() ([]byte, error) { return v.appendJSON(nil), nil }",
    ],
    "bits": [
        "// bitsGet reads a bitfield: width bits from bit shift of a little-endian storage unit.",
        "func bitsGet(span []byte, shift, width uint, signed bool) uint64 {",
        "\tvar u uint64",
        "\tfor i := len(span) - 1; i >= 0; i-- {",
        "\t\tu = u<<8 | uint64(span[i])",
        "\t}",
        "\tv := u >> shift & (1<<width - 1)",
        "\tif signed && v>>(width-1) != 0 {",
        "\t\tv |= ^uint64(0) << width",
        "\t}",
        "\treturn v",
        "}",
        "",
        "func bitsSet(span []byte, shift, width uint, v uint64) {",
        "\tvar u uint64",
        "\tfor i := len(span) - 1; i >= 0; i-- {",
        "\t\tu = u<<8 | uint64(span[i])",
        "\t}",
        "\tmask := uint64(1<<width-1) << shift",
        "\tu = u&^mask | v<<shift&mask",
        "\tfor i := range span {",
        "\t\tspan[i] = byte(u >> (8 * i))",
        "\t}",
        "}",
        "",
        "func boolBits(v bool) uint64 {",
        "\tif v {",
        "\t\treturn 1",
        "\t}",
        "\treturn 0",
        "}",
    ],
    "cidr": [
        "// appendCIDR writes an LPM trie key as CIDR text, as cnf.ebpf.bpf_map_entries does.",
        "func appendCIDR(b []byte, prefixlen uint32, addr []byte) []byte {",
        "\tb = append(b, '\"')",
        "\tb = append(b, net.IP(addr).String()...)",
        "\tb = append(b, '/')",
        "\tb = strconv.AppendUint(b, uint64(prefixlen), 10)",
        "\treturn append(b, '\"')",
        "}",
    ],
}


def _emit_helpers(g: _Go, w: _Writer) -> None:
    for name in ("raw", "open", "batch", "float", "cstring", "be", "int128", "bits", "cidr"):
        if name in g.helpers:
            w.block(*_HELPERS[name])
