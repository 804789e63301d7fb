"""The fleet report at fleet size: 200 hosts replayed from real gathered facts (tests/fleet_facts.py) in an inventory
with one host_vars file each, the report built by the fleet_report role as cnf.ebpf.report runs it (once for the
fleet), and again by cnf.ebpf.report on localhost alone from the same reports saved to a file
(fleet_report_saved).
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
import yaml

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


def report_play(dest: Path, hosts: str, role_vars: dict[str, Any]) -> list[dict[str, Any]]:
    """The fleet report play of playbooks/report.yml (the role included once for the whole play)."""
    include = {"name": "cnf.ebpf.fleet_report", "apply": {"run_once": True}}
    role_vars = dict(role_vars, fleet_report_dest=str(dest))
    task = {"name": "Fleet report", "ansible.builtin.include_role": include, "run_once": True, "vars": role_vars}
    return [{"name": "Write the fleet report", "hosts": hosts, "gather_facts": False, "tasks": [task]}]


def ansible_playbook(*args: str) -> float:
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
    start = time.perf_counter()
    proc = subprocess.run(["ansible-playbook", *args], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def fleet_report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("fleet")
    hosts = fleet(HOSTS)
    inventory = write_inventory(workdir, hosts)
    book = workdir / "report.yml"
    book.write_text(yaml.safe_dump(report_play(workdir / "report", "all", {}), sort_keys=False))
    elapsed = ansible_playbook("-i", str(inventory), str(book))
    print(f"fleet report of {HOSTS} hosts (inventory with host_vars): {elapsed:.1f} s")
    # The same reports saved as cnf.ebpf.report -e cnf_report_save=... saves them, the page built again from the file
    # by cnf.ebpf.report on localhost alone.
    saved = workdir / "fleet.json"
    saved.write_text(json.dumps(hosts))
    role_vars = json.dumps({"fleet_report_saved": str(saved), "fleet_report_dest": str(workdir / "saved")})
    elapsed = ansible_playbook("-i", "localhost,", "-c", "local", "cnf.ebpf.report", "-e", role_vars)
    print(f"fleet report of {HOSTS} hosts (saved reports, localhost): {elapsed:.1f} s")
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
    # From saved reports on localhost, the same report.
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
