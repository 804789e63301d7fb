"""Runs of cnf.ebpf.bpf_map_entries against one map are serialised by a lock keyed by the map id (under /run/cnf-ebpf).

No timing assertions: serialisation is proven by what each run saw (its counts) and by the final kernel contents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.resources._entries import map_lock

from .conftest import MODULES, bpftool, run_module

LOCK_DIR = Path("/run/cnf-ebpf")
N = 3000


def make_map(path: Path, max_entries: int) -> int:
    result = run_module(
        "bpf_map", {"path": str(path), "type": "hash", "key": "u32", "value": "u64", "max_entries": max_entries}
    )
    assert not result.get("failed"), result
    return result["map"]["id"]


def write_src(path: Path, base: int, n: int, value: int) -> dict[bytes, bytes]:
    path.write_text(json.dumps([{"key": base + i, "value": value} for i in range(n)]))
    return {(base + i).to_bytes(4, "little"): value.to_bytes(8, "little") for i in range(n)}


def raw_items(path: Path) -> dict[bytes, bytes]:
    return {
        bytes(int(b, 16) for b in e["key"]): bytes(int(b, 16) for b in e["value"])
        for e in bpftool("map", "dump", "pinned", str(path))
    }


def start_module(args: dict[str, Any], tmp: Path) -> subprocess.Popen[str]:
    """Start the module as Ansible would (an args file) without waiting for it."""
    args_file = tmp / f"args-{uuid.uuid4().hex}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=False)}))
    return subprocess.Popen(
        [sys.executable, str(MODULES / "bpf_map_entries.py"), str(args_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate()
    try:
        result = json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"module printed no JSON:\n{out}\n{err}") from None
    assert not result.get("failed"), result
    return result


def test_concurrent_overridden_ends_with_exactly_one_content(pin_dir: Path, tmp_path: Path) -> None:
    path = pin_dir / "m"
    make_map(path, 4 * N)
    content_a = write_src(tmp_path / "a.json", 0, N, 1)
    content_b = write_src(tmp_path / "b.json", 1_000_000, N, 2)
    winners = []
    for rnd in range(5):
        pa = start_module({"path": str(path), "state": "overridden", "src": str(tmp_path / "a.json")}, tmp_path)
        pb = start_module({"path": str(path), "state": "overridden", "src": str(tmp_path / "b.json")}, tmp_path)
        ra, rb = finish(pa), finish(pb)
        final = raw_items(path)
        assert final in (content_a, content_b), (
            f"round {rnd}: {len(final)} entries, "
            f"{len(final.keys() & content_a.keys())} of A, {len(final.keys() & content_b.keys())} of B"
        )
        winner, loser = (rb, ra) if final == content_b else (ra, rb)
        winners.append("b" if final == content_b else "a")
        # The run that ended last saw the other run's complete result: all N of its keys, and nothing else.
        assert winner["changed"] is True
        assert winner["counts"] == {"added": N, "updated": 0, "removed": N, "unchanged": 0}, (winner, loser)
    assert len(winners) == 5


def _lock_name(map_id: int) -> str:
    # The map's own lock file; application locks (app-<name>.lock) live in the same directory.
    return f"map-{map_id}.lock"


def _held_lock_types(map_id: int) -> dict[int, str]:
    """pid -> lock kind (FLOCK/POSIX/OFDLCK) for every lock held on a lock file of this map under /run/cnf-ebpf."""
    if not LOCK_DIR.is_dir():
        return {}
    inodes = {f.stat().st_ino for f in LOCK_DIR.iterdir() if f.name == _lock_name(map_id)}
    held: dict[int, str] = {}
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if parts[1] == "->":  # a waiter, not a holder
            continue
        kind, pid, dev_ino = parts[1], parts[4], parts[5]
        if int(dev_ino.rsplit(":", 1)[1]) in inodes:
            held[int(pid)] = kind
    return held


def _reconcile_in_thread(params: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    from ansible_collections.cnf.ebpf.plugins.module_utils.surface._entries_module import reconcile

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = reconcile(params)
        except Exception as exc:  # reported by the test
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def _wait_until_held(map_id: int, thread: threading.Thread) -> str:
    """Poll /proc/locks until this process holds the map's lock; the lock kind."""
    while thread.is_alive():
        kind = _held_lock_types(map_id).get(os.getpid())
        if kind:
            return kind
    raise AssertionError("the reconcile finished before its lock was ever seen held under /run/cnf-ebpf")


BIG = 60_000


def test_second_run_waits_for_the_lock_instead_of_interleaving(pin_dir: Path, tmp_path: Path) -> None:
    path = pin_dir / "m"
    map_id = make_map(path, 2 * BIG)
    write_src(tmp_path / "big.json", 0, BIG, 1)
    content_b = write_src(tmp_path / "b.json", 5_000_000, 10, 2)
    thread, box = _reconcile_in_thread({"path": str(path), "state": "overridden", "src": str(tmp_path / "big.json")})
    _wait_until_held(map_id, thread)
    # A holds the lock now; B starts while A is writing.
    pb = start_module({"path": str(path), "state": "overridden", "src": str(tmp_path / "b.json")}, tmp_path)
    thread.join()
    rb = finish(pb)
    assert "error" not in box, box.get("error")
    assert box["result"]["counts"] == {"added": BIG, "updated": 0, "removed": 0, "unchanged": 0}
    # B read the map only after A was done: it removed every one of A's keys.
    assert rb["counts"] == {"added": 10, "updated": 0, "removed": BIG, "unchanged": 0}, rb["counts"]
    assert raw_items(path) == content_b


def test_lock_timeout_when_the_lock_is_held(pin_dir: Path, tmp_path: Path) -> None:
    path = pin_dir / "m"
    map_id = make_map(path, 2 * BIG)
    write_src(tmp_path / "big.json", 0, BIG, 1)
    filled = run_module(
        "bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(tmp_path / "big.json")}
    )
    assert not filled.get("failed"), filled
    # Learn which kind of lock the map lock is by holding it here (deterministic, unlike catching a run holding it).
    with map_lock(map_id, 5):
        kind = _held_lock_types(map_id).get(os.getpid())
    assert kind, "the map lock was not seen in /proc/locks while held"
    before = raw_items(path)
    lock_file = LOCK_DIR / _lock_name(map_id)
    assert not lock_file.exists(), "a released lock leaves no file behind"
    # Hold it ourselves (creating the file as a run would), in a child process so POSIX locks are not shared with a
    # thread of ours.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys\n"
            f"f = open({str(lock_file)!r}, 'a+')\n"
            f"({'fcntl.flock' if kind == 'FLOCK' else 'fcntl.lockf'})(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = run_module("bpf_map_entries", {"path": str(path), "state": "deleted", "lock_timeout": 1})
        assert result.get("failed") is True, result
        assert "lock" in result["msg"].lower(), result["msg"]
        assert raw_items(path) == before
        # a waiting run, released by us, then completes
        pc = start_module({"path": str(path), "state": "deleted", "lock_timeout": 120}, tmp_path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    rc = finish(pc)
    assert rc["counts"]["removed"] == BIG
    assert raw_items(path) == {}
    assert not lock_file.exists(), "the run that took the lock over removed its file"


RUNS = 20
EACH = 500


def test_twenty_runs_on_one_map_and_twenty_on_twenty_maps(pin_dir: Path, tmp_path: Path) -> None:
    """Issue 17, item 4: 20 module processes at once on one map, each merging its own key range and one shared key,
    and 20 at once on 20 maps, each overriding its map: every final content is exact, every run's counts add up, and
    no lock is held once they are done."""
    shared_key = 999_999
    one = pin_dir / "one"
    one_id = make_map(one, RUNS * EACH + 1)
    ranges = {}
    for run in range(RUNS):
        entries = [{"key": run * EACH + i, "value": run} for i in range(EACH)] + [{"key": shared_key, "value": run}]
        (tmp_path / f"one-{run}.json").write_text(json.dumps(entries))
        ranges[run] = {(run * EACH + i).to_bytes(4, "little"): run.to_bytes(8, "little") for i in range(EACH)}
    procs = [
        start_module({"path": str(one), "state": "merged", "src": str(tmp_path / f"one-{run}.json")}, tmp_path)
        for run in range(RUNS)
    ]
    results = [finish(proc) for proc in procs]
    final = raw_items(one)
    shared = final.pop(shared_key.to_bytes(4, "little"))
    assert final == {k: v for content in ranges.values() for k, v in content.items()}
    assert int.from_bytes(shared, "little") in range(RUNS)
    assert sum(r["counts"]["added"] for r in results) == RUNS * EACH + 1, "the shared key was added exactly once"
    assert sum(r["counts"]["updated"] + r["counts"]["unchanged"] for r in results) == RUNS - 1
    assert _held_lock_types(one_id) == {}

    maps = [pin_dir / f"map{i}" for i in range(RUNS)]
    ids = [make_map(path, EACH) for path in maps]
    contents = [write_src(tmp_path / f"many-{i}.json", i * EACH, EACH, i) for i in range(RUNS)]
    procs = [
        start_module({"path": str(path), "state": "overridden", "src": str(tmp_path / f"many-{i}.json")}, tmp_path)
        for i, path in enumerate(maps)
    ]
    for proc in procs:
        assert finish(proc)["counts"]["added"] == EACH
    assert [raw_items(path) for path in maps] == contents
    assert all(_held_lock_types(map_id) == {} for map_id in ids)
