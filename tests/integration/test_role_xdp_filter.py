"""The xdp_filter role against this host: rules come from the inventory, packets from side a of a veth sandbox are
allowed and denied exactly per rule (IPv4 and IPv6), a rate limit holds within its stated tolerance, removing a rule
from the inventory removes it from the map (and its traffic passes again), check mode with diff shows the exact
rule change and changes nothing, and a bad rule fails before any map is written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import RoleRun, run_module, run_role
from .netns import VethPair


class FilterRole:
    def __init__(self, tmp_path: Path, veth: VethPair) -> None:
        self.tmp_path = tmp_path
        self.name = f"xfr{uuid.uuid4().hex[:8]}"
        self.maps = f"/sys/fs/bpf/cnf/{self.name}/maps"
        self.role_vars: dict[str, Any] = {
            "xdp_filter_name": self.name,
            "xdp_filter_state_dir": str(tmp_path / "state"),
            "xdp_filter_unit_dir": str(tmp_path / "systemd"),
            "xdp_filter_interfaces": [{"name": veth.if_b, "netns": veth.ns_b}],
        }

    def run(self, rules: list[dict[str, Any]], check: bool = False, diff: bool = False, **overrides: Any) -> RoleRun:
        """The rules are the inventory's (host vars), as operators keep them."""
        return run_role(
            self.tmp_path,
            [{"role": "cnf.ebpf.xdp_filter", "vars": dict(self.role_vars, **overrides)}],
            ("xdp_filter_report",),
            check=check,
            diff=diff,
            host_vars={"xdp_filter_rules": rules},
        )

    def table(self, family: str) -> dict[str, dict[str, Any]]:
        result = run_module("bpf_map_entries", {"path": f"{self.maps}/rules_{family}", "state": "gathered"})
        assert not result.get("failed"), result
        return {e["key"]: e["value"] for e in result["entries"]}


@pytest.fixture
def xdp(tmp_path: Path, veth: VethPair) -> Iterator[FilterRole]:
    role = FilterRole(tmp_path, veth)
    yield role
    removed = role.run([], xdp_filter_state="absent")
    assert removed.rc == 0, removed.stdout
    assert not Path(f"/sys/fs/bpf/cnf/{role.name}").exists()


def test_rules_from_inventory_allow_deny_and_removal(xdp: FilterRole, veth: VethPair) -> None:
    addr_a6, addr_b6 = veth.add_ipv6()
    rules = [
        {"cidr": f"{veth.addr_a}/32", "action": "deny", "id": 1},
        {"cidr": f"10.200.{veth.subnet}.0/24", "action": "allow", "id": 2},
        {"cidr": f"{addr_a6}/128", "action": "deny", "id": 6},
    ]
    first = xdp.run(rules)
    assert first.rc == 0 and first.changed > 0, first.stdout
    again = xdp.run(rules)
    assert again.rc == 0 and again.changed == 0, again.stdout
    assert xdp.table("v4") == {
        f"{veth.addr_a}/32": {"id": 1, "action": "DENY", "rate_pps": 0, "burst": 0},
        f"10.200.{veth.subnet}.0/24": {"id": 2, "action": "ALLOW", "rate_pps": 0, "burst": 0},
    }
    assert veth.udp_through(veth.addr_b, 30)[0] == 0  # the /32 deny wins over the /24 allow
    assert veth.udp_through(addr_b6, 20)[0] == 0

    # The operator drops the IPv4 deny from the inventory: check mode shows exactly that and changes nothing.
    fewer = [rules[1], rules[2]]
    checked = xdp.run(fewer, check=True, diff=True)
    assert checked.rc == 0 and checked.changed == 1, checked.stdout
    removed_line = '-{"key": "%s/32", "value": {"id": 1, "action": "DENY", "rate_pps": 0, "burst": 0}}' % veth.addr_a
    assert removed_line in checked.stdout.splitlines(), checked.stdout
    assert "@@ -1 +0,0 @@" in checked.stdout  # that one rule, nothing else
    assert f"{veth.addr_a}/32" in xdp.table("v4")

    applied = xdp.run(fewer, xdp_filter_gather=True)
    assert applied.rc == 0 and applied.changed == 1, applied.stdout
    assert set(xdp.table("v4")) == {f"10.200.{veth.subnet}.0/24"}
    assert veth.udp_through(veth.addr_b, 25)[0] == 25  # now the /24 allow matches
    assert veth.udp_through(addr_b6, 10)[0] == 0  # the IPv6 deny is still there

    report = xdp.run(fewer, xdp_filter_gather=True).variables["xdp_filter_report"]
    hits = {r["cidr"]: r["hits"] for r in report["rules"]}
    assert hits == {f"10.200.{veth.subnet}.0/24": 25, f"{addr_a6}/128": 30}
    assert report["rules_in_maps"] == 2 and report["changed"] is False and report["default_action"] == "allow"


def test_default_action_and_generated_ids(xdp: FilterRole, veth: VethPair) -> None:
    other = {"cidr": "192.0.2.0/24", "action": "allow"}  # matches nothing here: the default decides
    assert xdp.run([other], xdp_filter_default_action="deny").rc == 0
    assert veth.udp_through(veth.addr_b, 15)[0] == 0
    (rule_id,) = [v["id"] for v in xdp.table("v4").values()]
    assert 0 < rule_id < 1 << 28
    assert xdp.run([other]).rc == 0  # back to the default allow
    assert veth.udp_through(veth.addr_b, 15)[0] == 15
    assert [v["id"] for v in xdp.table("v4").values()] == [rule_id]  # the id is stable across runs


def test_rate_limit_rule_holds_within_tolerance(xdp: FilterRole, veth: VethPair) -> None:
    rate, burst, sent = 50, 5, 150
    assert xdp.run([{"cidr": f"{veth.addr_a}/32", "action": "rate_limit", "rate_pps": rate, "burst": burst}]).rc == 0
    got, elapsed = veth.udp_through(veth.addr_b, sent)
    assert elapsed < 1.0, f"sending {sent} datagrams took {elapsed:.3f}s; the bound assumes well under 1s"
    upper = burst + rate * elapsed + 5  # burst, the refill over the send loop, 5 packets of timing slack
    assert burst <= got <= upper, f"{got} passed in {elapsed:.3f}s, expected {burst}..{upper:.1f}"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"cidr": "10.0.0.0/33", "action": "deny"}, "10.0.0.0/33"),
        ({"cidr": "10.1.0.0/16", "action": "rate_limit", "rate_pps": 10}, "rate_limit needs rate_pps and burst"),
        ({"cidr": "10.2.0.0/16", "action": "reject"}, "action"),
    ],
)
def test_bad_rule_fails_and_changes_nothing(xdp: FilterRole, veth: VethPair, bad: dict, message: str) -> None:
    good = {"cidr": "198.51.100.0/24", "action": "deny", "id": 9}
    assert xdp.run([good]).rc == 0
    failed = xdp.run([{"cidr": "2001:db8:ffff::/48", "action": "deny"}, bad])
    assert failed.rc != 0 and message in failed.stdout, failed.stdout
    assert set(xdp.table("v4")) == {"198.51.100.0/24"}
    assert xdp.table("v6") == {}
