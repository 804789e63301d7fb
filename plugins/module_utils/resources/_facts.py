# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cnf.ebpf.bpf_facts: what eBPF is doing on this host, read-only.

Everything here opens objects by id or pin for reading only and never writes to the kernel. Each gatherer returns
plain JSON-able data, bounded where it could grow with the host (pins walked up to a limit, map contents cut to
top-N by the caller).
"""

from __future__ import annotations

import errno
import heapq
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _libbpf, _libbpf_link, _libbpf_obj
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _attach, _entries, _hooks, _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._files import atomic_file
from ansible_collections.cnf.ebpf.plugins.module_utils.types import _abi, _btf, _codec, _map_codecs, _schema

BPFFS = "/sys/fs/bpf"
PIN_WALK_LIMIT = 20000


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def _boot_epoch() -> float:
    """Wall-clock time of boot, to turn the kernel's ns-since-boot load times into timestamps."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# --- kernel --------------------------------------------------------------------------------------------------------


def _probe_batch() -> bool:
    try:
        with _bpf_map.map_create("hash", "cnf_probe", 4, 4, 1, label="probe") as bpf_map:
            bpf_map.update(b"\0\0\0\0", b"\0\0\0\0")
            list(bpf_map.items())
            return bool(bpf_map.batch_works("lookup"))
    except BpfError:
        return False


def kernel_facts() -> dict[str, Any]:
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "bpf":
                mounts.append(fields[4])
    return {
        "release": os.uname().release,
        "btf_vmlinux": os.path.exists("/sys/kernel/btf/vmlinux"),
        "bpffs_mounts": mounts,
        "jit_enabled": _read("/proc/sys/net/core/bpf_jit_enable") == "1",
        "stats_enabled": _read("/proc/sys/kernel/bpf_stats_enabled") == "1",
        "unprivileged_bpf_disabled": _read("/proc/sys/kernel/unprivileged_bpf_disabled"),
        "possible_cpus": _libbpf.num_possible_cpus(),
        "features": {
            "map_types": {t: _maps.map_type_supported(t) for t in _abi.MAP_TYPES},
            "batch_map_ops": _probe_batch(),
            "tcx": _libbpf_link.probe_tcx(),
            # XDP bpf_links exist since 5.9; there is no cheap probe short of attaching, so read the release.
            "xdp_link": tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2]) >= (5, 9),
        },
    }


# --- pins ----------------------------------------------------------------------------------------------------------


def pins(root: str = BPFFS, limit: int = PIN_WALK_LIMIT) -> tuple[dict[str, dict[str, Any]], bool]:
    """{pin path: {kind, id}} under root, and whether the walk hit `limit`."""
    found: dict[str, dict[str, Any]] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if len(found) >= limit:
                return found, True
            path = os.path.join(dirpath, name)
            try:
                with _libbpf.obj_get(path) as fd:
                    kind = _libbpf.obj_kind(fd)
                    info = {"map": _libbpf.map_info, "prog": _libbpf.prog_info, "link": _libbpf.link_info}.get(kind)
                    found[path] = {"kind": kind, "id": info(fd)["id"] if info else None}
            except BpfError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM, errno.ENOENT, errno.EINVAL):
                    raise
    return found, False


def _pins_by(pinned: dict[str, dict[str, Any]], kind: str) -> dict[int, list[str]]:
    by_id: dict[int, list[str]] = {}
    for path, obj in pinned.items():
        if obj["kind"] == kind and obj["id"] is not None:
            by_id.setdefault(obj["id"], []).append(path)
    return by_id


def managed_app(paths: list[str], pin_root: str) -> str | None:
    """The bpf_program application a program or map belongs to, from where it is pinned."""
    for path in paths:
        rel = os.path.relpath(path, pin_root)
        parts = rel.split(os.sep)
        if not rel.startswith("..") and len(parts) == 3 and parts[1] in ("progs", "maps", "links"):
            return parts[0]
    return None


# --- objects -------------------------------------------------------------------------------------------------------


def programs(pinned: dict[str, dict[str, Any]], pin_root: str) -> list[dict[str, Any]]:
    by_id = _pins_by(pinned, "prog")
    boot = _boot_epoch()
    out = []
    for prog_id in _libbpf.prog_ids():
        try:
            with _libbpf.prog_fd_by_id(prog_id) as fd:
                info = _libbpf.prog_info(fd)
                map_ids = _libbpf_obj.prog_map_ids(fd)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:  # unloaded while we listed
                continue
            raise
        paths = sorted(by_id.get(prog_id, []))
        entry = {
            "id": prog_id,
            "name": info["name"],
            "type": info["type"],
            "tag": info["tag"],
            "loaded_at": _iso(boot + info["load_time_ns"] / 1e9),
            "map_ids": map_ids,
            "pins": paths,
            "app": managed_app(paths, pin_root),
            "verified_insns": info["verified_insns"],
        }
        if info["run_cnt"] or info["run_time_ns"]:  # only counted while kernel.bpf_stats_enabled is on
            entry.update(run_cnt=info["run_cnt"], run_time_ns=info["run_time_ns"])
        out.append(entry)
    return out


def _memlock(fd: _libbpf.Fd) -> int | None:
    text = _read(f"/proc/self/fdinfo/{fd.fd}") or ""
    for line in text.splitlines():
        if line.startswith("memlock:"):
            return int(line.split()[1])
    return None


def maps(pinned: dict[str, dict[str, Any]], pin_root: str, count_limit: int = 65536) -> list[dict[str, Any]]:
    by_id = _pins_by(pinned, "map")
    out = []
    for map_id in _libbpf.map_ids():
        try:
            with _libbpf.map_fd_by_id(map_id) as fd:
                info = _libbpf.map_info(fd)
                memlock = _memlock(fd)
                try:
                    entries = _cheap_count(fd, info, count_limit)
                except BpfError as exc:  # a count the kernel will not give for this map is no count, not a failure
                    if exc.errno == errno.ENOENT:
                        raise
                    entries = None
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise
        paths = sorted(by_id.get(map_id, []))
        out.append(
            {
                "id": map_id,
                "name": info["name"],
                "type": info["type"],
                "key_size": info["key_size"],
                "value_size": info["value_size"],
                "max_entries": info["max_entries"],
                "flags": info["flag_names"],
                "btf_id": info["btf_id"],
                "memlock": memlock,
                "entries": entries,
                "pins": paths,
                "app": managed_app(paths, pin_root),
                # The kernel's number for the type (the name is that number as text for types newer than this
                # collection), bloom filter hashes / arena address (map_extra), the vmlinux BTF type of a
                # struct_ops value, and the device of a map offloaded to a NIC (0: none).
                "type_id": info["type_id"],
                "map_extra": info["map_extra"],
                "btf_vmlinux_value_type_id": info["btf_vmlinux_value_type_id"],
                "offload_ifindex": info["ifindex"],
            }
        )
    return out


# Maps whose occupied keys get_next_key walks (and nothing else): counting their keys counts their entries.
_KEYS_ARE_ENTRIES = frozenset({"devmap_hash", "sockhash"})
# Array-like maps with holes: get_next_key walks every index and a lookup of an empty slot fails with ENOENT.
_SLOT_TYPES = frozenset({"devmap", "cpumap", "prog_array", "sockmap", "reuseport_sockarray", "xskmap", "cgroup_array"})
# Lookups the kernel refuses user space on a whole map type, whatever the slot holds: sockmaps with 4-byte values
# (ENOSPC: only an 8-byte socket cookie can be returned), xskmap and cgroup_array (EOPNOTSUPP/ENOTSUPP).
_LOOKUP_REFUSED = frozenset({errno.ENOSPC, errno.EOPNOTSUPP, _libbpf.ENOTSUPP})
# Element-by-element counts (one syscall per slot) stop being cheap beyond this many slots.
SLOT_COUNT_LIMIT = 4096


def count_entries(bpf_map: _bpf_map.BpfMap) -> int | None:
    """Occupied entries of a device, program or socket map, or None when the kernel does not let user space tell
    (its lookups are refused on that map type)."""
    if bpf_map.type in _KEYS_ARE_ENTRIES:
        return sum(1 for _key in bpf_map.iter_keys())
    count = 0
    for key in bpf_map.iter_keys():
        try:
            count += bpf_map.lookup(key) is not None
        except BpfError as exc:
            if exc.errno in _LOOKUP_REFUSED:
                return None
            raise
    return count


def _cheap_count(fd: _libbpf.Fd, info: dict[str, Any], limit: int) -> int | None:
    """Entries in the map when that is cheap: arrays are always full; hash-like maps up to `limit` are counted with
    batched key reads, device/program/socket maps up to SLOT_COUNT_LIMIT slots element by element where the kernel
    answers user-space lookups; others (queues, ringbufs, storages, big maps) are not counted (None)."""
    if info["type"] in _entries.ARRAY_KINDS or info["type"] in ("array_of_maps", "perf_event_array"):
        return info["max_entries"]
    slots = info["type"] in _SLOT_TYPES or info["type"] in _KEYS_ARE_ENTRIES
    if info["type"] not in _entries.HASH_KINDS and info["type"] != "hash_of_maps" and not slots:
        return None
    if info["max_entries"] > (SLOT_COUNT_LIMIT if slots else limit) or not info["key_size"]:
        return None
    dup = _libbpf.Fd(os.dup(fd.fd), fd.label)
    with _bpf_map.BpfMap(dup) as bpf_map:
        if slots:
            return count_entries(bpf_map)
        return sum(len(keys) for keys, _values in bpf_map.item_chunks(4096))


def _live_links() -> Iterator[tuple[int, dict[str, Any]]]:
    """(id, link_details) of every link in the kernel, skipping those freed while we walk."""
    for link_id in _libbpf.link_ids():
        try:
            with _libbpf.link_fd_by_id(link_id) as fd:
                details = _libbpf_link.link_details(fd)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise
        yield link_id, details


def links(pinned: dict[str, dict[str, Any]], pin_root: str) -> list[dict[str, Any]]:
    by_id = _pins_by(pinned, "link")
    out = []
    for link_id, details in _live_links():
        paths = sorted(by_id.get(link_id, []))
        details = {k: v for k, v in details.items() if k != "raw"}
        details.setdefault("defunct", False)  # only xdp, tcx, netkit and cgroup links can be told defunct
        details.update(pins=paths, app=managed_app(paths, pin_root))
        out.append(details)
    return out


def attachments(
    netns_names: list[str | None], managed_progs: set[int], pinned: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """XDP and tc programs per interface of the host and the named network namespaces, flagging programs that no
    bpf_program application deployed, with the pin of the link holding each (from `pinned`, the pins walk; walked
    here when not given); then the defunct XDP and tcx links (their interface went away: the kernel keeps them, on
    no hook, while pinned), with `defunct: true`, no interface and ifindex 0."""
    link_pins: dict[int, list[str]] | None = _pins_by(pinned, "link") if pinned is not None else None

    def pin_of(link_id: int | None) -> str | None:
        nonlocal link_pins
        if link_id is None:
            return None
        if link_pins is None:
            link_pins = _pins_by(pins()[0], "link")
        paths = sorted(link_pins.get(link_id, []))
        return paths[0] if paths else None

    out = []
    for netns in netns_names:
        with _hooks.in_netns(netns):
            names = [name for _index, name in socket.if_nameindex()]
        for name in names:
            hooks = [("xdp", _hooks.AttachSpec(kind="xdp", interface=name, netns=netns))]
            hooks += [
                (f"tc_{d}", _hooks.AttachSpec(kind="tc", direction=d, interface=name, netns=netns))
                for d in ("ingress", "egress")
            ]
            for hook, spec in hooks:
                for att in _attach.current(spec):
                    described = att.describe()
                    described.update(interface=name, netns=netns, hook=hook, managed=att.prog_id in managed_progs)
                    described.update(link_pin=described["link_pin"] or pin_of(att.link_id), defunct=False)
                    out.append(described)
    for link_id, details in _live_links():
        if details["type"] not in ("xdp", "tcx") or not details.get("defunct"):
            continue
        name, tag = "", ""
        try:
            with _libbpf.prog_fd_by_id(details["prog_id"]) as fd:
                info = _libbpf.prog_info(fd)
            name, tag = info["name"], info["tag"]
        except BpfError:
            pass
        hook = "xdp" if details["type"] == "xdp" else f"tc_{details.get('attach_type', '').replace('tcx_', '')}"
        out.append(
            {
                "hook": hook,
                "prog_id": details["prog_id"],
                "prog_name": name,
                "prog_tag": tag,
                "via": "link",
                "mode": "tcx" if details["type"] == "tcx" else None,
                "link_id": link_id,
                "link_pin": pin_of(link_id),
                "ifindex": 0,
                "interface": None,
                "netns": None,
                "managed": details["prog_id"] in managed_progs,
                "defunct": True,
            }
        )
    return out


# --- contents ------------------------------------------------------------------------------------------------------


def _fold(values: list[Any], pick: Any) -> Any:
    """max/min across CPUs, field by field for dicts of numbers; other values are CPU 0's."""
    first = values[0]
    if isinstance(first, bool) or not isinstance(first, (int, float, dict)):
        return first
    if isinstance(first, dict):
        return {k: _fold([v[k] for v in values], pick) for k in first}
    return pick(values)


FIELD_AGGREGATES = ("sum", "max", "min", "min_nonzero")


def _min_nonzero(values: list[Any]) -> Any:
    """The smallest non-zero value (0 when all are): e.g. the earliest timestamp among the CPUs that saw an entry."""
    return min((v for v in values if v), default=0)


_FIELD_FOLDS = {"sum": sum, "max": max, "min": min, "min_nonzero": _min_nonzero}


def aggregate(value: Any, how: str, fields: dict[str, str] | None = None) -> Any:
    """A decoded per-CPU value ({per_cpu, sum}) as asked: sum, max, min, or none (the per-CPU list). `fields` combines
    the named top-level fields of a struct value their own way (FIELD_AGGREGATES), e.g. packets summed but
    first_seen the smallest non-zero and last_seen the largest."""
    if not (isinstance(value, dict) and "per_cpu" in value):
        return value
    if how == "none":
        return value["per_cpu"]
    combined = value["sum"] if how == "sum" else _fold(value["per_cpu"], max if how == "max" else min)
    if not fields:
        return combined
    if not isinstance(combined, dict):
        raise ValueError("aggregate_fields: the values are not structs, so they have no fields to combine")
    combined = dict(combined)
    for name, field_how in fields.items():
        if field_how not in _FIELD_FOLDS:
            raise ValueError(f"aggregate_fields.{name}: {field_how!r} is not one of {', '.join(FIELD_AGGREGATES)}")
        if name not in combined:
            raise ValueError(f"aggregate_fields.{name}: the value has no such field (fields: {', '.join(combined)})")
        per_cpu = [v[name] for v in value["per_cpu"]]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in per_cpu):
            raise ValueError(f"aggregate_fields.{name}: the field is not a number")
        combined[name] = _FIELD_FOLDS[field_how](per_cpu)
    return combined


def _field(value: Any, path: list[str]) -> Any:
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _result(emap: _entries.EntryMap, spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    result = {"path": spec.get("path"), "id": emap.map_id, "type": emap.type, **fields}
    untyped = [
        side
        for side, t, codec in (("key", emap.key_type, emap.key_codec), ("value", emap.value_type, emap.value_codec))
        if t is None and codec is not None and not isinstance(codec, _Decoder)  # _Decoder: the kernel's layout
    ]
    if untyped:
        result["note"] = (
            f"the map has no BTF type for its {' and '.join(untyped)}: shown as hex; "
            "declare key_type/value_type to decode them"
        )
    return result


def open_map_ref(spec: dict[str, Any]) -> tuple[str, _bpf_map.BpfMap | None]:
    """(label, open map) for a map given by `id` or kernel `map_name` (maps nobody pinned, e.g. a running bcc tool's
    tables); (path, None) for a pinned one, which EntryMap opens itself."""
    if spec.get("path"):
        return spec["path"], None
    if spec.get("id") is not None:
        return f"id {spec['id']}", _bpf_map.BpfMap(_libbpf.map_fd_by_id(int(spec["id"])))
    name = spec.get("map_name")
    found = []
    for map_id in _libbpf.map_ids():
        try:
            fd = _libbpf.map_fd_by_id(map_id)
        except _libbpf.BpfError:
            continue  # freed meanwhile
        with fd:
            if _libbpf.map_info(fd)["name"] == name:
                found.append(map_id)
    if not found:
        raise ValueError(f"map_name: no map is named {name!r} (names are cut to 15 characters: {str(name)[:15]!r})")
    if len(found) > 1:
        raise ValueError(f"map_name: {len(found)} maps are named {name!r} (ids {found}); give one id instead")
    return f"{name} (id {found[0]})", _bpf_map.BpfMap(_libbpf.map_fd_by_id(found[0]))


# Map types whose contents are not data bpf_facts can read, and why: asking for them gives that map's result an
# `error` saying so, and the other maps are still gathered.
CONTENTS_NOT_DATA: dict[str, str] = {
    "queue": "reading a queue pops it (the kernel cannot look past its head); cnf.ebpf.bpf_map_entries "
    "state=gathered reads it and pushes the values back",
    "stack": "reading a stack pops it (the kernel cannot look past its top); cnf.ebpf.bpf_map_entries "
    "state=gathered reads it and pushes the values back",
    "ringbuf": "it carries events, not entries; capture them with cnf.ebpf.bpf_events",
    "perf_event_array": "it carries events, not entries; capture them with cnf.ebpf.bpf_events",
    "user_ringbuf": "it carries events user space writes for programs to drain; it has no entries to read",
    "sk_storage": "its values hang off sockets and are looked up by a socket's fd; the kernel cannot list them",
    "inode_storage": "its values hang off inodes and are looked up by a file's fd; the kernel cannot list them",
    "task_storage": "its values hang off tasks and are looked up by a pidfd; the kernel cannot list them",
    "cgrp_storage": "its values hang off cgroups and are looked up by a cgroup's fd; the kernel cannot list them",
    "bloom_filter": "a bloom filter only answers whether a value may be in it; it holds no entries to list",
    "struct_ops": "its value is a table of kernel operations implemented by BPF programs, not data",
    "arena": "it is memory that programs and user space share through mmap, not entries",
    "cgroup_array": "its values are cgroups, which the kernel does not show to user space (lookups are refused)",
}
# Socket maps: the kernel shows user space no socket (at most its cookie), so only their occupied slots are counted.
SOCKET_MAP_TYPES = frozenset({"sockmap", "sockhash", "reuseport_sockarray", "xskmap"})
# Plain data the collection decodes by itself: XDP redirect targets, tail-call tables, stack traces, cgroup storage.
_KERNEL_VIEW_TYPES = frozenset(
    {"devmap", "devmap_hash", "cpumap", "prog_array", "stack_trace", "cgroup_storage", "percpu_cgroup_storage"}
)
_U32 = struct.Struct("=I")
_U32_PAIR = struct.Struct("=II")


def _ifnames(netns: str | None) -> dict[int, str]:
    """Interface names by ifindex in a named network namespace (None: the host's, where this runs)."""
    try:
        with _hooks.in_netns(netns):
            return dict(socket.if_nameindex())
    except BpfError as exc:
        raise ValueError(f"netns: {exc}") from exc


class _ProgNames:
    """Program names by id, looked up once each (None for an id that is gone, or 0: no program)."""

    def __init__(self) -> None:
        self._names: dict[int, str | None] = {0: None}

    def __call__(self, prog_id: int) -> str | None:
        if prog_id not in self._names:
            try:
                with _libbpf.prog_fd_by_id(prog_id) as fd:
                    self._names[prog_id] = _libbpf.prog_info(fd)["name"]
            except BpfError:
                self._names[prog_id] = None
        return self._names[prog_id]


class _KernelView:
    """A map whose values are plain data with a meaning the kernel defines (no BTF says it), decoded here, with the
    face EntryMap shows map_contents: read(), decode_key/decode_value, map_id, type, per_cpu and the key/value types
    and codecs (`_result` notes the sides shown as hex)."""

    def __init__(self, bpf_map: _bpf_map.BpfMap, key_codec: Any, value_codec: Any, key_type: Any = None) -> None:
        self.bpf_map = bpf_map
        self.map_id: int = bpf_map.info["id"]
        self.type: str = bpf_map.type
        self.per_cpu = bpf_map.ncpus if self.type in _abi.PERCPU_MAP_TYPES else 0
        self.key_type: Any = key_type
        self.value_type: Any = None
        self.key_codec = key_codec
        self.value_codec = value_codec

    def read(self) -> dict[bytes, bytes]:
        return self.bpf_map.read_all()

    def decode_key(self, raw: bytes) -> Any:
        return self.key_codec.decode(raw)

    def decode_value(self, raw: bytes) -> Any:
        return self.value_codec.decode(raw)

    def close(self) -> None:
        self.bpf_map.close()

    def __enter__(self) -> _KernelView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Decoder:
    """A codec-like wrapper around a decode function (these views are read-only)."""

    def __init__(self, decode: Any) -> None:
        self.decode = decode


def _typed_codec(
    bpf_map: _bpf_map.BpfMap, side: str, btf_type: Any, spec: dict[str, Any], fallback: Any
) -> tuple[Any, Any]:
    """(type, codec) of one side of a cgroup storage or stack trace map: its BTF, else the declared
    key_type/value_type, else `fallback` (a schema, or None for hex)."""
    size = bpf_map.key_size if side == "key" else bpf_map.value_size
    formats = {
        p: f for p, f in (spec.get("formats") or {}).items() if p == side or p.startswith((f"{side}.", f"{side}["))
    }
    t = btf_type
    if t is None and spec.get(f"{side}_type") is not None:
        t = _schema.type_from_schema(spec[f"{side}_type"], path=f"{side}_type")
        if t.size != size:
            raise ValueError(f"{side}_type: {_btf.type_name(t)} is {t.size} bytes, the map's {side} is {size}")
    if t is None and fallback is not None:
        t = _schema.type_from_schema(fallback, path=side)
    if t is None:
        if formats:
            raise ValueError(f"formats: the map's {side} has no type; declare {side}_type to use formats on it")
        return None, _map_codecs.hexdump_codec(size, root=side)
    return t, _codec.compile_codec(t, formats, root=side)


def _kernel_view(bpf_map: _bpf_map.BpfMap, spec: dict[str, Any], label: str) -> _KernelView:
    """Decoders for a map type in _KERNEL_VIEW_TYPES (the caller keeps the map open until the view is closed)."""
    map_type = bpf_map.type
    prog_name = _ProgNames()
    u32 = _schema.type_from_schema("u32", path="key")  # slot, CPU, stack id: the kernel's u32 keys
    index = _codec.compile_codec(u32, root="key")
    if map_type not in ("cgroup_storage", "percpu_cgroup_storage"):
        declared = [k for k in ("key_type", "value_type", "formats") if spec.get(k)]
        if declared and map_type in ("prog_array", "stack_trace"):
            raise ValueError(
                f"{declared[0]}: {label} is a {map_type} map, whose entries the kernel defines; "
                "they take no declared types or formats"
            )
    if map_type in ("devmap", "devmap_hash", "cpumap"):
        # Values as the kernel gives them back: an ifindex (devmap) or queue size (cpumap), then with 8-byte values
        # the id of the program run on the redirected frames (struct bpf_devmap_val / bpf_cpumap_val: an fd on
        # write, the id on read). The kernel resolved the ifindex in the writer's network namespace: names are
        # looked up in the one the map's `netns` names (the host's by default).
        first = "qsize" if map_type == "cpumap" else "ifindex"
        names = _ifnames(spec.get("netns")) if first == "ifindex" else {}

        def decode_target(raw: bytes) -> dict[str, Any]:
            value = _U32.unpack_from(raw)[0]
            out: dict[str, Any] = {first: value}
            if first == "ifindex":
                out["interface"] = names.get(value)
            if len(raw) >= 8:
                prog_id = _U32_PAIR.unpack_from(raw)[1]
                out.update(prog_id=prog_id, prog_name=prog_name(prog_id))
            return out

        return _KernelView(bpf_map, index, _Decoder(decode_target), u32)
    if map_type == "prog_array":
        # User-space lookups give the id of the program in the slot (updates take its fd).
        def decode_prog(raw: bytes) -> dict[str, Any]:
            prog_id = _U32.unpack_from(raw)[0]
            return {"prog_id": prog_id, "prog_name": prog_name(prog_id)}

        return _KernelView(bpf_map, index, _Decoder(decode_prog), u32)
    if map_type == "stack_trace":
        # Instruction addresses, innermost first (the unused tail is zero); build ids stay hex.
        count = bpf_map.value_size // 8
        frames = struct.Struct(f"={count}Q")
        build_ids = bool(bpf_map.info["flags"] & _abi.MAP_FLAGS["stack_build_id"])

        def decode_stack(raw: bytes) -> Any:
            return [f"{ip:#x}" for ip in frames.unpack_from(raw) if ip]

        value = _map_codecs.hexdump_codec(bpf_map.value_size) if build_ids else _Decoder(decode_stack)
        return _KernelView(bpf_map, index, value, u32)
    # cgroup storage: plain data keyed by (cgroup inode id, attach type), or the cgroup inode id alone.
    info = bpf_map.info
    key_btf, value_btf = _maps.read_btf_types(info["btf_id"], info["btf_key_type_id"], info["btf_value_type_id"])
    key_fallback = {
        16: {
            "name": "bpf_cgroup_storage_key",
            "fields": [{"name": "cgroup_inode_id", "type": "u64"}, {"name": "attach_type", "type": "u32"}],
        },
        8: "u64",
    }.get(bpf_map.key_size)
    key_type, key_codec = _typed_codec(bpf_map, "key", key_btf, spec, key_fallback)
    value_type, value_codec = _typed_codec(bpf_map, "value", value_btf, spec, None)
    if map_type == "percpu_cgroup_storage":
        value_codec = _map_codecs.PerCpuCodec(value_codec, bpf_map.ncpus)
    view = _KernelView(bpf_map, key_codec, value_codec)
    view.key_type, view.value_type = key_type, value_type
    return view


def _not_data(label: str, bpf_map: _bpf_map.BpfMap, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The result of a map whose contents bpf_facts does not decode (socket maps: counted only), or None."""
    map_type = bpf_map.type
    base = {"path": spec.get("path"), "id": bpf_map.info["id"], "type": map_type}
    if map_type in CONTENTS_NOT_DATA:
        return dict(base, count=None, error=f"{label} is a {map_type} map: {CONTENTS_NOT_DATA[map_type]}")
    if map_type in SOCKET_MAP_TYPES:
        why = f"{label} is a {map_type} map: its values are sockets, which the kernel does not show to user space"
        if bpf_map.info["max_entries"] > SLOT_COUNT_LIMIT and map_type not in _KEYS_ARE_ENTRIES:
            return dict(base, count=None, note=f"{why}; its {bpf_map.info['max_entries']} slots are too many to count")
        count = count_entries(bpf_map)
        if count is None:
            # xskmap always; sockmap and reuseport_sockarray unless their values are 8 bytes (a socket cookie).
            return dict(
                base,
                count=None,
                note=f"{why}, and it refuses user-space lookups on them, so not even the occupied slots can be counted",
            )
        return dict(base, count=count, note=f"{why}: only its occupied slots are counted")
    if map_type not in _abi.MAP_TYPES:
        return dict(base, count=None, error=f"{label} is a map of type {map_type}, which this collection does not know")
    return None


def map_contents(spec: dict[str, Any], search: Any = None) -> dict[str, Any]:
    """Decoded entries of one map: aggregated per-CPU, optionally filtered by a JMESPath query, sorted by a value
    field and cut to the top N. Keys are decoded only for the entries that are returned when no query needs them.
    `search` is jmespath.search, given by the caller (the surface checks the library is there).

    Map types whose contents are not data give a result with an `error` (or, for socket maps, a count and a
    `note`) instead of failing: see CONTENTS_NOT_DATA and SOCKET_MAP_TYPES."""
    label, bpf_map = open_map_ref(spec)
    if bpf_map is None:
        bpf_map = _bpf_map.map_open(label)
    emap: Any
    try:
        refused = _not_data(label, bpf_map, spec)
        if refused is not None:
            bpf_map.close()
            return refused
        kernel_view = bpf_map.type in _KERNEL_VIEW_TYPES and not (
            bpf_map.type in _entries.DEVICE_KINDS and (spec.get("value_type") or spec.get("formats"))
        )
        if kernel_view:
            emap = _kernel_view(bpf_map, spec, label)
        else:
            emap = _entries.EntryMap(label, spec.get("key_type"), spec.get("value_type"), spec.get("formats"), bpf_map)
    except BaseException:
        bpf_map.close()
        raise
    with emap:
        return _contents(emap, spec, search)


def _contents(emap: Any, spec: dict[str, Any], search: Any) -> dict[str, Any]:
    raw = emap.read()
    how = spec.get("aggregate") or "sum"
    fields = spec.get("aggregate_fields") or None
    top = spec.get("top")
    sort_path = [p for p in (spec.get("sort_by") or "").split(".") if p]
    if sort_path[:1] == ["value"]:
        sort_path = sort_path[1:]
    if top and sort_path and not spec.get("query") and not emap.per_cpu:
        # Top-N of a big table: rank on the raw sort field and decode only the winners.
        getter = _raw_field_getter(emap.value_type, sort_path)
        if getter is not None:
            best = heapq.nlargest(int(top), raw.items(), key=lambda kv: getter(kv[1]))
            entries = [{"key": emap.decode_key(k), "value": emap.decode_value(v)} for k, v in best]
            return _result(emap, spec, count=len(raw), entries=entries)
    decode_value = emap.decode_value
    query = spec.get("query")
    if query:
        entries = [
            {"key": emap.decode_key(k), "value": aggregate(decode_value(v), how, fields)} for k, v in raw.items()
        ]
    else:
        entries = [(k, aggregate(decode_value(v), how, fields)) for k, v in raw.items()]  # keys stay raw for now
    count = len(entries)
    if query:
        entries = search(query, entries)
        if not isinstance(entries, list):
            return _result(emap, spec, count=count, result=entries)
    if sort_path or top:

        def sort_key(entry: Any) -> Any:
            value = entry["value"] if isinstance(entry, dict) else entry[1]
            picked = _field(value, sort_path) if sort_path else value
            return picked if isinstance(picked, (int, float)) and not isinstance(picked, bool) else float("-inf")

        if top and sort_path:
            entries = heapq.nlargest(int(top), entries, key=sort_key)
        elif sort_path:
            entries = sorted(entries, key=sort_key, reverse=True)
        elif top:
            entries = entries[: int(top)]
    if not query:
        entries = [{"key": emap.decode_key(k), "value": v} for k, v in entries]
    return _result(emap, spec, count=count, entries=entries)


def _raw_field_getter(value_type: Any, path: list[str]) -> Any:
    """A function reading the integer at `path` straight from a value's bytes (host byte order), or None when the
    field is not a plain host-order integer at a fixed byte offset (bitfields, network order, anonymous members...)."""
    t, offset = value_type, 0
    for name in path:
        r = _btf.resolve(t) if t is not None else None
        if not isinstance(r, _btf.Struct) or r.is_union:
            return None
        member = r.member(name)
        if member is None or member.bitfield_size or member.bit_offset % 8:
            return None
        t, offset = member.type, offset + member.bit_offset // 8
    probe = t
    while isinstance(probe, (_btf.Typedef, _btf.Modifier)):
        if isinstance(probe, _btf.Typedef) and probe.name.startswith("__be"):
            return None  # network order: the codec's 'be' format, not the raw host value
        probe = probe.type
    r = _btf.resolve(t)
    codes = {1: "B", 2: "H", 4: "I", 8: "Q"}
    if not isinstance(r, _btf.Int) or r.is_bool or r.size not in codes:
        return None
    field = struct.Struct("=" + (codes[r.size].lower() if r.signed else codes[r.size]))
    unpack_from = field.unpack_from
    return lambda raw: unpack_from(raw, offset)[0]


def rates_path(state_dir: str, map_path: str) -> str:
    safe = map_path.strip("/").replace("/", "__")
    return os.path.join(state_dir, "facts", f"{safe}.json")


def add_rates(result: dict[str, Any], state_dir: str, now: float, save: bool) -> None:
    """Per-key deltas and per-second rates of numeric value fields against the previous gathering on this host."""
    path = rates_path(state_dir, result["path"])
    previous = None
    try:
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
    except (OSError, ValueError):
        previous = None
    current = {}
    for entry in result.get("entries") or []:
        key = json.dumps(entry["key"], sort_keys=True)
        numbers = _numbers(entry["value"])
        current[key] = numbers
        if previous and previous.get("map_id") == result.get("id") and key in previous.get("values", {}):
            dt = now - previous["time"]
            old = previous["values"][key]
            delta = {k: v - old[k] for k, v in numbers.items() if k in old}
            entry["delta"] = delta
            entry["rate"] = {k: d / dt for k, d in delta.items()} if dt > 0 else {}
    result["rates_since"] = _iso(previous["time"]) if previous else None
    if save:
        with atomic_file(path) as f:  # concurrent gatherings each write a whole baseline
            json.dump({"time": now, "map_id": result.get("id"), "values": current}, f)


def _numbers(value: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix or "value": value}
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for k, v in value.items():
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {}
