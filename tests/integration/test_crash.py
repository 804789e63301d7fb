"""Runs killed half-way (SIGKILL at named points: resources/_faults.py, CNF_EBPF_KILL_AT) leave the host in a state
the next run recognises, finishes and reports (issue 17, item 1). The kills are deterministic: the process kills
itself at the n-th visit of a point, not after a delay."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from .conftest import MODULES, bpftool, run_module

LOCK_DIR = Path("/run/cnf-ebpf")


def killed_run(name: str, args: dict[str, Any], point: str, tmp: Path) -> None:
    """Run a module that must die at `point` (SIGKILL, so nothing of it prints or cleans up)."""
    args_file = tmp / f"args-{uuid.uuid4().hex}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run(
        ["env", f"CNF_EBPF_KILL_AT={point}", sys.executable, str(MODULES / f"{name}.py"), str(args_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"not killed at {point}: rc {proc.returncode}\n{proc.stdout}{proc.stderr}"
    )


def contents(path: Path) -> dict[int, int]:
    return {
        int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little"): int.from_bytes(
            bytes(int(b, 16) for b in e["value"]), "little"
        )
        for e in bpftool("map", "dump", "pinned", str(path))
    }


def src(path: Path, keys: range, value: int) -> Path:
    path.write_text(json.dumps([{"key": k, "value": value} for k in keys]))
    return path


def test_overridden_killed_between_writes_is_finished_and_reported(pin_dir: Path, tmp_path: Path) -> None:
    path = pin_dir / "rules"
    made = run_module(
        "bpf_map", {"path": str(path), "type": "hash", "key": "u32", "value": "u64", "max_entries": 300_000}
    )
    assert not made.get("failed"), made
    map_id = made["map"]["id"]
    marker = LOCK_DIR / f"map-{map_id}.writing"
    old = src(tmp_path / "old.json", range(0, 200_000), 1)
    new = src(tmp_path / "new.json", range(100_000, 300_000), 2)
    assert run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(old)})["changed"]
    want = dict.fromkeys(range(100_000, 300_000), 2)

    # killed after the first slice of 65536 writes, before the second: the map is half of each
    killed_run(
        "bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(new)}, "entries.write@2", tmp_path
    )
    half = contents(path)
    assert half != want and sum(v == 2 for v in half.values()) == 65536
    assert marker.exists(), "the write in progress is on record"

    # check mode says what it would repair and repairs nothing
    peek = run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(new)}, check=True)
    assert peek["changed"] is True and "would finish" in peek["repaired"][0], peek
    assert contents(path) == half and marker.exists()

    # the next run finishes the job and says so; the one after has nothing to repair
    done = run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(new)})
    assert not done.get("failed"), done
    assert len(done["repaired"]) == 1 and "state=overridden" in done["repaired"][0]
    assert "was killed while writing this map (200000 writes and 100000 deletes planned)" in done["repaired"][0]
    assert done["counts"] == {
        "added": 100_000,
        "updated": 200_000 - 100_000 - 65536,
        "removed": 100_000,
        "unchanged": 65536,
    }
    assert contents(path) == want and not marker.exists()
    again = run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(new)})
    assert again["changed"] is False and "repaired" not in again

    # killed after every write, before the deletes
    killed_run(
        "bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(old)}, "entries.delete", tmp_path
    )
    assert len(contents(path)) == 300_000 and marker.exists()
    done = run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(old)})
    assert done["counts"]["removed"] == 100_000 and done["counts"]["unchanged"] == 200_000 and done["repaired"]
    assert contents(path) == dict.fromkeys(range(0, 200_000), 1) and not marker.exists()
