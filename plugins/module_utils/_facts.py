# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resources layer for cnf.ebpf.bpf_facts: what eBPF is doing on this host, read-only.

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
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils import (
    _attach,
    _btf,
    _entries,
    _libbpf,
    _libbpf_link,
    _libbpf_obj,
)
from ansible_collections.cnf.ebpf.plugins.module_utils._files import atomic_file
from ansible_collections.cnf.ebpf.plugins.module_utils._libbpf import BpfError

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
        with _libbpf.map_create("hash", "cnf_probe", 4, 4, 1, label="probe") as bpf_map:
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
    map_types = (
        "hash",
        "percpu_hash",
        "lru_hash",
        "array",
        "percpu_array",
        "lpm_trie",
        "ringbuf",
        "queue",
        "hash_of_maps",
        "bloom_filter",
    )
    return {
        "release": os.uname().release,
        "btf_vmlinux": os.path.exists("/sys/kernel/btf/vmlinux"),
        "bpffs_mounts": mounts,
        "jit_enabled": _read("/proc/sys/net/core/bpf_jit_enable") == "1",
        "stats_enabled": _read("/proc/sys/kernel/bpf_stats_enabled") == "1",
        "unprivileged_bpf_disabled": _read("/proc/sys/kernel/unprivileged_bpf_disabled"),
        "possible_cpus": _libbpf.num_possible_cpus(),
        "features": {
            "map_types": {t: _libbpf.probe_map_type(t) for t in map_types},
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
                entries = _cheap_count(fd, info, count_limit)
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
            }
        )
    return out


def _cheap_count(fd: _libbpf.Fd, info: dict[str, Any], limit: int) -> int | None:
    """Entries in the map when that is cheap: arrays are always full; hash-like maps up to `limit` are counted with
    batched key reads; others (queues, ringbufs, big maps) are not counted (None)."""
    if info["type"] in _entries.ARRAY_KINDS or info["type"] in ("array_of_maps", "perf_event_array"):
        return info["max_entries"]
    if info["type"] not in _entries.HASH_KINDS and info["type"] != "hash_of_maps":
        return None
    if info["max_entries"] > limit or not info["key_size"]:
        return None
    dup = _libbpf.Fd(os.dup(fd.fd), fd.label)
    with _libbpf.BpfMap(dup) as bpf_map:
        return sum(len(keys) for keys, _values in bpf_map.item_chunks(4096))


def links(pinned: dict[str, dict[str, Any]], pin_root: str) -> list[dict[str, Any]]:
    by_id = _pins_by(pinned, "link")
    out = []
    for link_id in _libbpf.link_ids():
        try:
            with _libbpf.link_fd_by_id(link_id) as fd:
                details = _libbpf_link.link_details(fd)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise
        paths = sorted(by_id.get(link_id, []))
        details = {k: v for k, v in details.items() if k != "raw"}
        details.update(pins=paths, app=managed_app(paths, pin_root))
        out.append(details)
    return out


def attachments(netns_names: list[str | None], managed_progs: set[int]) -> list[dict[str, Any]]:
    """XDP and tc programs per interface of the host and the named network namespaces, flagging programs that no
    bpf_program application deployed."""
    out = []
    for netns in netns_names:
        with _attach.in_netns(netns):
            names = [name for _index, name in socket.if_nameindex()]
        for name in names:
            hooks = [("xdp", _attach.AttachSpec(kind="xdp", interface=name, netns=netns))]
            hooks += [
                (f"tc_{d}", _attach.AttachSpec(kind="tc", direction=d, interface=name, netns=netns))
                for d in ("ingress", "egress")
            ]
            for hook, spec in hooks:
                for att in _attach.current(spec):
                    described = att.describe()
                    described.update(interface=name, netns=netns, hook=hook, managed=att.prog_id in managed_progs)
                    out.append(described)
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


def aggregate(value: Any, how: str) -> Any:
    """A decoded per-CPU value ({per_cpu, sum}) as asked: sum, max, min, or none (the per-CPU list)."""
    if not (isinstance(value, dict) and "per_cpu" in value):
        return value
    if how == "sum":
        return value["sum"]
    if how == "none":
        return value["per_cpu"]
    return _fold(value["per_cpu"], max if how == "max" else min)


def _field(value: Any, path: list[str]) -> Any:
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _result(emap: _entries.EntryMap, spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    result = {"path": spec.get("path"), "id": emap.map_id, "type": emap.type, **fields}
    untyped = [
        side
        for side, t, codec in (("key", emap.key_type, emap.key_codec), ("value", emap.value_type, emap.value_codec))
        if t is None and codec is not None
    ]
    if untyped:
        result["note"] = (
            f"the map has no BTF type for its {' and '.join(untyped)}: shown as hex; "
            "declare key_type/value_type to decode them"
        )
    return result


def open_map_ref(spec: dict[str, Any]) -> tuple[str, _libbpf.BpfMap | None]:
    """(label, open map) for a map given by `id` or kernel `map_name` (maps nobody pinned, e.g. a running bcc tool's
    tables); (path, None) for a pinned one, which EntryMap opens itself."""
    if spec.get("path"):
        return spec["path"], None
    if spec.get("id") is not None:
        return f"id {spec['id']}", _libbpf.BpfMap(_libbpf.map_fd_by_id(int(spec["id"])))
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
    return f"{name} (id {found[0]})", _libbpf.BpfMap(_libbpf.map_fd_by_id(found[0]))


def map_contents(spec: dict[str, Any], search: Any = None) -> dict[str, Any]:
    """Decoded entries of one map: aggregated per-CPU, optionally filtered by a JMESPath query, sorted by a value
    field and cut to the top N. Keys are decoded only for the entries that are returned when no query needs them.
    `search` is jmespath.search, given by the caller (the surface checks the library is there)."""
    label, bpf_map = open_map_ref(spec)
    with _entries.EntryMap(label, spec.get("key_type"), spec.get("value_type"), spec.get("formats"), bpf_map) as emap:
        if emap.type in _entries.QUEUE_KINDS:
            raise ValueError(
                f"maps: {spec['path']} is a {emap.type}; reading it would consume it (use bpf_map_entries)"
            )
        raw = emap.read()
        how = spec.get("aggregate") or "sum"
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
            entries = [{"key": emap.decode_key(k), "value": aggregate(decode_value(v), how)} for k, v in raw.items()]
        else:
            entries = [(k, aggregate(decode_value(v), how)) for k, v in raw.items()]  # keys stay raw for now
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
