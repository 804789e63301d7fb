# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How each C type of the model is placed in Go, for the cilium/ebpf bindings.

Every generated struct has exactly the C layout: the same size and every field at the C offset, with explicit
`_ [n]byte` padding where C has holes. A field Go cannot place at its C offset (a misaligned field of a packed
struct, a bitfield, a union member) is kept as bytes at that offset behind a getter and a setter. `Go` holds that
plan for every named type (its Go name, its fields, the imports and runtime helpers its spelling needs) and the Go
statements that follow from a type alone (its JSON, its per-CPU sum); `_codegen_go` writes the file from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf

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


class Go:
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
