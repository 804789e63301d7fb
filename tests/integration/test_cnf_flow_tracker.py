"""bpf/flow_tracker.c with real packets: the XDP flow tracker on a veth pair counts every 5-tuple sent to it (UDP over
IPv4 and IPv6, ICMP echo, a TCP SYN) with exact packet and byte counts, counts per interface, passes every packet and
emits one ring buffer event per new flow without a drop. A flow whose packets arrive on several CPUs is counted in
each CPU's slot, and bpf_facts (as the flow_tracker role gathers it) sums the counters and takes the earliest
first_seen and the latest last_seen."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_module
from .netns import VethPair, drain, entered

SRC = str(Path(__file__).resolve().parents[2] / "bpf" / "flow_tracker.c")
PAYLOAD = b"cnf-test"
UDP_V4_FRAME = 14 + 20 + 8 + len(PAYLOAD)
UDP_V6_FRAME = 14 + 40 + 8 + len(PAYLOAD)
ICMP_V4_FRAME = 14 + 20 + 8 + 56  # ping's default 56 data bytes
UDP_PORTS = {7101: 20, 7102: 10}
V6_PORT, V6_COUNT = 7106, 15
ICMP_ID = 0x4242
TCP_PORT = 7109  # nothing listens: the SYN gets a RST
AF_INET, AF_INET6 = 2, 10
PROTO_ICMP, PROTO_TCP, PROTO_UDP = 1, 6, 17


@pytest.fixture
def app(tmp_path: Path, veth: VethPair) -> Any:
    """Depends on veth so it is removed first: removal detaches the XDP link, which needs the namespace."""
    name = f"ft{uuid.uuid4().hex[:8]}"
    base = {"name": name, "state_dir": str(tmp_path / "state")}
    yield base
    removed = run_module("bpf_program", dict(base, state="absent"))
    assert removed.get("failed") is not True, removed
    assert not Path(f"/sys/fs/bpf/cnf/{name}").exists()


def in_ns(ns: str, code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )


def tcp_syn(ns: str, dst: str, port: int) -> int:
    """A connect to a closed port (refused by a RST); returns the source port of the SYN."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_STREAM)\n"
        "s.bind(('0.0.0.0',0))\n"
        "print(s.getsockname()[1])\n"
        "s.settimeout(5)\n"
        "try:\n"
        "    s.connect((sys.argv[1],int(sys.argv[2])))\n"
        "except ConnectionRefusedError:\n"
        "    pass\n"
        "else:\n"
        "    sys.exit('connected to a port that should be closed')\n"
    )
    return int(in_ns(ns, code, dst, str(port)).stdout)


def ping(ns: str, dst: str, ident: int, count: int) -> int:
    """`count` ICMP echo requests (identifier `ident`, 56 data bytes, as ping sends) over a raw socket, one at a
    time; returns how many were answered. (No ping binary needed.)"""
    code = (
        "import socket,struct,sys\n"
        "dst,ident,n=sys.argv[1],int(sys.argv[2]),int(sys.argv[3])\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_ICMP)\n"
        "s.settimeout(1)\n"
        "def csum(b):\n"
        "    t=sum(struct.unpack('!%dH'%(len(b)//2),b))\n"
        "    while t>>16: t=(t&0xffff)+(t>>16)\n"
        "    return ~t&0xffff\n"
        "got=0\n"
        "for seq in range(n):\n"
        "    body=bytes(56)\n"
        "    hdr=struct.pack('!BBHHH',8,0,0,ident,seq)\n"
        "    s.sendto(struct.pack('!BBHHH',8,0,csum(hdr+body),ident,seq)+body,(dst,0))\n"
        "    try:\n"
        "        while True:\n"
        "            pkt=s.recv(2048)\n"
        "            t,c,k,i,q=struct.unpack('!BBHHH',pkt[(pkt[0]&15)*4:][:8])\n"
        "            if t==0 and i==ident and q==seq:\n"
        "                got+=1\n"
        "                break\n"
        "    except TimeoutError:\n"
        "        pass\n"
        "print(got)\n"
    )
    return int(in_ns(ns, code, dst, str(ident), str(count)).stdout)


def gathered(app: dict[str, Any], mapname: str, **args: Any) -> list[dict[str, Any]]:
    result = run_module(
        "bpf_map_entries", dict(args, path=f"/sys/fs/bpf/cnf/{app['name']}/maps/{mapname}", state="gathered")
    )
    assert result.get("failed") is not True, result
    return result["entries"]


def combined(value: dict[str, Any]) -> dict[str, int]:
    """One flow's per-CPU slots as one flow_stats: counters summed, the earliest first_seen of the CPUs that saw it,
    the latest last_seen."""
    slots = value["per_cpu"]
    assert value["sum"]["packets"] == sum(s["packets"] for s in slots)
    return {
        "packets": sum(s["packets"] for s in slots),
        "bytes": sum(s["bytes"] for s in slots),
        "first_seen": min((s["first_seen"] for s in slots if s["packets"]), default=0),
        "last_seen": max(s["last_seen"] for s in slots),
    }


def flow_tuple(key: dict[str, Any]) -> tuple:
    return (key["family"], key["proto"], key["src"], key["dst"], key["src_port"], key["dst_port"])


def read_flows(app: dict[str, Any], per_cpu: bool = False) -> dict[tuple, Any]:
    """Flows as {(family, proto, src, dst, src_port, dst_port): stats} (the per-CPU slots combined, or as read)."""
    entries = gathered(app, "flows", formats={"key.src": "ip", "key.dst": "ip"})
    flows = {}
    for entry in entries:
        key = entry["key"]
        tup = flow_tuple(key)
        assert tup not in flows
        flows[tup] = entry["value"] if per_cpu else combined(entry["value"])
    return flows


def test_flow_tracker_counts_every_flow_and_passes_every_packet(app: dict[str, Any], veth: VethPair) -> None:
    deployed = run_module("bpf_program", dict(app, src=SRC))
    assert deployed["changed"] is True and deployed.get("failed") is not True, deployed
    # Configured before it is attached: every flow it ever sees (side a's own multicast too) has its event.
    configured = run_module(
        "bpf_map_entries",
        {
            "path": f"/sys/fs/bpf/cnf/{app['name']}/maps/config",
            "entries": [{"key": 0, "value": {"enabled": 1, "events_on_new_flow": 1, "sample_rate": 1}}],
        },
    )
    assert configured.get("failed") is not True, configured
    attach = dict(app, program=f"{app['name']}/flow_tracker", kind="xdp", interface=veth.if_b, netns=veth.ns_b)
    attach.pop("name")
    attached = run_module("bpf_attach", attach)
    assert attached["changed"] is True and attached.get("failed") is not True, attached
    v6_a, v6_b = veth.add_ipv6()

    with veth.receiver(veth.ns_b, veth.addr_b, list(UDP_PORTS)) as socks:
        for port, count in UDP_PORTS.items():
            veth.send_udp(veth.ns_a, veth.addr_b, port, count, PAYLOAD)
        received = {port: drain(sock) for port, sock in socks.items()}
    assert received == UDP_PORTS  # XDP_PASS: every datagram arrived

    with entered(veth.ns_b):  # a socket stays in the namespace it was created in
        sock6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock6.bind((v6_b, V6_PORT))
        v6_sport = veth.send_udp(veth.ns_a, v6_b, V6_PORT, V6_COUNT, PAYLOAD)
        assert drain(sock6) == V6_COUNT
    finally:
        sock6.close()

    assert ping(veth.ns_a, veth.addr_b, ICMP_ID, 3) == 3  # every request was passed and answered
    tcp_sport = tcp_syn(veth.ns_a, veth.addr_b, TCP_PORT)

    flows = read_flows(app)
    v4 = {k: v for k, v in flows.items() if k[0] == AF_INET}
    icmp = [k for k in v4 if k[1] == PROTO_ICMP]
    assert len(icmp) == 1, v4
    assert icmp[0][5] == 8 << 8  # echo request, code 0
    udp_sports = {k[4] for k in v4 if k[1] == PROTO_UDP}
    assert len(udp_sports) == len(UDP_PORTS)  # one socket per send_udp call
    assert sorted(k[5] for k in v4 if k[1] == PROTO_UDP) == sorted(UDP_PORTS)
    expected_v4 = {
        (AF_INET, PROTO_TCP, veth.addr_a, veth.addr_b, tcp_sport, TCP_PORT),
        icmp[0],
        *(k for k in v4 if k[1] == PROTO_UDP and k[2:4] == (veth.addr_a, veth.addr_b) and k[5] in UDP_PORTS),
    }
    assert set(v4) == expected_v4, v4
    for key, stats in v4.items():
        if key[1] == PROTO_UDP:
            assert stats["packets"] == UDP_PORTS[key[5]]
            assert stats["bytes"] == UDP_PORTS[key[5]] * UDP_V4_FRAME
        assert 0 < stats["first_seen"] <= stats["last_seen"]
    assert flows[icmp[0]]["packets"] == 3 and flows[icmp[0]]["bytes"] == 3 * ICMP_V4_FRAME
    assert icmp[0][2:4] == (veth.addr_a, veth.addr_b) and icmp[0][4] == ICMP_ID
    tcp = flows[(AF_INET, PROTO_TCP, veth.addr_a, veth.addr_b, tcp_sport, TCP_PORT)]
    assert tcp["packets"] >= 1  # the SYN (a retransmission is possible only if the RST were lost)

    # IPv6: besides our datagrams, side a sends link-local multicast on its own (MLD reports, with a hop-by-hop
    # header, router solicitations); everything to a unicast address is ours.
    v6 = {k: v for k, v in flows.items() if k[0] == AF_INET6 and not ipaddress.IPv6Address(k[3]).is_multicast}
    v6_key = (AF_INET6, PROTO_UDP, v6_a, v6_b, v6_sport, V6_PORT)
    assert set(v6) == {v6_key}, v6
    assert v6[v6_key]["packets"] == V6_COUNT and v6[v6_key]["bytes"] == V6_COUNT * UDP_V6_FRAME

    counters = gathered(app, "if_counters")
    ifindex = int(veth.link_json(veth.ns_b, veth.if_b)["ifindex"])
    slots = {e["key"]: e["value"]["sum"] for e in counters if e["value"]["sum"]["packets"]}
    assert set(slots) == {ifindex % 256}, slots
    total_packets = sum(v["packets"] for v in flows.values())
    total_bytes = sum(v["bytes"] for v in flows.values())
    assert slots[ifindex % 256]["packets"] >= total_packets >= sum(UDP_PORTS.values()) + V6_COUNT + 3 + 1
    assert slots[ifindex % 256]["bytes"] >= total_bytes

    drops = gathered(app, "event_drops")
    assert drops[0]["value"]["sum"] == 0

    events = run_module(
        "bpf_events",
        {
            "path": f"/sys/fs/bpf/cnf/{app['name']}/maps/new_flows",
            "program": f"{app['name']}/flow_tracker",
            "event_type": "struct flow_event",
            "formats": {"event.key.src": "ip", "event.key.dst": "ip"},
            "drops_map": f"{app['name']}/event_drops",
            "count": 100,
            "timeout": 1,
        },
    )
    assert events.get("failed") is not True, events
    seen = []
    for event in events["events"]:
        key = event["key"]
        seen.append((key["family"], key["proto"], key["src"], key["dst"], key["src_port"], key["dst_port"]))
        assert event["ifindex"] == ifindex and event["pkt_len"] > 0
    assert len(seen) == len(set(seen))  # one event per new flow, never two
    # Side a may start another link-local multicast flow (a delayed MLD report) while this runs: every flow read
    # before the capture has its event, and every event is a flow that exists afterwards.
    assert set(flows) <= set(seen) <= set(read_flows(app)), set(seen) ^ set(flows)
    assert events["lost"] == 0


def test_one_flow_on_two_cpus_is_counted_per_cpu_and_summed_by_facts(app: dict[str, Any], veth: VethPair) -> None:
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    deployed = run_module("bpf_program", dict(app, src=SRC))
    assert deployed.get("failed") is not True, deployed
    assert deployed["state"]["maps"]["flows"]["action"] == "create"
    attach = dict(app, program=f"{app['name']}/flow_tracker", kind="xdp", interface=veth.if_b, netns=veth.ns_b)
    attach.pop("name")
    assert run_module("bpf_attach", attach).get("failed") is not True

    with veth.receiver(veth.ns_b, veth.addr_b, [7111]) as socks:
        sport = veth.send_udp(veth.ns_a, veth.addr_b, 7111, 12, PAYLOAD, cpus=cpus)  # 6 from each CPU
        assert drain(socks[7111]) == 12
    key = (AF_INET, PROTO_UDP, veth.addr_a, veth.addr_b, sport, 7111)
    value = read_flows(app, per_cpu=True)[key]
    slots = value["per_cpu"]
    assert value["sum"]["packets"] == 12 and value["sum"]["bytes"] == 12 * UDP_V4_FRAME
    # the XDP program of a veth peer runs on the sending CPU: both CPUs have their own part of the flow
    assert all(slots[cpu]["packets"] > 0 for cpu in cpus), slots
    for slot in slots:
        assert slot["bytes"] == slot["packets"] * UDP_V4_FRAME
        assert (slot["first_seen"] > 0 and slot["last_seen"] >= slot["first_seen"]) or slot == {
            "packets": 0,
            "bytes": 0,
            "first_seen": 0,
            "last_seen": 0,
        }
    assert slots[cpus[1]]["first_seen"] >= slots[cpus[0]]["first_seen"]  # CPU 1 sent after CPU 0

    facts = run_module(
        "bpf_facts",
        {
            "gather_subset": ["contents"],
            "maps": [
                {
                    "path": f"/sys/fs/bpf/cnf/{app['name']}/maps/flows",
                    "formats": {"key.src": "ip", "key.dst": "ip"},
                    "aggregate_fields": {"first_seen": "min_nonzero", "last_seen": "max"},
                    "top": 10,
                    "sort_by": "bytes",
                }
            ],
        },
    )
    assert facts.get("failed") is not True, facts
    (entry,) = [
        e
        for e in facts["ansible_facts"]["bpf"]["contents"][f"/sys/fs/bpf/cnf/{app['name']}/maps/flows"]["entries"]
        if flow_tuple(e["key"]) == key
    ]
    assert entry["value"] == {
        "packets": 12,
        "bytes": 12 * UDP_V4_FRAME,
        "first_seen": min(slots[cpu]["first_seen"] for cpu in cpus),
        "last_seen": max(slots[cpu]["last_seen"] for cpu in cpus),
    }
    assert entry["value"] == combined(value)
