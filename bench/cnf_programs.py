"""Per-packet cost of the CNF programs in bpf/, timed by the kernel (BPF_PROG_TEST_RUN), each row with its baseline
from the same run: the XDP_PASS floor, and for the tracker the design it replaced (bench/data/flow_tracker_atomics.c:
one LRU hash of shared flow values, atomic adds, a clock read per packet).

  established    one packet of an existing flow, repeated 1M times in the kernel (the steady state of a tracker);
                 the median of ROUNDS rounds, the programs interleaved in each round
  2 CPUs         the same, on two CPUs at once, both on the same flow (what atomics on a shared value cost when a
                 flow's packets are spread over CPUs); the mean of the two CPUs' figures
  new flows      10k packets of 10k distinct flows, one test run each (each run also pays a syscall, so the floor
                 is measured the same way)
  xdp_filter     with no rules, and with 10k LPM rules (mixed /8../32 IPv4 and /32../128 IPv6 prefixes) for a packet
                 whose source matches a rule (/24 under a /16 and a /8) and one whose source matches none
  profile        variants of the tracker with parts removed or swapped (bench/data/flow_tracker_profile.c), which
                 say where the tracker's time goes

Run as root: PYTHONPATH=.build/collections .venv/bin/python bench/cnf_programs.py
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import statistics
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf_obj
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _maps, _objects

REPO = Path(__file__).resolve().parents[1]
FLOOR = REPO / "tests" / "integration" / "data" / "xdp_pass.c"
TRACKER = REPO / "bpf" / "flow_tracker.c"
ATOMICS = REPO / "bench" / "data" / "flow_tracker_atomics.c"
PROFILE = REPO / "bench" / "data" / "flow_tracker_profile.c"
FILTER = REPO / "bpf" / "xdp_filter.c"
FILTER_PROFILE = REPO / "bench" / "data" / "xdp_filter_profile.c"
REPEAT = 1_000_000
ROUNDS = 5
NEW_FLOWS = 10_000
RULES_V4, RULES_V6 = 9_000, 1_000
GOAL = 2.0  # x the floor, established flows (issue 16)
MATCHED_SRC, UNMATCHED_SRC = "10.1.0.1", "192.0.2.1"

PROFILE_ROWS = [
    ("p_parse", "parse only (Ethernet, VLAN, IPv4, UDP into the 40-byte key)"),
    ("p_config", "config ARRAY lookup only"),
    ("p_if_counters", "if_counters PERCPU_ARRAY update only"),
    ("p_ktime", "bpf_ktime_get_ns only"),
    ("p_coarse", "bpf_ktime_get_coarse_ns only"),
    ("p_jiffies", "bpf_jiffies64 only"),
    ("p_tick_clock", "the tracker's clock (ktime once per jiffy per CPU)"),
    ("p_parse_lookup_hash", "parse + HASH lookup"),
    ("p_parse_lookup_lru", "parse + LRU_HASH lookup"),
    ("p_parse_lookup_percpu", "parse + PERCPU_HASH lookup"),
    ("p_parse_lookup_lru_percpu", "parse + LRU_PERCPU_HASH lookup"),
    ("p_count_atomics", "parse + LRU_HASH + 2 atomic adds, no clock"),
    ("p_count_no_clock", "parse + LRU_PERCPU_HASH + plain adds, no clock"),
    ("p_count_ktime", "... + bpf_ktime_get_ns per packet"),
    ("p_count_coarse", "... + bpf_ktime_get_coarse_ns per packet"),
    ("p_count_tick_clock", "... + the tracker's clock"),
]

FILTER_PROFILE_ROWS = [
    ("lpm_match", "rules_v4 LPM lookup alone, source matches (/24)"),
    ("lpm_miss", "rules_v4 LPM lookup alone, source matches none"),
    ("count_hit", "rule_hits PERCPU_HASH counter alone"),
]


def checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(src_port: int, src: str = "10.1.0.1", payload: bytes = b"x" * 18) -> bytes:
    eth = bytes.fromhex("020000000002020000000001") + struct.pack("!H", 0x0800)
    udp_len = 8 + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0, ipaddress.IPv4Address(src).packed, bytes([10, 1, 0, 2])
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", src_port, 7001, udp_len, 0)
    return eth + ip + udp + payload


def established(fd: Any, packet: bytes) -> int:
    _retval, ns = _libbpf_obj.prog_test_duration(fd, packet, REPEAT)
    return ns


def new_flows(fd: Any) -> float:
    total = 0
    for port in range(NEW_FLOWS):
        _retval, ns = _libbpf_obj.prog_test_duration(fd, udp_packet(1024 + port), 1)
        total += ns
    return total / NEW_FLOWS


def two_cpus(fd: Any, packet: bytes) -> float | None:
    """Mean ns per packet of two CPUs running the program at once on the same flow; None on a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        return None
    start = threading.Barrier(len(cpus))
    results: list[int] = []

    def run(cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})  # this thread only
        start.wait()
        results.append(established(fd, packet))  # ctypes lets go of the GIL during the syscall

    threads = [threading.Thread(target=run, args=(cpu,)) for cpu in cpus]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statistics.mean(results)


def lpm_rules(rng: random.Random) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """(v4, v6) LPM entries: random prefixes covering neither source, plus 10.0.0.0/8, 10.1.0.0/16 and 10.1.0.0/24
    for the matched one. Values are struct rule {id, action ALLOW, rate_pps, burst}."""
    avoid = [ipaddress.ip_address(MATCHED_SRC), ipaddress.ip_address(UNMATCHED_SRC)]
    v4: dict[ipaddress.IPv4Network, int] = {}
    for net in ("10.0.0.0/8", "10.1.0.0/16", "10.1.0.0/24"):
        v4[ipaddress.IPv4Network(net)] = len(v4) + 1
    while len(v4) < RULES_V4:
        plen = rng.choice((8, 12, 16, 16, 20, 24, 24, 24, 28, 32, 32))
        net = ipaddress.IPv4Network((rng.getrandbits(32), plen), strict=False)
        if not any(a in net for a in avoid) and net not in v4:
            v4[net] = len(v4) + 1
    v6: dict[ipaddress.IPv6Network, int] = {}
    while len(v6) < RULES_V6:
        plen = rng.choice((32, 48, 56, 64, 64, 128))
        v6.setdefault(ipaddress.IPv6Network(((0x20010DB8 << 96) | rng.getrandbits(96), plen), strict=False), 0)

    def value(rule_id: int) -> bytes:
        return struct.pack("=IiII", rule_id, 0, 0, 0)

    ids = iter(range(RULES_V4 + 1, RULES_V4 + RULES_V6 + 1))
    return (
        [(struct.pack("=I", n.prefixlen) + n.network_address.packed, value(i)) for n, i in v4.items()],
        [(struct.pack("=I", n.prefixlen) + n.network_address.packed, value(next(ids))) for n in v6],
    )


def load(src: Path, scratch: str) -> Any:
    compiled = _objects.compile_source(str(src), cache_dir=scratch)
    return _objects.load_object(compiled.path, log_dir=scratch, object_name=src.stem[:12])


def main() -> None:
    scratch = tempfile.mkdtemp(prefix="cnf-bench-")
    loaded = []
    try:
        floor_obj, atomics_obj, tracker_obj, profile_obj, filter_obj, filter_rules_obj, filter_profile_obj = (
            load(src, scratch) for src in (FLOOR, ATOMICS, TRACKER, PROFILE, FILTER, FILTER, FILTER_PROFILE)
        )
        loaded = [floor_obj, atomics_obj, tracker_obj, profile_obj, filter_obj, filter_rules_obj, filter_profile_obj]
        v4, v6 = lpm_rules(random.Random(16))
        for obj in (filter_rules_obj, filter_profile_obj):
            for name, pairs in (("rules_v4", v4), ("rules_v6", v6)):
                with _maps.open_map_fd(obj.maps[name].fd) as m:
                    m.update_many(pairs)
        packet, unmatched = udp_packet(40000), udp_packet(40000, UNMATCHED_SRC)
        fds = {
            "floor": (floor_obj.programs["xdp_pass"].fd, packet),
            "atomics": (atomics_obj.programs["flow_tracker"].fd, packet),
            "tracker": (tracker_obj.programs["flow_tracker"].fd, packet),
            "filter0": (filter_obj.programs["xdp_filter"].fd, packet),
            "filter_match": (filter_rules_obj.programs["xdp_filter"].fd, packet),
            "filter_miss": (filter_rules_obj.programs["xdp_filter"].fd, unmatched),
        }
        fds.update({name: (profile_obj.programs[name].fd, packet) for name, _label in PROFILE_ROWS})
        lpm, count_hit = filter_profile_obj.programs["p_lpm_lookup"].fd, filter_profile_obj.programs["p_count_hit"].fd
        fds.update({"lpm_match": (lpm, packet), "lpm_miss": (lpm, unmatched), "count_hit": (count_hit, packet)})
        assert _libbpf_obj.prog_test_run(*fds["filter_match"])[0] == 2  # XDP_PASS: the ALLOW rule
        for fd, pkt in fds.values():
            _libbpf_obj.prog_test_run(fd, pkt)  # the flows exist from here on
        rounds: dict[str, list[int]] = {name: [] for name in fds}
        for _round in range(ROUNDS):
            for name, (fd, pkt) in fds.items():
                rounds[name].append(established(fd, pkt))
        est = {name: statistics.median(values) for name, values in rounds.items()}
        par = {name: two_cpus(fds[name][0], packet) for name in ("floor", "atomics", "tracker")}
        new = {name: new_flows(fds[name][0]) for name in ("floor", "atomics", "tracker")}
        hits = filter_rules_obj.maps["rule_hits"]
        with _maps.open_map_fd(hits.fd) as m:
            assert m.read_all(), "the matching rule counted no hit"
    finally:
        for obj in loaded:
            obj.close()
        shutil.rmtree(scratch, ignore_errors=True)

    floor = est["floor"]
    print(f"floor: XDP_PASS {floor:.1f} ns per packet established; {REPEAT} repeats, median of {ROUNDS} rounds")
    header = f"{'case':<46}{'ours ns':>9}  {'baseline':<16}{'base ns':>9}{'ours/base':>10}{'x floor':>9}"
    print(header)
    print("-" * len(header))

    def row(case: str, ours: float | None, base_name: str, base: float | None, floor_ns: float) -> None:
        if ours is None or base is None:
            print(f"{case:<46}{'n/a':>9}")
            return
        print(f"{case:<46}{ours:>9.1f}  {base_name:<16}{base:>9.1f}{ours / base:>10.2f}{ours / floor_ns:>9.2f}")

    row("flow_tracker, established", est["tracker"], "atomics", est["atomics"], floor)
    row("  atomics baseline, established", est["atomics"], "floor", floor, floor)
    if par["floor"] is not None:
        row("flow_tracker, established, 2 CPUs one flow", par["tracker"], "atomics", par["atomics"], par["floor"])
        row("  atomics baseline, 2 CPUs one flow", par["atomics"], "floor (2 CPUs)", par["floor"], par["floor"])
    row("flow_tracker, new flows", new["tracker"], "atomics", new["atomics"], new["floor"])
    row("  atomics baseline, new flows", new["atomics"], "floor", new["floor"], new["floor"])
    row("xdp_filter, 0 rules (default action)", est["filter0"], "floor", floor, floor)
    row("xdp_filter, 10k LPM rules, source matches", est["filter_match"], "floor", floor, floor)
    row("xdp_filter, 10k LPM rules, source matches none", est["filter_miss"], "floor", floor, floor)
    print()
    print("component profile of the tracker (established, same run):")
    for name, label in PROFILE_ROWS:
        print(f"  {label:<62}{est[name]:>7.1f} ns  {est[name] - floor:>+7.1f} over the floor")
    print("component profile of xdp_filter with the 10k rules (same run):")
    for name, label in FILTER_PROFILE_ROWS:
        print(f"  {label:<62}{est[name]:>7.1f} ns  {est[name] - floor:>+7.1f} over the floor")
    for case, ours in (
        ("flow_tracker", est["tracker"]),
        ("xdp_filter, 10k rules, match", est["filter_match"]),
        ("xdp_filter, 10k rules, no match", est["filter_miss"]),
    ):
        ratio = ours / floor
        print(f"goal: {case} within {GOAL}x the floor: {ratio:.2f}x ({'PASS' if ratio <= GOAL else 'MISS'})")


if __name__ == "__main__":
    main()
