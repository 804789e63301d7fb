"""cnf.ebpf.bpf_facts on maps of every type the kernel has: each is listed with its metadata, no type fails the task,
and the contents of those whose values are plain data are decoded (devmap/devmap_hash targets with their interface
names in the right network namespace and the program on them, cpumap queue sizes, prog_array program ids), while
socket maps are counted and the others say why they have no contents to show."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _abi

from .conftest import run_module
from .netns import VethPair, entered

SRC = str(Path(__file__).parent / "data" / "facts_map_types.c")
# Every map the object declares, by type.
OBJECT_MAPS = {
    "tx_port": "devmap",
    "tx_hash": "devmap_hash",
    "cpus": "cpumap",
    "jumps": "prog_array",
    "xsks": "xskmap",
    "socks": "sockmap",
    "sockh": "sockhash",
    "sk_store": "sk_storage",
    "inode_store": "inode_storage",
    "task_store": "task_storage",
    "cgrp_store": "cgrp_storage",
    "seen": "bloom_filter",
    "from_user": "user_ringbuf",
    "stacks": "stack_trace",
}
# Maps the test creates itself: name -> (type, key_size, value_size, max_entries).
OWN_MAPS = {
    "reuse": ("reuseport_sockarray", 4, 8, 4),
    "cgroups": ("cgroup_array", 4, 4, 4),
    "cg_store": ("cgroup_storage", 16, 8, 0),
    "pcg_store": ("percpu_cgroup_storage", 8, 8, 0),
    "queue": ("queue", 0, 4, 4),
    "ring": ("ringbuf", 0, 0, 4096 * 4),
}
NOT_DATA = {
    "sk_store",
    "inode_store",
    "task_store",
    "cgrp_store",
    "seen",
    "from_user",
    "cgroups",
    "queue",
    "ring",
}


@pytest.fixture
def world(tmp_path: Path, pin_dir: Path) -> Iterator[dict[str, Any]]:
    """The facts_map_types object deployed, a veth pair, and the maps a C object cannot declare pinned in pin_dir."""
    veth = VethPair()
    app = {"name": f"fm{uuid.uuid4().hex[:8]}", "state_dir": str(tmp_path / "state")}
    try:
        deployed = run_module("bpf_program", dict(app, src=SRC))
        assert deployed.get("failed") is not True and deployed["changed"], deployed
        pin_dir.mkdir()
        for name, (map_type, key_size, value_size, max_entries) in OWN_MAPS.items():
            with _bpf_map.map_create(map_type, name, key_size, value_size, max_entries, label=name) as bpf_map:
                bpf_map.pin(str(pin_dir / name))
        yield {
            "app": app,
            "veth": veth,
            "maps": f"/sys/fs/bpf/cnf/{app['name']}/maps",
            "progs": f"/sys/fs/bpf/cnf/{app['name']}/progs",
            "own": pin_dir,
        }
    finally:
        run_module("bpf_program", dict(app, state="absent"))
        veth.close()


def paths(world: dict[str, Any]) -> dict[str, str]:
    out = {name: f"{world['maps']}/{name}" for name in OBJECT_MAPS}
    out.update({name: str(world["own"] / name) for name in OWN_MAPS})
    return out


def facts(**args: Any) -> dict[str, Any]:
    result = run_module("bpf_facts", args)
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    return result["ansible_facts"]["bpf"]


def prog_id(path: str) -> int:
    return json.loads(
        subprocess.run(
            ["bpftool", "-j", "prog", "show", "pinned", path], capture_output=True, check=True, text=True
        ).stdout
    )["id"]


def ifindex(ns: str | None, ifname: str) -> int:
    args = ["-n", ns] if ns else []
    out = subprocess.run(["ip", "-j", *args, "link", "show", "dev", ifname], capture_output=True, check=True, text=True)
    return json.loads(out.stdout)[0]["ifindex"]


def test_every_map_type_is_listed_and_no_type_fails_contents(world: dict[str, Any]) -> None:
    """Each map is in facts.maps with its metadata; asking for the contents of all of them at once succeeds, each
    result either decoded or saying, with the map's path, why it has no contents to show."""
    by_path = paths(world)
    bpf = facts(gather_subset=["maps", "kernel"], maps=[{"name": n, "path": p} for n, p in by_path.items()])
    listed = {p: m for m in bpf["maps"] for p in m["pins"]}
    for name, path in by_path.items():
        want = OBJECT_MAPS.get(name) or OWN_MAPS[name][0]
        shown = json.loads(
            subprocess.run(["bpftool", "-j", "map", "show", "pinned", path], capture_output=True, check=True).stdout
        )
        got = listed[path]
        assert got["type"] == want and got["type_id"] == _abi.MAP_TYPES[want], got
        assert (got["id"], got["key_size"], got["value_size"], got["max_entries"]) == (
            shown["id"],
            shown["bytes_key"],
            shown["bytes_value"],
            shown["max_entries"],
        ), (name, got, shown)
        assert got["name"] == shown["name"] and isinstance(got["memlock"], int) and got["memlock"] > 0
        assert got["flags"] == _abi.flag_names(shown["flags"]) and {"map_extra", "btf_id"} <= set(got)
        result = bpf["contents"][name]
        assert result["id"] == got["id"] and result["type"] == want, result
        if name in NOT_DATA:
            assert "entries" not in result and path in result["error"] and want in result["error"], result
        elif want in ("sockmap", "sockhash", "reuseport_sockarray", "xskmap"):
            assert "entries" not in result and path in result["note"] and "sockets" in result["note"], result
        else:
            assert result["entries"] == [] and result["count"] == 0 and "error" not in result, (name, result)
    assert listed[by_path["cg_store"]]["entries"] is None  # not cheap to count: no count rather than a guess
    # The kernel facts probe every map type the collection knows (None: libbpf 1.1 cannot tell, e.g. arena).
    probed = bpf["kernel"]["features"]["map_types"]
    assert set(probed) == set(_abi.MAP_TYPES)
    assert all(probed[t] is True for t in {*OBJECT_MAPS.values(), "devmap_hash", "cgrp_storage"}), probed
    assert all(v in (True, False, None) for v in probed.values())


def test_device_and_program_maps_are_decoded(world: dict[str, Any]) -> None:
    """devmap slots are the target interfaces (names looked up in the namespace the facts call names, the host's
    otherwise), devmap_hash and cpumap values carry the program the kernel runs on them, prog_array slots the
    program ids held; the listing counts their occupied slots and socket maps are counted, not read."""
    veth: VethPair = world["veth"]
    maps, progs = world["maps"], world["progs"]
    lo = socket.if_nametoindex("lo")
    if_b = ifindex(veth.ns_b, veth.if_b)
    # The host's lo in slot 0, through bpf_map_entries (which runs in the host's namespace).
    wrote = run_module(
        "bpf_map_entries", {"path": f"{maps}/tx_port", "state": "merged", "entries": [{"key": 0, "value": lo}]}
    )
    assert wrote["changed"] is True, wrote
    # ns_b's veth end: the kernel resolves an ifindex in the writer's namespace, so write from inside ns_b.
    with entered(veth.ns_b):
        with _bpf_map.map_open(f"{maps}/tx_port") as devmap:
            devmap.update(struct.pack("=I", 3), struct.pack("=I", if_b))
        with _bpf_map.map_open(f"{maps}/tx_hash") as devmap_hash, _libbpf.obj_get(f"{progs}/xdp_on_egress") as egress:
            devmap_hash.update(struct.pack("=I", 70), struct.pack("=Ii", if_b, egress.fd))
    with _bpf_map.map_open(f"{maps}/cpus") as cpumap, _libbpf.obj_get(f"{progs}/xdp_on_cpu") as on_cpu:
        cpumap.update(struct.pack("=I", 0), struct.pack("=Ii", 256, on_cpu.fd))
    with _bpf_map.map_open(f"{maps}/jumps") as jumps, _libbpf.obj_get(f"{progs}/xdp_tail") as tail:
        jumps.update(struct.pack("=I", 1), struct.pack("=i", tail.fd))
    listener = socket.create_server(("127.0.0.1", 0))
    other = socket.create_server(("127.0.0.1", 0))
    try:
        with _bpf_map.map_open(f"{maps}/socks") as socks, _bpf_map.map_open(f"{maps}/sockh") as sockh:
            socks.update(struct.pack("=I", 2), struct.pack("=Q", listener.fileno()))  # 8-byte values: sockets' fds
            sockh.update(struct.pack("=I", 9), struct.pack("=I", other.fileno()))
        bpf = facts(
            gather_subset=["maps"],
            maps=[
                {"name": "host", "path": f"{maps}/tx_port"},
                {"name": "ns_b", "path": f"{maps}/tx_port", "netns": veth.ns_b},
                {"name": "to_b", "path": f"{maps}/tx_port", "netns": veth.ns_b, "query": "[?value.ifindex > `1`].key"},
                {"name": "hash", "path": f"{maps}/tx_hash", "netns": veth.ns_b},
                {"name": "cpus", "path": f"{maps}/cpus"},
                {"name": "jumps", "path": f"{maps}/jumps"},
                {"name": "socks", "path": f"{maps}/socks"},
                {"name": "sockh", "path": f"{maps}/sockh"},
                {"name": "xsks", "path": f"{maps}/xsks"},
            ],
        )
    finally:
        listener.close()
        other.close()
    contents = bpf["contents"]
    host = {e["key"]: e["value"] for e in contents["host"]["entries"]}
    assert contents["host"]["count"] == 2 and host[0] == {"ifindex": lo, "interface": "lo"}, contents["host"]
    in_b = {e["key"]: e["value"] for e in contents["ns_b"]["entries"]}
    assert in_b[3] == {"ifindex": if_b, "interface": veth.if_b}, in_b
    assert "note" not in contents["host"] and "error" not in contents["host"]
    assert contents["to_b"]["entries"] == [3]  # a JMESPath query over the decoded targets
    egress_id, cpu_id, tail_id = (prog_id(f"{progs}/{p}") for p in ("xdp_on_egress", "xdp_on_cpu", "xdp_tail"))
    assert contents["hash"]["entries"] == [
        {
            "key": 70,
            "value": {"ifindex": if_b, "interface": veth.if_b, "prog_id": egress_id, "prog_name": "xdp_on_egress"},
        }
    ]
    assert contents["cpus"]["entries"] == [
        {"key": 0, "value": {"qsize": 256, "prog_id": cpu_id, "prog_name": "xdp_on_cpu"}}
    ]
    assert contents["jumps"]["entries"] == [{"key": 1, "value": {"prog_id": tail_id, "prog_name": "xdp_tail"}}]
    # Socket maps: the kernel gives no socket back, so they are counted only (sockmap with 8-byte values answers
    # lookups with the socket's cookie, sockhash lists its keys); xskmap refuses user-space lookups altogether.
    assert contents["socks"]["count"] == 1 and contents["sockh"]["count"] == 1, contents
    assert "entries" not in contents["socks"] and "counted" in contents["socks"]["note"]
    assert contents["xsks"]["count"] is None and "refuses user-space lookups" in contents["xsks"]["note"]
    listed = {p: m for m in bpf["maps"] for p in m["pins"]}
    assert [listed[f"{maps}/{n}"]["entries"] for n in ("tx_port", "tx_hash", "cpus", "jumps", "xsks")] == [
        2,
        1,
        1,
        1,
        None,
    ]
