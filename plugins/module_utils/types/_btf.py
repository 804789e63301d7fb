# Copyright: contributors to the cnf.ebpf collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""BTF type model, raw BTF parser, schema -> model layout and layout comparison.

Pure Python on purpose: libbpf hands us the raw BTF blob (``btf__raw_data``) of a map, a
program object or the kernel, and decoding that documented format here is both simpler
than walking ``struct btf_type`` through ctypes and unit-testable without a kernel.

Layout rules follow clang for ``-target bpf`` (checked against clang 14 in
tests/unit/test_layout_clang.py): integers, enums and floats are aligned to their size
(``__int128`` to 16), pointers are 8 bytes, bitfields use the SysV rules, ``packed`` sets
member alignment to 1 unless a member carries an explicit ``align``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "SCALAR_NAMES",
    "VOID",
    "Array",
    "Btf",
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
    "compare_layout",
    "int_type",
    "resolve",
    "to_schema",
    "type_from_schema",
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


# ----------------------------------------------------------------------------------------------
# Raw BTF parser
# ----------------------------------------------------------------------------------------------

BTF_MAGIC = 0xEB9F
_KIND_NAMES = {
    1: "INT",
    2: "PTR",
    3: "ARRAY",
    4: "STRUCT",
    5: "UNION",
    6: "ENUM",
    7: "FWD",
    8: "TYPEDEF",
    9: "VOLATILE",
    10: "CONST",
    11: "RESTRICT",
    12: "FUNC",
    13: "FUNC_PROTO",
    14: "VAR",
    15: "DATASEC",
    16: "FLOAT",
    17: "DECL_TAG",
    18: "TYPE_TAG",
    19: "ENUM64",
}
_MODIFIER_BY_KIND = {9: "volatile", 10: "const", 11: "restrict", 18: "type_tag"}
_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4


class Btf:
    """Parsed BTF.  Type ids start at 1 (0 is void); split BTF continues the base's ids.

    ``len(btf)`` is the number of type ids including void and the base's types, i.e. one past
    the last valid id (libbpf's ``btf__type_cnt``).
    """

    def __init__(
        self, types: list[BtfType], base: Btf | None = None, byteorder: str = "little", strings: bytes = b""
    ) -> None:
        self.base = base
        self.start_id = len(base) if base is not None else 1
        self._types = types
        self.byteorder = byteorder
        self._strings = strings

    def __len__(self) -> int:
        return self.start_id + len(self._types)

    def type(self, type_id: int) -> BtfType:
        if type_id == 0:
            return VOID
        if type_id < self.start_id:
            if self.base is None:
                raise KeyError(type_id)
            return self.base.type(type_id)
        idx = type_id - self.start_id
        if idx >= len(self._types) or type_id < 0:
            raise KeyError(type_id)
        return self._types[idx]

    def types(self) -> Iterator[tuple[int, BtfType]]:
        """(id, type) for this BTF's own types (not the base's)."""
        for i, t in enumerate(self._types):
            yield self.start_id + i, t

    def find(self, name: str, kind: str | None = None) -> BtfType | None:
        """First type called ``name`` (and of ``kind``, e.g. 'struct', 'typedef'), own types first."""
        for t in self._types:
            if t.name == name and (kind is None or t.kind == kind):
                return t
        if self.base is not None:
            return self.base.find(name, kind)
        return None

    def find_id(self, name: str, kind: str | None = None) -> int:
        """Id of the first type called ``name``; 0 when there is none."""
        for i, t in self.types():
            if t.name == name and (kind is None or t.kind == kind):
                return i
        if self.base is not None:
            return self.base.find_id(name, kind)
        return 0

    @classmethod
    def from_raw(cls, data: bytes | bytearray | memoryview, base: Btf | None = None) -> Btf:
        return _BtfParser(bytes(data), base).parse()


class _BtfParser:
    def __init__(self, data: bytes, base: Btf | None) -> None:
        self.data = data
        self.base = base

    def fail(self, msg: str) -> BtfError:
        return BtfError("BTF: " + msg)

    def parse(self) -> Btf:
        data = self.data
        if len(data) < 24:
            raise self.fail("%d bytes is too short for a BTF header" % len(data))
        if struct.unpack_from("<H", data)[0] == BTF_MAGIC:
            bo, byteorder = "<", "little"
        elif struct.unpack_from(">H", data)[0] == BTF_MAGIC:
            bo, byteorder = ">", "big"
        else:
            raise self.fail("bad magic 0x{:04x}".format(struct.unpack_from("<H", data)[0]))
        self.bo = bo
        header = struct.unpack_from(bo + "HBBIIIII", data)
        _magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = header
        if version != 1:
            raise self.fail("unsupported version %d" % version)
        if hdr_len < 24 or hdr_len > len(data):
            raise self.fail("bad header length %d" % hdr_len)
        tstart, sstart = hdr_len + type_off, hdr_len + str_off
        if tstart + type_len > len(data) or sstart + str_len > len(data):
            raise self.fail("type or string section extends past the end of the data (%d bytes)" % len(data))
        self.strings = data[sstart : sstart + str_len]
        self.base_str_len = len(self.base._strings) if self.base is not None else 0
        start_id = len(self.base) if self.base is not None else 1
        self.start_id = start_id

        # Pass 1: decode records, create objects, remember raw type-id references.
        records: list[tuple[int, str, BtfType, Any]] = []
        pos, end = tstart, tstart + type_len
        u32 = struct.Struct(bo + "I")
        i32 = struct.Struct(bo + "i")
        three = struct.Struct(bo + "III")
        tid = start_id
        while pos < end:
            if pos + 12 > end:
                raise self.fail("truncated type record [%d]" % tid)
            name_off, info, size_or_type = three.unpack_from(data, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = bool(info >> 31)
            name = self.string(name_off, tid)
            where = "[%d] %s %r" % (tid, _KIND_NAMES.get(kind, kind), name)

            def need(n: int, pos: int = pos, where: str = where) -> None:
                if pos + n > end:
                    raise self.fail(f"{where}: truncated")

            obj: BtfType
            refs: Any = None
            if kind == 1:
                need(4)
                enc = u32.unpack_from(data, pos)[0]
                pos += 4
                encoding, off, bits = (enc >> 24) & 0xF, (enc >> 16) & 0xFF, enc & 0xFF
                obj = Int(
                    name,
                    size_or_type,
                    bool(encoding & _INT_SIGNED),
                    bool(encoding & _INT_CHAR),
                    bool(encoding & _INT_BOOL),
                    bits,
                    off,
                )
            elif kind == 2:
                obj, refs = Ptr(VOID), size_or_type
            elif kind == 3:
                need(12)
                elem, index, count = three.unpack_from(data, pos)
                pos += 12
                obj, refs = Array(VOID, count), (elem, index)
            elif kind in (4, 5):
                need(12 * vlen)
                members = []
                for _i in range(vlen):
                    m_name, m_type, m_off = three.unpack_from(data, pos)
                    pos += 12
                    if kflag:
                        members.append((self.string(m_name, tid), m_type, m_off & 0xFFFFFF, m_off >> 24))
                    else:
                        members.append((self.string(m_name, tid), m_type, m_off, 0))
                obj, refs = Struct(name, size_or_type, [], kind == 5), members
            elif kind in (6, 19):
                width = 8 if kind == 6 else 12
                need(width * vlen)
                values = []
                for _i in range(vlen):
                    v_name = self.string(u32.unpack_from(data, pos)[0], tid)
                    if kind == 6:
                        val = (i32 if kflag else u32).unpack_from(data, pos + 4)[0]
                        if not kflag and size_or_type < 4:
                            # clang writes negative values of small enums as 32-bit patterns;
                            # keep what the enum's own bytes hold.
                            val &= (1 << (8 * size_or_type)) - 1
                    else:
                        lo, hi = struct.unpack_from(bo + "II", data, pos + 4)
                        val = (hi << 32) | lo
                        if kflag and val >= 1 << 63:
                            val -= 1 << 64
                    values.append((v_name, val))
                    pos += width
                obj = Enum(name, size_or_type, kflag, values)
            elif kind == 7:
                obj = Fwd(name, kflag)
            elif kind == 8:
                obj, refs = Typedef(name, VOID), size_or_type
            elif kind in _MODIFIER_BY_KIND:
                obj, refs = Modifier(_MODIFIER_BY_KIND[kind], VOID, name), size_or_type
            elif kind == 12:
                obj, refs = Func(name, VOID, vlen), size_or_type
            elif kind == 13:
                need(8 * vlen)
                params = []
                for _i in range(vlen):
                    p_name, p_type = struct.unpack_from(bo + "II", data, pos)
                    pos += 8
                    params.append((self.string(p_name, tid), p_type))
                obj, refs = FuncProto(VOID), (size_or_type, params)
            elif kind == 14:
                need(4)
                linkage = u32.unpack_from(data, pos)[0]
                pos += 4
                obj, refs = Var(name, VOID, linkage), size_or_type
            elif kind == 15:
                need(12 * vlen)
                secinfo = []
                for _i in range(vlen):
                    secinfo.append(three.unpack_from(data, pos))
                    pos += 12
                obj, refs = Datasec(name, size_or_type), secinfo
            elif kind == 16:
                obj = Float(name, size_or_type)
            elif kind == 17:
                need(4)
                comp = i32.unpack_from(data, pos)[0]
                pos += 4
                obj, refs = DeclTag(name, VOID, comp), size_or_type
            else:
                raise self.fail("[%d]: unknown kind %d" % (tid, kind))
            records.append((tid, where, obj, refs))
            tid += 1

        types = [r[2] for r in records]
        btf = Btf(types, self.base, byteorder, self.strings if self.base is None else self.base._strings + self.strings)

        def ref(type_id: int, where: str) -> BtfType:
            try:
                return btf.type(type_id)
            except KeyError:
                raise self.fail("%s: type id %d out of range" % (where, type_id)) from None

        # Pass 2: link references now that every id has an object.
        for _tid, where, obj, refs in records:
            if refs is None:
                continue
            if isinstance(obj, Ptr):
                obj.target = ref(refs, where)
            elif isinstance(obj, Array):
                obj.elem, obj.index_type = ref(refs[0], where), ref(refs[1], where)
            elif isinstance(obj, Struct):
                for m_name, m_type, bit_off, bf_size in refs:
                    mt = ref(m_type, f"{where} member {m_name!r}")
                    if not bf_size:
                        # Pre-kflag BTF encodes bitfields in the INT type itself.
                        base_int = _resolve_lenient(mt)
                        if isinstance(base_int, Int) and (base_int.bit_offset or base_int.bits != base_int.size * 8):
                            bit_off += base_int.bit_offset
                            bf_size = base_int.bits
                    obj.members.append(Member(m_name, mt, bit_off, bf_size))
            elif isinstance(obj, (Typedef, Modifier, Func, Var, DeclTag)):
                obj.type = ref(refs, where)
            elif isinstance(obj, FuncProto):
                obj.ret = ref(refs[0], where)
                obj.params = [(p_name, ref(p_type, where)) for p_name, p_type in refs[1]]
            elif isinstance(obj, Datasec):
                obj.vars = [(ref(v_type, where), v_off, v_size) for v_type, v_off, v_size in refs]
        self.check_cycles(records)
        return btf

    @staticmethod
    def check_cycles(records: Sequence[tuple[int, str, BtfType, Any]]) -> None:
        # Sizes are computed through typedefs, arrays and members; a loop there (only
        # possible in corrupt BTF) would recurse forever later, so reject it now.
        state: dict[int, int] = {}

        def edges(t: BtfType) -> list[BtfType]:
            if isinstance(t, (Typedef, Modifier, Var)):
                return [t.type]
            if isinstance(t, Array):
                return [t.elem]
            if isinstance(t, Struct):
                return [m.type for m in t.members]
            return []

        for _tid, where, obj, _refs in records:
            if id(obj) in state:
                continue
            stack = [(obj, iter(edges(obj)))]
            state[id(obj)] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[id(node)] = 2
                    stack.pop()
                    continue
                st = state.get(id(nxt), 0)
                if st == 1:
                    raise BtfError(f"BTF: {where}: type refers to itself")
                if st == 0:
                    state[id(nxt)] = 1
                    stack.append((nxt, iter(edges(nxt))))

    def string(self, off: int, tid: int) -> str:
        if off < self.base_str_len:
            if not (self.base is not None):
                raise AssertionError("internal error: expected self.base is not None")
            strings = self.base._strings
        else:
            off -= self.base_str_len
            strings = self.strings
        if off >= len(strings) and off != 0:
            raise self.fail("[%d]: name offset %d out of range" % (tid, off))
        endpos = strings.find(b"\0", off)
        if endpos < 0:
            endpos = len(strings)
        return strings[off:endpos].decode("utf-8", "replace")


def _resolve_lenient(t: BtfType) -> BtfType:
    # During linking later ids may still point at VOID placeholders; stop at those.
    for _i in range(64):
        if not isinstance(t, (Typedef, Modifier)):
            break
        t = t.type
    return t


# ----------------------------------------------------------------------------------------------
# Schema -> model
# ----------------------------------------------------------------------------------------------


def int_type(size: int, signed: bool) -> Int:
    """Canonical C integer of that size/signedness (names as clang emits them into BTF)."""
    names = {
        (1, False): "unsigned char",
        (1, True): "signed char",
        (2, False): "unsigned short",
        (2, True): "short",
        (4, False): "unsigned int",
        (4, True): "int",
        (8, False): "unsigned long long",
        (8, True): "long long",
        (16, False): "unsigned __int128",
        (16, True): "__int128",
    }
    return Int(names[(size, signed)], size, signed)


_SCALAR_SPECS: dict[str, tuple[str, int, bool]] = {}
for _size in (1, 2, 4, 8, 16):
    _bits = _size * 8
    for _alias in ("u%d" % _bits, "__u%d" % _bits, "uint%d_t" % _bits):
        _SCALAR_SPECS[_alias] = ("int", _size, False)
    for _alias in ("s%d" % _bits, "__s%d" % _bits, "int%d_t" % _bits, "i%d" % _bits):
        _SCALAR_SPECS[_alias] = ("int", _size, True)
_SCALAR_SPECS.update(
    {
        "int": ("int", 4, True),
        "signed int": ("int", 4, True),
        "signed": ("int", 4, True),
        "unsigned int": ("int", 4, False),
        "unsigned": ("int", 4, False),
        "long": ("int", 8, True),
        "long int": ("int", 8, True),
        "signed long": ("int", 8, True),
        "unsigned long": ("int", 8, False),
        "long long": ("int", 8, True),
        "unsigned long long": ("int", 8, False),
        "short": ("int", 2, True),
        "unsigned short": ("int", 2, False),
        "signed char": ("int", 1, True),
        "unsigned char": ("int", 1, False),
        "__int128": ("int", 16, True),
        "unsigned __int128": ("int", 16, False),
        "char": ("char", 1, True),
        "bool": ("bool", 1, False),
        "_Bool": ("bool", 1, False),
        "__be16": ("be", 2, False),
        "__be32": ("be", 4, False),
        "__be64": ("be", 8, False),
        "float": ("float", 4, True),
        "double": ("float", 8, True),
    }
)
SCALAR_NAMES = tuple(sorted(_SCALAR_SPECS))

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ARRAY_SUFFIX = re.compile(r"^(.*?)\s*((?:\[\s*\d+\s*\])+)$")


def _scalar(name: str, path: str) -> BtfType:
    key = " ".join(name.split())
    spec = _SCALAR_SPECS.get(key)
    if spec is None:
        raise BtfError(f"{path}: unknown type {name!r}")
    what, size, signed = spec
    if what == "int":
        return int_type(size, signed)
    if what == "char":
        return Int("char", 1, True, is_char=True)
    if what == "bool":
        return Int("_Bool", 1, False, is_bool=True)
    if what == "float":
        return Float(key, size)
    return Typedef(key, int_type(size, False))


def _check_keys(spec: dict[str, Any], allowed: Sequence[str], path: str) -> None:
    unknown = sorted(str(k) for k in spec if k not in allowed)
    if unknown:
        raise BtfError(
            "{}: unknown key{} {} (allowed: {})".format(
                path, "s" if len(unknown) > 1 else "", ", ".join(repr(k) for k in unknown), ", ".join(allowed)
            )
        )


def _get_int(spec: dict[str, Any], key: str, path: str, default: int | None = None) -> int | None:
    val = spec.get(key, default)
    if val is None:
        return None
    if isinstance(val, bool) or not isinstance(val, int):
        if isinstance(val, str) and re.match(r"^\s*\d+\s*$", val):
            return int(val)
        raise BtfError(f"{path}.{key}: expected an integer, got {val!r}")
    return val


def _get_bool(spec: dict[str, Any], key: str, path: str, default: bool) -> bool:
    val = spec.get(key, default)
    if not isinstance(val, bool):
        raise BtfError(f"{path}.{key}: expected true or false, got {val!r}")
    return val


def _get_name(spec: dict[str, Any], path: str, required: bool = False) -> str:
    name = spec.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str) or (name and not _IDENT.match(name)):
        raise BtfError(f"{path}.name: {name!r} is not a C identifier")
    if required and not name:
        raise BtfError(f"{path}.name: required")
    return name


def _spec_label(spec: Any, t: BtfType) -> str:
    return spec.strip() if isinstance(spec, str) else type_name(t)


def type_from_schema(spec: Any, path: str = "value") -> BtfType:
    """Build a type from a user schema (see module docs in the collection for the syntax).

    Raises BtfError whose message starts with the offending path, e.g.
    ``value.fields[2].type: unknown type 'u33'``.
    """
    if isinstance(spec, str):
        m = _ARRAY_SUFFIX.match(spec.strip())
        if m:
            elem = _scalar(m.group(1), path)
            dims = [int(d) for d in re.findall(r"\d+", m.group(2))]
            for d in dims:
                if d <= 0:
                    raise BtfError(f"{path}: array count must be positive in {spec!r}")
            t: BtfType = elem
            for d in reversed(dims):
                t = Array(t, d)
            return t
        return _scalar(spec, path)
    if not isinstance(spec, dict):
        raise BtfError(f"{path}: expected a type name or a mapping, got {spec!r}")
    kind = spec.get("kind")
    if kind == "enum":
        return _enum_from_schema(spec, path)
    if kind in ("struct", "union") or "fields" in spec:
        return _struct_from_schema(spec, path)
    if "count" in spec:
        _check_keys(spec, ("type", "count"), path)
        if "type" not in spec:
            raise BtfError(f"{path}.type: required")
        count = _get_int(spec, "count", path)
        if not (count is not None):
            raise AssertionError("internal error: expected count is not None")
        if count <= 0:
            raise BtfError("%s.count: array count must be positive, got %d" % (path, count))
        return Array(type_from_schema(spec["type"], path + ".type"), count)
    if kind is not None:
        raise BtfError(f"{path}.kind: expected struct, union or enum, got {kind!r}")
    raise BtfError(f"{path}: expected a struct/union (with fields), an enum (kind: enum) or an array (type, count)")


def _enum_from_schema(spec: dict[str, Any], path: str) -> Enum:
    _check_keys(spec, ("kind", "name", "size", "signed", "values"), path)
    name = _get_name(spec, path)
    size = _get_int(spec, "size", path, 4)
    if size not in (1, 2, 4, 8):
        raise BtfError(f"{path}.size: enum size must be 1, 2, 4 or 8, got {size!r}")
    signed = _get_bool(spec, "signed", path, False)
    raw = spec.get("values")
    items: list[tuple[Any, Any, str]] = []
    if isinstance(raw, dict):
        items = [(k, v, f"{path}.values.{k}") for k, v in raw.items()]
    elif isinstance(raw, list):
        for i, entry in enumerate(raw):
            epath = "%s.values[%d]" % (path, i)
            if not isinstance(entry, dict):
                raise BtfError(f"{epath}: expected a mapping with name and value, got {entry!r}")
            _check_keys(entry, ("name", "value"), epath)
            if "name" not in entry or "value" not in entry:
                raise BtfError(f"{epath}: needs both name and value")
            items.append((entry["name"], entry["value"], epath))
    else:
        raise BtfError(f"{path}.values: expected a mapping of names to numbers or a list of {{name, value}}")
    if not items:
        raise BtfError(f"{path}.values: an enum needs at least one value")
    lo, hi = (-(1 << (size * 8 - 1)), (1 << (size * 8 - 1)) - 1) if signed else (0, (1 << (size * 8)) - 1)
    values: list[tuple[str, int]] = []
    seen = set()
    for vname, val, vpath in items:
        if not isinstance(vname, str) or not _IDENT.match(vname):
            raise BtfError(f"{vpath}: {vname!r} is not a C identifier")
        if vname in seen:
            raise BtfError(f"{vpath}: duplicate enum name {vname!r}")
        seen.add(vname)
        if isinstance(val, bool) or not isinstance(val, int):
            raise BtfError(f"{vpath}: expected an integer, got {val!r}")
        if not lo <= val <= hi:
            raise BtfError(
                "%s: %d is out of range for a %s %d-byte enum (%d..%d)"
                % (vpath, val, "signed" if signed else "unsigned", size, lo, hi)
            )
        values.append((vname, val))
    return Enum(name, size, signed, values)


class _FieldSpec:
    __slots__ = ("align", "bits", "name", "path", "type")

    def __init__(self, name: str, type: BtfType, bits: int | None, align: int | None, path: str) -> None:
        self.name = name
        self.type = type
        self.bits = bits
        self.align = align
        self.path = path


def _struct_from_schema(spec: dict[str, Any], path: str) -> Struct:
    _check_keys(spec, ("name", "kind", "packed", "fields"), path)
    name = _get_name(spec, path)
    kind = spec.get("kind", "struct")
    if kind not in ("struct", "union"):
        raise BtfError(f"{path}.kind: expected struct or union, got {kind!r}")
    packed = _get_bool(spec, "packed", path, False)
    fields = spec.get("fields")
    if not isinstance(fields, list) or not fields:
        raise BtfError(f"{path}.fields: expected a non-empty list of fields")
    fspecs: list[_FieldSpec] = []
    names: dict[str, str] = {}
    for i, f in enumerate(fields):
        fpath = "%s.fields[%d]" % (path, i)
        if not isinstance(f, dict):
            raise BtfError(f"{fpath}: expected a mapping with name and type, got {f!r}")
        _check_keys(f, ("name", "type", "bits", "align"), fpath)
        fname = _get_name(f, fpath)
        if "type" not in f:
            raise BtfError(f"{fpath}.type: required")
        ftype = type_from_schema(f["type"], fpath + ".type")
        bits = _get_int(f, "bits", fpath)
        align = _get_int(f, "align", fpath)
        rt = resolve(ftype)
        if bits is not None:
            if not isinstance(rt, (Int, Enum)):
                raise BtfError(
                    "{}.bits: bitfields need an integer or enum type, not {}".format(
                        fpath, _spec_label(f["type"], ftype)
                    )
                )
            width = 1 if isinstance(rt, Int) and rt.is_bool else rt.size * 8
            if bits < 0 or bits > width:
                if bits < 0:
                    raise BtfError(f"{fpath}.bits: must not be negative, got {bits}")
                raise BtfError(f"{fpath}.bits: {bits} exceeds the {width} bits of {_spec_label(f['type'], ftype)}")
            if align is not None:
                raise BtfError(f"{fpath}.align: not supported on bitfields")
            if bits == 0 and fname:
                raise BtfError(f"{fpath}.name: a zero-width bitfield cannot be named")
        if align is not None and (align <= 0 or align & (align - 1)):
            raise BtfError("%s.align: must be a power of two, got %d" % (fpath, align))
        if not fname and bits is None and not isinstance(rt, Struct):
            raise BtfError(f"{fpath}.name: required (only struct/union fields and bitfields may be anonymous)")
        # C requires the names of anonymous struct/union members to be unique in the parent too.
        for n in [fname] if fname else (_flat_names(rt) if bits is None else []):
            if n in names:
                raise BtfError(f"{fpath}.name: duplicate field name {n!r}")
            names[n] = fpath
        fspecs.append(_FieldSpec(fname, ftype, bits, align, fpath))
    members, size, align = _layout(fspecs, packed, kind == "union")
    return Struct(name, size, members, kind == "union", align, packed)


def _flat_names(t: BtfType) -> list[str]:
    out: list[str] = []
    if isinstance(t, Struct):
        for m in t.members:
            if m.name:
                out.append(m.name)
            else:
                out.extend(_flat_names(resolve(m.type)))
    return out


def _layout(fields: Sequence[_FieldSpec], packed: bool, is_union: bool) -> tuple[list[Member], int, int]:
    """C layout of ``fields`` (clang, BPF target). Returns (members, size, alignment)."""
    members: list[Member] = []
    bit = 0  # next free bit (structs)
    end_bits = 0  # furthest bit used (unions)
    struct_align = 1
    for f in fields:
        natural = alignof(f.type)
        align = 1 if packed else natural
        if f.align is not None:
            align = max(align, f.align)
        tsize_bits = f.type.size * 8
        if f.bits is not None:
            if f.bits == 0:
                # Zero-width: next member starts at the type's alignment, even when packed; the
                # unnamed field does not raise the struct's alignment.
                if not is_union:
                    bit = _roundup(bit, natural * 8)
                continue
            if is_union:
                start = 0
            elif packed:
                start = bit
            else:
                unit = natural * 8
                start = bit
                if start // unit != (start + f.bits - 1) // unit:
                    start = _roundup(start, unit)
            if f.name:
                # Unnamed bitfields (padding) do not raise the struct's alignment.
                struct_align = max(struct_align, align)
            if f.name:
                members.append(Member(f.name, f.type, start, f.bits))
            bit = start + f.bits
            end_bits = max(end_bits, f.bits)
            continue
        struct_align = max(struct_align, align)
        start = 0 if is_union else _roundup(bit, align * 8)
        members.append(Member(f.name, f.type, start, 0))
        bit = start + tsize_bits
        end_bits = max(end_bits, tsize_bits)
    used = end_bits if is_union else bit
    size = _roundup((used + 7) // 8, struct_align)
    return members, size, struct_align


def _roundup(x: int, a: int) -> int:
    return (x + a - 1) // a * a if a > 1 else x


# ----------------------------------------------------------------------------------------------
# Model -> schema
# ----------------------------------------------------------------------------------------------


def _int_schema(t: Int) -> str:
    if t.is_bool:
        return "bool"
    if t.is_char or t.name == "char":
        return "char"
    if t.size not in (1, 2, 4, 8, 16):
        raise BtfError("%s: no schema for a %d-byte integer" % (type_name(t), t.size))
    return "%s%d" % ("s" if t.signed else "u", t.size * 8)


def to_schema(t: BtfType) -> Any:
    """Schema (string or dict) describing ``t`` such that type_from_schema() gives the same layout.

    Pointers become u64 (same size and alignment); typedefs are looked through except
    ``__be16/32/64``, which keep their name because it selects the network-order format.
    """
    if isinstance(t, Typedef):
        rt = resolve(t)
        if (
            t.name in ("__be16", "__be32", "__be64")
            and isinstance(rt, Int)
            and not rt.signed
            and rt.size * 8 == int(t.name[4:])
        ):
            return t.name
        return to_schema(t.type)
    if isinstance(t, Modifier):
        return to_schema(t.type)
    if isinstance(t, Int):
        return _int_schema(t)
    if isinstance(t, Ptr):
        return "u64"
    if isinstance(t, Float):
        if t.size == 4:
            return "float"
        if t.size == 8:
            return "double"
        raise BtfError("%s: no schema for a %d-byte float" % (type_name(t), t.size))
    if isinstance(t, Array):
        elem = to_schema(t.elem)
        if isinstance(elem, str):
            m = _ARRAY_SUFFIX.match(elem)
            if m:
                return "%s[%d]%s" % (m.group(1), t.count, m.group(2))
            return "%s[%d]" % (elem, t.count)
        return {"type": elem, "count": t.count}
    if isinstance(t, Enum):
        out: dict[str, Any] = {"kind": "enum"}
        if t.name:
            out["name"] = t.name
        out["size"] = t.size
        out["signed"] = t.signed
        out["values"] = dict(t.values)
        return out
    if isinstance(t, Struct):
        return _struct_schema(t)
    raise BtfError(f"{type_name(t)}: {t.kind} types have no schema")


def _struct_schema(t: Struct) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if t.name:
        out["name"] = t.name
    out["kind"] = t.kind
    fields = None
    for packed in (False, True):
        fields = _fit_fields(t, packed)
        if fields is not None:
            if packed:
                out["packed"] = True
            break
    if fields is None:
        # Not expressible with our schema (e.g. hand-made BTF); give the natural layout.
        fields = [_field_dict(m.name, to_schema(m.type), m.bitfield_size or None) for m in t.members]
    out["fields"] = fields
    return out


def _field_dict(name: str, type_schema: Any, bits: int | None = None, align: int | None = None) -> dict[str, Any]:
    f: dict[str, Any] = {}
    if name:
        f["name"] = name
    f["type"] = type_schema
    if bits is not None:
        f["bits"] = bits
    if align is not None:
        f["align"] = align
    return f


_PAD_TYPES = {2: "u16", 4: "u32", 8: "u64", 16: "u128"}


def _fit_fields(t: Struct, packed: bool) -> list[dict[str, Any]] | None:
    """Fields reproducing ``t``'s exact layout, adding what C would need where members sit further
    than natural placement: a zero-width bitfield, an ``align``, or unnamed padding bitfields."""
    specs: list[_FieldSpec] = []
    fields: list[dict[str, Any]] = []

    def pad_spec(type_schema: str, bits: int) -> tuple[_FieldSpec, dict[str, Any]]:
        return (_FieldSpec("", type_from_schema(type_schema), bits, None, ""), _field_dict("", type_schema, bits))

    for m in t.members:
        schema = to_schema(m.type)
        bits = m.bitfield_size or None
        spec = _FieldSpec(m.name, m.type, bits, None, "")
        members, _size, _align = _layout([*specs, spec], packed, t.is_union)
        got = members[-1].bit_offset
        if got == m.bit_offset:
            specs.append(spec)
            fields.append(_field_dict(m.name, schema, bits))
            continue
        if got > m.bit_offset:
            return None
        options: list[tuple[list[_FieldSpec], list[dict[str, Any]]]] = []
        for pad_type in _PAD_TYPES.values():
            ps, pf = pad_spec(pad_type, 0)
            options.append(([ps, spec], [pf, _field_dict(m.name, schema, bits)]))
        if bits is None:
            for shift in range(1, 13):
                a = 1 << shift
                options.append(([_FieldSpec(m.name, m.type, None, a, "")], [_field_dict(m.name, schema, None, a)]))
        # Unnamed u8 bitfields, each within one byte, fill any gap from the end of the previous member.
        members_so_far = _layout(specs, packed, t.is_union)[0] if specs else []
        pos = max((mm.bit_offset + (mm.bitfield_size or mm.type.size * 8) for mm in members_so_far), default=0)
        pads = []
        while pos < m.bit_offset:
            chunk = min(m.bit_offset - pos, 8 - pos % 8)
            pads.append(pad_spec("u8", chunk))
            pos += chunk
        if pads:
            options.append(([p[0] for p in pads] + [spec], [p[1] for p in pads] + [_field_dict(m.name, schema, bits)]))
        for extra_specs, extra_fields in options:
            try:
                members, _size, align = _layout(specs + extra_specs, packed, t.is_union)
            except BtfError:
                continue
            if members[-1].bit_offset == m.bit_offset and align <= t.align:
                specs.extend(extra_specs)
                fields.extend(extra_fields)
                break
        else:
            return None
    _members, size, align = _layout(specs, packed, t.is_union)
    if align < t.align:
        # The struct is more aligned than its members (aligned attribute on a member or struct):
        # C expresses that with an align on a member.
        for i, spec in enumerate(specs):
            # Any member already at a multiple of the alignment can carry it without moving.
            if spec.bits is None and _layout(specs[: i + 1], packed, t.is_union)[0][-1].bit_offset % (t.align * 8) == 0:
                spec.align = max(spec.align or 1, t.align)
                fields[i]["align"] = spec.align
                break
        _members, size, align = _layout(specs, packed, t.is_union)
    if size != t.size:
        tail: list[tuple[_FieldSpec, dict[str, Any]]] = [pad_spec(pt, 0) for pt in _PAD_TYPES.values()]
        for ps, pf in tail:
            if _layout([*specs, ps], packed, t.is_union)[1] == t.size:
                specs.append(ps)
                fields.append(pf)
                break
        else:
            if size > t.size:
                return None
            if t.is_union:
                # Members of a union overlap, so one unnamed bitfield spanning the size pads it.
                width = t.size * 8
                pad_type = next((n for n in ("u8", "u16", "u32", "u64", "u128") if int(n[1:]) >= width), None)
                if pad_type is None:
                    return None
                pads = [pad_spec(pad_type, width)]
            else:
                pads = [pad_spec("u8", 8) for _i in range(t.size - size)]
            specs.extend(p[0] for p in pads)
            fields.extend(p[1] for p in pads)
    members, size, align = _layout(specs, packed, t.is_union)
    if (
        size != t.size
        or align != t.align
        or [(m.bit_offset, m.bitfield_size) for m in members] != [(m.bit_offset, m.bitfield_size) for m in t.members]
    ):
        return None
    return fields


# ----------------------------------------------------------------------------------------------
# Layout comparison
# ----------------------------------------------------------------------------------------------


def _flat_members(s: Struct, base_bits: int = 0) -> list[tuple[str, Member, int]]:
    """Members with anonymous struct/union members flattened (C access semantics)."""
    out: list[tuple[str, Member, int]] = []
    for m in s.members:
        rt = resolve(m.type)
        if not m.name and isinstance(rt, Struct) and not m.bitfield_size:
            out.extend(_flat_members(rt, base_bits + m.bit_offset))
        else:
            out.append((m.name, m, base_bits + m.bit_offset))
    return out


def _describe(t: BtfType) -> str:
    if isinstance(t, Int):
        if t.is_bool:
            return "bool"
        return "%s%d" % ("s" if t.signed else "u", t.size * 8)
    return type_name(t)


def _fmt_offset(bits: int) -> str:
    return str(bits // 8) if bits % 8 == 0 else "%d bits" % bits


def compare_layout(have: BtfType, want: BtfType, path: str = "value") -> list[str]:
    """Differences between an existing type (``have``) and the declared one (``want``).

    Each entry reads ``<path>: <what> <have> != <want>``; an empty list means the layouts are
    compatible.  Typedefs, modifiers, type names and char-ness are ignored; sizes, offsets,
    kinds, signedness, bitfields, array counts and enum values are compared.
    """
    out: list[str] = []
    _compare(have, want, path, out, 0)
    return out


def _compare(have: BtfType, want: BtfType, path: str, out: list[str], depth: int) -> None:
    h, w = resolve(have), resolve(want)
    if depth > 64:
        return
    if h.kind != w.kind:
        out.append(f"{path}: kind {h.kind} != {w.kind} ({_describe(h)} != {_describe(w)})")
        return
    if h.size != w.size:
        out.append("%s: size %d != %d" % (path, h.size, w.size))
        if not isinstance(h, (Struct, Array)):
            return
    if isinstance(h, Int):
        if not (isinstance(w, Int)):
            raise AssertionError("internal error: expected isinstance(w, Int)")
        if h.signed != w.signed and not (h.is_bool or w.is_bool):
            out.append(
                "{}: signedness {} != {}".format(
                    path, "signed" if h.signed else "unsigned", "signed" if w.signed else "unsigned"
                )
            )
    elif isinstance(h, Enum):
        if not (isinstance(w, Enum)):
            raise AssertionError("internal error: expected isinstance(w, Enum)")
        if h.signed != w.signed:
            out.append(
                "{}: enum signedness {} != {}".format(
                    path, "signed" if h.signed else "unsigned", "signed" if w.signed else "unsigned"
                )
            )
        hv, wv = dict(h.values), dict(w.values)
        for k in wv:
            if k not in hv:
                out.append(f"{path}: enum value {k} missing in existing map")
            elif hv[k] != wv[k]:
                out.append("%s: enum value %s = %d != %d" % (path, k, hv[k], wv[k]))
        for k in hv:
            if k not in wv:
                out.append(f"{path}: enum value {k} not declared")
    elif isinstance(h, Array):
        if not (isinstance(w, Array)):
            raise AssertionError("internal error: expected isinstance(w, Array)")
        if h.count != w.count:
            out.append("%s: array count %d != %d" % (path, h.count, w.count))
        _compare(h.elem, w.elem, path + "[]", out, depth + 1)
    elif isinstance(h, Struct):
        if not (isinstance(w, Struct)):
            raise AssertionError("internal error: expected isinstance(w, Struct)")
        hm = _flat_members(h)
        wm = _flat_members(w)
        hmap = {n: (m, off) for n, m, off in hm}
        wnames = set()
        for idx, (n, m, off) in enumerate(wm):
            label = n if n else "(anon#%d)" % idx
            mpath = f"{path}.{label}"
            wnames.add(n)
            if n not in hmap:
                out.append(f"{mpath}: missing in existing map")
                continue
            hmem, hoff = hmap[n]
            if hoff != off:
                out.append(f"{mpath}: offset {_fmt_offset(hoff)} != {_fmt_offset(off)}")
            if hmem.bitfield_size != m.bitfield_size:
                out.append("%s: bitfield width %d != %d" % (mpath, hmem.bitfield_size, m.bitfield_size))
            _compare(hmem.type, m.type, mpath, out, depth + 1)
        for idx, (n, _m, _off) in enumerate(hm):
            if n not in wnames:
                out.append("{}.{}: not declared".format(path, n if n else "(anon#%d)" % idx))
    elif isinstance(h, Ptr):
        pass
