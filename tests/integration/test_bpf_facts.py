"""cnf.ebpf.bpf_facts with real packets: exact per-CPU sums, ordered top-N, JMESPath filters, rates, attachments,
and a check-mode run that changes nothing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_module
from .netns import VethPair

SRC = str(Path(__file__).parent / "data" / "facts_flows.c")


@pytest.fixture
def deployed(tmp_path: Path) -> Any:
    """The facts_flows XDP program deployed and attached on side b of a fresh veth pair."""
    veth = VethPair()
    app = {"name": f"f{uuid.uuid4().hex[:8]}", "state_dir": str(tmp_path / "state")}
    try:
        assert run_module("bpf_program", dict(app, src=SRC))["changed"]
        attached = run_module(
            "bpf_attach",
            {
                "program": f"{app['name']}/xdp_facts",
                "kind": "xdp",
                "interface": veth.if_b,
                "netns": veth.ns_b,
                "state_dir": app["state_dir"],
            },
        )
        assert attached["changed"], attached
        yield app, veth, attached["prog_id"]
    finally:
        run_module("bpf_program", dict(app, state="absent"))
        veth.close()


def facts(app: dict[str, Any], check: bool = False, **args: Any) -> dict[str, Any]:
    params = {"state_dir": app["state_dir"]}
    params.update(args)
    result = run_module("bpf_facts", params, check=check)
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    return result["ansible_facts"]["bpf"]


def pin(app: dict[str, Any], name: str) -> str:
    return f"/sys/fs/bpf/cnf/{app['name']}/maps/{name}"


def test_counts_top_n_query_and_attachments(deployed: Any) -> None:
    app, veth, prog_id = deployed
    for port, count in ((7001, 30), (7002, 20), (7003, 10)):
        veth.send_udp(veth.ns_a, veth.addr_b, port, count)
    bpf = facts(
        app,
        netns=[veth.ns_b],
        maps=[
            {"name": "top", "path": pin(app, "port_counts"), "top": 2, "sort_by": "value.packets"},
            {"name": "all", "path": pin(app, "port_counts")},
            {
                "name": "flows",
                "path": pin(app, "flows"),
                "query": "[?key.port == `7003`]",
                "formats": {"key.src": "ipv4"},
            },
            {"name": "cpus", "path": pin(app, "port_counts"), "aggregate": "none", "query": "[?key == `7002`].value"},
        ],
    )
    contents = bpf["contents"]
    # Per-CPU counters summed across CPUs are exact.
    assert {e["key"]: e["value"]["packets"] for e in contents["all"]["entries"]} == {7001: 30, 7002: 20, 7003: 10}
    assert contents["all"]["count"] == 3
    # top-N is ordered by the value field, largest first.
    assert [(e["key"], e["value"]["packets"]) for e in contents["top"]["entries"]] == [(7001, 30), (7002, 20)]
    # The JMESPath query runs on the host: only the matching flow comes back, key decoded with its format.
    flows = contents["flows"]
    assert flows["count"] == 3 and flows["type"] == "lru_hash"
    assert [e["key"] for e in flows["entries"]] == [{"src": veth.addr_a, "port": 7003, "pad": 0}]
    assert flows["entries"][0]["value"]["packets"] == 10
    # Top-N on a plain (not per-CPU) map ranks on the raw field; it must agree with the fully decoded ranking.
    ranked = facts(
        app,
        maps=[
            {"name": "fast", "path": pin(app, "flows"), "top": 2, "sort_by": "packets"},
            {"name": "slow", "path": pin(app, "flows"), "sort_by": "packets"},
        ],
    )["contents"]
    assert [e["value"]["packets"] for e in ranked["fast"]["entries"]] == [30, 20]
    assert ranked["fast"]["entries"] == ranked["slow"]["entries"][:2]
    # aggregate: none keeps one value per CPU; a query may project anything.
    assert sum(cpu["packets"] for cpu in contents["cpus"]["entries"][0]) == 20
    ours = [a for a in bpf["attachments"] if a["prog_id"] == prog_id]
    assert len(ours) == 1
    assert ours[0]["interface"] == veth.if_b and ours[0]["netns"] == veth.ns_b and ours[0]["hook"] == "xdp"
    assert ours[0]["mode"] in ("native", "generic") and ours[0]["managed"] is True
    prog = next(p for p in bpf["programs"] if p["id"] == prog_id)
    assert prog["app"] == app["name"] and prog["name"] == "xdp_facts" and prog["type"] == "xdp"
    assert prog["pins"] == [f"/sys/fs/bpf/cnf/{app['name']}/progs/xdp_facts"]
    maps = {m["id"]: m for m in bpf["maps"]}
    counted = next(maps[i] for i in prog["map_ids"] if maps[i]["name"] == "port_counts")
    assert counted["entries"] == 3 and counted["pins"] == [pin(app, "port_counts")]
    assert bpf["kernel"]["release"] and "bpffs_mounts" in bpf["kernel"]


def test_rates_are_positive_on_the_second_gathering(deployed: Any) -> None:
    app, veth, _prog_id = deployed
    spec = {"path": pin(app, "port_counts"), "sort_by": "packets", "top": 5}
    veth.send_udp(veth.ns_a, veth.addr_b, 7001, 5)
    first = facts(app, rates=True, maps=[spec])["contents"][spec["path"]]
    assert first["rates_since"] is None and "rate" not in first["entries"][0]
    time.sleep(0.5)
    veth.send_udp(veth.ns_a, veth.addr_b, 7001, 40)
    second = facts(app, rates=True, maps=[spec])["contents"][spec["path"]]
    entry = second["entries"][0]
    assert entry["key"] == 7001 and entry["delta"]["packets"] == 40
    assert 0 < entry["rate"]["packets"] <= 40 / 0.5
    assert second["rates_since"] is not None


def test_check_mode_changes_nothing(deployed: Any) -> None:
    app, veth, _prog_id = deployed
    veth.send_udp(veth.ns_a, veth.addr_b, 7001, 3)
    state_dir = Path(app["state_dir"])
    before = sorted(str(p) for p in state_dir.rglob("*"))
    bpf = facts(app, check=True, rates=True, maps=[{"path": pin(app, "port_counts")}])
    assert bpf["contents"][pin(app, "port_counts")]["entries"][0]["value"]["packets"] == 3
    assert sorted(str(p) for p in state_dir.rglob("*")) == before  # no rates state written in check mode


def test_maps_without_btf_are_said_to_be_untyped(pin_dir: Path) -> None:
    import subprocess

    pin_dir.mkdir()
    path = str(pin_dir / "nobtf")
    subprocess.run(
        ["bpftool", "map", "create", path, "type", "hash", "key", "4", "value", "8", "entries", "4", "name", "nobtf"],
        check=True,
    )
    subprocess.run(
        [
            "bpftool",
            "map",
            "update",
            "pinned",
            path,
            "key",
            "1",
            "0",
            "0",
            "0",
            "value",
            "5",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
        ],
        check=True,
    )
    raw = run_module("bpf_facts", {"gather_subset": ["contents"], "maps": [{"path": path}]})
    contents = raw["ansible_facts"]["bpf"]["contents"][path]
    assert contents["entries"] == [{"key": "01000000", "value": "0500000000000000"}]
    assert "no BTF type for its key and value" in contents["note"]
    typed = run_module(
        "bpf_facts", {"gather_subset": ["contents"], "maps": [{"path": path, "key_type": "u32", "value_type": "u64"}]}
    )
    assert typed["ansible_facts"]["bpf"]["contents"][path]["entries"] == [{"key": 1, "value": 5}]
    assert "note" not in typed["ansible_facts"]["bpf"]["contents"][path]
