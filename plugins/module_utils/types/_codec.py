# Copyright: contributors to the cnf.ebpf collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Codecs between map key/value bytes and plain Python data, compiled from the BTF type model.

A codec is compiled once per type: the whole type becomes one ``struct.Struct`` (host byte
order, explicit ``x`` pad bytes) whose unpacked tuple is turned into dicts/lists by a tree of
small closures holding precomputed tuple indices.  Decoding an entry is then one C-level
unpack plus one closure call per field, which keeps dumping 100k entries cheap.

Fields that are not plain host-order numbers (text formats, network byte order, 16-byte
ints, char arrays, bitfields, unions) are read as byte strings or as whole storage units and
converted in Python.  The text formats themselves are `_formats`; the codecs a map's kind
wraps around these (per-CPU values, hex for maps without BTF, LPM trie keys) are `_map_codecs`.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from itertools import chain, starmap
from operator import itemgetter
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import (
    Array,
    BtfType,
    Enum,
    Float,
    Int,
    Member,
    Modifier,
    Ptr,
    Struct,
    Typedef,
    resolve,
    type_name,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._formats import (
    FORMATS,
    WHOLE_WIDTH,
    CodecError,
    hex_to_bytes,
    ip_text,
    ipv4_text,
    ipv6_text,
    mac_text,
    text_to_bytes,
)

__all__ = [
    "Codec",
    "compile_codec",
]

_LITTLE = sys.byteorder == "little"
_INT_ONLY = {int}
_DICT_ONLY = {dict}
_MISSING = object()


# ----------------------------------------------------------------------------------------------
# Scalar conversions shared by the leaves
# ----------------------------------------------------------------------------------------------


def _int_label(size: int, signed: bool) -> str:
    return "%s%d" % ("s" if signed else "u", size * 8)


def _int_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _as_int(val: Any, path: str, lo: int, hi: int, label: str) -> int:
    if val.__class__ is int:  # exact int: bool is an int subclass and means something else
        iv = val
    elif isinstance(val, bool):
        raise CodecError(path, f"expected an integer for {label}, got {val!r}")
    elif isinstance(val, int):
        iv = int(val)
    elif isinstance(val, str):
        try:
            iv = int(val.strip(), 0)
        except ValueError:
            raise CodecError(path, f"{val!r} is not an integer") from None
    elif isinstance(val, float) and val.is_integer():
        iv = int(val)
    else:
        raise CodecError(path, f"expected an integer for {label}, got {val!r}")
    if not lo <= iv <= hi:
        raise CodecError(path, f"{iv} is out of range for {label} ({lo}..{hi})")
    return iv


def _as_bool(val: Any, path: str) -> bool:
    if isinstance(val, bool):
        return val
    if val.__class__ is int and val in (0, 1):
        return bool(val)
    if isinstance(val, str) and val.strip().lower() in ("true", "false", "yes", "no", "0", "1"):
        return val.strip().lower() in ("true", "yes", "1")
    raise CodecError(path, f"expected true or false, got {val!r}")


_NUMERIC = re.compile(r"^\s*[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|\d+)\s*$")


# ----------------------------------------------------------------------------------------------
# Compiled nodes
# ----------------------------------------------------------------------------------------------

Decoder = Callable[[tuple], Any]
Encoder = Callable[[Any, list], None]
Aggregator = Callable[[list], Any]


class _Node:
    """One field's share of the flat struct format.

    ``dec(vals)`` builds the field's value from the unpacked tuple (absolute indices);
    ``enc(obj, out)`` appends ``nvals`` slot values; ``zeros`` is what an absent field appends;
    ``agg`` combines per-CPU values (None: take CPU 0's).  ``flat_names`` is set on anonymous
    struct/union nodes, whose members live in the parent's dict.
    """

    __slots__ = ("agg", "be_code", "dec", "enc", "flat_names", "fmt", "mixed", "nvals", "plain", "zeros")

    def __init__(
        self, fmt: str, zeros: Sequence[Any], dec: Decoder, enc: Encoder, agg: Aggregator | None = None
    ) -> None:
        self.fmt = fmt
        self.zeros = tuple(zeros)
        self.nvals = len(self.zeros)
        self.dec = dec
        self.enc = enc
        self.agg = agg
        self.flat_names: tuple[str, ...] | None = None
        # Fast-path shape: () for a plain host-order integer, the member names (in slot order) for a struct made only
        # of plain integers; None otherwise. Lets Codec pack such values without the per-field closures.
        self.plain: tuple[str, ...] | None = None
        # For a network-order integer leaf, its struct code ('I'...); for a struct of host- and network-order integers
        # only, (host Struct, network Struct, names, value order) so Codec.decode reads it with two C-level unpacks.
        self.be_code: str | None = None
        self.mixed: tuple[Any, ...] | None = None


def _sum_agg(vals: list) -> Any:
    return sum(vals)


_INT_CODES = {
    (1, False): "B",
    (1, True): "b",
    (2, False): "H",
    (2, True): "h",
    (4, False): "I",
    (4, True): "i",
    (8, False): "Q",
    (8, True): "q",
}


class _Compiler:
    def __init__(self, formats: Mapping[str, str] | None, root: str) -> None:
        self.root = root
        self.formats: dict[str, str] = {}
        for path, fmt in (formats or {}).items():
            if not isinstance(path, str) or not (path == root or path.startswith(root + ".")):
                raise CodecError(str(path), f"format paths must start with {root!r}")
            if fmt not in FORMATS:
                raise CodecError(path, f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
            self.formats[path] = fmt
        self.used: set[str] = set()
        self.whole: list[str] = []
        self.seen: set[str] = set()

    def check_unused(self, t: BtfType) -> None:
        for path in self.formats:
            if path in self.used:
                continue
            for w in self.whole:
                if path.startswith(w + "."):
                    raise CodecError(path, f"inside {w}, which is formatted as a whole")
            raise CodecError(path, f"no such field in {type_name(t)}")

    # -- entry point per field -----------------------------------------------------------------
    def node(self, t: BtfType, epath: str, fpath: str, idx: int, inherited: str | None = None) -> _Node:
        self.seen.add(fpath)
        fmt = inherited
        if fpath in self.formats:
            fmt = self.formats[fpath]
            self.used.add(fpath)
        default = None
        probe = t
        while isinstance(probe, (Typedef, Modifier)):
            if isinstance(probe, Typedef) and probe.name in ("__be16", "__be32", "__be64") and default is None:
                default = "be"
            probe = probe.type
        rt = probe
        if isinstance(rt, Struct) and rt.name in ("in_addr", "in6_addr") and default is None:
            default = "ipv4" if rt.name == "in_addr" else "ipv6"
        explicit = fmt is not None
        if fmt is None:
            fmt = default
        if fmt is not None:
            node = self.formatted(rt, epath, fpath, idx, fmt, explicit)
            if node is not None:
                return node
        if isinstance(rt, Int):
            return self.int_leaf(rt, epath, idx)
        if isinstance(rt, Enum):
            return self.enum_leaf(rt, epath, idx)
        if isinstance(rt, Ptr):
            return self.int_leaf(Int("pointer", 8, False), epath, idx)
        if isinstance(rt, Float):
            return self.float_leaf(rt, epath, idx)
        if isinstance(rt, Array):
            return self.array(rt, epath, fpath, idx, None)
        if isinstance(rt, Struct):
            if rt.is_union:
                return self.union(rt, epath, fpath, idx, anon=False)
            return self.struct(rt, epath, fpath, idx, anon=False)
        raise CodecError(epath, f"cannot encode or decode {rt.kind} {type_name(rt)!r}")

    # -- formats ---------------------------------------------------------------------------------
    def formatted(self, rt: BtfType, epath: str, fpath: str, idx: int, fmt: str, explicit: bool) -> _Node | None:
        """Node for ``rt`` under format ``fmt``; None when an array should apply it per element."""
        size = rt.size
        is_int = isinstance(rt, (Int, Enum, Ptr))
        byte_array = isinstance(rt, Array) and _is_byte_int(rt)
        if isinstance(rt, Int) and rt.is_bool:
            is_int = False
        if fmt in WHOLE_WIDTH:
            width = WHOLE_WIDTH[fmt]
            whole_ok = size == width and (
                (isinstance(rt, Int) and not rt.is_bool and fmt != "mac")
                or byte_array
                or (isinstance(rt, Array) and isinstance(resolve(_innermost(rt)), Int))
                or isinstance(rt, Struct)
            )
            if whole_ok:
                self.whole.append(fpath)
                return self.text_leaf(fmt, width, epath, idx)
            if isinstance(rt, Array):
                return self.array(rt, epath, fpath, idx, fmt)
        elif fmt == "hex":
            if is_int:
                return self.hex_int_leaf(resolve(rt), epath, idx)
            if byte_array or isinstance(rt, Struct):
                self.whole.append(fpath)
                return self.hex_bytes_leaf(size, epath, idx)
            if isinstance(rt, Array):
                return self.array(rt, epath, fpath, idx, fmt)
        elif fmt == "be":
            if is_int and size in (1, 2, 4, 8, 16) and not isinstance(rt, Enum):
                signed = isinstance(rt, Int) and rt.signed
                return self.be_leaf(size, signed, epath, idx)
            if isinstance(rt, Array):
                return self.array(rt, epath, fpath, idx, fmt)
        if not explicit:
            return None
        raise CodecError(fpath, f"format {fmt!r} does not apply to {_describe(rt)}")

    def text_leaf(self, fmt: str, width: int, epath: str, idx: int) -> _Node:
        to_text = {"ipv4": ipv4_text, "ipv6": ipv6_text, "ip": ip_text, "mac": mac_text}[fmt]

        def dec(v: tuple) -> str:
            return to_text(v[idx])

        def enc(obj: Any, out: list) -> None:
            out.append(text_to_bytes(fmt, obj, epath, width))

        return _Node("%ds" % width, [bytes(width)], dec, enc)

    def hex_bytes_leaf(self, size: int, epath: str, idx: int) -> _Node:
        def dec(v: tuple) -> str:
            return v[idx].hex()

        def enc(obj: Any, out: list) -> None:
            out.append(hex_to_bytes(obj, epath, size))

        return _Node("%ds" % size, [bytes(size)], dec, enc)

    def hex_int_leaf(self, rt: BtfType, epath: str, idx: int) -> _Node:
        base = (
            self.enum_leaf(rt, epath, idx)
            if isinstance(rt, Enum)
            else self.int_leaf(rt if isinstance(rt, Int) else Int("pointer", 8, False), epath, idx)
        )
        if isinstance(rt, Enum):
            # Numbers are shown in hex; names stay names.
            names = {v: n for n, v in reversed(rt.values)}

            def dec(v: tuple) -> Any:
                x = v[idx]
                return names.get(x) or hex(x)
        else:
            inner = base.dec

            def dec(v: tuple) -> Any:
                return hex(inner(v))

        base_enc = base.enc

        def enc(obj: Any, out: list) -> None:
            if isinstance(obj, str) and not (isinstance(rt, Enum) and obj in dict(rt.values)):
                try:
                    obj = int(obj.strip(), 16)  # '0x1f' and '1f' alike
                except ValueError:
                    raise CodecError(epath, f"{obj!r} is not a hex number") from None
            base_enc(obj, out)

        return _Node(base.fmt, base.zeros, dec, enc)

    def be_leaf(self, size: int, signed: bool, epath: str, idx: int) -> _Node:
        lo, hi = _int_range(size * 8, signed)
        label = _int_label(size, signed)

        def dec(v: tuple) -> int:
            return int.from_bytes(v[idx], "big", signed=signed)

        def enc(obj: Any, out: list) -> None:
            out.append(_as_int(obj, epath, lo, hi, label).to_bytes(size, "big", signed=signed))

        node = _Node("%ds" % size, [bytes(size)], dec, enc)
        node.be_code = _INT_CODES.get((size, signed))
        return node

    # -- scalars -------------------------------------------------------------------------------
    def int_leaf(self, rt: Int, epath: str, idx: int) -> _Node:
        size, signed = rt.size, rt.signed
        if rt.is_bool and size == 1:

            def enc_bool(obj: Any, out: list) -> None:
                out.append(obj if obj is True or obj is False else _as_bool(obj, epath))

            return _Node("?", [False], itemgetter(idx), enc_bool)
        if rt.is_bool:
            code = _INT_CODES.get((size, False))
            if code is None:
                raise CodecError(epath, f"unsupported {size}-byte bool")

            def dec_wide_bool(v: tuple) -> bool:
                return bool(v[idx])

            def enc_wide_bool(obj: Any, out: list) -> None:
                out.append(int(_as_bool(obj, epath)))

            return _Node(code, [0], dec_wide_bool, enc_wide_bool)
        lo, hi = _int_range(size * 8, signed)
        label = _int_label(size, signed)
        if rt.is_char or rt.name == "char":
            label = "char"

            def enc_char(obj: Any, out: list) -> None:
                if isinstance(obj, str) and len(obj) == 1:
                    raw = obj.encode("utf-8")
                    if len(raw) != 1:
                        raise CodecError(epath, f"{obj!r} does not fit in one byte")
                    iv = raw[0]
                    out.append(iv - 256 if signed and iv > 127 else iv)
                    return
                out.append(_as_int(obj, epath, lo, hi, label))

            return _Node(_INT_CODES[(1, signed)], [0], itemgetter(idx), enc_char, None)
        if size == 16:

            def dec128(v: tuple) -> int:
                return int.from_bytes(v[idx], sys.byteorder, signed=signed)

            def enc128(obj: Any, out: list) -> None:
                out.append(_as_int(obj, epath, lo, hi, label).to_bytes(16, sys.byteorder, signed=signed))

            return _Node("16s", [bytes(16)], dec128, enc128, _sum_agg)
        code = _INT_CODES.get((size, signed))
        if code is None:
            raise CodecError(epath, f"unsupported {size}-byte integer {rt.name!r}")

        def enc(obj: Any, out: list) -> None:
            if obj.__class__ is int and lo <= obj <= hi:  # fast path for the common case
                out.append(obj)
            else:
                out.append(_as_int(obj, epath, lo, hi, label))

        node = _Node(code, [0], itemgetter(idx), enc, _sum_agg)
        node.plain = ()
        return node

    def enum_leaf(self, rt: Enum, epath: str, idx: int) -> _Node:
        size, signed = rt.size, rt.signed
        code = _INT_CODES.get((size, signed))
        if code is None:
            raise CodecError(epath, f"unsupported {size}-byte enum {type_name(rt)!r}")
        names = dict((v, n) for n, v in reversed(rt.values))  # first name wins for duplicates
        values = dict(rt.values)
        lo, hi = _int_range(size * 8, signed)
        label = type_name(rt)

        def dec(v: tuple) -> Any:
            x = v[idx]
            return names.get(x, x)

        def enc(obj: Any, out: list) -> None:
            if isinstance(obj, str) and obj in values:
                out.append(values[obj])
            elif isinstance(obj, str) and not _NUMERIC.match(obj):
                raise CodecError(epath, f"{obj!r} is not a value of {label} ({', '.join(values)})")
            else:
                out.append(_as_int(obj, epath, lo, hi, label))

        return _Node(code, [0], dec, enc)

    def float_leaf(self, rt: Float, epath: str, idx: int) -> _Node:
        code = {4: "f", 8: "d"}.get(rt.size)
        if code is None:
            raise CodecError(epath, f"unsupported {rt.size}-byte float")

        def enc(obj: Any, out: list) -> None:
            if isinstance(obj, bool) or not isinstance(obj, (int, float, str)):
                raise CodecError(epath, f"expected a number, got {obj!r}")
            try:
                out.append(float(obj))
            except ValueError:
                raise CodecError(epath, f"{obj!r} is not a number") from None

        return _Node(code, [0.0], itemgetter(idx), enc)

    # -- arrays ----------------------------------------------------------------------------------
    def array(self, rt: Array, epath: str, fpath: str, idx: int, fmt: str | None) -> _Node:
        count = rt.count
        elem = rt.elem
        relem = resolve(elem)
        if (
            fmt is None
            and isinstance(relem, Int)
            and relem.size == 1
            and (relem.is_char or relem.name == "char")
            and not _has_format_default(elem)
        ):
            return self.char_array(count, epath, idx)
        code = None
        if (
            fmt is None
            and isinstance(relem, Int)
            and not _has_format_default(elem)
            and not relem.is_bool
            and not relem.is_char
            and relem.name != "char"
        ):
            code = _INT_CODES.get((relem.size, relem.signed))
        if code is not None and isinstance(relem, Int):
            return self.plain_array(relem, count, code, epath, idx)
        children: list[_Node] = []
        pos = idx
        for i in range(count):
            child = self.node(elem, f"{epath}[{i}]", fpath, pos, fmt)
            children.append(child)
            pos += child.nvals
        decs = [c.dec for c in children]
        encs = [c.enc for c in children]
        zeros = [c.zeros for c in children]

        def dec(v: tuple) -> list:
            return [d(v) for d in decs]

        def enc(obj: Any, out: list) -> None:
            if not isinstance(obj, (list, tuple)):
                raise CodecError(epath, f"expected a list of up to {count} items, got {obj!r}")
            if len(obj) > count:
                raise CodecError(epath, f"{len(obj)} items do not fit in {count}")
            n = len(obj)
            for i in range(count):
                if i < n and obj[i] is not None:
                    encs[i](obj[i], out)
                else:
                    out.extend(zeros[i])

        aggs = [c.agg for c in children]
        agg = None
        if any(a is not None for a in aggs):

            def agg(vals: list) -> list:
                return [a([x[i] for x in vals]) if a is not None else vals[0][i] for i, a in enumerate(aggs)]

        fmt_str = "".join(c.fmt for c in children)
        return _Node(fmt_str, [z for c in children for z in c.zeros], dec, enc, agg)

    def char_array(self, count: int, epath: str, idx: int) -> _Node:
        def dec(v: tuple) -> str:
            return v[idx].split(b"\0", 1)[0].decode("utf-8", "backslashreplace")

        def enc(obj: Any, out: list) -> None:
            if isinstance(obj, str):
                raw = obj.encode("utf-8")
            elif isinstance(obj, (bytes, bytearray)):
                raw = bytes(obj)
            else:
                raise CodecError(epath, f"expected a string of up to {count} bytes, got {obj!r}")
            if len(raw) > count:
                raise CodecError(epath, f"{obj!r} is {len(raw)} bytes, longer than char[{count}]")
            out.append(raw)

        return _Node("%ds" % count, [b""], dec, enc)

    def plain_array(self, relem: Int, count: int, code: str, epath: str, idx: int) -> _Node:
        lo, hi = _int_range(relem.size * 8, relem.signed)
        label = _int_label(relem.size, relem.signed)
        end = idx + count
        zero_tail = [0] * count

        def dec(v: tuple) -> list:
            return list(v[idx:end])

        def enc(obj: Any, out: list) -> None:
            if not isinstance(obj, (list, tuple)):
                raise CodecError(epath, f"expected a list of up to {count} integers, got {obj!r}")
            n = len(obj)
            if n > count:
                raise CodecError(epath, f"{n} items do not fit in {label}[{count}]")
            for i, x in enumerate(obj):
                if x.__class__ is int and lo <= x <= hi:
                    out.append(x)
                else:
                    out.append(_as_int(x, f"{epath}[{i}]", lo, hi, label))
            out.extend(zero_tail[n:])

        def agg(vals: list) -> list:
            return [sum(col) for col in zip(*vals)]

        return _Node("%d%s" % (count, code), zero_tail, dec, enc, agg)

    # -- structs ---------------------------------------------------------------------------------
    def struct(self, rt: Struct, epath: str, fpath: str, idx: int, anon: bool) -> _Node:
        size = rt.size
        # Regions in byte order: ('member', start, end, member) or ('bits', start, end, [members]).
        regions: list[list[Any]] = []
        member_order = {id(m): i for i, m in enumerate(rt.members)}
        for m in rt.members:
            if m.bitfield_size:
                start = m.bit_offset // 8
                end = (m.bit_offset + m.bitfield_size + 7) // 8
                regions.append(["bits", start, end, [m]])
            else:
                start = m.bit_offset // 8
                if m.bit_offset % 8:
                    raise CodecError(_join(epath, m.name), "member is not byte aligned and not a bitfield")
                regions.append(["member", start, start + m.type.size, m])
        regions.sort(key=lambda r: (r[1], r[2]))
        merged: list[list[Any]] = []
        for r in regions:
            if merged and r[1] < merged[-1][2]:
                prev = merged[-1]
                if r[0] == "bits" and prev[0] == "bits":
                    prev[2] = max(prev[2], r[2])
                    prev[3].extend(r[3])
                    continue
                raise CodecError(epath, f"members of {type_name(rt)} overlap at byte {r[1]}")
            merged.append(r)
        if merged and merged[-1][2] > size:
            raise CodecError(epath, f"members of {type_name(rt)} extend past its size {size}")

        fmt_parts: list[str] = []
        zeros: list[Any] = []
        pos = idx
        offset = 0
        # (declaration index, name or None for anonymous, node); sorted back to member order below
        ordered: list[tuple[int, str | None, _Node]] = []
        encoders: list[Callable[[dict, list], None]] = []
        known: list[str] = []
        starts: dict[str, int] = {}
        for kind, start, end, payload in merged:
            if start > offset:
                fmt_parts.append("%dx" % (start - offset))
            offset = end
            if kind == "bits":
                if not _LITTLE:
                    raise CodecError(epath, "bitfields are only supported on little-endian hosts")
                node, bf_items = self.bitfields(payload, start, end, epath, fpath, pos)
                ordered.extend((member_order[id(bm)], bm.name, bn) for bm, bn in bf_items)
                known.extend(bm.name for bm, _unused in bf_items)
                encoders.append(_region_encoder_all(node))
            else:
                m: Member = payload
                rmt = resolve(m.type)
                if not m.name and isinstance(rmt, Struct):
                    if rmt.is_union:
                        node = self.union(rmt, epath, fpath, pos, anon=True)
                    else:
                        node = self.struct(rmt, epath, fpath, pos, anon=True)
                    if not (node.flat_names is not None):
                        raise AssertionError("internal error: expected node.flat_names is not None")
                    known.extend(node.flat_names)
                    ordered.append((member_order[id(m)], None, node))
                    encoders.append(_region_encoder_all(node))
                else:
                    node = self.node(m.type, _join(epath, m.name), _join(fpath, m.name), pos)
                    starts[m.name] = start
                    ordered.append((member_order[id(m)], m.name, node))
                    known.append(m.name)
                    encoders.append(_region_encoder_member(m.name, node))
            fmt_parts.append(node.fmt)
            zeros.extend(node.zeros)
            pos += node.nvals
        if size > offset:
            fmt_parts.append("%dx" % (size - offset))
        # Regions were placed by byte offset; decoded dicts follow declaration order.
        ordered.sort(key=itemgetter(0))
        items = [(name, n) for _i, name, n in ordered]

        known_set = frozenset(known)
        type_label = type_name(rt)
        if any(name is None for name, _unused in items):
            seq = [(name, n.dec) for name, n in items]

            def dec(v: tuple) -> dict:
                d: dict = {}
                for name, f in seq:
                    if name is None:
                        d.update(f(v))
                    else:
                        d[name] = f(v)
                return d
        else:
            pairs = [(name, n.dec) for name, n in items]

            def dec(v: tuple) -> dict:
                return {name: f(v) for name, f in pairs}

        def enc(obj: Any, out: list) -> None:
            if not anon:
                obj = _check_dict(obj, epath, known_set, type_label)
            for e in encoders:
                e(obj, out)

        agg_items = list(items)

        def agg(vals: list) -> dict:
            d: dict = {}
            for name, n in agg_items:
                if name is None:
                    if n.agg is not None:
                        d.update(n.agg(vals))
                    else:
                        first = vals[0]
                        for k in n.flat_names or ():
                            d[k] = first.get(k)
                elif n.agg is not None:
                    d[name] = n.agg([x[name] for x in vals])
                else:
                    d[name] = vals[0][name]
            return d

        node = _Node("".join(fmt_parts), zeros, dec, enc, agg)
        node.flat_names = tuple(known)
        if not anon and all(name is not None and n.plain == () for name, n in items):
            node.plain = tuple(known)  # slot order (by offset), which is what struct.pack takes
        elif not anon and all(name in starts and (n.plain == () or n.be_code) for name, n in items):
            node.mixed = _mixed_layout(items, starts, size)
        return node

    def bitfields(
        self, members: list[Member], start: int, end: int, epath: str, fpath: str, idx: int
    ) -> tuple[_Node, list[tuple[Member, _Node]]]:
        """One storage slot for bitfields sharing bytes [start, end)."""
        nbytes = end - start
        code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(nbytes)
        slot_fmt = code if code else "%ds" % nbytes
        if code:

            def read(v: tuple) -> int:
                return v[idx]

            def write(x: int) -> Any:
                return x
        else:

            def read(v: tuple) -> int:
                return int.from_bytes(v[idx], "little")

            def write(x: int) -> Any:
                return x.to_bytes(nbytes, "little")

        specs = []
        items: list[tuple[Member, _Node]] = []
        for m in members:
            shift = m.bit_offset - start * 8
            width = m.bitfield_size
            mask = (1 << width) - 1
            rt = resolve(m.type)
            mpath, mfpath = _join(epath, m.name), _join(fpath, m.name)
            fmt = self.formats.get(mfpath)
            if fmt is not None:
                self.used.add(mfpath)
                if fmt != "hex":
                    raise CodecError(mfpath, f"format {fmt!r} does not apply to bitfields")
            signed = bool(getattr(rt, "signed", False))
            if isinstance(rt, Int) and rt.is_bool:
                signed = False
            lo, hi = _int_range(width, signed)
            label = f"{width}-bit {'signed' if signed else 'unsigned'} bitfield"
            names: dict[int, str] = {}
            values: dict[str, int] = {}
            if isinstance(rt, Enum):
                names = dict((v, n) for n, v in reversed(rt.values))
                values = dict(rt.values)
            elif not isinstance(rt, Int):
                raise CodecError(mpath, f"bitfield of {_describe(rt)} is not supported")
            is_bool = isinstance(rt, Int) and rt.is_bool
            specs.append((m.name, shift, mask, width, signed, lo, hi, label, values, is_bool, mpath))
            if not m.name:
                continue
            items.append(
                (
                    m,
                    _Node(
                        "",
                        [],
                        _bitfield_decoder(read, shift, mask, width, signed, names, is_bool, fmt == "hex"),
                        _no_enc,
                        None if (names or is_bool or fmt) else _sum_agg,
                    ),
                )
            )

        def enc(obj: Any, out: list) -> None:
            x = 0
            for name, shift, mask, _width, _signed, lo, hi, label, values, is_bool, mpath in specs:
                val = obj.get(name, _MISSING) if name else _MISSING
                if val is _MISSING:
                    continue
                if values and isinstance(val, str) and val in values:
                    iv = values[val]
                    if not lo <= iv <= hi:
                        raise CodecError(mpath, f"{val!r} ({iv}) does not fit in the {label}")
                elif is_bool:
                    iv = int(_as_bool(val, mpath))
                else:
                    iv = _as_int(val, mpath, lo, hi, label)
                x |= (iv & mask) << shift
            out.append(write(x))

        zero = write(0)
        return _Node(slot_fmt, [zero], _no_dec, enc), items

    def union(self, rt: Struct, epath: str, fpath: str, idx: int, anon: bool) -> _Node:
        size = rt.size
        subs: list[tuple[tuple[str, ...], Codec]] = []
        widths: dict[int, int] = {}  # bits each member covers, by its codec's id: the widest is written
        for m in rt.members:
            # Each member is decoded as a one-member struct over the union's bytes, which
            # handles bitfields, nested anonymous members and formats uniformly.
            shell = Struct("", size, [m], False, 1)
            node = self.struct(shell, epath, fpath, 0, anon=True)
            subs.append((node.flat_names or (), Codec(shell, node, epath)))
            widths[id(subs[-1][1])] = m.bitfield_size or resolve(m.type).size * 8
        all_names = tuple(n for names, _unused in subs for n in names)
        known_set = frozenset(all_names)
        type_label = type_name(rt)

        def dec(v: tuple) -> dict:
            blob = v[idx]
            d: dict = {}
            for _names, c in subs:
                d.update(c.decode(blob))
            return d

        def enc(obj: Any, out: list) -> None:
            if not anon:
                obj = _check_dict(obj, epath, known_set, type_label)
            chosen = [(names, c) for names, c in subs if any(obj.get(n) is not None for n in names)]
            if not chosen:
                out.append(bytes(size))
                return
            if len(chosen) > 1:
                # Several members: accepted when they describe the same bytes, as decoded (gathered) output does.
                # The widest member is written; every other member must read back from it as given.
                parts = [({n: obj[n] for n in names if n in obj}, c) for names, c in chosen]
                widest = max(parts, key=lambda part: widths[id(part[1])])
                raw = widest[1].encode(widest[0])
                if any(c.decode(raw.ljust(c.size, b"\0")) != part for part, c in parts):
                    given = ", ".join(n for names, _unused in chosen for n in names if obj.get(n) is not None)
                    raise CodecError(epath, f"{type_label} holds one member at a time; {given} disagree")
                out.append(raw)
                return
            names, c = chosen[0]
            out.append(c.encode({n: obj[n] for n in names if n in obj}))

        node = _Node("%ds" % size, [bytes(size)], dec, enc)
        node.flat_names = all_names
        return node


def _mixed_layout(items: list[tuple[Any, _Node]], starts: dict[str, int], size: int) -> tuple[Any, ...]:
    """Two views of a struct made of host-order and network-order integers: one Struct reading the host-order fields
    (the others skipped as pad bytes) and one reading the network-order ones, plus how to put the values back in
    declaration order. Decoding is then two unpacks and one dict, instead of a closure per field."""
    by_offset = sorted(items, key=lambda item: starts[item[0]])
    views = []
    for big in (False, True):
        parts, pos, names = [], 0, []
        for name, n in by_offset:
            width = struct.calcsize("=" + (n.be_code if n.be_code else n.fmt))
            start = starts[name]
            if start > pos:
                parts.append("%dx" % (start - pos))
            if bool(n.be_code) == big:
                parts.append(n.be_code if big else n.fmt)
                names.append(name)
            else:
                parts.append("%dx" % width)
            pos = start + width
        if size > pos:
            parts.append("%dx" % (size - pos))
        views.append((struct.Struct((">" if big else "=") + "".join(parts)), names))
    (host, host_names), (net, net_names) = views
    order = host_names + net_names
    names = tuple(name for name, _n in items)
    return host, net, names, itemgetter(*[order.index(name) for name in names])


def _no_dec(v: tuple) -> None:
    return None


def _no_enc(obj: Any, out: list) -> None:
    raise AssertionError("bitfields are encoded by their storage slot")


def _bitfield_decoder(
    read: Callable[[tuple], int],
    shift: int,
    mask: int,
    width: int,
    signed: bool,
    names: dict[int, str],
    is_bool: bool,
    as_hex: bool,
) -> Decoder:
    sign = 1 << (width - 1)
    full = 1 << width

    def dec(v: tuple) -> Any:
        x = (read(v) >> shift) & mask
        if signed and x & sign:
            x -= full
        if is_bool:
            return bool(x)
        if names:
            return names.get(x, hex(x) if as_hex else x)
        return hex(x) if as_hex else x

    return dec


def _region_encoder_member(name: str, node: _Node) -> Callable[[dict, list], None]:
    enc, zeros = node.enc, node.zeros

    def region(obj: dict, out: list) -> None:
        val = obj.get(name, _MISSING)
        if val is _MISSING:
            out.extend(zeros)
        else:
            enc(val, out)  # an explicit null is a wrong type, not "zero" or "keep": the leaf says so

    return region


def _region_encoder_all(node: _Node) -> Callable[[dict, list], None]:
    # Anonymous members and bitfield groups read their fields from the parent's dict.
    return node.enc


def _check_dict(obj: Any, epath: str, known: frozenset, type_label: str) -> dict:
    if not isinstance(obj, Mapping):
        raise CodecError(epath, f"expected a mapping for {type_label}, got {obj!r}")
    if "" in obj:
        # bpftool prints anonymous struct/union members under an empty key; accept that shape.
        inner = obj[""]
        obj = {k: v for k, v in obj.items() if k != ""}
        if isinstance(inner, Mapping):
            obj.update(inner)
    unknown = [k for k in obj if k not in known]
    if unknown:
        raise CodecError(
            _join(epath, str(unknown[0])) if len(unknown) == 1 else epath,
            f"unknown field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(k) for k in unknown)} in {type_label} "
            f"(fields: {', '.join(sorted(known))})",
        )
    return obj  # type: ignore[return-value]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if name else path


def _innermost(t: Array) -> BtfType:
    e: BtfType = t
    while isinstance(resolve(e), Array):
        e = resolve(e).elem  # type: ignore[attr-defined]
    return e


def _is_byte_int(t: Array) -> bool:
    e = resolve(_innermost(t))
    return isinstance(e, Int) and e.size == 1 and not e.is_bool


def _has_format_default(t: BtfType) -> bool:
    while isinstance(t, (Typedef, Modifier)):
        if isinstance(t, Typedef) and t.name in ("__be16", "__be32", "__be64"):
            return True
        t = t.type
    return isinstance(t, Struct) and t.name in ("in_addr", "in6_addr")


def _describe(t: BtfType) -> str:
    rt = resolve(t)
    if isinstance(rt, Int):
        if rt.is_bool:
            return "bool"
        if rt.is_char or rt.name == "char":
            return "char"
        return _int_label(rt.size, rt.signed)
    if isinstance(rt, Array):
        return (
            f"{_describe(rt.elem)}[{rt.count}]"
            if not isinstance(resolve(rt.elem), Array)
            else _describe(rt.elem).replace("[", f"[{rt.count}][", 1)
        )
    return type_name(rt)


# ----------------------------------------------------------------------------------------------
# Public codecs
# ----------------------------------------------------------------------------------------------


class Codec:
    """Encoder/decoder for one type; build with compile_codec()."""

    def __init__(self, t: BtfType, node: _Node, root: str) -> None:
        self.type = t
        self.root = root
        self._struct = struct.Struct("=" + node.fmt)
        self.size = self._struct.size
        if self.size != t.size:
            raise CodecError(root, f"internal error: compiled {self.size} bytes for a {t.size}-byte {type_name(t)}")
        self._node = node
        self._pack = self._struct.pack
        self._unpack_from = self._struct.unpack_from
        self._enc = node.enc
        self._dec = node.dec
        self._plain = node.plain
        self._mixed = node.mixed
        # itemgetter of one name returns a bare value, not a 1-tuple: wrap it so both shapes unpack the same way.
        if node.plain and len(node.plain) > 1:
            self._plain_get = itemgetter(*node.plain)
        elif node.plain:
            only = node.plain[0]
            self._plain_get = lambda obj: (obj[only],)

    def encode(self, obj: Any) -> bytes:
        plain = self._plain
        if plain is not None:
            # Fast path for plain integers and structs of them: exact ints packed in one C call. bools, strings,
            # None, unknown fields and out-of-range numbers take the checked path below, which explains them.
            if not plain:
                if obj.__class__ is int:
                    try:
                        return self._pack(obj)
                    except struct.error:
                        pass
            elif obj.__class__ is dict and len(obj) == len(plain):
                try:
                    vals = self._plain_get(obj)  # all fields given (the same count and no KeyError)
                except KeyError:
                    vals = ()
                if set(map(type, vals)) == _INT_ONLY:
                    try:
                        return self._pack(*vals)
                    except struct.error:
                        pass
        out: list = []
        self._enc(obj, out)
        try:
            return self._pack(*out)
        except struct.error as exc:  # a converter let through something struct rejects
            raise CodecError(self.root, f"cannot encode {obj!r}: {exc}") from None

    def encode_many(self, objs: list) -> list[bytes]:
        """encode() of every object. Lists of plain integers or complete dicts of them (the shape of large rule sets)
        are checked and packed with C-level map() calls, not a Python loop; anything else, or any value the fast
        check does not accept, goes through encode() one by one, which raises the precise error."""
        plain = self._plain
        if plain is not None and objs:
            try:
                if not plain:
                    if set(map(type, objs)) == _INT_ONLY:
                        return list(map(self._pack, objs))
                elif set(map(type, objs)) == _DICT_ONLY and set(map(len, objs)) == {len(plain)}:
                    rows = list(map(self._plain_get, objs))
                    if set(map(type, chain.from_iterable(rows))) == _INT_ONLY:
                        return list(starmap(self._pack, rows))
            except (KeyError, struct.error):
                pass
        return list(map(self.encode, objs))

    def encode_columns(self, columns: Mapping[tuple[str, ...], Sequence[Any]]) -> list[bytes] | None:
        """Pack whole columns instead of one dict per value: `columns` maps each field's path (``("src_port",)``;
        ``()`` for a plain integer type) to the list of its values, all lists of one length. Only for plain integers
        and structs of them, named field for field; None when the layout or the names differ, or any value is not an
        int that fits (encode() of the same values as dicts then says which and why)."""
        plain = self._plain
        if plain is None:
            return None
        paths = [(name,) for name in plain] if plain else [()]
        if len(columns) != len(paths) or not all(map(columns.__contains__, paths)):
            return None
        ordered = [columns[path] for path in paths]
        if set(map(type, chain.from_iterable(ordered))) != _INT_ONLY:  # bools pack as ints: refuse them here too
            return None
        try:
            return list(map(self._pack, *ordered))  # several iterables: no tuple per value
        except struct.error:
            return None

    def decode_many(self, blobs: list[bytes]) -> list[Any]:
        """decode() of many values (each at least `size` bytes): the fast layouts without a method call per value."""
        mixed, plain = self._mixed, self._plain
        try:
            if mixed is not None and len(mixed[2]) > 1:
                host, net, names, reorder = mixed
                hu, nu = host.unpack_from, net.unpack_from
                return [dict(zip(names, reorder(hu(b) + nu(b)))) for b in blobs]
            if plain:
                unpack = self._unpack_from
                return [dict(zip(plain, unpack(b))) for b in blobs]
        except struct.error:
            pass  # a short value: the one-by-one path names the problem
        return list(map(self.decode, blobs))

    def decode(self, data: bytes | bytearray | memoryview, offset: int = 0) -> Any:
        mixed = self._mixed
        try:
            if mixed is not None:
                host, net, names, reorder = mixed
                both = host.unpack_from(data, offset) + net.unpack_from(data, offset)
                return dict(zip(names, reorder(both))) if len(names) > 1 else {names[0]: both[0]}
            vals = self._unpack_from(data, offset)
        except struct.error:
            raise CodecError(self.root, f"expected {self.size} bytes, got {len(data) - offset}") from None
        plain = self._plain
        if plain:
            return dict(zip(plain, vals))
        return self._dec(vals)

    def aggregate(self, values: list) -> Any:
        """Combine decoded per-CPU values: plain integers are summed, everything else is CPU 0's."""
        if not values:
            raise CodecError(self.root, "nothing to aggregate")
        agg = self._node.agg
        return agg(values) if agg is not None else values[0]


def compile_codec(t: BtfType, formats: Mapping[str, str] | None = None, root: str = "value") -> Codec:
    """Compile a codec for ``t``.

    ``formats`` maps dotted field paths rooted at ``root`` (``key``, ``value.inner.addr``;
    arrays are transparent, so ``value.hosts.ip`` names the ``ip`` of every element) to one of
    ipv4, ipv6, ip, mac, hex, be.  Unknown formats, paths that name no field and formats that do not
    fit their field raise CodecError at compile time.
    """
    comp = _Compiler(formats, root)
    node = comp.node(t, root, root, 0)
    comp.check_unused(t)
    return Codec(t, node, root)
