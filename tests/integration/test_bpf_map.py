"""cnf.ebpf.bpf_map against the real kernel: every map type through a playbook, verified with bpftool."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.schemas import FLOW_KEY, FLOW_STATS

from .conftest import bpftool, compile_bpf, run_module, run_playbook

PAGE = os.sysconf("SC_PAGE_SIZE")

# name -> (module args, expected bpftool fields)
MAPS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "hash": (
        {"type": "hash", "key": FLOW_KEY, "value": FLOW_STATS, "max_entries": 128},
        {"type": "hash", "bytes_key": 13, "bytes_value": 32, "max_entries": 128},
    ),
    "lru_hash": (
        {"type": "lru_hash", "key": "u32", "value": "u64", "max_entries": 64},
        {"type": "lru_hash", "bytes_key": 4, "bytes_value": 8, "max_entries": 64},
    ),
    "percpu_hash": (
        {"type": "percpu_hash", "key": "u64", "value": FLOW_STATS, "max_entries": 32},
        {"type": "percpu_hash", "bytes_key": 8, "bytes_value": 32, "max_entries": 32},
    ),
    "lru_percpu_hash": (
        {"type": "lru_percpu_hash", "key": "u32", "value": "u32", "max_entries": 32},
        {"type": "lru_percpu_hash", "bytes_key": 4, "bytes_value": 4, "max_entries": 32},
    ),
    "hash_of_maps": (
        {
            "type": "hash_of_maps",
            "key": "u32",
            "max_entries": 8,
            "inner_map": {"type": "array", "value": "u64", "max_entries": 4},
        },
        {"type": "hash_of_maps", "bytes_key": 4, "bytes_value": 4, "max_entries": 8},
    ),
    "array": (
        {"type": "array", "value": FLOW_STATS, "max_entries": 16},
        {"type": "array", "bytes_key": 4, "bytes_value": 32, "max_entries": 16},
    ),
    "percpu_array": (
        {"type": "percpu_array", "value": "u64", "max_entries": 4},
        {"type": "percpu_array", "bytes_key": 4, "bytes_value": 8, "max_entries": 4},
    ),
    "array_of_maps": (
        {
            "type": "array_of_maps",
            "max_entries": 4,
            "inner_map": {"type": "hash", "key": "u32", "value": "u32", "max_entries": 8},
        },
        {"type": "array_of_maps", "bytes_key": 4, "bytes_value": 4, "max_entries": 4},
    ),
    "ringbuf": (
        {"type": "ringbuf", "max_entries": 16 * PAGE},
        {"type": "ringbuf", "bytes_key": 0, "bytes_value": 0, "max_entries": 16 * PAGE},
    ),
    "perf_event_array": ({"type": "perf_event_array"}, {"type": "perf_event_array", "bytes_key": 4, "bytes_value": 4}),
    "queue": (
        {"type": "queue", "value": "u32", "max_entries": 16},
        {"type": "queue", "bytes_key": 0, "bytes_value": 4, "max_entries": 16},
    ),
    "stack": (
        {"type": "stack", "value": FLOW_KEY, "max_entries": 16},
        {"type": "stack", "bytes_key": 0, "bytes_value": 13, "max_entries": 16},
    ),
    "lpm_trie": (
        {"type": "lpm_trie", "key": "u8[16]", "value": "u32", "max_entries": 64},
        {"type": "lpm_trie", "bytes_key": 20, "bytes_value": 4, "max_entries": 64, "flags": 1},
    ),
}
BTF_TYPES = {"hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "array", "percpu_array", "lpm_trie"}


def _tasks(pin_dir: Path) -> list[dict[str, Any]]:
    return [
        {"name": f"map {name}", "cnf.ebpf.bpf_map": dict(args, path=str(pin_dir / name)), "register": f"r_{name}"}
        for name, (args, _expected) in MAPS.items()
    ]


def test_every_map_type_through_a_playbook(pin_dir: Path, tmp_path: Path) -> None:
    first = run_playbook(tmp_path, _tasks(pin_dir))
    for name, (_args, expected) in MAPS.items():
        result = first[f"r_{name}"]
        assert result["changed"] is True, (name, result)
        assert result["action"] == "create"
        shown = bpftool("map", "show", "pinned", str(pin_dir / name))
        for field, value in expected.items():
            assert shown[field] == value, (name, field, shown)
        if name == "perf_event_array":
            assert shown["max_entries"] == os.cpu_count() or shown["max_entries"] >= 1
        assert result["map"]["id"] == shown["id"]
        # Typed maps carry real BTF that bpftool can read.
        assert ("btf_id" in shown and shown["btf_id"] > 0) == (name in BTF_TYPES), (name, shown)

    again = run_playbook(tmp_path, _tasks(pin_dir))
    for name in MAPS:
        assert again[f"r_{name}"]["changed"] is False, (name, again[f"r_{name}"])
        assert again[f"r_{name}"]["action"] == "none"
        assert again[f"r_{name}"]["map"]["id"] == first[f"r_{name}"]["map"]["id"]


def test_check_mode_creates_nothing(pin_dir: Path, tmp_path: Path) -> None:
    results = run_playbook(tmp_path, _tasks(pin_dir), check=True, diff=True)
    for name in MAPS:
        result = results[f"r_{name}"]
        assert result["changed"] is True and result["action"] == "create"
        assert "id" not in result["map"]
        assert result["diff"]["before"] == {} and result["diff"]["after"]["type"] == MAPS[name][0]["type"]
    assert not pin_dir.exists() or not any(pin_dir.iterdir())


def test_typed_map_reports_its_btf_types(pin_dir: Path) -> None:
    path = str(pin_dir / "flows")
    result = run_module(
        "bpf_map", {"path": path, "type": "hash", "key": FLOW_KEY, "value": FLOW_STATS, "max_entries": 8}
    )
    assert result["map"]["key_type"] == "struct flow_key"
    assert result["map"]["value_type"] == "struct flow_stats"
    assert result["map"]["key_size"] == 13
    # bpftool decodes the map's BTF independently of us.
    btf_dump = bpftool("btf", "dump", "id", str(result["map"]["btf_id"]))
    structs = {t["name"]: t for t in btf_dump["types"] if t["kind"] == "STRUCT"}
    assert [(m["name"], m["bits_offset"]) for m in structs["flow_key"]["members"]] == [
        ("src_ip", 0),
        ("dst_ip", 32),
        ("src_port", 64),
        ("dst_port", 80),
        ("protocol", 96),
    ]
    assert structs["flow_key"]["size"] == 13


def test_mismatch_fails_field_by_field_and_changes_nothing(pin_dir: Path) -> None:
    path = str(pin_dir / "flows")
    created = run_module(
        "bpf_map", {"path": path, "type": "hash", "key": FLOW_KEY, "value": FLOW_STATS, "max_entries": 8}
    )
    padded_key = dict(FLOW_KEY, packed=False)
    other_stats = {
        "name": "flow_stats",
        "fields": [{"name": "packets", "type": "u64"}, {"name": "bytes", "type": "u32"}],
    }
    failed = run_module(
        "bpf_map", {"path": path, "type": "hash", "key": padded_key, "value": other_stats, "max_entries": 16}
    )
    assert failed["failed"] is True
    text = "\n".join(failed["differences"])
    assert "max_entries: existing 8, declared 16" in text
    assert "key_size: existing 13, declared 16" in text
    assert "value_size" in text and "value.bytes" in text
    assert failed["msg"].startswith(path)
    assert bpftool("map", "show", "pinned", path)["id"] == created["map"]["id"]


def test_recreate_replaces_the_pin(pin_dir: Path) -> None:
    path = str(pin_dir / "counters")
    first = run_module("bpf_map", {"path": path, "type": "array", "value": "u32", "max_entries": 4})
    check = run_module(
        "bpf_map",
        {"path": path, "type": "array", "value": "u64", "max_entries": 4, "on_mismatch": "recreate"},
        check=True,
        diff=True,
    )
    assert check["changed"] and check["action"] == "recreate"
    assert bpftool("map", "show", "pinned", path)["id"] == first["map"]["id"]
    second = run_module(
        "bpf_map",
        {"path": path, "type": "array", "value": "u64", "max_entries": 4, "on_mismatch": "recreate"},
        diff=True,
    )
    assert second["changed"] and second["action"] == "recreate"
    assert second["diff"]["before"]["value_size"] == 4 and second["diff"]["after"]["value_size"] == 8
    shown = bpftool("map", "show", "pinned", path)
    assert shown["id"] == second["map"]["id"] != first["map"]["id"]
    assert shown["bytes_value"] == 8


def test_permissions_are_applied_idempotently(pin_dir: Path) -> None:
    path = pin_dir / "perm"
    args = {
        "path": str(path),
        "type": "hash",
        "key": "u32",
        "value": "u32",
        "max_entries": 4,
        "mode": "0600",
        "group": "adm",
    }
    assert run_module("bpf_map", args)["changed"] is True
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert grp.getgrgid(st.st_gid).gr_name == "adm"
    assert run_module("bpf_map", args)["changed"] is False
    changed = run_module("bpf_map", dict(args, mode="0640"), diff=True)
    assert changed["changed"] is True and stat.S_IMODE(path.stat().st_mode) == 0o640


def test_absent_removes_the_pin(pin_dir: Path) -> None:
    path = pin_dir / "gone"
    run_module("bpf_map", {"path": str(path), "type": "queue", "value": "u64", "max_entries": 4})
    assert run_module("bpf_map", {"path": str(path), "state": "absent"}, check=True)["changed"] is True
    assert path.exists()
    assert run_module("bpf_map", {"path": str(path), "state": "absent"})["changed"] is True
    assert not path.exists()
    assert run_module("bpf_map", {"path": str(path), "state": "absent"})["changed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"type": "ringbuf", "max_entries": 5000}, "max_entries: a ringbuf size must be a power-of-two multiple"),
        ({"type": "ringbuf", "max_entries": 3 * PAGE}, "max_entries: a ringbuf size must be a power-of-two multiple"),
        ({"type": "hash", "key": "u33", "value": "u32", "max_entries": 4}, "key"),
        ({"type": "hash", "key": "u32", "value": "u32"}, "max_entries: hash maps need max_entries"),
        ({"type": "hash", "key": "u32", "key_size": 8, "value": "u32", "max_entries": 4}, "key_size: 8 contradicts"),
        ({"type": "array", "key": "u64", "value": "u32", "max_entries": 4}, "key: array maps are indexed by a 4-byte"),
        ({"type": "queue", "key": "u32", "value": "u32", "max_entries": 4}, "key: queue maps have no key"),
        ({"type": "hash_of_maps", "key": "u32", "max_entries": 4}, "inner_map: hash_of_maps maps need inner_map"),
        ({"type": "hash", "key": "u32", "value": "u32", "max_entries": 4, "name": "a-name-that-is-too-long"}, "name:"),
        (
            {
                "type": "hash",
                "key": {"fields": [{"name": "a", "type": "u32"}, {"name": "a", "type": "u8"}]},
                "value": "u32",
                "max_entries": 4,
            },
            "key",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_is_created(pin_dir: Path, args: dict[str, Any], message: str) -> None:
    path = pin_dir / "bad"
    result = run_module("bpf_map", dict(args, path=str(path)))
    assert result.get("failed") is True, result
    assert message in result["msg"], result["msg"]
    assert not path.exists()


def test_path_outside_bpffs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-bpffs" / "map"
    result = run_module("bpf_map", {"path": str(path), "type": "hash", "key": "u32", "value": "u32", "max_entries": 4})
    assert result["failed"] is True
    assert "is not on a bpffs mount" in result["msg"]
    assert not path.parent.exists()


def test_pin_that_is_not_a_map_is_reported(pin_dir: Path, tmp_path: Path) -> None:
    # A program pin where a map is declared: the module must say so, not misread it.
    obj = compile_bpf(Path(__file__).parent / "data" / "xdp_pass.c", tmp_path / "xdp_pass.o")
    pin_dir.mkdir()
    subprocess.run(["bpftool", "prog", "load", str(obj), str(pin_dir / "prog")], check=True)
    result = run_module(
        "bpf_map", {"path": str(pin_dir / "prog"), "type": "hash", "key": "u32", "value": "u32", "max_entries": 4}
    )
    assert result["failed"] is True
    assert "not a BPF map" in result["msg"]


# --- maps declared by sizes alone ----------------------------------------------------------------------------------

INNER_SIZED = {"type": "array", "key_size": 4, "value_size": 8, "max_entries": 2}
# name -> (module args without path, entries written and read back with bpf_map_entries (None: not an entry map),
# and what a rerun of bpf_map_entries gives back when it differs from what was written).
SIZED: dict[str, tuple[dict[str, Any], list[dict[str, Any]] | None]] = {
    "hash": ({"type": "hash", "key_size": 8, "value_size": 16}, [{"key": "01" * 8, "value": "02" * 16}]),
    "lru_hash": ({"type": "lru_hash", "key_size": 4, "value_size": 8}, [{"key": "0a000000", "value": "07" * 8}]),
    "percpu_hash": ({"type": "percpu_hash", "key_size": 4, "value_size": 8}, [{"key": "01000000", "value": "05" * 8}]),
    "lru_percpu_hash": (
        {"type": "lru_percpu_hash", "key_size": 2, "value_size": 4},
        [{"key": "0100", "value": "05000000"}],
    ),
    "hash_of_maps": ({"type": "hash_of_maps", "key_size": 4, "value_size": 4, "inner_map": INNER_SIZED}, []),
    "array": ({"type": "array", "key_size": 4, "value_size": 12}, [{"key": 1, "value": "0c" * 12}]),
    "percpu_array": ({"type": "percpu_array", "key_size": 4, "value_size": 4}, [{"key": 2, "value": "2a000000"}]),
    "array_of_maps": ({"type": "array_of_maps", "key_size": 4, "value_size": 4, "inner_map": INNER_SIZED}, []),
    "ringbuf": ({"type": "ringbuf", "max_entries": 4 * PAGE}, None),
    "perf_event_array": ({"type": "perf_event_array", "key_size": 4, "value_size": 4, "max_entries": 2}, None),
    "queue": ({"type": "queue", "value_size": 12}, [{"value": "0c" * 12}, {"value": "0d" * 12}]),
    "stack": ({"type": "stack", "value_size": 2}, [{"value": "0100"}]),
    # No BTF at all (neither side typed): raw-byte keys, prefixlen (24, little-endian) then the data 10.1.2.0.
    "lpm_trie": (
        {"type": "lpm_trie", "key_size": 8, "value_size": 8},
        [{"key": "180000000a010200", "value": "09" * 8}],
    ),
    # One side typed: the sized side gets BTF too, the key as struct { u32 prefixlen; u8 data[N]; }.
    "lpm_trie_typed_value": (
        {"type": "lpm_trie", "key_size": 8, "value": "u64"},
        [{"key": "10.1.2.0/24", "value": 9}, {"key": "10.0.0.0/8", "value": 1}],
    ),
    "lpm_trie_v6_typed_value": (
        {"type": "lpm_trie", "key_size": 20, "value": {"fields": [{"name": "action", "type": "u32"}]}},
        [{"key": "2001:db8::/32", "value": {"action": 2}}],
    ),
    "lpm_trie_odd_typed_value": (
        {"type": "lpm_trie", "key_size": 7, "value": "u32"},
        [{"key": {"prefixlen": 12, "data": [1, 2, 0]}, "value": 3}],
    ),
    "lpm_trie_typed_key": (
        {"type": "lpm_trie", "key": "u8[4]", "value_size": 4},
        [{"key": "192.168.0.0/16", "value": [1, 0, 0, 0]}],
    ),
    "array_typed_value": ({"type": "array", "key_size": 4, "value": "u64"}, [{"key": 3, "value": 11}]),
    "percpu_array_typed_value": ({"type": "percpu_array", "key_size": 4, "value": "u32"}, [{"key": 0, "value": 4}]),
    "hash_typed_value": ({"type": "hash", "key_size": 6, "value": "u64"}, [{"key": [1, 2, 3, 4, 5, 6], "value": 8}]),
    "hash_typed_key": ({"type": "hash", "key": "u32", "value_size": 3}, [{"key": 5, "value": [1, 2, 3]}]),
}


def _sized_args(pin_dir: Path, name: str) -> dict[str, Any]:
    args = dict(SIZED[name][0], path=str(pin_dir / name))
    args.setdefault("max_entries", 8)
    return args


def _comparable(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries as bpf_map_entries gives them back: per-CPU values come with their per-CPU list and sum."""
    return sorted(
        (
            {k: (v["per_cpu"][0] if isinstance(v, dict) and "per_cpu" in v else v) for k, v in e.items()}
            for e in entries
        ),
        key=repr,
    )


@pytest.mark.parametrize("name", list(SIZED))
def test_every_map_type_from_sizes_alone(pin_dir: Path, name: str) -> None:
    """Every map type bpf_map supports is created from key_size/value_size (with or without the other side typed),
    reruns unchanged, shows its sizes in bpftool, and is usable by bpf_map_entries where it holds entries."""
    args = _sized_args(pin_dir, name)
    first = run_module("bpf_map", args)
    assert first.get("failed") is not True and first["changed"] is True, (name, first)
    again = run_module("bpf_map", args)
    assert again.get("failed") is not True and again["changed"] is False and again["action"] == "none", again
    assert again["map"]["id"] == first["map"]["id"]
    shown = bpftool("map", "show", "pinned", args["path"])
    assert shown["type"] == args["type"]
    assert shown["bytes_key"] == first["map"]["key_size"] and shown["bytes_value"] == first["map"]["value_size"]
    if "key_size" in args and args["type"] not in ("queue", "stack", "ringbuf"):
        assert shown["bytes_key"] == args["key_size"]
    if "value_size" in args and args["type"] != "ringbuf":
        assert shown["bytes_value"] == args["value_size"]
    typed = "key" in args or "value" in args
    assert ("btf_id" in shown and shown["btf_id"] > 0) == typed, shown
    if name.startswith("lpm_trie") and typed:
        key_schema = again["map"]["key_schema"]
        assert [f["name"] for f in key_schema["fields"]][:1] == ["prefixlen"], key_schema
    entries = SIZED[name][1]
    if entries is None:
        return
    if args["type"].endswith("_of_maps"):
        inner = pin_dir / f"{name}_inner"
        assert run_module("bpf_map", dict(INNER_SIZED, path=str(inner)))["changed"] is True
        entries = [{"key": 1, "value": str(inner)}]  # maps of maps with 4-byte keys are keyed by a u32
    state = "merged" if args["type"] in ("queue", "stack") else "overridden"
    written = run_module("bpf_map_entries", {"path": args["path"], "state": state, "entries": entries})
    assert written.get("failed") is not True and written["changed"] is True, written
    gathered = run_module("bpf_map_entries", {"path": args["path"], "state": "gathered"})
    assert gathered.get("failed") is not True, gathered
    got = [{k: v for k, v in e.items() if k != "inner_map_id"} for e in gathered["entries"]]
    if "array" in args["type"]:  # every slot of an array exists; the others are zero
        got = [e for e in got if e["key"] in {w["key"] for w in entries}]
    assert _comparable(got) == _comparable(entries), (name, gathered["entries"])
    if state == "overridden":
        rerun = run_module("bpf_map_entries", {"path": args["path"], "state": state, "entries": entries})
        assert rerun.get("failed") is not True and rerun["changed"] is False, rerun
    if name == "lpm_trie_typed_value":
        dumped = {(e["key"]["prefixlen"], tuple(e["key"]["data"])): e["value"] for e in bpftool_formatted(args["path"])}
        assert dumped == {(24, (10, 1, 2, 0)): 9, (8, (10, 0, 0, 0)): 1}


def bpftool_formatted(path: str) -> list[dict[str, Any]]:
    return [e["formatted"] for e in bpftool("map", "dump", "pinned", path)]
