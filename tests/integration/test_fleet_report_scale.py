"""The fleet report at fleet size: 200 hosts replayed from real gathered facts (tests/fleet_facts.py) in an inventory
with one host_vars file each, the report built by cnf.ebpf.report, which also saves the reports
(-e cnf_report_save), and built again by cnf.ebpf.report on localhost alone from the saved file
(-e fleet_report_saved).
Headless Chromium reads the page: every host has its collapsed section, the top lists are cut at fleet_report_top,
each bar's label is the number the bar is drawn from, no console errors; the screenshot is kept in
.build/artifacts/fleet_report_200.png."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cnf.ebpf.plugins.filter.fleet_report import fleet_report, si_number
from tests.fleet_facts import fleet, write_inventory

from .conftest import ARTIFACTS

HOSTS = 200
UNITS = {
    "chart-talkers": "B",
    "chart-interface-rates": "pps",
    "chart-interface-bytes": "B",
    "chart-rule-hits": "pkts",
}


def ansible_playbook(*args: str) -> float:
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
    start = time.perf_counter()
    proc = subprocess.run(["ansible-playbook", *args], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def fleet_report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnf.ebpf.report over the 200 hosts (their gathering skipped: they have no CNF interfaces, their reports are
    in host_vars), saving their reports; then cnf.ebpf.report on localhost alone, from the saved file."""
    workdir = tmp_path_factory.mktemp("fleet")
    inventory = write_inventory(workdir, fleet(HOSTS))
    saved = workdir / "fleet.json"
    run = {"fleet_report_dest": str(workdir / "report"), "cnf_report_save": str(saved)}
    elapsed = ansible_playbook("-i", str(inventory), "cnf.ebpf.report", "-e", json.dumps(run))
    print(f"cnf.ebpf.report over {HOSTS} hosts (inventory with host_vars): {elapsed:.1f} s")
    run = {"fleet_report_dest": str(workdir / "saved"), "fleet_report_saved": str(saved)}
    elapsed = ansible_playbook("-i", "localhost,", "-c", "local", "cnf.ebpf.report", "-e", json.dumps(run))
    print(f"cnf.ebpf.report of {HOSTS} hosts from the saved reports, on localhost: {elapsed:.1f} s")
    return workdir


def test_fleet_report_model(fleet_report_dir: Path) -> None:
    model = json.loads((fleet_report_dir / "report" / "report.json").read_text())
    hosts = fleet(HOSTS)
    # The role's model is the filter's over the replayed reports: nothing lost or added on the way through Ansible.
    assert model == dict(fleet_report(hosts, list(hosts), [], 20), title="CNF fleet report")
    assert model["totals"]["hosts"] == HOSTS
    assert model["totals"]["hosts_with_errors"] == 4  # every 50th host has no report
    assert model["totals"]["hosts_with_drift"] == 4  # every 40th has drift, but for the one of them without a report
    assert len(model["talkers"]) == 20 and len(model["interfaces"]) == len(model["rules"]) / 4 == 196
    # Saved: each host's two reports (nothing else of its variables), {} for a host without any.
    assert json.loads((fleet_report_dir / "fleet.json").read_text()) == hosts
    # From the saved reports on localhost, the same report.
    assert (fleet_report_dir / "saved" / "report.json").read_text() == (
        fleet_report_dir / "report" / "report.json"
    ).read_text()
    assert (fleet_report_dir / "saved" / "report.html").read_text() == (
        fleet_report_dir / "report" / "report.html"
    ).read_text()


def test_fleet_report_reads_in_chromium(fleet_report_dir: Path, chromium: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium
    model = json.loads((fleet_report_dir / "report" / "report.json").read_text())
    driver.get((fleet_report_dir / "report" / "report.html").as_uri())
    cards = [card.text.split("\n") for card in driver.find_elements(By.CSS_SELECTOR, "#totals .card")]
    assert ["200", "hosts"] in cards and ["4", "with errors"] in cards and ["4", "with drift"] in cards
    attention = driver.find_elements(By.CSS_SELECTOR, "table#attention tr")[1:]
    assert [row.find_element(By.TAG_NAME, "td").text for row in attention] == [
        *(f"edge{i:04d}" for i in (49, 99, 149, 199)),  # errors first
        *(f"edge{i:04d}" for i in (39, 79, 119, 159)),
    ]
    sections = driver.find_elements(By.CSS_SELECTOR, "#hosts details.host")
    assert len(sections) == HOSTS and not any(s.get_attribute("open") for s in sections)  # collapsed at fleet size
    first = sections[0]
    assert not first.find_element(By.CSS_SELECTOR, "table.interfaces").is_displayed()
    first.find_element(By.TAG_NAME, "summary").click()
    assert first.get_attribute("open") is not None
    assert first.find_element(By.CSS_SELECTOR, "table.interfaces").is_displayed()
    # Every chart: at most fleet_report_top bars, each label the number its bar is drawn from, lengths to scale.
    for chart, unit in UNITS.items():
        drawn = driver.find_elements(By.CSS_SELECTOR, f"svg#{chart} g.bar")
        assert len(drawn) == 20, chart
        values = [float(g.get_attribute("data-value")) for g in drawn]
        labels = [g.find_element(By.CSS_SELECTOR, "text.value").text for g in drawn]
        assert labels == [f"{si_number(v)} {unit}" for v in values], chart
        widths = [float(g.find_element(By.TAG_NAME, "rect").get_attribute("width")) for g in drawn]
        assert widths == [round(330 * v / max(values), 1) for v in values], chart
    rates = sorted((i["packets_per_s"] for i in model["interfaces"]), reverse=True)[:20]
    shown = [
        float(b.get_attribute("data-value"))
        for b in driver.find_elements(By.CSS_SELECTOR, "svg#chart-interface-rates g.bar")
    ]
    assert shown == rates  # the fleet's top 20 interfaces by packet rate
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1280, 2400)
    driver.execute_script("window.scrollTo(0, 0)")  # the page's top: totals, attention, top lists
    assert driver.save_screenshot(str(ARTIFACTS / "fleet_report_200.png"))
