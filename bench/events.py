"""Decode captured events: the bpf_events decode path against the raw-copy floor.

bpf_events copies each sample out of the ring (ctypes.string_at in libbpf's callback) and decodes them all after the
capture. This feeds N raw samples of the tests' `struct pkt_event` (24 bytes: __be32 src/dst, __be16 ports, u32 seq,
len, cpu; type from the BTF clang writes for tests/integration/data/events_udp.c) through:
  floor C     one memmove of all N samples (what C copying costs; the bound nothing in Python gets near)
  floor copy  N ctypes.string_at copies, the per-sample work the capture callback does
  decode      _events.decode_events(): plain (ports as numbers), with ipv4 formats, and hex (no event_type)
  jsonl       json.dumps of the decoded events (what `dest` writes)
and prints events/s per case and its time as a ratio of the copy floor (and of the C floor). Run from the repo:
  PYTHONPATH=$PWD/.build/collections .venv/bin/python bench/events.py [N]
"""

from __future__ import annotations

import ctypes
import gc
import json
import platform
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _events

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "tests" / "integration" / "data" / "events_udp.c"
EVENT = struct.Struct("=IIHHIII")


def best_of(runs: int, func: Callable[[], Any]) -> float:
    best = float("inf")
    for _run in range(runs):
        gc.collect()
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def event_type() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "events.o"
        multiarch = f"/usr/include/{platform.machine()}-linux-gnu"
        subprocess.run(
            ["clang", "-O2", "-g", "-target", "bpf", "-I", multiarch, "-c", str(SRC), "-o", str(obj)], check=True
        )
        btf = _events.btf_of_object(str(obj))
    return _events.find_event_type(btf, "struct pkt_event", str(SRC))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    t = event_type()
    size = EVENT.size
    block = b"".join(EVENT.pack(0x0100000A, 0x0200000A, 0x401F, 0x591B, i, 46, i & 1) for i in range(n))
    ring = ctypes.create_string_buffer(block, len(block))
    base = ctypes.addressof(ring)
    offsets = range(base, base + n * size, size)
    samples = [ctypes.string_at(addr, size) for addr in offsets]
    plain = _events.event_codec(t, {})
    formatted = _events.event_codec(t, {"event.src": "ipv4", "event.dst": "ipv4"})
    sample = _events.decode_events(formatted, samples[:1])[0][0]
    print(f"{n} events of struct pkt_event ({size} bytes), e.g. {sample}")

    target = ctypes.create_string_buffer(len(block))
    string_at = ctypes.string_at
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("floor C (memmove all)", lambda: ctypes.memmove(target, ring, len(block))),
        ("floor copy (string_at each)", lambda: [string_at(addr, size) for addr in offsets]),
        ("decode plain", lambda: _events.decode_events(plain, samples)),
        ("decode ipv4 formats", lambda: _events.decode_events(formatted, samples)),
        ("hex (no event_type)", lambda: _events.decode_events(None, samples)),
    ]
    decoded = _events.decode_events(formatted, samples)[0]
    cases.append(("jsonl (dest)", lambda: [json.dumps(e) for e in decoded]))
    times = {name: best_of(3, func) for name, func in cases}
    c_floor = times["floor C (memmove all)"]
    copy_floor = times["floor copy (string_at each)"]
    print(f"{'case':30} {'seconds':>9} {'events/s':>14} {'x copy floor':>13} {'x C floor':>10}")
    for name, seconds in times.items():
        rate = n / seconds if seconds else float("inf")
        print(f"{name:30} {seconds:9.4f} {rate:14,.0f} {seconds / copy_floor:13.2f} {seconds / c_floor:10.0f}")


if __name__ == "__main__":
    main()
