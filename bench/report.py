"""The fleet report's build time at fleet size, against a no-op play over the same inventory, in one run.

The fleet is replayed from real gathered facts (tests/fleet_facts.py over tests/data/fleet_report_facts.json, seeded:
the same N gives the same fleet), laid out as an inventory with one host_vars file per host. Times:
  no-op     ansible-playbook over the inventory, one run_once debug task (Ansible's start and the inventory's load)
  role      the fleet report play of playbooks/report.yml (cnf.ebpf.fleet_report once for the play) over it
  saved     the same role on localhost alone, the reports read from one saved file (fleet_report_saved)
  filter    cnf.ebpf.fleet_report alone, in process (the model the page is drawn from)
and prints each case, the times, role/no-op and the size of report.html. No root needed:
  PYTHONPATH=.build/collections ANSIBLE_COLLECTIONS_PATH=.build/collections .venv/bin/python bench/report.py [N ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ansible_collections.cnf.ebpf.plugins.filter.fleet_report import fleet_report  # noqa: E402
from tests.fleet_facts import fleet, write_inventory  # noqa: E402


def playbook(workdir: Path, name: str, hosts: str, tasks: list[dict[str, Any]], inventory: Path) -> float:
    book = workdir / f"{name}.yml"
    book.write_text(yaml.safe_dump([{"name": name, "hosts": hosts, "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    start = time.perf_counter()
    subprocess.run(["ansible-playbook", "-i", str(inventory), str(book)], capture_output=True, env=env, check=True)
    return time.perf_counter() - start


def report_task(dest: Path, role_vars: dict[str, Any]) -> dict[str, Any]:
    include = {"name": "cnf.ebpf.fleet_report", "apply": {"run_once": True}}
    return {
        "ansible.builtin.include_role": include,
        "run_once": True,
        "vars": dict(role_vars, fleet_report_dest=str(dest)),
    }


def bench(n: int, workdir: Path) -> tuple[float, float, float, float, int]:
    hosts = fleet(n)
    inventory = write_inventory(workdir, hosts)
    noop = playbook(workdir, "noop", "all", [{"ansible.builtin.debug": {"msg": "no-op"}, "run_once": True}], inventory)
    role = playbook(workdir, "role", "all", [report_task(workdir / "role", {})], inventory)
    saved = workdir / "fleet.json"
    saved.write_text(json.dumps(hosts))
    localhost = workdir / "localhost.yml"
    localhost.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}}))
    from_saved = playbook(
        workdir, "saved", "localhost", [report_task(workdir / "saved", {"fleet_report_saved": str(saved)})], localhost
    )
    start = time.perf_counter()
    model = fleet_report(hosts, list(hosts))
    alone = time.perf_counter() - start
    assert model["totals"]["hosts"] == n
    return noop, role, from_saved, alone, (workdir / "role" / "report.html").stat().st_size


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [50, 200, 1000]
    print(
        f"{'hosts':>6}{'no-op (s)':>11}{'role (s)':>10}{'saved (s)':>11}{'filter (s)':>12}{'role/no-op':>12}"
        f"{'report.html':>13}"
    )
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="cnf-report-bench-") as tmp:
            noop, role, saved, alone, size = bench(n, Path(tmp))
        print(
            f"{n:>6}{noop:>11.2f}{role:>10.2f}{saved:>11.2f}{alone:>12.3f}{role / noop:>11.1f}x{size / 1024:>10.0f} KB"
        )


if __name__ == "__main__":
    main()
