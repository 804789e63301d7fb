"""Read and decode every entry of a typed map: cnf.ebpf (batch lookup + compiled codec) against bpftool.

Creates a hash map of N flow entries (the packed 13-byte flow_key -> flow_stats), then times, in the same run:
  ours      BpfMap.items() (BPF_MAP_LOOKUP_BATCH) + compile_codec(...).decode for key and value
  baseline  `bpftool -j map dump pinned ...` (one process, BTF-formatted JSON), parsed with json.loads
and prints a table of the case, our time, the baseline's time and the ratio. Run as root:
  PYTHONPATH=.build/collections .venv/bin/python bench/map_read.py [N ...]
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


def best_of(runs: int, func) -> float:
    times = []
    for _i in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(n: int, pin_dir: str) -> tuple[float, float]:
    path = f"{pin_dir}/flows_{n}"
    bpf_map, key_codec, value_codec = create_flow_map(path, n, lambda i: i * 1500)
    with bpf_map:

        def ours() -> None:
            decoded = [(key_codec.decode(k), value_codec.decode(v)) for k, v in bpf_map.items()]
            assert len(decoded) == n

        def baseline() -> None:
            out = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", path], capture_output=True, check=True)
            assert len(json.loads(out.stdout)) == n

        return best_of(3, ours), best_of(3, baseline)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000, 100000]
    pin_dir = f"/sys/fs/bpf/cnf-bench-{uuid.uuid4().hex[:8]}"
    os.makedirs(pin_dir)
    try:
        print(f"{'case':<28}{'cnf.ebpf (s)':>14}{'bpftool (s)':>14}{'ratio':>8}")
        for n in sizes:
            ours, base = bench(n, pin_dir)
            print(f"{'read+decode ' + str(n) + ' flows':<28}{ours:>14.4f}{base:>14.4f}{ours / base:>8.2f}")
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
