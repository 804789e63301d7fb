"""bpf_attach against hooks held by somebody else, and hooks whose interface went away, with real packets over a veth
pair (the XDP programs of data/attach_xdp_drop.c each drop UDP to one port, so the traffic says which one holds the
hook; data/attach_tc_count.c counts egress UDP per program).

- `on_conflict: replace` against another cnf.ebpf application takes its link over (the link's pin moves to the new
  holder, the loser's state file forgets the hook), so removing the loser leaves the new holder alone; the conflict
  names the application, and says "not deployed by cnf.ebpf" only for programs that are not ours.
- A link whose interface (or network namespace) was deleted is defunct: the kernel keeps it, pinned, on no hook.
  bpf_facts says so; rerunning the attachment once the interface is back replaces it; state=absent removes it.
- bpf_facts fills `link_pin` of attachments from the pins walk.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _attach, _hooks, _hooks_netdev
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._locks import file_lock

from .conftest import application, bpftool, compile_bpf, run_module
from .netns import VethPair, drain, ip

DATA = Path(__file__).parent / "data"
XDP_SRC = str(DATA / "attach_xdp_drop.c")
TC_SRC = str(DATA / "attach_tc_count.c")
PIN_ROOT = Path("/sys/fs/bpf/cnf")
N = 20


# Two applications of one host: one state directory.
@pytest.fixture
def app_a(tmp_path: Path, veth: VethPair) -> Iterator[dict[str, Any]]:  # after veth: removed while it exists
    yield from application(tmp_path, "ca")


@pytest.fixture
def app_b(tmp_path: Path, veth: VethPair) -> Iterator[dict[str, Any]]:
    yield from application(tmp_path, "cb")


def deploy(app: dict[str, Any], src: str = XDP_SRC) -> None:
    result = run_module("bpf_program", dict(app, src=src))
    assert result["changed"] is True, result


def attach(app: dict[str, Any], veth: VethPair, prog: str, **args: Any) -> dict[str, Any]:
    params = {
        "program": f"{app['name']}/{prog}",
        "kind": "xdp",
        "interface": veth.if_b,
        "netns": veth.ns_b,
        "state_dir": app["state_dir"],
    }
    params.update(args)
    return run_module("bpf_attach", params)


def attach_check(app: dict[str, Any], veth: VethPair, prog: str, **args: Any) -> dict[str, Any]:
    params = {
        "program": f"{app['name']}/{prog}",
        "kind": "xdp",
        "interface": veth.if_b,
        "netns": veth.ns_b,
        "state_dir": app["state_dir"],
    }
    params.update(args)
    return run_module("bpf_attach", params, check=True)


def tc_attach(app: dict[str, Any], veth: VethPair, **args: Any) -> dict[str, Any]:
    params = {
        "program": f"{app['name']}/tc_count_a",
        "kind": "tc",
        "direction": "egress",
        "tc_backend": "tcx",
        "interface": veth.if_a,
        "netns": veth.ns_a,
        "state_dir": app["state_dir"],
    }
    params.update(args)
    return run_module("bpf_attach", params)


def state(app: dict[str, Any]) -> dict[str, Any]:
    return json.loads(Path(app["state_dir"], "apps", f"{app['name']}.json").read_text())


def prog_pin_id(app: dict[str, Any], prog: str) -> int:
    return bpftool("prog", "show", "pinned", str(PIN_ROOT / app["name"] / "progs" / prog))["id"]


def pinned_link(path: str | Path) -> dict[str, Any] | None:
    """The link pinned at path, as bpftool shows it; None when nothing is pinned there."""
    if not Path(path).exists():
        return None
    return bpftool("link", "show", "pinned", str(path))


def links_of(app: dict[str, Any]) -> list[str]:
    links = PIN_ROOT / app["name"] / "links"
    return sorted(p.name for p in links.iterdir()) if links.is_dir() else []


def xdp_prog(veth: VethPair) -> int | None:
    xdp = veth.link_json(veth.ns_b, veth.if_b).get("xdp")
    return xdp["prog"]["id"] if xdp else None


def udp_through(veth: VethPair, counts: dict[int, int]) -> dict[int, int]:
    """Send counts[port] datagrams a -> b per port; how many arrived per port."""
    with veth.receiver(veth.ns_b, veth.addr_b, list(counts)) as socks:
        for port, n in counts.items():
            veth.send_udp(veth.ns_a, veth.addr_b, port, n)
        return {port: drain(sock) for port, sock in socks.items()}


def tc_counts(app: dict[str, Any]) -> dict[int, int]:
    path = str(PIN_ROOT / app["name"] / "maps" / "tc_stats")
    entries = run_module("bpf_map_entries", {"path": path, "state": "gathered"})["entries"]
    return {e["key"]: e["value"] for e in entries}


def facts(app: dict[str, Any], netns: list[str]) -> dict[str, Any]:
    result = run_module(
        "bpf_facts", {"gather_subset": ["links", "attachments"], "netns": netns, "state_dir": app["state_dir"]}
    )
    assert result.get("failed") is not True and result["changed"] is False, result
    return result["ansible_facts"]["bpf"]


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for the kernel's deferred work (a deleted namespace's devices, a freed link) to be done."""
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what}")
        time.sleep(0.05)


def link_ids() -> set[int]:
    return {entry["id"] for entry in bpftool("link", "list")}


def remove(veth: VethPair, what: str) -> None:
    """Take the veth pair away: delete the interfaces, or both network namespaces (which takes them too)."""
    if what == "netns":
        veth.close()
    else:
        ip("-n", veth.ns_a, "link", "del", veth.if_a)


def recreate(veth: VethPair, what: str) -> None:
    """The same names, addresses and neighbours again: new interfaces (new ifindexes), so new hooks."""
    if what == "netns":
        veth._build()  # the namespaces too; close() removes them again
        return
    ip("-n", veth.ns_a, "link", "add", veth.if_a, "type", "veth", "peer", "name", veth.if_b, "netns", veth.ns_b)
    for ns, ifname, addr in ((veth.ns_a, veth.if_a, veth.addr_a), (veth.ns_b, veth.if_b, veth.addr_b)):
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
        ip("-n", ns, "link", "set", ifname, "up")
    mac_a, mac_b = veth.mac(veth.ns_a, veth.if_a), veth.mac(veth.ns_b, veth.if_b)
    ip("-n", veth.ns_a, "neigh", "replace", veth.addr_b, "lladdr", mac_b, "dev", veth.if_a, "nud", "permanent")
    ip("-n", veth.ns_b, "neigh", "replace", veth.addr_a, "lladdr", mac_a, "dev", veth.if_b, "nud", "permanent")


# --- item 5: on_conflict=replace between applications, and conflict messages ---------------------------------------


def test_replace_takes_another_applications_hook_and_both_records_stay_true(
    app_a: dict[str, Any], app_b: dict[str, Any], veth: VethPair
) -> None:
    deploy(app_a)
    deploy(app_b)
    a_id, b_id = prog_pin_id(app_a, "xdp_drop_7777"), prog_pin_id(app_b, "xdp_drop_7778")
    held = attach(app_a, veth, "xdp_drop_7777")
    assert held["changed"] is True and held["action"] == "attach", held
    hook = held["hook"]
    a_pin = PIN_ROOT / app_a["name"] / "links" / hook
    b_pin = PIN_ROOT / app_b["name"] / "links" / hook
    assert udp_through(veth, {7777: N, 7778: N}) == {7777: 0, 7778: N}

    # Without on_conflict=replace: refused, naming the application that holds the hook; nothing changes.
    refused = attach(app_b, veth, "xdp_drop_7778")
    assert refused.get("failed") is True and refused["changed"] is False, refused
    assert f"held by application {app_a['name']}" in refused["msg"], refused["msg"]
    assert "not deployed by cnf.ebpf" not in refused["msg"] and f"id {a_id}" in refused["msg"]
    assert "on_conflict=replace" in refused["msg"]
    assert xdp_prog(veth) == a_id and not b_pin.exists() and hook not in state(app_b).get("attachments", {})

    # Check mode says what would happen and does nothing; while A's lock is held elsewhere, nothing happens either.
    checked = attach_check(app_b, veth, "xdp_drop_7778", on_conflict="replace")
    assert checked["changed"] is True and checked["action"] == "replace", checked
    assert checked["replaced"]["application"] == app_a["name"]
    with file_lock(f"app-{app_a['name']}", 5):
        busy = attach(app_b, veth, "xdp_drop_7778", on_conflict="replace", lock_timeout=1)
    assert busy.get("failed") is True and f"app-{app_a['name']}.lock" in busy["msg"], busy
    assert xdp_prog(veth) == a_id and a_pin.exists() and not b_pin.exists()
    assert hook in state(app_a)["attachments"] and hook not in state(app_b).get("attachments", {})

    taken = attach(app_b, veth, "xdp_drop_7778", on_conflict="replace")
    assert taken["changed"] is True and taken["action"] == "replace", taken
    assert taken["replaced"]["application"] == app_a["name"] and taken["replaced"]["prog_id"] == a_id
    assert any(app_a["name"] in reason for reason in taken["reasons"]), taken["reasons"]
    assert udp_through(veth, {7777: N, 7778: N}) == {7777: N, 7778: 0}  # B's program holds the hook

    # B's record names a link pin that exists and runs B's program; A no longer claims the hook.
    record = state(app_b)["attachments"][hook]
    assert record["spec"]["link_pin"] == record["link_pin"] == str(b_pin)
    link = pinned_link(b_pin)
    assert link is not None and link["prog_id"] == b_id and record["prog_id"] == b_id
    assert hook not in state(app_a).get("attachments", {})
    assert state(app_a)["taken_over"][hook]["by"] == app_b["name"]
    assert not a_pin.exists() and links_of(app_a) == []

    # Reruns change nothing; A, asking for the hook again, is told B holds it.
    assert attach(app_b, veth, "xdp_drop_7778", on_conflict="replace")["changed"] is False
    assert attach(app_b, veth, "xdp_drop_7778")["changed"] is False
    again = attach(app_a, veth, "xdp_drop_7777")
    assert again.get("failed") is True and f"held by application {app_b['name']}" in again["msg"], again

    # Removing A (the application that lost the hook) leaves B's attachment alone.
    assert run_module("bpf_program", dict(app_a, state="absent"))["changed"] is True
    assert xdp_prog(veth) == b_id and pinned_link(b_pin) is not None
    assert udp_through(veth, {7777: N, 7778: N}) == {7777: N, 7778: 0}

    # B's absent leaves no link, pin or record.
    gone = attach(app_b, veth, "xdp_drop_7778", state="absent")
    assert gone["changed"] is True and gone["after"] == [], gone
    assert xdp_prog(veth) is None and not b_pin.exists() and hook not in state(app_b)["attachments"]
    assert attach(app_b, veth, "xdp_drop_7778", state="absent")["changed"] is False
    assert udp_through(veth, {7777: N, 7778: N}) == {7777: N, 7778: N}


def test_foreign_holders_are_not_deployed_by_cnf_ebpf_and_replacing_pins_our_own_link(
    app_b: dict[str, Any], veth: VethPair, pin_dir: Path, tmp_path: Path
) -> None:
    # Somebody else's program and link, pinned outside the collection's pin root.
    pin_dir.mkdir()
    obj = pin_dir / "obj"
    deploy(app_b)
    compiled = compile_bpf(DATA / "attach_xdp_drop.c", tmp_path / "foreign.o")
    subprocess.run(
        ["bpftool", "prog", "loadall", str(compiled), str(obj), "pinmaps", str(obj / "maps")],
        check=True,
        capture_output=True,
    )
    foreign_pin = pin_dir / "foreign_link"
    spec = _hooks.AttachSpec(kind="xdp", interface=veth.if_b, netns=veth.ns_b, link_pin=str(foreign_pin))
    with _libbpf.obj_get(str(obj / "xdp_drop_7777")) as fd:
        foreign = _attach.attach(spec, fd)
    assert udp_through(veth, {7777: N, 7778: N}) == {7777: 0, 7778: N}

    refused = attach(app_b, veth, "xdp_drop_7778")
    assert refused.get("failed") is True, refused
    assert "not deployed by cnf.ebpf" in refused["msg"] and "held by application" not in refused["msg"], refused
    assert f"id {foreign.prog_id}" in refused["msg"]

    taken = attach(app_b, veth, "xdp_drop_7778", on_conflict="replace")
    assert taken["changed"] is True and taken["action"] == "replace", taken
    assert taken["replaced"]["application"] is None and taken["replaced"]["link_id"] == foreign.link_id
    assert udp_through(veth, {7777: N, 7778: N}) == {7777: N, 7778: 0}
    record = state(app_b)["attachments"][taken["hook"]]
    link = pinned_link(record["link_pin"])
    assert record["link_pin"] == record["spec"]["link_pin"] and link is not None, record
    assert link["id"] == foreign.link_id and link["prog_id"] == taken["prog_id"]
    assert attach(app_b, veth, "xdp_drop_7778", on_conflict="replace")["changed"] is False

    gone = attach(app_b, veth, "xdp_drop_7778", state="absent")
    assert gone["changed"] is True and xdp_prog(veth) is None and not Path(record["link_pin"]).exists(), gone
    assert udp_through(veth, {7777: N, 7778: N}) == {7777: N, 7778: N}


# --- item 6: defunct links --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "what"), [("xdp", "interface"), ("xdp", "netns"), ("tcx", "interface")])
def test_a_defunct_link_is_shown_then_replaced_when_the_interface_is_back(
    app_a: dict[str, Any], veth: VethPair, kind: str, what: str
) -> None:
    if kind == "tcx" and not _hooks_netdev.probe_tcx():
        pytest.skip("kernel without tcx")
    deploy(app_a, XDP_SRC if kind == "xdp" else TC_SRC)

    def run(**args: Any) -> dict[str, Any]:
        return attach(app_a, veth, "xdp_drop_7777", **args) if kind == "xdp" else tc_attach(app_a, veth, **args)

    def traffic_is_handled() -> None:
        if kind == "xdp":
            assert udp_through(veth, {7777: N, 7778: N}) == {7777: 0, 7778: N}
        else:
            before = tc_counts(app_a)[0]
            assert udp_through(veth, {7100: N}) == {7100: N}
            assert tc_counts(app_a)[0] == before + N

    first = run()
    assert first["changed"] is True, first
    pin = PIN_ROOT / app_a["name"] / "links" / first["hook"]
    old_link = pinned_link(pin)
    assert old_link is not None
    traffic_is_handled()

    remove(veth, what)
    # The kernel keeps the pinned link, on no hook; bpf_facts says it is defunct.
    eventually(lambda: not pinned_link(pin).get("ifindex"), "detached from the deleted interface")
    assert pin.exists()
    seen = facts(app_a, [])
    (link,) = [entry for entry in seen["links"] if entry["id"] == old_link["id"]]
    assert link["defunct"] is True and link["ifindex"] == 0 and link["pins"] == [str(pin)]
    (att,) = [entry for entry in seen["attachments"] if entry["link_id"] == old_link["id"]]
    assert att["defunct"] is True and att["link_pin"] == str(pin) and att["interface"] is None

    recreate(veth, what)
    if kind == "xdp":  # check mode: the reason, and nothing done
        checked = attach_check(app_a, veth, "xdp_drop_7777")
        assert checked["changed"] is True and any("defunct" in reason for reason in checked["reasons"]), checked
        assert pinned_link(pin)["id"] == old_link["id"] and xdp_prog(veth) is None
    rerun = run()
    assert rerun.get("failed") is not True, rerun
    assert rerun["changed"] is True and rerun["action"] == "attach", rerun
    assert any("defunct" in reason and str(pin) in reason for reason in rerun["reasons"]), rerun["reasons"]
    new_link = pinned_link(pin)
    assert new_link is not None and new_link["id"] != old_link["id"]
    eventually(lambda: old_link["id"] not in link_ids(), "freed (the defunct link)")
    traffic_is_handled()  # on the new interface
    assert run()["changed"] is False
    netns = [veth.ns_b] if kind == "xdp" else [veth.ns_a]
    live = [entry for entry in facts(app_a, netns)["attachments"] if entry["link_id"] == new_link["id"]]
    assert [(entry["defunct"], entry["link_pin"]) for entry in live] == [(False, str(pin))]

    gone = run(state="absent")
    assert gone["changed"] is True and not pin.exists() and first["hook"] not in state(app_a)["attachments"], gone


def test_absent_removes_the_pin_and_record_of_a_hook_whose_interface_is_gone(
    app_a: dict[str, Any], veth: VethPair
) -> None:
    deploy(app_a)
    first = attach(app_a, veth, "xdp_drop_7777")
    pin = PIN_ROOT / app_a["name"] / "links" / first["hook"]
    link_id = pinned_link(pin)["id"]
    remove(veth, "interface")
    gone = attach(app_a, veth, "xdp_drop_7777", state="absent")
    assert gone.get("failed") is not True and gone["changed"] is True, gone
    assert not pin.exists() and first["hook"] not in state(app_a)["attachments"]
    eventually(lambda: link_id not in link_ids(), "freed (the defunct link)")
    assert attach(app_a, veth, "xdp_drop_7777", state="absent")["changed"] is False


# --- item 7: link pins in bpf_facts' attachments -------------------------------------------------------------------


def test_facts_attachments_name_the_link_pin(app_a: dict[str, Any], veth: VethPair) -> None:
    deploy(app_a)
    first = attach(app_a, veth, "xdp_drop_7777")
    pin = str(PIN_ROOT / app_a["name"] / "links" / first["hook"])
    (att,) = [
        entry
        for entry in facts(app_a, [veth.ns_b])["attachments"]
        if entry["interface"] == veth.if_b and entry["hook"] == "xdp"
    ]
    assert att["prog_id"] == first["prog_id"] and att["via"] == "link" and att["managed"] is True
    assert att["link_pin"] == pin and att["link_id"] == pinned_link(pin)["id"] and att["defunct"] is False
