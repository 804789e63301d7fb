"""The fleet_report role over real gathered facts: the flow_tracker and xdp_filter roles run on a veth sandbox with
gathering on, traffic passes, and the report's JSON and CSV hold exactly the flows and rule hits that traffic made
(the tracked flow is sent from two CPUs, so its totals are the sums of the tracker's per-CPU slots).
Headless Chromium renders the HTML page: no console errors, the charts are there with one bar per row; a screenshot
is kept in .build/artifacts/ for CI."""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS, run_module, run_role
from .netns import VethPair


@pytest.fixture
def report(tmp_path: Path, veth: VethPair) -> Iterator[Path]:
    """Tracker on side b of one pair and the filter on side a's peer...: one XDP program per interface, so the
    tracker watches side b and the filter watches side a (traffic b -> a is filtered)."""
    tag = uuid.uuid4().hex[:6]
    cnf_vars = {
        "flow_tracker_name": f"rft{tag}",
        "flow_tracker_interfaces": [{"name": veth.if_b, "netns": veth.ns_b}],
        "flow_tracker_state_dir": str(tmp_path / "state"),
        "flow_tracker_restore_at_boot": False,
        "xdp_filter_name": f"rxf{tag}",
        "xdp_filter_interfaces": [{"name": veth.if_a, "netns": veth.ns_a}],
        "xdp_filter_state_dir": str(tmp_path / "state"),
        "xdp_filter_restore_at_boot": False,
        "xdp_filter_rules": [{"cidr": f"{veth.addr_b}/32", "action": "deny", "id": 5}],
    }
    roles = [{"role": "cnf.ebpf.flow_tracker"}, {"role": "cnf.ebpf.xdp_filter"}]
    dest = tmp_path / "report"
    try:
        deployed = run_role(tmp_path, roles, host_vars=cnf_vars)
        assert deployed.rc == 0, deployed.stdout
        cpus = sorted(os.sched_getaffinity(0))[:2]
        assert veth.udp_through(veth.addr_b, 40, cpus=cpus)[0] == 40  # a -> b: tracked, 20 from each CPU
        reverse = VethPair.__new__(VethPair)  # the same pair seen from side b (b sends, a receives)
        reverse.__dict__.update(
            ns_a=veth.ns_b, ns_b=veth.ns_a, if_a=veth.if_b, if_b=veth.if_a, addr_a=veth.addr_b, addr_b=veth.addr_a
        )
        assert reverse.udp_through(veth.addr_a, 15)[0] == 0  # b -> a: denied by the filter
        gathered = run_role(
            tmp_path,
            [
                *roles,
                {"role": "cnf.ebpf.fleet_report", "vars": {"fleet_report_dest": str(dest)}},
                # The same report again over the same facts (other vars, or the play would run the role once).
                {"role": "cnf.ebpf.fleet_report", "vars": {"fleet_report_dest": str(dest), "fleet_report_top": 20}},
            ],
            host_vars=dict(cnf_vars, flow_tracker_gather=True, xdp_filter_gather=True),
        )
        # Only the first report changed (its directory, report.json, the CSV loop, report.html): the CNFs were as
        # declared, and the second report, from the same facts, rewrote nothing.
        assert gathered.rc == 0 and gathered.changed == 4, gathered.stdout
        raw = run_module("bpf_map_entries", {"path": f"/sys/fs/bpf/cnf/rft{tag}/maps/flows", "state": "gathered"})
        (slots,) = [e["value"]["per_cpu"] for e in raw["entries"] if e["key"]["dst_port"] == 9100]
        assert [s["packets"] for s in slots if s["packets"]] == [40 // len(cpus)] * len(cpus), slots  # one part per CPU
        yield dest
    finally:
        removed = run_role(
            tmp_path, roles, host_vars=dict(cnf_vars, flow_tracker_state="absent", xdp_filter_state="absent")
        )
        assert removed.rc == 0, removed.stdout


def test_report_files_hold_the_traffic(report: Path, veth: VethPair) -> None:
    model = json.loads((report / "report.json").read_text())
    assert model["totals"]["hosts"] == 1 and model["totals"]["hosts_with_errors"] == 0
    assert model["hosts"][0]["drift"] == []
    udp = [t for t in model["talkers"] if t["proto"] == "udp"]
    assert [(t["src"], t["dst"], t["dst_port"], t["packets"]) for t in udp] == [(veth.addr_a, veth.addr_b, 9100, 40)]
    assert udp[0]["bytes"] == 40 * (14 + 20 + 8 + len(b"cnf-test"))
    assert model["rules"] == [
        {"host": "localhost", "cidr": f"{veth.addr_b}/32", "action": "deny", "id": 5, "hits": 15, "hits_per_s": None}
    ]
    with open(report / "rules.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["cidr"], r["action"], r["hits"]) for r in rows] == [(f"{veth.addr_b}/32", "deny", "15")]
    with open(report / "talkers.csv", newline="") as f:
        talkers = list(csv.DictReader(f))
    assert {(r["src"], r["dst_port"], r["packets"]) for r in talkers if r["proto"] == "udp"} == {
        (veth.addr_a, "9100", "40")
    }
    (iface,) = model["interfaces"]
    assert iface["interface"] == veth.if_b and iface["packets"] >= 40


def test_report_renders_in_chromium(report: Path, chromium: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium
    driver.get((report / "report.html").as_uri())
    assert driver.title == "CNF fleet report"
    charts = {svg.get_attribute("id"): svg for svg in driver.find_elements(By.CSS_SELECTOR, "figure.chart svg")}
    assert set(charts) == {"chart-talkers", "chart-interface-bytes", "chart-rule-hits"}
    # One gathering: no rate yet, said so rather than drawn as zeros.
    rates = driver.find_element(By.ID, "chart-interface-rates-figure").text
    assert "no rates yet: this was the first gathering" in rates and "top 0 of 1, 1 without a rate yet" in rates
    talker_rows = driver.find_elements(By.CSS_SELECTOR, "table#talkers tr")[1:]
    assert len(charts["chart-talkers"].find_elements(By.CSS_SELECTOR, "rect")) == len(talker_rows) > 0
    assert len(charts["chart-rule-hits"].find_elements(By.CSS_SELECTOR, "rect")) == 1
    widest = max(float(r.get_attribute("width")) for r in charts["chart-talkers"].find_elements(By.TAG_NAME, "rect"))
    assert widest > 300  # the largest talker spans the chart: the bars are drawn to scale
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "fleet_report.png"))
