"""Our BTF codecs against bpftool, an independent BTF decoder, on real kernel maps.

clang lays the types out (tests/integration/data/codec_types.c), we read its BTF from the object, create maps that
carry it, write random entries through our encoder and compare field for field with `bpftool -j map dump`.
"""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _btf_io
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf, _btf_parse, _schema
from ansible_collections.cnf.ebpf.plugins.module_utils.types._codec import compile_codec
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_codecs import PerCpuCodec
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec

from .conftest import bpftool, compile_bpf

DATA = Path(__file__).parent / "data"
STRUCTS = ["padded", "flow_key", "nested", "with_union", "bits", "packed_mix"]
ENTRIES = 40


@pytest.fixture(scope="module")
def clang_btf(tmp_path_factory: pytest.TempPathFactory) -> _btf_parse.Btf:
    obj = compile_bpf(DATA / "codec_types.c", tmp_path_factory.mktemp("obj") / "codec_types.o")
    return _btf_parse.Btf.from_raw(_btf_io.btf_raw_from_elf(str(obj)))


def _is_char_array(t: _btf.BtfType) -> bool:
    r = _btf.resolve(t)
    return (
        isinstance(r, _btf.Array)
        and isinstance(_btf.resolve(r.elem), _btf.Int)
        and (_btf.resolve(r.elem).is_char or _btf.resolve(r.elem).name == "char")
    )


def random_value(t: _btf.BtfType, rng: random.Random, bits: int = 0) -> Any:
    """A random value in the form our codecs accept for type t (bits: bitfield width)."""
    r = _btf.resolve(t)
    if isinstance(r, _btf.Int):
        if r.is_bool:
            return rng.choice([True, False])
        width = bits or r.size * 8
        if r.signed:
            return rng.randrange(-(1 << (width - 1)), 1 << (width - 1))
        return rng.randrange(0, 1 << width)
    if isinstance(r, _btf.Enum):
        return rng.choice([name for name, _unused in r.values])
    if _is_char_array(r):
        return "".join(rng.choice(string.ascii_letters + string.digits) for _i in range(rng.randrange(r.count)))
    if isinstance(r, _btf.Array):
        return [random_value(r.elem, rng) for _i in range(r.count)]
    if isinstance(r, _btf.Struct):
        members = [m for m in r.members if m.name]
        if r.is_union:
            m = rng.choice(members)
            return {m.name: random_value(m.type, rng, m.bitfield_size)}
        return {m.name: random_value(m.type, rng, m.bitfield_size) for m in members}
    raise AssertionError(f"no generator for {_btf.type_name(t)}")


def as_bpftool_prints(value: Any, t: _btf.BtfType, bits: int = 0) -> Any:
    """Our decoded value in bpftool's JSON conventions: bitfields and 128-bit ints as hex strings, bitfields
    unsigned (bpftool does not sign-extend them)."""
    r = _btf.resolve(t)
    if bits:
        return hex(value & ((1 << bits) - 1))
    if isinstance(r, _btf.Int) and r.size > 8:
        return hex(value)
    if isinstance(r, _btf.Enum) and not r.signed:
        # bpftool (7.1, Debian 12) reads enum values as signed, so an unsigned value with the top bit set (HIGH=200
        # in a 1-byte enum) matches no name and is printed as the negative number. Our decoder gives the name.
        number = dict(r.values)[value] if isinstance(value, str) else value
        top = 1 << (r.size * 8 - 1)
        return number - 2 * top if number >= top else value
    if isinstance(r, _btf.Array) and not _is_char_array(r):
        return [as_bpftool_prints(v, r.elem) for v in value]
    if isinstance(r, _btf.Struct):
        by_name = {m.name: m for m in r.members}
        return {k: as_bpftool_prints(v, by_name[k].type, by_name[k].bitfield_size) for k, v in value.items()}
    return value


def _make_map(pin: Path, map_type: str, value_type: _btf.BtfType) -> _bpf_map.BpfMap:
    u32 = _schema.type_from_schema("u32", path="key")
    spec = MapSpec(
        path=str(pin),
        type=map_type,
        name=pin.name[:15],
        key_size=4,
        value_size=value_type.size,
        max_entries=ENTRIES,
        key_type=u32,
        value_type=value_type,
    )
    bpf_map = _maps.create_map(spec)
    pin.parent.mkdir(exist_ok=True)
    bpf_map.pin(str(pin))
    return bpf_map


@pytest.mark.parametrize("struct_name", STRUCTS)
def test_codec_matches_bpftool_field_for_field(clang_btf: _btf_parse.Btf, pin_dir: Path, struct_name: str) -> None:
    value_type = clang_btf.find(struct_name, "struct")
    codec = compile_codec(value_type, root="value")
    key_codec = compile_codec(_schema.type_from_schema("u32", path="key"), root="key")
    assert codec.size == value_type.size
    rng = random.Random(struct_name)
    written = {}
    with _make_map(pin_dir / struct_name, "hash", value_type) as bpf_map:
        pairs = []
        for i in range(ENTRIES):
            value = random_value(value_type, rng)
            raw = codec.encode(value)
            assert len(raw) == value_type.size
            written[i] = (value, raw)
            pairs.append((key_codec.encode(i), raw))
        bpf_map.update_many(pairs)
    dump = bpftool("map", "dump", "pinned", str(pin_dir / struct_name))
    assert len(dump) == ENTRIES
    for entry in dump:
        key = entry["formatted"]["key"]
        value, raw = written[key]
        kernel_raw = bytes(int(b, 16) for b in entry["value"])
        assert kernel_raw == raw
        decoded = codec.decode(kernel_raw)
        assert as_bpftool_prints(decoded, value_type) == entry["formatted"]["value"], (struct_name, key)
        # What we decode re-encodes to the same bytes.
        assert codec.encode(decoded) == raw


def test_percpu_values_match_bpftool(clang_btf: _btf_parse.Btf, pin_dir: Path) -> None:
    value_type = clang_btf.find("padded", "struct")
    with _make_map(pin_dir / "percpu", "percpu_hash", value_type) as bpf_map:
        codec = PerCpuCodec(compile_codec(value_type, root="value"), bpf_map.ncpus)
        assert codec.size == bpf_map.value_bytes
        rng = random.Random(7)
        per_cpu = [random_value(value_type, rng) for _i in range(bpf_map.ncpus)]
        bpf_map.update(b"\x01\x00\x00\x00", codec.encode(per_cpu))
        decoded = codec.decode(bpf_map.lookup(b"\x01\x00\x00\x00"))
    dump = bpftool("map", "dump", "pinned", str(pin_dir / "percpu"))
    shown = [v["value"] for v in dump[0]["formatted"]["values"]]
    assert decoded["per_cpu"] == shown
    assert decoded["sum"]["d"] == sum(v["d"] for v in shown)


def test_classic_packed_flow_key_round_trips_exactly(clang_btf: _btf_parse.Btf, pin_dir: Path) -> None:
    key_type = clang_btf.find("flow_key", "struct")
    formats = {"key.src_ip": "ipv4", "key.dst_ip": "ipv4", "key.src_port": "be", "key.dst_port": "be"}
    codec = compile_codec(key_type, formats=formats, root="key")
    key = {"src_ip": "10.0.0.1", "dst_ip": "192.168.7.42", "src_port": 443, "dst_port": 51000, "protocol": 6}
    raw = codec.encode(key)
    assert raw == bytes([10, 0, 0, 1, 192, 168, 7, 42, 0x01, 0xBB, 0xC7, 0x38, 6])
    assert len(raw) == 13
    assert codec.decode(raw) == key
    spec = MapSpec(
        path=str(pin_dir / "flows"),
        type="hash",
        name="flows",
        key_size=13,
        value_size=8,
        max_entries=4,
        key_type=key_type,
        value_type=_schema.type_from_schema("u64"),
    )
    pin_dir.mkdir()
    with _maps.create_map(spec) as bpf_map:
        bpf_map.pin(spec.path)
        bpf_map.update(raw, (1).to_bytes(8, "little"))
    dump = bpftool("map", "dump", "pinned", spec.path)
    assert bytes(int(b, 16) for b in dump[0]["key"]) == raw
    assert dump[0]["formatted"]["key"]["protocol"] == 6
