"""Attachments (_attach, _libbpf_link) on the real kernel, proven with real packets between two namespaces.

Programs are loaded and pinned with bpftool (not the collection's loader); counters are read with bpftool too.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _attach, _hooks, _hooks_netdev
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._attach import Attachment, AttachSpec

from .conftest import REPO, bpftool, compile_bpf
from .netns import VethPair, drain, entered

DATA = Path(__file__).parent / "data"
N_DROP = 40
M_PASS = 25


# --- fixtures and helpers ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("attach-objs")
    return {
        name: compile_bpf(DATA / f"attach_{name}.c", out / f"attach_{name}.o")
        for name in ("xdp_drop", "tc_count", "cgroup_count")
    }


def load_all(obj: Path, pin_dir: Path, sub: str) -> Path:
    """bpftool prog loadall: programs pinned under pin_dir/sub, maps under pin_dir/sub/maps."""
    target = pin_dir / sub
    pin_dir.mkdir(exist_ok=True)
    subprocess.run(
        ["bpftool", "prog", "loadall", str(obj), str(target), "pinmaps", str(target / "maps")],
        check=True,
        capture_output=True,
    )
    return target


def counters(map_pin: Path) -> dict[int, int]:
    """{key: value} of a u32 -> u64 array map, summed over CPUs for per-CPU maps (bpftool's BTF view)."""
    out = {}
    for entry in bpftool("map", "dump", "pinned", str(map_pin)):
        fmt = entry["formatted"]
        if "values" in fmt:
            out[fmt["key"]] = sum(v["value"] for v in fmt["values"])
        else:
            out[fmt["key"]] = fmt["value"]
    return out


def prog_id(pin: Path) -> int:
    return bpftool("prog", "show", "pinned", str(pin))["id"]


def xdp_spec(veth: VethPair, pin_dir: Path, **kw: object) -> AttachSpec:
    return AttachSpec(kind="xdp", interface=veth.if_b, netns=veth.ns_b, link_pin=str(pin_dir / "xdp_link"), **kw)


def udp_through(veth: VethPair, counts: dict[int, int]) -> dict[int, int]:
    """Send counts[port] datagrams a -> b per port; return how many arrived per port."""
    with veth.receiver(veth.ns_b, veth.addr_b, list(counts)) as socks:
        for port, n in counts.items():
            veth.send_udp(veth.ns_a, veth.addr_b, port, n)
        return {port: drain(sock) for port, sock in socks.items()}


def xdp_of_link(veth: VethPair) -> object:
    return veth.link_json(veth.ns_b, veth.if_b).get("xdp")


# --- XDP -----------------------------------------------------------------------------------------------------------


def test_xdp_attach_drops_swap_and_detach(veth: VethPair, pin_dir: Path, objs: dict[str, Path]) -> None:
    progs = load_all(objs["xdp_drop"], pin_dir, "xdp")
    stats = progs / "maps" / "xdp_stats"
    spec = xdp_spec(veth, pin_dir)
    assert _attach.current(spec) == []

    with _libbpf.obj_get(str(progs / "xdp_drop_7777")) as fd:
        att = _attach.attach(spec, fd)
    assert att.via == "link" and att.mode in ("native", "generic")
    assert att.prog_id == prog_id(progs / "xdp_drop_7777") and att.prog_name == "xdp_drop_7777"
    assert Path(spec.link_pin).exists() and att.link_pin == spec.link_pin

    (cur,) = _attach.current(spec)
    assert (cur.prog_id, cur.via, cur.link_id, cur.link_pin) == (att.prog_id, "link", att.link_id, spec.link_pin)
    assert cur.mode == "native"  # veth has native XDP
    assert cur.describe()["prog_tag"] == bpftool("prog", "show", "id", str(cur.prog_id))["tag"]

    assert udp_through(veth, {7777: N_DROP, 7778: M_PASS}) == {7777: 0, 7778: M_PASS}
    assert counters(stats)[1] == N_DROP

    # A replace that names the wrong old program is refused (BPF_F_REPLACE), the link keeps its program.
    other_id = prog_id(progs / "xdp_drop_7778")
    stale = Attachment(other_id, "xdp_drop_7778", "", "link", cur.mode, link_id=cur.link_id, link_pin=cur.link_pin)
    with _libbpf.obj_get(str(progs / "xdp_drop_7778")) as fd, pytest.raises(BpfError) as err:
        _attach.replace(spec, stale, fd)
    assert err.value.errno == errno.EPERM and "concurrently" in str(err.value)

    with _libbpf.obj_get(str(progs / "xdp_drop_7778")) as fd:
        new = _attach.replace(spec, cur, fd)
    assert (new.prog_id, new.link_id, new.via) == (other_id, cur.link_id, "link")
    (cur2,) = _attach.current(spec)
    assert cur2.prog_id == other_id and cur2.link_id == cur.link_id
    assert udp_through(veth, {7777: N_DROP, 7778: M_PASS}) == {7777: N_DROP, 7778: 0}
    assert counters(stats)[1] == N_DROP + M_PASS

    _attach.detach(spec, cur2)
    assert _attach.current(spec) == []
    assert not Path(spec.link_pin).exists()
    assert xdp_of_link(veth) is None
    assert udp_through(veth, {7777: 3, 7778: 3}) == {7777: 3, 7778: 3}


def test_xdp_foreign_netlink_program_is_seen_refused_and_replaced(
    veth: VethPair, pin_dir: Path, objs: dict[str, Path]
) -> None:
    progs = load_all(objs["xdp_drop"], pin_dir, "xdp")
    spec = xdp_spec(veth, pin_dir)
    # Somebody else attaches through netlink (bpftool, no link). The thread is in ns_b, so bpftool is too, but it
    # keeps our mount namespace and sees the pins.
    with entered(veth.ns_b):
        subprocess.run(
            ["bpftool", "net", "attach", "xdp", "pinned", str(progs / "xdp_drop_7777"), "dev", veth.if_b],
            check=True,
            capture_output=True,
        )
    (foreign,) = _attach.current(spec)
    assert (foreign.prog_name, foreign.via, foreign.link_id) == ("xdp_drop_7777", "netlink", None)
    assert foreign.prog_id == prog_id(progs / "xdp_drop_7777") and foreign.mode == "native"

    with _libbpf.obj_get(str(progs / "xdp_drop_7778")) as fd, pytest.raises(BpfError) as err:
        _attach.attach(spec, fd)
    assert err.value.errno == errno.EEXIST
    assert f"xdp_drop_7777 (id {foreign.prog_id}" in str(err.value) and veth.if_b in str(err.value)
    assert not Path(spec.link_pin).exists()

    with _libbpf.obj_get(str(progs / "xdp_drop_7778")) as fd:
        new = _attach.replace(spec, foreign, fd)
    assert new.via == "netlink" and new.prog_name == "xdp_drop_7778"
    (cur,) = _attach.current(spec)
    assert cur.prog_id == new.prog_id and cur.mode == "native"
    assert udp_through(veth, {7777: M_PASS, 7778: N_DROP}) == {7777: M_PASS, 7778: 0}

    # The stale view (the foreign program) no longer matches: XDP_FLAGS_REPLACE refuses instead of clobbering.
    with _libbpf.obj_get(str(progs / "xdp_drop_7777")) as fd, pytest.raises(BpfError) as err:
        _attach.replace(spec, foreign, fd)
    assert err.value.errno == errno.EEXIST
    with pytest.raises(BpfError):
        _attach.detach(spec, foreign)
    assert _attach.current(spec)[0].prog_id == new.prog_id

    _attach.detach(spec, cur)
    assert _attach.current(spec) == []
    assert xdp_of_link(veth) is None


def test_xdp_generic_mode_and_mode_conflict(veth: VethPair, pin_dir: Path, objs: dict[str, Path]) -> None:
    progs = load_all(objs["xdp_drop"], pin_dir, "xdp")
    spec = xdp_spec(veth, pin_dir, xdp_mode="generic")
    with _libbpf.obj_get(str(progs / "xdp_drop_7777")) as fd:
        att = _attach.attach(spec, fd)
    (cur,) = _attach.current(spec)
    assert att.mode == cur.mode == "generic" and cur.via == "link"
    assert udp_through(veth, {7777: N_DROP, 7778: M_PASS}) == {7777: 0, 7778: M_PASS}
    _attach.detach(spec, cur)
    assert _attach.current(spec) == [] and xdp_of_link(veth) is None


def test_xdp_auto_falls_back_to_generic_when_the_driver_refuses(
    veth: VethPair, pin_dir: Path, objs: dict[str, Path]
) -> None:
    # veth refuses native XDP (ERANGE) for programs without frags support when the peer's MTU exceeds a page.
    for ns, ifname in ((veth.ns_a, veth.if_a), (veth.ns_b, veth.if_b)):
        subprocess.run(["ip", "-n", ns, "link", "set", "dev", ifname, "mtu", "9000"], check=True)
    progs = load_all(objs["xdp_drop"], pin_dir, "xdp")
    with _libbpf.obj_get(str(progs / "xdp_drop_7777")) as fd, pytest.raises(BpfError) as err:
        _attach.attach(xdp_spec(veth, pin_dir, xdp_mode="native"), fd)
    assert err.value.errno == errno.ERANGE
    spec = xdp_spec(veth, pin_dir)
    with _libbpf.obj_get(str(progs / "xdp_drop_7777")) as fd:
        att = _attach.attach(spec, fd)
    (cur,) = _attach.current(spec)
    assert att.mode == cur.mode == "generic"
    assert udp_through(veth, {7777: N_DROP, 7778: M_PASS}) == {7777: 0, 7778: M_PASS}
    _attach.detach(spec, cur)
    assert _attach.current(spec) == []


def test_pinned_link_outlives_the_process(veth: VethPair, pin_dir: Path, objs: dict[str, Path]) -> None:
    progs = load_all(objs["xdp_drop"], pin_dir, "xdp")
    spec = xdp_spec(veth, pin_dir)
    code = (
        "import sys\n"
        "from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf\n"
        "from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _attach, _hooks\n"
        "spec = _hooks.AttachSpec(kind='xdp', interface=sys.argv[1], netns=sys.argv[2], link_pin=sys.argv[3])\n"
        "with _libbpf.obj_get(sys.argv[4]) as fd:\n"
        "    print(_attach.attach(spec, fd).link_id)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / ".build" / "collections"))
    proc = subprocess.run(
        [sys.executable, "-c", code, veth.if_b, veth.ns_b, spec.link_pin, str(progs / "xdp_drop_7777")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    link_id = int(proc.stdout.strip())
    assert udp_through(veth, {7777: N_DROP, 7778: M_PASS}) == {7777: 0, 7778: M_PASS}
    (cur,) = _attach.current(spec)
    assert (cur.via, cur.link_id, cur.link_pin) == ("link", link_id, spec.link_pin)
    _attach.detach(spec, cur)
    assert _attach.current(spec) == [] and not Path(spec.link_pin).exists()


# --- tc ------------------------------------------------------------------------------------------------------------


def tc_spec(veth: VethPair, pin_dir: Path, backend: str) -> AttachSpec:
    return AttachSpec(
        kind="tc",
        interface=veth.if_a,
        netns=veth.ns_a,
        direction="egress",
        tc_backend=backend,
        priority=7,
        handle=3,
        link_pin=str(pin_dir / "tc_link"),
    )


def clsact_present(veth: VethPair) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", veth.ns_a, "tc", "-j", "qdisc", "show", "dev", veth.if_a],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return any(q.get("kind") == "clsact" for q in json.loads(out or "[]"))


@pytest.mark.parametrize("backend", ["tcx", "cls_bpf", "auto"])
def test_tc_egress_counts_swaps_and_detaches(
    veth: VethPair, pin_dir: Path, objs: dict[str, Path], backend: str
) -> None:
    if backend == "tcx" and not _hooks_netdev.probe_tcx():
        pytest.skip("kernel without tcx")
    progs = load_all(objs["tc_count"], pin_dir, "tc")
    stats = progs / "maps" / "tc_stats"
    spec = tc_spec(veth, pin_dir, backend)
    expect_mode = "cls_bpf" if backend == "cls_bpf" or not _hooks_netdev.probe_tcx() else "tcx"
    assert _attach.current(spec) == []

    with _libbpf.obj_get(str(progs / "tc_count_a")) as fd:
        att = _attach.attach(spec, fd)
    assert att.mode == expect_mode and att.prog_name == "tc_count_a"
    (cur,) = _attach.current(spec)
    assert (cur.prog_id, cur.mode) == (att.prog_id, expect_mode)
    if expect_mode == "tcx":
        assert (cur.via, cur.link_id, cur.link_pin) == ("link", att.link_id, spec.link_pin)
    else:
        assert (cur.via, cur.priority, cur.handle, cur.link_id) == ("netlink", 7, 3, None)
        assert not Path(spec.link_pin).exists()

    # Ingress of the other direction is untouched.
    assert _attach.current(AttachSpec(kind="tc", interface=veth.if_a, netns=veth.ns_a, direction="ingress")) == []

    assert udp_through(veth, {7100: N_DROP, 7200: M_PASS}) == {7100: N_DROP, 7200: M_PASS}
    assert counters(stats) == {0: N_DROP + M_PASS, 1: 0}

    with _libbpf.obj_get(str(progs / "tc_count_b")) as fd:
        new = _attach.replace(spec, cur, fd)
    (cur2,) = _attach.current(spec)
    assert cur2.prog_id == new.prog_id == prog_id(progs / "tc_count_b") and cur2.mode == expect_mode
    assert udp_through(veth, {7300: M_PASS}) == {7300: M_PASS}
    assert counters(stats) == {0: N_DROP + M_PASS, 1: M_PASS}

    _attach.detach(spec, cur2)
    assert _attach.current(spec) == []
    assert not Path(spec.link_pin).exists()
    assert not clsact_present(veth)
    assert udp_through(veth, {7100: 5}) == {7100: 5}
    assert counters(stats) == {0: N_DROP + M_PASS, 1: M_PASS}


def test_cls_bpf_foreign_filter_is_seen_refused_replaced(veth: VethPair, pin_dir: Path, objs: dict[str, Path]) -> None:
    progs = load_all(objs["tc_count"], pin_dir, "tc")
    spec = tc_spec(veth, pin_dir, "cls_bpf")
    pin_a = str(progs / "tc_count_a")
    with entered(veth.ns_a):  # tc in our mount namespace, so the pin is visible
        subprocess.run(["tc", "qdisc", "add", "dev", veth.if_a, "clsact"], check=True, capture_output=True)
        for prio, handle in (("7", "3"), ("9", "1")):
            where = ["dev", veth.if_a, "egress", "prio", prio, "handle", handle]
            subprocess.run(
                ["tc", "filter", "add", *where, "bpf", "da", "pinned", pin_a],
                check=True,
                capture_output=True,
            )
    found = _attach.current(spec)
    assert [(a.priority, a.handle, a.prog_name, a.via) for a in found] == [
        (7, 3, "tc_count_a", "netlink"),
        (9, 1, "tc_count_a", "netlink"),
    ]
    with _libbpf.obj_get(str(progs / "tc_count_b")) as fd, pytest.raises(BpfError) as err:
        _attach.attach(spec, fd)
    assert err.value.errno == errno.EEXIST and "tc_count_a" in str(err.value) and "prio 7 handle 3" in str(err.value)

    with _libbpf.obj_get(str(progs / "tc_count_b")) as fd:
        _attach.replace(spec, found[0], fd)
    now = _attach.current(spec)
    assert [(a.priority, a.prog_name) for a in now] == [(7, "tc_count_b"), (9, "tc_count_a")]

    # Detaching ours keeps the other filter and its clsact qdisc.
    _attach.detach(spec, now[0])
    assert [(a.priority, a.prog_name) for a in _attach.current(spec)] == [(9, "tc_count_a")]
    assert clsact_present(veth)


# --- cgroups -------------------------------------------------------------------------------------------------------


@pytest.fixture
def cgroup() -> Iterator[Path]:
    root = Path(_hooks.cgroup2_root())
    path = root / f"cnf-t-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            # Stragglers (none expected) go back to the root cgroup so the directory can be removed.
            (root / "cgroup.procs").write_text(pid)
        path.rmdir()


def send_from_cgroup(cgroup: Path, veth: VethPair, port: int, count: int) -> None:
    """UDP to the loopback of our own netns, from a process that first joins the cgroup."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "for i in range(int(sys.argv[2])): s.sendto(b'x',('127.0.0.1',int(sys.argv[1])))\n"
    )
    script = f'echo $$ > {cgroup}/cgroup.procs && exec ip netns exec {veth.ns_a} "$@"'
    subprocess.run(
        ["sh", "-c", script, "sh", sys.executable, "-c", code, str(port), str(count)], check=True, capture_output=True
    )


def test_cgroup_link_counts_swaps_and_detaches(
    veth: VethPair, cgroup: Path, pin_dir: Path, objs: dict[str, Path]
) -> None:
    progs = load_all(objs["cgroup_count"], pin_dir, "cg")
    stats = progs / "maps" / "cg_stats"
    spec = AttachSpec(
        kind="cgroup", cgroup=str(cgroup), cgroup_attach_type="cgroup_inet_egress", link_pin=str(pin_dir / "cg_link")
    )
    assert _attach.current(spec) == []
    with _libbpf.obj_get(str(progs / "cg_count_a")) as fd:
        att = _attach.attach(spec, fd)
    (cur,) = _attach.current(spec)
    assert (cur.prog_id, cur.via, cur.link_id, cur.link_pin, cur.mode) == (
        att.prog_id,
        "link",
        att.link_id,
        spec.link_pin,
        "multi",
    )
    send_from_cgroup(cgroup, veth, 7100, N_DROP)
    assert counters(stats) == {0: N_DROP, 1: 0}
    veth.send_udp(veth.ns_a, "127.0.0.1", 7100, 5)  # a process outside the cgroup is not counted
    assert counters(stats) == {0: N_DROP, 1: 0}

    with _libbpf.obj_get(str(progs / "cg_count_b")) as fd:
        new = _attach.replace(spec, cur, fd)
    assert new.link_id == cur.link_id and new.prog_name == "cg_count_b"
    send_from_cgroup(cgroup, veth, 7200, M_PASS)
    assert counters(stats) == {0: N_DROP, 1: M_PASS}

    _attach.detach(spec, _attach.current(spec)[0])
    assert _attach.current(spec) == [] and not Path(spec.link_pin).exists()
    send_from_cgroup(cgroup, veth, 7200, 5)
    assert counters(stats) == {0: N_DROP, 1: M_PASS}


def test_cgroup_legacy_attachment_is_seen_replaced_detached(
    veth: VethPair, cgroup: Path, pin_dir: Path, objs: dict[str, Path]
) -> None:
    progs = load_all(objs["cgroup_count"], pin_dir, "cg")
    stats = progs / "maps" / "cg_stats"
    spec = AttachSpec(kind="cgroup", cgroup=str(cgroup), cgroup_attach_type="egress")
    subprocess.run(
        ["bpftool", "cgroup", "attach", str(cgroup), "egress", "pinned", str(progs / "cg_count_a"), "multi"],
        check=True,
        capture_output=True,
    )
    (cur,) = _attach.current(spec)
    assert (cur.prog_name, cur.via, cur.mode, cur.link_id) == ("cg_count_a", "legacy", "multi", None)
    with _libbpf.obj_get(str(progs / "cg_count_b")) as fd:
        _attach.replace(spec, cur, fd)
    (cur2,) = _attach.current(spec)
    assert cur2.prog_name == "cg_count_b" and cur2.via == "legacy"
    send_from_cgroup(cgroup, veth, 7100, M_PASS)
    assert counters(stats) == {0: 0, 1: M_PASS}
    _attach.detach(spec, cur2)
    assert _attach.current(spec) == []


# --- probes and errors ---------------------------------------------------------------------------------------------


def test_probe_tcx_matches_the_kernel() -> None:
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    assert _hooks_netdev.probe_tcx() is ((major, minor) >= (6, 6))


def test_missing_interface_and_netns_are_named(veth: VethPair) -> None:
    before = os.readlink("/proc/thread-self/ns/net")
    with pytest.raises(BpfError) as err:
        _attach.current(AttachSpec(kind="xdp", interface="nope0", netns=veth.ns_b))
    assert err.value.errno == errno.ENODEV and "nope0" in str(err.value) and veth.ns_b in str(err.value)
    with pytest.raises(BpfError) as err:
        _attach.current(AttachSpec(kind="xdp", interface="lo", netns="cnf-t-does-not-exist"))
    assert err.value.errno == errno.ENOENT
    # The thread is back in the original namespace after the failures.
    assert os.readlink("/proc/thread-self/ns/net") == before
