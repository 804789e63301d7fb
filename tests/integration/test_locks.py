"""Lock files under /run/cnf-ebpf do not pile up: a released lock removes its file, leftovers nobody holds are swept,
and the locks stay exclusive while their files come and go (no timing assertions: proven by counts)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from .conftest import run_module

LOCK_DIR = Path("/run/cnf-ebpf")
RUNS = 4


def test_no_lock_files_remain_for_removed_maps(pin_dir: Path) -> None:
    """N maps, each written, read and emptied by bpf_map_entries (each run takes the map's lock), then removed: no
    map-<id>.lock of any of them is left."""
    ids = []
    for i in range(RUNS):
        path = str(pin_dir / f"m{i}")
        made = run_module("bpf_map", {"path": path, "type": "hash", "key": "u32", "value": "u64", "max_entries": 8})
        assert not made.get("failed"), made
        ids.append(made["map"]["id"])
        for args in (
            {"state": "merged", "entries": [{"key": 1, "value": i}]},
            {"state": "gathered"},
            {"state": "deleted"},
        ):
            result = run_module("bpf_map_entries", dict(args, path=path))
            assert not result.get("failed"), result
        assert run_module("bpf_map", {"path": path, "state": "absent"})["changed"] is True
    left = sorted(p.name for p in LOCK_DIR.glob("map-*.lock") if int(p.stem.split("-")[1]) in ids)
    assert left == [], f"lock files of removed maps {ids} remain: {left}"


def test_leftover_lock_files_are_swept_held_ones_kept(pin_dir: Path) -> None:
    """Files that no one holds (a run killed while holding its lock, or an earlier version that never removed its
    files) are removed by the next run; a file someone holds stays, and its lock with it."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    stale = [LOCK_DIR / f"map-99{tag[:6]}.lock", LOCK_DIR / f"app-stale{tag}.lock"]
    for f in stale:
        f.touch()
    held = LOCK_DIR / f"app-held{tag}.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl, sys\nf = open({str(held)!r}, 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\nsys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        path = str(pin_dir / "m")
        assert run_module("bpf_map", {"path": path, "type": "array", "value": "u32", "max_entries": 2})["changed"]
        result = run_module("bpf_map_entries", {"path": path, "state": "merged", "entries": [{"key": 0, "value": 1}]})
        assert result["changed"] is True, result
        assert [f.name for f in stale if f.exists()] == []
        assert held.exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
        held.unlink(missing_ok=True)
        for f in stale:
            f.unlink(missing_ok=True)


WORKER = """
import sys

from ansible_collections.cnf.ebpf.plugins.module_utils.resources._locks import file_lock
name, counter, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(rounds):
    with file_lock(name, 120):
        with open(counter) as f:
            n = int(f.read())
        with open(counter, "w") as f:
            f.write(str(n + 1))
"""


def test_locks_stay_exclusive_while_their_files_come_and_go(tmp_path: Path) -> None:
    """Processes incrementing one counter under one lock, each release unlinking the file and each acquisition
    re-checking it: no increment is lost (a waiter that won the flock of an unlinked file would race the holder of
    the new one), and no file is left."""
    name = f"cnf-test-{uuid.uuid4().hex[:8]}"
    counter = tmp_path / "counter"
    counter.write_text("0")
    workers, rounds = 4, 150
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, name, str(counter), str(rounds)])  # inherits PYTHONPATH
        for _worker in range(workers)
    ]
    assert [p.wait() for p in procs] == [0] * workers
    assert int(counter.read_text()) == workers * rounds
    assert not (LOCK_DIR / f"{name}.lock").exists()
