"""cnf.ebpf.bpf_program on the real kernel: compile, load, pin, idempotence, upgrades that keep map state,
BTF-checked map reuse, migration by field name, verifier failures, repair, removal."""

from __future__ import annotations

import json
import os
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import application, bpftool, run_module

DATA = Path(__file__).parent / "data"
FLOW_SRC = str(DATA / "prog_flow.c")


@pytest.fixture
def app(tmp_path: Path) -> Any:
    """A unique application name and state dir; its pins and state are removed afterwards."""
    yield from application(tmp_path)


def deploy(app: dict[str, Any], check: bool = False, **args: Any) -> dict[str, Any]:
    params = {"src": FLOW_SRC, "defines": {"VERSION": 1}, "constants": {"drop_port": 7777}}
    params.update(app)
    params.update(args)
    return run_module("bpf_program", params, check=check)


def pins(app: dict[str, Any]) -> dict[str, list[str]]:
    root = Path("/sys/fs/bpf/cnf") / app["name"]
    return {d: sorted(p.name for p in (root / d).iterdir()) for d in ("progs", "maps", "links") if (root / d).is_dir()}


def prog_id(app: dict[str, Any]) -> int:
    return bpftool("prog", "show", "pinned", f"/sys/fs/bpf/cnf/{app['name']}/progs/xdp_flow")["id"]


def map_id(app: dict[str, Any], name: str) -> int:
    return bpftool("map", "show", "pinned", f"/sys/fs/bpf/cnf/{app['name']}/maps/{name}")["id"]


def put_stats(app: dict[str, Any], port: int, packets: int, nbytes: int) -> None:
    path = f"/sys/fs/bpf/cnf/{app['name']}/maps/stats"
    result = run_module(
        "bpf_map_entries", {"path": path, "entries": [{"key": port, "value": {"packets": packets, "bytes": nbytes}}]}
    )
    assert result["changed"], result


def stats(app: dict[str, Any]) -> dict[int, dict[str, int]]:
    path = f"/sys/fs/bpf/cnf/{app['name']}/maps/stats"
    return {e["key"]: e["value"] for e in run_module("bpf_map_entries", {"path": path, "state": "gathered"})["entries"]}


def test_deploy_is_idempotent_and_cached(app: dict[str, Any]) -> None:
    first = deploy(app)
    assert first["changed"] is True and first["reasons"] == ["not deployed yet"], first
    assert pins(app) == {"progs": ["xdp_flow"], "maps": ["stats", "verdicts"], "links": []}
    shown = bpftool("prog", "show", "pinned", f"/sys/fs/bpf/cnf/{app['name']}/progs/xdp_flow")
    assert shown["type"] == "xdp" and shown["id"] == first["state"]["programs"]["xdp_flow"]["id"]
    assert set(shown["map_ids"]) >= {map_id(app, "stats"), map_id(app, "verdicts")}
    state = json.loads(Path(first["state_path"]).read_text())
    assert state["object_digest"] == first["state"]["object_digest"] and state["constants"] == {"drop_port": 7777}
    second = deploy(app)
    assert second["changed"] is False and second["reasons"] == []
    assert second["source"]["cached"] is True
    assert prog_id(app) == shown["id"]


def test_check_mode_creates_nothing(app: dict[str, Any]) -> None:
    result = deploy(app, check=True)
    assert result["changed"] is True and result["reasons"] == ["not deployed yet"]
    assert result["maps"]["stats"]["action"] == "create"
    assert not (Path("/sys/fs/bpf/cnf") / app["name"]).exists()
    assert not Path(result["state_path"]).exists()
    assert not (Path(app["state_dir"]) / "cache").exists()


def test_constants_are_set_in_rodata_and_changing_them_reloads(app: dict[str, Any]) -> None:
    deploy(app)
    before = prog_id(app)
    changed = deploy(app, constants={"drop_port": 53})
    assert changed["changed"] and "constant drop_port: 7777 -> 53" in changed["reasons"]
    assert prog_id(app) != before
    rodata = [
        m
        for m in bpftool("map", "list")
        if m.get("name", "").endswith(".rodata")
        and m["id"] in bpftool("prog", "show", "id", str(prog_id(app)))["map_ids"]
    ]
    dumped = bpftool("map", "dump", "id", str(rodata[0]["id"]))
    assert dumped[0]["formatted"]["value"][".rodata"][0]["drop_port"] == 53


def test_bad_constants_and_map_sizes_fail_before_loading(app: dict[str, Any]) -> None:
    ids_before = {p["id"] for p in bpftool("prog", "list")}
    bad = deploy(app, constants={"drop_port": 70000})
    assert bad["failed"] and "constants.drop_port" in bad["msg"] and "70000" in bad["msg"]
    unknown = deploy(app, constants={"dorp_port": 1})
    assert unknown["failed"] and "dorp_port" in unknown["msg"] and "drop_port" in unknown["msg"]
    sizes = deploy(app, map_sizes={"nope": 4})
    assert sizes["failed"] and "map_sizes.nope" in sizes["msg"]
    assert {p["id"] for p in bpftool("prog", "list")} == ids_before
    assert not (Path("/sys/fs/bpf/cnf") / app["name"]).exists()


def test_compatible_upgrade_keeps_maps_and_their_entries(app: dict[str, Any]) -> None:
    deploy(app)
    put_stats(app, 9000, 41, 4100)
    old_prog, old_stats = prog_id(app), map_id(app, "stats")
    upgraded = deploy(app, defines={"VERSION": 2})
    assert upgraded["changed"] and upgraded["reasons"][0].startswith("object changed")
    assert upgraded["maps"]["stats"]["action"] == "reuse"
    assert prog_id(app) != old_prog and map_id(app, "stats") == old_stats
    assert old_stats in bpftool("prog", "show", "id", str(prog_id(app)))["map_ids"]
    assert stats(app)[9000] == {"packets": 41, "bytes": 4100}
    # The old program is gone from the kernel once its pin is replaced (nothing else held it).
    assert old_prog not in {p["id"] for p in bpftool("prog", "list")}


def test_incompatible_layout_is_refused_then_migrated_by_field_name(app: dict[str, Any]) -> None:
    deploy(app)
    put_stats(app, 9000, 41, 4100)
    put_stats(app, 53, 2, 120)
    old_prog, old_stats = prog_id(app), map_id(app, "stats")
    refused = deploy(app, defines={"VERSION": 3})
    assert refused["failed"] is True
    assert "value.packets: offset 0 != 8" in refused["msg"] and "map_policy=migrate" in refused["msg"]
    assert prog_id(app) == old_prog and map_id(app, "stats") == old_stats
    migrated = deploy(app, defines={"VERSION": 3}, map_policy="migrate")
    assert migrated["changed"] and migrated["maps"]["stats"]["action"] == "migrate"
    assert migrated["migrations"]["stats"] == {"entries": 2, "dropped_fields": [], "added_fields": ["value.first_seen"]}
    assert map_id(app, "stats") != old_stats
    assert stats(app) == {
        53: {"first_seen": 0, "packets": 2, "bytes": 120},
        9000: {"first_seen": 0, "packets": 41, "bytes": 4100},
    }
    assert map_id(app, "verdicts") in bpftool("prog", "show", "id", str(prog_id(app)))["map_ids"]
    assert deploy(app, defines={"VERSION": 3}, map_policy="migrate")["changed"] is False


def test_recreate_starts_the_map_empty(app: dict[str, Any]) -> None:
    deploy(app)
    put_stats(app, 9000, 41, 4100)
    recreated = deploy(app, defines={"VERSION": 3}, map_policy="recreate")
    assert recreated["maps"]["stats"]["action"] == "recreate"
    assert stats(app) == {}


def test_verifier_rejection_reports_the_verifier_and_leaves_nothing(app: dict[str, Any]) -> None:
    ids_before = {p["id"] for p in bpftool("prog", "list")}
    failed = deploy(app, src=str(DATA / "prog_bad.c"), constants={})
    assert failed["failed"] is True
    assert "invalid access to packet" in failed["msg"] or "invalid access to packet" in failed["verifier_log_tail"]
    assert "xdp_bad" in failed["msg"] and os.uname().release in failed["msg"] + str(failed.get("kernel_release"))
    assert Path(failed["log_path"]).is_file()
    assert {p["id"] for p in bpftool("prog", "list")} == ids_before
    assert not (Path("/sys/fs/bpf/cnf") / app["name"] / "progs").exists()


def test_clang_errors_fail_with_clangs_message(app: dict[str, Any], tmp_path: Path) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("int main( { return 0; }\n")
    failed = deploy(app, src=str(broken), constants={})
    assert failed["failed"] is True and "broken.c" in failed["msg"] and "error" in failed["stderr"]


def test_pins_removed_behind_our_back_are_repaired(app: dict[str, Any]) -> None:
    deploy(app)
    put_stats(app, 9000, 1, 2)
    os.unlink(f"/sys/fs/bpf/cnf/{app['name']}/progs/xdp_flow")
    repaired = deploy(app)
    assert repaired["changed"] and "program xdp_flow: pin missing (removed behind our back)" in repaired["reasons"]
    assert pins(app)["progs"] == ["xdp_flow"]
    assert stats(app)[9000] == {"packets": 1, "bytes": 2}


def test_map_sizes_override_max_entries(app: dict[str, Any]) -> None:
    deploy(app, map_sizes={"stats": 4096})
    assert bpftool("map", "show", "pinned", f"/sys/fs/bpf/cnf/{app['name']}/maps/stats")["max_entries"] == 4096
    resized = deploy(app, map_sizes={"stats": 8192}, map_policy="migrate")
    assert resized["changed"] and resized["maps"]["stats"]["action"] == "migrate"


def test_absent_removes_pins_and_state(app: dict[str, Any]) -> None:
    first = deploy(app)
    pid = prog_id(app)
    assert run_module("bpf_program", dict(app, state="absent"), check=True)["changed"] is True
    assert (Path("/sys/fs/bpf/cnf") / app["name"]).exists()
    gone = run_module("bpf_program", dict(app, state="absent"))
    assert gone["changed"] is True
    assert not (Path("/sys/fs/bpf/cnf") / app["name"]).exists() and not Path(first["state_path"]).exists()
    assert pid not in {p["id"] for p in bpftool("prog", "list")}
    assert run_module("bpf_program", dict(app, state="absent"))["changed"] is False


def test_prebuilt_object(app: dict[str, Any], tmp_path: Path) -> None:
    from .conftest import compile_bpf

    obj = compile_bpf(FLOW_SRC, tmp_path / "flow.o")
    result = run_module("bpf_program", dict(app, object=str(obj), constants={"drop_port": 1}))
    assert result["changed"] and result["source"] == {"object": str(obj)}
    assert run_module("bpf_program", dict(app, object=str(obj), constants={"drop_port": 1}))["changed"] is False
    assert struct.calcsize("=I") == 4


def test_shared_maps_are_pinned_by_name_and_used_by_both_applications(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    shared_name = "stats"
    first = {"name": f"s1{tag}", "state_dir": str(tmp_path / "state")}
    second = {"name": f"s2{tag}", "state_dir": str(tmp_path / "state")}
    shared_pin = Path("/sys/fs/bpf/cnf/shared") / shared_name
    assert not shared_pin.exists(), "a shared stats map from another run is in the way"
    try:
        one = deploy(first, shared_maps=[shared_name])
        assert one["maps"]["stats"] == {"action": "create", "pin": str(shared_pin), "differences": []}
        two = deploy(second, shared_maps=[shared_name])
        assert two["maps"]["stats"]["action"] == "reuse"
        shared_id = bpftool("map", "show", "pinned", str(shared_pin))["id"]
        for app in (first, second):
            assert shared_id in bpftool("prog", "show", "id", str(prog_id(app)))["map_ids"]
        run_module("bpf_program", dict(first, state="absent"))
        assert shared_pin.exists()  # still used by the second application
        assert bpftool("map", "show", "pinned", str(shared_pin))["id"] == shared_id
    finally:
        run_module("bpf_program", dict(first, state="absent"))
        run_module("bpf_program", dict(second, state="absent"))
        if shared_pin.exists():
            shared_pin.unlink()
