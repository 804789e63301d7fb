"""Time per bpf_map_entries run under load (issue 17, item 4): RUNS module processes started at once, as Ansible
forks would start them, against one map (they queue on its lock) and against RUNS maps (they run side by side),
each run merging ENTRIES entries from a JSON src; the baseline is one run alone, in the same invocation.

  alone           one run at a time, RUNS times: the mean wall time of a run (process start, imports, work)
  one map         RUNS runs at once on one map: each run's wall time from the common start to its end (the last
                  run waited for all the others: the lock serialises them) and the time until all are done
  RUNS maps       RUNS runs at once, one map each: the same figures (2 CPUs here, so they share the cores)

Run as root: PYTHONPATH=.build/collections .venv/bin/python bench/concurrency.py [--runs 20] [--entries 5000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _schema
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "plugins" / "modules" / "bpf_map_entries.py"


def new_map(path: str, max_entries: int) -> None:
    spec = MapSpec(
        path=path,
        type="hash",
        name="load",
        key_size=4,
        value_size=8,
        max_entries=max_entries,
        key_type=_schema.type_from_schema("u32", path="key"),
        value_type=_schema.type_from_schema("u64", path="value"),
    )
    _maps.create_pinned_map(spec)


def start(work: Path, path: str, src: Path) -> subprocess.Popen[str]:
    args = work / f"args-{uuid.uuid4().hex}.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"path": path, "state": "merged", "src": str(src)}}))
    return subprocess.Popen([sys.executable, str(MODULE), str(args)], stdout=subprocess.PIPE, text=True)


def wait_all(procs: list[subprocess.Popen[str]], started: float) -> list[float]:
    """Each process's time from the common start to its exit (polled, so the order of waiting does not matter)."""
    ends: dict[int, float] = {}
    while len(ends) < len(procs):
        for i, proc in enumerate(procs):
            if i not in ends and proc.poll() is not None:
                ends[i] = time.perf_counter() - started
                result = json.loads(proc.stdout.read() if proc.stdout else "{}")
                if result.get("failed"):
                    raise SystemExit(f"run {i} failed: {result.get('msg')}")
        time.sleep(0.002)
    return [ends[i] for i in range(len(procs))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--entries", type=int, default=5000)
    a = ap.parse_args()
    pin_dir = Path(f"/sys/fs/bpf/cnf-bench-load-{uuid.uuid4().hex[:8]}")
    pin_dir.mkdir()
    work = Path(tempfile.mkdtemp(prefix="cnf-bench-load-"))
    try:
        srcs = []
        for run in range(a.runs):
            src = work / f"src-{run}.json"
            src.write_text(json.dumps([{"key": run * a.entries + i, "value": run} for i in range(a.entries)]))
            srcs.append(src)

        alone = []
        for run in range(a.runs):
            path = str(pin_dir / f"alone{run}")
            new_map(path, a.entries)
            started = time.perf_counter()
            alone += wait_all([start(work, path, srcs[run])], started)
        base = statistics.mean(alone)

        one = str(pin_dir / "one")
        new_map(one, a.runs * a.entries)
        started = time.perf_counter()
        one_map = wait_all([start(work, one, src) for src in srcs], started)

        paths = [str(pin_dir / f"many{run}") for run in range(a.runs)]
        for path in paths:
            new_map(path, a.entries)
        started = time.perf_counter()
        many = wait_all([start(work, path, src) for path, src in zip(paths, srcs)], started)

        print(f"bench/concurrency.py: {a.runs} runs, {a.entries} entries each (merged from a JSON src)")
        print(f"{'case':<34}{'mean run s':>11}{'max run s':>11}{'all done s':>11}{'mean/alone':>12}")
        print(f"{'alone (baseline), one at a time':<34}{base:>11.3f}{max(alone):>11.3f}{sum(alone):>11.3f}{1:>12.2f}")
        for label, times in ((f"{a.runs} at once, one map", one_map), (f"{a.runs} at once, {a.runs} maps", many)):
            mean = statistics.mean(times)
            print(f"{label:<34}{mean:>11.3f}{max(times):>11.3f}{max(times):>11.3f}{mean / base:>12.2f}")
        print(
            f"all done, {a.runs} at once vs one at a time: one map {max(one_map) / sum(alone):.2f}x, "
            f"{a.runs} maps {max(many) / sum(alone):.2f}x"
        )
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
