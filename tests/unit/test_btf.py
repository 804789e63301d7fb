"""BTF model, raw parser, schema layout, layout comparison and to_schema."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import (
    Array,
    BtfError,
    Enum,
    Int,
    Ptr,
    Struct,
    Typedef,
    alignof,
    resolve,
    type_name,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf_parse import Btf
from ansible_collections.cnf.ebpf.plugins.module_utils.types._layout_compare import compare_layout
from ansible_collections.cnf.ebpf.plugins.module_utils.types._schema import to_schema, type_from_schema
from tests.schemas import FLOW_KEY_HOST as FLOW_KEY


def offsets(t):
    return {m.name: (m.bit_offset, m.bitfield_size) for m in resolve(t).members}


# ---------------------------------------------------------------------------------------------- schema scalars


@pytest.mark.parametrize(
    "name,size,signed",
    [
        ("u8", 1, False),
        ("u16", 2, False),
        ("u32", 4, False),
        ("u64", 8, False),
        ("u128", 16, False),
        ("s8", 1, True),
        ("s16", 2, True),
        ("s32", 4, True),
        ("s64", 8, True),
        ("s128", 16, True),
        ("__u32", 4, False),
        ("uint32_t", 4, False),
        ("int32_t", 4, True),
        ("__s32", 4, True),
        ("int", 4, True),
        ("unsigned int", 4, False),
        ("long", 8, True),
        ("char", 1, True),
        ("bool", 1, False),
        ("unsigned  long long", 8, False),
    ],
)
def test_scalar_names(name, size, signed):
    t = type_from_schema(name)
    r = resolve(t)
    assert isinstance(r, Int)
    assert (r.size, r.signed) == (size, signed)
    assert t.size == size


def test_char_and_bool_flags():
    assert resolve(type_from_schema("char")).is_char
    assert resolve(type_from_schema("bool")).is_bool


@pytest.mark.parametrize("name,size", [("__be16", 2), ("__be32", 4), ("__be64", 8)])
def test_be_typedefs(name, size):
    t = type_from_schema(name)
    assert isinstance(t, Typedef) and t.name == name
    assert t.size == size and not resolve(t).signed
    assert type_name(t) == name


def test_arrays_and_multidim():
    t = type_from_schema("u32[2][3]")
    assert isinstance(t, Array) and t.count == 2 and t.elem.count == 3
    assert t.size == 24
    assert type_name(t) == "unsigned int[2][3]"
    assert type_name(type_from_schema("char[16]")) == "char[16]"
    t = type_from_schema({"type": "u8", "count": 6})
    assert isinstance(t, Array) and t.size == 6
    t = type_from_schema({"type": {"fields": [{"name": "a", "type": "u16"}]}, "count": 3})
    assert t.size == 6


def test_u128_aligns_to_16_on_bpf():
    t = type_from_schema({"fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u128"}]})
    assert offsets(t)["b"] == (128, 0)
    assert t.size == 32 and alignof(t) == 16


# ---------------------------------------------------------------------------------------------- struct layout


def test_natural_layout_and_tail_padding():
    t = type_from_schema(
        {
            "name": "v",
            "fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u64"}, {"name": "c", "type": "u16"}],
        }
    )
    assert offsets(t) == {"a": (0, 0), "b": (64, 0), "c": (128, 0)}
    assert t.size == 24
    assert type_name(t) == "struct v"


def test_packed_flow_key_is_13_bytes():
    t = type_from_schema(FLOW_KEY, "key")
    assert t.size == 13 and alignof(t) == 1
    assert offsets(t)["protocol"] == (96, 0)


def test_unpacked_flow_key_is_16_bytes():
    spec = dict(FLOW_KEY, packed=False)
    assert type_from_schema(spec).size == 16


def test_bitfields_sysv_rules():
    t = type_from_schema(
        {
            "fields": [
                {"name": "a", "type": "u32", "bits": 3},
                {"name": "b", "type": "u64", "bits": 40},
                {"name": "c", "type": "u8", "bits": 7},
                {"name": "d", "type": "u16", "bits": 10},
            ]
        }
    )
    assert offsets(t) == {"a": (0, 3), "b": (3, 40), "c": (48, 7), "d": (64, 10)}
    assert t.size == 16


def test_packed_bitfields_are_contiguous():
    t = type_from_schema(
        {
            "packed": True,
            "fields": [
                {"name": "a", "type": "char"},
                {"name": "b", "type": "u32", "bits": 3},
                {"name": "c", "type": "u32", "bits": 30},
            ],
        }
    )
    assert offsets(t) == {"a": (0, 0), "b": (8, 3), "c": (11, 30)}
    assert t.size == 6


def test_zero_width_and_unnamed_bitfields():
    t = type_from_schema(
        {"fields": [{"name": "a", "type": "char"}, {"type": "u32", "bits": 0}, {"name": "b", "type": "char"}]}
    )
    assert offsets(t)["b"] == (32, 0) and t.size == 5
    t = type_from_schema(
        {"fields": [{"name": "a", "type": "char"}, {"type": "u64", "bits": 3}, {"name": "b", "type": "char"}]}
    )
    assert offsets(t)["b"] == (16, 0) and t.size == 3


def test_field_align_and_packed_with_align():
    t = type_from_schema(
        {
            "fields": [
                {"name": "a", "type": "char"},
                {"name": "b", "type": "s32", "align": 16},
                {"name": "c", "type": "char"},
            ]
        }
    )
    assert offsets(t)["b"] == (128, 0) and t.size == 32
    t = type_from_schema(
        {
            "packed": True,
            "fields": [
                {"name": "a", "type": "char"},
                {"name": "b", "type": "s32", "align": 8},
                {"name": "c", "type": "char"},
            ],
        }
    )
    assert offsets(t)["b"] == (64, 0) and t.size == 16


def test_union_layout():
    t = type_from_schema({"kind": "union", "fields": [{"name": "a", "type": "u32"}, {"name": "b", "type": "char[6]"}]})
    assert isinstance(t, Struct) and t.is_union and t.kind == "union"
    assert t.size == 8
    assert all(m.bit_offset == 0 for m in t.members)


def test_anonymous_members_and_nested():
    t = type_from_schema(
        {
            "name": "outer",
            "fields": [
                {"name": "x", "type": "s32"},
                {"type": {"kind": "union", "fields": [{"name": "a", "type": "s32"}, {"name": "b", "type": "char[8]"}]}},
                {"name": "inner", "type": {"name": "in", "fields": [{"name": "c", "type": "s16"}]}},
            ],
        }
    )
    assert t.size == 16
    assert [m.name for m in t.members] == ["x", "", "inner"]
    assert t.members[1].bit_offset == 32 and t.members[2].bit_offset == 96


def test_enum_schema():
    t = type_from_schema({"kind": "enum", "name": "action", "values": {"PASS": 0, "DROP": 1}})
    assert isinstance(t, Enum) and t.size == 4 and not t.signed and t.values == [("PASS", 0), ("DROP", 1)]
    assert type_name(t) == "enum action"
    t = type_from_schema(
        {
            "kind": "enum",
            "size": 8,
            "signed": True,
            "values": [{"name": "A", "value": -1}, {"name": "B", "value": 1 << 40}],
        }
    )
    assert t.size == 8 and t.values == [("A", -1), ("B", 1 << 40)]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("u33", "value: unknown type 'u33'"),
        (
            {"fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u16"}, {"name": "c", "type": "u33"}]},
            "value.fields[2].type: unknown type 'u33'",
        ),
        (
            {"fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u32", "bits": 40}]},
            "value.fields[1].bits: 40 exceeds the 32 bits of u32",
        ),
        (
            {"fields": [{"name": "a", "type": "u8"}, {"name": "a", "type": "u16"}]},
            "value.fields[1].name: duplicate field name 'a'",
        ),
        (
            {"fields": [{"name": "a", "type": "u8"}, {"type": {"fields": [{"name": "a", "type": "u8"}]}}]},
            "value.fields[1].name: duplicate field name 'a'",
        ),
        ({"fields": [{"name": "a", "type": "u8", "colour": "red"}]}, "value.fields[0]: unknown key 'colour'"),
        (
            {
                "name": "x",
                "fields": [],
            },
            "value.fields: expected a non-empty list",
        ),
        ({"kind": "enum", "size": 3, "values": {"A": 1}}, "value.size: enum size must be 1, 2, 4 or 8"),
        ({"kind": "enum", "size": 1, "values": {"A": 256}}, "value.values.A: 256 is out of range"),
        ({"kind": "enum", "values": {"A": -1}}, "value.values.A: -1 is out of range"),
        ({"kind": "enum", "values": {}}, "value.values: an enum needs at least one value"),
        (
            {"kind": "struct", "packed": "yes", "fields": [{"name": "a", "type": "u8"}]},
            "value.packed: expected true or false",
        ),
        ({"fields": [{"name": "a", "type": "u8[2]", "bits": 3}]}, "value.fields[0].bits: bitfields need an integer"),
        ({"fields": [{"name": "a", "type": "u8", "align": 3}]}, "value.fields[0].align: must be a power of two"),
        ({"fields": [{"type": "u8"}]}, "value.fields[0].name: required"),
        ({"fields": [{"name": "1x", "type": "u8"}]}, "value.fields[0].name: '1x' is not a C identifier"),
        ({"type": "u8", "count": 0}, "value.count: array count must be positive"),
        ("u8[0]", "value: array count must be positive"),
        ({"kind": "map"}, "value.kind: expected struct, union or enum, got 'map'"),
        (42, "value: expected a type name or a mapping"),
        ({"fields": [{"name": "f", "type": "bool", "bits": 2}]}, "value.fields[0].bits: 2 exceeds the 1 bits of bool"),
    ],
)
def test_schema_errors_name_the_path(spec, message):
    with pytest.raises(BtfError) as exc:
        type_from_schema(spec)
    assert str(exc.value).startswith(message), str(exc.value)


def test_schema_error_uses_given_root():
    with pytest.raises(BtfError, match=r"^key: unknown type 'nope'"):
        type_from_schema("nope", path="key")


# ---------------------------------------------------------------------------------------------- compare_layout


def test_compare_same_layout_through_typedefs():
    plain = type_from_schema({"fields": [{"name": "a", "type": "u32"}]})
    via_typedef = Struct("x", 4, [])
    via_typedef.members.append(type(plain.members[0])("a", Typedef("__u32", Int("unsigned int", 4)), 0))
    assert compare_layout(via_typedef, plain) == []


def test_compare_reports_fields():
    have = type_from_schema(
        {"fields": [{"name": "pkts", "type": "u64"}, {"name": "bytes", "type": "u32"}, {"name": "old", "type": "u8"}]}
    )
    want = type_from_schema(
        {
            "fields": [
                {"name": "pkts", "type": "u64"},
                {"name": "flag", "type": "u8"},
                {"name": "bytes", "type": "s64"},
                {"name": "last_seen", "type": "u64"},
            ]
        }
    )
    diffs = compare_layout(have, want)
    assert "value: size 16 != 32" in diffs
    assert "value.bytes: offset 8 != 16" in diffs
    assert "value.bytes: size 4 != 8" in diffs
    assert "value.last_seen: missing in existing map" in diffs
    assert "value.flag: missing in existing map" in diffs
    assert "value.old: not declared" in diffs


def test_compare_signedness_counts_enums_kinds():
    assert compare_layout(type_from_schema("u32"), type_from_schema("s32"), "key") == [
        "key: signedness unsigned != signed"
    ]
    assert compare_layout(type_from_schema("u8[4]"), type_from_schema("u8[6]")) == [
        "value: size 4 != 6",
        "value: array count 4 != 6",
    ]
    e1 = type_from_schema({"kind": "enum", "values": {"A": 0, "B": 1}})
    e2 = type_from_schema({"kind": "enum", "values": {"A": 0, "B": 2, "C": 3}})
    assert compare_layout(e1, e2) == ["value: enum value B = 1 != 2", "value: enum value C missing in existing map"]
    assert compare_layout(type_from_schema("u32"), e1) == ["value: kind int != enum (u32 != enum (anon))"]
    s = type_from_schema({"fields": [{"name": "a", "type": "u32"}]})
    u = type_from_schema({"kind": "union", "fields": [{"name": "a", "type": "u32"}]})
    assert compare_layout(s, u) == ["value: kind struct != union (struct (anon) != union (anon))"]


def test_compare_bitfields_and_anonymous_flattening():
    a = type_from_schema({"fields": [{"name": "x", "type": "u32", "bits": 3}, {"name": "y", "type": "u32", "bits": 4}]})
    b = type_from_schema({"fields": [{"name": "x", "type": "u32", "bits": 4}, {"name": "y", "type": "u32", "bits": 4}]})
    assert compare_layout(a, b) == ["value.x: bitfield width 3 != 4", "value.y: offset 3 bits != 4 bits"]
    nested = type_from_schema(
        {"fields": [{"name": "a", "type": "u32"}, {"type": {"fields": [{"name": "b", "type": "u32"}]}}]}
    )
    flat = type_from_schema({"fields": [{"name": "a", "type": "u32"}, {"name": "b", "type": "u32"}]})
    assert compare_layout(nested, flat) == []


def test_compare_nested_paths():
    have = type_from_schema({"fields": [{"name": "inner", "type": {"fields": [{"name": "addr", "type": "u32"}]}}]})
    want = type_from_schema({"fields": [{"name": "inner", "type": {"fields": [{"name": "addr", "type": "s32"}]}}]})
    assert compare_layout(have, want) == ["value.inner.addr: signedness unsigned != signed"]


# ---------------------------------------------------------------------------------------------- to_schema


@pytest.mark.parametrize(
    "spec",
    [
        "u32",
        "char[16]",
        "u32[2][3]",
        "__be16",
        "bool",
        "s128",
        FLOW_KEY,
        {"kind": "enum", "name": "e", "size": 2, "signed": True, "values": {"A": -1, "B": 7}},
        {"name": "x", "fields": [{"name": "a", "type": "char"}, {"name": "b", "type": "s32", "align": 16}]},
        {
            "fields": [
                {"name": "a", "type": "u8"},
                {
                    "type": {
                        "kind": "union",
                        "fields": [{"name": "b", "type": "u16"}, {"name": "c", "type": "u32", "bits": 5}],
                    }
                },
            ]
        },
        {"fields": [{"name": "a", "type": "char"}, {"type": "u64", "bits": 0}, {"name": "b", "type": "char"}]},
        {"kind": "union", "fields": [{"name": "a", "type": "char"}, {"type": "u64", "bits": 33}]},
        {"fields": [{"name": "arr", "type": {"type": {"fields": [{"name": "q", "type": "u16"}]}, "count": 3}}]},
    ],
)
def test_to_schema_round_trips_layout(spec):
    t = type_from_schema(spec)
    again = type_from_schema(to_schema(t))
    assert again.size == t.size
    assert compare_layout(t, again) == []


def test_to_schema_shapes():
    assert to_schema(type_from_schema("uint32_t")) == "u32"
    assert to_schema(type_from_schema("u8[2][3]")) == "u8[2][3]"
    assert to_schema(type_from_schema(FLOW_KEY))["packed"] is True
    assert to_schema(Ptr(Int("int", 4, True))) == "u64"


# ---------------------------------------------------------------------------------------------- raw BTF parser


class BtfWriter:
    """Minimal raw BTF emitter for parser tests (little or big endian)."""

    def __init__(self, bo: str = "<") -> None:
        self.bo = bo
        self.types = b""
        self.strings = b"\0"

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def t(self, name: str, kind: int, vlen: int, size_or_type: int, extra: bytes = b"", kflag: int = 0) -> None:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack(self.bo + "III", self.s(name), info, size_or_type) + extra

    def u32(self, *vals: int) -> bytes:
        return struct.pack(self.bo + "%dI" % len(vals), *vals)

    def raw(self) -> bytes:
        ntypes, nstrings = len(self.types), len(self.strings)
        hdr = struct.pack(self.bo + "HBBIIIII", 0xEB9F, 1, 0, 24, 0, ntypes, ntypes, nstrings)
        return hdr + self.types + self.strings


def sample_btf(bo: str = "<") -> bytes:
    w = BtfWriter(bo)
    w.t("unsigned int", 1, 0, 4, w.u32(32))  # 1
    w.t("char", 1, 0, 1, w.u32((1 << 24) | 8))  # 2 signed char
    w.t("", 3, 0, 0, w.u32(2, 1, 16))  # 3 char[16]
    members = w.u32(w.s("a"), 1, 0) + w.u32(w.s("flags"), 1, (3 << 24) | 32) + w.u32(w.s("name"), 3, 64)
    w.t("rec", 4, 3, 24, members, kflag=1)  # 4 struct rec
    w.t("rec_t", 8, 0, 4)  # 5 typedef
    w.t("", 2, 0, 4)  # 6 ptr -> rec
    w.t("", 10, 0, 5)  # 7 const rec_t
    w.t("action", 6, 2, 4, w.u32(w.s("PASS"), 0, w.s("DROP"), 0xFFFFFFFF), kflag=1)  # 8 signed enum
    w.t("big", 19, 1, 8, w.u32(w.s("HUGE"), 0x1, 0x2))  # 9 enum64
    w.t("tag", 17, 0, 4, struct.pack(bo + "i", -1))  # 10 decl_tag
    w.t("user", 18, 0, 6)  # 11 type_tag
    w.t("double", 16, 0, 8)  # 12 float
    w.t("u", 5, 1, 4, w.u32(w.s("x"), 1, 0))  # 13 union
    w.t("fwd", 7, 0, 0, kflag=1)  # 14 fwd union
    w.t("", 13, 1, 1, w.u32(w.s("arg"), 6))  # 15 func_proto
    w.t("fn", 12, 1, 15)  # 16 func
    w.t("gv", 14, 0, 4, w.u32(1))  # 17 var
    w.t(".data", 15, 1, 0, w.u32(17, 0, 0))  # 18 datasec, clang-style sizes 0
    w.t("", 9, 0, 1)  # 19 volatile
    w.t("", 11, 0, 6)  # 20 restrict
    return w.raw()


@pytest.mark.parametrize("bo", ["<", ">"])
def test_parse_all_kinds(bo):
    btf = Btf.from_raw(sample_btf(bo))
    assert btf.byteorder == ("little" if bo == "<" else "big")
    assert len(btf) == 21
    assert btf.type(0).kind == "void"
    rec = btf.find("rec", "struct")
    assert rec is btf.type(4) and rec.size == 24
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in rec.members] == [
        ("a", 0, 0),
        ("flags", 32, 3),
        ("name", 64, 0),
    ]
    assert type_name(rec.members[2].type) == "char[16]"
    assert btf.type(5).kind == "typedef" and resolve(btf.type(7)) is rec
    assert btf.type(6).target is rec and btf.type(6).size == 8
    assert type_name(btf.type(6)) == "struct rec *"
    action = btf.type(8)
    assert action.signed and action.values == [("PASS", 0), ("DROP", -1)]
    assert btf.type(9).values == [("HUGE", (2 << 32) | 1)] and btf.type(9).size == 8
    assert btf.type(10).kind == "decl_tag" and btf.type(10).component_idx == -1
    assert btf.type(11).kind == "type_tag" and btf.type(11).name == "user"
    assert btf.type(12).kind == "float" and btf.type(12).size == 8
    assert btf.type(13).is_union and btf.type(14).kind == "fwd" and btf.type(14).is_union
    assert btf.type(15).params[0][0] == "arg" and btf.type(16).type is btf.type(15)
    assert btf.type(17).kind == "var" and btf.type(18).vars[0][0] is btf.type(17)
    assert btf.type(19).kind == "volatile" and btf.type(20).kind == "restrict"
    assert btf.find("nope") is None and btf.find_id("action") == 8


def test_parse_legacy_int_bitfield_encoding():
    w = BtfWriter()
    w.t("unsigned int", 1, 0, 4, w.u32(32))
    w.t("unsigned int", 1, 0, 4, w.u32((2 << 16) | 5))  # bits=5 at int offset 2
    w.t("s", 4, 1, 4, w.u32(w.s("f"), 2, 8))
    s = Btf.from_raw(w.raw()).type(3)
    assert (s.members[0].bit_offset, s.members[0].bitfield_size) == (10, 5)


def test_split_btf_continues_ids_and_strings():
    base = Btf.from_raw(sample_btf())
    w = BtfWriter()
    w.strings = b""  # split strings start after the base's
    base_len = len(base._strings)
    name_off = base_len + len(w.strings)
    w.strings += b"child\0"
    w.types += struct.pack("<III", name_off, (8 << 24), 4)  # typedef child -> rec (base id 4)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(w.types), len(w.types), len(w.strings))
    split = Btf.from_raw(hdr + w.types + w.strings, base=base)
    assert len(split) == 22 and split.type(21).name == "child"
    assert resolve(split.type(21)) is base.type(4)
    assert split.find("rec") is base.type(4)
    # Base names resolve through the split BTF too.
    w2 = struct.pack("<III", base._strings.index(b"rec\0"), (8 << 24), 1)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 12, 12, 0)
    assert Btf.from_raw(hdr + w2, base=base).type(21).name == "rec"


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda raw: b"\x00\x00" + raw[2:], "bad magic"),
        (lambda raw: raw[:10], "too short"),
        (lambda raw: raw[:-40], "past the end"),
    ],
)
def test_parse_rejects_malformed(mutate, message):
    with pytest.raises(BtfError, match=message):
        Btf.from_raw(mutate(sample_btf()))


def test_parse_rejects_bad_refs_and_cycles():
    w = BtfWriter()
    w.t("a", 8, 0, 99)
    with pytest.raises(BtfError, match="type id 99 out of range"):
        Btf.from_raw(w.raw())
    w = BtfWriter()
    w.t("a", 8, 0, 2)
    w.t("b", 8, 0, 1)
    with pytest.raises(BtfError, match="refers to itself"):
        Btf.from_raw(w.raw())
    w = BtfWriter()
    w.t("x", 20, 0, 0)
    with pytest.raises(BtfError, match="unknown kind 20"):
        Btf.from_raw(w.raw())


def test_pointer_cycles_are_fine():
    w = BtfWriter()
    w.t("node", 4, 1, 8, w.u32(w.s("next"), 2, 0))
    w.t("", 2, 0, 1)
    btf = Btf.from_raw(w.raw())
    node = btf.type(1)
    assert compare_layout(node, node) == []
    assert type_name(node.members[0].type) == "struct node *"
    assert to_schema(node) == {"name": "node", "kind": "struct", "fields": [{"name": "next", "type": "u64"}]}
