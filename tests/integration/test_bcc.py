"""bcc interop: a bcc-dialect program deployed by bpf_program (loader: bcc) is pinned, attached by bpf_attach,
counted, gathered and reset by bpf_map_entries, upgraded keeping its tables, like any program; compile errors and
process-bound hooks are reported; a table of a plain bcc script (not ours, not pinned) shows up in bpf_facts
decoded through the BTF bcc gives it. The host is prepared by the bpf_host role (bpf_host_bcc)."""

from __future__ import annotations

import glob
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import application, run_module, run_role
from .netns import VethPair, drain

DATA = Path(__file__).parent / "data"
SRC = DATA / "bcc_proto_counter.c"
UDP = 17


@pytest.fixture(scope="module", autouse=True)
def bcc_host(tmp_path_factory: pytest.TempPathFactory) -> None:
    """bpf_host with bpf_host_bcc: the running kernel (6.18 here) has no headers package, so the role links
    Debian's (make deps installs linux-headers-<arch>), which is enough for network programs."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    headers = sorted(glob.glob(f"/usr/src/linux-headers-*-{arch}"))
    work = tmp_path_factory.mktemp("bpf_host")
    run = run_role(
        work,
        [
            {
                "role": "cnf.ebpf.bpf_host",
                "vars": {
                    "bpf_host_install_packages": False,
                    "bpf_host_bcc": True,
                    "bpf_host_bcc_headers_dir": headers[-1] if headers else "",
                    "bpf_host_fstab": str(work / "fstab"),
                    "bpf_host_state_dir": str(work / "state"),
                },
            }
        ],
    )
    assert run.rc == 0, run.stdout
    assert Path(f"/lib/modules/{os.uname().release}/build/Makefile").exists()


@pytest.fixture
def app(tmp_path: Path) -> Any:
    yield from application(tmp_path, "bcc")


def deploy(app: dict[str, Any], src: Path = SRC, **args: Any) -> dict[str, Any]:
    return run_module("bpf_program", dict(app, loader="bcc", src=str(src), functions={"xdp_count": "xdp"}, **args))


def maps_dir(app: dict[str, Any]) -> Path:
    return Path("/sys/fs/bpf/cnf") / app["name"] / "maps"


def udp_counts(app: dict[str, Any]) -> dict[str, int] | None:
    entries = run_module("bpf_map_entries", {"path": str(maps_dir(app) / "by_proto"), "state": "gathered"})["entries"]
    return next((e["value"] for e in entries if e["key"] == UDP), None)


def send(veth: VethPair, count: int, payload: bytes = b"x" * 100) -> None:
    with veth.receiver(veth.ns_b, veth.addr_b, [7300]) as socks:
        veth.send_udp(veth.ns_a, veth.addr_b, 7300, count, payload)
        assert drain(socks[7300]) == count  # XDP_PASS: all of them arrived


def test_bcc_program_counts_real_packets_like_any_program(app: dict[str, Any], veth: VethPair) -> None:
    first = deploy(app)
    assert first.get("failed") is not True, first
    assert first["changed"] is True and first["source"]["loader"] == "bcc"
    assert sorted(p.name for p in maps_dir(app).iterdir()) == ["by_proto", "frames"]
    assert (Path("/sys/fs/bpf/cnf") / app["name"] / "progs" / "xdp_count").exists()
    again = deploy(app)
    assert again["changed"] is False and again["reasons"] == []  # content-keyed: nothing compiled

    attach = dict(app, program=f"{app['name']}/xdp_count", kind="xdp", interface=veth.if_b, netns=veth.ns_b)
    attach.pop("name")
    attached = run_module("bpf_attach", attach)
    assert attached["changed"] is True and attached.get("failed") is not True, attached
    send(veth, 50)
    # 100 bytes of payload + UDP 8 + IPv4 20 + Ethernet 14 per frame, as XDP sees it
    assert udp_counts(app) == {"packets": 50, "bytes": 50 * 142}

    # bpf_map_entries resets the table (overridden with nothing); a second run changes nothing
    reset = run_module(
        "bpf_map_entries", {"path": str(maps_dir(app) / "by_proto"), "state": "overridden", "entries": []}
    )
    assert reset["changed"] is True and reset.get("failed") is not True, reset
    assert udp_counts(app) is None
    assert (
        run_module("bpf_map_entries", {"path": str(maps_dir(app) / "by_proto"), "state": "overridden", "entries": []})[
            "changed"
        ]
        is False
    )
    send(veth, 7)
    assert udp_counts(app) == {"packets": 7, "bytes": 7 * 142}

    # bpf_facts sees it as the application's: the program, its maps decoded, its XDP attachment
    facts = run_module(
        "bpf_facts",
        {
            "gather_subset": ["programs", "attachments"],
            "netns": [veth.ns_b],
            "maps": [{"path": str(maps_dir(app) / "by_proto"), "query": "[?key == `17`]"}],
        },
    )["ansible_facts"]["bpf"]
    assert any(p["app"] == app["name"] and p["name"].startswith("xdp_count") for p in facts["programs"])
    assert any(a["interface"] == veth.if_b and a["managed"] for a in facts["attachments"])
    assert facts["contents"][str(maps_dir(app) / "by_proto")]["entries"] == [
        {"key": UDP, "value": {"packets": 7, "bytes": 7 * 142}}
    ]


def test_bcc_upgrade_keeps_the_tables_and_swaps_the_hook(app: dict[str, Any], veth: VethPair, tmp_path: Path) -> None:
    assert deploy(app)["changed"] is True
    attach = dict(app, program=f"{app['name']}/xdp_count", kind="xdp", interface=veth.if_b, netns=veth.ns_b)
    attach.pop("name")
    assert run_module("bpf_attach", attach).get("failed") is not True
    send(veth, 20)
    table_id = run_module("bpf_facts", {"gather_subset": ["maps"]})["ansible_facts"]["bpf"]["maps"]
    before = {m["id"] for m in table_id if m.get("pin") == str(maps_dir(app) / "by_proto")}
    v2 = tmp_path / "v2.c"
    v2.write_text("// v2\n" + SRC.read_text())
    upgraded = deploy(app, src=v2)
    assert upgraded["changed"] is True and upgraded.get("failed") is not True, upgraded
    assert upgraded["maps"]["by_proto"]["action"] == "reuse"
    assert upgraded["swapped"] == [f"xdp-{veth.ns_b}-{veth.if_b}"]
    after = {
        m["id"]
        for m in run_module("bpf_facts", {"gather_subset": ["maps"]})["ansible_facts"]["bpf"]["maps"]
        if m.get("pin") == str(maps_dir(app) / "by_proto")
    }
    assert after == before  # the same table: bcc reused the pinned map
    send(veth, 5)
    assert udp_counts(app) == {"packets": 25, "bytes": 25 * 142}  # counted across both versions


def test_bcc_errors_are_reported_and_change_nothing(app: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text(SRC.read_text().replace("frames.increment(0);", "frames.increment(0);\n\tnot_declared++;"))
    failed = deploy(app, src=bad)
    assert failed["failed"] is True and "bcc could not compile" in failed["msg"] and "not_declared" in failed["msg"]
    assert "error:" in failed["stderr"]
    assert not (Path("/sys/fs/bpf/cnf") / app["name"]).exists()

    refused = run_module("bpf_program", dict(app, loader="bcc", src=str(SRC), functions={"xdp_count": "socket_filter"}))
    assert refused["failed"] is True and "functions.xdp_count" in refused["msg"] and "module exits" in refused["msg"]
    missing = run_module("bpf_program", dict(app, loader="bcc", src=str(SRC), functions={"nope": "xdp"}))
    assert missing["failed"] is True and "functions.nope" in missing["msg"] and "xdp_count" in missing["msg"]
    assert not (Path("/sys/fs/bpf/cnf") / app["name"]).exists()


FOREIGN = r"""
import sys
sys.path.append("/usr/lib/python3/dist-packages")
from bcc import BPF
b = BPF(text='''
struct pair { u32 hits; u64 last_seen; };
BPF_HASH(bcc_foreign, u32, struct pair, 64);
int noop(void *ctx) { return 0; }
''')
t = b["bcc_foreign"]
for k in (1, 2, 3):
    leaf = t.Leaf()  # bcc's ctypes view has an explicit pad field: set the fields by name
    leaf.hits, leaf.last_seen = k * 10, k * 1000
    t[t.Key(k)] = leaf
print("ready", flush=True)
sys.stdin.read()
"""


def test_facts_read_a_plain_bcc_scripts_table() -> None:
    """A table nobody pinned, owned by a running bcc script: found by name or id, decoded through bcc's BTF."""
    script = subprocess.Popen(
        [sys.executable, "-c", FOREIGN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert script.stdout is not None and script.stdout.readline().strip() == "ready", script.stderr
        by_name = run_module("bpf_facts", {"gather_subset": ["kernel"], "maps": [{"map_name": "bcc_foreign"}]})
        contents = by_name["ansible_facts"]["bpf"]["contents"]["bcc_foreign"]
        assert sorted(contents["entries"], key=lambda e: e["key"]) == [
            {"key": k, "value": {"hits": k * 10, "last_seen": k * 1000}} for k in (1, 2, 3)
        ]
        by_id = run_module(
            "bpf_facts",
            {"gather_subset": ["kernel"], "maps": [{"id": contents["id"], "top": 1, "sort_by": "value.hits"}]},
        )
        assert by_id["ansible_facts"]["bpf"]["contents"][f"id:{contents['id']}"]["entries"] == [
            {"key": 3, "value": {"hits": 30, "last_seen": 3000}}
        ]
    finally:
        script.communicate(input="", timeout=30)
    gone = run_module("bpf_facts", {"gather_subset": ["kernel"], "maps": [{"map_name": "bcc_foreign"}]})
    assert gone["failed"] is True and "no map is named 'bcc_foreign'" in gone["msg"]
