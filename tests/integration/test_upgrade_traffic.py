"""bpf_program + bpf_attach with real packets: an XDP CNF on a veth pair between two namespaces drops and counts as
declared, is upgraded under traffic without losing a packet or its counters, refuses or migrates an incompatible
map layout, detects foreign programs, and is removed cleanly."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import application, bpftool, run_module
from .netns import VethPair, drain

FLOW_SRC = str(Path(__file__).parent / "data" / "prog_flow.c")
STREAM_PORT = 9000
SO_RCVBUFFORCE = 33  # linux/asm-generic/socket.h; Python does not export it


@pytest.fixture
def app(tmp_path: Path, veth: VethPair) -> Any:  # after veth: removed while the namespaces still exist
    yield from application(tmp_path, "u")


def deploy(app: dict[str, Any], version: int, **args: Any) -> dict[str, Any]:
    params = dict(app, src=FLOW_SRC, defines={"VERSION": version}, constants={"drop_port": 7777})
    params.update(args)
    return run_module("bpf_program", params)


def attach(app: dict[str, Any], veth: VethPair, check: bool = False, **args: Any) -> dict[str, Any]:
    params = dict(app, program=f"{app['name']}/xdp_flow", kind="xdp", interface=veth.if_b, netns=veth.ns_b)
    params.pop("name")
    params.update(args)
    return run_module("bpf_attach", params, check=check)


def xdp_prog_id(veth: VethPair) -> int | None:
    xdp = veth.link_json(veth.ns_b, veth.if_b).get("xdp")
    return xdp["prog"]["id"] if xdp else None


def port_stats(app: dict[str, Any]) -> dict[int, dict[str, int]]:
    result = run_module("bpf_map_entries", {"path": f"/sys/fs/bpf/cnf/{app['name']}/maps/stats", "state": "gathered"})
    return {e["key"]: e["value"] for e in result["entries"]}


def test_drops_and_counts_real_packets_as_declared(app: dict[str, Any], veth: VethPair) -> None:
    assert deploy(app, 1)["changed"]
    assert attach(app, veth, check=True)["changed"] is True
    assert xdp_prog_id(veth) is None  # check mode attached nothing
    attached = attach(app, veth)
    assert attached["changed"] is True and attached["action"] == "attach"
    assert xdp_prog_id(veth) == attached["prog_id"]
    assert attach(app, veth)["changed"] is False
    with veth.receiver(veth.ns_b, veth.addr_b, [7777, 7778]) as socks:
        veth.send_udp(veth.ns_a, veth.addr_b, 7777, 50)
        veth.send_udp(veth.ns_a, veth.addr_b, 7778, 30)
        assert drain(socks[7778]) == 30
        assert drain(socks[7777]) == 0
    stats = port_stats(app)
    assert stats[7777]["packets"] == 50 and stats[7778]["packets"] == 30
    verdicts = run_module(
        "bpf_map_entries", {"path": f"/sys/fs/bpf/cnf/{app['name']}/maps/verdicts", "state": "gathered"}
    )["entries"]
    assert {e["key"]: e["value"]["sum"] for e in verdicts} == {0: 30, 1: 50}


def _stream(veth: VethPair, count: int, seconds: float) -> subprocess.Popen:
    """A sender in side a: `count` sequence-numbered datagrams, evenly over `seconds`."""
    code = (
        "import socket,sys,time\n"
        "dst,port,n,t=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),float(sys.argv[4])\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "start=time.monotonic()\n"
        "for i in range(n):\n"
        "    s.sendto(i.to_bytes(4,'big'),(dst,port))\n"
        "    if i % 100 == 99:\n"
        "        ahead=start+t*(i+1)/n-time.monotonic()\n"
        "        if ahead>0: time.sleep(ahead)\n"
    )
    return subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            veth.ns_a,
            sys.executable,
            "-c",
            code,
            veth.addr_b,
            str(STREAM_PORT),
            str(count),
            str(seconds),
        ]
    )


def test_upgrade_under_traffic_loses_no_packet_and_keeps_counting(app: dict[str, Any], veth: VethPair) -> None:
    deploy(app, 1)
    attach(app, veth)
    old_id = xdp_prog_id(veth)
    total = 20000
    received: set[int] = set()
    with veth.receiver(veth.ns_b, veth.addr_b, [STREAM_PORT]) as socks:
        sock = socks[STREAM_PORT]
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)  # root may exceed rmem_max
        sock.settimeout(1.0)
        done = threading.Event()

        def receive() -> None:
            while not done.is_set():
                try:
                    received.add(int.from_bytes(sock.recv(64), "big"))
                except TimeoutError:
                    continue

        reader = threading.Thread(target=receive)
        reader.start()
        sender = _stream(veth, total, 5.0)
        try:
            time.sleep(1.0)
            upgraded = deploy(app, 2)
            assert sender.poll() is None, "the stream ended before the upgrade finished: it did not span the swap"
            assert sender.wait(timeout=30) == 0
            time.sleep(0.5)
        finally:
            done.set()
            reader.join()
    assert upgraded["changed"] is True, upgraded
    assert upgraded["swapped"] == [f"xdp-{veth.ns_b}-{veth.if_b}"]
    assert upgraded["maps"]["stats"]["action"] == "reuse"
    new_id = xdp_prog_id(veth)
    assert new_id != old_id and new_id == upgraded["state"]["programs"]["xdp_flow"]["id"]
    assert len(received) == total, f"lost {total - len(received)} packets across the swap"
    # v1 and v2 counted into the same pinned map: the counter went on from v1's value, no reset.
    assert port_stats(app)[STREAM_PORT]["packets"] == total
    assert attach(app, veth)["changed"] is False  # the upgrade already moved the hook


def test_incompatible_upgrade_refused_then_migrated_while_attached(app: dict[str, Any], veth: VethPair) -> None:
    deploy(app, 1)
    attach(app, veth)
    with veth.receiver(veth.ns_b, veth.addr_b, [7778]) as socks:
        veth.send_udp(veth.ns_a, veth.addr_b, 7777, 5)
        veth.send_udp(veth.ns_a, veth.addr_b, 7778, 7)
        assert drain(socks[7778]) == 7
    before = xdp_prog_id(veth)
    refused = deploy(app, 3)
    assert refused["failed"] is True and "map_policy=migrate" in refused["msg"]
    assert xdp_prog_id(veth) == before
    migrated = deploy(app, 3, map_policy="migrate")
    assert migrated["migrations"]["stats"]["added_fields"] == ["value.first_seen"]
    assert xdp_prog_id(veth) == migrated["state"]["programs"]["xdp_flow"]["id"] != before
    stats = port_stats(app)
    assert stats[7777] == {"first_seen": 0, "packets": 5, "bytes": stats[7777]["bytes"]}
    assert stats[7778]["packets"] == 7
    with veth.receiver(veth.ns_b, veth.addr_b, [7778]) as socks:
        veth.send_udp(veth.ns_a, veth.addr_b, 7777, 3)
        veth.send_udp(veth.ns_a, veth.addr_b, 7778, 4)
        assert drain(socks[7778]) == 4
    stats = port_stats(app)
    assert stats[7777]["packets"] == 8 and stats[7778]["packets"] == 11  # the migrated map keeps counting


def test_foreign_program_is_a_conflict_until_replaced(app: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    from .conftest import compile_bpf

    deploy(app, 1)
    foreign = compile_bpf(Path(__file__).parent / "data" / "xdp_pass.c", tmp_path / "pass.o")
    subprocess.run(
        ["ip", "-n", veth.ns_b, "link", "set", "dev", veth.if_b, "xdpgeneric", "obj", str(foreign), "sec", "xdp"],
        check=True,
    )
    foreign_id = xdp_prog_id(veth)
    refused = attach(app, veth)
    assert (
        refused["failed"] is True and f"id {foreign_id}" in refused["msg"] and "on_conflict=replace" in refused["msg"]
    )
    assert xdp_prog_id(veth) == foreign_id
    taken = attach(app, veth, on_conflict="replace", xdp_mode="generic")
    assert taken["changed"] and taken["action"] == "replace"
    assert xdp_prog_id(veth) == taken["prog_id"] != foreign_id


def test_removing_the_application_detaches_it(app: dict[str, Any], veth: VethPair) -> None:
    deploy(app, 1)
    attach(app, veth)
    attached = xdp_prog_id(veth)
    assert attached is not None
    assert run_module("bpf_program", dict(app, state="absent"))["changed"] is True
    assert xdp_prog_id(veth) is None
    assert not Path(f"/sys/fs/bpf/cnf/{app['name']}").exists()
    deadline = time.monotonic() + 5  # the kernel frees a program shortly after its last reference goes
    while attached in {p["id"] for p in bpftool("prog", "list")} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert attached not in {p["id"] for p in bpftool("prog", "list")}


@pytest.mark.parametrize("backend", ["tcx", "cls_bpf"])
def test_tc_egress_counts_real_packets(app: dict[str, Any], veth: VethPair, backend: str) -> None:
    src = str(Path(__file__).parent / "data" / "attach_tc_count.c")
    assert run_module("bpf_program", dict(app, src=src))["changed"]
    params = dict(
        app,
        program=f"{app['name']}/tc_count_a",
        kind="tc",
        direction="egress",
        interface=veth.if_a,
        netns=veth.ns_a,
        tc_backend=backend,
    )
    params.pop("name")
    attached = run_module("bpf_attach", params)
    assert attached["changed"] is True and attached["after"][0]["mode"] == backend, attached
    assert run_module("bpf_attach", params)["changed"] is False
    with veth.receiver(veth.ns_b, veth.addr_b, [7001]) as socks:
        veth.send_udp(veth.ns_a, veth.addr_b, 7001, 25)  # counted: leaves side a through the hook
        veth.send_udp(veth.ns_a, veth.addr_b, 8001, 10)  # outside 7000-7999: not counted
        assert drain(socks[7001]) == 25
    counts = run_module(
        "bpf_map_entries", {"path": f"/sys/fs/bpf/cnf/{app['name']}/maps/tc_stats", "state": "gathered"}
    )["entries"]
    assert {e["key"]: e["value"] for e in counts} == {0: 25, 1: 0}
    removed = run_module("bpf_attach", dict(params, state="absent"))
    assert removed["changed"] is True and removed["after"] == []


def test_check_mode_upgrade_changes_nothing(app: dict[str, Any], veth: VethPair) -> None:
    deploy(app, 1)
    attach(app, veth)
    layout = Path(f"/sys/fs/bpf/cnf/{app['name']}")
    before = {
        "prog": xdp_prog_id(veth),
        "pins": sorted(str(p.relative_to(layout)) for p in layout.rglob("*")),
        "maps": {m: bpftool("map", "show", "pinned", str(layout / "maps" / m))["id"] for m in ("stats", "verdicts")},
        "state": Path(app["state_dir"], "apps", f"{app['name']}.json").read_text(),
    }
    params = dict(app, src=FLOW_SRC, defines={"VERSION": 3}, constants={"drop_port": 1}, map_policy="migrate")
    checked = run_module("bpf_program", params, check=True)
    assert checked["changed"] is True and checked["maps"]["stats"]["action"] == "migrate"
    assert "constant drop_port: 7777 -> 1" in checked["reasons"]
    assert checked["swapped"] == [f"xdp-{veth.ns_b}-{veth.if_b}"]
    after = {
        "prog": xdp_prog_id(veth),
        "pins": sorted(str(p.relative_to(layout)) for p in layout.rglob("*")),
        "maps": {m: bpftool("map", "show", "pinned", str(layout / "maps" / m))["id"] for m in ("stats", "verdicts")},
        "state": Path(app["state_dir"], "apps", f"{app['name']}.json").read_text(),
    }
    assert after == before


def test_failed_swap_puts_the_old_programs_back(app: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    from .conftest import compile_bpf

    deploy(app, 1)
    attach(app, veth)
    v1 = xdp_prog_id(veth)
    state_file = Path(app["state_dir"], "apps", f"{app['name']}.json")
    state_before = state_file.read_text()
    # Somebody removes our link and puts their own program on the hook: the upgrade must not clobber it.
    for link in Path(f"/sys/fs/bpf/cnf/{app['name']}/links").iterdir():
        subprocess.run(["bpftool", "link", "detach", "pinned", str(link)], check=True)
        link.unlink()
    foreign = compile_bpf(Path(__file__).parent / "data" / "xdp_pass.c", tmp_path / "pass.o")
    subprocess.run(
        ["ip", "-n", veth.ns_b, "link", "set", "dev", veth.if_b, "xdpgeneric", "obj", str(foreign), "sec", "xdp"],
        check=True,
    )
    foreign_id = xdp_prog_id(veth)
    failed = deploy(app, 2)
    assert failed["failed"] is True and f"id {foreign_id}" in failed["msg"], failed
    assert xdp_prog_id(veth) == foreign_id
    pinned = bpftool("prog", "show", "pinned", f"/sys/fs/bpf/cnf/{app['name']}/progs/xdp_flow")["id"]
    assert pinned == v1  # the v1 program pin is back
    assert state_file.read_text() == state_before


def test_removing_an_application_whose_namespace_is_gone(tmp_path: Path) -> None:
    pair = VethPair()
    app = {"name": f"g{uuid.uuid4().hex[:8]}", "state_dir": str(tmp_path / "state")}
    deploy(app, 1)
    attach(app, pair)
    pair.close()  # the namespace, its interfaces and their XDP hook are gone
    removed = run_module("bpf_program", dict(app, state="absent"))
    assert removed["changed"] is True, removed
    assert not Path(f"/sys/fs/bpf/cnf/{app['name']}").exists()
