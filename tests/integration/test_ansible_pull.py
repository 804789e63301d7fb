"""ansible-pull with the layout of examples/ansible-pull: this host converges itself from a git repository (a local
one here) holding local.yml, the fleet inventory and its group_vars, on a demo sandbox host (demo/sandbox.sh).
The first pull deploys both CNFs and its rules hold for real packets; a second pull of the same commit changes
nothing, and the metrics play exported the filter's rule hits; a rule committed to the repository is shown by a
pull with --check --diff and changes nothing there, then reaches the filter on the next pull (its packets are
dropped from then on); a pull of `cnf_state=absent` removes everything."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .conftest import run_module
from .netns import drain, receiver, send_udp

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "examples" / "ansible-pull"
SANDBOX = ROOT / "demo" / "sandbox.sh"
NET = 9  # the sandbox host's networks: 10.77.9.0/24 (flow tracker), 10.78.9.0/24 (filter)
HOST_NS, PEER_NS = "cnfdemo-pull", "cnfdemo-pull-peer"
FILTER, TRACKER = "pull_fw", "pull_ft"


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="netops", GIT_AUTHOR_EMAIL="netops@example.net")
    env.update(GIT_COMMITTER_NAME="netops", GIT_COMMITTER_EMAIL="netops@example.net")
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


def sandbox(action: str) -> None:
    env = dict(os.environ, SANDBOX_HOSTS=f"pull:{NET}", PYTHON=sys.executable)
    subprocess.run([str(SANDBOX), action], check=True, capture_output=True, text=True, env=env)


class FleetRepo:
    """The fleet repository as the operator keeps it: examples/ansible-pull with this host in the inventory (named
    as the host names itself, which is how ansible-pull picks its entry) wired to the sandbox's namespaces."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.path = tmp_path / "edge-fleet"
        self.checkout = tmp_path / "checkout"
        shutil.copytree(LAYOUT, self.path)
        inventory = yaml.safe_load((self.path / "inventory.yml").read_text())
        inventory["all"]["vars"]["ansible_python_interpreter"] = sys.executable
        inventory["all"]["vars"]["cnf_prepare_host"] = False  # make deps installed the toolchain, bpffs is mounted
        inventory["all"]["children"]["edge"]["hosts"] = {platform.node(): None}
        self.write("inventory.yml", inventory)
        self.write(
            f"host_vars/{platform.node()}.yml",
            {
                "xdp_filter_name": FILTER,
                "xdp_filter_interfaces": [{"name": "fw0", "netns": HOST_NS}],
                "xdp_filter_restore_at_boot": False,  # the sandbox's namespaces do not survive a reboot
                "flow_tracker_name": TRACKER,
                "flow_tracker_interfaces": [{"name": "ft0", "netns": HOST_NS}],
                "flow_tracker_restore_at_boot": False,
                "metrics_apps": [FILTER, TRACKER],
                "metrics_textfile_dir": str(tmp_path / "node-exporter"),
                "metrics_unit_dir": str(tmp_path / "systemd"),
                "metrics_timer_start": False,  # no systemd running here
            },
        )
        self.rules = [
            {"cidr": f"10.78.{NET}.0/24", "action": "allow", "id": 10},
            {"cidr": f"10.78.{NET}.3/32", "action": "deny", "id": 11},
        ]
        self.set_rules(self.rules)
        git(self.path, "init", "-q", "-b", "main")
        self.commit("the edge fleet")

    def write(self, name: str, content: Any) -> None:
        (self.path / name).write_text("---\n" + yaml.safe_dump(content, sort_keys=False))

    def set_rules(self, rules: list[dict[str, Any]]) -> None:
        group = yaml.safe_load((self.path / "group_vars" / "edge.yml").read_text())
        group["xdp_filter_rules"] = rules
        self.write("group_vars/edge.yml", group)

    def commit(self, message: str) -> None:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)

    def rule_hits(self) -> dict[str, float]:
        """cnf_ebpf_rule_hits_total of the filter by rule id, from the file the metrics play wrote."""
        text = (self.tmp_path / "node-exporter" / "cnf_ebpf.prom").read_text()
        return {
            sample.labels["id"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "cnf_ebpf_rule_hits_total" and sample.labels["app"] == FILTER
        }

    def pull(self, *extra: str) -> tuple[int, dict[str, int], str]:
        """ansible-pull as the service in examples/ansible-pull/systemd runs it, from the repository's URL."""
        cmd = [
            str(Path(sys.executable).parent / "ansible-pull"),
            "--url",
            f"file://{self.path}",
            "--directory",
            str(self.checkout),
            "--inventory",
            "inventory.yml",
            *extra,
            "local.yml",
        ]
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, cwd="/")
        recap = re.findall(rf"^{re.escape(platform.node())}\s+:\s+(.*)$", proc.stdout, re.MULTILINE)
        stats = {k: int(v) for k, v in (item.split("=") for item in recap[-1].split())} if recap else {}
        return proc.returncode, stats, proc.stdout + proc.stderr


def arrived(src_last: int, count: int = 20) -> int:
    """Datagrams from 10.78.N.<src_last> (a peer address) through the filter's interface that reached the host."""
    dst = f"10.78.{NET}.1"
    with receiver(HOST_NS, dst, [7000]) as socks:
        send_udp(PEER_NS, dst, 7000, count, src=f"10.78.{NET}.{src_last}")
        return drain(socks[7000])


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetRepo]:
    sandbox("up")
    repo = FleetRepo(tmp_path)
    try:
        yield repo
    finally:
        rc, _stats, out = repo.pull("-e", "cnf_state=absent")
        sandbox("down")
        assert rc == 0, out
        assert not Path(f"/sys/fs/bpf/cnf/{FILTER}").exists() and not Path(f"/sys/fs/bpf/cnf/{TRACKER}").exists()
        assert not (tmp_path / "node-exporter" / "cnf_ebpf.prom").exists()


def test_hosts_converge_from_the_repository_and_follow_its_commits(fleet: FleetRepo) -> None:
    rc, stats, out = fleet.pull()
    assert rc == 0 and stats.get("changed", 0) > 0 and stats.get("failed") == 0, out
    assert arrived(2) == 20 and arrived(3) == 0  # the /24 allows .2, the /32 denies .3
    # the flow tracker came with it and counts what crosses its interface
    send_udp(PEER_NS, f"10.77.{NET}.1", 8080, 5)
    flows = run_module("bpf_map_entries", {"path": f"/sys/fs/bpf/cnf/{TRACKER}/maps/flows", "state": "gathered"})
    assert not flows.get("failed") and flows["entries"], flows

    rc, stats, out = fleet.pull()
    assert rc == 0 and stats.get("changed") == 0, out  # the same commit: nothing to do
    # and the host exported what its filter did for node_exporter (rule hits as of this pull)
    hits = fleet.rule_hits()
    assert hits["10"] == 20 and hits["11"] == 20, hits

    # The operator denies .2 too: one commit to group_vars; the next pull applies it.
    fleet.set_rules([*fleet.rules, {"cidr": f"10.78.{NET}.2/32", "action": "deny", "id": 12}])
    fleet.commit("deny 10.78.9.2")
    rc, stats, out = fleet.pull("--check", "--diff")  # the host's pending change, shown and not applied
    added = '+{"key": "10.78.%d.2/32", "value": {"id": 12, "action": "DENY", "rate_pps": 0, "burst": 0}}' % NET
    assert rc == 0 and added in out.splitlines(), out
    assert arrived(2) == 20
    rc, stats, out = fleet.pull()
    assert rc == 0 and stats.get("changed", 0) > 0, out
    rules = run_module("bpf_map_entries", {"path": f"/sys/fs/bpf/cnf/{FILTER}/maps/rules_v4", "state": "gathered"})
    assert {e["key"]: e["value"]["action"] for e in rules["entries"]} == {
        f"10.78.{NET}.0/24": "ALLOW",
        f"10.78.{NET}.3/32": "DENY",
        f"10.78.{NET}.2/32": "DENY",
    }
    assert arrived(2) == 0 and arrived(4) == 20


def test_the_layout_units_are_valid_systemd_units(tmp_path: Path) -> None:
    """systemd-analyze verify on the service and timer of the layout, pointed at this machine's ansible-pull (the
    layout's /opt/ansible venv is not here): directives, ExecStart and the timer's unit all check out."""
    venv = str(Path(sys.executable).parent)
    for unit in (LAYOUT / "systemd").iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/ansible/bin", venv))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "cnf-ebpf-pull.service", "cnf-ebpf-pull.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
