# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Types layer: turn model types (from `_btf`) into real kernel BTF through libbpf's BTF writer.

Maps created by the collection carry these types (btf_key_type_id / btf_value_type_id), so `bpftool map dump`
pretty-prints them and later runs can verify the layout of a pinned map against what a playbook declares.
"""

from __future__ import annotations

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BtfWriter, Fd
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf


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
