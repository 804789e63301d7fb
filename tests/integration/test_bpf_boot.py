"""cnf.ebpf.bpf_boot against the real kernel: an XDP filter with persisted rules is marked for boot; then everything
a reboot takes away is taken away (the application's pins, and with its pinned link the XDP attachment), and the
exact command of the installed systemd unit, run without Ansible's path, brings it back: program loaded, rules
written before the program is attached, packets denied again. A second restore changes nothing."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, run_module
from .netns import VethPair

FILTER_SRC = str(REPO / "bpf" / "xdp_filter.c")


class App:
    def __init__(self, tmp_path: Path) -> None:
        self.name = f"boot{uuid.uuid4().hex[:8]}"
        self.state_dir = str(tmp_path / "state")
        self.unit_dir = tmp_path / "systemd"
        self.maps = f"/sys/fs/bpf/cnf/{self.name}/maps"

    def module(self, name: str, args: dict[str, Any], check: bool = False) -> dict[str, Any]:
        result = run_module(name, args, check=check)
        assert not result.get("failed"), result
        return result


@pytest.fixture
def app(tmp_path: Path, veth: VethPair) -> Iterator[App]:
    application = App(tmp_path)
    yield application
    run_module("bpf_program", {"name": application.name, "state": "absent", "state_dir": application.state_dir})


def restore(unit: Path) -> subprocess.CompletedProcess:
    """The unit's ExecStart, as systemd would run it: no PYTHONPATH, no Ansible collection path."""
    exec_start = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH")}
    return subprocess.run(
        shlex.split(exec_start[len("ExecStart=") :]), capture_output=True, text=True, env=env, check=False
    )


def xdp_prog_id(veth: VethPair) -> int | None:
    return (veth.link_json(veth.ns_b, veth.if_b).get("xdp") or {}).get("prog", {}).get("id")


def test_restore_after_the_pins_are_gone(app: App, veth: VethPair) -> None:
    app.module("bpf_program", {"name": app.name, "src": FILTER_SRC, "state_dir": app.state_dir})
    rules = [{"key": f"{veth.addr_a}/32", "value": {"id": 4, "action": "DENY", "rate_pps": 0, "burst": 0}}]
    app.module(
        "bpf_map_entries",
        {
            "path": f"{app.maps}/rules_v4",
            "state": "overridden",
            "entries": rules,
            "persist": True,
            "state_dir": app.state_dir,
        },
    )
    attach = {"program": f"{app.name}/xdp_filter", "kind": "xdp", "interface": veth.if_b, "netns": veth.ns_b}
    app.module("bpf_attach", dict(attach, state_dir=app.state_dir))
    boot = {"name": app.name, "state_dir": app.state_dir, "unit_dir": str(app.unit_dir)}
    assert app.module("bpf_boot", boot, check=True)["changed"] is True
    assert not (app.unit_dir / "cnf-ebpf-restore.service").exists()  # check mode wrote nothing
    installed = app.module("bpf_boot", boot)
    assert installed["changed"] is True
    assert app.module("bpf_boot", boot)["changed"] is False
    unit = app.unit_dir / "cnf-ebpf-restore.service"
    assert (app.unit_dir / "multi-user.target.wants" / "cnf-ebpf-restore.service").resolve() == unit
    with zipfile.ZipFile(installed["runtime"]) as zf:
        names = set(zf.namelist())
    assert {
        "ansible/module_utils/basic.py",
        "ansible_collections/cnf/ebpf/plugins/module_utils/surface/_boot_module.py",
    } <= names
    assert veth.udp_through(veth.addr_b, 20)[0] == 0

    # What a reboot takes: every pin of the application (the pinned XDP link with them, so the hook empties).
    shutil.rmtree(f"/sys/fs/bpf/cnf/{app.name}")
    assert xdp_prog_id(veth) is None
    assert veth.udp_through(veth.addr_b, 20)[0] == 20

    restored = restore(unit)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    lines = restored.stdout.splitlines()
    assert lines[0].startswith(f"{app.name}: program loaded"), lines
    written = '{"added": 1, "updated": 0, "removed": 0, "unchanged": 0}'
    assert lines[1] == f"{app.name}: entries {app.maps}/rules_v4: written {written}", lines
    assert lines[2].startswith(f"{app.name}: attach xdp-{veth.ns_b}-{veth.if_b}: attach"), lines
    assert xdp_prog_id(veth) is not None
    assert veth.udp_through(veth.addr_b, 30)[0] == 0  # the rule is back, and it is enforced
    gathered = app.module("bpf_map_entries", {"path": f"{app.maps}/rule_hits", "state": "gathered"})
    assert {e["key"]: e["value"]["sum"] for e in gathered["entries"]} == {4: 30}

    again = restore(unit)
    assert again.returncode == 0 and all(line.endswith("unchanged") for line in again.stdout.splitlines()), again.stdout
    # The modules see the restored application as their own: nothing to do.
    assert app.module("bpf_attach", dict(attach, state_dir=app.state_dir))["changed"] is False


def test_restore_reports_a_missing_interface_and_fails(app: App, veth: VethPair) -> None:
    app.module("bpf_program", {"name": app.name, "src": FILTER_SRC, "state_dir": app.state_dir})
    attach = {"program": f"{app.name}/xdp_filter", "kind": "xdp", "interface": veth.if_b, "netns": veth.ns_b}
    app.module("bpf_attach", dict(attach, state_dir=app.state_dir))
    app.module("bpf_boot", {"name": app.name, "state_dir": app.state_dir, "unit_dir": str(app.unit_dir)})
    shutil.rmtree(f"/sys/fs/bpf/cnf/{app.name}")
    veth.close()  # the namespace (and the interface in it) is gone, as after a reboot
    restored = restore(app.unit_dir / "cnf-ebpf-restore.service")
    assert restored.returncode == 1
    assert f"{app.name}: attach xdp-{veth.ns_b}-{veth.if_b}: FAILED" in restored.stdout, restored.stdout
    assert Path(f"/sys/fs/bpf/cnf/{app.name}/progs/xdp_filter").exists()  # the program itself is back


def test_bad_requests_change_nothing(app: App, tmp_path: Path) -> None:
    missing = run_module("bpf_boot", {"name": app.name, "state_dir": app.state_dir, "unit_dir": str(app.unit_dir)})
    assert missing.get("failed") and f"no application '{app.name}'" in missing["msg"], missing
    assert not app.unit_dir.exists()
    stray = run_module(
        "bpf_map",
        {"path": f"/sys/fs/bpf/cnf/stray{app.name}", "type": "hash", "key": "u32", "value": "u32", "max_entries": 4},
    )
    assert not stray.get("failed"), stray
    try:
        refused = run_module(
            "bpf_map_entries",
            {"path": f"/sys/fs/bpf/cnf/stray{app.name}", "entries": [{"key": 1, "value": 2}], "persist": True},
        )
        assert (
            refused.get("failed") and "persist:" in refused["msg"] and "not a map of an application" in refused["msg"]
        )
        gathered = run_module("bpf_map_entries", {"path": f"/sys/fs/bpf/cnf/stray{app.name}", "state": "gathered"})
        assert gathered["entries"] == []
    finally:
        os.unlink(f"/sys/fs/bpf/cnf/stray{app.name}")
