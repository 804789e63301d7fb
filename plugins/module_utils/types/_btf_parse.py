# Copyright: contributors to the cnf.ebpf collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Raw BTF: the `Btf` container of parsed types and the parser of the blob libbpf hands over.

Pure Python on purpose: libbpf hands us the raw BTF blob (``btf__raw_data``) of a map, a
program object or the kernel, and decoding that documented format here is both simpler
than walking ``struct btf_type`` through ctypes and unit-testable without a kernel.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import (
    VOID,
    Array,
    BtfError,
    BtfType,
    Datasec,
    DeclTag,
    Enum,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Member,
    Modifier,
    Ptr,
    Struct,
    Typedef,
    Var,
)

__all__ = [
    "Btf",
]

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
