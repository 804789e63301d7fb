"""Planning of program deployments: reload reasons, map decisions, field-by-name conversions."""

from __future__ import annotations

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._program_plan import (
    Conversion,
    Desired,
    PlanError,
    convert_by_name,
    convert_per_cpu,
    decide_map,
    reload_reasons,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf, _schema
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec, MapState

V1 = _schema.type_from_schema(
    {
        "name": "stats",
        "fields": [
            {"name": "packets", "type": "u64"},
            {"name": "bytes", "type": "u64"},
            {"name": "old", "type": "u32"},
        ],
    }
)
V2 = _schema.type_from_schema(
    {
        "name": "stats",
        "fields": [
            {"name": "bytes", "type": "u64"},
            {"name": "packets", "type": "u64"},
            {"name": "drops", "type": "u32"},
        ],
    }
)
U32 = _schema.type_from_schema("u32", path="key")
STATE = {"object_digest": "a" * 64, "constants": {"port": 53}, "map_sizes": {}, "programs": {"xdp_main": {"id": 10}}}


def spec(value_t: _btf.BtfType, max_entries: int = 16, map_type: str = "hash") -> MapSpec:
    return MapSpec(
        path="/sys/fs/bpf/cnf/app/maps/stats",
        type=map_type,
        name="stats",
        key_size=4,
        value_size=value_t.size,
        max_entries=max_entries,
        key_type=U32,
        value_type=value_t,
    )


def state(value_t: _btf.BtfType, max_entries: int = 16, map_type: str = "hash") -> MapState:
    info = {
        "id": 3,
        "type": map_type,
        "name": "stats",
        "key_size": 4,
        "value_size": value_t.size,
        "max_entries": max_entries,
        "flags": 0,
        "flag_names": [],
        "btf_id": 9,
    }
    return MapState(path="/sys/fs/bpf/cnf/app/maps/stats", info=info, key_type=U32, value_type=value_t)


def test_nothing_to_do_when_object_constants_and_pins_match() -> None:
    assert reload_reasons(STATE, Desired("a" * 64, {"port": 53}), {"xdp_main": 10}) == []


def test_reload_reasons_name_what_changed() -> None:
    reasons = reload_reasons(STATE, Desired("b" * 64, {"port": 80}, {"flows": 4096}), {"xdp_main": None})
    assert reasons[0].startswith("object changed (aaaaaaaaaaaa -> bbbbbbbbbbbb)")
    assert "constant port: 53 -> 80" in reasons
    assert "map_sizes.flows: None -> 4096" in reasons
    assert "program xdp_main: pin missing (removed behind our back)" in reasons
    assert reload_reasons(None, Desired("a"), {}) == ["not deployed yet"]


def test_maps_are_reused_only_when_the_btf_layout_matches() -> None:
    assert decide_map(spec(V1), None, "fail").action == "create"
    assert decide_map(spec(V1), state(V1), "fail").action == "reuse"
    # Same size (20 -> 24 bytes differ here, but a same-size reorder must be caught too).
    swapped = _schema.type_from_schema(
        {
            "name": "stats",
            "fields": [
                {"name": "bytes", "type": "u64"},
                {"name": "packets", "type": "u64"},
                {"name": "old", "type": "u32"},
            ],
        }
    )
    with pytest.raises(PlanError, match=r"value\.packets"):
        decide_map(spec(swapped), state(V1), "fail")
    decision = decide_map(spec(swapped), state(V1), "migrate")
    assert decision.action == "migrate" and any("value.packets" in d for d in decision.differences)
    assert decide_map(spec(V1, 32), state(V1), "recreate").action == "recreate"


@pytest.mark.parametrize(("old", "new"), [("hash", "percpu_hash"), ("lru_hash", "lru_percpu_hash")])
def test_a_shared_value_map_migrates_into_its_per_cpu_kind(old: str, new: str) -> None:
    decision = decide_map(spec(V1, map_type=new), state(V1, map_type=old), "migrate")
    assert decision.action == "migrate" and decision.into_per_cpu is True
    assert any(old in d and new in d for d in decision.differences)
    # the same layout change under the other policies: refused with the reason, or started empty
    with pytest.raises(PlanError, match="map_policy=migrate"):
        decide_map(spec(V1, map_type=new), state(V1, map_type=old), "fail")
    recreated = decide_map(spec(V1, map_type=new), state(V1, map_type=old), "recreate")
    assert recreated.action == "recreate" and recreated.into_per_cpu is False
    # a migration between maps of one type is not a move into per-CPU values
    assert decide_map(spec(V2, map_type=new), state(V1, map_type=new), "migrate").into_per_cpu is False


@pytest.mark.parametrize(("old", "new"), [("percpu_hash", "hash"), ("lru_percpu_hash", "lru_hash")])
def test_per_cpu_values_do_not_migrate_back_into_one_value(old: str, new: str) -> None:
    with pytest.raises(PlanError) as refused:
        decide_map(spec(V1, map_type=new), state(V1, map_type=old), "migrate")
    msg = str(refused.value)
    assert f"cannot migrate a {old} map into a {new} map" in msg
    assert "one value per CPU" in msg and "map_policy=recreate" in msg and "nothing was changed" in msg


@pytest.mark.parametrize(("old", "new"), [("hash", "lru_hash"), ("hash", "lru_percpu_hash"), ("array", "hash")])
def test_other_type_changes_are_refused_for_migration(old: str, new: str) -> None:
    with pytest.raises(PlanError, match=f"cannot migrate a {old} map into a {new} map .*map_policy=recreate"):
        decide_map(spec(V1, map_type=new), state(V1, map_type=old), "migrate")


def test_conversion_by_field_name_reports_dropped_and_added_fields() -> None:
    report = Conversion()
    assert convert_by_name(V1, V2, {"packets": 5, "bytes": 900, "old": 1}, report) == {"bytes": 900, "packets": 5}
    assert report.dropped == {"value.old"} and report.added == {"value.drops"}


def test_per_cpu_values_convert_cpu_by_cpu() -> None:
    report = Conversion()
    value = {"per_cpu": [{"packets": 1, "bytes": 2, "old": 3}, {"packets": 4, "bytes": 5, "old": 6}], "sum": {}}
    assert convert_per_cpu(V1, V2, value, report) == {
        "per_cpu": [{"bytes": 2, "packets": 1}, {"bytes": 5, "packets": 4}]
    }
