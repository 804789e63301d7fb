"""Properties over random schemas: encode/decode round-trips and to_schema() preserving layout."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import Array, BtfType, Enum, Int, Struct, resolve
from ansible_collections.cnf.ebpf.plugins.module_utils.types._codec import compile_codec
from ansible_collections.cnf.ebpf.plugins.module_utils.types._layout_compare import compare_layout
from ansible_collections.cnf.ebpf.plugins.module_utils.types._schema import to_schema, type_from_schema

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def is_char_array(r: BtfType) -> bool:
    return isinstance(r, Array) and isinstance(resolve(r.elem), Int) and resolve(r.elem).name == "char"


def has_union(t: BtfType) -> bool:
    r = resolve(t)
    if isinstance(r, Array):
        return has_union(r.elem)
    if isinstance(r, Struct):
        return r.is_union or any(has_union(m.type) for m in r.members)
    return False


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def member_parts(s: Struct) -> list[st.SearchStrategy]:
    """One strategy per member giving a dict of the keys it contributes (anonymous members flatten)."""
    parts = []
    for m in s.members:
        if m.name:
            parts.append(values(m.type, m.bitfield_size).map(lambda v, n=m.name: {n: v}))
        else:
            parts.append(values(m.type))
    return parts


def values(t: BtfType, bits: int = 0) -> st.SearchStrategy:
    r = resolve(t)
    if isinstance(r, Int):
        if r.is_bool:
            return st.booleans()
        return st.integers(*int_range(bits or r.size * 8, r.signed))
    if isinstance(r, Enum):
        return st.integers(*int_range(bits or r.size * 8, r.signed))
    if is_char_array(r):
        return st.text(alphabet=string.ascii_letters + string.digits, max_size=r.count)
    if isinstance(r, Array):
        return st.lists(values(r.elem), min_size=r.count, max_size=r.count)
    assert isinstance(r, Struct)
    parts = member_parts(r)
    if r.is_union:
        return st.one_of(parts)

    def merge(dicts: tuple) -> dict:
        out: dict = {}
        for d in dicts:
            out.update(d)
        return out

    return st.tuples(*parts).map(merge)


def flat_members(s: Struct) -> dict[str, tuple[BtfType, int]]:
    out: dict[str, tuple[BtfType, int]] = {}
    for m in s.members:
        if m.name:
            out[m.name] = (m.type, m.bitfield_size)
        else:
            out.update(flat_members(resolve(m.type)))
    return out


def check(t: BtfType, given_value: Any, decoded: Any, path: str = "value") -> None:
    r = resolve(t)
    if isinstance(r, Enum):
        names = {v: n for n, v in reversed(r.values)}
        assert decoded == names.get(given_value, given_value), path
    elif isinstance(r, Array) and not is_char_array(r):
        assert len(decoded) == r.count, path
        for i, (g, d) in enumerate(zip(given_value, decoded)):
            check(r.elem, g, d, f"{path}[{i}]")
    elif isinstance(r, Struct):
        members = flat_members(r)
        for k, v in given_value.items():
            check(members[k][0], v, decoded[k], f"{path}.{k}")
    else:
        assert decoded == given_value, path


@SETTINGS
@given(data=st.data())
def test_round_trip_random_schemas(schemas, data):
    spec = data.draw(schemas())
    t = type_from_schema(spec)
    codec = compile_codec(t)
    assert codec.size == t.size
    value = data.draw(values(t))
    raw = codec.encode(value)
    assert len(raw) == t.size
    decoded = codec.decode(raw)
    check(t, value, decoded)
    if not has_union(t):
        assert codec.encode(decoded) == raw


@SETTINGS
@given(data=st.data())
def test_to_schema_preserves_layout(schemas, data):
    t = type_from_schema(data.draw(schemas()))
    again = type_from_schema(to_schema(t))
    assert again.size == t.size
    assert compare_layout(t, again) == []


@SETTINGS
@given(data=st.data())
def test_zero_value_and_padding_ignored(schemas, data):
    t = type_from_schema(data.draw(schemas()))
    codec = compile_codec(t)
    zero = codec.decode(bytes(t.size))
    if not has_union(t):
        assert codec.encode(zero) == bytes(t.size)


def columns_of(batch: list[Any]) -> dict[tuple[str, ...], list[Any]]:
    """Values as encode_columns() takes them: one list per top-level field (a plain value is its own column)."""
    if batch and isinstance(batch[0], dict):
        return {(name,): [v[name] for v in batch] for name in batch[0]}
    return {(): list(batch)}


@SETTINGS
@given(data=st.data())
def test_encode_columns_packs_what_encode_packs(schemas, data):
    t = type_from_schema(data.draw(schemas()))
    codec = compile_codec(t)
    batch = data.draw(st.lists(values(t), min_size=1, max_size=5))
    assume(len({tuple(v) if isinstance(v, dict) else () for v in batch}) == 1)  # columns need the same fields
    packed = codec.encode_columns(columns_of(batch))
    # None is always allowed (encode() then does the work); what is packed must be exactly what encode() packs
    if packed is not None:
        assert packed == [codec.encode(v) for v in batch]
