"""Per-packet cost of the CNF programs in bpf/, timed by the kernel (BPF_PROG_TEST_RUN), against an XDP_PASS floor
measured in the same run.

  established  one packet of an existing flow, repeated 1M times in the kernel (the steady state of a tracker)
  new flows    10k packets of 10k distinct flows, one test run each (each run also pays a syscall, so the floor
               is measured the same way)

Run as root: PYTHONPATH=.build/collections .venv/bin/python bench/cnf_programs.py
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf_obj
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _objects

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = {
    "floor (XDP_PASS)": (REPO / "tests" / "integration" / "data" / "xdp_pass.c", "xdp_pass"),
    "flow_tracker": (REPO / "bpf" / "flow_tracker.c", "flow_tracker"),
    "xdp_filter": (REPO / "bpf" / "xdp_filter.c", "xdp_filter"),
}
REPEAT = 1_000_000
NEW_FLOWS = 10_000


def checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(src_port: int, payload: bytes = b"x" * 18) -> bytes:
    eth = bytes.fromhex("020000000002020000000001") + struct.pack("!H", 0x0800)
    udp_len = 8 + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0, bytes([10, 1, 0, 1]), bytes([10, 1, 0, 2])
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", src_port, 7001, udp_len, 0)
    return eth + ip + udp + payload


def measure(fd: object) -> tuple[float, float]:
    packet = udp_packet(40000)
    _libbpf_obj.prog_test_run(fd, packet)  # the flow exists from here on
    _retval, established = _libbpf_obj.prog_test_duration(fd, packet, REPEAT)
    total = 0
    for port in range(NEW_FLOWS):
        _retval, ns = _libbpf_obj.prog_test_duration(fd, udp_packet(1024 + port), 1)
        total += ns
    return float(established), total / NEW_FLOWS


def main() -> None:
    scratch = tempfile.mkdtemp(prefix="cnf-bench-")
    results = {}
    try:
        for label, (src, prog) in PROGRAMS.items():
            compiled = _objects.compile_source(str(src), cache_dir=scratch)
            loaded = _objects.load_object(compiled.path, log_dir=scratch, object_name=prog[:12])
            try:
                results[label] = measure(loaded.programs[prog].fd)
            finally:
                loaded.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    floor_est, floor_new = results["floor (XDP_PASS)"]
    print(f"{'program':<20}{'established ns':>16}{'x floor':>9}{'new flow ns':>14}{'x floor':>9}")
    for label, (est, new) in results.items():
        print(f"{label:<20}{est:>16.1f}{est / floor_est:>9.2f}{new:>14.1f}{new / floor_new:>9.2f}")
    tracker = results["flow_tracker"][0] / floor_est
    print(
        f"target: flow_tracker within 2.5x the floor for established flows: {tracker:.2f}x "
        f"({'PASS' if tracker <= 2.5 else 'MISS'})"
    )


if __name__ == "__main__":
    main()
