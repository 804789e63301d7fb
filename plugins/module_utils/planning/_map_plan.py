# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Map lifecycle: validate a declared map, compare it with the pinned one, decide what to do.

Pure functions: no file descriptors, no syscalls. Check mode, diff mode and the real run share the same plan.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.types import _btf, _layout_compare, _schema
from ansible_collections.cnf.ebpf.plugins.module_utils.types._abi import (
    BTF_MAP_TYPES,
    MAP_FLAGS,
    declared_map_flags,
    flag_names,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec, MapState

# The flags a declared map may carry (bpf_map's choices).
MAP_FLAG_NAMES = tuple(MAP_FLAGS)

MANAGED_MAP_TYPES = (
    "hash",
    "lru_hash",
    "percpu_hash",
    "lru_percpu_hash",
    "hash_of_maps",
    "array",
    "percpu_array",
    "array_of_maps",
    "ringbuf",
    "perf_event_array",
    "queue",
    "stack",
    "lpm_trie",
)
HASH_TYPES = frozenset({"hash", "lru_hash", "percpu_hash", "lru_percpu_hash"})
ARRAY_TYPES = frozenset({"array", "percpu_array"})
_MAP_NAME_RE = re.compile(r"[^A-Za-z0-9_.]")
# LPM trie keys: a u32 prefix length followed by at most 256 bytes of data (LPM_DATA_SIZE_MAX).
_LPM_DATA_MAX = 256


class SpecError(ValueError):
    """An invalid declaration; the message starts with the option (field path) at fault."""


@dataclass
class MapPlan:
    action: str  # create | recreate | none | remove | absent | mismatch
    differences: list[str] = field(default_factory=list)


def default_map_name(path: str) -> str:
    """Kernel map names are at most 15 characters of [A-Za-z0-9_.]; derive one from the pin's file name."""
    return _MAP_NAME_RE.sub("_", posixpath.basename(path))[:15]


def _type_or_size(params: dict[str, Any], side: str) -> tuple[_btf.BtfType | None, int | None]:
    schema = params.get(side)
    size = params.get(f"{side}_size")
    t = None
    if schema is not None:
        try:
            t = _schema.type_from_schema(schema, path=side)
        except _btf.BtfError as exc:
            raise SpecError(str(exc)) from exc
        if size is not None and size != t.size:
            raise SpecError(f"{side}_size: {size} contradicts {side} type {_btf.type_name(t)} of {t.size} bytes")
        size = t.size
    return t, size


def _is_lpm_key(t: _btf.BtfType) -> bool:
    r = _btf.resolve(t)
    if not isinstance(r, _btf.Struct) or r.is_union or not r.members:
        return False
    first = r.members[0]
    return first.name == "prefixlen" and first.bit_offset == 0 and _btf.resolve(first.type).size == 4


def lpm_key_type(data: _btf.BtfType, map_name: str, packed: bool = False) -> _btf.BtfType:
    """Wrap a data type (u8[4], u8[16], a struct...) into the `struct { u32 prefixlen; data; }` key LPM tries need
    (packed: no trailing padding, for a key size that is not a multiple of 4)."""
    return _schema.type_from_schema(
        {
            "name": f"{map_name}_lpm_key",
            "packed": packed,
            "fields": [{"name": "prefixlen", "type": "u32"}, {"name": "data", "type": _schema.to_schema(data)}],
        },
        path="key",
    )


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise SpecError(message)


def build_map_spec(params: dict[str, Any], *, page_size: int, possible_cpus: int, path_key: str = "path") -> MapSpec:
    """Validate module parameters (already type-checked by Ansible) into a MapSpec, or raise SpecError.

    Nothing on the host is touched: impossible declarations fail here, before anything is created."""
    path = params[path_key]
    map_type = params.get("type")
    _require(bool(path) and posixpath.isabs(path), f"{path_key}: {path!r} must be an absolute path on bpffs")
    _require(map_type in MANAGED_MAP_TYPES, f"type: {map_type!r} is not one of {', '.join(MANAGED_MAP_TYPES)}")
    name = params.get("name") or default_map_name(path)
    _require(
        len(name) <= 15 and not _MAP_NAME_RE.search(name),
        f"name: {name!r} must be at most 15 characters of letters, digits, '_' and '.'",
    )
    flags = 0
    for flag in params.get("flags") or []:
        _require(flag in MAP_FLAGS, f"flags: unknown flag {flag!r}; known: {', '.join(MAP_FLAGS)}")
        flags |= MAP_FLAGS[flag]
    key_type, key_size = _type_or_size(params, "key")
    value_type, value_size = _type_or_size(params, "value")
    max_entries = params.get("max_entries")
    inner = None
    inner_path = None

    if map_type in HASH_TYPES or map_type in ARRAY_TYPES or map_type in ("hash_of_maps", "array_of_maps"):
        if map_type in ARRAY_TYPES or map_type == "array_of_maps":
            if key_type is None and key_size is None:
                key_type, key_size = _schema.type_from_schema("u32", path="key"), 4
            _require(key_size == 4, f"key: {map_type} maps are indexed by a 4-byte key (u32), not {key_size} bytes")
        _require(key_size is not None and key_size > 0, f"key: {map_type} maps need a key type or key_size")
    if map_type in ("hash_of_maps", "array_of_maps"):
        _require(value_type is None, f"value: {map_type} values are inner maps; declare them with inner_map")
        _require(value_size in (None, 4), f"value_size: {map_type} values are 4-byte map ids")
        value_size = 4
        inner_params = params.get("inner_map")
        _require(bool(inner_params), f"inner_map: {map_type} maps need inner_map (a pinned map path or a map spec)")
        if inner_params.get("path") and not inner_params.get("type"):
            inner_path = inner_params["path"]
        else:
            # The template is never pinned; its "path" only names it in errors.
            inner_decl = dict(inner_params, path=inner_params.get("path") or path + ".inner")
            try:
                inner = build_map_spec(inner_decl, page_size=page_size, possible_cpus=possible_cpus)
            except SpecError as exc:
                raise SpecError(f"inner_map.{exc}") from exc
            _require(
                inner.type not in ("hash_of_maps", "array_of_maps"), "inner_map.type: maps of maps cannot be nested"
            )
    elif params.get("inner_map"):
        raise SpecError(f"inner_map: only hash_of_maps and array_of_maps take an inner map, not {map_type}")

    if map_type in HASH_TYPES or map_type in ARRAY_TYPES or map_type in ("queue", "stack"):
        _require(value_size is not None and value_size > 0, f"value: {map_type} maps need a value type or value_size")
    if map_type == "lpm_trie":
        _require(key_type is not None or key_size is not None, "key: lpm_trie maps need a key type or key_size")
        if key_type is not None and not _is_lpm_key(key_type):
            key_type = lpm_key_type(key_type, name)
            key_size = key_type.size
        _require(
            5 <= (key_size or 0) <= 4 + _LPM_DATA_MAX,
            f"key: lpm_trie keys are a u32 prefixlen plus 1..{_LPM_DATA_MAX} bytes of data, not {key_size} bytes",
        )
        _require(value_size is not None and value_size > 0, "value: lpm_trie maps need a value type or value_size")
        # The kernel refuses LPM tries without BPF_F_NO_PREALLOC; set it rather than make every user repeat it.
        flags |= MAP_FLAGS["no_prealloc"]
    if map_type in ("queue", "stack"):
        _require(key_type is None and not key_size, f"key: {map_type} maps have no key")
        key_size = 0
    if map_type == "ringbuf":
        _require(key_type is None and not key_size, "key: ringbuf maps have no key")
        _require(
            value_type is None and not value_size, "value: ringbuf maps have no value type; size it with max_entries"
        )
        key_size = value_size = 0
        _require(max_entries is not None, "max_entries: ringbuf maps need their size in bytes")
        _require(
            max_entries >= page_size and max_entries % page_size == 0 and (max_entries & (max_entries - 1)) == 0,
            f"max_entries: a ringbuf size must be a power-of-two multiple of the page size ({page_size}), "
            f"not {max_entries}",
        )
    if map_type == "perf_event_array":
        _require(
            key_size in (None, 4) and value_size in (None, 4),
            "key, value: perf_event_array maps use u32 keys and values",
        )
        key_size = value_size = 4
        key_type = value_type = None  # the kernel does not take BTF for perf event arrays
        if max_entries is None:
            max_entries = possible_cpus
    _require(max_entries is not None, f"max_entries: {map_type} maps need max_entries")
    _require(0 < max_entries < 2**32, f"max_entries: must be between 1 and 4294967295, not {max_entries}")
    if map_type in BTF_MAP_TYPES and (key_type is None) != (value_type is None):
        # The kernel wants BTF for both sides or neither: describe the undeclared side as plain bytes.
        if key_type is None and map_type == "lpm_trie":
            # The kernel takes only a struct as an LPM trie's key BTF (EINVAL for u8[N]). Of the two keys it accepts
            # (that struct, or no BTF at all, which the typed value rules out), the struct C programs declare
            # (struct bpf_lpm_trie_key_u8: u32 prefixlen, then the data bytes) reads back best: bpftool prints the
            # prefix length and the data apart, and bpf_map_entries takes and gives CIDR text for 4- and 16-byte
            # data, {prefixlen, data} otherwise (docs/schemas.md).
            data = _schema.type_from_schema(f"u8[{key_size - 4}]", path="key")
            key_type = lpm_key_type(data, name, packed=key_size % 4 != 0)  # its size must be key_size exactly
        elif key_type is None and map_type in ARRAY_TYPES:
            key_type = _schema.type_from_schema("u32", path="key")  # the only key BTF arrays take (EINVAL for u8[4])
        elif key_type is None:
            key_type = _schema.type_from_schema(f"u8[{key_size}]", path="key")
        else:
            value_type = _schema.type_from_schema(f"u8[{value_size}]", path="value")
    numa_node = params.get("numa_node")
    _require(numa_node is None or numa_node >= 0, f"numa_node: must be >= 0, not {numa_node}")
    return MapSpec(
        path=path,
        type=map_type,
        name=name,
        key_size=key_size or 0,
        value_size=value_size or 0,
        max_entries=max_entries,
        flags=flags,
        key_type=key_type,
        value_type=value_type,
        numa_node=numa_node,
        inner=inner,
        inner_path=inner_path,
    )


def map_differences(spec: MapSpec, state: MapState) -> list[str]:
    """Field-by-field reasons why the pinned map cannot serve as the declared one (empty when it can)."""
    info = state.info
    diffs = []
    for label, want, have in (
        ("type", spec.type, info["type"]),
        ("key_size", spec.key_size, info["key_size"]),
        ("value_size", spec.value_size, info["value_size"]),
        ("max_entries", spec.max_entries, info["max_entries"]),
        (
            "flags",
            flag_names(declared_map_flags(spec.type, spec.flags)),
            flag_names(declared_map_flags(info["type"], info["flags"])),
        ),
    ):
        if want != have:
            diffs.append(f"{label}: existing {have!r}, declared {want!r}")
    if spec.numa_node is not None and not info["flags"] & MAP_FLAGS["numa_node"]:
        diffs.append(f"numa_node: existing map was not created on a chosen NUMA node, declared {spec.numa_node}")
    for side, want_t, have_t in (("key", spec.key_type, state.key_type), ("value", spec.value_type, state.value_type)):
        if want_t is None or spec.type not in BTF_MAP_TYPES:
            continue
        if have_t is None:
            diffs.append(f"{side}: existing map has no BTF type information, declared {_btf.type_name(want_t)}")
            continue
        diffs.extend(_layout_compare.compare_layout(have_t, want_t, path=side))
    return diffs


def plan_map(spec: MapSpec | None, state: MapState | None, on_mismatch: str) -> MapPlan:
    """What to do: spec None means the map should be absent."""
    if spec is None:
        return MapPlan("remove" if state is not None else "absent")
    if state is None:
        return MapPlan("create")
    diffs = map_differences(spec, state)
    if not diffs:
        return MapPlan("none")
    return MapPlan("recreate" if on_mismatch == "recreate" else "mismatch", diffs)


def describe_type(t: _btf.BtfType | None) -> Any:
    return None if t is None else _schema.to_schema(t)


def describe_spec(spec: MapSpec) -> dict[str, Any]:
    """The declared map in the shape `describe_state` reports, so diffs compare like with like."""
    return {
        "path": spec.path,
        "type": spec.type,
        "name": spec.name,
        "key_size": spec.key_size,
        "value_size": spec.value_size,
        "max_entries": spec.max_entries,
        "flags": flag_names(spec.flags),
        "key_type": None if spec.key_type is None else _btf.type_name(spec.key_type),
        "value_type": None if spec.value_type is None else _btf.type_name(spec.value_type),
    }


def describe_state(state: MapState) -> dict[str, Any]:
    info = state.info
    return {
        "path": state.path,
        "id": info["id"],
        "type": info["type"],
        "name": info["name"],
        "key_size": info["key_size"],
        "value_size": info["value_size"],
        "max_entries": info["max_entries"],
        "flags": info["flag_names"],
        "btf_id": info["btf_id"],
        "key_type": None if state.key_type is None else _btf.type_name(state.key_type),
        "value_type": None if state.value_type is None else _btf.type_name(state.value_type),
        "key_schema": describe_type(state.key_type),
        "value_schema": describe_type(state.value_type),
    }
