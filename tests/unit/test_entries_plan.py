"""Planning of map contents: pure want/have diffs, merges that keep what was not given, queue plans."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._entries_plan import (
    Declared,
    PlanError,
    ValueOps,
    given_bit_ranges,
    merge_bytes,
    plan_entries,
    plan_queue,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _schema
from ansible_collections.cnf.ebpf.plugins.module_utils.types._codec import compile_codec
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_codecs import PerCpuCodec

STATS = _schema.type_from_schema(
    {"name": "stats", "fields": [{"name": "packets", "type": "u64"}, {"name": "bytes", "type": "u64"}]}
)
CODEC = compile_codec(STATS)
OPS = ValueOps(decode=CODEC.decode, value_type=STATS)


def k(i: int) -> bytes:
    return struct.pack("<I", i)


def want(*entries: tuple[int, dict]) -> Declared:
    """Declared entries {key: k(i), value: given} for each (i, given)."""
    return Declared([k(i) for i, _g in entries], [CODEC.encode(g) for _i, g in entries], [g for _i, g in entries])


def test_merged_adds_updates_and_leaves_the_rest() -> None:
    have = {k(1): CODEC.encode({"packets": 1, "bytes": 10}), k(9): CODEC.encode({"packets": 9})}
    plan = plan_entries("merged", want((1, {"bytes": 99}), (2, {"packets": 2})), have, OPS)
    assert plan.counts() == {"added": 1, "updated": 1, "removed": 0, "unchanged": 0}
    upserts = dict(plan.upserts)
    assert CODEC.decode(upserts[k(1)]) == {"packets": 1, "bytes": 99}  # packets kept
    assert k(9) not in upserts and not plan.deletes


def test_merged_with_the_same_fields_is_unchanged() -> None:
    have = {k(1): CODEC.encode({"packets": 1, "bytes": 10})}
    plan = plan_entries("merged", want((1, {"bytes": 10})), have, OPS)
    assert not plan.changed and plan.unchanged == 1


def test_replaced_zeroes_fields_not_given() -> None:
    have = {k(1): CODEC.encode({"packets": 1, "bytes": 10})}
    plan = plan_entries("replaced", want((1, {"bytes": 10})), have, OPS)
    assert CODEC.decode(dict(plan.upserts)[k(1)]) == {"packets": 0, "bytes": 10}


def test_overridden_deletes_undeclared_keys_after_upserts() -> None:
    have = {k(i): CODEC.encode({"packets": i}) for i in range(4)}
    plan = plan_entries("overridden", want((1, {"packets": 1}), (7, {"packets": 7})), have, OPS)
    assert plan.counts() == {"added": 1, "updated": 0, "removed": 3, "unchanged": 1}
    assert sorted(plan.deletes) == [k(0), k(2), k(3)]


def test_deleted_listed_and_all() -> None:
    have = {k(i): CODEC.encode({"packets": i}) for i in range(3)}
    plan = plan_entries("deleted", Declared([k(1), k(5)]), have, OPS)
    assert plan.deletes == [k(1)] and plan.unchanged == 1
    everything = plan_entries("deleted", Declared([]), have, OPS, delete_all=True)
    assert sorted(everything.deletes) == sorted(have)


def test_arrays_zero_instead_of_deleting() -> None:
    zero = bytes(16)
    have = {k(0): CODEC.encode({"packets": 5}), k(1): zero, k(2): CODEC.encode({"bytes": 1})}
    plan = plan_entries("overridden", want((0, {"packets": 5})), have, OPS, array=True, zero_value=zero)
    assert plan.deletes == [] and plan.upserts == [(k(2), zero)]
    assert plan.counts() == {"added": 0, "updated": 0, "removed": 1, "unchanged": 2}


def test_padding_garbage_is_not_a_change() -> None:
    padded = _schema.type_from_schema({"fields": [{"name": "a", "type": "u8"}, {"name": "b", "type": "u32"}]})
    codec = compile_codec(padded)
    ops = ValueOps(decode=codec.decode, value_type=padded)
    written_by_program = b"\x01\xff\xff\xff\x02\x00\x00\x00"  # junk in the three pad bytes
    plan = plan_entries(
        "replaced",
        Declared([k(0)], [codec.encode({"a": 1, "b": 2})], [{"a": 1, "b": 2}]),
        {k(0): written_by_program},
        ops,
    )
    assert not plan.changed


def test_duplicate_keys_are_refused_naming_both_entries() -> None:
    entries = Declared([k(1), k(2), k(1)], [bytes(16)] * 3, [{}] * 3)
    with pytest.raises(PlanError, match=r"entries\[2\].key: the same key as entries\[0\]"):
        plan_entries("merged", entries, {}, OPS)


def test_merge_keeps_bitfield_neighbours_and_union_siblings() -> None:
    t = _schema.type_from_schema(
        {
            "fields": [
                {"name": "flag", "type": "u32", "bits": 1},
                {"name": "kind", "type": "u32", "bits": 3},
                {"name": "count", "type": "u32", "bits": 12},
                {
                    "name": "addr",
                    "type": {
                        "kind": "union",
                        "fields": [{"name": "v4", "type": "u32"}, {"name": "raw", "type": "u8[4]"}],
                    },
                },
                {"name": "tail", "type": "u16"},
            ]
        }
    )
    codec = compile_codec(t)
    ops = ValueOps(decode=codec.decode, value_type=t)
    current = codec.encode({"flag": 1, "kind": 5, "count": 4000, "addr": {"v4": 0x01020304}, "tail": 9})
    given = {"kind": 2}
    merged = codec.decode(merge_bytes(ops, current, given, codec.encode(given)))
    assert (merged["flag"], merged["kind"], merged["count"], merged["addr"]["v4"], merged["tail"]) == (
        1,
        2,
        4000,
        0x01020304,
        9,
    )
    given = {"addr": {"raw": [9, 9, 9, 9]}}
    merged = codec.decode(merge_bytes(ops, current, given, codec.encode(given)))
    assert merged["addr"]["raw"] == [9, 9, 9, 9] and merged["kind"] == 5 and merged["tail"] == 9


def test_given_ranges_of_nested_structs() -> None:
    t = _schema.type_from_schema(
        {
            "fields": [
                {"name": "a", "type": "u32"},
                {"name": "inner", "type": {"fields": [{"name": "x", "type": "u16"}, {"name": "y", "type": "u16"}]}},
            ]
        }
    )
    assert given_bit_ranges(t, {"inner": {"y": 1}}) == [(48, 16)]
    assert given_bit_ranges(t, {"inner": 5}) == [(32, 32)]
    assert given_bit_ranges(t, 7) == [(0, 64)]


def test_per_cpu_merge_is_cpu_by_cpu() -> None:
    pc = PerCpuCodec(CODEC, 2)
    ops = ValueOps(decode=pc.decode, value_type=STATS, ncpus=2, stride=16)
    current = pc.encode({"per_cpu": [{"packets": 1, "bytes": 1}, {"packets": 2, "bytes": 2}]})
    given = {"bytes": 7}
    merged = pc.decode(merge_bytes(ops, current, given, pc.encode(given)))
    assert merged["per_cpu"] == [{"packets": 1, "bytes": 7}, {"packets": 2, "bytes": 7}]
    given = {"per_cpu": [{"packets": 5}, {"bytes": 6}]}
    merged = pc.decode(merge_bytes(ops, current, given, pc.encode(given)))
    assert merged["per_cpu"] == [{"packets": 5, "bytes": 1}, {"packets": 2, "bytes": 6}]


@pytest.mark.parametrize(("stack", "push"), [(False, [b"a", b"b"]), (True, [b"b", b"a"])])
def test_queue_overridden_pushes_so_that_pop_order_is_as_listed(stack: bool, push: list[bytes]) -> None:
    plan = plan_queue("overridden", [b"a", b"b"], [b"x"], stack)
    assert plan.drain and plan.push == push
    assert not plan_queue("overridden", [b"a"], [b"a"], stack).changed


def test_queue_merged_pushes_and_deleted_drains() -> None:
    assert plan_queue("merged", [b"a"], [b"x"], False).push == [b"a"]
    assert plan_queue("deleted", [], [b"x"], True).drain
    assert not plan_queue("deleted", [], [], True).changed
    with pytest.raises(PlanError):
        plan_queue("deleted", [b"a"], [b"x"], True)


# --- the C-level passes against the plain per-entry definition of each state ----------------------------------------


def _reference(state: str, want: list[tuple[int, dict]], have: dict[bytes, bytes]) -> tuple[dict, list, dict]:
    """What each state means, entry by entry: (upserts as {key: decoded value}, sorted deletes, counts)."""
    upserts: dict[bytes, dict] = {}
    deletes: list[bytes] = []
    counts = {"added": 0, "updated": 0, "removed": 0, "unchanged": 0}
    for i, fields in want:
        key = k(i)
        current = CODEC.decode(have[key]) if key in have else None
        if state == "deleted":
            if current is None:
                counts["unchanged"] += 1
            else:
                deletes.append(key)
                counts["removed"] += 1
            continue
        new = {"packets": 0, "bytes": 0, **fields}
        if state == "merged" and current is not None:
            new = {**current, **fields}
        if current is None:
            upserts[key] = new
            counts["added"] += 1
        elif current == new:
            counts["unchanged"] += 1
        else:
            upserts[key] = new
            counts["updated"] += 1
    if state == "overridden":
        declared = {k(i) for i, _given in want}
        for key in have:
            if key not in declared:
                deletes.append(key)
                counts["removed"] += 1
    return upserts, sorted(deletes), counts


_FIELDS = st.fixed_dictionaries({}, optional={"packets": st.integers(0, 3), "bytes": st.integers(0, 3)})


@settings(max_examples=300, deadline=None)
@given(
    state=st.sampled_from(["merged", "replaced", "overridden", "deleted"]),
    want_map=st.dictionaries(st.integers(0, 12), _FIELDS, max_size=10),
    have_map=st.dictionaries(st.integers(0, 12), _FIELDS, max_size=10),
    track=st.booleans(),
)
def test_plan_matches_the_per_entry_definition(
    state: str, want_map: dict[int, dict], have_map: dict[int, dict], track: bool
) -> None:
    have = {k(i): CODEC.encode(v) for i, v in have_map.items()}
    pairs = list(want_map.items())
    declared = Declared([k(i) for i, _given in pairs]) if state == "deleted" else want(*pairs)
    plan = plan_entries(state, declared, have, OPS, track_changes=track)
    upserts, deletes, counts = _reference(state, pairs, have)
    assert {key: CODEC.decode(value) for key, value in plan.upserts} == upserts
    assert len(plan.upserts) == len(upserts)  # no key written twice
    assert sorted(plan.deletes) == deletes
    assert plan.counts() == counts
    if track:
        assert {c.key for c in plan.changes} == set(upserts) | set(deletes)
        for c in plan.changes:
            assert c.before == have.get(c.key)
    else:
        assert plan.changes == []


def test_a_missing_value_is_named_by_its_entry() -> None:
    declared = Declared([k(1), k(2)], [bytes(16), None], [{}, None])  # type: ignore[list-item]
    with pytest.raises(PlanError, match=r"entries\[1\].value: required for state=merged"):
        plan_entries("merged", declared, {}, OPS)
