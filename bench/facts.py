"""Top-N of a big flow table: cnf.ebpf.bpf_facts' contents path against `bpftool -j map dump`, in one run.

Creates a hash map of N flows (the packed 13-byte flow_key -> 32-byte flow_stats, with BTF), then times:
  ours      _facts.map_contents(top=100, sort_by=bytes): batched read, decode, heap top-N, keys decoded for the top only
  baseline  `bpftool -j map dump pinned ...` (all entries, BTF-formatted JSON), parsed with json.loads
and prints the case, both times and the ratio. Run as root:
  PYTHONPATH=.build/collections .venv/bin/python bench/facts.py [N ...]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

from flows import create_flow_map

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _facts


def timed(func) -> tuple[float, object]:
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def bench(n: int, pin_dir: str) -> tuple[float, float]:
    path = f"{pin_dir}/flows_{n}"
    bpf_map, _keys, _values = create_flow_map(path, n, lambda i: (i * 7919) % 1000003)
    bpf_map.close()
    ours, result = min(
        (timed(lambda: _facts.map_contents({"path": path, "top": 100, "sort_by": "bytes"})) for _i in range(3)),
        key=lambda r: r[0],
    )
    assert len(result["entries"]) == 100 and result["count"] == n
    top = [e["value"]["bytes"] for e in result["entries"]]
    assert top == sorted(top, reverse=True)
    base, _out = min(
        (
            timed(
                lambda: json.loads(
                    subprocess.run(
                        ["bpftool", "-j", "map", "dump", "pinned", path], capture_output=True, check=True
                    ).stdout
                )
            )
            for _i in range(2)
        ),
        key=lambda r: r[0],
    )
    return ours, base


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100000, 1000000]
    pin_dir = f"/sys/fs/bpf/cnf-bench-{uuid.uuid4().hex[:8]}"
    os.makedirs(pin_dir)
    try:
        print(f"{'case':<34}{'cnf.ebpf (s)':>14}{'bpftool (s)':>14}{'bpftool/ours':>14}")
        for n in sizes:
            ours, base = bench(n, pin_dir)
            print(f"{'top 100 of ' + str(n) + ' flows':<34}{ours:>14.3f}{base:>14.3f}{base / ours:>13.1f}x")
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
