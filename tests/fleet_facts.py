"""A fleet of any size from real gathered facts: tests/data/fleet_report_facts.json holds the flow_tracker_report and
xdp_filter_report that cnf.ebpf.report gathered on the demo's two hosts and saved (-e cnf_report_save=...: the file
is {host: {flow_tracker_report, xdp_filter_report}}; tests/data/fleet_report_capture.sh makes it again); `fleet(n)`
replays them as n hosts with varied counts (a seeded generator, so the same n gives the same fleet), a few hosts
with drift and a few without any report (errors). `write_inventory` lays the fleet out as an inventory with one
host_vars file per host, as an operator's fleet would be."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import yaml

FACTS = Path(__file__).resolve().parent / "data" / "fleet_report_facts.json"
COUNTED = ("packets", "bytes", "hits", "hits_per_s")  # value, delta and rate fields scaled per host


def _scaled(node: Any, factor: float) -> Any:
    """`node` with every counted number (packets, bytes, hits, their deltas and rates) multiplied by `factor`."""
    if isinstance(node, dict):
        return {
            k: (
                _scale_number(v, factor)
                if k in COUNTED and isinstance(v, (int, float)) and not isinstance(v, bool)
                else _scaled(v, factor)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_scaled(v, factor) for v in node]
    return node


def _scale_number(value: float, factor: float) -> float:
    return round(value * factor) if isinstance(value, int) else value * factor


def _renumbered(report: dict[str, Any], index: int, rng: random.Random) -> dict[str, Any]:
    """The flows of `report` with this host's own addresses and source ports (so talkers differ between hosts)."""
    out = copy.deepcopy(report)
    for flow in out.get("flows") or []:
        key = flow["key"]
        for side in ("src", "dst"):
            if ":" in key[side]:
                key[side] = key[side].replace(":77:1:", f":77:{index:x}:").replace(":77:2:", f":77:{index:x}:")
            else:
                a, b, _c, d = key[side].split(".")
                key[side] = f"{a}.{b}.{index % 256}.{d}" if index < 256 else f"{a}.{index // 256}.{index % 256}.{d}"
        key["src_port"] = rng.randrange(1024, 65536)
    for iface in out.get("interfaces") or []:
        iface["netns"] = f"cnf-edge{index:04d}" if iface.get("netns") else None
    return out


def fleet(n: int, seed: int = 18) -> dict[str, dict[str, Any]]:
    """n hosts' variables ({host: {flow_tracker_report, xdp_filter_report}}): host i replays one of the captured
    hosts with its counts times a factor between 0.05 and 20 (log-uniform); every 40th host has drift (its report
    says changed), every 50th has no report at all (the report lists it as an error)."""
    captured = json.loads(FACTS.read_text())
    sources = [captured[h] for h in sorted(captured)]
    rng = random.Random(seed)
    hosts: dict[str, dict[str, Any]] = {}
    for i in range(n):
        name = f"edge{i:04d}"
        if i % 50 == 49:
            hosts[name] = {}
            continue
        factor = 10 ** rng.uniform(-1.3, 1.3)
        source = sources[i % len(sources)]
        tracker = _scaled(_renumbered(source["flow_tracker_report"], i, rng), factor)
        filt = _scaled(source["xdp_filter_report"], factor)
        tracker["name"], filt["name"] = f"ft_{name}", f"fw_{name}"
        if i % 40 == 39:
            filt["changed"] = True
        hosts[name] = {"flow_tracker_report": tracker, "xdp_filter_report": filt}
    return hosts


def write_inventory(directory: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    """inventory.yml listing `hosts` (local connection) and host_vars/<host>.json with their variables."""
    (directory / "host_vars").mkdir(parents=True, exist_ok=True)
    for name, variables in hosts.items():
        (directory / "host_vars" / f"{name}.json").write_text(json.dumps(variables))
    inventory = directory / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump({"all": {"vars": {"ansible_connection": "local"}, "hosts": dict.fromkeys(hosts)}})
    )
    return inventory
