"""The shipped XDP filter CNF (bpf/xdp_filter.c) against real packets: deployed with bpf_program, attached to the
receiving end of a veth pair with bpf_attach, driven only through bpf_map_entries (LPM rules as CIDR text, the
default action, per-rule hit counters), for IPv4 and IPv6 sources and the per-source RATE_LIMIT token bucket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, run_module
from .netns import VethPair

FILTER_SRC = str(REPO / "bpf" / "xdp_filter.c")
PORT = 9100


class Filter:
    """One deployed and attached filter on veth side b, plus the map operations the tests need."""

    def __init__(self, veth: VethPair, state_dir: Path) -> None:
        self.veth = veth
        self.name = f"f{uuid.uuid4().hex[:8]}"
        self.state_dir = str(state_dir)
        self.maps = f"/sys/fs/bpf/cnf/{self.name}/maps"

    def deploy(self) -> None:
        deployed = run_module("bpf_program", {"name": self.name, "src": FILTER_SRC, "state_dir": self.state_dir})
        assert deployed.get("changed") and not deployed.get("failed"), deployed
        attached = run_module(
            "bpf_attach",
            {
                "program": f"{self.name}/xdp_filter",
                "kind": "xdp",
                "interface": self.veth.if_b,
                "netns": self.veth.ns_b,
                "state_dir": self.state_dir,
            },
        )
        assert attached.get("changed") and not attached.get("failed"), attached

    def remove(self) -> None:
        run_module("bpf_program", {"name": self.name, "state": "absent", "state_dir": self.state_dir})

    def entries(self, map_name: str, state: str, entries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"path": f"{self.maps}/{map_name}", "state": state}
        if entries is not None:
            args["entries"] = entries
        result = run_module("bpf_map_entries", args)
        assert not result.get("failed"), result
        return result

    def rules(self, family: str, rules: list[tuple[str, dict[str, Any]]]) -> None:
        self.entries(f"rules_{family}", "overridden", [{"key": cidr, "value": value} for cidr, value in rules])

    def default_action(self, action: str) -> None:
        self.entries("config", "merged", [{"key": 0, "value": {"default_action": action}}])

    def hits(self) -> dict[int, int]:
        return {e["key"]: e["value"]["sum"] for e in self.entries("rule_hits", "gathered")["entries"]}


def rule(rule_id: int, action: str, rate_pps: int = 0, burst: int = 0) -> dict[str, Any]:
    return {"id": rule_id, "action": action, "rate_pps": rate_pps, "burst": burst}


@pytest.fixture
def xdp(veth: VethPair, tmp_path: Path) -> Iterator[Filter]:
    filt = Filter(veth, tmp_path / "state")
    try:
        filt.deploy()
        yield filt
    finally:
        filt.remove()


def received(veth: VethPair, dst: str, count: int) -> int:
    return veth.udp_through(dst, count, PORT)[0]


def test_deny_then_allow_rule_drops_passes_and_counts(xdp: Filter, veth: VethPair) -> None:
    assert received(veth, veth.addr_b, 5) == 5  # no rules, zero config: default ALLOW
    xdp.rules("v4", [(f"{veth.addr_a}/32", rule(1, "DENY"))])
    assert received(veth, veth.addr_b, 40) == 0
    assert xdp.hits() == {1: 40}
    xdp.rules("v4", [(f"10.200.{veth.subnet}.0/24", rule(2, "ALLOW"))])  # overridden: the DENY rule is gone
    assert xdp.entries("rules_v4", "gathered")["count"] == 1
    assert received(veth, veth.addr_b, 30) == 30
    assert xdp.hits() == {1: 40, 2: 30}


def test_no_rule_falls_back_to_the_configured_default(xdp: Filter, veth: VethPair) -> None:
    xdp.rules("v4", [(f"{veth.addr_a}/32", rule(1, "ALLOW"))])
    xdp.rules("v4", [])
    assert xdp.entries("rules_v4", "gathered")["count"] == 0
    xdp.default_action("DENY")
    assert received(veth, veth.addr_b, 25) == 0
    xdp.default_action("ALLOW")
    assert received(veth, veth.addr_b, 25) == 25
    assert xdp.hits() == {}  # the default action counts no rule


def test_ipv6_deny_rule_drops_ipv6_while_ipv4_passes(xdp: Filter, veth: VethPair) -> None:
    addr_a, addr_b = veth.add_ipv6()
    assert received(veth, addr_b, 10) == 10
    xdp.rules("v6", [(f"{addr_a}/128", rule(6, "DENY"))])
    assert received(veth, addr_b, 30) == 0
    assert received(veth, veth.addr_b, 20) == 20
    assert xdp.hits() == {6: 30}


def test_rate_limit_passes_burst_plus_refill(xdp: Filter, veth: VethPair) -> None:
    rate, burst, sent = 100, 10, 200
    xdp.rules("v4", [(f"{veth.addr_a}/32", rule(3, "RATE_LIMIT", rate_pps=rate, burst=burst))])
    got, elapsed = veth.udp_through(veth.addr_b, sent, PORT)
    assert elapsed < 1.0, f"sending {sent} datagrams took {elapsed:.3f}s; the bound below assumes well under 1s"
    # The bucket starts full (burst) and refills rate/s over the send loop; 5 packets of slack for timing jitter
    # (the loop is timed in the sender, the kernel stamps packets a little later).
    upper = burst + rate * elapsed + 5
    assert burst <= got <= upper, f"{got} passed in {elapsed:.3f}s, expected {burst}..{upper:.1f}"
    assert xdp.hits() == {3: sent}
