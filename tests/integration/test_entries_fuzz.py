"""Property tests: one bad entry anywhere in an otherwise valid list fails validation, names that entry and field,
and leaves the kernel map byte-identical.

`reconcile` runs in-process against real maps; the maps are snapshotted through the kernel (BPF_MAP_LOOKUP_BATCH via
_libbpf) before and after every example and once more with bpftool at the end of the module.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _libbpf
from tests.schemas import FLOW_KEY

from .conftest import BPFFS, bpftool, run_module

NCPUS = _libbpf.num_possible_cpus()

FUZZ_VALUE = {
    "name": "fuzz_val",
    "fields": [
        {"name": "packets", "type": "u64"},
        {"name": "mac", "type": "u8[6]"},
        {"name": "addr6", "type": "u8[16]"},
        {"name": "flags", "type": "u8"},
        {"name": "delta", "type": "s16"},
    ],
}
FORMATS = {"key.src_ip": "ipv4", "key.dst_ip": "ipv4", "value.mac": "mac", "value.addr6": "ipv6"}
ARRAY_MAX = 8


@dataclass
class FuzzMaps:
    root: Path
    flows: str
    pcpu: str
    lpm4: str
    lpm6: str
    arr: str

    def all(self) -> list[str]:
        return [self.flows, self.pcpu, self.lpm4, self.lpm6, self.arr]


def _reconcile() -> Any:
    from ansible_collections.cnf.ebpf.plugins.module_utils.surface._entries_module import reconcile

    return reconcile


def snapshot(path: str) -> list[tuple[bytes, bytes]]:
    with _bpf_map.map_open(path) as m:
        return sorted(m.items())


def flow(i: int) -> dict[str, Any]:
    return {
        "src_ip": f"10.{(i >> 8) & 255}.{i & 255}.1",
        "dst_ip": "192.0.2.7",
        "src_port": 1024 + i,
        "dst_port": 443,
        "protocol": 6,
    }


def fval(i: int) -> dict[str, Any]:
    return {
        "packets": i,
        "mac": f"02:00:00:00:{(i >> 8) & 255:02x}:{i & 255:02x}",
        "addr6": f"2001:db8::{i:x}",
        "flags": i & 255,
        "delta": -i % 30000,
    }


@pytest.fixture(scope="module")
def maps() -> Iterator[FuzzMaps]:
    root = Path(BPFFS) / f"cnf-fuzz-{uuid.uuid4().hex[:8]}"
    fm = FuzzMaps(
        root, str(root / "flows"), str(root / "pcpu"), str(root / "lpm4"), str(root / "lpm6"), str(root / "arr")
    )
    decls = {
        fm.flows: {"type": "hash", "key": FLOW_KEY, "value": FUZZ_VALUE, "max_entries": 64},
        fm.pcpu: {"type": "percpu_hash", "key": "u32", "value": "u64", "max_entries": 64},
        fm.lpm4: {"type": "lpm_trie", "key": "u8[4]", "value": "u32", "max_entries": 64},
        fm.lpm6: {"type": "lpm_trie", "key": "u8[16]", "value": "u32", "max_entries": 64},
        fm.arr: {"type": "array", "value": "u64", "max_entries": ARRAY_MAX},
    }
    try:
        for path, decl in decls.items():
            result = run_module("bpf_map", dict(decl, path=path))
            assert not result.get("failed"), result
        reconcile = _reconcile()
        seeds = {
            fm.flows: [{"key": flow(i), "value": fval(i)} for i in range(3)],
            fm.pcpu: [{"key": 1, "value": 5}, {"key": 2, "value": {"per_cpu": list(range(NCPUS))}}],
            fm.lpm4: [{"key": "10.0.0.0/8", "value": 1}, {"key": "192.168.0.0/16", "value": 2}],
            fm.lpm6: [{"key": "2001:db8::/32", "value": 1}],
            fm.arr: [{"key": 3, "value": 33}],
        }
        for path, entries in seeds.items():
            params: dict[str, Any] = {"path": path, "state": "overridden", "entries": entries}
            if path == fm.flows:
                params["formats"] = FORMATS
            reconcile(params)
        fm_dumps = {p: bpftool("map", "dump", "pinned", p) for p in fm.all()}
        yield fm
        # after all the failed examples, bpftool still sees exactly the seeds
        for p in fm.all():
            assert bpftool("map", "dump", "pinned", p) == fm_dumps[p], p
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- what a bad entry looks like -------------------------------------------------------------------------------------

BAD_IPV4 = ["256.1.1.1", "1.2.3", "a.b.c.d", "", "1.2.3.4.5", "10.0.0.1/8", "::1", "10.0.0.-1", -1, 1 << 32, 3.5]
BAD_IPV6 = ["2001:db8::g", "1:2:3:4:5:6:7:8:9", ":::", "10.0.0.1", "2001:db8::/32", -1, 1 << 128]
BAD_MAC = ["aa:bb:cc:dd:ee", "zz:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff:00", "aa-bb-cc", "", "aa:bb:cc:dd:ee:fff", 1.5]
WRONG_TYPES = ["abc", "", [1, 2], {"x": 1}, 1.5, True]
BAD_CIDR4 = ["10.0.0.0/33", "10.0.0.1/8", "garbage/8", "10.0.0.0/-1", "2001:db8::/32", "1.2.3/8", "10.0.0.0/8/8"]
BAD_CIDR6 = ["2001:db8::/129", "2001:db8::1/32", "10.0.0.0/8", "2001:db8::g/64", "::/x", "2001:db8:::/32"]


@dataclass
class Bad:
    """A bad entry for map `target`, the field path the error must name and whether it is a key error."""

    target: str
    entry: dict[str, Any]
    path: str
    needs: str | None = None  # a word the message must also contain (an unknown field's name)

    @property
    def is_key(self) -> bool:
        return self.path.startswith("key")


@st.composite
def bad_entries(draw: st.DrawFn) -> Bad:
    target = draw(st.sampled_from(["flows", "pcpu", "lpm4", "lpm6", "arr"]))
    if target == "flows":
        k, v = flow(900), fval(900)
        kind = draw(
            st.sampled_from(
                [
                    "ip",
                    "port",
                    "proto",
                    "key_unknown",
                    "key_type",
                    "packets",
                    "packets_type",
                    "mac",
                    "ipv6",
                    "flags",
                    "delta",
                    "value_unknown",
                    "value_type",
                ]
            )
        )
        if kind == "ip":
            fld = draw(st.sampled_from(["src_ip", "dst_ip"]))
            return Bad(target, {"key": dict(k, **{fld: draw(st.sampled_from(BAD_IPV4))}), "value": v}, f"key.{fld}")
        if kind == "port":
            fld = draw(st.sampled_from(["src_port", "dst_port"]))
            bad = draw(
                st.one_of(st.integers(min_value=1 << 16), st.integers(max_value=-1), st.sampled_from(WRONG_TYPES))
            )
            return Bad(target, {"key": dict(k, **{fld: bad}), "value": v}, f"key.{fld}")
        if kind == "proto":
            bad = draw(st.one_of(st.integers(min_value=256), st.integers(max_value=-1), st.sampled_from(WRONG_TYPES)))
            return Bad(target, {"key": dict(k, protocol=bad), "value": v}, "key.protocol")
        if kind == "key_unknown":
            return Bad(target, {"key": dict(k, bogus_field=1), "value": v}, "key", needs="bogus_field")
        if kind == "key_type":
            return Bad(target, {"key": draw(st.sampled_from(["10.0.0.1", 5, [1, 2], None])), "value": v}, "key")
        if kind == "packets":
            bad = draw(st.one_of(st.integers(min_value=1 << 64), st.integers(max_value=-1)))
            return Bad(target, {"key": k, "value": dict(v, packets=bad)}, "value.packets")
        if kind == "packets_type":
            return Bad(
                target, {"key": k, "value": dict(v, packets=draw(st.sampled_from(WRONG_TYPES)))}, "value.packets"
            )
        if kind == "mac":
            return Bad(target, {"key": k, "value": dict(v, mac=draw(st.sampled_from(BAD_MAC)))}, "value.mac")
        if kind == "ipv6":
            return Bad(target, {"key": k, "value": dict(v, addr6=draw(st.sampled_from(BAD_IPV6)))}, "value.addr6")
        if kind == "flags":
            bad = draw(st.one_of(st.integers(min_value=256), st.integers(max_value=-1)))
            return Bad(target, {"key": k, "value": dict(v, flags=bad)}, "value.flags")
        if kind == "delta":
            bad = draw(st.one_of(st.integers(min_value=1 << 15), st.integers(max_value=-(1 << 15) - 1)))
            return Bad(target, {"key": k, "value": dict(v, delta=bad)}, "value.delta")
        if kind == "value_unknown":
            return Bad(target, {"key": k, "value": dict(v, nope=draw(st.integers()))}, "value", needs="nope")
        return Bad(target, {"key": k, "value": draw(st.sampled_from([7, "x", [1], None]))}, "value")
    if target == "pcpu":
        kind = draw(st.sampled_from(["length", "elem", "scalar", "key"]))
        if kind == "length":
            n = draw(st.sampled_from(sorted({0, NCPUS - 1, NCPUS + 1, NCPUS + 5} - {NCPUS})))
            return Bad(target, {"key": 900, "value": {"per_cpu": [1] * n}}, "value")
        if kind == "elem":
            per: list[Any] = [1] * NCPUS
            per[draw(st.integers(0, NCPUS - 1))] = draw(
                st.one_of(st.integers(min_value=1 << 64), st.integers(max_value=-1), st.just("x"))
            )
            return Bad(target, {"key": 900, "value": {"per_cpu": per}}, "value")
        if kind == "scalar":
            bad = draw(st.one_of(st.integers(min_value=1 << 64), st.integers(max_value=-1), st.just("x")))
            return Bad(target, {"key": 900, "value": bad}, "value")
        bad = draw(st.one_of(st.integers(min_value=1 << 32), st.integers(max_value=-1), st.just("x")))
        return Bad(target, {"key": bad, "value": 1}, "key")
    if target in ("lpm4", "lpm6"):
        kind = draw(st.sampled_from(["cidr", "value"]))
        good = "172.16.0.0/12" if target == "lpm4" else "fd00::/8"
        if kind == "cidr":
            cidr = draw(st.sampled_from(BAD_CIDR4 if target == "lpm4" else BAD_CIDR6))
            return Bad(target, {"key": cidr, "value": 1}, "key")
        bad = draw(st.one_of(st.integers(min_value=1 << 32), st.integers(max_value=-1), st.just("x")))
        return Bad(target, {"key": good, "value": bad}, "value")
    kind = draw(st.sampled_from(["index", "value"]))
    if kind == "index":
        idx = draw(st.one_of(st.integers(min_value=ARRAY_MAX, max_value=1 << 31), st.integers(max_value=-1)))
        return Bad(target, {"key": idx, "value": 1}, "key")
    bad = draw(st.one_of(st.integers(min_value=1 << 64), st.integers(max_value=-1), st.just("x")))
    return Bad(target, {"key": 1, "value": bad}, "value")


def valid_entries(target: str, ids: list[int]) -> list[dict[str, Any]]:
    if target == "flows":
        return [{"key": flow(i), "value": fval(i)} for i in ids]
    if target == "pcpu":
        return [{"key": i, "value": i} for i in ids]
    if target == "lpm4":
        return [{"key": f"10.{i & 255}.{i >> 8}.0/24", "value": i} for i in ids]
    if target == "lpm6":
        return [{"key": f"2001:db8:{i:x}::/48", "value": i} for i in ids]
    return [{"key": k, "value": k + 100} for k in sorted({i % ARRAY_MAX for i in ids})]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bad=bad_entries(),
    ids=st.lists(st.integers(0, 500), unique=True, max_size=6),
    where=st.integers(0, 10),
    state=st.sampled_from(["merged", "replaced", "overridden", "deleted"]),
)
def test_one_bad_entry_is_named_and_nothing_is_written(
    maps: FuzzMaps, bad: Bad, ids: list[int], where: int, state: str
) -> None:
    path = getattr(maps, bad.target)
    if state == "deleted" and not bad.is_key:
        state = "merged"  # deleted takes no values; value errors need a state that writes values
    entries = valid_entries(bad.target, ids)
    index = where % (len(entries) + 1)
    entries.insert(index, bad.entry)
    if state == "deleted":
        entries = [{"key": e["key"]} for e in entries]
    params: dict[str, Any] = {"path": path, "state": state, "entries": entries}
    if bad.target == "flows":
        params["formats"] = FORMATS
    before = snapshot(path)
    with pytest.raises(ValueError) as info:
        _reconcile()(params)
    assert type(info.value).__name__ == "EntriesError", repr(info.value)
    msg = str(info.value)
    assert f"entries[{index}].{bad.path}" in msg, (msg, bad)
    if bad.needs:
        assert bad.needs in msg, (msg, bad)
    assert snapshot(path) == before


@settings(max_examples=20, deadline=None)
@given(ids=st.lists(st.integers(0, 500), unique=True, min_size=1, max_size=6), where=st.integers(0, 10))
def test_check_mode_with_a_bad_entry_fails_the_same_way(maps: FuzzMaps, ids: list[int], where: int) -> None:
    entries = valid_entries("flows", ids)
    index = where % (len(entries) + 1)
    entries.insert(index, {"key": flow(901), "value": dict(fval(901), mac="aa:bb")})
    before = snapshot(maps.flows)
    params = {"path": maps.flows, "state": "overridden", "entries": entries, "formats": FORMATS}
    with pytest.raises(ValueError) as info:
        _reconcile()(params, check_mode=True, diff=True)
    assert f"entries[{index}].value.mac" in str(info.value)
    assert snapshot(maps.flows) == before


@pytest.mark.parametrize("state", ["merged", "replaced", "overridden"])
@pytest.mark.parametrize("where", ["key.protocol", "value.packets", "value.mac"])
def test_null_field_is_a_wrong_type(pin_dir: Path, state: str, where: str) -> None:
    """`packets: ~` (YAML null) is not a number: docs/schemas.md takes integers as numbers and the spec lists wrong
    types as validation errors; a null must not silently become zero (or "keep") and be written."""
    path = str(pin_dir / "flows")
    result = run_module(
        "bpf_map", {"path": path, "type": "hash", "key": FLOW_KEY, "value": FUZZ_VALUE, "max_entries": 8}
    )
    assert not result.get("failed"), result
    _reconcile()({"path": path, "entries": [{"key": flow(3), "value": fval(3)}], "formats": FORMATS})
    root, fld = where.split(".")
    bad = {"key": flow(902), "value": fval(902)}
    bad[root] = dict(bad[root], **{fld: None})
    entries = [{"key": flow(1), "value": fval(1)}, bad]
    before = snapshot(path)
    params = {"path": path, "state": state, "entries": entries, "formats": FORMATS}
    with pytest.raises(ValueError) as info:
        _reconcile()(params)
    assert f"entries[1].{where}" in str(info.value)
    assert snapshot(path) == before
