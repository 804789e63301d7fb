"""Runs killed half-way (SIGKILL at named points: resources/_faults.py, CNF_EBPF_KILL_AT) leave the host in a state
the next run recognises, finishes and reports (issue 17, item 1). The kills are deterministic: the process kills
itself at the n-th visit of a point, not after a delay."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import MODULES, application, bpftool, run_module
from .netns import VethPair

LOCK_DIR = Path("/run/cnf-ebpf")


def killed_run(name: str, args: dict[str, Any], point: str, tmp: Path) -> None:
    """Run a module that must die at `point` (SIGKILL, so nothing of it prints or cleans up)."""
    args_file = tmp / f"args-{uuid.uuid4().hex}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run(
        ["env", f"CNF_EBPF_KILL_AT={point}", sys.executable, str(MODULES / f"{name}.py"), str(args_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"not killed at {point}: rc {proc.returncode}\n{proc.stdout}{proc.stderr}"
    )


def contents(path: Path) -> dict[int, int]:
    return {
        int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little"): int.from_bytes(
            bytes(int(b, 16) for b in e["value"]), "little"
        )
        for e in bpftool("map", "dump", "pinned", str(path))
    }


def src(path: Path, keys: range, value: int) -> Path:
    path.write_text(json.dumps([{"key": k, "value": value} for k in keys]))
    return path


def test_overridden_killed_between_writes_is_finished_and_reported(pin_dir: Path, tmp_path: Path) -> None:
    path = pin_dir / "rules"
    made = run_module(
        "bpf_map", {"path": str(path), "type": "hash", "key": "u32", "value": "u64", "max_entries": 300_000}
    )
    assert not made.get("failed"), made
    map_id = made["map"]["id"]
    marker = LOCK_DIR / f"map-{map_id}.writing"
    old = src(tmp_path / "old.json", range(0, 200_000), 1)
    new = src(tmp_path / "new.json", range(100_000, 300_000), 2)
    assert run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(old)})["changed"]
    want = dict.fromkeys(range(100_000, 300_000), 2)

    # killed after the first slice of 65536 writes, before the second: the map is half of each
    killed_run(
        "bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(new)}, "entries.write@2", tmp_path
    )
    half = contents(path)
    assert half != want and sum(v == 2 for v in half.values()) == 65536
    assert marker.exists(), "the write in progress is on record"

    # check mode says what it would repair and repairs nothing
    peek = run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(new)}, check=True)
    assert peek["changed"] is True and "would finish" in peek["repaired"][0], peek
    assert contents(path) == half and marker.exists()

    # the next run finishes the job and says so; the one after has nothing to repair
    done = run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(new)})
    assert not done.get("failed"), done
    assert len(done["repaired"]) == 1 and "state=overridden" in done["repaired"][0]
    assert "was killed while writing this map (200000 writes and 100000 deletes planned)" in done["repaired"][0]
    assert done["counts"] == {
        "added": 100_000,
        "updated": 200_000 - 100_000 - 65536,
        "removed": 100_000,
        "unchanged": 65536,
    }
    assert contents(path) == want and not marker.exists()
    again = run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(new)})
    assert again["changed"] is False and "repaired" not in again

    # killed after every write, before the deletes
    killed_run(
        "bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(old)}, "entries.delete", tmp_path
    )
    assert len(contents(path)) == 300_000 and marker.exists()
    done = run_module("bpf_map_entries", {"path": str(path), "state": "overridden", "src": str(old)})
    assert done["counts"]["removed"] == 100_000 and done["counts"]["unchanged"] == 200_000 and done["repaired"]
    assert contents(path) == dict.fromkeys(range(0, 200_000), 1) and not marker.exists()


FLOW_SRC = str(Path(__file__).parent / "data" / "prog_flow.c")
UPGRADE_POINTS = [
    "program.loaded",
    "program.pending",
    "program.pin",
    "program.swapped",
    "program.maps",
    "program.state",
]


@pytest.fixture
def app(tmp_path: Path, veth: VethPair) -> Any:  # after veth: removed while the namespaces still exist
    yield from application(tmp_path, "k")


def xdp_prog_id(veth: VethPair) -> int | None:
    xdp = veth.link_json(veth.ns_b, veth.if_b).get("xdp")
    return xdp["prog"]["id"] if xdp else None


def pinned_prog_id(app: dict[str, Any]) -> int:
    return bpftool("prog", "show", "pinned", f"/sys/fs/bpf/cnf/{app['name']}/progs/xdp_flow")["id"]


def recorded_prog_id(app: dict[str, Any]) -> int:
    state = json.loads(Path(app["state_dir"], "apps", f"{app['name']}.json").read_text())
    return state["programs"]["xdp_flow"]["id"]


def passed(app: dict[str, Any], veth: VethPair, count: int = 50) -> tuple[int, int]:
    """(datagrams that arrived, datagrams the attached program counted) for `count` sent to a port it passes."""
    before = _port_packets(app)
    received, _secs = veth.udp_through(veth.addr_b, count, port=9100)
    return received, _port_packets(app) - before


def _port_packets(app: dict[str, Any]) -> int:
    result = run_module("bpf_map_entries", {"path": f"/sys/fs/bpf/cnf/{app['name']}/maps/stats", "state": "gathered"})
    return sum(e["value"]["packets"] for e in result["entries"] if e["key"] == 9100)


@pytest.mark.parametrize("point", UPGRADE_POINTS)
def test_an_upgrade_killed_anywhere_keeps_traffic_flowing_and_the_next_run_converges(
    app: dict[str, Any], veth: VethPair, tmp_path: Path, point: str
) -> None:
    deployed = dict(app, src=FLOW_SRC, constants={"drop_port": 7777})
    assert run_module("bpf_program", deployed)["changed"]
    attach = dict(app, program=f"{app['name']}/xdp_flow", kind="xdp", interface=veth.if_b, netns=veth.ns_b)
    attach.pop("name")
    assert run_module("bpf_attach", attach)["changed"]
    old_id = xdp_prog_id(veth)
    upgrade = dict(deployed, constants={"drop_port": 7778})

    killed_run("bpf_program", upgrade, point, tmp_path)
    # never neither: the hook runs the old program or the new one, and it handles the traffic
    on_hook = xdp_prog_id(veth)
    assert on_hook in (old_id, pinned_prog_id(app)), (point, on_hook, old_id)
    assert passed(app, veth) == (50, 50), point

    done = run_module("bpf_program", upgrade)
    assert not done.get("failed"), (point, done)
    if point == "program.loaded":  # killed before anything was recorded or moved: a plain upgrade
        assert "repaired" not in done
    else:
        assert len(done["repaired"]) == 1 and "was killed before it finished" in done["repaired"][0], done
    assert xdp_prog_id(veth) == pinned_prog_id(app) == recorded_prog_id(app) != old_id
    assert "pending" not in json.loads(Path(app["state_dir"], "apps", f"{app['name']}.json").read_text())
    assert passed(app, veth) == (50, 50)
    again = run_module("bpf_program", upgrade)
    assert again["changed"] is False and "repaired" not in again, again


def test_a_migration_killed_half_way_changed_nothing(app: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    v1 = dict(app, src=FLOW_SRC, constants={"drop_port": 7777})
    assert run_module("bpf_program", v1)["changed"]
    attach = dict(app, program=f"{app['name']}/xdp_flow", kind="xdp", interface=veth.if_b, netns=veth.ns_b)
    attach.pop("name")
    run_module("bpf_attach", attach)
    old_id = xdp_prog_id(veth)
    assert passed(app, veth, 30) == (30, 30)
    v3 = dict(v1, defines={"VERSION": 3}, map_policy="migrate")
    killed_run("bpf_program", v3, "program.migrated", tmp_path)
    assert xdp_prog_id(veth) == old_id and passed(app, veth, 10) == (10, 10), "the old program, untouched"
    done = run_module("bpf_program", v3)
    assert "repaired" not in done and done["maps"]["stats"]["action"] == "migrate", done
    assert _port_packets(app) == 40, "every count carried into the migrated map"


def test_a_migration_killed_after_the_swap_is_redone_and_says_what_is_not_carried(
    app: dict[str, Any], veth: VethPair, tmp_path: Path
) -> None:
    v1 = dict(app, src=FLOW_SRC, constants={"drop_port": 7777})
    assert run_module("bpf_program", v1)["changed"]
    attach = dict(app, program=f"{app['name']}/xdp_flow", kind="xdp", interface=veth.if_b, netns=veth.ns_b)
    attach.pop("name")
    run_module("bpf_attach", attach)
    assert passed(app, veth, 30) == (30, 30)
    v3 = dict(v1, defines={"VERSION": 3}, map_policy="migrate")  # stats gains a field: migrated field by field
    killed_run("bpf_program", v3, "program.swapped", tmp_path)
    received, _secs = veth.udp_through(veth.addr_b, 20, port=9100)
    assert received == 20, "the new program handles the traffic"
    done = run_module("bpf_program", v3)
    assert not done.get("failed"), done
    assert "stats" in done["repaired"][0] and "not carried over" in done["repaired"][0], done
    assert done["maps"]["stats"]["action"] == "migrate"
    assert _port_packets(app) == 30, "the migration was redone from the pinned map, which holds the 30"
    assert xdp_prog_id(veth) == pinned_prog_id(app) == recorded_prog_id(app)


def test_an_attachment_killed_before_its_record_is_recorded_by_the_next_run(
    app: dict[str, Any], veth: VethPair, tmp_path: Path
) -> None:
    assert run_module("bpf_program", dict(app, src=FLOW_SRC, constants={"drop_port": 7777}))["changed"]
    attach = dict(app, program=f"{app['name']}/xdp_flow", kind="xdp", interface=veth.if_b, netns=veth.ns_b)
    attach.pop("name")
    killed_run("bpf_attach", attach, "attach.attached", tmp_path)
    assert xdp_prog_id(veth) == pinned_prog_id(app), "attached, not recorded"
    state_file = Path(app["state_dir"], "apps", f"{app['name']}.json")
    assert not json.loads(state_file.read_text()).get("attachments")
    again = run_module("bpf_attach", attach)
    assert not again.get("failed") and again["action"] == "none", again
    assert "killed before it recorded the attachment" in again["repaired"][0]
    assert list(json.loads(state_file.read_text())["attachments"]) == [again["hook"]]
    assert "repaired" not in run_module("bpf_attach", attach)
    # the record is what removing the application detaches by
    assert run_module("bpf_program", dict(app, state="absent"))["changed"]
    assert xdp_prog_id(veth) is None
