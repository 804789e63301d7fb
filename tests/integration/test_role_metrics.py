"""The metrics role against this host: with a flow tracker and an XDP filter deployed by their roles on veth sandboxes
and a known number of packets sent through them, the exposition file it writes passes `promtool check metrics`, and
Prometheus' own parser reads back exactly the packets sent: the flow's packets and bytes, the interface's, the hits
of an allow rule and of a deny rule. The timer's units land in the unit dir; the service's command, run as systemd
would (no Ansible, no collection path) after more traffic, rewrites the file with the new counts, and a second role
run that sees only moved counters reports no change. An application that is gone is exported as down; a name that
was never deployed, or a file the collector would not read, fails the module naming the field; check mode writes
nothing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import REPO, run_module, run_role
from .netns import VethPair, send_udp

PROMTOOL = REPO / ".build" / "tools" / "usr" / "bin" / "promtool"
PAYLOAD = b"cnf-metrics"
FRAME = 14 + 20 + 8 + len(PAYLOAD)  # what XDP counts: Ethernet, IPv4, UDP, payload
PORT, SPORT = 7311, 47311


@pytest.fixture(scope="module")
def promtool() -> Path:
    """Debian's promtool, unpacked by `make promtool` (which `make integration` runs first) when it is not there."""
    if not PROMTOOL.exists():
        subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "promtool"], check=True, capture_output=True)
    return PROMTOOL


@pytest.fixture
def traffic_pair() -> Iterator[VethPair]:
    """A second sandbox, for the filter (the tracker holds the XDP hook of the first)."""
    pair = VethPair()
    try:
        yield pair
    finally:
        pair.close()


class Deployment:
    def __init__(self, tmp_path: Path, tracked: VethPair, filtered: VethPair) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tmp_path, self.tracker, self.filter = tmp_path, f"mft{tag}", f"mxf{tag}"
        self.state_dir, self.unit_dir = str(tmp_path / "state"), tmp_path / "systemd"
        self.textfile = tmp_path / "textfile" / "cnf_ebpf.prom"
        self.tracked, self.filtered = tracked, filtered
        # The filter sees a's datagrams on b (allowed) and b's on a (denied).
        self.rules = [
            {"cidr": f"{filtered.addr_a}/32", "action": "allow", "id": 11},
            {"cidr": f"{filtered.addr_b}/32", "action": "deny", "id": 12},
        ]

    def cnf_roles(self, state: str) -> list[dict[str, Any]]:
        common = {"restore_at_boot": False, "unit_dir": str(self.unit_dir), "state_dir": self.state_dir}
        tracker = {f"flow_tracker_{k}": v for k, v in common.items()}
        filt = {f"xdp_filter_{k}": v for k, v in common.items()}
        return [
            {
                "role": "cnf.ebpf.flow_tracker",
                "vars": dict(
                    tracker,
                    flow_tracker_state=state,
                    flow_tracker_name=self.tracker,
                    flow_tracker_interfaces=[{"name": self.tracked.if_b, "netns": self.tracked.ns_b}],
                ),
            },
            {
                "role": "cnf.ebpf.xdp_filter",
                "vars": dict(
                    filt,
                    xdp_filter_state=state,
                    xdp_filter_name=self.filter,
                    xdp_filter_rules=self.rules,
                    xdp_filter_interfaces=[
                        {"name": self.filtered.if_a, "netns": self.filtered.ns_a},
                        {"name": self.filtered.if_b, "netns": self.filtered.ns_b},
                    ],
                ),
            },
        ]

    def metrics_role(self, state: str = "present") -> dict[str, Any]:
        return {
            "role": "cnf.ebpf.metrics",
            "vars": {
                "metrics_state": state,
                "metrics_apps": [self.tracker, self.filter],
                "metrics_textfile_dir": str(self.textfile.parent),
                "metrics_top": 5,
                "metrics_interval": 15,
                "metrics_unit_dir": str(self.unit_dir),
                "metrics_timer_start": False,  # no systemd here: the test runs the service's command itself
                "metrics_state_dir": self.state_dir,
            },
        }

    def send(self, tracked: int, allowed: int, denied: int) -> None:
        send_udp(self.tracked.ns_a, self.tracked.addr_b, PORT, tracked, PAYLOAD, sport=SPORT)
        assert self.filtered.udp_through(self.filtered.addr_b, allowed)[0] == allowed
        send_udp(self.filtered.ns_b, self.filtered.addr_a, PORT, denied, PAYLOAD)

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of the file, as prometheus_client parses it: (name, sorted labels) -> value."""
        found = {}
        for family in text_string_to_metric_families(self.textfile.read_text()):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    def expect(self, tracked: int, allowed: int, denied: int) -> None:
        got = self.samples()
        flow = {
            "app": self.tracker,
            "proto": "udp",
            "src": self.tracked.addr_a,
            "src_port": str(SPORT),
            "dst": self.tracked.addr_b,
            "dst_port": str(PORT),
        }
        iface = {"app": self.tracker, "interface": self.tracked.if_b, "netns": self.tracked.ns_b}

        def value(name: str, **labels: str) -> float | None:
            return got.get((name, tuple(sorted(labels.items()))))

        assert value("cnf_ebpf_flow_packets_total", **flow) == tracked, got
        assert value("cnf_ebpf_flow_bytes_total", **flow) == tracked * FRAME
        assert value("cnf_ebpf_flows", app=self.tracker) == 1
        assert value("cnf_ebpf_interface_packets_total", **iface) == tracked
        assert value("cnf_ebpf_interface_bytes_total", **iface) == tracked * FRAME
        assert value("cnf_ebpf_event_drops_total", app=self.tracker) == 0
        allow = {"app": self.filter, "cidr": f"{self.filtered.addr_a}/32", "action": "allow", "id": "11"}
        deny = {"app": self.filter, "cidr": f"{self.filtered.addr_b}/32", "action": "deny", "id": "12"}
        assert value("cnf_ebpf_rule_hits_total", **allow) == allowed
        assert value("cnf_ebpf_rule_hits_total", **deny) == denied
        assert value("cnf_ebpf_up", app=self.tracker) == value("cnf_ebpf_up", app=self.filter) == 1
        # Exactly these series: no others (the filter has no flow table, the tracker no rules).
        names = sorted({name for name, _labels in got})
        assert names == sorted(
            [
                "cnf_ebpf_up",
                "cnf_ebpf_flows",
                "cnf_ebpf_flow_packets_total",
                "cnf_ebpf_flow_bytes_total",
                "cnf_ebpf_interface_packets_total",
                "cnf_ebpf_interface_bytes_total",
                "cnf_ebpf_rule_hits_total",
                "cnf_ebpf_event_drops_total",
                "cnf_ebpf_metrics_last_run_timestamp_seconds",
            ]
        )


@pytest.fixture
def deployment(tmp_path: Path, veth: VethPair, traffic_pair: VethPair) -> Iterator[Deployment]:
    dep = Deployment(tmp_path, veth, traffic_pair)
    deployed = run_role(tmp_path, dep.cnf_roles("present"))
    assert deployed.rc == 0, deployed.stdout
    yield dep
    removed = run_role(tmp_path, [dep.metrics_role("absent"), *dep.cnf_roles("absent")])
    assert removed.rc == 0, removed.stdout
    assert not dep.textfile.exists() and not (dep.unit_dir / "cnf-ebpf-metrics.timer").exists()


def promtool_check(promtool: Path, path: Path) -> None:
    checked = subprocess.run(
        [str(promtool), "check", "metrics"], input=path.read_bytes(), capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_metrics_role_exports_the_packets_sent(deployment: Deployment, promtool: Path) -> None:
    dep = deployment
    dep.send(tracked=13, allowed=7, denied=4)
    first = run_role(dep.tmp_path, [dep.metrics_role()])
    assert first.rc == 0 and first.changed == 1, first.stdout
    assert oct(dep.textfile.stat().st_mode & 0o777) == "0o644"
    promtool_check(promtool, dep.textfile)
    dep.expect(tracked=13, allowed=7, denied=4)

    # The timer: service and timer units, enabled for timers.target, refreshing every 15 s from boot on.
    timer = (dep.unit_dir / "cnf-ebpf-metrics.timer").read_text()
    assert "OnBootSec=15s\nOnUnitActiveSec=15s\n" in timer and "WantedBy=timers.target" in timer
    assert (dep.unit_dir / "timers.target.wants" / "cnf-ebpf-metrics.timer").resolve() == dep.unit_dir / (
        "cnf-ebpf-metrics.timer"
    )
    service = (dep.unit_dir / "cnf-ebpf-metrics.service").read_text()
    units = [str(dep.unit_dir / "cnf-ebpf-metrics.timer"), str(dep.unit_dir / "cnf-ebpf-metrics.service")]
    verified = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, check=False)
    assert verified.returncode == 0 and not verified.stderr, verified.stderr  # systemd's own reading of the units
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))

    # More traffic, then the service's command as systemd runs it: no Ansible path, no collection on PYTHONPATH.
    dep.send(tracked=6, allowed=3, denied=5)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH")}
    command = shlex.split(exec_start[len("ExecStart=") :])
    refreshed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert refreshed.stdout.startswith(f"{dep.textfile}: "), refreshed.stdout
    promtool_check(promtool, dep.textfile)
    dep.expect(tracked=19, allowed=10, denied=9)

    # Only the counters moved: a new reading, not a change.
    dep.send(tracked=1, allowed=1, denied=1)
    again = run_role(dep.tmp_path, [dep.metrics_role()])
    assert again.rc == 0 and again.changed == 0, again.stdout
    dep.expect(tracked=20, allowed=11, denied=10)

    # The refresh of an application that is gone (removed, or not restored yet after a boot): down, the rest exported.
    config = json.loads(Path(command[-1]).read_text())
    elsewhere = dep.tmp_path / "elsewhere.prom"
    gone_config = dep.tmp_path / "gone.json"
    gone_config.write_text(json.dumps(dict(config, apps=[dep.filter, "gone"], path=str(elsewhere))))
    down = subprocess.run([*command[:-1], str(gone_config)], capture_output=True, text=True, env=env, check=False)
    assert down.returncode == 0 and down.stdout.strip().endswith("; down: gone"), down.stdout + down.stderr
    samples = {
        (s.name, s.labels.get("app")): s.value
        for f in text_string_to_metric_families(elsewhere.read_text())
        for s in f.samples
    }
    assert samples[("cnf_ebpf_up", "gone")] == 0 and samples[("cnf_ebpf_up", dep.filter)] == 1

    # The module: a name that is not deployed fails naming the field and writes nothing; check mode writes nothing.
    args = {"apps": [dep.tracker, "nosuch"], "path": str(dep.tmp_path / "new.prom"), "state_dir": dep.state_dir}
    missing = run_module("bpf_metrics", args)
    assert missing.get("failed") and missing["msg"].startswith("apps[1]: no application 'nosuch'"), missing
    unread = run_module("bpf_metrics", dict(args, apps=[dep.tracker], path=str(dep.tmp_path / "new.txt")))
    assert unread.get("failed") and unread["msg"].startswith("path: ") and ".prom" in unread["msg"], unread
    checked = run_module("bpf_metrics", dict(args, apps=[dep.tracker]), check=True)
    assert checked["changed"] is True and checked["apps"] == {dep.tracker: True}, checked
    assert not (dep.tmp_path / "new.prom").exists() and not (dep.tmp_path / "new.txt").exists()
