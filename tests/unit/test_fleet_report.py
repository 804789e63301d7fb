"""The fleet model the report is drawn from: hosts with drift and errors, talkers ranked across hosts, interface
counters joined to their interfaces by ifindex slot, rule hits."""

from __future__ import annotations

from ansible_collections.cnf.ebpf.plugins.filter.fleet_report import fleet_report


def tracker(changed: bool, flows: list[tuple[str, str, int, int]], ifindex: int) -> dict:
    return {
        "changed": changed,
        "flow_count": len(flows),
        "event_drops": 0,
        "gathered_at": "2026-11-25T00:00:00Z",
        "flows": [
            {
                "key": {"family": 2, "proto": 17, "src": src, "dst": dst, "src_port": 1000, "dst_port": 53},
                "value": {"packets": packets, "bytes": size},
                **({"rate": {"bytes": 10.0, "packets": 1.0}} if size > 500 else {}),
            }
            for src, dst, packets, size in flows
        ],
        "interfaces": [{"interface": "eth0", "netns": None, "ifindex": ifindex}],
        "counters": [{"key": ifindex % 256, "value": {"packets": 9, "bytes": 900}, "rate": {"packets": 2.0}}],
    }


def test_fleet_model() -> None:
    hostvars = {
        "a": {
            "flow_tracker_report": tracker(
                False, [("10.0.0.1", "10.0.0.2", 5, 600), ("10.0.0.3", "10.0.0.2", 1, 60)], 258
            )
        },
        "b": {
            "flow_tracker_report": tracker(True, [("10.0.1.1", "10.0.1.2", 9, 900)], 3),
            "xdp_filter_report": {
                "changed": False,
                "rules": [
                    {"cidr": "10.0.0.0/8", "action": "deny", "id": 1, "hits": 4, "hits_per_s": None},
                    {"cidr": "2001:db8::/32", "action": "allow", "id": 2, "hits": 7, "hits_per_s": 0.5},
                ],
            },
        },
        "c": {},
        "d": {"flow_tracker_report": tracker(False, [], 1)},
    }
    model = fleet_report(hostvars, ["a", "b", "c", "d"], failed=["d"], top=2)
    hosts = {row["host"]: row for row in model["hosts"]}
    assert hosts["a"]["error"] is None and hosts["a"]["drift"] == []
    assert hosts["b"]["drift"] == ["flow_tracker"] and hosts["b"]["rules"] == 2
    assert "no CNF report" in hosts["c"]["error"]
    assert "failed" in hosts["d"]["error"]
    assert [(t["host"], t["bytes"]) for t in model["talkers"]] == [("b", 900), ("a", 600)]
    assert model["talkers"][0]["proto"] == "udp" and model["talkers"][1]["bytes_per_s"] == 10.0
    iface_a = next(i for i in model["interfaces"] if i["host"] == "a")
    assert iface_a["packets"] == 9 and iface_a["packets_per_s"] == 2.0  # ifindex 258 counted in slot 2
    assert [r["hits"] for r in model["rules"]] == [7, 4]
    assert model["generated_at"] == "2026-11-25T00:00:00Z"  # the data's time: same facts, same report
    assert fleet_report({}, [])["generated_at"] is None
    assert model["totals"] == {
        "hosts": 4,
        "hosts_with_errors": 2,
        "hosts_with_drift": 1,
        "flows": 3,
        "packets": 27,
        "bytes": 2700,
        "rule_hits": 11,
    }
