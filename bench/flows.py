"""The map shape the benches share: a hash map keyed by the packed 13-byte flow_key, valued by a 32-byte
flow_stats, with BTF (the classic flow example; tests/schemas.py holds the same schemas for the tests)."""

from __future__ import annotations

from collections.abc import Callable

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._bpf_map import BpfMap
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _schema
from ansible_collections.cnf.ebpf.plugins.module_utils.types._codec import Codec, compile_codec
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec

FLOW_KEY = {
    "name": "flow_key",
    "packed": True,
    "fields": [
        {"name": "src_ip", "type": "u32"},
        {"name": "dst_ip", "type": "u32"},
        {"name": "src_port", "type": "u16"},
        {"name": "dst_port", "type": "u16"},
        {"name": "protocol", "type": "u8"},
    ],
}
FLOW_STATS = {
    "name": "flow_stats",
    "fields": [{"name": n, "type": "u64"} for n in ("packets", "bytes", "first_seen", "last_seen")],
}


def create_flow_map(path: str, n: int, bytes_of: Callable[[int], int]) -> tuple[BpfMap, Codec, Codec]:
    """A pinned flow map of n flows (flow i: src_ip i, i packets, bytes_of(i) bytes); the caller closes the map."""
    key_t = _schema.type_from_schema(FLOW_KEY, path="key")
    value_t = _schema.type_from_schema(FLOW_STATS, path="value")
    spec = MapSpec(
        path=path,
        type="hash",
        name="bench",
        key_size=key_t.size,
        value_size=value_t.size,
        max_entries=n,
        key_type=key_t,
        value_type=value_t,
    )
    key_codec = compile_codec(key_t, root="key")
    value_codec = compile_codec(value_t, root="value")
    bpf_map = _maps.create_map(spec)
    bpf_map.pin(path)
    keys = key_codec.encode_many(
        [{"src_ip": i, "dst_ip": 7, "src_port": i & 0xFFFF, "dst_port": 443, "protocol": 6} for i in range(n)]
    )
    values = value_codec.encode_many(
        [{"packets": i, "bytes": bytes_of(i), "first_seen": 1, "last_seen": 2} for i in range(n)]
    )
    bpf_map.update_many(list(zip(keys, values)))
    return bpf_map, key_codec, value_codec
