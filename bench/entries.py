"""Write a typed map's contents: the bpf_map_entries engine against bpftool and the raw batch-syscall floor.

One run, one map shape: a hash map keyed by the packed 13-byte flow_key {src_ip, dst_ip, src_port, dst_port,
protocol} with a 32-byte flow_stats {packets, bytes, first_seen, last_seen} (u64s) value.

Engine cases (`reconcile()` in-process, entries already built as Python dicts, as Ansible hands them to the module):
  (a) N new entries into an empty map (state=merged)
  (b) the same N again: a no-op
  (c) 1% of the values changed (state=merged)
  (d) state=overridden with half of the N entries (deletes the other half)
Baselines on the same data:
  floor        pre-encoded key/value bytes through the kernel layer alone (BpfMap.update_many / items / delete_many,
               batch syscalls through ctypes): what any encoder in Python must add to, the engine cannot beat it
  bpftool batch `bpftool batch file F` with one `map update` (or `map delete`) line per entry; measured for real when a
               100k pilot says it finishes within --batch-budget seconds, else extrapolated from the pilot
  bpftool each one `bpftool map update pinned P key hex .. value hex ..` process per entry; 1k timed, extrapolated
  bcc table    bcc's Python table API as its users write it: ctypes structs from the same dicts, one batch call
Whole Ansible task: ansible-playbook on localhost with one cnf.ebpf.bpf_map_entries task (10k entries inline from a vars
file; N entries from src as JSON and as CSV), each minus the wall time of an empty playbook (also reported).

Run as root from the repo:
  PYTHONPATH=$PWD/.build/collections .venv/bin/python bench/entries.py [--quick | --sizes N ...] [--no-ansible]
      [--profile [M]]
Each engine case prints its peak RSS (VmHWM, reset before the case) and how much of it the case itself allocated;
each playbook the peak RSS of the module's process (its interpreter is a wrapper that records it).
Default N is 1M (about 3-4 min on 2 cores); --quick uses 100k. --profile re-runs (a) and (b) under cProfile on M
entries (default 100k, separately from the timed runs) and prints the top functions.
Pins live in a fresh /sys/fs/bpf/cnf-bench-<random> directory, removed at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import datetime
import gc
import io
import json
import os
import platform
import pstats
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from flows import FLOW_KEY, FLOW_STATS

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._bpf_map import BpfMap
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._entries_module import reconcile
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _schema
from ansible_collections.cnf.ebpf.plugins.module_utils.types._codec import compile_codec
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / ".build" / "collections"

STATS_FIELDS = ("packets", "bytes", "first_seen", "last_seen")
KEY_FIELDS = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
KEY_STRUCT = struct.Struct("<IIHHB")  # packed: 13 bytes, host (x86: little) byte order as the codec writes it
VALUE_STRUCT = struct.Struct("<4Q")

# Goals (issue 16): engine time / floor time per case, the whole task from src / the engine's (a), peak RSS.
GOAL_VS_FLOOR = {"a": 2.0, "b": 1.5, "c": 1.5}
GOAL_TASK_VS_ENGINE = 1.5
GOAL_PEAK_MB = 400


# --- data ----------------------------------------------------------------------------------------------------------


def key_obj(i: int) -> dict[str, int]:
    return {
        "src_ip": 0x0A000000 + i,
        "dst_ip": 0xC0A80000 + (i * 7919 & 0xFFFF),
        "src_port": 1024 + i % 60000,
        "dst_port": 443,
        "protocol": 6,
    }


def value_obj(i: int, bump: int = 0) -> dict[str, int]:
    return {
        "packets": i + bump,
        "bytes": i * 1500 + bump,
        "first_seen": 1_700_000_000 + i,
        "last_seen": 1_700_000_100 + i + bump,
    }


def key_bytes(k: dict[str, int]) -> bytes:
    return KEY_STRUCT.pack(*(k[f] for f in KEY_FIELDS))


def value_bytes(v: dict[str, int]) -> bytes:
    return VALUE_STRUCT.pack(*(v[f] for f in STATS_FIELDS))


@dataclass
class Data:
    n: int
    entries: list[dict[str, Any]]  # (a), (b)
    changed: list[dict[str, Any]]  # (c): every 100th value bumped
    changed_idx: list[int]
    half: list[dict[str, Any]]  # (d): the first half of `changed`
    pairs: list[tuple[bytes, bytes]]  # pre-encoded `entries`
    changed_pairs: list[tuple[bytes, bytes]]  # pre-encoded changed entries only


def make_data(n: int) -> Data:
    entries = [{"key": key_obj(i), "value": value_obj(i)} for i in range(n)]
    changed_idx = list(range(0, n, 100))
    changed = list(entries)
    for i in changed_idx:
        changed[i] = {"key": entries[i]["key"], "value": value_obj(i, bump=1)}
    pairs = [(key_bytes(e["key"]), value_bytes(e["value"])) for e in entries]
    changed_pairs = [(key_bytes(changed[i]["key"]), value_bytes(changed[i]["value"])) for i in changed_idx]
    return Data(n, entries, changed, changed_idx, changed[: n // 2], pairs, changed_pairs)


# --- helpers -------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, pin_dir: str, work: Path) -> None:
        self.pin_dir = pin_dir
        self.work = work
        self.key_t = _schema.type_from_schema(FLOW_KEY, path="key")
        self.value_t = _schema.type_from_schema(FLOW_STATS, path="value")
        self._count = 0

    def spec(self, n: int, path: str = "") -> MapSpec:
        return MapSpec(
            path=path or f"{self.pin_dir}/unpinned",
            type="hash",
            name="bench",
            key_size=13,
            value_size=32,
            max_entries=n,
            key_type=self.key_t,
            value_type=self.value_t,
        )

    def new_pinned(self, n: int, label: str) -> str:
        """A fresh, empty pinned map of the bench shape; returns its pin path."""
        self._count += 1
        path = f"{self.pin_dir}/{label}_{self._count}"
        with _maps.create_map(self.spec(n, path)) as bpf_map:
            bpf_map.pin(path)
        return path

    def unpin(self, path: str) -> None:
        os.unlink(path)  # the map goes away with its last reference

    def check_codec(self, data: Data) -> None:
        """The bytes the baselines write are the bytes the engine writes."""
        kc = compile_codec(self.key_t, root="key")
        vc = compile_codec(self.value_t, root="value")
        e = data.entries[min(12345, data.n - 1)]
        assert kc.encode(e["key"]) == key_bytes(e["key"]), "key layout differs from the codec"
        assert vc.encode(e["value"]) == value_bytes(e["value"]), "value layout differs from the codec"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def with_peak_rss(func: Callable[[], Any]) -> tuple[float, float, Any]:
    """(peak RSS MB during func, MB above the RSS before it, func's result): the peak is reset first by writing 5 to
    /proc/self/clear_refs, so it is this run's own, not that of building the data."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    result = func()
    peak = _status_kb("VmHWM")
    return peak / 1024, (peak - before) / 1024, result


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def map_len(path: str) -> int:
    from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._bpf_map import map_open

    with map_open(path) as m:
        return sum(1 for _i in m.items())


def bpftool_line(op: str, path: str, key: bytes, value: bytes | None = None) -> str:
    line = f"map {op} pinned {path} key hex {key.hex(' ')}"
    if value is not None:
        line += f" value hex {value.hex(' ')}"
    return line + "\n"


def run_bpftool_batch(file: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        ["bpftool", "batch", "file", str(file)],
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"bpftool batch file {file} failed: {proc.stderr.strip()[-500:]}")
    return took


def write_batch(file: Path, lines: Any) -> Path:
    with open(file, "w", encoding="ascii") as f:
        f.writelines(lines)
    return file


@dataclass
class Measured:
    seconds: float
    entries: int
    how: str = "measured"
    peak_mb: float = 0.0  # peak RSS of the process during the run (VmHWM, reset before it)
    grew_mb: float = 0.0  # of which allocated by the run itself (peak minus the RSS before it)

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else float("inf")


# --- engine --------------------------------------------------------------------------------------------------------


def engine_cases(b: Bench, data: Data) -> tuple[dict[str, Measured], str]:
    n = data.n
    path = b.new_pinned(n, "engine")
    out: dict[str, Measured] = {}

    def run(case: str, state: str, entries: list, expect: dict[str, int]) -> None:
        gc.collect()
        peak, grew, (took, result) = with_peak_rss(
            lambda: timed(lambda: reconcile({"path": path, "state": state, "entries": entries}))
        )
        counts = result["counts"]
        for k, v in expect.items():
            assert counts[k] == v, f"{case}: counts {counts}, expected {expect}"
        out[case] = Measured(took, len(entries), peak_mb=peak, grew_mb=grew)
        print(f"  engine {case:<4} {took:8.3f} s  peak RSS {peak:.0f} MB (+{grew:.0f} MB)  {counts}", flush=True)

    run("a", "merged", data.entries, {"added": n, "updated": 0})
    run("b", "merged", data.entries, {"added": 0, "updated": 0, "unchanged": n})
    run(
        "c",
        "merged",
        data.changed,
        {"updated": len(data.changed_idx), "unchanged": n - len(data.changed_idx)},
    )
    run("d", "overridden", data.half, {"removed": n - n // 2, "unchanged": n // 2})
    left = map_len(path)
    assert left == n // 2, f"after (d) the map holds {left} entries, expected {n // 2}"
    return out, path


def floor_cases(b: Bench, data: Data) -> dict[str, Measured]:
    """The kernel layer alone, pre-encoded bytes: (a) update_many into an empty map (best of 3 fresh maps),
    (b) read everything into {key: value} (read_all), (c) read + write the changed 1%, (d) read + delete half."""
    n = data.n
    out: dict[str, Measured] = {}
    best = None
    keep: BpfMap | None = None
    for _i in range(3):
        if keep is not None:
            keep.close()
        keep = _maps.create_map(b.spec(n))
        took, done = timed(lambda m=keep: m.update_many(data.pairs))
        assert done == n
        best = took if best is None else min(best, took)
    out["a"] = Measured(best, n, "best of 3")
    assert keep is not None
    try:
        took = min(timed(keep.read_all)[0] for _i in range(3))
        out["b"] = Measured(took, n, "best of 3")
        took, _result = timed(lambda: (keep.read_all(), keep.update_many(data.changed_pairs)))
        out["c"] = Measured(took, n)
        gone = [k for k, _v in data.pairs[n // 2 :]]
        took, _result = timed(lambda: (keep.read_all(), keep.delete_many(gone)))
        out["d"] = Measured(took, n // 2)
        assert sum(1 for _i in keep.items()) == n // 2
    finally:
        keep.close()
    return out


# --- bpftool -------------------------------------------------------------------------------------------------------


def bpftool_each(b: Bench, data: Data, count: int = 1000) -> Measured:
    path = b.new_pinned(max(count, 1), "bpftool_each")
    try:
        start = time.perf_counter()
        for k, v in data.pairs[:count]:
            subprocess.run(
                [
                    "bpftool",
                    "map",
                    "update",
                    "pinned",
                    path,
                    "key",
                    "hex",
                    *k.hex(" ").split(),
                    "value",
                    "hex",
                    *v.hex(" ").split(),
                ],
                check=True,
                capture_output=True,
            )
        took = time.perf_counter() - start
        assert map_len(path) == min(count, data.n)
    finally:
        b.unpin(path)
    per = took / min(count, data.n)
    return Measured(
        per * data.n,
        data.n,
        f"{min(count, data.n)} timed, x{data.n // min(count, data.n)} extrapolated",
    )


def bpftool_batch(b: Bench, data: Data, budget: float) -> dict[str, Measured]:
    """`bpftool batch file` for each engine case, with the lines a script that already knows the diff would write
    ((b): a script without state re-pushes every entry)."""
    n = data.n
    out: dict[str, Measured] = {}
    pilot = min(n, 100_000)
    path = b.new_pinned(n, "bpftool_batch")
    try:
        f = write_batch(
            b.work / "pilot.batch",
            (bpftool_line("update", path, k, v) for k, v in data.pairs[:pilot]),
        )
        pilot_s = run_bpftool_batch(f)
        f.unlink()
        estimate = pilot_s * n / pilot
        if pilot == n or estimate <= budget:
            if pilot == n:
                out["a"] = Measured(pilot_s, n)
            else:
                b.unpin(path)
                path = b.new_pinned(n, "bpftool_batch")
            f = write_batch(
                b.work / "all.batch",
                (bpftool_line("update", path, k, v) for k, v in data.pairs),
            )
            if pilot != n:
                out["a"] = Measured(run_bpftool_batch(f), n)
            assert map_len(path) == n
            # (b): the same file again over the full map (bpftool cannot tell that nothing changes).
            out["b"] = Measured(run_bpftool_batch(f), n)
            f.unlink()
        else:
            how = f"{pilot} timed, x{n // pilot} extrapolated"
            out["a"] = Measured(estimate, n, how)
            # Fill the rest with the kernel layer so (c) and (d) run against a full map.
            with _maps._bpf_map.map_open(path) as m:
                m.update_many(data.pairs[pilot:])
            f = write_batch(
                b.work / "pilot.batch",
                (bpftool_line("update", path, k, v) for k, v in data.pairs[:pilot]),
            )
            out["b"] = Measured(run_bpftool_batch(f) * n / pilot, n, how)
            f.unlink()
        # (c): only the changed 1%.
        f = write_batch(
            b.work / "changed.batch",
            (bpftool_line("update", path, k, v) for k, v in data.changed_pairs),
        )
        out["c"] = Measured(run_bpftool_batch(f), len(data.changed_pairs))
        f.unlink()
        # (d): delete the second half (the script is handed the keys to delete).
        gone = [k for k, _v in data.pairs[n // 2 :]]
        if out["a"].how == "measured":
            f = write_batch(b.work / "delete.batch", (bpftool_line("delete", path, k) for k in gone))
            out["d"] = Measured(run_bpftool_batch(f), len(gone))
        else:
            part = gone[: min(len(gone), 100_000)]
            f = write_batch(b.work / "delete.batch", (bpftool_line("delete", path, k) for k in part))
            out["d"] = Measured(
                run_bpftool_batch(f) * len(gone) / len(part),
                len(gone),
                f"{len(part)} timed, extrapolated",
            )
        f.unlink()
    finally:
        b.unpin(path)
    return out


# --- ansible -------------------------------------------------------------------------------------------------------


BCC_PROGRAM = """
struct flow_key { u32 src_ip; u32 dst_ip; u16 src_port; u16 dst_port; u8 protocol; } __attribute__((packed));
struct flow_stats { u64 packets; u64 bytes; u64 first_seen; u64 last_seen; };
BPF_HASH(flows, struct flow_key, struct flow_stats, %d);
"""


def bcc_cases(data: Data) -> dict[str, Measured] | str:
    """bcc's table API as a Python user writes it: ctypes structs built from the same dicts, one batch call
    (items_update_batch / items_delete_batch) into a map of a bcc program; like bpftool, it cannot tell what is
    already there, so (b) writes everything again and (c)/(d) are given the diff. Returns why when bcc is missing."""
    sys.path.append("/usr/lib/python3/dist-packages")  # python3-bpfcc, outside the venv
    try:
        import ctypes

        from bcc import BPF  # type: ignore[import-not-found]
    except ImportError as exc:
        return f"bcc not importable ({exc})"
    n = data.n
    try:
        program = BPF(text=BCC_PROGRAM % n)
    except Exception as exc:  # bcc raises plain Exceptions (no kernel headers, ...)
        return f"bcc cannot compile here ({exc})"
    table = program["flows"]
    key_t, leaf_t = table.Key, table.Leaf
    assert ctypes.sizeof(key_t) == KEY_STRUCT.size and ctypes.sizeof(leaf_t) == VALUE_STRUCT.size

    def write(entries: list) -> None:
        keys = (key_t * len(entries))()
        values = (leaf_t * len(entries))()
        for i, e in enumerate(entries):
            keys[i] = key_t(**e["key"])
            values[i] = leaf_t(**e["value"])
        table.items_update_batch(keys, values)

    def delete(entries: list) -> None:
        keys = (key_t * len(entries))()
        for i, e in enumerate(entries):
            keys[i] = key_t(**e["key"])
        table.items_delete_batch(keys)

    out: dict[str, Measured] = {}
    try:
        out["a"] = Measured(timed(lambda: write(data.entries))[0], n, "ctypes + items_update_batch")
        out["b"] = Measured(timed(lambda: write(data.entries))[0], n, "all again")
        changed = [data.changed[i] for i in data.changed_idx]
        out["c"] = Measured(timed(lambda: write(changed))[0], len(changed), "only the 1%: given the diff")
        gone = data.entries[n // 2 :]
        out["d"] = Measured(timed(lambda: delete(gone))[0], len(gone), "given the keys to delete")
        assert len(table) == n // 2
    finally:
        program.cleanup()
    return out


def ansible_cases(b: Bench, data: Data) -> list[tuple[str, Measured, float]]:
    """(label, wall time of the playbook, wall time minus the empty playbook)."""
    n = data.n
    work = b.work
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_HOST_KEY_CHECKING="0",
    )
    env.pop("PYTHONPATH", None)  # the controller finds the collection through ANSIBLE_COLLECTIONS_PATH
    playbook_bin = str(Path(sys.executable).parent / "ansible-playbook")

    def play(name: str, tasks: list, vars_files: list[str] | None = None) -> Path:
        p: dict[str, Any] = {"hosts": "localhost", "gather_facts": False}
        if vars_files:
            p["vars_files"] = vars_files
        p["tasks"] = tasks
        book = work / f"{name}.yml"
        book.write_text(yaml.safe_dump([p], sort_keys=False))
        return book

    # The module's interpreter is a wrapper that runs the venv's python and records that process's peak RSS: the
    # controller's own peak (ansible-playbook, ~300 MB) would hide the module's in wait4's figure.
    rss_log = work / "module_rss.log"
    wrapper = work / "python-rss"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec {sys.executable} -c "import resource, subprocess, sys; '
        f"rc = subprocess.call([{sys.executable!r}, *sys.argv[1:]]); "
        f"open({str(rss_log)!r}, 'a').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) + '\\n'); "
        'sys.exit(rc)" "$@"\n'
    )
    wrapper.chmod(0o755)

    def run(book: Path) -> float:
        cmd = [
            playbook_bin,
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={wrapper}",
            str(book),
        ]
        rss_log.write_text("")
        start = time.perf_counter()
        out_file, err_file = work / "play.out", work / "play.err"
        with open(out_file, "w") as out, open(err_file, "w") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=work)
            proc.wait()
        took = time.perf_counter() - start
        stdout = out_file.read_text()
        if proc.returncode != 0 or re.search(r"(failed|unreachable)=[1-9]", stdout):
            raise RuntimeError(f"{book.name} failed:\n{stdout[-3000:]}\n{err_file.read_text()[-2000:]}")
        peaks[book.name] = max((int(v) for v in rss_log.read_text().split()), default=0) / 1024
        return took

    def task(path: str, **args: Any) -> dict:
        return {"name": "entries", "cnf.ebpf.bpf_map_entries": {"path": path, **args}}

    out: list[tuple[str, Measured, float]] = []
    peaks: dict[str, float] = {}
    empty_s = min(run(play("empty", [])) for _i in range(3))
    out.append(("empty playbook (fixed overhead, best of 3)", Measured(empty_s, 0), 0.0))
    print(f"  ansible empty playbook {empty_s:.3f} s", flush=True)

    small = min(10_000, n)
    vars_file = work / "vars_small.yml"
    with open(vars_file, "w", encoding="utf-8") as f:
        yaml.dump(
            {"bench_entries": data.entries[:small]},
            f,
            Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
            sort_keys=False,
        )
    # The same entries as JSON (a YAML subset): ansible-core 2.19 tags every YAML scalar with its origin, which
    # dominates loading a big YAML vars file; its JSON loader is much cheaper.
    json_vars = work / "vars_small.json"
    json_vars.write_text(json.dumps({"bench_entries": data.entries[:small]}))
    for label, vf in (("YAML vars file", vars_file), ("JSON vars file", json_vars)):
        path = b.new_pinned(n, "ansible")
        took = run(play("inline", [task(path, entries="{{ bench_entries }}")], [str(vf)]))
        assert map_len(path) == small
        b.unpin(path)
        out.append(
            (
                f"{fmt_n(small)} entries inline ({label})",
                Measured(took, small, peak_mb=peaks["inline.yml"]),
                took - empty_s,
            )
        )
        print(f"  ansible {small} inline, {label} {took:.3f} s", flush=True)

    json_file = work / "entries.json"
    with open(json_file, "w", encoding="utf-8") as f:
        json.dump(data.entries, f)
    csv_file = work / "entries.csv"
    with open(csv_file, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"key.{k}" for k in KEY_FIELDS] + [f"value.{v}" for v in STATS_FIELDS])
        for e in data.entries:
            w.writerow([e["key"][k] for k in KEY_FIELDS] + [e["value"][v] for v in STATS_FIELDS])
    for label, src in (("JSON", json_file), ("CSV", csv_file)):
        path = b.new_pinned(n, "ansible")
        took = run(play(f"src_{label}", [task(path, src=str(src))]))
        assert map_len(path) == n
        b.unpin(path)
        out.append(
            (
                f"{fmt_n(n)} entries from src ({label})",
                Measured(took, n, peak_mb=peaks[f"src_{label}.yml"]),
                took - empty_s,
            )
        )
        print(f"  ansible {n} {label} {took:.3f} s", flush=True)
        src.unlink()
    return out


# --- profile -------------------------------------------------------------------------------------------------------


def profile(b: Bench, m: int, top: int = 18) -> None:
    data = make_data(m)
    path = b.new_pinned(m, "profile")
    try:
        for case, entries in (
            ("a", data.entries),
            ("b", data.entries),
            ("c", data.changed),
        ):
            gc.collect()
            prof = cProfile.Profile()
            start = time.perf_counter()
            prof.enable()
            reconcile({"path": path, "state": "merged", "entries": entries})
            prof.disable()
            took = time.perf_counter() - start
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf)
            stats.strip_dirs().sort_stats("tottime").print_stats(top)
            print(f"\n--- cProfile, case ({case}), {m} entries: {took:.3f} s under the profiler (by tottime) ---")
            print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[:6000])
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(
                r"reconcile|encode_entries|plan_entries|read|apply|load_src|merge_bytes|_same|given_bit"
            )
            print(f"--- cumulative, case ({case}) ---")
            print("\n".join(line for line in buf.getvalue().splitlines() if line.strip() and "(" in line))
        # Garbage-collector share: the same (b) with gc disabled.
        for enabled in (True, False):
            gc.collect()
            if not enabled:
                gc.disable()
            try:
                took, _result = timed(lambda: reconcile({"path": path, "state": "merged", "entries": data.entries}))
            finally:
                gc.enable()
            print(f"--- case (b) without profiler, gc {'enabled' if enabled else 'disabled'}: {took:.3f} s")
    finally:
        b.unpin(path)


# --- report --------------------------------------------------------------------------------------------------------


def fmt_n(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def fmt_rate(r: float) -> str:
    if r >= 1e6:
        return f"{r / 1e6:.2f}M/s"
    if r >= 1e3:
        return f"{r / 1e3:.1f}k/s"
    return f"{r:.0f}/s"


def report(
    n: int,
    eng: dict[str, Measured],
    floor: dict[str, Measured],
    each: Measured | None,
    batch: dict[str, Measured] | None,
    ans: list | None,
    bcc: dict[str, Measured] | str | None = None,
) -> None:
    N = fmt_n(n)
    cases = {
        "a": f"(a) {N} new, merged",
        "b": f"(b) {N} no-op, merged",
        "c": f"(c) {N}, 1% changed, merged",
        "d": f"(d) overridden {fmt_n(n // 2)} of {N}",
    }
    floor_what = {
        "a": "update_many",
        "b": "read_all()",
        "c": "read_all()+update_many 1%",
        "d": "read_all()+delete_many",
    }
    baselines: dict[str, list[tuple[str, Measured]]] = {c: [(f"floor: {floor_what[c]}", floor[c])] for c in cases}
    if batch:
        what = {
            "a": f"{N} update lines",
            "b": f"{N} update lines again",
            "c": f"{fmt_n(len_or(batch, 'c'))} update lines",
            "d": f"{fmt_n(len_or(batch, 'd'))} delete lines",
        }
        for c in cases:
            baselines[c].append((f"bpftool batch: {what[c]}", batch[c]))
    if each:
        baselines["a"].append(("bpftool map update x N procs", each))
    if isinstance(bcc, dict):
        what = {"a": "ctypes structs + update batch", "b": "all again", "c": "the 1% only", "d": "delete batch"}
        for c in cases:
            baselines[c].append((f"bcc table API: {what[c]}", bcc[c]))
    w = 104
    print()
    print(f"Results, N = {N} (hash map, 13-byte packed flow_key -> 32-byte flow_stats)".ljust(w))
    print("ratio = engine time / baseline time (< 1: the engine is faster); e/s = entries per second")
    print("-" * 146)
    print(
        f"{'case':<30}{'engine s':>9}{'engine e/s':>12}{'+RSS MB':>8}  {'baseline':<40}{'base s':>10}{'base e/s':>12}"
        f"{'ratio':>9}  how"
    )
    print("-" * 146)
    for c, label in cases.items():
        e = eng[c]
        first = True
        for bname, bm in baselines[c]:
            lead = f"{label:<30}{e.seconds:>9.3f}{fmt_rate(e.rate):>12}{e.grew_mb:>+8.0f}" if first else " " * 59
            print(
                f"{lead}  {bname:<40}{bm.seconds:>10.3f}{fmt_rate(bm.rate):>12}{e.seconds / bm.seconds:>9.2f}  {bm.how}"
            )
            first = False
    print("-" * 146)
    if ans:
        print("\nWhole Ansible task (ansible-playbook -i localhost, -c local; wall time)")
        print(f"{'playbook':<44}{'wall s':>9}{'minus empty':>13}{'e/s':>12}{'vs engine (a)':>15}{'peak RSS MB':>13}")
        for label, m, net in ans:
            if m.entries == 0:
                print(f"{label:<44}{m.seconds:>9.3f}{'':>13}{'':>12}")
                continue
            vs = f"{net / (eng['a'].seconds * m.entries / n):.2f}x"
            print(f"{label:<44}{m.seconds:>9.3f}{net:>13.3f}{fmt_rate(m.entries / net):>12}{vs:>15}{m.peak_mb:>13.0f}")
    if isinstance(bcc, str):
        print(f"\nbcc baseline skipped: {bcc}")
    print("\nGoals (issue 16)")
    for c, goal in GOAL_VS_FLOOR.items():
        r = eng[c].seconds / floor[c].seconds
        print(
            f"  {'MET ' if r <= goal else 'MISS'}  {cases[c]}: engine/floor {r:.2f}x, goal <= {goal}x "
            f"({eng[c].seconds:.3f} s vs {floor[c].seconds:.3f} s)"
        )
    if ans:
        for label, _m, net in ans:
            if "from src" in label:
                r = net / eng["a"].seconds
                print(
                    f"  {'MET ' if r <= GOAL_TASK_VS_ENGINE else 'MISS'}  whole task, {label}: {r:.2f}x the engine's "
                    f"(a), goal <= {GOAL_TASK_VS_ENGINE}x ({net:.3f} s vs {eng['a'].seconds:.3f} s)"
                )
    peak = max(e.peak_mb for e in eng.values())
    grew = max(e.grew_mb for e in eng.values())
    print(
        f"  {'MET ' if grew < GOAL_PEAK_MB else 'MISS'}  engine memory: at most +{grew:.0f} MB over its input "
        f"(process peak {peak:.0f} MB, the {N} input dicts included), goal < {GOAL_PEAK_MB} MB"
    )
    if ans:
        for label, m, _net in ans:
            if "from src" in label:
                print(
                    f"  {'MET ' if m.peak_mb < GOAL_PEAK_MB else 'MISS'}  module process peak RSS, {label}: "
                    f"{m.peak_mb:.0f} MB (parsed entries included), goal < {GOAL_PEAK_MB} MB"
                )


def len_or(batch: dict[str, Measured], c: str) -> int:
    return batch[c].entries


# --- main ----------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--sizes", type=int, nargs="+", help="entry counts N (default 1000000)")
    ap.add_argument("--quick", action="store_true", help="N = 100000")
    ap.add_argument("--no-ansible", action="store_true", help="skip the ansible-playbook runs")
    ap.add_argument("--no-bpftool", action="store_true", help="skip the bpftool baselines")
    ap.add_argument("--no-bcc", action="store_true", help="skip the bcc table API baseline")
    ap.add_argument(
        "--batch-budget",
        type=float,
        default=120.0,
        help="run `bpftool batch file` on all N lines when the 100k pilot predicts at most this many s",
    )
    ap.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=100_000,
        default=0,
        metavar="M",
        help="also profile cases (a)-(c) with cProfile on M entries (default 100000)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (CAP_BPF)")
    sizes = args.sizes or ([100_000] if args.quick else [1_000_000])
    mode = "--sizes" if args.sizes else ("--quick" if args.quick else "default")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    print(
        f"bench/entries.py  {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  mode: {mode}, "
        f"N = {', '.join(fmt_n(n) for n in sizes)}"
    )
    print(
        f"kernel {platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"{subprocess.run(['bpftool', 'version'], capture_output=True, text=True, check=True).stdout.splitlines()[0]}"
    )
    pin_dir = f"/sys/fs/bpf/cnf-bench-{uuid.uuid4().hex[:8]}"
    os.makedirs(pin_dir)
    work = Path(tempfile.mkdtemp(prefix="cnf-bench-"))
    started = time.perf_counter()
    try:
        b = Bench(pin_dir, work)
        for n in sizes:
            print(f"\nN = {n}: building entries ...", flush=True)
            data = make_data(n)
            b.check_codec(data)
            eng, path = engine_cases(b, data)
            b.unpin(path)
            floor = floor_cases(b, data)
            print(f"  floor  a    {floor['a'].seconds:8.3f} s", flush=True)
            each = batch = None
            if not args.no_bpftool:
                each = bpftool_each(b, data)
                batch = bpftool_batch(b, data, args.batch_budget)
                print(
                    f"  bpftool batch a {batch['a'].seconds:.3f} s ({batch['a'].how})",
                    flush=True,
                )
            bcc = None if args.no_bcc else bcc_cases(data)
            if isinstance(bcc, dict):
                print(f"  bcc    a    {bcc['a'].seconds:8.3f} s", flush=True)
            ans = None if args.no_ansible else ansible_cases(b, data)
            report(n, eng, floor, each, batch, ans, bcc)
            del data
        if args.profile:
            profile(b, args.profile)
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal bench time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
