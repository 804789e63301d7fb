# Copyright: contributors to the cnf.ebpf collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Type schemas (the YAML a user declares a key or value with) and the type model, both directions.

``type_from_schema`` lays a schema out; ``to_schema`` gives the schema that lays out to an existing type, which it
finds by running the same layout on candidate field lists: the two directions share the layout code and its field
specs, so they live together.

Layout rules follow clang for ``-target bpf`` (checked against clang 14 in
tests/unit/test_layout_clang.py): integers, enums and floats are aligned to their size
(``__int128`` to 16), pointers are 8 bytes, bitfields use the SysV rules, ``packed`` sets
member alignment to 1 unless a member carries an explicit ``align``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import (
    Array,
    BtfError,
    BtfType,
    Enum,
    Float,
    Int,
    Member,
    Modifier,
    Ptr,
    Struct,
    Typedef,
    alignof,
    resolve,
    type_name,
)

__all__ = [
    "SCALAR_NAMES",
    "int_type",
    "to_schema",
    "type_from_schema",
]


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
