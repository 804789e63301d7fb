"""The fleet model the report is drawn from: hosts with drift and errors, talkers ranked across hosts, interface
counters joined to their interfaces by ifindex slot, rule hits."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cnf.ebpf.plugins.filter.fleet_report import fleet_report, si_number

TEMPLATES = Path(__file__).resolve().parents[2] / "roles" / "fleet_report" / "templates"


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


def test_bad_reports_are_named() -> None:
    with pytest.raises(AnsibleFilterError, match=r"expected hostvars or saved reports .* got list"):
        fleet_report([], ["a"])
    with pytest.raises(AnsibleFilterError, match="the variables of host a are a str"):
        fleet_report({"a": "oops"}, ["a"])
    with pytest.raises(AnsibleFilterError, match="xdp_filter_report of host a is a list, not a dict"):
        fleet_report({"a": {"xdp_filter_report": []}}, ["a"])


def test_si_number() -> None:
    cases = [
        (None, "-"),
        (0, "0"),
        (0.0, "0"),
        (0.0123, "0.0123"),
        (7.4535, "7.45"),
        (463, "463"),
        (999.96, "1k"),  # rounded before the prefix is picked: not 1e+03
        (12345, "12.3k"),
        (2.5e9, "2.5G"),
        (123456789, "123M"),
        (-3.21, "-3.21"),
    ]
    assert [(value, si_number(value)) for value, _text in cases] == cases
    with pytest.raises(AnsibleFilterError, match="expected a number or none, got 'fast'"):
        si_number("fast")


def render_report(model: dict) -> str:
    """report.html.j2 as the role renders it (the template's only non-Jinja filter is cnf.ebpf.si_number)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined)
    env.filters["cnf.ebpf.si_number"] = si_number
    return env.get_template("report.html.j2").render(fleet=dict(model, title="t"), fleet_report_top=20)


def chart_bars(page: str, chart: str) -> list[tuple[float, str, str]]:
    """(bar width, the number the bar was drawn from, its label) of each bar of the SVG chart `chart`."""
    svg = page[page.index(f'<svg id="{chart}"') :]
    svg = svg[: svg.index("</svg>")]
    return [
        (float(width), value, label)
        for value, width, label in re.findall(
            r'<g class="bar" data-value="([^"]*)">.*?<rect [^>]*width="([^"]+)">.*?class="value">([^<]*)</text>',
            svg,
            re.S,
        )
    ]


def test_chart_labels_are_the_numbers_the_bars_are_drawn_from() -> None:
    """The demo's bug: interface rates over a long interval since the previous gathering (0.04, 0.02, 0.0123 pps)
    drew bars of three lengths all labelled '0.0 pps'. Each label now reads its bar's number; an interface without
    a rate yet (first gathering) gets no bar and is counted in the caption, not drawn as 0."""
    rates = {"a": 0.04, "b": 0.02, "c": 0.0123, "d": None}
    hostvars = {}
    for host, rate in rates.items():
        report = tracker(False, [], 2)
        if rate is None:
            del report["counters"][0]["rate"]
        else:
            report["counters"][0]["rate"] = {"packets": rate, "bytes": rate * 100}
        hostvars[host] = {"flow_tracker_report": report}
    page = render_report(fleet_report(hostvars, list(rates)))
    bars = chart_bars(page, "chart-interface-rates")
    assert [label for _width, _value, label in bars] == ["0.04 pps", "0.02 pps", "0.0123 pps"]
    assert [width for width, _value, _label in bars] == [330.0, 165.0, 101.5]  # 330 px * rate / peak
    assert [float(value) for _width, value, _label in bars] == [0.04, 0.02, 0.0123]
    assert "top 3 of 4, 1 without a rate yet: first gathering" in page
    # In the hosts' sections the rate is there as measured, and '-' where there is none.
    assert re.findall(r'<td class="num">([^<]*)</td><td class="num">[^<]*</td></tr>', page) == [
        "0.04",
        "0.02",
        "0.0123",
        "-",
    ]
