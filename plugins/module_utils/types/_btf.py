# Copyright: contributors to the cnf.ebpf collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The BTF type model: one class per BTF kind, and what every user of a type asks of it (resolve, type_name,
alignof).

The model alone, so that everything built on it (the raw parser `_btf_parse`, the schema layout `_schema`, the
layout comparison `_layout_compare`, the codecs) imports these classes and nothing it does not use.
"""

from __future__ import annotations

__all__ = [
    "VOID",
    "Array",
    "BtfError",
    "BtfType",
    "Datasec",
    "DeclTag",
    "Enum",
    "Float",
    "Func",
    "FuncProto",
    "Fwd",
    "Int",
    "Member",
    "Modifier",
    "Ptr",
    "Struct",
    "Typedef",
    "Var",
    "Void",
    "alignof",
    "resolve",
    "type_name",
]


class BtfError(ValueError):
    """Malformed BTF data or an invalid type schema; the message starts with the path."""


# ----------------------------------------------------------------------------------------------
# Type model.  Types compare by identity; layout equality is compare_layout()'s job, which
# keeps pointer cycles (struct list { struct list *next; }) from recursing forever.
# ----------------------------------------------------------------------------------------------


class BtfType:
    kind = ""
    name = ""

    @property
    def size(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<%s %s size=%d>" % (type(self).__name__, type_name(self), self.size)


class Void(BtfType):
    kind = "void"


VOID = Void()


class Int(BtfType):
    kind = "int"
    __slots__ = ("_size", "bit_offset", "bits", "is_bool", "is_char", "name", "signed")

    def __init__(
        self,
        name: str,
        size: int,
        signed: bool = False,
        is_char: bool = False,
        is_bool: bool = False,
        bits: int | None = None,
        bit_offset: int = 0,
    ) -> None:
        self.name = name
        self._size = size
        self.signed = signed
        self.is_char = is_char
        self.is_bool = is_bool
        self.bits = size * 8 if bits is None else bits
        self.bit_offset = bit_offset

    @property
    def size(self) -> int:
        return self._size


class Ptr(BtfType):
    kind = "ptr"
    __slots__ = ("target",)

    def __init__(self, target: BtfType) -> None:
        self.target = target

    @property
    def size(self) -> int:
        return 8


class Array(BtfType):
    kind = "array"
    __slots__ = ("count", "elem", "index_type")

    def __init__(self, elem: BtfType, count: int, index_type: BtfType | None = None) -> None:
        self.elem = elem
        self.count = count
        self.index_type = index_type

    @property
    def size(self) -> int:
        return self.elem.size * self.count


class Member:
    """A struct/union member.  ``bit_offset`` is from the start of the containing struct;
    ``bitfield_size`` is 0 for ordinary members."""

    __slots__ = ("bit_offset", "bitfield_size", "name", "type")

    def __init__(self, name: str, type: BtfType, bit_offset: int, bitfield_size: int = 0) -> None:
        self.name = name
        self.type = type
        self.bit_offset = bit_offset
        self.bitfield_size = bitfield_size

    @property
    def offset(self) -> int:
        """Byte offset of the member (of the byte holding its first bit for bitfields)."""
        return self.bit_offset // 8

    def __repr__(self) -> str:
        return "<Member %s: %s @%d%s>" % (
            self.name or "(anon)",
            type_name(self.type),
            self.bit_offset,
            ":%d" % self.bitfield_size if self.bitfield_size else "",
        )


class Struct(BtfType):
    """STRUCT or UNION.  ``align`` is known for schema-built types; for types parsed from BTF
    it is inferred (natural alignment, or 1 when the member offsets show the struct is packed)."""

    __slots__ = ("_align", "_size", "is_union", "members", "name", "packed")

    def __init__(
        self,
        name: str,
        size: int,
        members: list[Member] | None = None,
        is_union: bool = False,
        align: int | None = None,
        packed: bool | None = None,
    ) -> None:
        self.name = name
        self._size = size
        self.members = members if members is not None else []
        self.is_union = is_union
        self._align = align
        self.packed = packed

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "union" if self.is_union else "struct"

    @property
    def size(self) -> int:
        return self._size

    @property
    def align(self) -> int:
        if self._align is None:
            self._align, self.packed = _infer_struct_align(self)
        return self._align

    def member(self, name: str) -> Member | None:
        for m in self.members:
            if m.name == name:
                return m
        return None


class Enum(BtfType):
    """ENUM and ENUM64."""

    kind = "enum"
    __slots__ = ("_size", "name", "signed", "values")

    def __init__(self, name: str, size: int, signed: bool = False, values: list[tuple[str, int]] | None = None) -> None:
        self.name = name
        self._size = size
        self.signed = signed
        self.values = values if values is not None else []

    @property
    def size(self) -> int:
        return self._size


class Fwd(BtfType):
    kind = "fwd"
    __slots__ = ("is_union", "name")

    def __init__(self, name: str, is_union: bool = False) -> None:
        self.name = name
        self.is_union = is_union


class Typedef(BtfType):
    kind = "typedef"
    __slots__ = ("name", "type")

    def __init__(self, name: str, type: BtfType) -> None:
        self.name = name
        self.type = type

    @property
    def size(self) -> int:
        return self.type.size


MODIFIER_KINDS = ("volatile", "const", "restrict", "type_tag")


class Modifier(BtfType):
    """volatile/const/restrict/type_tag; ``name`` is the tag for type_tag, else ''."""

    __slots__ = ("kind", "name", "type")

    def __init__(self, kind: str, type: BtfType, name: str = "") -> None:
        if kind not in MODIFIER_KINDS:
            raise BtfError(f"unknown modifier kind {kind!r}")
        self.kind = kind  # type: ignore[misc]
        self.type = type
        self.name = name

    @property
    def size(self) -> int:
        return self.type.size


class Float(BtfType):
    kind = "float"
    __slots__ = ("_size", "name")

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self._size = size

    @property
    def size(self) -> int:
        return self._size


class Func(BtfType):
    kind = "func"
    __slots__ = ("linkage", "name", "type")

    def __init__(self, name: str, type: BtfType, linkage: int = 0) -> None:
        self.name = name
        self.type = type
        self.linkage = linkage


class FuncProto(BtfType):
    kind = "func_proto"
    __slots__ = ("params", "ret")

    def __init__(self, ret: BtfType, params: list[tuple[str, BtfType]] | None = None) -> None:
        self.ret = ret
        self.params = params if params is not None else []


class Var(BtfType):
    kind = "var"
    __slots__ = ("linkage", "name", "type")

    def __init__(self, name: str, type: BtfType, linkage: int = 0) -> None:
        self.name = name
        self.type = type
        self.linkage = linkage

    @property
    def size(self) -> int:
        return self.type.size


class Datasec(BtfType):
    """DATASEC; ``vars`` holds (var type, offset, size).  Straight out of clang the section
    size and offsets are still 0 (libbpf fixes them up at load time); we keep them as given."""

    kind = "datasec"
    __slots__ = ("_size", "name", "vars")

    def __init__(self, name: str, size: int, vars: list[tuple[BtfType, int, int]] | None = None) -> None:
        self.name = name
        self._size = size
        self.vars = vars if vars is not None else []

    @property
    def size(self) -> int:
        return self._size


class DeclTag(BtfType):
    kind = "decl_tag"
    __slots__ = ("component_idx", "name", "type")

    def __init__(self, name: str, type: BtfType, component_idx: int = -1) -> None:
        self.name = name
        self.type = type
        self.component_idx = component_idx


def resolve(t: BtfType) -> BtfType:
    """Strip typedefs and modifiers (const, volatile, restrict, type_tag)."""
    seen = 0
    while isinstance(t, (Typedef, Modifier)):
        t = t.type
        seen += 1
        if seen > 1000:
            raise BtfError("typedef/modifier chain does not end (cycle?)")
    return t


def type_name(t: BtfType) -> str:
    """C-ish spelling: ``struct flow_key``, ``__u32``, ``char[16]``, ``u32[2][3]``, ``int *``."""
    if isinstance(t, Array):
        dims = ""
        while isinstance(t, Array):
            dims += "[%d]" % t.count
            t = t.elem
        return type_name(t) + dims
    if isinstance(t, Struct):
        return "{} {}".format(t.kind, t.name or "(anon)")
    if isinstance(t, Enum):
        return "enum %s" % (t.name or "(anon)")
    if isinstance(t, Fwd):
        return "{} {}".format("union" if t.is_union else "struct", t.name)
    if isinstance(t, Ptr):
        return type_name(t.target) + " *" if not isinstance(t.target, Ptr) else type_name(t.target) + "*"
    if isinstance(t, Modifier):
        if t.kind == "type_tag":
            return type_name(t.type)
        return f"{t.kind} {type_name(t.type)}"
    if isinstance(t, Void):
        return "void"
    if isinstance(t, FuncProto):
        return "func_proto"
    return t.name or f"(anon {t.kind})"


def alignof(t: BtfType) -> int:
    """Alignment in bytes for the BPF target."""
    t = resolve(t)
    if isinstance(t, (Int, Enum, Float)):
        size = t.size
        return size if size in (1, 2, 4, 8, 16) else 1
    if isinstance(t, Ptr):
        return 8
    if isinstance(t, Array):
        return alignof(t.elem)
    if isinstance(t, Struct):
        return t.align
    return 1


def _infer_struct_align(s: Struct) -> tuple[int, bool]:
    natural = 1
    for m in s.members:
        natural = max(natural, alignof(m.type))
    packed = s.size % natural != 0
    if not packed:
        for m in s.members:
            if not m.bitfield_size and m.bit_offset % (alignof(m.type) * 8):
                packed = True
                break
    return (1 if packed else natural), packed
