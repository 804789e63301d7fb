"""Planning for map lifecycle: validation, comparison and the plan, with no kernel involved."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._map_plan import (
    SpecError,
    build_map_spec,
    default_map_name,
    describe_spec,
    map_differences,
    plan_map,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf, _schema
from ansible_collections.cnf.ebpf.plugins.module_utils.types._abi import MAP_FLAGS
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec, MapState

PAGE = 4096


def spec(**params: Any):
    params.setdefault("path", "/sys/fs/bpf/cnf/app/m")
    return build_map_spec(params, page_size=PAGE, possible_cpus=4)


def state_of(s, **info_overrides: Any) -> MapState:
    info = {
        "id": 7,
        "type": s.type,
        "name": s.name,
        "key_size": s.key_size,
        "value_size": s.value_size,
        "max_entries": s.max_entries,
        "flags": s.flags,
        "flag_names": [],
        "btf_id": 3,
    }
    info.update(info_overrides)
    return MapState(path=s.path, info=info, key_type=s.key_type, value_type=s.value_type)


def test_default_name_is_a_valid_kernel_name() -> None:
    assert default_map_name("/sys/fs/bpf/cnf/app/flow-table.v2-extra-long") == "flow_table.v2_e"


def test_array_key_defaults_to_u32() -> None:
    s = spec(type="array", value="u64", max_entries=4)
    assert s.key_size == 4 and _btf.type_name(s.key_type) == "unsigned int"


def test_lpm_key_data_is_wrapped_with_prefixlen_and_no_prealloc_is_set() -> None:
    s = spec(type="lpm_trie", key="u8[16]", value="u32", max_entries=4)
    assert s.key_size == 20
    key = _btf.resolve(s.key_type)
    assert [m.name for m in key.members] == ["prefixlen", "data"]
    assert s.flags & 1


def test_lpm_key_already_with_prefixlen_is_kept() -> None:
    key = {"name": "k", "fields": [{"name": "prefixlen", "type": "u32"}, {"name": "addr", "type": "u8[4]"}]}
    s = spec(type="lpm_trie", key=key, value="u32", max_entries=4)
    assert [m.name for m in _btf.resolve(s.key_type).members] == ["prefixlen", "addr"]


def test_one_typed_side_gets_a_byte_array_for_the_other() -> None:
    s = spec(type="hash", key_size=6, value="u32", max_entries=4)
    assert _btf.type_name(s.key_type) == "unsigned char[6]"


def test_perf_event_array_defaults_to_possible_cpus() -> None:
    s = spec(type="perf_event_array")
    assert (s.key_size, s.value_size, s.max_entries) == (4, 4, 4)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"type": "ringbuf", "max_entries": 3 * PAGE}, "max_entries: a ringbuf size must be a power-of-two multiple"),
        ({"type": "ringbuf", "max_entries": PAGE // 2}, "max_entries: a ringbuf size"),
        ({"type": "ringbuf", "max_entries": PAGE, "value": "u32"}, "value: ringbuf maps have no value type"),
        ({"type": "stack", "value": "u32"}, "max_entries: stack maps need max_entries"),
        ({"type": "hash", "value": "u32", "max_entries": 1}, "key: hash maps need a key type or key_size"),
        ({"type": "hash", "key": "u32", "max_entries": 1}, "value: hash maps need a value type or value_size"),
        ({"type": "hash", "key": "u32", "value": "u32", "max_entries": 0}, "max_entries: must be between 1"),
        ({"type": "lpm_trie", "key": "u8[300]", "value": "u32", "max_entries": 4}, "key: lpm_trie keys are"),
        (
            {"type": "array_of_maps", "max_entries": 4, "inner_map": {"type": "ringbuf", "max_entries": 100}},
            "inner_map.max_entries: a ringbuf size",
        ),
        (
            {"type": "hash", "key": "u32", "value": "u32", "max_entries": 4, "inner_map": {"path": "/x"}},
            "inner_map: only hash_of_maps and array_of_maps",
        ),
        ({"type": "hash", "key": "u32", "value": "u32", "max_entries": 4, "flags": ["fast"]}, "flags: unknown flag"),
        ({"type": "bloom", "max_entries": 4}, "type: 'bloom' is not one of"),
        (
            {"type": "hash", "key": "u32", "value": {"fields": [{"name": "a", "type": "nope"}]}, "max_entries": 4},
            "value.fields[0].type",
        ),
    ],
)
def test_invalid_declarations_name_the_option(params: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        spec(**params)
    assert message in str(err.value)


def test_matching_state_plans_nothing() -> None:
    s = spec(type="hash", key="u32", value={"fields": [{"name": "a", "type": "u64"}]}, max_entries=8)
    assert plan_map(s, state_of(s), "fail").action == "none"


def test_differences_are_listed_field_by_field() -> None:
    want = spec(
        type="hash",
        key="u32",
        value={"fields": [{"name": "a", "type": "u64"}, {"name": "b", "type": "u32"}]},
        max_entries=8,
    )
    have_value = _schema.type_from_schema({"fields": [{"name": "a", "type": "u32"}, {"name": "c", "type": "u32"}]})
    have = state_of(want, max_entries=16, value_size=8)
    have.value_type = have_value
    diffs = map_differences(want, have)
    assert "max_entries: existing 16, declared 8" in diffs
    assert "value_size: existing 8, declared 16" in diffs
    assert any(d.startswith("value.a") for d in diffs)
    assert plan_map(want, have, "fail").action == "mismatch"
    assert plan_map(want, have, "recreate").action == "recreate"


def test_untyped_existing_map_is_a_difference_when_types_are_declared() -> None:
    want = spec(type="hash", key="u32", value="u64", max_entries=8)
    have = state_of(want, btf_id=0)
    have.key_type = have.value_type = None
    assert any("has no BTF type information" in d for d in map_differences(want, have))


def test_absent_plans() -> None:
    s = spec(type="queue", value="u32", max_entries=2)
    assert plan_map(None, state_of(s), "fail").action == "remove"
    assert plan_map(None, None, "fail").action == "absent"
    assert plan_map(s, None, "fail").action == "create"


def test_describe_spec_has_no_kernel_id() -> None:
    described = describe_spec(spec(type="hash", key="u32", value="u64", max_entries=8))
    assert "id" not in described and described["key_type"] == "unsigned int"


def test_flags_the_kernel_sets_are_no_difference() -> None:
    """The kernel adds BPF_F_RDONLY_PROG to every devmap: a pinned devmap with it is the declared devmap. A flag the
    kernel does not add by itself still counts, on a devmap as on any map."""
    devmap = MapSpec(
        path="/sys/fs/bpf/cnf/app/maps/tx_port", type="devmap", name="tx_port", key_size=4, value_size=4, max_entries=8
    )
    rdonly_prog, wronly = MAP_FLAGS["rdonly_prog"], MAP_FLAGS["wronly"]
    assert map_differences(devmap, state_of(devmap, flags=rdonly_prog)) == []
    assert map_differences(devmap, state_of(devmap, flags=rdonly_prog | wronly)) == [
        "flags: existing ['wronly'], declared []"
    ]
    array = MapSpec(path="/sys/fs/bpf/cnf/app/maps/a", type="array", name="a", key_size=4, value_size=4, max_entries=8)
    assert map_differences(array, state_of(array, flags=rdonly_prog)) == [
        "flags: existing ['rdonly_prog'], declared []"
    ]
