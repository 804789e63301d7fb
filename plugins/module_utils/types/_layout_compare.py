# Copyright: contributors to the cnf.ebpf collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Layout comparison: where an existing type (a pinned map's BTF) and a declared one differ, field by field.

What decides whether a pinned map can be kept: sizes, offsets, kinds, signedness, bitfields, array counts and enum
values must agree; names, typedefs and modifiers need not.
"""

from __future__ import annotations

from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import (
    Array,
    BtfType,
    Enum,
    Int,
    Member,
    Ptr,
    Struct,
    resolve,
    type_name,
)

__all__ = [
    "compare_layout",
]


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
