"""bpf_attach on tracing hooks (tracepoint, raw_tracepoint, fentry/fexit/fmod_ret, kprobe/kretprobe) on the real kernel.

Programs are deployed with bpf_program and count the getppid() calls of this test process (its pid is a `volatile
const` set through `constants`), so every count is exact: other processes calling getppid are not counted.
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf, _libbpf_link

from .conftest import application, bpftool, run_module

DATA = Path(__file__).parent / "data"
HOOKS_SRC = str(DATA / "trace_hooks.c")
FENTRY_SRC = str(DATA / "trace_fentry.c")
FMOD_RET_SRC = str(DATA / "trace_fmod_ret.c")
FUNC = "__do_sys_getppid"
PIN_ROOT = Path("/sys/fs/bpf/cnf")
NR_GETPPID = {"x86_64": 110, "aarch64": 173, "riscv64": 173, "loongarch64": 173, "ppc64le": 64, "s390x": 64}

if platform.machine() not in NR_GETPPID:
    pytest.skip(f"no getppid syscall number for {platform.machine()}", allow_module_level=True)


def has_kprobe_pmu() -> bool:
    return os.path.exists(os.path.join(_libbpf_link.KPROBE_PMU_DIR, "type"))


# --- fixtures and helpers ------------------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> Any:
    yield from application(tmp_path)


def other_app(tmp_path: Path) -> dict[str, Any]:
    return {"name": f"t{uuid.uuid4().hex[:8]}", "state_dir": str(tmp_path / "state2")}


def deploy(app: dict[str, Any], src: str = HOOKS_SRC, version: int = 1) -> dict[str, Any]:
    constants = {"target_pid": os.getpid()}
    if src == HOOKS_SRC:
        constants["nr_getppid"] = NR_GETPPID[platform.machine()]
    return run_module("bpf_program", dict(app, src=src, defines={"VERSION": version}, constants=constants))


def deploy_or_skip(app: dict[str, Any], src: str, what: str) -> dict[str, Any]:
    result = deploy(app, src)
    if result.get("failed") and ("EPERM" in result["msg"] or "ESRCH" in result["msg"] or "EINVAL" in result["msg"]):
        pytest.skip(f"this kernel refuses to load {what} programs: {result['msg']}")
    assert result["changed"], result
    return result


def attach(app: dict[str, Any], prog: str, kind: str, target: str | None, check: bool = False, **kw: Any) -> Any:
    params: dict[str, Any] = {"program": f"{app['name']}/{prog}", "kind": kind, "state_dir": app["state_dir"]}
    if target is not None:
        params["target"] = target
    params.update(kw)
    return run_module("bpf_attach", params, check=check)


def map_values(app: dict[str, Any], name: str) -> dict[int, int]:
    result = run_module("bpf_map_entries", {"path": str(PIN_ROOT / app["name"] / "maps" / name), "state": "gathered"})
    return {e["key"]: e["value"] for e in result["entries"]}


def getppid_calls(n: int) -> None:
    for _i in range(n):  # each call is a real syscall (glibc does not cache getppid)
        os.getppid()


def prog_pin_id(app: dict[str, Any], prog: str) -> int:
    return bpftool("prog", "show", "pinned", str(PIN_ROOT / app["name"] / "progs" / prog))["id"]


def links_of(prog_id: int) -> list[dict[str, Any]]:
    return [link for link in bpftool("link", "list") if link.get("prog_id") == prog_id]


def wait_no_links(prog_id: int) -> None:
    deadline = time.monotonic() + 5
    while links_of(prog_id) and time.monotonic() < deadline:
        time.sleep(0.05)


HOOKS = [
    pytest.param("tracepoint", "tp_getppid", "syscalls:sys_enter_getppid", 0, HOOKS_SRC, id="tracepoint"),
    pytest.param("raw_tracepoint", "raw_enter", "sys_enter", 1, HOOKS_SRC, id="raw_tracepoint"),
    pytest.param("raw_tracepoint", "btf_enter", "sys_enter", 2, HOOKS_SRC, id="raw_tracepoint-tp_btf"),
    pytest.param("fentry", "fentry_ppid", None, 2, FENTRY_SRC, id="fentry"),
    pytest.param("fexit", "fexit_ppid", FUNC, 3, FENTRY_SRC, id="fexit"),
    pytest.param("kprobe", "kprobe_ppid", FUNC, 4, HOOKS_SRC, id="kprobe"),
    pytest.param("kretprobe", "kretprobe_ppid", FUNC, 5, HOOKS_SRC, id="kretprobe"),
]


# --- the whole life of one hook ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "prog", "target", "slot", "src"), HOOKS)
def test_attach_count_upgrade_detach(
    app: dict[str, Any], kind: str, prog: str, target: str | None, slot: int, src: str
) -> None:
    if kind in ("kprobe", "kretprobe") and not has_kprobe_pmu():
        pytest.skip("the kernel has no kprobe PMU (CONFIG_KPROBES/CONFIG_KPROBE_EVENTS)")
    deploy_or_skip(app, src, kind)
    hook = f"{kind}-{(target or FUNC).replace(':', '_')}"
    link_pin = PIN_ROOT / app["name"] / "links" / hook
    v1 = prog_pin_id(app, prog)

    checked = attach(app, prog, kind, target, check=True)
    assert checked["changed"] is True and checked["action"] == "attach" and checked["hook"] == hook, checked
    assert not link_pin.exists() and links_of(v1) == []  # check mode attached nothing

    attached = attach(app, prog, kind, target)
    assert attached["changed"] is True and attached["action"] == "attach", attached
    assert attached["prog_id"] == v1 and attached["hook"] == hook
    (after,) = attached["after"]
    assert (after["via"], after["mode"], after["link_pin"]) == ("link", kind, str(link_pin))
    assert after["hook"] == f"{kind}/{target or FUNC}"
    link = bpftool("link", "show", "pinned", str(link_pin))
    assert link["prog_id"] == v1 and link["id"] == after["link_id"]

    again = attach(app, prog, kind, target)
    assert again["changed"] is False and again["action"] == "none", again

    getppid_calls(17)
    assert map_values(app, "hits")[slot] == 17
    assert map_values(app, "versions")[1] == 17

    # An upgrade moves the hook to v2 (make-before-break: a new link takes over the pin, the old one goes).
    upgraded = deploy(app, src, version=2)
    assert upgraded["changed"] is True and upgraded["swapped"] == [hook], upgraded
    v2 = prog_pin_id(app, prog)
    assert v2 != v1
    moved = bpftool("link", "show", "pinned", str(link_pin))
    assert moved["prog_id"] == v2 and moved["id"] != link["id"]
    wait_no_links(v1)
    assert links_of(v1) == []
    getppid_calls(5)
    versions = map_values(app, "versions")
    assert map_values(app, "hits")[slot] == 22  # counting went on in the same map, and only v2 counted
    assert (versions[1], versions[2]) == (17, 5)
    assert attach(app, prog, kind, target)["changed"] is False  # the upgrade already moved the hook

    checked = attach(app, prog, kind, target, check=True, state="absent")
    assert checked["changed"] is True and link_pin.exists()
    detached = attach(app, prog, kind, target, state="absent")
    assert detached["changed"] is True and detached["after"] == [], detached
    assert not link_pin.exists() and links_of(v2) == []
    getppid_calls(4)
    assert map_values(app, "hits")[slot] == 22  # the count stopped
    assert attach(app, prog, kind, target, state="absent")["changed"] is False


def test_removing_the_application_detaches_its_tracing_hooks(app: dict[str, Any]) -> None:
    deploy(app)
    attach(app, "tp_getppid", "tracepoint", "syscalls:sys_enter_getppid")
    attach(app, "raw_enter", "raw_tracepoint", "sys_enter")
    ids = [prog_pin_id(app, "tp_getppid"), prog_pin_id(app, "raw_enter")]
    assert all(links_of(i) for i in ids)
    assert run_module("bpf_program", dict(app, state="absent"))["changed"] is True
    for prog_id in ids:
        wait_no_links(prog_id)
        assert links_of(prog_id) == []
    assert not (PIN_ROOT / app["name"]).exists()


# --- conflicts and refusals ----------------------------------------------------------------------------------------


def test_programs_of_two_applications_share_a_tracing_hook(app: dict[str, Any], tmp_path: Path) -> None:
    """Tracing hooks run several programs; another application's program there is a neighbour, not a conflict."""
    deploy(app)
    other = other_app(tmp_path)
    try:
        deploy(other)
        theirs = attach(other, "raw_enter", "raw_tracepoint", "sys_enter")
        assert theirs["changed"] is True
        ours = attach(app, "raw_enter", "raw_tracepoint", "sys_enter")
        assert ours["changed"] is True and ours["action"] == "attach", ours
        assert theirs["prog_id"] in [a["prog_id"] for a in ours["before"]]
        assert {theirs["prog_id"], ours["prog_id"]} <= {a["prog_id"] for a in ours["after"]}
        assert links_of(theirs["prog_id"]) and links_of(ours["prog_id"])
        assert attach(app, "raw_enter", "raw_tracepoint", "sys_enter")["changed"] is False
        assert attach(other, "raw_enter", "raw_tracepoint", "sys_enter", state="absent")["changed"] is True
        settled = attach(app, "raw_enter", "raw_tracepoint", "sys_enter")
        assert settled["changed"] is False and [a["prog_id"] for a in settled["before"]] == [ours["prog_id"]]
    finally:
        run_module("bpf_program", dict(other, state="absent"))


def test_wrong_program_type_and_missing_target_are_refused(app: dict[str, Any]) -> None:
    deploy(app)
    wrong = attach(app, "tp_getppid", "raw_tracepoint", "sys_enter")
    assert wrong["failed"] is True and "tracepoint program" in wrong["msg"], wrong
    assert not (PIN_ROOT / app["name"] / "links" / "raw_tracepoint-sys_enter").exists()
    missing = attach(app, "tp_getppid", "tracepoint", None)
    assert missing["failed"] is True and "target" in missing["msg"]
    malformed = attach(app, "tp_getppid", "tracepoint", "sys_enter_getppid")
    assert malformed["failed"] is True and "category:name" in malformed["msg"], malformed
    unknown = attach(app, "tp_getppid", "tracepoint", "syscalls:sys_enter_no_such_call")
    assert unknown["failed"] is True and "ENOENT" in unknown["msg"], unknown
    fentry_on_tp = attach(app, "tp_getppid", "fentry", None)
    assert fentry_on_tp["failed"] is True and "without a kernel function target" in fentry_on_tp["msg"]


@pytest.mark.skipif(has_kprobe_pmu(), reason="the kernel has a kprobe PMU")
def test_kprobe_without_kprobe_pmu_fails_cleanly(app: dict[str, Any]) -> None:
    deploy(app)
    for kind, prog in (("kprobe", "kprobe_ppid"), ("kretprobe", "kretprobe_ppid")):
        result = attach(app, prog, kind, FUNC)
        assert result["failed"] is True and "no kprobe PMU" in result["msg"], result
        assert not (PIN_ROOT / app["name"] / "links" / f"{kind}-{FUNC}").exists()


def test_fentry_target_must_match_the_loaded_function(app: dict[str, Any]) -> None:
    deploy_or_skip(app, FENTRY_SRC, "fentry")
    result = attach(app, "fentry_ppid", "fentry", "__do_sys_getpid")
    assert result["failed"] is True and f"loaded for ({FUNC})" in result["msg"], result
    assert attach(app, "fentry_ppid", "fentry", FUNC)["hook"] == f"fentry-{FUNC}"


def test_fmod_ret(app: dict[str, Any]) -> None:
    deploy_or_skip(app, FMOD_RET_SRC, "fmod_ret")
    attached = attach(app, "fmod_ppid", "fmod_ret", None)
    assert attached["changed"] is True and attached["hook"] == f"fmod_ret-{FUNC}", attached
    getppid_calls(9)
    assert map_values(app, "hits")[6] == 9
    assert os.getppid() > 0  # returning 0 from fmod_ret does not override the call
    assert attach(app, "fmod_ppid", "fmod_ret", None, state="absent")["changed"] is True


def test_program_target_name_from_kernel_btf(app: dict[str, Any]) -> None:
    """tp_btf programs carry their target in their attach BTF like fentry programs: the name resolves through the
    kernel's BTF (vmlinux here)."""
    deploy(app)
    with _libbpf.obj_get(str(PIN_ROOT / app["name"] / "progs" / "btf_enter")) as fd:
        assert _libbpf_link.prog_target_name(fd) == "btf_trace_sys_enter"
    with _libbpf.obj_get(str(PIN_ROOT / app["name"] / "progs" / "raw_enter")) as fd:
        assert _libbpf_link.prog_target_name(fd) is None
