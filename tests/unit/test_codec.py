"""Codecs: scalars, structs, unions, bitfields, formats, LPM keys, per-CPU values, hexdump."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import Int, Member, Struct, Typedef
from ansible_collections.cnf.ebpf.plugins.module_utils.types._codec import compile_codec
from ansible_collections.cnf.ebpf.plugins.module_utils.types._formats import CodecError
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_codecs import (
    PerCpuCodec,
    compile_lpm_codec,
    hexdump_codec,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._schema import type_from_schema
from tests.schemas import FLOW_KEY_HOST as FLOW_KEY

FLOW_FORMATS = {"key.src_ip": "ipv4", "key.dst_ip": "ipv4", "key.src_port": "be", "key.dst_port": "be"}


def codec(spec, formats=None, root="value"):
    return compile_codec(type_from_schema(spec, root), formats, root)


def error(c, obj):
    with pytest.raises(CodecError) as exc:
        c.encode(obj)
    return str(exc.value)


# ---------------------------------------------------------------------------------------------- scalars


@pytest.mark.parametrize(
    "name,value,raw",
    [
        ("u8", 255, b"\xff"),
        ("s8", -1, b"\xff"),
        ("u16", 0x1234, b"\x34\x12"),
        ("s32", -2, b"\xfe\xff\xff\xff"),
        ("u64", 1 << 63, (1 << 63).to_bytes(8, "little")),
        ("u128", (1 << 127) + 5, ((1 << 127) + 5).to_bytes(16, "little")),
        ("s128", -(1 << 127), (1 << 127).to_bytes(16, "little")),
        ("bool", True, b"\x01"),
        ("char", 65, b"A"),
    ],
)
def test_scalar_round_trip(name, value, raw):
    c = codec(name)
    assert c.size == len(raw)
    assert c.encode(value) == raw
    assert c.decode(raw) == value


def test_scalar_inputs_and_ranges():
    c = codec("u8", root="key")
    assert c.encode("0x10") == b"\x10" and c.encode(" 7 ") == b"\x07" and c.encode(3.0) == b"\x03"
    assert error(c, 256) == "key: 256 is out of range for u8 (0..255)"
    assert error(c, -1) == "key: -1 is out of range for u8 (0..255)"
    assert error(c, "abc") == "key: 'abc' is not an integer"
    assert error(c, True) == "key: expected an integer for u8, got True"
    assert error(codec("s16"), 40000) == "value: 40000 is out of range for s16 (-32768..32767)"
    assert error(codec("u128"), -1).startswith("value: -1 is out of range for u128 (0..")
    b = codec("bool")
    assert b.encode(False) == b"\x00" and b.encode("yes") == b"\x01" and b.encode(1) == b"\x01"
    assert error(b, 2) == "value: expected true or false, got 2"
    ch = codec("char")
    assert ch.encode("a") == b"a" and ch.encode(-1) == b"\xff" and ch.decode(b"a") == 97
    assert error(ch, "ab") == "value: 'ab' is not an integer"
    assert error(ch, "é") == "value: 'é' does not fit in one byte"


def test_float_and_pointer():
    from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import Float, Ptr

    f = compile_codec(Float("double", 8))
    assert f.decode(f.encode(1.5)) == 1.5 and f.encode("2") == struct.pack("=d", 2.0)
    with pytest.raises(CodecError, match="value: expected a number"):
        f.encode([1])
    p = compile_codec(Ptr(Int("int", 4, True)))
    assert p.size == 8 and p.decode(p.encode(0xDEAD)) == 0xDEAD


def test_decode_short_buffer_and_offset_and_memoryview():
    c = codec("u32")
    with pytest.raises(CodecError, match="value: expected 4 bytes, got 2"):
        c.decode(b"\0\0")
    buf = memoryview(b"\xff\xff\x01\x00\x00\x00")
    assert c.decode(buf, 2) == 1


# ---------------------------------------------------------------------------------------------- arrays and strings


def test_char_arrays_are_strings():
    c = codec("char[8]")
    assert c.encode("hi") == b"hi" + bytes(6)
    assert c.decode(b"hi\0junk\0") == "hi"
    assert c.decode(b"12345678") == "12345678"
    assert c.encode("12345678") == b"12345678"
    assert error(c, "x" * 9) == "value: 'xxxxxxxxx' is 9 bytes, longer than char[8]"
    assert c.decode(c.encode("héllo")) == "héllo"
    assert codec("char[2][3]").decode(b"ab\0cd\0") == ["ab", "cd"]


def test_int_arrays_are_lists():
    c = codec("u16[3]")
    assert c.encode([1, 2]) == b"\x01\x00\x02\x00\x00\x00"
    assert c.decode(c.encode([1, 2, 3])) == [1, 2, 3]
    assert error(c, [1, 2, 3, 4]) == "value: 4 items do not fit in u16[3]"
    assert error(c, [1, 70000]) == "value[1]: 70000 is out of range for u16 (0..65535)"
    assert error(c, 5) == "value: expected a list of up to 3 integers, got 5"
    assert codec("u8[6]").decode(bytes(range(6))) == [0, 1, 2, 3, 4, 5]
    m = codec("u32[2][2]")
    assert m.decode(m.encode([[1, 2], [3]])) == [[1, 2], [3, 0]]


def test_array_of_structs_paths():
    c = codec(
        {"fields": [{"name": "hosts", "type": {"type": {"fields": [{"name": "port", "type": "u16"}]}, "count": 2}}]}
    )
    assert c.decode(c.encode({"hosts": [{"port": 1}]})) == {"hosts": [{"port": 1}, {"port": 0}]}
    assert error(c, {"hosts": [{}, {"port": -1}]}) == "value.hosts[1].port: -1 is out of range for u16 (0..65535)"
    assert error(c, {"hosts": [{}, {"nope": 1}]}).startswith("value.hosts[1].nope: unknown field 'nope'")


# ---------------------------------------------------------------------------------------------- structs


def test_struct_padding_and_missing_fields():
    c = codec({"fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u64"}, {"name": "c", "type": "u16"}]})
    raw = c.encode({"a": 1, "c": 3})
    assert raw == b"\x01" + bytes(7) + bytes(8) + b"\x03\x00" + bytes(6)
    assert c.decode(b"\x01" + b"\xee" * 7 + bytes(8) + b"\x03\x00" + b"\xee" * 6) == {"a": 1, "b": 0, "c": 3}
    # null is a wrong type, not "zero": a templated value that came out empty must not be written silently
    assert error(c, {"a": 1, "b": None}) == "value.b: expected an integer for u64, got None"


def test_struct_errors():
    c = codec({"name": "stats", "fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u8"}]})
    assert error(c, {"a": 1, "zz": 2}) == "value.zz: unknown field 'zz' in struct stats (fields: a, b)"
    assert error(c, {"x": 1, "y": 2}) == "value: unknown fields 'x', 'y' in struct stats (fields: a, b)"
    assert error(c, [1, 2]) == "value: expected a mapping for struct stats, got [1, 2]"


def test_packed_flow_key_round_trips_exactly():
    c = codec(FLOW_KEY, FLOW_FORMATS, "key")
    key = {"src_ip": "10.0.0.1", "dst_ip": "192.168.7.42", "src_port": 443, "dst_port": 51000, "protocol": 6}
    raw = c.encode(key)
    assert c.size == 13
    assert raw == bytes([10, 0, 0, 1, 192, 168, 7, 42, 0x01, 0xBB, 0xC7, 0x38, 6])
    assert c.decode(raw) == key
    plain = codec(FLOW_KEY, root="key")
    assert plain.decode(plain.encode({"src_ip": 1, "protocol": 17})) == {
        "src_ip": 1,
        "dst_ip": 0,
        "src_port": 0,
        "dst_port": 0,
        "protocol": 17,
    }


def test_nested_struct():
    c = codec(
        {
            "fields": [
                {"name": "id", "type": "u32"},
                {
                    "name": "inner",
                    "type": {"fields": [{"name": "addr", "type": "u32"}, {"name": "tag", "type": "char[4]"}]},
                },
            ]
        },
        {"value.inner.addr": "ipv4"},
    )
    obj = {"id": 7, "inner": {"addr": "1.2.3.4", "tag": "ab"}}
    assert c.decode(c.encode(obj)) == obj
    assert error(c, {"inner": {"addr": "1.2.3.400"}}) == "value.inner.addr: '1.2.3.400' is not an IPv4 address"


def test_anonymous_members_are_flattened():
    c = codec(
        {
            "fields": [
                {"name": "x", "type": "s32"},
                {"type": {"kind": "union", "fields": [{"name": "a", "type": "s32"}, {"name": "b", "type": "u8[4]"}]}},
                {"type": {"fields": [{"name": "c", "type": "s16"}, {"name": "d", "type": "u16"}]}},
            ]
        }
    )
    raw = c.encode({"x": 1, "a": -1, "c": 2, "d": 3})
    assert c.decode(raw) == {"x": 1, "a": -1, "b": [255, 255, 255, 255], "c": 2, "d": 3}
    # bpftool's rendering puts an anonymous member under an empty key; that shape is accepted too.
    assert c.encode({"x": 1, "": {"a": -1}, "c": 2, "d": 3}) == raw
    # Several union members are accepted when they agree (decoded output lists them all), refused otherwise.
    assert c.encode({"x": 1, "a": -1, "b": [255, 255, 255, 255], "c": 2, "d": 3}) == raw
    assert error(c, {"a": 1, "b": [2]}) == "value: union (anon) holds one member at a time; a, b disagree"
    assert error(c, {"e": 1}).startswith("value.e: unknown field 'e' in struct (anon) (fields: a, b, c, d, x)")


def test_unions():
    c = codec(
        {
            "fields": [
                {
                    "name": "u",
                    "type": {
                        "kind": "union",
                        "name": "num",
                        "fields": [
                            {"name": "i", "type": "u32"},
                            {"name": "s", "type": "char[4]"},
                            {"name": "bits", "type": "u32", "bits": 4},
                        ],
                    },
                }
            ]
        }
    )
    raw = c.encode({"u": {"s": "AB"}})
    assert raw == b"AB\0\0"
    assert c.decode(raw) == {"u": {"i": 0x4241, "s": "AB", "bits": 1}}
    assert c.encode({"u": {}}) == bytes(4) and c.encode({}) == bytes(4)
    assert c.encode(c.decode(raw)) == raw
    assert error(c, {"u": {"i": 1, "s": "x"}}) == "value.u: union num holds one member at a time; i, s disagree"
    assert error(c, {"u": {"q": 1}}).startswith("value.u.q: unknown field 'q' in union num")
    assert error(c, {"u": {"bits": 16}}) == "value.u.bits: 16 is out of range for 4-bit unsigned bitfield (0..15)"


def test_enums():
    c = codec({"kind": "enum", "name": "action", "size": 1, "values": {"PASS": 0, "DROP": 1}})
    assert c.encode("DROP") == b"\x01" and c.encode(0) == b"\x00" and c.encode("1") == b"\x01"
    assert c.decode(b"\x01") == "DROP" and c.decode(b"\x07") == 7
    assert error(c, "REJECT") == "value: 'REJECT' is not a value of enum action (PASS, DROP)"
    assert error(c, 256) == "value: 256 is out of range for enum action (0..255)"
    s = codec({"kind": "enum", "size": 8, "signed": True, "values": {"NEG": -5}})
    assert s.decode(s.encode("NEG")) == "NEG" and s.decode(s.encode(-6)) == -6


def test_bitfields():
    c = codec(
        {
            "fields": [
                {"name": "a", "type": "u32", "bits": 3},
                {"name": "b", "type": "s32", "bits": 5},
                {"name": "flag", "type": "bool", "bits": 1},
                {"name": "e", "type": {"kind": "enum", "values": {"X": 1, "Y": 2}}, "bits": 2},
                {"name": "big", "type": "u64", "bits": 40},
                {"name": "tail", "type": "u8"},
            ]
        }
    )
    obj = {"a": 5, "b": -3, "flag": True, "e": "Y", "big": (1 << 40) - 1, "tail": 9}
    raw = c.encode(obj)
    assert c.decode(raw) == obj
    first = int.from_bytes(raw[:4], "little")
    assert first & 7 == 5 and (first >> 3) & 31 == 29 and (first >> 8) & 1 == 1 and (first >> 9) & 3 == 2
    assert error(c, {"a": 8}) == "value.a: 8 is out of range for 3-bit unsigned bitfield (0..7)"
    assert error(c, {"b": -17}) == "value.b: -17 is out of range for 5-bit signed bitfield (-16..15)"
    assert error(c, {"e": "Z"}) == "value.e: 'Z' is not an integer"
    assert c.decode(c.encode({"e": 3}))["e"] == 3


def test_packed_bitfields_spanning_odd_bytes():
    c = codec(
        {
            "packed": True,
            "fields": [
                {"name": "a", "type": "char"},
                {"name": "b", "type": "u32", "bits": 3},
                {"name": "c", "type": "u32", "bits": 30},
            ],
        }
    )
    assert c.size == 6
    obj = {"a": 1, "b": 7, "c": (1 << 30) - 2}
    assert c.decode(c.encode(obj)) == obj


def test_scalar_key_values():
    assert codec("u32", root="key").encode(5) == b"\x05\0\0\0"
    assert codec("u32", {"key": "hex"}, "key").decode(b"\x1f\0\0\0") == "0x1f"


# ---------------------------------------------------------------------------------------------- formats


def test_ipv4_format():
    c = codec("u32", {"key": "ipv4"}, "key")
    assert c.encode("10.0.0.1") == b"\x0a\0\0\x01"
    assert c.encode(0x0A000001) == b"\x0a\0\0\x01"
    assert c.decode(b"\x0a\0\0\x01") == "10.0.0.1"
    assert error(c, "10.0.0.300") == "key: '10.0.0.300' is not an IPv4 address"
    assert error(c, 1 << 32) == "key: 4294967296 is out of range for a 4-byte ipv4 value"
    a = codec("u8[4]", {"value": "ipv4"})
    assert a.decode(a.encode("1.2.3.4")) == "1.2.3.4"


@pytest.mark.parametrize("spec", ["u8[16]", "u32[4]", "u16[8]", "u128"])
def test_ipv6_format(spec):
    c = codec(spec, {"value": "ipv6"})
    raw = c.encode("2001:db8::1")
    assert raw == bytes.fromhex("20010db8000000000000000000000001")
    assert c.decode(raw) == "2001:db8::1"
    assert c.encode(1) == bytes(15) + b"\x01"
    assert error(c, "2001:db8::g") == "value: '2001:db8::g' is not an IPv6 address"


def test_ip_format_holds_either_family_ipv4_mapped():
    c = codec("u8[16]", {"value": "ip"})
    raw = c.encode("10.1.2.3")
    assert raw == bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])
    assert c.decode(raw) == "10.1.2.3"
    assert c.decode(c.encode("::ffff:10.1.2.3")) == "10.1.2.3"  # the mapped form is the same address
    assert c.decode(c.encode("2001:db8::1")) == "2001:db8::1"
    assert c.decode(bytes(16)) == "::"
    assert error(c, "10.1.2") == "value: '10.1.2' is not an IP address"
    with pytest.raises(CodecError, match="value: format 'ip' does not apply to u32"):
        codec("u32", {"value": "ip"})


def test_mac_format():
    c = codec("u8[6]", {"value": "mac"})
    assert c.encode("AA-bb-cc-dd-ee-ff") == bytes.fromhex("aabbccddeeff")
    assert c.decode(bytes.fromhex("aabbccddeeff")) == "aa:bb:cc:dd:ee:ff"
    assert c.encode(0xAABBCCDDEEFF) == bytes.fromhex("aabbccddeeff")
    assert error(c, "aa:bb") == "value: 'aa:bb' is not a MAC address"


def test_hex_format():
    i = codec("u32", {"value": "hex"})
    assert i.decode(i.encode("0x1f")) == "0x1f" and i.encode(31) == i.encode("1f")
    assert error(i, "0xzz") == "value: '0xzz' is not a hex number"
    b = codec("u8[4]", {"value": "hex"})
    assert b.encode("deadbeef") == bytes.fromhex("deadbeef") and b.decode(b"\xde\xad\xbe\xef") == "deadbeef"
    assert error(b, "dead") == "value: 'dead' is 2 bytes, expected 4"
    assert error(b, "zz") == "value: 'zz' is not a hex string"
    s = codec(
        {"fields": [{"name": "inner", "type": {"fields": [{"name": "a", "type": "u16"}]}}]}, {"value.inner": "hex"}
    )
    assert s.decode(s.encode({"inner": "0102"})) == {"inner": "0102"}
    arr = codec("u16[2]", {"value": "hex"})
    assert arr.decode(arr.encode([1, "0xff"])) == ["0x1", "0xff"]
    bf = codec({"fields": [{"name": "f", "type": "u8", "bits": 4}]}, {"value.f": "hex"})
    assert bf.decode(bf.encode({"f": 10})) == {"f": "0xa"}


def test_be_format_and_defaults():
    c = codec("u16", {"value": "be"})
    assert c.encode(443) == b"\x01\xbb" and c.decode(b"\x01\xbb") == 443
    assert error(c, 70000) == "value: 70000 is out of range for u16 (0..65535)"
    d = codec(
        {
            "fields": [
                {"name": "port", "type": "__be16"},
                {"name": "ports", "type": {"type": "__be16", "count": 2}},
                {"name": "addr", "type": "__be32"},
            ]
        }
    )
    raw = d.encode({"port": 443, "ports": [80, 8080], "addr": 1})
    assert raw[:6] == b"\x01\xbb\x00\x50\x1f\x90" and raw[8:] == b"\0\0\0\x01"
    assert d.decode(raw) == {"port": 443, "ports": [80, 8080], "addr": 1}
    # An explicit format wins over the __be16 default.
    h = codec({"fields": [{"name": "port", "type": "__be16"}]}, {"value.port": "hex"})
    assert h.decode(b"\x01\xbb") == {"port": hex(0xBB01)}
    arr = codec("u16[2]", {"value": "be"})
    assert arr.encode([1, 2]) == b"\0\x01\0\x02"


def test_in_addr_defaults():
    in_addr = Struct("in_addr", 4, [Member("s_addr", Typedef("__be32", Int("unsigned int", 4)), 0)], align=4)
    in6 = type_from_schema(
        {
            "name": "in6_addr",
            "fields": [
                {
                    "name": "in6_u",
                    "type": {
                        "kind": "union",
                        "fields": [
                            {"name": "u6_addr8", "type": "u8[16]"},
                            {"name": "u6_addr16", "type": "__be16[8]"},
                            {"name": "u6_addr32", "type": "__be32[4]"},
                        ],
                    },
                }
            ],
        }
    )
    outer = Struct("pair", 20, [Member("v4", in_addr, 0), Member("v6", in6, 32)], align=4)
    c = compile_codec(outer)
    obj = {"v4": "192.0.2.1", "v6": "2001:db8::2"}
    raw = c.encode(obj)
    assert raw[:4] == bytes([192, 0, 2, 1])
    assert c.decode(raw) == obj
    hexed = compile_codec(outer, {"value.v4": "hex"})
    assert hexed.decode(raw)["v4"] == "c0000201"


@pytest.mark.parametrize(
    "formats,message",
    [
        ({"value.a": "mac"}, "value.a: format 'mac' does not apply to u32"),
        ({"value.a": "ipv6"}, "value.a: format 'ipv6' does not apply to u32"),
        ({"value.flag": "be"}, "value.flag: format 'be' does not apply to bool"),
        ({"value.bf": "be"}, "value.bf: format 'be' does not apply to bitfields"),
        ({"value.a": "ipv5"}, "value.a: unknown format 'ipv5' (expected one of ipv4, ipv6, ip, mac, hex, be)"),
        ({"value.nope": "hex"}, "value.nope: no such field in struct (anon)"),
        (
            {"value.inner.x": "hex", "value.inner": "hex"},
            "value.inner.x: inside value.inner, which is formatted as a whole",
        ),
        ({"key.a": "hex"}, "key.a: format paths must start with 'value'"),
        ({"value.name": "ipv4"}, "value.name: format 'ipv4' does not apply to char"),
    ],
)
def test_format_errors_at_compile_time(formats, message):
    spec = {
        "fields": [
            {"name": "a", "type": "u32"},
            {"name": "flag", "type": "bool"},
            {"name": "bf", "type": "u32", "bits": 3},
            {"name": "name", "type": "char[3]"},
            {"name": "inner", "type": {"fields": [{"name": "x", "type": "u16"}]}},
        ]
    }
    with pytest.raises(CodecError) as exc:
        codec(spec, formats)
    assert str(exc.value) == message


def test_codec_error_has_path():
    c = codec(FLOW_KEY, FLOW_FORMATS, "key")
    with pytest.raises(CodecError) as exc:
        c.encode({"src_ip": "10.0.0.300"})
    assert exc.value.path == "key.src_ip"
    assert exc.value.problem == "'10.0.0.300' is not an IPv4 address"
    assert isinstance(exc.value, ValueError)


# ---------------------------------------------------------------------------------------------- LPM keys


def lpm(data, formats=None):
    return compile_lpm_codec(
        type_from_schema({"fields": [{"name": "prefixlen", "type": "u32"}, {"name": "data", "type": data}]}, "key"),
        formats,
    )


@pytest.mark.parametrize("data", ["u8[4]", "u32"])
def test_lpm_ipv4(data):
    c = lpm(data)
    raw = c.encode("10.0.0.0/8")
    assert raw == b"\x08\0\0\0\x0a\0\0\0"
    assert c.decode(raw) == "10.0.0.0/8"
    assert c.encode("10.1.2.3") == b"\x20\0\0\0\x0a\x01\x02\x03"
    assert c.encode({"prefixlen": 8, "data": [10, 0, 0, 0] if data == "u8[4]" else 10}) is not None
    with pytest.raises(CodecError, match=r"^key: '10\.0\.0\.1/8' has host bits set$"):
        c.encode("10.0.0.1/8")
    with pytest.raises(CodecError, match="is not an IPv4 network"):
        c.encode("2001:db8::/32")


def test_lpm_ipv6_and_dict_modes():
    c = lpm("u8[16]")
    assert c.decode(c.encode("2001:db8::/32")) == "2001:db8::/32"
    assert c.size == 20
    d = lpm("u8[16]", {"key.data": "hex"})
    assert d.decode(d.encode({"prefixlen": 1, "data": "80" + "00" * 15})) == {"prefixlen": 1, "data": "80" + "00" * 15}
    with pytest.raises(CodecError, match="CIDR strings need"):
        d.encode("::/0")
    two = compile_lpm_codec(
        type_from_schema(
            {
                "fields": [
                    {"name": "prefixlen", "type": "u32"},
                    {"name": "ifindex", "type": "u32"},
                    {"name": "addr", "type": "u8[4]"},
                ]
            },
            "key",
        ),
        {"key.addr": "ipv4"},
    )
    obj = {"prefixlen": 40, "ifindex": 2, "addr": "10.0.0.0"}
    assert two.decode(two.encode(obj)) == obj
    with pytest.raises(CodecError, match="must start with a u32 prefixlen"):
        compile_lpm_codec(type_from_schema({"fields": [{"name": "p", "type": "u16"}]}, "key"))


# ---------------------------------------------------------------------------------------------- per-CPU


def test_percpu_single_list_and_dict_forms():
    c = PerCpuCodec(
        codec(
            {
                "fields": [
                    {"name": "pkts", "type": "u64"},
                    {"name": "tag", "type": "u8"},
                    {"name": "addr", "type": "u32"},
                ]
            },
            {"value.addr": "ipv4"},
        ),
        3,
    )
    assert c.size == 16 * 3
    one = c.encode({"pkts": 1, "addr": "1.1.1.1"})
    assert c.decode(one)["sum"] == {"pkts": 3, "tag": 0, "addr": "1.1.1.1"}
    many = c.encode([{"pkts": 1, "tag": 5}, {"pkts": 2, "tag": 6}, {"pkts": 3}])
    out = c.decode(many)
    assert [v["pkts"] for v in out["per_cpu"]] == [1, 2, 3]
    assert out["sum"]["pkts"] == 6 and out["sum"]["tag"] == 11
    assert c.encode(out) == many
    assert c.encode({"per_cpu": out["per_cpu"]}) == many
    with pytest.raises(CodecError, match=r"^value: expected one value per CPU \(3\), got 2$"):
        c.encode([{}, {}])
    with pytest.raises(CodecError, match=r"^value\[cpu 1\]\.pkts: -1 is out of range"):
        c.encode([{}, {"pkts": -1}, {}])


def test_percpu_scalars_arrays_and_non_summed():
    s = PerCpuCodec(codec("u32"), 2)
    assert s.size == 16
    assert s.decode(s.encode([1, 2])) == {"per_cpu": [1, 2], "sum": 3}
    a = PerCpuCodec(codec("u32[2]"), 2)
    raw = a.encode([5, 6])  # the array value, on every CPU
    assert a.decode(raw) == {"per_cpu": [[5, 6], [5, 6]], "sum": [10, 12]}
    assert a.decode(a.encode({"per_cpu": [[1, 2], [3, 4]]}))["sum"] == [4, 6]
    e = PerCpuCodec(
        codec(
            {
                "fields": [
                    {"name": "e", "type": {"kind": "enum", "values": {"A": 1, "B": 2}}},
                    {"name": "f", "type": "bool"},
                    {"name": "h", "type": "u8", "bits": 3},
                    {"name": "arr", "type": {"type": {"fields": [{"name": "n", "type": "u8"}]}, "count": 2}},
                ]
            }
        ),
        2,
    )
    out = e.decode(
        e.encode(
            [
                {"e": "A", "f": True, "h": 1, "arr": [{"n": 1}]},
                {"e": "B", "f": False, "h": 2, "arr": [{"n": 2}, {"n": 3}]},
            ]
        )
    )
    assert out["sum"] == {"e": "A", "f": True, "h": 3, "arr": [{"n": 3}, {"n": 3}]}


# ---------------------------------------------------------------------------------------------- hexdump


def test_hexdump_codec():
    c = hexdump_codec(4)
    assert c.size == 4 and c.encode("de ad be ef") == bytes.fromhex("deadbeef")
    assert c.encode("0xdeadbeef") == bytes.fromhex("deadbeef")
    assert c.decode(bytes.fromhex("00deadbeef"), 1) == "deadbeef"
    with pytest.raises(CodecError, match=r"^value: 'dead' is 2 bytes, expected 4$"):
        c.encode("dead")
    p = PerCpuCodec(c, 2)
    assert p.decode(p.encode("01020304"))["per_cpu"] == ["01020304", "01020304"]


def test_mixed_byte_order_fast_path_matches_the_field_by_field_decoder() -> None:
    import random

    t = type_from_schema(
        {
            "fields": [
                {"name": "src", "type": "__be32"},
                {"name": "flags", "type": "u8"},
                {"name": "port", "type": "__be16"},
                {"name": "seq", "type": "s64"},
                {"name": "tag", "type": "__be64"},
                {"name": "len", "type": "u16"},
            ]
        }
    )
    c = compile_codec(t)
    assert c._mixed is not None  # the two-view decoder is in use for this layout
    rng = random.Random(5)
    for _i in range(200):
        raw = bytes(rng.randrange(256) for _j in range(c.size))
        slow = c._dec(c._unpack_from(raw, 0))
        assert c.decode(raw) == slow
        assert list(c.decode(raw)) == ["src", "flags", "port", "seq", "tag", "len"]  # declaration order
        assert c.encode(c.decode(raw)) == c.encode(slow)


def test_encode_columns_refuses_what_it_cannot_pack_exactly():
    """encode_columns() returns None (encode() then explains) for anything but every field given as a fitting int."""
    codec = compile_codec(type_from_schema(FLOW_KEY))
    names = ["src_ip", "dst_ip", "src_port", "dst_port", "protocol"]
    rows = [dict(zip(names, (167772161 + i, 3221225985, 1024 + i, 80, 6))) for i in range(3)]
    columns = {(name,): [row[name] for row in rows] for name in names}
    assert codec.encode_columns(columns) == [codec.encode(row) for row in rows]
    reordered = dict(reversed(list(columns.items())))
    assert codec.encode_columns(reordered) == codec.encode_columns(columns), "columns are matched by name"
    assert codec.encode_columns({k: v for k, v in columns.items() if k != ("protocol",)}) is None, "a field missing"
    assert codec.encode_columns({**columns, ("extra",): [1, 2, 3]}) is None, "an unknown field"
    assert codec.encode_columns({**columns, ("dst_port",): [80, 70000, 80]}) is None, "out of range for a u16"
    assert codec.encode_columns({**columns, ("protocol",): [6, True, 6]}) is None, "a bool is not an integer here"
    assert codec.encode_columns({**columns, ("protocol",): [6, "6", 6]}) is None, "text goes through encode()"
    scalar = compile_codec(Int("u64", 8, False))
    assert scalar.encode_columns({(): [0, (1 << 64) - 1]}) == [bytes(8), b"\xff" * 8]
    assert scalar.encode_columns({(): [-1]}) is None
    per_cpu = PerCpuCodec(codec, 3)  # 13-byte values padded to 16 for each CPU
    assert per_cpu.encode_columns(columns) == [per_cpu.encode(row) for row in rows]
