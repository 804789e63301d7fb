"""The flow_tracker role against this host: deployed on an interface of a veth sandbox, it reports exactly the flows
sent through it (5-tuples, packets, bytes; IPv4 and IPv6) in flow_tracker_report, a flow sent from two CPUs with its
per-CPU slots combined (counters summed, the earliest first_seen, the latest last_seen), a second run and a
check-mode run change nothing, an interface dropped from the list is detached, and state=absent leaves no pin
behind. A deployment of the tracker before issue 16 (one LRU hash of shared flow values) upgraded by the role keeps
its flows (each old total in CPU 0's slot) and keeps counting them; going back is refused and changes nothing."""

from __future__ import annotations

import ipaddress
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import RoleRun, run_module, run_role
from .netns import VethPair, ip

PAYLOAD = b"cnf-role-flow"
V4_FRAME = 14 + 20 + 8 + len(PAYLOAD)
V6_FRAME = 14 + 40 + 8 + len(PAYLOAD)
SENT_V4 = {7201: 12, 7202: 5, 7203: 1}
SENT_V6 = {7206: 9}
ATOMICS_SRC = str(Path(__file__).resolve().parents[2] / "bench" / "data" / "flow_tracker_atomics.c")
SPREAD_PORT = 7201  # sent from two CPUs (when there are two)
CPUS = sorted(os.sched_getaffinity(0))[:2]


class Tracker:
    def __init__(self, tmp_path: Path, veth: VethPair) -> None:
        self.tmp_path = tmp_path
        self.name = f"ftr{uuid.uuid4().hex[:8]}"
        self.vars: dict[str, Any] = {
            "flow_tracker_name": self.name,
            "flow_tracker_state_dir": str(tmp_path / "state"),
            "flow_tracker_unit_dir": str(tmp_path / "systemd"),
            "flow_tracker_interfaces": [{"name": veth.if_b, "netns": veth.ns_b}],
        }

    def run(self, check: bool = False, **overrides: Any) -> RoleRun:
        role_vars = dict(self.vars, **overrides)
        return run_role(
            self.tmp_path, [{"role": "cnf.ebpf.flow_tracker", "vars": role_vars}], ("flow_tracker_report",), check
        )


@pytest.fixture
def tracker(tmp_path: Path, veth: VethPair) -> Iterator[Tracker]:
    ft = Tracker(tmp_path, veth)
    yield ft
    removed = ft.run(flow_tracker_state="absent")
    assert removed.rc == 0, removed.stdout
    assert not Path(f"/sys/fs/bpf/cnf/{ft.name}").exists()


def xdp_prog_id(ns: str, ifname: str) -> int | None:
    link = json.loads(ip("-j", "-d", "-n", ns, "link", "show", "dev", ifname))[0]
    return (link.get("xdp") or {}).get("prog", {}).get("id")


def test_flow_tracker_role_reports_the_flows_sent(tracker: Tracker, veth: VethPair) -> None:
    first = tracker.run()
    assert first.rc == 0 and first.changed > 0, first.stdout
    # Restored at boot: the unit is installed and enabled, the config is recorded with the deployment.
    assert (tracker.tmp_path / "systemd" / "multi-user.target.wants" / "cnf-ebpf-restore.service").exists()
    state = json.loads((tracker.tmp_path / "state" / "apps" / f"{tracker.name}.json").read_text())
    assert state["boot"] is True
    assert list(state["entries"]) == [f"/sys/fs/bpf/cnf/{tracker.name}/maps/config"]
    again = tracker.run()
    assert again.rc == 0 and again.changed == 0, again.stdout
    checked = tracker.run(check=True)
    assert checked.rc == 0 and checked.changed == 0, checked.stdout
    assert xdp_prog_id(veth.ns_b, veth.if_b) is not None

    addr_a, addr_b = veth.add_ipv6()
    expected = {}
    spread_key = None
    for port, count in SENT_V4.items():
        cpus = CPUS if port == SPREAD_PORT else ()
        sport = veth.send_udp(veth.ns_a, veth.addr_b, port, count, PAYLOAD, cpus=cpus)
        expected[(2, 17, veth.addr_a, sport, veth.addr_b, port)] = (count, count * V4_FRAME)
        if cpus:
            spread_key = (veth.addr_a, sport, port)
    for port, count in SENT_V6.items():
        sport = veth.send_udp(veth.ns_a, addr_b, port, count, PAYLOAD)
        expected[(10, 17, addr_a, sport, addr_b, port)] = (count, count * V6_FRAME)

    gathered = tracker.run(flow_tracker_gather=True, flow_tracker_top=50)
    assert gathered.rc == 0 and gathered.changed == 0, gathered.stdout
    report = gathered.variables["flow_tracker_report"]
    seen = {}
    for flow in report["flows"]:
        key, value = flow["key"], flow["value"]
        if ipaddress.ip_address(key["dst"]).is_multicast:
            continue  # side a's own MLD reports and router solicitations
        tup = (key["family"], key["proto"], key["src"], key["src_port"], key["dst"], key["dst_port"])
        seen[tup] = (value["packets"], value["bytes"])
    assert seen == expected
    # The flow sent from two CPUs: each CPU's slot has its part; the report combined them.
    raw = run_module(
        "bpf_map_entries",
        {
            "path": f"/sys/fs/bpf/cnf/{tracker.name}/maps/flows",
            "state": "gathered",
            "formats": {"key.src": "ip", "key.dst": "ip"},
        },
    )
    assert raw.get("failed") is not True, raw
    (slots,) = [
        e["value"]["per_cpu"]
        for e in raw["entries"]
        if (e["key"]["src"], e["key"]["src_port"], e["key"]["dst_port"]) == spread_key
    ]
    (spread,) = [f["value"] for f in report["flows"] if (f["key"]["src_port"], f["key"]["dst_port"]) == spread_key[1:]]
    assert [s["packets"] > 0 for s in slots].count(True) == len(CPUS), slots
    assert spread == {
        "packets": SENT_V4[SPREAD_PORT],
        "bytes": SENT_V4[SPREAD_PORT] * V4_FRAME,
        "first_seen": min(s["first_seen"] for s in slots if s["packets"]),
        "last_seen": max(s["last_seen"] for s in slots),
    }
    assert 0 < spread["first_seen"] <= spread["last_seen"]
    ranked = [f["value"]["bytes"] for f in report["flows"]]
    assert ranked == sorted(ranked, reverse=True)  # the top of the table, largest first
    ifindex = int(veth.link_json(veth.ns_b, veth.if_b)["ifindex"])
    assert report["interfaces"] == [{"interface": veth.if_b, "netns": veth.ns_b, "ifindex": ifindex}]
    slots = {c["key"]: c["value"] for c in report["counters"]}
    assert slots[ifindex % 256]["packets"] >= sum(SENT_V4.values()) + sum(SENT_V6.values())
    assert report["event_drops"] == 0 and report["changed"] is False

    # A second gathering has deltas and rates against the first (a new socket is a new flow: the interface
    # counter is what grows).
    veth.send_udp(veth.ns_a, veth.addr_b, 7201, 4, PAYLOAD)
    later = tracker.run(flow_tracker_gather=True).variables["flow_tracker_report"]
    assert later["rates_since"] is not None
    counter = next(c for c in later["counters"] if c["key"] == ifindex % 256)
    assert counter["delta"]["packets"] >= 4 and counter["delta"]["bytes"] >= 4 * V4_FRAME
    assert counter["rate"]["packets"] > 0


def test_unlisted_interface_is_detached(tracker: Tracker, veth: VethPair) -> None:
    # Both ends of the pair, then only side a.
    both = [{"name": veth.if_b, "netns": veth.ns_b}, {"name": veth.if_a, "netns": veth.ns_a, "xdp_mode": "generic"}]
    assert tracker.run(flow_tracker_interfaces=both).rc == 0
    assert xdp_prog_id(veth.ns_a, veth.if_a) is not None and xdp_prog_id(veth.ns_b, veth.if_b) is not None
    only_a = both[1:]
    checked = tracker.run(check=True, flow_tracker_interfaces=only_a)
    assert checked.rc == 0 and checked.changed == 1, checked.stdout
    assert xdp_prog_id(veth.ns_b, veth.if_b) is not None  # check mode detached nothing
    dropped = tracker.run(flow_tracker_interfaces=only_a)
    assert dropped.rc == 0 and dropped.changed == 1, dropped.stdout
    assert xdp_prog_id(veth.ns_b, veth.if_b) is None
    assert xdp_prog_id(veth.ns_a, veth.if_a) is not None
    assert tracker.run(flow_tracker_interfaces=only_a).changed == 0


def test_bad_interface_list_fails_before_changing_anything(tracker: Tracker) -> None:
    bad = tracker.run(flow_tracker_interfaces=[{"netns": "x"}])
    assert bad.rc != 0
    assert "name" in bad.stdout and "flow_tracker_interfaces" in bad.stdout
    assert not Path(f"/sys/fs/bpf/cnf/{tracker.name}").exists()
    assert not (tracker.tmp_path / "state" / "apps").exists()


def test_upgrade_from_the_shared_value_tracker_keeps_the_flows(tracker: Tracker, veth: VethPair) -> None:
    old = tracker.run(flow_tracker_source=ATOMICS_SRC, flow_tracker_enabled=True, flow_tracker_sample_rate=1)
    assert old.rc == 0, old.stdout
    old_prog = xdp_prog_id(veth.ns_b, veth.if_b)
    state_file = tracker.tmp_path / "state" / "apps" / f"{tracker.name}.json"
    sport = veth.send_udp(veth.ns_a, veth.addr_b, 7301, 10, PAYLOAD, cpus=CPUS)
    flows_pin = f"/sys/fs/bpf/cnf/{tracker.name}/maps/flows"

    def flow(value_of: Any = None) -> Any:
        raw = run_module("bpf_map_entries", {"path": flows_pin, "state": "gathered"})
        assert raw.get("failed") is not True, raw
        (value,) = [e["value"] for e in raw["entries"] if (e["key"]["src_port"], e["key"]["dst_port"]) == (sport, 7301)]
        return value

    before = flow()
    assert before["packets"] == 10 and before["bytes"] == 10 * V4_FRAME and "per_cpu" not in before

    # The map's type changed: map_policy=fail refuses with the difference and changes nothing.
    refused = tracker.run(flow_tracker_map_policy="fail")
    assert refused.rc != 0 and "lru_hash" in refused.stdout and "map_policy=migrate" in refused.stdout
    assert xdp_prog_id(veth.ns_b, veth.if_b) == old_prog and flow() == before

    checked = tracker.run(check=True)  # the default map_policy, migrate
    assert checked.rc == 0 and checked.changed > 0, checked.stdout
    assert xdp_prog_id(veth.ns_b, veth.if_b) == old_prog and flow() == before

    upgraded = tracker.run()
    assert upgraded.rc == 0, upgraded.stdout
    new_prog = xdp_prog_id(veth.ns_b, veth.if_b)
    assert new_prog not in (None, old_prog)
    state = json.loads(state_file.read_text())
    assert state["maps"]["flows"]["action"] == "migrate" and state["maps"]["config"]["action"] == "reuse"
    migrated = flow()
    assert migrated["per_cpu"][0] == before  # the old totals in CPU 0's slot, the timestamps as they were
    assert all(slot == {"packets": 0, "bytes": 0, "first_seen": 0, "last_seen": 0} for slot in migrated["per_cpu"][1:])
    assert tracker.run().changed == 0  # the upgrade is done: nothing more to do

    # The same flow goes on being counted by the new program, and the report adds it all up.
    veth.send_udp(veth.ns_a, veth.addr_b, 7301, 6, PAYLOAD, cpus=CPUS, sport=sport)
    report = tracker.run(flow_tracker_gather=True).variables["flow_tracker_report"]
    (value,) = [f["value"] for f in report["flows"] if (f["key"]["src_port"], f["key"]["dst_port"]) == (sport, 7301)]
    assert value["packets"] == 16 and value["bytes"] == 16 * V4_FRAME
    assert value["first_seen"] == before["first_seen"] and value["last_seen"] > before["last_seen"]

    # Back to the shared-value build: per-CPU values have no single value to keep, so it is refused, nothing changes.
    after = flow()
    back = tracker.run(flow_tracker_source=ATOMICS_SRC)
    assert back.rc != 0
    assert "cannot migrate a lru_percpu_hash map into a lru_hash map" in back.stdout, back.stdout
    assert "map_policy=recreate" in back.stdout
    assert xdp_prog_id(veth.ns_b, veth.if_b) == new_prog and flow() == after
    assert json.loads(state_file.read_text())["programs"] == state["programs"]
