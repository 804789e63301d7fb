"""BPF C as users bring it (tests/integration/data/realworld/): each program is deployed by a playbook as written,
gets real packets across veth pairs, and its counters or rewritten packets are checked exactly; every rerun is
`changed: false`; `state: absent` leaves no pin, link, hook or state file behind.

The styles: glibc-including headers, libbpf < 1.0 section names, LIBBPF_PIN_BY_NAME maps, a DEVMAP redirect with a
MAC-keyed hash, an iproute2-style tc classifier rewriting packets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _objects

from .conftest import run_module, run_playbook
from .netns import VethPair, drain, ip, receiver, send_udp, sysctl

DATA = Path(__file__).parent / "data" / "realworld"
XDP_PASS, XDP_REDIRECT = 2, 4
ETH_IP_UDP = 14 + 20 + 8
ETH_IP_ICMP = 14 + 20 + 8


# --- fixtures and helpers ------------------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path, pin_dir: Path) -> Iterator[dict[str, Any]]:
    """Where the applications of one test live (their own pin root and state dir); every application a test names
    through `world["apps"]` is removed afterwards, whatever happened."""
    pin_dir.mkdir()
    env: dict[str, Any] = {"pin_root": str(pin_dir), "state_dir": str(tmp_path / "state"), "apps": []}
    yield env
    for name in env["apps"]:
        run_module(
            "bpf_program", {"name": name, "state": "absent", "pin_root": env["pin_root"], "state_dir": env["state_dir"]}
        )


def new_app(world: dict[str, Any], prefix: str) -> str:
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    world["apps"].append(name)
    return name


def task(world: dict[str, Any], module: str, register: str, **args: Any) -> dict[str, Any]:
    common = {"pin_root": world["pin_root"], "state_dir": world["state_dir"]}
    if module == "bpf_map_entries":
        common = {}
    return {"name": register, f"cnf.ebpf.{module}": dict(common, **args), "register": register}


def deploy_twice(tmp_path: Path, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the playbook, then again: the second run must change nothing."""
    first = run_playbook(tmp_path, tasks)
    for t in tasks:
        result = first[t["register"]]
        assert result.get("failed") is not True, result
    again = run_playbook(tmp_path, tasks)
    changed = {
        t["register"]: again[t["register"]].get("reasons", True) for t in tasks if again[t["register"]]["changed"]
    }
    assert changed == {}, f"a rerun changed something: {changed}"
    return first


def gathered(path: str) -> dict[Any, Any]:
    result = run_module("bpf_map_entries", {"path": path, "state": "gathered"})
    assert result.get("failed") is not True, result
    return {
        json.dumps(e["key"]) if isinstance(e["key"], (dict, list)) else e["key"]: e["value"] for e in result["entries"]
    }


def summed(value: Any) -> Any:
    return value["sum"] if isinstance(value, dict) and "sum" in value else value


def remove_and_check(world: dict[str, Any], names: list[str], hooks: list[tuple[str | None, str]]) -> None:
    """state: absent through a playbook-equivalent module run; then nothing of the applications may be left."""
    for name in names:
        result = run_module(
            "bpf_program",
            {"name": name, "state": "absent", "pin_root": world["pin_root"], "state_dir": world["state_dir"]},
        )
        assert result["changed"] is True, result
        world["apps"].remove(name)
        assert not (Path(world["pin_root"]) / name).exists()
        assert not (Path(world["state_dir"]) / "apps" / f"{name}.json").exists()
    leftovers = [p.name for p in Path(world["pin_root"]).iterdir()]
    assert leftovers == [], f"pins left under the pin root: {leftovers}"
    for ns, ifname in hooks:
        assert hooks_on(ns, ifname) == [], f"programs left on {ifname}"


def hooks_on(ns: str | None, ifname: str) -> list[str]:
    """Programs on an interface's XDP and tc hooks, as bpftool sees them (netlink only, so `ip netns exec` is fine)."""
    cmd = ["bpftool", "-j", "net", "show", "dev", ifname]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout or "[]")
    names = []
    for section in out:
        for kind in ("xdp", "tc", "tcx"):
            names += [entry.get("name", "?") for entry in section.get(kind, [])]
    return names


def map_id(path: str) -> int:
    return json.loads(
        subprocess.run(
            ["bpftool", "-j", "map", "show", "pinned", path], capture_output=True, text=True, check=True
        ).stdout
    )["id"]


# ICMP through a raw socket in a subprocess in the sender's namespace (ip netns exec: it needs no pins): `count`
# echo requests with id 0x4242, then the echo replies seen within `wait` seconds, as JSON.
ICMP_PING = r"""
import json, socket, struct, sys, time
dst, count, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def csum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s & 0xffff) + (s >> 16); s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
payload = b"cnf-ebpf-realworld-icmp-payload!" + bytes(24)
for seq in range(count):
    hdr = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq)
    s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), 0x4242, seq) + payload, (dst, 0))
replies = []
s.settimeout(0.2)
deadline = time.monotonic() + wait
while time.monotonic() < deadline:
    try:
        pkt, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    ihl = (pkt[0] & 15) * 4
    icmp = pkt[ihl:]
    typ, code, ck, ident, seq = struct.unpack("!BBHHH", icmp[:8])
    if typ == 0 and ident == 0x4242:
        replies.append({"src": addr[0], "seq": seq, "csum_ok": csum(icmp) == 0, "payload_ok": icmp[8:] == payload})
print(json.dumps(replies))
"""
ICMP_PAYLOAD = 56


def ping(ns: str, dst: str, count: int, wait: float = 0.0) -> list[dict[str, Any]]:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", ICMP_PING, dst, str(count), str(wait)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


# --- glibc headers -------------------------------------------------------------------------------------------------


def test_glibc_including_source_counts_icmp_exactly(world: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    """<linux/if.h>, <linux/icmp.h> and <stdint.h> pull glibc's <gnu/stubs.h> into a -target bpf build, which wants
    gnu/stubs-32.h; the source builds as written (no cflags) and counts every echo request, bytes included."""
    app = new_app(world, "glibc")
    tasks = [
        task(world, "bpf_program", "program", name=app, src=str(DATA / "glibc_icmp_count.c")),
        task(
            world,
            "bpf_attach",
            "hook",
            program=f"{app}/xdp_icmp_count",
            kind="xdp",
            interface=veth.if_b,
            netns=veth.ns_b,
        ),
    ]
    first = deploy_twice(tmp_path, tasks)
    assert first["program"]["changed"] is True and first["hook"]["changed"] is True
    assert not any(flag.startswith("-D__x86_64__") for flag in first["program"]["state"]["params"]["cflags"])

    replies = ping(veth.ns_a, veth.addr_b, 40, wait=1.0)
    assert len(replies) == 40  # XDP_PASS: the kernel behind the program answered every one
    stats = gathered(f"{world['pin_root']}/{app}/maps/xdp_stats_map")
    assert summed(stats[XDP_PASS]) == {"rx_packets": 40, "rx_bytes": 40 * (ETH_IP_ICMP + ICMP_PAYLOAD)}

    remove_and_check(world, [app], [(veth.ns_b, veth.if_b)])


# --- legacy section names ------------------------------------------------------------------------------------------


def test_legacy_sections_are_named_then_deploy_as_written(
    world: dict[str, Any], veth: VethPair, tmp_path: Path
) -> None:
    """SEC("xdp_icmp_echo") / SEC("xdp_pass"): refused before anything is loaded with the section, why and what to
    write; with program_types the source deploys unchanged and answers pings itself (XDP_TX), with correct
    checksums, while the kernel behind it is told to ignore echo requests."""
    app = new_app(world, "legacy")
    src = str(DATA / "legacy_icmp_echo.c")
    refused = run_module(
        "bpf_program", {"name": app, "src": src, "pin_root": world["pin_root"], "state_dir": world["state_dir"]}
    )
    assert refused.get("failed") is True and refused["changed"] is False
    assert 'SEC("xdp_icmp_echo") is not a section name libbpf 1.x knows' in refused["msg"]
    assert 'write SEC("xdp") in the source' in refused["msg"] and "program_types" in refused["msg"]
    assert not (Path(world["pin_root"]) / app).exists() and not (Path(world["state_dir"]) / "apps").exists()

    subprocess.run(["ip", "netns", "exec", veth.ns_b, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"], check=True)
    types = {"xdp_icmp_echo_func": "xdp", "xdp_pass_func": "xdp"}
    tasks = [
        task(world, "bpf_program", "program", name=app, src=src, program_types=types),
        task(
            world,
            "bpf_attach",
            "echo",
            program=f"{app}/xdp_icmp_echo_func",
            kind="xdp",
            interface=veth.if_b,
            netns=veth.ns_b,
        ),
        # veth delivers XDP_TX frames to a peer with an XDP program (xdp-tutorial loads xdp_pass there for this)
        task(
            world,
            "bpf_attach",
            "peer",
            program=f"{app}/xdp_pass_func",
            kind="xdp",
            interface=veth.if_a,
            netns=veth.ns_a,
        ),
    ]
    first = deploy_twice(tmp_path, tasks)
    assert {p["type"] for p in first["program"]["state"]["programs"].values()} == {"xdp"}

    replies = ping(veth.ns_a, veth.addr_b, 25, wait=1.5)
    assert sorted(r["seq"] for r in replies) == list(range(25))
    assert all(r["src"] == veth.addr_b and r["csum_ok"] and r["payload_ok"] for r in replies), replies
    assert gathered(f"{world['pin_root']}/{app}/maps/echo_replies")[0] == 25

    remove_and_check(world, [app], [(veth.ns_b, veth.if_b), (veth.ns_a, veth.if_a)])


# --- LIBBPF_PIN_BY_NAME --------------------------------------------------------------------------------------------


def send_udp_counted(veth: VethPair, port: int, count: int, payload: bytes) -> None:
    with veth.receiver(veth.ns_b, veth.addr_b, [port]) as socks:
        veth.send_udp(veth.ns_a, veth.addr_b, port, count, payload)
        assert drain(socks[port]) == count


def test_pin_by_name_maps_belong_to_the_application(world: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    """Two applications from one source with a PIN_BY_NAME map: each has its own map under its own pin root (nothing
    at /sys/fs/bpf/xdp_stats_map), the upgraded program keeps writing the map the application's pin shows (same id,
    counts carry on), and state: absent removes it."""
    one, two = new_app(world, "byname"), new_app(world, "byname")
    src = str(DATA / "pin_by_name_stats.c")
    tasks = [
        task(world, "bpf_program", "one", name=one, src=src),
        task(world, "bpf_program", "two", name=two, src=src),
        task(
            world,
            "bpf_attach",
            "hook",
            program=f"{one}/xdp_stats_by_name",
            kind="xdp",
            interface=veth.if_b,
            netns=veth.ns_b,
        ),
    ]
    first = deploy_twice(tmp_path, tasks)
    stray = Path("/sys/fs/bpf/xdp_stats_map")
    assert not stray.exists(), "libbpf pinned the map outside the application"
    pin_one = f"{world['pin_root']}/{one}/maps/xdp_stats_map"
    pin_two = f"{world['pin_root']}/{two}/maps/xdp_stats_map"
    assert first["one"]["state"]["maps"]["xdp_stats_map"]["pin"] == pin_one
    assert map_id(pin_one) != map_id(pin_two)

    payload = b"p" * 60
    send_udp_counted(veth, 9000, 30, payload)
    assert gathered(pin_one)[0] == {"rx_packets": 30, "rx_bytes": 30 * (ETH_IP_UDP + 60)}
    assert gathered(pin_two)[0] == {"rx_packets": 0, "rx_bytes": 0}

    before = map_id(pin_one)
    upgrade = run_module(
        "bpf_program",
        {
            "name": one,
            "src": src,
            "defines": {"STATS_PORT": 9001},
            "pin_root": world["pin_root"],
            "state_dir": world["state_dir"],
        },
    )
    assert upgrade["changed"] is True and upgrade["maps"]["xdp_stats_map"]["action"] == "reuse", upgrade
    assert map_id(pin_one) == before
    prog_maps = json.loads(
        subprocess.run(
            ["bpftool", "-j", "prog", "show", "pinned", f"{world['pin_root']}/{one}/progs/xdp_stats_by_name"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["map_ids"]
    assert before in prog_maps, "the running program does not use the map the application's pin shows"
    send_udp_counted(veth, 9001, 20, payload)  # the new program counts port 9001, into the same map
    assert gathered(pin_one)[0] == {"rx_packets": 50, "rx_bytes": 50 * (ETH_IP_UDP + 60)}
    assert not stray.exists()

    remove_and_check(world, [one, two], [(veth.ns_b, veth.if_b)])


def test_pin_by_name_map_is_shared_only_when_declared(world: dict[str, Any], tmp_path: Path) -> None:
    """Sharing one PIN_BY_NAME map between applications is declared (shared_maps), and then they really share it."""
    one, two = new_app(world, "shared"), new_app(world, "shared")
    src = str(DATA / "pin_by_name_stats.c")
    tasks = [task(world, "bpf_program", n, name=n, src=src, shared_maps=["xdp_stats_map"]) for n in (one, two)]
    first = deploy_twice(tmp_path, tasks)
    shared = f"{world['pin_root']}/shared/xdp_stats_map"
    assert first[one]["maps"]["xdp_stats_map"]["pin"] == shared == first[two]["maps"]["xdp_stats_map"]["pin"]
    assert first[two]["maps"]["xdp_stats_map"]["action"] == "reuse"
    assert not Path("/sys/fs/bpf/xdp_stats_map").exists()


# --- DEVMAP redirect, MAC-keyed hash -------------------------------------------------------------------------------


class RedirectTopology:
    """ns_a --veth-- [b1 (host) XDP redirect via devmap -> b2 (host)] --veth-- ns_c; IPv6 off everywhere, so the
    only frames b1 sees are the datagrams sent (and the redirect counters are exact)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns_a, self.ns_c = f"cnf-rw-{tag}-a", f"cnf-rw-{tag}-c"
        self.if_a, self.b1, self.b2, self.if_c = f"rwa{tag}", f"rwb1{tag}", f"rwb2{tag}", f"rwc{tag}"
        subnet = 100 + int(tag[:2], 16) % 100
        self.addr_a, self.addr_c = f"10.201.{subnet}.1", f"10.201.{subnet}.3"
        self.created: list[tuple[str, str | None]] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        for ns in (self.ns_a, self.ns_c):
            ip("netns", "add", ns)
            self.created.append(("netns", ns))
            sysctl(ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        ip("link", "add", self.b1, "type", "veth", "peer", "name", self.if_a, "netns", self.ns_a)
        self.created.append(("link", self.b1))
        ip("link", "add", self.b2, "type", "veth", "peer", "name", self.if_c, "netns", self.ns_c)
        self.created.append(("link", self.b2))
        for host_if in (self.b1, self.b2):
            Path(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6").write_text("1")
            ip("link", "set", host_if, "up")
        ip("-n", self.ns_a, "addr", "add", f"{self.addr_a}/24", "dev", self.if_a)
        ip("-n", self.ns_c, "addr", "add", f"{self.addr_c}/24", "dev", self.if_c)
        for ns, ifname in ((self.ns_a, self.if_a), (self.ns_c, self.if_c)):
            ip("-n", ns, "link", "set", ifname, "up")
        # A frame that XDP redirects leaves as it came in: with checksum offload, a UDP checksum holding only the
        # pseudo-header sum, which ns_c would drop. The sender computes checksums itself, as xdp-tutorial's test
        # environment has it.
        subprocess.run(
            ["ip", "netns", "exec", self.ns_a, "ethtool", "-K", self.if_a, "tx", "off"], capture_output=True, check=True
        )
        # ns_a sends to addr_c through b1 (static neighbour: b1's MAC), the program rewrites it for if_c
        ip(
            "-n",
            self.ns_a,
            "neigh",
            "replace",
            self.addr_c,
            "lladdr",
            self.mac(None, self.b1),
            "dev",
            self.if_a,
            "nud",
            "permanent",
        )

    @staticmethod
    def mac(ns: str | None, ifname: str) -> str:
        args = ["-n", ns] if ns else []
        return json.loads(ip("-j", *args, "link", "show", "dev", ifname))[0]["address"]

    @staticmethod
    def ifindex(ifname: str) -> int:
        return json.loads(ip("-j", "link", "show", "dev", ifname))[0]["ifindex"]

    def close(self) -> None:
        for kind, name in reversed(self.created):
            if kind == "link":
                subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
            else:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.created = []


@pytest.fixture
def redirect_topology() -> Iterator[RedirectTopology]:
    topo = RedirectTopology()
    try:
        yield topo
    finally:
        topo.close()


def test_devmap_redirect_with_mac_keyed_hash(
    world: dict[str, Any], redirect_topology: RedirectTopology, tmp_path: Path
) -> None:
    """xdp-tutorial's redirect: the next hop's MAC from a hash keyed by the source MAC, the egress port from a
    DEVMAP. Reruns are unchanged (the kernel sets BPF_F_RDONLY_PROG on devmaps: no layout difference), every
    datagram arrives on the far side, and the per-action counters say they were redirected."""
    topo = redirect_topology
    app = new_app(world, "redirect")
    maps = f"{world['pin_root']}/{app}/maps"
    tasks = [
        task(world, "bpf_program", "program", name=app, src=str(DATA / "xdp_redirect_devmap.c")),
        task(
            world,
            "bpf_map_entries",
            "tx_port",
            path=f"{maps}/tx_port",
            state="overridden",
            entries=[{"key": 0, "value": topo.ifindex(topo.b2)}],
        ),
        task(
            world,
            "bpf_map_entries",
            "params",
            path=f"{maps}/redirect_params",
            state="overridden",
            formats={"key": "mac", "value": "mac"},
            entries=[{"key": topo.mac(topo.ns_a, topo.if_a), "value": topo.mac(topo.ns_c, topo.if_c)}],
        ),
        task(world, "bpf_attach", "redirect", program=f"{app}/xdp_redirect_map_func", kind="xdp", interface=topo.b1),
        # a veth accepts redirected frames when its peer has an XDP program (the tutorial loads xdp_pass there)
        task(
            world,
            "bpf_attach",
            "peer",
            program=f"{app}/xdp_pass_func",
            kind="xdp",
            interface=topo.if_c,
            netns=topo.ns_c,
        ),
    ]
    first = deploy_twice(tmp_path, tasks)
    assert first["tx_port"]["changed"] is True and first["params"]["changed"] is True

    payload = b"r" * 80
    with receiver(topo.ns_c, topo.addr_c, [7400]) as socks:
        send_udp(topo.ns_a, topo.addr_c, 7400, 60, payload)
        assert drain(socks[7400]) == 60
    stats = gathered(f"{maps}/xdp_stats_map")
    assert summed(stats[XDP_REDIRECT]) == {"rx_packets": 60, "rx_bytes": 60 * (ETH_IP_UDP + 80)}
    assert summed(stats[XDP_PASS]) == {"rx_packets": 0, "rx_bytes": 0}

    # bpf_facts lists the devmap and shows where it sends packets
    facts = run_module("bpf_facts", {"gather_subset": ["maps"], "maps": [{"name": "tx", "path": f"{maps}/tx_port"}]})
    assert facts.get("failed") is not True, facts
    tx = facts["ansible_facts"]["bpf"]["contents"]["tx"]
    assert tx["type"] == "devmap" and tx["count"] == 1, tx
    assert tx["entries"] == [{"key": 0, "value": {"ifindex": topo.ifindex(topo.b2), "interface": topo.b2}}], tx
    listed = [m for m in facts["ansible_facts"]["bpf"]["maps"] if f"{maps}/tx_port" in m.get("pins", [])]
    assert [m["type"] for m in listed] == ["devmap"], listed

    remove_and_check(world, [app], [(None, topo.b1), (topo.ns_c, topo.if_c)])


# --- tc packet rewrite ---------------------------------------------------------------------------------------------


def test_tc_classifier_rewrites_ports(world: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    """An iproute2-style SEC("classifier") program on tc ingress rewrites UDP 7000 -> 7001 (store_bytes and the L4
    checksum helper): every datagram arrives on 7001, none on 7000, and the rewrite counter agrees."""
    app = new_app(world, "tcrw")
    tasks = [
        task(
            world,
            "bpf_program",
            "program",
            name=app,
            src=str(DATA / "tc_port_rewrite.c"),
            constants={"from_port": 7000, "to_port": 7001},
        ),
        task(
            world,
            "bpf_attach",
            "hook",
            program=f"{app}/tc_rewrite_port",
            kind="tc",
            interface=veth.if_b,
            netns=veth.ns_b,
            direction="ingress",
        ),
    ]
    deploy_twice(tmp_path, tasks)
    with veth.receiver(veth.ns_b, veth.addr_b, [7000, 7001]) as socks:
        veth.send_udp(veth.ns_a, veth.addr_b, 7000, 45, b"t" * 32)
        assert drain(socks[7001]) == 45
        assert drain(socks[7000], quiet=0.1) == 0
    assert gathered(f"{world['pin_root']}/{app}/maps/rewritten")[0] == 45

    remove_and_check(world, [app], [(veth.ns_b, veth.if_b)])


def test_pre_1_0_map_definitions_are_named(world: dict[str, Any], tmp_path: Path) -> None:
    """struct bpf_map_def in SEC("maps") (libbpf < 1.0) does not compile against libbpf 1.x headers: the error says
    what it is and what to declare instead."""
    src = tmp_path / "legacy_maps.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        'struct bpf_map_def SEC("maps") counters = {.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8,'
        " .max_entries = 1};\n"
        'SEC("xdp") int xdp_prog(struct xdp_md *ctx) { return XDP_PASS; }\nchar _license[] SEC("license") = "GPL";\n'
    )
    app = new_app(world, "mapdef")
    result = run_module(
        "bpf_program", {"name": app, "src": str(src), "pin_root": world["pin_root"], "state_dir": world["state_dir"]}
    )
    assert result.get("failed") is True and result["changed"] is False
    assert "libbpf 1.x removed" in result["msg"] and 'SEC(".maps")' in result["msg"]
    assert not (Path(world["pin_root"]) / app).exists()


def test_load_failure_keeps_libbpf_log(world: dict[str, Any], tmp_path: Path) -> None:
    """A load libbpf refuses before the verifier (here a map the kernel will not create: a devmap of 3-byte values)
    fails with libbpf's whole log in the result."""
    src = tmp_path / "bad_devmap.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        "struct { __uint(type, BPF_MAP_TYPE_DEVMAP); __uint(key_size, 4); __uint(value_size, 3);"
        ' __uint(max_entries, 4); } ports SEC(".maps");\n'
        'SEC("xdp") int xdp_prog(struct xdp_md *ctx) { return bpf_redirect_map(&ports, 0, 0); }\n'
        'char _license[] SEC("license") = "GPL";\n'
    )
    app = new_app(world, "badmap")
    result = run_module(
        "bpf_program", {"name": app, "src": str(src), "pin_root": world["pin_root"], "state_dir": world["state_dir"]}
    )
    assert result.get("failed") is True and result["changed"] is False
    assert "map 'ports'" in result["libbpf_log"] and "failed to create" in result["libbpf_log"], result
    assert not (Path(world["pin_root"]) / app).exists()


def test_devmap_program_reruns_unchanged_with_map_policy_fail(world: dict[str, Any]) -> None:
    """The kernel sets BPF_F_RDONLY_PROG on every devmap it creates: the pinned map must still count as the one the
    object declares, so a rerun (and an upgrade) reuses it under map_policy: fail."""
    app = new_app(world, "devmap")
    args = {
        "name": app,
        "src": str(DATA / "xdp_redirect_devmap.c"),
        "map_policy": "fail",
        "pin_root": world["pin_root"],
        "state_dir": world["state_dir"],
    }
    assert run_module("bpf_program", args)["changed"] is True
    again = run_module("bpf_program", args)
    assert again.get("failed") is not True, again
    assert again["changed"] is False and again["maps"]["tx_port"]["action"] == "reuse"
    upgraded = run_module("bpf_program", dict(args, cflags=["-mcpu=v3"]))  # another object, the same maps
    assert upgraded.get("failed") is not True, upgraded
    assert upgraded["changed"] is True and upgraded["maps"]["tx_port"]["action"] == "reuse"


def test_bpf_host_installs_every_header_package_a_glibc_including_source_needs(tmp_path: Path) -> None:
    """The headers the glibc-including corpus source reads under /usr/include (as the compile resolves them, shim
    first) all come from packages the bpf_host role installs on Debian."""
    shim = _objects.write_shim(str(tmp_path / "cache"))
    scan = subprocess.run(
        ["clang", *_objects.build_flags(shim_dir=shim), "-M", "-MT", "o", str(DATA / "glibc_icmp_count.c")],
        capture_output=True,
        text=True,
        check=True,
    )
    headers = [h for h in _objects.parse_make_deps(scan.stdout) if h.startswith("/usr/include/")]
    assert any("/sys/socket.h" in h for h in headers) and any(h.endswith("/linux/if.h") for h in headers)
    owners = subprocess.run(["dpkg", "-S", *headers], capture_output=True, text=True, check=True).stdout
    packages = {line.split(":")[0] for line in owners.splitlines()}
    defaults = yaml.safe_load((Path(__file__).parents[2] / "roles/bpf_host/defaults/main.yml").read_text())
    assert packages <= set(defaults["bpf_host_packages"]["Debian"]), packages
