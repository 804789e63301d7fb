"""Environments a module cannot work in are refused up front, with a sentence that says what to fix, and nothing on
the host changes (issue 17, item 2). The refusals are produced for real: capabilities are taken away with setpriv,
which keeps uid 0 and empties the bounding set the way a container or a missing `become` does."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_module
from .netns import VethPair

DATA = Path(__file__).parent / "data"

NO_CAPS = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")


def drop(*caps: str) -> tuple[str, ...]:
    """setpriv taking just these capabilities (names as setpriv spells them: net_admin, sys_admin, bpf) away."""
    listed = ",".join(f"-{cap}" for cap in caps)
    return ("setpriv", f"--bounding-set={listed}", f"--inh-caps={listed}", "--")


def private_mounts(script: str) -> tuple[str, ...]:
    """A prefix running the module after `script` (sh; "$@" is the module's command) in a mount namespace of its
    own: what the script mounts or unmounts there is real for the module and invisible to the host."""
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh")


def refused(result: dict[str, Any], *missing: str) -> None:
    assert result.get("failed") is True, result
    assert "needs root" in result["msg"] and "become: true" in result["msg"], result["msg"]
    assert result.get("changed", False) is False
    for cap in missing:
        assert any(cap in m for m in result["missing_capabilities"]), (cap, result["missing_capabilities"])


def pins(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.exists() else []


def test_every_module_refuses_a_process_without_bpf_capabilities(pin_dir: Path, tmp_path: Path) -> None:
    pin_dir.mkdir()
    existing = pin_dir / "existing"
    made = run_module("bpf_map", {"path": str(existing), "type": "ringbuf", "max_entries": 4096})
    assert not made.get("failed"), made
    counters = pin_dir / "counters"
    assert not run_module(
        "bpf_map", {"path": str(counters), "type": "hash", "key": "u32", "value": "u64", "max_entries": 8}
    ).get("failed")
    state_dir = tmp_path / "state"
    calls: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
        (
            "bpf_map",
            {"path": str(pin_dir / "new"), "type": "hash", "key": "u32", "value": "u32", "max_entries": 8},
            ("CAP_SYS_ADMIN",),
        ),
        ("bpf_map_entries", {"path": str(counters), "entries": [{"key": 1, "value": 2}]}, ("CAP_SYS_ADMIN",)),
        (
            "bpf_program",
            {"name": "refused", "src": str(DATA / "xdp_pass.c"), "pin_root": str(pin_dir), "state_dir": str(state_dir)},
            ("CAP_SYS_ADMIN",),
        ),
        (
            "bpf_attach",
            {"program": "refused/xdp_pass", "kind": "xdp", "interface": "lo", "state_dir": str(state_dir)},
            ("CAP_SYS_ADMIN", "CAP_NET_ADMIN"),
        ),
        ("bpf_facts", {"gather_subset": ["programs"]}, ("CAP_SYS_ADMIN",)),
        ("bpf_events", {"path": str(existing), "count": 1, "timeout": 0.1}, ("CAP_SYS_ADMIN",)),
        (
            "bpf_boot",
            {"name": "refused", "state_dir": str(state_dir), "unit_dir": str(tmp_path / "units")},
            ("CAP_SYS_ADMIN",),
        ),
    ]
    for name, args, missing in calls:
        refused(run_module(name, args, prefix=NO_CAPS), *missing)
    # nothing was created or written: no pin, no state, no unit, no entry
    assert pins(pin_dir) == ["counters", "existing"]
    assert not state_dir.exists() and not (tmp_path / "units").exists()
    gathered = run_module("bpf_map_entries", {"path": str(counters), "state": "gathered"})
    assert gathered["entries"] == [], gathered


def test_each_refusal_names_only_what_is_missing(pin_dir: Path, tmp_path: Path) -> None:
    """CAP_NET_ADMIN is what attaching XDP needs beyond CAP_SYS_ADMIN; CAP_BPF without CAP_SYS_ADMIN is refused
    (objects and BTF are looked up by id), and a process holding CAP_SYS_ADMIN without CAP_BPF works."""
    r = run_module(
        "bpf_attach",
        {"program": "nothing/xdp_pass", "kind": "xdp", "interface": "lo", "state_dir": str(tmp_path / "s")},
        prefix=drop("net_admin"),
    )
    refused(r, "CAP_NET_ADMIN")
    assert r["missing_capabilities"] == ["CAP_NET_ADMIN (to attach to interfaces and cgroups)"]
    counters = pin_dir / "counters"
    made = run_module(
        "bpf_map", {"path": str(counters), "type": "hash", "key": "u32", "value": "u64", "max_entries": 8}
    )
    assert not made.get("failed"), made
    r = run_module(
        "bpf_map_entries", {"path": str(counters), "entries": [{"key": 7, "value": 9}]}, prefix=drop("sys_admin")
    )
    refused(r, "CAP_SYS_ADMIN")
    assert "CAP_BPF alone is not enough" in r["msg"]
    # CAP_SYS_ADMIN alone (no CAP_BPF) does all of it
    assert not run_module(
        "bpf_map_entries", {"path": str(counters), "entries": [{"key": 7, "value": 9}]}, prefix=drop("bpf")
    ).get("failed")
    facts = run_module(
        "bpf_facts", {"gather_subset": ["contents"], "maps": [{"path": str(counters)}]}, prefix=drop("bpf")
    )
    assert not facts.get("failed"), facts
    assert json.dumps(facts["ansible_facts"]["bpf"]["contents"]).count('"value": 9') == 1


def test_an_unprivileged_user_is_refused(pin_dir: Path) -> None:
    r = run_module(
        "bpf_map",
        {"path": str(pin_dir / "m"), "type": "hash", "key": "u32", "value": "u32", "max_entries": 8},
        prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"),
    )
    refused(r, "CAP_SYS_ADMIN")
    assert not pin_dir.exists() or pins(pin_dir) == []


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Small tmpfs mounts under tmp_path (unmounted afterwards): mount("name", "size=256k") -> its path."""
    made: list[Path] = []

    def mount(name: str, options: str = "size=4m") -> Path:
        path = tmp_path / name
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "cnf-test", str(path)], check=True)
        made.append(path)
        return path

    yield mount
    for path in reversed(made):
        subprocess.run(["umount", "-l", str(path)], check=False)


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(path: Path) -> None:
    with (path / "filler").open("wb") as f:
        try:
            while True:
                f.write(bytes(64 << 10))
                f.flush()
        except OSError:
            pass


def test_a_state_dir_that_cannot_be_written_is_refused_before_anything_is_deployed(
    pin_dir: Path, mounts: Callable[..., Path]
) -> None:
    app = {"src": str(DATA / "xdp_pass.c"), "pin_root": str(pin_dir)}
    pin_dir.mkdir()
    ro = mounts("ro")
    read_only(ro)
    full = mounts("full", "size=512k")
    fill(full)
    for state_dir, problem in ((ro, "read-only file system"), (full, "KiB free")):
        r = run_module("bpf_program", dict(app, name="refused", state_dir=str(state_dir / "cnf")))
        assert r.get("failed") is True and r["msg"].startswith("state_dir: ") and problem in r["msg"], r
        assert "nothing was changed" in r["msg"]
        assert pins(pin_dir) == [], "no pin before the state could be kept"
    # check mode writes no state: it is not refused
    assert not run_module("bpf_program", dict(app, name="refused", state_dir=str(ro / "cnf")), check=True).get("failed")
    # the control: the same task with a writable state dir deploys
    writable = mounts("rw")
    done = run_module("bpf_program", dict(app, name="refused", state_dir=str(writable / "cnf")))
    assert done.get("changed") is True, done
    run_module("bpf_program", dict(app, name="refused", state_dir=str(writable / "cnf"), state="absent"))


def test_an_attachment_is_not_made_when_its_record_cannot_be_kept(
    pin_dir: Path, veth: VethPair, mounts: Callable[..., Path]
) -> None:
    state = mounts("state")
    app = {"name": "rostate", "pin_root": str(pin_dir), "state_dir": str(state / "cnf")}
    assert run_module("bpf_program", dict(app, src=str(DATA / "xdp_pass.c"))).get("changed") is True
    attach = {
        "program": "rostate/xdp_pass",
        "kind": "xdp",
        "interface": veth.if_b,
        "netns": veth.ns_b,
        "pin_root": str(pin_dir),
        "state_dir": app["state_dir"],
    }
    try:
        read_only(state)
        r = run_module("bpf_attach", attach)
        assert r.get("failed") is True and "state_dir: " in r["msg"] and "read-only" in r["msg"], r
        assert veth.link_json(veth.ns_b, veth.if_b).get("xdp") is None, "nothing attached"
        subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
        assert run_module("bpf_attach", attach).get("changed") is True
        assert veth.link_json(veth.ns_b, veth.if_b).get("xdp") is not None
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(state)], check=False)
        run_module("bpf_program", dict(app, state="absent"))


def test_a_missing_or_too_old_clang_is_refused_with_what_to_install(pin_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "old-clang"
    old.mkdir()
    (old / "clang").write_text(
        "#!/bin/sh\necho 'Debian clang version 9.0.1-16.1'\necho 'Target: x86_64-pc-linux-gnu'\n"
    )
    (old / "clang").chmod(0o755)
    app = {
        "name": "noclang",
        "src": str(DATA / "xdp_pass.c"),
        "pin_root": str(pin_dir),
        "state_dir": str(tmp_path / "s"),
    }
    for path, problem in (
        (tmp_path / "empty", "clang is not installed or not on PATH: install clang and llvm"),
        (old, "is clang 9; CO-RE BPF objects need clang 10 or newer"),
    ):
        r = run_module("bpf_program", app, prefix=("env", f"PATH={path}"))
        assert r.get("failed") is True and problem in r["msg"], r
        assert pins(pin_dir) == []


def test_without_bpffs_every_module_says_so_and_mounts_none(tmp_path: Path) -> None:
    """bpffs really unmounted, in a private mount namespace of the module's process: each module refuses naming the
    option and the fs the path is on, and none of them mounts a bpffs behind the host's back."""
    marker = tmp_path / "mounted"
    unmounted = private_mounts(
        'while umount /sys/fs/bpf 2>/dev/null; do :; done; "$@"; status=$?; '
        f"grep -q ' - bpf ' /proc/self/mountinfo && touch {marker}; exit $status"
    )
    pin = "/sys/fs/bpf/cnf-test-unmounted"
    state_dir = str(tmp_path / "state")
    calls: list[tuple[str, dict[str, Any], str]] = [
        ("bpf_map", {"path": f"{pin}/m", "type": "hash", "key": "u32", "value": "u32", "max_entries": 8}, "path"),
        ("bpf_map_entries", {"path": f"{pin}/m", "entries": [{"key": 1, "value": 2}]}, "path"),
        ("bpf_program", {"name": "unmounted", "src": str(DATA / "xdp_pass.c"), "state_dir": state_dir}, "pin_root"),
        (
            "bpf_attach",
            {"program": "unmounted/xdp_pass", "kind": "xdp", "interface": "lo", "state_dir": state_dir},
            "pin_root",
        ),
        ("bpf_events", {"path": f"{pin}/events", "count": 1, "timeout": 0.1}, "path"),
    ]
    for name, args, option in calls:
        r = run_module(name, args, prefix=unmounted)
        assert r.get("failed") is True, (name, r)
        assert r["msg"].startswith(f"{option}: ") and "is not on a bpffs mount (it is on sysfs at /sys)" in r["msg"]
        assert "cnf.ebpf.bpf_host" in r["msg"], r["msg"]
        assert not marker.exists(), f"{name} mounted a bpffs"
    assert not Path(state_dir).exists()


def test_a_program_type_the_kernel_lacks_is_refused_by_probing(pin_dir: Path, tmp_path: Path) -> None:
    """lirc_mode2 programs need CONFIG_BPF_LIRC_MODE2, which the test host's kernel is built without: found by
    libbpf's probe (a minimal program of the type), not by the kernel version."""
    from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf

    if _libbpf.probe_prog_type("lirc_mode2") is not False:
        pytest.skip("this kernel has lirc_mode2 programs")
    app = {
        "name": "lirc",
        "src": str(DATA / "lirc_mode2.c"),
        "pin_root": str(pin_dir),
        "state_dir": str(tmp_path / "s"),
    }
    r = run_module("bpf_program", app)
    assert r.get("failed") is True, r
    assert (
        "cannot run the object: program lirc_decoder is of type lirc_mode2, a type it does not have (probed)"
        in r["msg"]
    ), r["msg"]
    assert pins(pin_dir) == [], "nothing pinned"
    assert not (tmp_path / "s" / "apps" / "lirc.json").exists()


def test_a_core_program_on_a_kernel_without_btf_is_refused_with_the_cause(pin_dir: Path, tmp_path: Path) -> None:
    """The kernel's BTF really unreadable for the module's process: an empty file bind-mounted over
    /sys/kernel/btf/vmlinux in a private mount namespace (and this host has no vmlinux image in libbpf's fallback
    paths), as on a kernel built without CONFIG_DEBUG_INFO_BTF."""
    empty = tmp_path / "no-btf"
    empty.write_bytes(b"")
    no_btf = private_mounts(f'mount --bind {empty} /sys/kernel/btf/vmlinux && exec "$@"')
    app = {
        "name": "corebtf",
        "src": str(DATA / "core_task.c"),
        "pin_root": str(pin_dir),
        "state_dir": str(tmp_path / "s"),
    }
    r = run_module("bpf_program", app, prefix=no_btf)
    assert r.get("failed") is True, r
    assert "needs the kernel's BTF (CO-RE relocations), and this kernel has none" in r["msg"], r["msg"]
    assert "CONFIG_DEBUG_INFO_BTF" in r["msg"] and "cnf.ebpf.bpf_host" in r["msg"]
    assert pins(pin_dir) == []
    # the control: with the kernel's BTF the same program loads
    assert run_module("bpf_program", app).get("changed") is True
    run_module("bpf_program", dict(app, state="absent"))
