"""cnf.ebpf.bpf_map_entries against the real kernel, written from the module's specification.

Every state is run on every kind of map and cross-checked with `bpftool -j map dump` (raw bytes we encode ourselves
with `struct`, plus bpftool's own BTF-formatted view where the map has BTF). Queues and stacks cannot be dumped, so
they are checked by popping them with bpftool at the end.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import re
import shutil
import socket
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf
from tests.schemas import FLOW_KEY, FLOW_STATS

from .conftest import BPFFS, bpftool, run_module, run_playbook

NCPUS = _libbpf.num_possible_cpus()

FLOW_FORMATS = {"key.src_ip": "ipv4", "key.dst_ip": "ipv4"}
PCPU_STATS = {"name": "pcpu_stats", "fields": [{"name": "packets", "type": "u64"}, {"name": "bytes", "type": "u64"}]}
NESTED = {
    "name": "nested_val",
    "fields": [
        {
            "name": "inner",
            "type": {"name": "inner_pair", "fields": [{"name": "a", "type": "u32"}, {"name": "b", "type": "u32"}]},
        },
        {"name": "flags", "type": "u16"},
    ],
}
COUNTS_KEYS = ("added", "updated", "removed", "unchanged")


# --- helpers -------------------------------------------------------------------------------------------------------


def make_map(path: Path | str, **args: Any) -> dict[str, Any]:
    result = run_module("bpf_map", dict(args, path=str(path)))
    assert not result.get("failed"), result
    return result["map"]


def entries_mod(
    path: Path | str,
    state: str | None = None,
    entries: Any = None,
    check: bool = False,
    diff: bool = False,
    **opts: Any,
) -> dict[str, Any]:
    args: dict[str, Any] = {"path": str(path), **opts}
    if state is not None:
        args["state"] = state
    if entries is not None:
        args["entries"] = entries
    return run_module("bpf_map_entries", args, check=check, diff=diff)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("failed"), f"module failed: {result.get('msg')!r}\n{result}"
    return result


def counts(added: int = 0, updated: int = 0, removed: int = 0, unchanged: int = 0) -> dict[str, int]:
    return {"added": added, "updated": updated, "removed": removed, "unchanged": unchanged}


def hexb(items: list[str]) -> bytes:
    return bytes(int(b, 16) for b in items)


def dump(path: Path | str) -> list[dict[str, Any]]:
    return bpftool("map", "dump", "pinned", str(path))


def raw_items(path: Path | str) -> dict[bytes, Any]:
    """key bytes -> value bytes (per-CPU maps: a tuple of each CPU's value bytes), from bpftool."""
    out: dict[bytes, Any] = {}
    for e in dump(path):
        if "values" in e:
            out[hexb(e["key"])] = tuple(hexb(v["value"]) for v in sorted(e["values"], key=lambda v: v["cpu"]))
        else:
            out[hexb(e["key"])] = hexb(e["value"])
    return out


def formatted(path: Path | str) -> list[dict[str, Any]]:
    return [e["formatted"] for e in dump(path)]


def pop_all(path: Path | str) -> list[bytes]:
    """Drain a queue/stack with bpftool, in pop order (destructive: only at the end of a test)."""
    out: list[bytes] = []
    for _i in range(10_000):
        try:
            got = bpftool("map", "pop", "pinned", str(path))
        except Exception:  # bpftool exits non-zero when empty
            break
        if not got:
            break
        out.append(hexb(got["value"]))
    return out


def peek(path: Path | str) -> bytes | None:
    try:
        got = bpftool("map", "peek", "pinned", str(path))
    except Exception:
        return None
    return hexb(got["value"]) if got else None


def map_id(path: Path | str) -> int:
    return bpftool("map", "show", "pinned", str(path))["id"]


def ip4(text: str) -> bytes:
    return socket.inet_aton(text)


def flow_key(src: str, dst: str, sport: int, dport: int, proto: int) -> dict[str, Any]:
    return {"src_ip": src, "dst_ip": dst, "src_port": sport, "dst_port": dport, "protocol": proto}


def enc_flow_key(k: dict[str, Any]) -> bytes:
    return struct.pack("!4s4sHHB", ip4(k["src_ip"]), ip4(k["dst_ip"]), k["src_port"], k["dst_port"], k["protocol"])


def flow_stats(p: int, b: int, f: int = 0, last: int = 0) -> dict[str, int]:
    return {"packets": p, "bytes": b, "first_seen": f, "last_seen": last}


def enc_flow_stats(v: dict[str, int]) -> bytes:
    return struct.pack("<4Q", *(v.get(n, 0) for n in ("packets", "bytes", "first_seen", "last_seen")))


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def lpm_key(cidr: str) -> bytes:
    net = ipaddress.ip_network(cidr)
    return struct.pack("<I", net.prefixlen) + net.network_address.packed


# --- generic scenario for keyed maps (hash-like) -------------------------------------------------------------------


@dataclass
class Kind:
    """How to talk about one keyed map: six keys and five values in the module's input form, our own encoders and
    the form `gathered` must give back."""

    path: Path
    keys: list[Any]
    values: list[Any]
    enc_key: Callable[[Any], bytes]
    enc_value: Callable[[Any], Any]
    opts: dict[str, Any] = field(default_factory=dict)
    gathered: Callable[[Any, Any], dict[str, Any]] = lambda k, v: {"key": k, "value": v}
    warns_evict: bool = False


def _pc_canon(v: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    per = v["per_cpu"] if isinstance(v, dict) and "per_cpu" in v else [v] * NCPUS
    return {"per_cpu": per, "sum": {f: sum(p[f] for p in per) for f in fields}}


def kind_hash(pin_dir: Path) -> Kind:
    path = pin_dir / "flows"
    make_map(path, type="hash", key=FLOW_KEY, value=FLOW_STATS, max_entries=64)
    keys = [flow_key(f"10.0.0.{i + 1}", "192.168.7.42", 1000 + i, 443, 6 if i % 2 else 17) for i in range(6)]
    values = [flow_stats(i + 1, 100 * (i + 1), 1_000_000 + i, 2_000_000 + i) for i in range(5)]
    return Kind(path, keys, values, enc_flow_key, enc_flow_stats, opts={"formats": FLOW_FORMATS})


def kind_lru(pin_dir: Path) -> Kind:
    path = pin_dir / "lru"
    make_map(path, type="lru_hash", key="u32", value="u64", max_entries=256)
    return Kind(path, [11, 22, 33, 44, 55, 66], [1, 2, 3, (1 << 64) - 1, 0], u32, u64, warns_evict=True)


def kind_percpu(pin_dir: Path, map_type: str = "percpu_hash") -> Kind:
    path = pin_dir / "pcpu"
    make_map(path, type=map_type, key="u32", value=PCPU_STATS, max_entries=32)
    fields = ("packets", "bytes")

    def enc_v(v: Any) -> tuple[bytes, ...]:
        per = v["per_cpu"] if isinstance(v, dict) and "per_cpu" in v else [v] * NCPUS
        return tuple(struct.pack("<2Q", p["packets"], p["bytes"]) for p in per)

    values = [
        {"packets": 1, "bytes": 10},
        {"per_cpu": [{"packets": 2 + c, "bytes": 20 + c} for c in range(NCPUS)]},
        {"packets": 3, "bytes": 30},
        {"per_cpu": [{"packets": 40 * c, "bytes": 400 + c} for c in range(NCPUS)]},
        {"packets": 5, "bytes": 50},
    ]
    return Kind(
        path,
        [7, 8, 9, 10, 11, 12],
        values,
        u32,
        enc_v,
        gathered=lambda k, v: {"key": k, "value": _pc_canon(v, fields)},
    )


def kind_lpm4(pin_dir: Path) -> Kind:
    path = pin_dir / "lpm4"
    make_map(path, type="lpm_trie", key="u8[4]", value="u32", max_entries=64)
    keys = ["10.0.0.0/8", "10.1.0.0/16", "192.168.7.0/24", "192.168.7.42/32", "0.0.0.0/0", "172.16.0.0/12"]
    return Kind(path, keys, [1, 2, 3, 4, 5], lpm_key, u32)


def kind_lpm6(pin_dir: Path) -> Kind:
    path = pin_dir / "lpm6"
    make_map(path, type="lpm_trie", key="u8[16]", value="u32", max_entries=64)
    keys = ["2001:db8::/32", "2001:db8:1::/48", "fe80::/10", "::/0", "2001:db8::1/128", "fd00:1:2:3::/64"]
    return Kind(path, keys, [1, 2, 3, 4, 5], lpm_key, u32)


def kind_hom(pin_dir: Path) -> Kind:
    path = pin_dir / "outer"
    inner = {"type": "array", "value": "u64", "max_entries": 4}
    make_map(path, type="hash_of_maps", key="u32", max_entries=16, inner_map=inner)
    inners = [pin_dir / f"inner{i}" for i in range(5)]
    ids = {}
    for p in inners:
        ids[str(p)] = make_map(p, **inner)["id"]
    return Kind(
        path,
        [1, 2, 3, 4, 5, 6],
        [str(p) for p in inners],
        u32,
        lambda v: u32(ids[v]),
        gathered=lambda k, v: {"key": k, "value": v, "inner_map_id": ids[v]},
    )


KINDS: dict[str, Callable[[Path], Kind]] = {
    "hash": kind_hash,
    "lru_hash": kind_lru,
    "percpu_hash": kind_percpu,
    "lru_percpu_hash": lambda pin_dir: kind_percpu(pin_dir, "lru_percpu_hash"),
    "lpm_trie_v4": kind_lpm4,
    "lpm_trie_v6": kind_lpm6,
    "hash_of_maps": kind_hom,
}


def _expect_raw(kind: Kind, content: dict[int, int]) -> dict[bytes, Any]:
    """content: key index -> value index."""
    return {kind.enc_key(kind.keys[k]): kind.enc_value(kind.values[v]) for k, v in content.items()}


def _entries(kind: Kind, pairs: list[tuple[int, int]]) -> list[dict[str, Any]]:
    return [{"key": kind.keys[k], "value": kind.values[v]} for k, v in pairs]


def _run_twice(
    kind: Kind, state: str, entries: Any, first: dict[str, int], second: dict[str, int], expect: dict[bytes, Any]
) -> None:
    """Run a state, check counts and the kernel; run it again and check it is idempotent."""
    r1 = ok(entries_mod(kind.path, state, entries, **kind.opts))
    assert r1["changed"] is True, (state, r1)
    assert r1["counts"] == first, (state, r1["counts"])
    assert raw_items(kind.path) == expect, state
    r2 = ok(entries_mod(kind.path, state, entries, **kind.opts))
    assert r2["changed"] is False, (state, "second run", r2)
    assert r2["counts"] == second, (state, "second run", r2["counts"])
    assert raw_items(kind.path) == expect, state


@pytest.mark.parametrize("name", list(KINDS))
def test_every_state_on_keyed_maps(pin_dir: Path, name: str) -> None:
    kind = KINDS[name](pin_dir)
    # overridden on an empty map
    content = {0: 0, 1: 1, 2: 2}
    _run_twice(
        kind,
        "overridden",
        _entries(kind, [(0, 0), (1, 1), (2, 2)]),
        counts(added=3),
        counts(unchanged=3),
        _expect_raw(kind, content),
    )
    # merged: one update, one identical, one new; key 2 is not mentioned and stays
    content = {0: 3, 1: 1, 2: 2, 3: 3}
    _run_twice(
        kind,
        "merged",
        _entries(kind, [(0, 3), (1, 1), (3, 3)]),
        counts(added=1, updated=1, unchanged=1),
        counts(unchanged=3),
        _expect_raw(kind, content),
    )
    # replaced: one update, one new
    content = {0: 3, 1: 1, 2: 4, 3: 3, 4: 0}
    _run_twice(
        kind,
        "replaced",
        _entries(kind, [(2, 4), (4, 0)]),
        counts(added=1, updated=1),
        counts(unchanged=2),
        _expect_raw(kind, content),
    )
    # deleted: one present, one missing (not an error)
    content = {0: 3, 2: 4, 3: 3, 4: 0}
    _run_twice(
        kind,
        "deleted",
        [{"key": kind.keys[1]}, {"key": kind.keys[5]}],
        counts(removed=1, unchanged=1),
        counts(unchanged=2),
        _expect_raw(kind, content),
    )
    # gathered: decoded, sorted by key bytes, in the shape the module accepts
    before = raw_items(kind.path)
    got = ok(entries_mod(kind.path, "gathered", **kind.opts))
    assert got["changed"] is False
    want = [kind.gathered(kind.keys[k], kind.values[v]) for k, v in content.items()]
    want.sort(key=lambda e: kind.enc_key(e["key"]))
    assert got["entries"] == want
    assert got["count"] == 4
    assert not got.get("truncated")
    assert raw_items(kind.path) == before
    # gathered output fed back with overridden is a no-op
    back = ok(entries_mod(kind.path, "overridden", got["entries"], **kind.opts))
    assert back["changed"] is False, back
    assert back["counts"] == counts(unchanged=4)
    assert raw_items(kind.path) == before
    # overridden removes the undeclared keys
    content = {1: 1, 0: 3}
    _run_twice(
        kind,
        "overridden",
        _entries(kind, [(1, 1), (0, 3)]),
        counts(added=1, unchanged=1, removed=3),
        counts(unchanged=2),
        _expect_raw(kind, content),
    )
    # deleted without entries empties the map
    r = ok(entries_mod(kind.path, "deleted", **kind.opts))
    assert r["changed"] is True and r["counts"] == counts(removed=2)
    assert dump(kind.path) == []
    r = ok(entries_mod(kind.path, "deleted", **kind.opts))
    assert r["changed"] is False and r["counts"] == counts()
    if kind.warns_evict:
        assert any("evict" in str(w).lower() for w in r.get("warnings", [])), r.get("warnings")


# --- bpftool's own BTF view ----------------------------------------------------------------------------------------


def test_hash_struct_key_formats_match_bpftool(pin_dir: Path) -> None:
    kind = kind_hash(pin_dir)
    k = flow_key("10.9.8.7", "1.2.3.4", 443, 51000, 6)
    ok(entries_mod(kind.path, "merged", [{"key": k, "value": flow_stats(5, 600, 7, 8)}], formats=FLOW_FORMATS))
    (entry,) = dump(kind.path)
    assert hexb(entry["key"]) == bytes([10, 9, 8, 7, 1, 2, 3, 4, 0x01, 0xBB, 0xC7, 0x38, 6])
    # bpftool reads the __be fields as plain host integers.
    assert entry["formatted"]["key"] == {
        "src_ip": int.from_bytes(ip4("10.9.8.7"), "little"),
        "dst_ip": int.from_bytes(ip4("1.2.3.4"), "little"),
        "src_port": int.from_bytes((443).to_bytes(2, "big"), "little"),
        "dst_port": int.from_bytes((51000).to_bytes(2, "big"), "little"),
        "protocol": 6,
    }
    assert entry["formatted"]["value"] == flow_stats(5, 600, 7, 8)
    # Without formats, __be32 is read as a host integer ("be" default), not text.
    got = ok(entries_mod(kind.path, "gathered"))["entries"]
    assert got == [
        {
            "key": {"src_ip": 0x0A090807, "dst_ip": 0x01020304, "src_port": 443, "dst_port": 51000, "protocol": 6},
            "value": flow_stats(5, 600, 7, 8),
        }
    ]


def test_merged_keeps_unspecified_fields_and_replaced_zeroes_them(pin_dir: Path) -> None:
    kind = kind_hash(pin_dir)
    k0, k1, k2 = kind.keys[:3]
    ok(
        entries_mod(
            kind.path,
            "overridden",
            [{"key": k0, "value": flow_stats(1, 2, 3, 4)}, {"key": k1, "value": flow_stats(5, 6, 7, 8)}],
            formats=FLOW_FORMATS,
        )
    )
    r = ok(entries_mod(kind.path, "merged", [{"key": k0, "value": {"packets": 99}}], formats=FLOW_FORMATS))
    assert r["changed"] is True and r["counts"] == counts(updated=1)
    by_key = {hexb(e["key"]): e["formatted"]["value"] for e in dump(kind.path)}
    assert by_key[enc_flow_key(k0)] == flow_stats(99, 2, 3, 4)
    assert by_key[enc_flow_key(k1)] == flow_stats(5, 6, 7, 8)
    # the same partial merge again is a no-op
    r = ok(entries_mod(kind.path, "merged", [{"key": k0, "value": {"packets": 99}}], formats=FLOW_FORMATS))
    assert r["changed"] is False and r["counts"] == counts(unchanged=1)
    # a partial value for a new key: the rest is zero
    r = ok(entries_mod(kind.path, "merged", [{"key": k2, "value": {"bytes": 77}}], formats=FLOW_FORMATS))
    assert r["counts"] == counts(added=1)
    by_key = {hexb(e["key"]): e["formatted"]["value"] for e in dump(kind.path)}
    assert by_key[enc_flow_key(k2)] == flow_stats(0, 77)
    # replaced: fields not given become zero
    r = ok(entries_mod(kind.path, "replaced", [{"key": k1, "value": {"last_seen": 8}}], formats=FLOW_FORMATS))
    assert r["changed"] is True and r["counts"] == counts(updated=1)
    by_key = {hexb(e["key"]): e["formatted"]["value"] for e in dump(kind.path)}
    assert by_key[enc_flow_key(k1)] == flow_stats(0, 0, 0, 8)
    assert by_key[enc_flow_key(k0)] == flow_stats(99, 2, 3, 4)
    r = ok(entries_mod(kind.path, "replaced", [{"key": k1, "value": {"last_seen": 8}}], formats=FLOW_FORMATS))
    assert r["changed"] is False


def test_percpu_hash_values_per_cpu_in_bpftool(pin_dir: Path) -> None:
    kind = kind_percpu(pin_dir)
    per = [{"packets": 10 + c, "bytes": 100 * (c + 1)} for c in range(NCPUS)]
    ok(
        entries_mod(
            kind.path,
            "overridden",
            [{"key": 1, "value": {"packets": 3, "bytes": 4}}, {"key": 2, "value": {"per_cpu": per}}],
        )
    )
    shown = {e["formatted"]["key"]: [v["value"] for v in e["formatted"]["values"]] for e in dump(kind.path)}
    assert shown == {1: [{"packets": 3, "bytes": 4}] * NCPUS, 2: per}
    got = ok(entries_mod(kind.path, "gathered"))["entries"]
    assert got == [
        {
            "key": 1,
            "value": {
                "per_cpu": [{"packets": 3, "bytes": 4}] * NCPUS,
                "sum": {"packets": 3 * NCPUS, "bytes": 4 * NCPUS},
            },
        },
        {
            "key": 2,
            "value": {
                "per_cpu": per,
                "sum": {"packets": sum(p["packets"] for p in per), "bytes": sum(p["bytes"] for p in per)},
            },
        },
    ]
    assert ok(entries_mod(kind.path, "overridden", got))["changed"] is False
    # merged on a per-CPU struct: the one value's given fields land on every CPU, the rest keep each CPU's value
    r = ok(entries_mod(kind.path, "merged", [{"key": 2, "value": {"packets": 1}}]))
    assert r["changed"] is True
    shown = {e["formatted"]["key"]: [v["value"] for v in e["formatted"]["values"]] for e in dump(kind.path)}
    assert shown[2] == [{"packets": 1, "bytes": p["bytes"]} for p in per]


def test_percpu_array(pin_dir: Path) -> None:
    path = pin_dir / "pca"
    make_map(path, type="percpu_array", value="u64", max_entries=4)
    per = [7 * (c + 1) for c in range(NCPUS)]
    r = ok(entries_mod(path, "overridden", [{"key": 1, "value": 5}, {"key": 3, "value": {"per_cpu": per}}]))
    assert r["changed"] is True
    raw = raw_items(path)
    assert raw == {
        u32(0): (u64(0),) * NCPUS,
        u32(1): (u64(5),) * NCPUS,
        u32(2): (u64(0),) * NCPUS,
        u32(3): tuple(u64(p) for p in per),
    }
    got = ok(entries_mod(path, "gathered"))
    assert got["count"] == 4
    assert got["entries"][1] == {"key": 1, "value": {"per_cpu": [5] * NCPUS, "sum": 5 * NCPUS}}
    assert got["entries"][3] == {"key": 3, "value": {"per_cpu": per, "sum": sum(per)}}
    assert ok(entries_mod(path, "overridden", got["entries"]))["changed"] is False
    r = ok(entries_mod(path, "deleted", [{"key": 3}]))
    assert r["changed"] is True and r["counts"]["removed"] == 1
    assert raw_items(path)[u32(3)] == (u64(0),) * NCPUS


# --- arrays --------------------------------------------------------------------------------------------------------


def test_array_every_state(pin_dir: Path) -> None:
    path = pin_dir / "arr"
    make_map(path, type="array", value="u64", max_entries=8)

    def expect(vals: dict[int, int]) -> dict[bytes, bytes]:
        return {u32(i): u64(vals.get(i, 0)) for i in range(8)}

    def twice(state: str, entries: Any, vals: dict[int, int]) -> dict[str, Any]:
        r1 = ok(entries_mod(path, state, entries))
        assert r1["changed"] is True, (state, r1)
        assert raw_items(path) == expect(vals), state
        r2 = ok(entries_mod(path, state, entries))
        assert r2["changed"] is False, (state, r2)
        assert r2["counts"]["added"] == r2["counts"]["updated"] == r2["counts"]["removed"] == 0, (state, r2)
        assert raw_items(path) == expect(vals), state
        return r1

    r = twice("overridden", [{"key": 1, "value": 10}, {"key": 3, "value": 30}], {1: 10, 3: 30})
    assert r["counts"]["added"] + r["counts"]["updated"] == 2 and r["counts"]["removed"] == 0
    r = twice(
        "merged", [{"key": 1, "value": 11}, {"key": 5, "value": 50}, {"key": 3, "value": 30}], {1: 11, 3: 30, 5: 50}
    )
    assert r["counts"]["added"] + r["counts"]["updated"] == 2 and r["counts"]["unchanged"] >= 1
    r = twice("replaced", [{"key": 7, "value": 70}], {1: 11, 3: 30, 5: 50, 7: 70})
    # delete = zero the slot; counted as removed
    r = twice("deleted", [{"key": 1}], {3: 30, 5: 50, 7: 70})
    assert r["counts"]["removed"] == 1
    # overridden zeroes undeclared indices
    r = twice("overridden", [{"key": 5, "value": 50}], {5: 50})
    assert r["counts"]["removed"] == 2 and r["counts"]["added"] + r["counts"]["updated"] == 0
    got = ok(entries_mod(path, "gathered"))
    assert got["changed"] is False
    assert got["entries"] == [{"key": i, "value": 50 if i == 5 else 0} for i in range(8)]
    assert ok(entries_mod(path, "overridden", got["entries"]))["changed"] is False
    r = twice("deleted", None, {})
    assert r["counts"]["removed"] == 1


def test_array_index_out_of_range_is_a_validation_error(pin_dir: Path) -> None:
    path = pin_dir / "arr"
    make_map(path, type="array", value="u64", max_entries=8)
    ok(entries_mod(path, "merged", [{"key": 2, "value": 2}]))
    before = dump(path)
    r = entries_mod(path, "merged", [{"key": 0, "value": 1}, {"key": 8, "value": 9}, {"key": 3, "value": 3}])
    assert r.get("failed") is True, r
    assert "entries[1].key" in r["msg"], r["msg"]
    assert dump(path) == before


def test_array_struct_values_merge(pin_dir: Path) -> None:
    path = pin_dir / "arrs"
    make_map(path, type="array", value=NESTED, max_entries=4)
    ok(entries_mod(path, "merged", [{"key": 2, "value": {"inner": {"a": 1, "b": 2}, "flags": 3}}]))
    r = ok(entries_mod(path, "merged", [{"key": 2, "value": {"inner": {"b": 20}}}]))
    assert r["changed"] is True
    shown = {e["formatted"]["key"]: e["formatted"]["value"] for e in dump(path)}
    assert shown[2] == {"inner": {"a": 1, "b": 20}, "flags": 3}
    r = ok(entries_mod(path, "replaced", [{"key": 2, "value": {"flags": 9}}]))
    shown = {e["formatted"]["key"]: e["formatted"]["value"] for e in dump(path)}
    assert shown[2] == {"inner": {"a": 0, "b": 0}, "flags": 9}


# --- maps of maps --------------------------------------------------------------------------------------------------


def test_hash_of_maps_ids_and_pin_paths(pin_dir: Path) -> None:
    outer = pin_dir / "outer"
    inner = {"type": "array", "value": "u64", "max_entries": 4}
    make_map(outer, type="hash_of_maps", key="u32", max_entries=8, inner_map=inner)
    near = make_map(pin_dir / "near", **inner)["id"]
    far_dir = Path(BPFFS) / f"cnf-test-far-{uuid.uuid4().hex[:8]}"
    cnf_dir = Path(BPFFS) / "cnf" / f"test-{uuid.uuid4().hex[:8]}"
    try:
        far = make_map(far_dir / "far", **inner)["id"]
        conv = make_map(cnf_dir / "conv", **inner)["id"]
        r = ok(
            entries_mod(
                outer,
                "overridden",
                [
                    {"key": 1, "value": str(pin_dir / "near")},
                    {"key": 2, "value": far},  # by id
                    {"key": 3, "value": str(cnf_dir / "conv")},
                ],
            )
        )
        assert r["counts"] == counts(added=3)
        raw = raw_items(outer)
        assert raw == {u32(1): u32(near), u32(2): u32(far), u32(3): u32(conv)}
        got = ok(entries_mod(outer, "gathered"))["entries"]
        assert got == [
            {"key": 1, "value": str(pin_dir / "near"), "inner_map_id": near},
            {"key": 2, "value": far, "inner_map_id": far},
            {"key": 3, "value": str(cnf_dir / "conv"), "inner_map_id": conv},
        ]
        assert ok(entries_mod(outer, "overridden", got))["changed"] is False
        # the same inner map named by id instead of path is no change
        r = ok(entries_mod(outer, "merged", [{"key": 1, "value": near}, {"key": 2, "value": str(far_dir / "far")}]))
        assert r["changed"] is False and r["counts"] == counts(unchanged=2)
        # point key 1 at another inner map
        r = ok(entries_mod(outer, "merged", [{"key": 1, "value": str(cnf_dir / "conv")}]))
        assert r["counts"] == counts(updated=1)
        assert raw_items(outer)[u32(1)] == u32(conv)
    finally:
        shutil.rmtree(far_dir, ignore_errors=True)
        shutil.rmtree(cnf_dir, ignore_errors=True)


def test_array_of_maps(pin_dir: Path) -> None:
    outer = pin_dir / "aom"
    inner = {"type": "hash", "key": "u32", "value": "u32", "max_entries": 8}
    make_map(outer, type="array_of_maps", max_entries=4, inner_map=inner)
    ids = [make_map(pin_dir / f"in{i}", **inner)["id"] for i in range(2)]
    r = ok(
        entries_mod(
            outer, "overridden", [{"key": 0, "value": str(pin_dir / "in0")}, {"key": 2, "value": str(pin_dir / "in1")}]
        )
    )
    assert r["changed"] is True
    assert raw_items(outer) == {u32(0): u32(ids[0]), u32(2): u32(ids[1])}
    got = ok(entries_mod(outer, "gathered"))["entries"]
    assert got == [
        {"key": 0, "value": str(pin_dir / "in0"), "inner_map_id": ids[0]},
        {"key": 2, "value": str(pin_dir / "in1"), "inner_map_id": ids[1]},
    ]
    assert ok(entries_mod(outer, "overridden", got))["changed"] is False


# --- queue and stack -----------------------------------------------------------------------------------------------


def test_queue_every_state(pin_dir: Path) -> None:
    path = pin_dir / "q"
    make_map(path, type="queue", value="u32", max_entries=16)
    opts = {"value_type": "u32"}
    r = ok(entries_mod(path, "merged", [{"value": 1}, {"value": 2}, {"value": 3}], **opts))
    assert r["changed"] is True and r["counts"]["added"] == 3
    r = ok(entries_mod(path, "merged", [{"value": 1}, {"value": 2}, {"value": 3}], **opts))
    assert r["changed"] is True, "merged pushes every time entries are given"
    got = ok(entries_mod(path, "gathered", **opts))
    assert got["changed"] is False
    assert got["entries"] == [{"value": v} for v in (1, 2, 3, 1, 2, 3)]
    # gathering did not lose anything
    assert ok(entries_mod(path, "gathered", **opts))["entries"] == got["entries"]
    assert peek(path) == u32(1)
    r = ok(entries_mod(path, "overridden", [{"value": 7}, {"value": 8}, {"value": 9}], **opts))
    assert r["changed"] is True
    r = ok(entries_mod(path, "overridden", [{"value": 7}, {"value": 8}, {"value": 9}], **opts))
    assert r["changed"] is False
    assert peek(path) == u32(7)
    # gathered -> overridden is a no-op
    got = ok(entries_mod(path, "gathered", **opts))["entries"]
    assert got == [{"value": 7}, {"value": 8}, {"value": 9}]
    assert ok(entries_mod(path, "overridden", got, **opts))["changed"] is False
    r = entries_mod(path, "replaced", [{"value": 1}], **opts)
    assert r.get("failed") is True and "replaced" in r["msg"], r
    assert pop_all(path) == [u32(7), u32(8), u32(9)]
    # refill, then drain with deleted
    ok(entries_mod(path, "merged", [{"value": 4}, {"value": 5}], **opts))
    r = ok(entries_mod(path, "deleted", **opts))
    assert r["changed"] is True and r["counts"]["removed"] == 2
    assert ok(entries_mod(path, "deleted", **opts))["changed"] is False
    assert pop_all(path) == []


def test_stack_struct_values_pop_order(pin_dir: Path) -> None:
    path = pin_dir / "st"
    make_map(path, type="stack", value=FLOW_KEY, max_entries=16)
    opts = {"value_type": FLOW_KEY, "formats": {"value.src_ip": "ipv4", "value.dst_ip": "ipv4"}}
    vals = [flow_key(f"10.0.0.{i}", "10.1.1.1", 100 + i, 53, 17) for i in range(1, 4)]
    r = ok(entries_mod(path, "overridden", [{"value": v} for v in vals], **opts))
    assert r["changed"] is True
    assert ok(entries_mod(path, "overridden", [{"value": v} for v in vals], **opts))["changed"] is False
    got = ok(entries_mod(path, "gathered", **opts))["entries"]
    assert got == [{"value": v} for v in vals]
    # first listed is first popped
    assert peek(path) == enc_flow_key(vals[0])
    # merged pushes in order: on a stack the last pushed is popped first
    extra = flow_key("9.9.9.9", "8.8.8.8", 1, 2, 6)
    r = ok(entries_mod(path, "merged", [{"value": extra}], **opts))
    assert r["changed"] is True
    assert ok(entries_mod(path, "gathered", **opts))["entries"] == [{"value": extra}] + [{"value": v} for v in vals]
    r = entries_mod(path, "replaced", [{"value": extra}], **opts)
    assert r.get("failed") is True and "replaced" in r["msg"], r
    assert pop_all(path) == [enc_flow_key(v) for v in [extra, *vals]]


def test_queue_check_mode_pops_nothing(pin_dir: Path) -> None:
    path = pin_dir / "q"
    make_map(path, type="queue", value="u32", max_entries=16)
    ok(entries_mod(path, "merged", [{"value": 1}, {"value": 2}], value_type="u32"))
    for state, entries in (("overridden", [{"value": 5}]), ("deleted", None), ("merged", [{"value": 3}])):
        r = ok(entries_mod(path, state, entries, check=True, value_type="u32"))
        assert r["changed"] is True, state
    assert pop_all(path) == [u32(1), u32(2)]


# --- refused map types and key/value types ------------------------------------------------------------------------


@pytest.mark.parametrize("map_type", ["ringbuf", "perf_event_array"])
@pytest.mark.parametrize("state", ["merged", "gathered"])
def test_event_maps_are_refused(pin_dir: Path, map_type: str, state: str) -> None:
    path = pin_dir / map_type
    make_map(path, type=map_type, **({"max_entries": 4 * 4096} if map_type == "ringbuf" else {}))
    r = entries_mod(path, state, [{"key": 0, "value": 1}] if state == "merged" else None)
    assert r.get("failed") is True, r
    assert "cnf.ebpf.bpf_events" in r["msg"], r["msg"]


def test_key_value_types_for_maps_without_btf(pin_dir: Path) -> None:
    path = pin_dir / "raw"
    make_map(path, type="hash", key_size=4, value_size=8, max_entries=8)
    r = ok(entries_mod(path, "merged", [{"key": 1, "value": 2}], key_type="u32", value_type="u64"))
    assert r["changed"] is True
    assert raw_items(path) == {u32(1): u64(2)}
    got = ok(entries_mod(path, "gathered", key_type="u32", value_type="u64"))["entries"]
    assert got == [{"key": 1, "value": 2}]


def test_key_value_types_that_disagree_with_btf_fail(pin_dir: Path) -> None:
    path = pin_dir / "typed"
    make_map(path, type="hash", key="u32", value="u64", max_entries=8)
    ok(entries_mod(path, "merged", [{"key": 1, "value": 2}]))
    before = dump(path)
    r = entries_mod(path, "merged", [{"key": 1, "value": 3}], value_type="u32")
    assert r.get("failed") is True, r
    r = entries_mod(path, "merged", [{"key": 1, "value": 3}], value_type={"fields": [{"name": "x", "type": "u64"}]})
    assert r.get("failed") is True, r
    assert dump(path) == before


# --- validation before writing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["merged", "replaced", "overridden"])
def test_one_bad_entry_fails_and_writes_nothing(pin_dir: Path, state: str) -> None:
    kind = kind_hash(pin_dir)
    ok(entries_mod(kind.path, "overridden", _entries(kind, [(0, 0), (1, 1)]), **kind.opts))
    before = dump(kind.path)
    entries = _entries(kind, [(2, 2), (3, 3), (4, 4), (0, 3)])
    entries[2] = {"key": kind.keys[4], "value": dict(kind.values[4], packets=1 << 64)}
    r = entries_mod(kind.path, state, entries, **kind.opts)
    assert r.get("failed") is True, r
    assert "entries[2].value.packets" in r["msg"], r["msg"]
    assert dump(kind.path) == before
    entries[2] = {"key": dict(kind.keys[4], src_ip="10.0.0.300"), "value": kind.values[4]}
    r = entries_mod(kind.path, state, entries, **kind.opts)
    assert r.get("failed") is True and "entries[2].key.src_ip" in r["msg"], r
    assert dump(kind.path) == before


def test_lpm_host_bits_set_is_an_error(pin_dir: Path) -> None:
    kind = kind_lpm4(pin_dir)
    r = entries_mod(kind.path, "merged", [{"key": "10.0.0.0/8", "value": 1}, {"key": "10.0.0.1/8", "value": 2}])
    assert r.get("failed") is True and "entries[1].key" in r["msg"], r
    assert dump(kind.path) == []
    kind6 = kind_lpm6(pin_dir)
    r = entries_mod(kind6.path, "merged", [{"key": "2001:db8::1/32", "value": 1}])
    assert r.get("failed") is True and "entries[0].key" in r["msg"], r
    assert dump(kind6.path) == []


def test_lpm_bpftool_view(pin_dir: Path) -> None:
    kind = kind_lpm4(pin_dir)
    ok(entries_mod(kind.path, "merged", [{"key": "192.168.7.0/24", "value": 9}]))
    assert formatted(kind.path) == [{"key": {"prefixlen": 24, "data": [192, 168, 7, 0]}, "value": 9}]


# --- check mode and diff -------------------------------------------------------------------------------------------


CHECK_CASES: dict[str, tuple[str, list[tuple[int, int]] | None]] = {
    "merged": ("merged", [(0, 4), (5, 1), (1, 1)]),
    "replaced": ("replaced", [(2, 0), (5, 1)]),
    "overridden": ("overridden", [(0, 0), (5, 2)]),
    "deleted": ("deleted", [(1, 0), (5, 0)]),
    "deleted_all": ("deleted", None),
}


@pytest.mark.parametrize("case", list(CHECK_CASES))
def test_check_mode_writes_nothing_and_predicts_the_real_run(pin_dir: Path, case: str) -> None:
    kind = kind_hash(pin_dir)
    ok(entries_mod(kind.path, "overridden", _entries(kind, [(0, 0), (1, 1), (2, 2)]), **kind.opts))
    before = dump(kind.path)
    state, pairs = CHECK_CASES[case]
    if pairs is None:
        entries = None
    elif state == "deleted":
        entries = [{"key": kind.keys[k]} for k, _v in pairs]
    else:
        entries = _entries(kind, pairs)
    checked = ok(entries_mod(kind.path, state, entries, check=True, diff=True, **kind.opts))
    assert checked["changed"] is True
    assert dump(kind.path) == before
    real = ok(entries_mod(kind.path, state, entries, diff=True, **kind.opts))
    assert real["changed"] == checked["changed"]
    assert real["counts"] == checked["counts"]
    assert real["diff"] == checked["diff"]
    assert dump(kind.path) != before
    again = ok(entries_mod(kind.path, state, entries, check=True, diff=True, **kind.opts))
    assert again["changed"] is False


def _u32_map_with(path: Path, n: int) -> None:
    make_map(path, type="hash", key="u32", value="u64", max_entries=256)
    ok(entries_mod(path, "overridden", [{"key": 7_000_001 + i, "value": 9_000_001 + i} for i in range(n)]))


def _keys_in(text: str, keys: list[int]) -> set[int]:
    return {k for k in keys if re.search(rf"\b{k}\b", text)}


def test_diff_lists_only_changed_keys(pin_dir: Path) -> None:
    path = pin_dir / "d"
    _u32_map_with(path, 5)
    entries = [{"key": 7_000_001 + i, "value": 9_000_001 + i} for i in range(5)]
    entries[1]["value"] = 8_888_888  # updated
    del entries[2]  # removed: 7000003
    entries.append({"key": 7_000_099, "value": 9_000_099})  # added
    r = ok(entries_mod(path, "overridden", entries, diff=True))
    before, after = r["diff"]["before"], r["diff"]["after"]
    assert isinstance(before, str) and isinstance(after, str)
    unchanged = [7_000_001, 7_000_004, 7_000_005]
    assert not _keys_in(before + after, unchanged), r["diff"]
    assert "7000002" in before and "9000002" in before
    assert "7000002" in after and "8888888" in after
    assert "7000003" in before and "9000003" in before
    assert "7000099" in after and "9000099" in after
    assert "more" not in before + after
    r = ok(entries_mod(path, "overridden", entries, diff=True))
    assert r["changed"] is False
    assert not _keys_in(r["diff"]["before"] + r["diff"]["after"], [7_000_001 + i for i in range(5)])


@pytest.mark.parametrize("limit", [None, 5])
def test_diff_limit(pin_dir: Path, limit: int | None) -> None:
    path = pin_dir / "d"
    _u32_map_with(path, 40)
    # 10 unchanged, 10 updated, 20 removed, 5 added: 35 changed keys
    entries = [{"key": 7_000_001 + i, "value": 9_000_001 + i + (0 if i < 10 else 5_000)} for i in range(20)]
    entries += [{"key": 7_000_101 + i, "value": 1} for i in range(5)]
    opts = {} if limit is None else {"diff_limit": limit}
    r = ok(entries_mod(path, "overridden", entries, diff=True, **opts))
    assert r["counts"] == counts(added=5, updated=10, removed=20, unchanged=10)
    text = r["diff"]["before"] + "\n" + r["diff"]["after"]
    all_keys = [7_000_001 + i for i in range(40)] + [7_000_101 + i for i in range(5)]
    shown = _keys_in(text, all_keys)
    assert not shown & {7_000_001 + i for i in range(10)}, "unchanged keys in the diff"
    assert 0 < len(shown) <= (limit or 20), sorted(shown)
    more = [int(m) for m in re.findall(r"(\d+)\D{0,20}more", text)]
    assert more, text
    assert 35 - len(shown) in more, (len(shown), more, text)


def test_check_diff_through_a_playbook(pin_dir: Path, tmp_path: Path) -> None:
    kind = kind_hash(pin_dir)
    ok(entries_mod(kind.path, "overridden", _entries(kind, [(0, 0)]), **kind.opts))
    before = dump(kind.path)
    new_key = flow_key("10.9.8.7", "172.16.5.4", 8080, 443, 6)
    tasks = [
        {
            "name": "flows",
            "cnf.ebpf.bpf_map_entries": {
                "path": str(kind.path),
                "state": "merged",
                "formats": FLOW_FORMATS,
                "entries": [
                    {"key": new_key, "value": {"packets": 4242}},
                    {"key": kind.keys[0], "value": kind.values[0]},
                ],
            },
            "register": "flows",
        },
        {
            "name": "gather",
            "cnf.ebpf.bpf_map_entries": {"path": str(kind.path), "state": "gathered", "formats": FLOW_FORMATS},
            "register": "gather",
        },
    ]
    checked = run_playbook(tmp_path, tasks, check=True, diff=True)
    assert checked["flows"]["changed"] is True
    assert checked["flows"]["counts"] == counts(added=1, unchanged=1)
    assert "10.9.8.7" in checked["flows"]["diff"]["after"]
    assert "10.9.8.7" in checked["_stdout"] and "4242" in checked["_stdout"]
    assert checked["gather"]["count"] == 1
    assert dump(kind.path) == before
    real = run_playbook(tmp_path, tasks, diff=True)
    assert real["flows"]["changed"] is True and real["flows"]["counts"] == checked["flows"]["counts"]
    assert real["flows"]["diff"] == checked["flows"]["diff"]
    assert real["gather"]["count"] == 2
    assert raw_items(kind.path)[enc_flow_key(new_key)] == enc_flow_stats({"packets": 4242})
    again = run_playbook(tmp_path, tasks, check=True, diff=True)
    assert again["flows"]["changed"] is False


# --- src files -----------------------------------------------------------------------------------------------------


def test_src_yaml_and_json(pin_dir: Path, tmp_path: Path) -> None:
    kind = kind_hash(pin_dir)
    entries = _entries(kind, [(0, 0), (1, 1), (2, 2)])
    y = tmp_path / "flows.yml"
    y.write_text(yaml.safe_dump(entries))
    r = ok(entries_mod(kind.path, "overridden", src=str(y), formats=FLOW_FORMATS))
    assert r["changed"] is True and r["counts"] == counts(added=3)
    assert raw_items(kind.path) == _expect_raw(kind, {0: 0, 1: 1, 2: 2})
    j = tmp_path / "flows.json"
    j.write_text(json.dumps(_entries(kind, [(0, 0), (3, 3)])))
    r = ok(entries_mod(kind.path, "overridden", src=str(j), formats=FLOW_FORMATS))
    assert r["counts"] == counts(added=1, unchanged=1, removed=2)
    assert raw_items(kind.path) == _expect_raw(kind, {0: 0, 3: 3})
    assert ok(entries_mod(kind.path, "overridden", src=str(j), formats=FLOW_FORMATS))["changed"] is False
    r = entries_mod(kind.path, "merged", entries, src=str(j), formats=FLOW_FORMATS)
    assert r.get("failed") is True, "src and entries are mutually exclusive"
    r = entries_mod(kind.path, "merged", src=str(tmp_path / "missing.yml"), formats=FLOW_FORMATS)
    assert r.get("failed") is True
    assert raw_items(kind.path) == _expect_raw(kind, {0: 0, 3: 3})


def test_src_csv_scalars_and_nested_fields(pin_dir: Path, tmp_path: Path) -> None:
    scal = pin_dir / "scal"
    make_map(scal, type="hash", key="u32", value="u64", max_entries=16)
    f = tmp_path / "s.csv"
    f.write_text("key,value\n1,10\n2,20\n3,18446744073709551615\n")
    r = ok(entries_mod(scal, "overridden", src=str(f)))
    assert r["counts"] == counts(added=3)
    assert raw_items(scal) == {u32(1): u64(10), u32(2): u64(20), u32(3): u64((1 << 64) - 1)}
    assert ok(entries_mod(scal, "overridden", src=str(f)))["changed"] is False
    nest = pin_dir / "nest"
    make_map(nest, type="hash", key="u32", value=NESTED, max_entries=16)
    g = tmp_path / "n.csv"
    g.write_text("key,value.inner.a,value.inner.b,value.flags\n5,1,2,3\n6,4,5,6\n")
    ok(entries_mod(nest, "overridden", src=str(g)))
    shown = {e["formatted"]["key"]: e["formatted"]["value"] for e in dump(nest)}
    assert shown == {5: {"inner": {"a": 1, "b": 2}, "flags": 3}, 6: {"inner": {"a": 4, "b": 5}, "flags": 6}}
    # merged from a CSV with some columns: the other fields keep their values
    h = tmp_path / "m.csv"
    h.write_text("key,value.inner.b\n5,99\n")
    r = ok(entries_mod(nest, "merged", src=str(h)))
    assert r["counts"] == counts(updated=1)
    shown = {e["formatted"]["key"]: e["formatted"]["value"] for e in dump(nest)}
    assert shown[5] == {"inner": {"a": 1, "b": 99}, "flags": 3}
    # a bad cell fails naming the entry (row 2 -> entries[1]) and the field
    bad = tmp_path / "bad.csv"
    bad.write_text("key,value.inner.a,value.inner.b,value.flags\n5,1,2,3\n6,4,5,70000\n")
    before = dump(nest)
    r = entries_mod(nest, "overridden", src=str(bad))
    assert r.get("failed") is True and "entries[1].value.flags" in r["msg"], r
    assert dump(nest) == before


def _write_csv(path: Path, header: list[str], rows: list[tuple[Any, ...]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


HOST_KEY_COLUMNS = ["key.src_ip", "key.dst_ip", "key.src_port", "key.dst_port", "key.protocol"]
STATS_COLUMNS = ["value.packets", "value.bytes", "value.first_seen", "value.last_seen"]


def test_src_csv_integer_columns_packed_without_dicts(pin_dir: Path, tmp_path: Path) -> None:
    """A CSV of integer columns that name every field is packed straight from its columns: the same map contents,
    counts, diffs and errors as the same entries given as dicts, and anything else falls back to the entry path."""
    from ansible_collections.cnf.ebpf.plugins.module_utils.resources._entries import EntryMap
    from ansible_collections.cnf.ebpf.plugins.module_utils.surface._entries_module import (
        encode_csv_columns,
        encode_entries,
        load_src,
    )
    from tests.schemas import FLOW_KEY_HOST

    n = 3000
    rows = [(0x0A000000 + i, 0xC0000201, 1024 + i % 60000, 80, 6, i, i * 64, 1000 + i, 2000 + i) for i in range(n)]
    src = _write_csv(tmp_path / "flows.csv", HOST_KEY_COLUMNS + STATS_COLUMNS, rows)
    expect = {struct.pack("=IIHHB", *r[:5]): struct.pack("=4Q", *r[5:]) for r in rows}
    columns_map, dicts_map = pin_dir / "columns", pin_dir / "dicts"
    for path in (columns_map, dicts_map):
        make_map(path, type="hash", key=FLOW_KEY_HOST, value=FLOW_STATS, max_entries=4096)

    # the fast path is taken, and it encodes what the entry path encodes
    with EntryMap(str(columns_map)) as emap:
        packed = encode_csv_columns(emap, str(src), "merged")
        assert packed is not None
        by_entry = encode_entries(emap, load_src(str(src)), "merged")
        assert packed.keys == by_entry.keys and packed.values == by_entry.values
        assert encode_csv_columns(emap, str(src), "deleted") is None, "value columns given to deleted"
    r = ok(entries_mod(columns_map, "overridden", src=str(src)))
    assert r["counts"] == counts(added=n)
    assert raw_items(columns_map) == expect
    json_src = tmp_path / "flows.json"
    json_src.write_text(json.dumps(load_src(str(src))))
    ok(entries_mod(dicts_map, "overridden", src=str(json_src)))
    assert raw_items(dicts_map) == raw_items(columns_map)
    assert ok(entries_mod(columns_map, "overridden", src=str(src)))["changed"] is False

    # columns in another order, one value changed: merged updates exactly that entry, the diff decodes it
    changed = [(*rows[0][:5], 7, 7, 7, 7), *rows[1:]]
    order = [8, 7, 6, 5, 4, 3, 2, 1, 0]
    header = [(HOST_KEY_COLUMNS + STATS_COLUMNS)[i] for i in order]
    shuffled = _write_csv(tmp_path / "shuffled.csv", header, [tuple(row[i] for i in order) for row in changed])
    r = ok(entries_mod(columns_map, "merged", src=str(shuffled), diff=True))
    assert r["counts"] == counts(updated=1, unchanged=n - 1)
    assert '"packets": 7' in r["diff"]["after"] and '"packets": 0,' in r["diff"]["before"]
    assert raw_items(columns_map)[struct.pack("=IIHHB", *rows[0][:5])] == struct.pack("=4Q", 7, 7, 7, 7)

    # quoted cells go through the csv module, a last line without a newline is still packed: the same contents
    quoted = tmp_path / "quoted.csv"
    quoted.write_text(",".join(HOST_KEY_COLUMNS + STATS_COLUMNS) + "\n" + ",".join(f'"{c}"' for c in changed[0]) + "\n")
    unterminated = tmp_path / "unterminated.csv"
    unterminated.write_text(",".join(HOST_KEY_COLUMNS + STATS_COLUMNS) + "\n" + ",".join(map(str, changed[0])))
    with EntryMap(str(columns_map)) as emap:
        assert encode_csv_columns(emap, str(quoted), "merged") is None
        assert encode_csv_columns(emap, str(unterminated), "merged") is not None
    assert ok(entries_mod(columns_map, "merged", src=str(quoted)))["changed"] is False
    assert ok(entries_mod(columns_map, "merged", src=str(unterminated)))["changed"] is False

    # a partial value (no last_seen column) takes the entry path: merged keeps the other fields
    partial = _write_csv(tmp_path / "partial.csv", HOST_KEY_COLUMNS + STATS_COLUMNS[:3], [rows[1][:8]])
    with EntryMap(str(columns_map)) as emap:
        assert encode_csv_columns(emap, str(partial), "merged") is None
    ok(entries_mod(columns_map, "merged", src=str(partial)))
    assert raw_items(columns_map)[struct.pack("=IIHHB", *rows[1][:5])] == struct.pack("=4Q", *rows[1][5:])

    # bad input is refused by row, as entries[i], and changes nothing
    before = raw_items(columns_map)
    too_big = _write_csv(
        tmp_path / "big.csv", HOST_KEY_COLUMNS + STATS_COLUMNS, [rows[0], (*rows[1][:3], 70000, *rows[1][4:])]
    )
    r = entries_mod(columns_map, "merged", src=str(too_big))
    assert r.get("failed") is True and "entries[1].key.dst_port" in r["msg"], r
    twice = _write_csv(tmp_path / "twice.csv", HOST_KEY_COLUMNS + STATS_COLUMNS, [rows[0], rows[1], rows[0]])
    r = entries_mod(columns_map, "overridden", src=str(twice))
    assert r.get("failed") is True and "entries[2]" in r["msg"] and "entries[0]" in r["msg"], r
    assert raw_items(columns_map) == before

    # deleted from key columns alone
    keys_only = _write_csv(tmp_path / "keys.csv", HOST_KEY_COLUMNS, [r_[:5] for r_ in rows[:10]])
    r = ok(entries_mod(columns_map, "deleted", src=str(keys_only)))
    assert r["counts"] == counts(removed=10)
    assert len(raw_items(columns_map)) == n - 10

    # per-CPU values: one value from the columns is written to every CPU
    pcpu = pin_dir / "pcpu"
    make_map(pcpu, type="percpu_hash", key="u32", value=PCPU_STATS, max_entries=64)
    pcpu_src = _write_csv(tmp_path / "pcpu.csv", ["key", "value.packets", "value.bytes"], [(1, 2, 3), (4, 5, 6)])
    ok(entries_mod(pcpu, "overridden", src=str(pcpu_src)))
    assert raw_items(pcpu) == {
        u32(1): (struct.pack("<QQ", 2, 3),) * NCPUS,
        u32(4): (struct.pack("<QQ", 5, 6),) * NCPUS,
    }
    assert ok(entries_mod(pcpu, "overridden", src=str(pcpu_src)))["changed"] is False


BIG = 20_000


def _big_flow(i: int) -> tuple[dict[str, Any], dict[str, int]]:
    k = flow_key(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", "192.0.2.1", 1024 + i % 50000, 80, 6)
    return k, flow_stats(i, i * 64, 1_700_000_000 + i, 1_800_000_000 + i)


def test_src_csv_20k_flows_overridden_gathered_dest(pin_dir: Path, tmp_path: Path) -> None:
    path = pin_dir / "big"
    make_map(path, type="hash", key=FLOW_KEY, value=FLOW_STATS, max_entries=32768)
    src = tmp_path / "flows.csv"
    cols = [
        "key.src_ip",
        "key.dst_ip",
        "key.src_port",
        "key.dst_port",
        "key.protocol",
        "value.packets",
        "value.bytes",
        "value.first_seen",
        "value.last_seen",
    ]
    expect: dict[bytes, bytes] = {}
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i in range(BIG):
            k, v = _big_flow(i)
            w.writerow([k["src_ip"], k["dst_ip"], k["src_port"], k["dst_port"], k["protocol"], *v.values()])
            expect[enc_flow_key(k)] = enc_flow_stats(v)
    # something that overridden must remove
    ok(
        entries_mod(
            path,
            "merged",
            [{"key": flow_key("1.1.1.1", "2.2.2.2", 1, 2, 3), "value": {"packets": 1}}],
            formats=FLOW_FORMATS,
        )
    )
    r = ok(entries_mod(path, "overridden", src=str(src), formats=FLOW_FORMATS, diff=True))
    assert r["counts"] == counts(added=BIG, removed=1)
    assert len(r["diff"]["after"].splitlines()) < 200, "diff must be limited"
    assert raw_items(path) == expect
    r = ok(entries_mod(path, "overridden", src=str(src), formats=FLOW_FORMATS))
    assert r["changed"] is False and r["counts"] == counts(unchanged=BIG)
    dest = tmp_path / "out.json"
    got = ok(entries_mod(path, "gathered", formats=FLOW_FORMATS, dest=str(dest)))
    assert got["changed"] is False
    assert got["truncated"] is True
    assert len(got["entries"]) == 10_000
    assert got["dest"] == str(dest)
    ordered = sorted(expect)
    assert [enc_flow_key(e["key"]) for e in got["entries"]] == ordered[:10_000]
    everything = json.loads(dest.read_text())
    assert len(everything) == BIG
    assert [enc_flow_key(e["key"]) for e in everything] == ordered
    assert all(enc_flow_stats(e["value"]) == expect[enc_flow_key(e["key"])] for e in everything)
    # the dest file is itself a valid src: overridden from it is a no-op
    back = ok(entries_mod(path, "overridden", src=str(dest), formats=FLOW_FORMATS))
    assert back["changed"] is False


def test_gathered_limit(pin_dir: Path, tmp_path: Path) -> None:
    path = pin_dir / "g"
    _u32_map_with(path, 30)
    got = ok(entries_mod(path, "gathered", limit=10))
    assert got["truncated"] is True
    want = sorted(({"key": 7_000_001 + i, "value": 9_000_001 + i} for i in range(30)), key=lambda e: u32(e["key"]))
    assert got["entries"] == want[:10]
    got = ok(entries_mod(path, "gathered", limit=30))
    assert not got.get("truncated") and got["count"] == 30


@pytest.mark.parametrize("name", list(KINDS))
def test_check_mode_on_every_keyed_map(pin_dir: Path, name: str) -> None:
    kind = KINDS[name](pin_dir)
    ok(entries_mod(kind.path, "overridden", _entries(kind, [(0, 0), (1, 1), (2, 2)]), **kind.opts))
    before = raw_items(kind.path)
    entries = _entries(kind, [(0, 0), (1, 4), (3, 3)])
    checked = ok(entries_mod(kind.path, "overridden", entries, check=True, diff=True, **kind.opts))
    assert checked["changed"] is True
    assert checked["counts"] == counts(added=1, updated=1, removed=1, unchanged=1)
    assert raw_items(kind.path) == before
    real = ok(entries_mod(kind.path, "overridden", entries, diff=True, **kind.opts))
    assert (real["changed"], real["counts"], real["diff"]) == (checked["changed"], checked["counts"], checked["diff"])
    assert raw_items(kind.path) == _expect_raw(kind, {0: 0, 1: 4, 3: 3})


ADDR_VALUE = {
    "name": "addr_val",
    "fields": [
        {"name": "mac", "type": "u8[6]"},
        {"name": "v6", "type": "u8[16]"},
        {"name": "v4", "type": "u32"},
        {"name": "cookie", "type": "u32"},
        {"name": "port", "type": "u16"},
    ],
}
ADDR_FORMATS = {"value.mac": "mac", "value.v6": "ipv6", "value.v4": "ipv4", "value.cookie": "hex", "value.port": "be"}


def test_value_formats_round_trip_and_match_bpftool_bytes(pin_dir: Path) -> None:
    path = pin_dir / "addrs"
    make_map(path, type="hash", key="u32", value=ADDR_VALUE, max_entries=8)
    value = {
        "mac": "02:aa:bb:cc:dd:0e",
        "v6": "2001:db8::42",
        "v4": "198.51.100.7",
        "cookie": "0xdeadbeef",
        "port": 8080,
    }
    ok(entries_mod(path, "merged", [{"key": 1, "value": value}], formats=ADDR_FORMATS))
    (entry,) = dump(path)
    raw = hexb(entry["value"])
    assert raw[0:6] == bytes.fromhex("02aabbccdd0e")
    assert raw[6:22] == ipaddress.ip_address("2001:db8::42").packed
    # v4 is aligned to 4: bytes 22-23 are padding
    assert raw[24:28] == ip4("198.51.100.7")
    assert raw[28:32] == (0xDEADBEEF).to_bytes(4, "little")
    assert raw[32:34] == (8080).to_bytes(2, "big")
    assert entry["formatted"]["value"]["mac"] == [2, 0xAA, 0xBB, 0xCC, 0xDD, 0x0E]
    got = ok(entries_mod(path, "gathered", formats=ADDR_FORMATS))["entries"]
    assert got[0]["key"] == 1
    assert {k: v for k, v in got[0]["value"].items() if k != "cookie"} == {
        k: v for k, v in value.items() if k != "cookie"
    }
    assert int(str(got[0]["value"]["cookie"]), 16) == 0xDEADBEEF
    assert ok(entries_mod(path, "overridden", got, formats=ADDR_FORMATS))["changed"] is False
    # the int forms the docs allow for ipv4 give the same bytes
    r = ok(entries_mod(path, "merged", [{"key": 1, "value": {"v4": 0xC6336407}}], formats=ADDR_FORMATS))
    assert r["changed"] is False, r
    # a format on a path that does not exist fails before anything is written
    r = entries_mod(path, "merged", [{"key": 2, "value": {"port": 1}}], formats={"value.nope": "mac"})
    assert r.get("failed") is True and "value.nope" in r["msg"], r
    assert len(dump(path)) == 1


def test_lpm_dict_form_key_is_the_same_key(pin_dir: Path) -> None:
    kind = kind_lpm4(pin_dir)
    ok(entries_mod(kind.path, "merged", [{"key": "10.20.0.0/16", "value": 5}]))
    r = ok(entries_mod(kind.path, "merged", [{"key": {"prefixlen": 16, "data": [10, 20, 0, 0]}, "value": 5}]))
    assert r["changed"] is False and r["counts"] == counts(unchanged=1)
    assert ok(entries_mod(kind.path, "gathered"))["entries"] == [{"key": "10.20.0.0/16", "value": 5}]


def test_missing_pin_fails_with_the_path(pin_dir: Path) -> None:
    path = pin_dir / "nothing-here"
    r = entries_mod(path, "merged", [{"key": 1, "value": 1}])
    assert r.get("failed") is True and str(path) in r["msg"], r


def test_overridden_on_a_full_map_with_disjoint_content(pin_dir: Path) -> None:
    """Old + new would not fit together; the map must still end with exactly the new content."""
    path = pin_dir / "full"
    make_map(path, type="hash", key="u32", value="u64", max_entries=64)
    ok(entries_mod(path, "overridden", [{"key": i, "value": 1} for i in range(64)]))
    new = [{"key": 1000 + i, "value": 2} for i in range(64)]
    r = ok(entries_mod(path, "overridden", new))
    assert r["counts"] == counts(added=64, removed=64)
    assert raw_items(path) == {u32(1000 + i): u64(2) for i in range(64)}


def test_more_entries_than_max_entries_fails(pin_dir: Path) -> None:
    path = pin_dir / "small"
    make_map(path, type="hash", key="u32", value="u64", max_entries=8)
    r = entries_mod(path, "overridden", [{"key": i, "value": 1} for i in range(9)])
    assert r.get("failed") is True, r
    assert "would hold 9 entries, more than its max_entries=8" in r["msg"]
    assert raw_items(path) == {}  # refused before anything was written


def test_gathered_on_empty_maps(pin_dir: Path) -> None:
    path = pin_dir / "empty"
    make_map(path, type="hash", key="u32", value="u64", max_entries=8)
    got = ok(entries_mod(path, "gathered"))
    assert got["entries"] == [] and got["count"] == 0 and not got.get("truncated") and got["changed"] is False
    q = pin_dir / "q"
    make_map(q, type="queue", value="u32", max_entries=8)
    got = ok(entries_mod(q, "gathered", value_type="u32"))
    assert got["entries"] == [] and got["count"] == 0


def test_src_csv_lpm_cidr_keys(pin_dir: Path, tmp_path: Path) -> None:
    kind = kind_lpm6(pin_dir)
    f = tmp_path / "p.csv"
    f.write_text("key,value\n2001:db8::/32,1\nfe80::/10,2\n")
    r = ok(entries_mod(kind.path, "overridden", src=str(f)))
    assert r["counts"] == counts(added=2)
    assert raw_items(kind.path) == {lpm_key("2001:db8::/32"): u32(1), lpm_key("fe80::/10"): u32(2)}


def test_queue_check_mode_predicts_counts_and_diff(pin_dir: Path) -> None:
    path = pin_dir / "q"
    make_map(path, type="queue", value="u32", max_entries=16)
    ok(entries_mod(path, "merged", [{"value": 1}, {"value": 2}], value_type="u32"))
    entries = [{"value": 2}, {"value": 3}]
    checked = ok(entries_mod(path, "overridden", entries, check=True, diff=True, value_type="u32"))
    assert peek(path) == u32(1)
    real = ok(entries_mod(path, "overridden", entries, diff=True, value_type="u32"))
    assert (real["changed"], real["counts"], real["diff"]) == (checked["changed"], checked["counts"], checked["diff"])
    assert pop_all(path) == [u32(2), u32(3)]
