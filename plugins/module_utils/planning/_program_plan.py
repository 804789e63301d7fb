# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Program deployments: whether to (re)load, what to do with each map (reuse the pinned one,
create, recreate or migrate it), and how values move from an old map layout to a new one by field name.

Pure: no file descriptors, no syscalls. Check mode and the real run share these decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.planning._map_plan import map_differences
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec, MapState

MAP_POLICIES = ("fail", "recreate", "migrate")
# Map types whose entries migrate into another type: a shared-value map into the per-CPU kind of the same map, each
# old value into one CPU's slot and zeros into the others' (so that sums over CPUs are the old totals).
INTO_PER_CPU = {"hash": "percpu_hash", "lru_hash": "lru_percpu_hash"}


class PlanError(ValueError):
    """A deployment that cannot go ahead as declared; the message says what and why."""


@dataclass
class Desired:
    """What a bpf_program task declares, reduced to what decides a reload."""

    object_digest: str
    constants: dict[str, Any] = field(default_factory=dict)
    map_sizes: dict[str, int] = field(default_factory=dict)
    # Program name -> the kernel program type it loads as (known when the object was inspected): the same object
    # loaded with other program_types is another deployment.
    program_types: dict[str, str] | None = None


def reload_reasons(state: dict[str, Any] | None, desired: Desired, live_prog_ids: dict[str, int | None]) -> list[str]:
    """Why the application must be (re)loaded; empty when what runs is what was declared.

    `live_prog_ids` maps each program the object defines to the id pinned for it now (None: the pin is missing)."""
    if state is None:
        return ["not deployed yet"]
    reasons = []
    if state.get("object_digest") != desired.object_digest:
        reasons.append(f"object changed ({str(state.get('object_digest'))[:12]} -> {desired.object_digest[:12]})")
    old_constants = state.get("constants") or {}
    for name in sorted(set(old_constants) | set(desired.constants)):
        if old_constants.get(name) != desired.constants.get(name):
            reasons.append(f"constant {name}: {old_constants.get(name)!r} -> {desired.constants.get(name)!r}")
    old_sizes = state.get("map_sizes") or {}
    for name in sorted(set(old_sizes) | set(desired.map_sizes)):
        if old_sizes.get(name) != desired.map_sizes.get(name):
            reasons.append(f"map_sizes.{name}: {old_sizes.get(name)!r} -> {desired.map_sizes.get(name)!r}")
    deployed = state.get("programs") or {}
    for prog, prog_type in sorted((desired.program_types or {}).items()):
        recorded_type = (deployed.get(prog) or {}).get("type")
        if recorded_type and recorded_type != prog_type:
            reasons.append(f"program {prog}: type {recorded_type} -> {prog_type}")
    for prog, live_id in sorted(live_prog_ids.items()):
        recorded = (deployed.get(prog) or {}).get("id")
        if live_id is None:
            reasons.append(f"program {prog}: pin missing (removed behind our back)")
        elif recorded != live_id:
            reasons.append(f"program {prog}: pinned id {live_id} is not the deployed id {recorded}")
    return reasons


def declared_map(m: Any, path: str, max_entries: int) -> MapSpec:
    """The map an object declares (a `resources._objects.MapSpecInObject`), as pinned at `path` with `max_entries`
    (the object's own unless map_sizes says otherwise)."""
    return MapSpec(
        path=path,
        type=m.type,
        name=m.name,
        key_size=m.key_size,
        value_size=m.value_size,
        max_entries=max_entries,
        flags=m.flags,
        key_type=m.key_type,
        value_type=m.value_type,
    )


@dataclass
class MapDecision:
    name: str
    action: str  # reuse | create | recreate | migrate
    pin: str
    differences: list[str] = field(default_factory=list)
    # migrate only: the old map's values are not per-CPU and the new map's are (see INTO_PER_CPU)
    into_per_cpu: bool = False


def decide_map(spec: MapSpec, pinned: MapState | None, policy: str) -> MapDecision:
    """Reuse a pinned map only when its whole layout matches (type, sizes, max_entries, flags, and the BTF layout
    of key and value: field names, offsets, sizes, kinds); libbpf alone would only compare sizes."""
    if pinned is None:
        return MapDecision(spec.name, "create", spec.path)
    differences = map_differences(spec, pinned)
    if not differences:
        return MapDecision(spec.name, "reuse", spec.path)
    if policy == "fail":
        raise PlanError(
            f"map {spec.name} ({spec.path}) is pinned with another layout: {'; '.join(differences)}; "
            "set map_policy=migrate to carry its entries over by field name, or recreate to start it empty"
        )
    old_type = pinned.info["type"]
    if policy == "migrate" and spec.type != old_type:
        if INTO_PER_CPU.get(old_type) == spec.type:
            return MapDecision(spec.name, policy, spec.path, differences, into_per_cpu=True)
        raise PlanError(f"map {spec.name} ({spec.path}): {migration_refusal(old_type, spec.type)}; nothing was changed")
    return MapDecision(spec.name, policy, spec.path, differences)


def migration_refusal(old_type: str, new_type: str) -> str:
    """Why the entries of an `old_type` map cannot be carried into a `new_type` map, with the way out."""
    if INTO_PER_CPU.get(new_type) == old_type:
        return (
            f"cannot migrate a {old_type} map into a {new_type} map: each entry holds one value per CPU and there is "
            "no single value to keep (counters would add up, but timestamps or states would not); "
            "use map_policy=recreate to start it empty, or deploy a build that keeps the per-CPU map"
        )
    into = ", ".join(f"{a} -> {b}" for a, b in INTO_PER_CPU.items())
    return (
        f"cannot migrate a {old_type} map into a {new_type} map (entries migrate between maps of one type, or {into}); "
        "use map_policy=recreate to start it empty"
    )


@dataclass
class Conversion:
    """Field-by-name conversion of one side (key or value) of a map, with what it drops and what it adds."""

    dropped: set[str] = field(default_factory=set)
    added: set[str] = field(default_factory=set)


def convert_by_name(
    old_t: _btf.BtfType | None, new_t: _btf.BtfType | None, value: Any, report: Conversion, path: str = "value"
) -> Any:
    """A decoded value of old_t reshaped for new_t: struct fields are matched by name (recursively); fields only
    in the old type are dropped, fields only in the new type are left out (so they encode as zero). Scalars and
    arrays go through as they are: the new codec range-checks them, and a value that does not fit fails the
    migration instead of being truncated silently."""
    old_r = _btf.resolve(old_t) if old_t is not None else None
    new_r = _btf.resolve(new_t) if new_t is not None else None
    if not (isinstance(new_r, _btf.Struct) and not new_r.is_union and isinstance(value, dict)):
        return value
    old_members = _member_types(old_r) if isinstance(old_r, _btf.Struct) else {}
    new_members = _member_types(new_r)
    out = {}
    for name, new_member_t in new_members.items():
        if name in value:
            out[name] = convert_by_name(old_members.get(name), new_member_t, value[name], report, f"{path}.{name}")
        else:
            report.added.add(f"{path}.{name}")
    report.dropped.update(f"{path}.{name}" for name in value if name not in new_members)
    return out


def _member_types(t: _btf.Struct) -> dict[str, _btf.BtfType]:
    """Named members, with anonymous members' fields flattened in (as the codecs decode them)."""
    members: dict[str, _btf.BtfType] = {}
    for member in t.members:
        inner = _btf.resolve(member.type)
        if not member.name and isinstance(inner, _btf.Struct):
            members.update(_member_types(inner))
        elif member.name:
            members[member.name] = member.type
    return members


def convert_per_cpu(
    old_t: _btf.BtfType | None, new_t: _btf.BtfType | None, value: dict[str, Any], report: Conversion
) -> dict[str, Any]:
    return {"per_cpu": [convert_by_name(old_t, new_t, v, report) for v in value["per_cpu"]]}
