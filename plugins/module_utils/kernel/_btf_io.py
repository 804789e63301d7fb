# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""BTF in and out of the kernel: the raw blob of a loaded BTF object or an ELF file (parsed by the types layer), and
model types written back as real kernel BTF through libbpf's BTF writer.

Maps created by the collection carry these types (btf_key_type_id / btf_value_type_id), so `bpftool map dump`
pretty-prints them and later runs can verify the layout of a pinned map against what a playbook declares.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import Fd, check, check_ptr, declare
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf

_VP = ctypes.c_void_p
_U32 = ctypes.c_uint32
_INT = ctypes.c_int
_PU32 = ctypes.POINTER(ctypes.c_uint32)

_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "btf__free": (None, [_VP]),
    "btf__new_empty": (_VP, []),
    "btf__load_from_kernel_by_id": (_VP, [_U32]),
    "btf__parse_elf": (_VP, [ctypes.c_char_p, _VP]),
    "btf__raw_data": (_VP, [_VP, _PU32]),
    "btf__load_into_kernel": (_INT, [_VP]),
    "btf__fd": (_INT, [_VP]),
    "btf__add_int": (_INT, [_VP, ctypes.c_char_p, ctypes.c_size_t, _INT]),
    "btf__add_float": (_INT, [_VP, ctypes.c_char_p, ctypes.c_size_t]),
    "btf__add_ptr": (_INT, [_VP, _INT]),
    "btf__add_array": (_INT, [_VP, _INT, _INT, _U32]),
    "btf__add_struct": (_INT, [_VP, ctypes.c_char_p, _U32]),
    "btf__add_union": (_INT, [_VP, ctypes.c_char_p, _U32]),
    "btf__add_field": (_INT, [_VP, ctypes.c_char_p, _INT, _U32, _U32]),
    "btf__add_enum": (_INT, [_VP, ctypes.c_char_p, _U32]),
    "btf__add_enum_value": (_INT, [_VP, ctypes.c_char_p, ctypes.c_int64]),
    "btf__add_enum64": (_INT, [_VP, ctypes.c_char_p, _U32, ctypes.c_bool]),
    "btf__add_enum64_value": (_INT, [_VP, ctypes.c_char_p, ctypes.c_uint64]),
    "btf__add_fwd": (_INT, [_VP, ctypes.c_char_p, _INT]),
    "btf__add_typedef": (_INT, [_VP, ctypes.c_char_p, _INT]),
    "btf__add_volatile": (_INT, [_VP, _INT]),
    "btf__add_const": (_INT, [_VP, _INT]),
    "btf__add_restrict": (_INT, [_VP, _INT]),
}


def _lib() -> ctypes.CDLL:
    return declare(_PROTOTYPES)


BTF_INT_SIGNED = 1
BTF_INT_CHAR = 2
BTF_INT_BOOL = 4


def _btf_raw(btf_ptr: int) -> bytes:
    size = ctypes.c_uint32(0)
    data = _lib().btf__raw_data(btf_ptr, ctypes.byref(size))
    return ctypes.string_at(data, size.value)


def btf_raw_from_kernel(btf_id: int) -> bytes:
    """Raw BTF of a kernel BTF object (e.g. a map's btf_id), as libbpf fetched it."""
    lib = _lib()
    ptr = check_ptr(lib.btf__load_from_kernel_by_id(btf_id), "load btf", f"btf id {btf_id}")
    try:
        return _btf_raw(ptr)
    finally:
        lib.btf__free(ptr)


def btf_raw_from_elf(path: str) -> bytes:
    """Raw BTF of an ELF object file (libbpf's parser: relocations and DATASEC sizes fixed up)."""
    lib = _lib()
    ptr = check_ptr(lib.btf__parse_elf(path.encode(), None), "parse btf", path)
    try:
        return _btf_raw(ptr)
    finally:
        lib.btf__free(ptr)


class BtfWriter:
    """libbpf's BTF writer (btf__new_empty + btf__add_*): builds a BTF blob and loads it into the kernel.

    Every add_* returns the new type id. The writer owns its libbpf `struct btf`; free it with close() (or use it as
    a context manager). `load()` returns an Fd that outlives the writer.
    """

    def __init__(self, label: str = "btf") -> None:
        self.label = label
        self._lib = _lib()
        self._btf = check_ptr(self._lib.btf__new_empty(), "create btf", label)

    def close(self) -> None:
        if self._btf:
            self._lib.btf__free(self._btf)
            self._btf = None

    def __enter__(self) -> BtfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add(self, what: str, ret: int) -> int:
        return check(ret, "build btf", self.label, f"btf__add_{what} failed")

    def add_int(self, name: str, size: int, signed: bool = False, char: bool = False, boolean: bool = False) -> int:
        # The kernel takes one encoding flag at most ("Unsupported encoding" for SIGNED|CHAR): a signed char is
        # written as clang writes it, SIGNED with the name "char".
        if boolean:
            encoding = BTF_INT_BOOL
        elif signed:
            encoding = BTF_INT_SIGNED
        else:
            encoding = BTF_INT_CHAR if char else 0
        return self._add("int", self._lib.btf__add_int(self._btf, name.encode(), size, encoding))

    def add_float(self, name: str, size: int) -> int:
        return self._add("float", self._lib.btf__add_float(self._btf, name.encode(), size))

    def add_ptr(self, target_id: int) -> int:
        return self._add("ptr", self._lib.btf__add_ptr(self._btf, target_id))

    def add_array(self, elem_id: int, index_id: int, count: int) -> int:
        return self._add("array", self._lib.btf__add_array(self._btf, index_id, elem_id, count))

    def add_struct(self, name: str, size: int, union: bool = False) -> int:
        func = self._lib.btf__add_union if union else self._lib.btf__add_struct
        return self._add("union" if union else "struct", func(self._btf, name.encode() if name else None, size))

    def add_field(self, name: str, type_id: int, bit_offset: int, bitfield_size: int = 0) -> int:
        ret = self._lib.btf__add_field(self._btf, name.encode() if name else None, type_id, bit_offset, bitfield_size)
        return self._add("field", ret)

    def add_enum(self, name: str, size: int, values: list[tuple[str, int]], signed: bool = False) -> int:
        wide = size == 8 or any(v > 0x7FFFFFFF or v < -0x80000000 for _name, v in values)
        enc_name = name.encode() if name else None
        if wide:
            type_id = self._add("enum64", self._lib.btf__add_enum64(self._btf, enc_name, size, signed))
            for vname, value in values:
                self._add(
                    "enum64_value", self._lib.btf__add_enum64_value(self._btf, vname.encode(), value & (2**64 - 1))
                )
        else:
            type_id = self._add("enum", self._lib.btf__add_enum(self._btf, enc_name, size))
            for vname, value in values:
                self._add("enum_value", self._lib.btf__add_enum_value(self._btf, vname.encode(), value))
        return type_id

    def add_typedef(self, name: str, type_id: int) -> int:
        return self._add("typedef", self._lib.btf__add_typedef(self._btf, name.encode(), type_id))

    def add_modifier(self, kind: str, type_id: int) -> int:
        func = {
            "const": self._lib.btf__add_const,
            "volatile": self._lib.btf__add_volatile,
            "restrict": self._lib.btf__add_restrict,
        }[kind]
        return self._add(kind, func(self._btf, type_id))

    def add_fwd(self, name: str, union: bool = False) -> int:
        return self._add("fwd", self._lib.btf__add_fwd(self._btf, name.encode(), 1 if union else 0))

    def raw(self) -> bytes:
        return _btf_raw(self._btf)

    def load(self) -> Fd:
        """Load the BTF into the kernel; the returned Fd is ours (dup'ed) and stays valid after close()."""
        check(self._lib.btf__load_into_kernel(self._btf), "load btf", self.label)
        return Fd(os.dup(self._lib.btf__fd(self._btf)), self.label)


class _Emitter:
    """Emits each model type once (memoised by identity); arrays share one `__ARRAY_SIZE_TYPE__` index type,
    as clang does."""

    def __init__(self, writer: BtfWriter) -> None:
        self.writer = writer
        self.ids: dict[int, int] = {}
        self.in_progress: set[int] = set()
        self._index_id = 0

    def index_type(self) -> int:
        if not self._index_id:
            self._index_id = self.writer.add_int("__ARRAY_SIZE_TYPE__", 4)
        return self._index_id

    def emit(self, t: _btf.BtfType) -> int:
        key = id(t)
        if key in self.ids:
            return self.ids[key]
        if isinstance(t, _btf.Void):
            return 0
        w = self.writer
        if isinstance(t, _btf.Int):
            type_id = w.add_int(t.name or f"u{t.size * 8}", t.size, signed=t.signed, char=t.is_char, boolean=t.is_bool)
        elif isinstance(t, _btf.Float):
            type_id = w.add_float(t.name, t.size)
        elif isinstance(t, _btf.Array):
            type_id = w.add_array(self.emit(t.elem), self.index_type(), t.count)
        elif isinstance(t, _btf.Enum):
            type_id = w.add_enum(t.name, t.size, list(t.values), signed=t.signed)
        elif isinstance(t, _btf.Typedef):
            type_id = w.add_typedef(t.name, self.emit(t.type))
        elif isinstance(t, _btf.Modifier) and t.kind in ("const", "volatile", "restrict"):
            type_id = w.add_modifier(t.kind, self.emit(t.type))
        elif isinstance(t, _btf.Modifier):  # type_tag: layout-neutral, not needed in map BTF
            type_id = self.emit(t.type)
        elif isinstance(t, _btf.Ptr):
            target = t.target
            if id(target) in self.in_progress and isinstance(target, _btf.Struct):
                # A self-referencing struct: point at a forward declaration, as C does.
                type_id = w.add_ptr(w.add_fwd(target.name, union=target.is_union))
            else:
                type_id = w.add_ptr(self.emit(target))
        elif isinstance(t, _btf.Fwd):
            type_id = w.add_fwd(t.name, union=getattr(t, "is_union", False))
        elif isinstance(t, _btf.Struct):
            self.in_progress.add(key)
            # Member types first: libbpf wants the struct's fields added right after btf__add_struct.
            member_ids = [self.emit(m.type) for m in t.members]
            type_id = w.add_struct(t.name, t.size, union=t.is_union)
            for member, member_id in zip(t.members, member_ids):
                w.add_field(member.name, member_id, member.bit_offset, member.bitfield_size)
            self.in_progress.discard(key)
        else:
            raise _btf.BtfError(f"{_btf.type_name(t)}: {t.kind} types cannot be used in map definitions")
        self.ids[key] = type_id
        return type_id


def load_map_btf(key: _btf.BtfType | None, value: _btf.BtfType | None, label: str) -> tuple[Fd, int, int]:
    """Load BTF holding the key and value types into the kernel: (btf fd, key type id, value type id).

    A missing side gets id 0 (maps such as queue/stack have no key)."""
    with BtfWriter(label) as writer:
        emitter = _Emitter(writer)
        key_id = emitter.emit(key) if key is not None else 0
        value_id = emitter.emit(value) if value is not None else 0
        return writer.load(), key_id, value_id


def raw_btf(types: list[_btf.BtfType]) -> bytes:
    """The raw BTF blob libbpf writes for these types (no kernel involved); used to check emit/parse round trips."""
    with BtfWriter("raw") as writer:
        emitter = _Emitter(writer)
        for t in types:
            emitter.emit(t)
        return writer.raw()
