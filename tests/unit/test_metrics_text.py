"""The exposition text of cnf.ebpf.bpf_metrics (planning._metrics): metric names and types by Prometheus' conventions,
HELP and TYPE before each family's samples, label values escaped so that Prometheus' own parser reads back exactly
what went in (including backslashes, quotes and line feeds), the flows cut to the top N, and the series `shape` that
decides `changed`, which ignores values, the timestamp and the churn of the top flows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.cnf.ebpf.plugins.module_utils.planning import _metrics

NOW = 1796400000.25


def flow(src: str, packets: int, size: int, proto: int = 17) -> dict[str, Any]:
    return {
        "key": {"src": src, "dst": "10.0.0.2", "src_port": 4000, "dst_port": 53, "proto": proto, "family": 2},
        "value": {"packets": packets, "bytes": size, "first_seen": 1, "last_seen": 2},
    }


def readings(flows: int = 3, rule_cidr: str = "10.0.0.0/8") -> list[dict[str, Any]]:
    return [
        {
            "app": "tracker",
            "up": True,
            "flows": {"count": flows, "entries": [flow(f"10.0.0.{i + 10}", 10 - i, 1000 - i) for i in range(flows)]},
            "interfaces": [{"interface": "eth0", "netns": None, "packets": 5, "bytes": 600}],
            "event_drops": 2,
        },
        {
            "app": "filter",
            "up": True,
            "rules": [{"cidr": rule_cidr, "action": "deny", "id": 7, "hits": 4}],
        },
        {"app": "gone", "up": False},
    ]


def parsed(text: str) -> dict[str, Any]:
    """{family name: (type, help, [(sample name, labels, value)])} as prometheus_client reads the text."""
    return {
        family.name: (family.type, family.documentation, [(s.name, s.labels, s.value) for s in family.samples])
        for family in text_string_to_metric_families(text)
    }


def test_names_types_help_and_values_read_back() -> None:
    text = _metrics.exposition(readings(), NOW, top=20)
    families = parsed(text)
    # prometheus_client names a counter family without its _total suffix
    assert {name: kind for name, (kind, _help, _samples) in families.items()} == {
        "cnf_ebpf_up": "gauge",
        "cnf_ebpf_flows": "gauge",
        "cnf_ebpf_flow_packets": "counter",
        "cnf_ebpf_flow_bytes": "counter",
        "cnf_ebpf_interface_packets": "counter",
        "cnf_ebpf_interface_bytes": "counter",
        "cnf_ebpf_rule_hits": "counter",
        "cnf_ebpf_event_drops": "counter",
        "cnf_ebpf_metrics_last_run_timestamp_seconds": "gauge",
    }
    assert families["cnf_ebpf_up"][2] == [
        ("cnf_ebpf_up", {"app": "filter"}, 1),
        ("cnf_ebpf_up", {"app": "gone"}, 0),
        ("cnf_ebpf_up", {"app": "tracker"}, 1),
    ]
    assert families["cnf_ebpf_rule_hits"][2] == [
        ("cnf_ebpf_rule_hits_total", {"app": "filter", "cidr": "10.0.0.0/8", "action": "deny", "id": "7"}, 4)
    ]
    assert families["cnf_ebpf_interface_bytes"][2] == [
        ("cnf_ebpf_interface_bytes_total", {"app": "tracker", "interface": "eth0", "netns": ""}, 600)
    ]
    assert families["cnf_ebpf_flow_packets"][2][0] == (
        "cnf_ebpf_flow_packets_total",
        {"app": "tracker", "proto": "udp", "src": "10.0.0.10", "src_port": "4000", "dst": "10.0.0.2", "dst_port": "53"},
        10,
    )
    assert families["cnf_ebpf_event_drops"][2] == [("cnf_ebpf_event_drops_total", {"app": "tracker"}, 2)]
    assert families["cnf_ebpf_metrics_last_run_timestamp_seconds"][2][0][2] == NOW
    assert families["cnf_ebpf_flows"][1] == "Flows in the flow tracker's flow table."


def test_help_and_type_come_once_before_the_samples_of_each_family() -> None:
    lines = _metrics.exposition(readings(), NOW, top=20).splitlines()
    seen: list[str] = []
    for index, line in enumerate(lines):
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert lines[index + 1].startswith(f"# TYPE {name} ")
            assert name not in seen
            seen.append(name)
        elif not line.startswith("#"):
            assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0) == seen[-1]
    counters = [line.split()[2] for line in lines if line.startswith("# TYPE ") and line.endswith(" counter")]
    assert counters and all(name.endswith("_total") for name in counters)
    assert not any(" " in line.split("} ")[-1] for line in lines if "} " in line)  # no sample has a timestamp


@pytest.mark.parametrize("value", ['a"b', "back\\slash", "two\nlines", "\\n literal", 'all "\\\n" of them', "é"])
def test_label_values_are_escaped_so_the_parser_reads_them_back(value: str) -> None:
    text = _metrics.exposition(readings(rule_cidr=value), NOW, top=1)
    (sample,) = parsed(text)["cnf_ebpf_rule_hits"][2]
    assert sample[1]["cidr"] == value
    # one line per sample: a line feed in a value is escaped, not written
    (line,) = [line for line in text.splitlines() if line.startswith("cnf_ebpf_rule_hits_total{")]
    assert line.endswith("} 4")


def test_help_text_escapes_backslash_and_line_feed() -> None:
    family = _metrics.Family("x_total", "counter", "a \\ b\nc")
    family.add(1, app="a")
    assert _metrics.render([family]).splitlines()[0] == "# HELP x_total a \\\\ b\\nc"
    assert parsed(_metrics.render([family]))["x"][1] == "a \\ b\nc"


@pytest.mark.parametrize("top", [0, 1, 2, 50])
def test_flows_are_cut_to_the_top_n(top: int) -> None:
    families = parsed(_metrics.exposition(readings(flows=30), NOW, top=top))
    exported = families.get("cnf_ebpf_flow_packets", ("counter", "", []))[2]
    assert len(exported) == min(top, 30)
    assert [s[2] for s in exported] == [10 - i for i in range(min(top, 30))]  # the first (ranked) ones
    assert families["cnf_ebpf_flows"][2][0][2] == 30  # the gauge counts every flow, exported or not


def test_protocol_names() -> None:
    assert [_metrics.proto_name(p) for p in (1, 6, 17, 58, 132)] == ["icmp", "tcp", "udp", "icmpv6", "132"]


def test_shape_ignores_values_timestamp_and_flows_but_not_rules_or_apps() -> None:
    base = _metrics.exposition(readings(), NOW, top=20)
    moved = readings(flows=5)
    moved[0]["interfaces"][0]["packets"] = 99
    moved[1]["rules"][0]["hits"] = 40
    assert _metrics.shape(_metrics.exposition(moved, NOW + 60, top=20)) == _metrics.shape(base)
    assert _metrics.shape(_metrics.exposition(readings(rule_cidr="192.0.2.0/24"), NOW, top=20)) != _metrics.shape(base)
    assert _metrics.shape(_metrics.exposition(readings()[:2], NOW, top=20)) != _metrics.shape(base)


def test_interface_and_rule_rows() -> None:
    attached = [{"interface": "eth0", "netns": None, "ifindex": 258}, {"interface": "eth1", "netns": "x", "ifindex": 3}]
    rows = _metrics.interface_rows(attached, {2: {"packets": 4, "bytes": 400}})
    assert rows == [
        {"interface": "eth0", "netns": None, "packets": 4, "bytes": 400},  # slot 258 % 256
        {"interface": "eth1", "netns": "x", "packets": 0, "bytes": 0},
    ]
    rules = [{"key": "10.0.0.0/8", "value": {"id": 3, "action": "RATE_LIMIT", "rate_pps": 1, "burst": 1}}]
    assert _metrics.rule_rows(rules, {3: 12, 4: 1}) == [
        {"cidr": "10.0.0.0/8", "action": "rate_limit", "id": 3, "hits": 12}
    ]


def test_nothing_to_export_is_just_the_timestamp() -> None:
    assert (
        _metrics.exposition([], NOW, top=5).splitlines()[-1] == f"cnf_ebpf_metrics_last_run_timestamp_seconds {NOW!r}"
    )
