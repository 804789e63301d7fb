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
