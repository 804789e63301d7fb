# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Map contents: read a pinned map's entries, apply a plan with batched writes, the per-map
lock, queue/stack draining, and inner maps of map-in-map types.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _bpf_map, _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._bpf_map import BpfMap
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError
from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _maps
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._faults import kill_point
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._files import atomic_file
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._locks import LOCK_DIR, file_lock
from ansible_collections.cnf.ebpf.plugins.module_utils.types import (
    _abi,
    _btf,
    _codec,
    _formats,
    _layout_compare,
    _map_codecs,
    _schema,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._map_spec import MapSpec

# Inner maps of map-in-map types are looked for under these roots (and the outer map's directory) by id.
PIN_SEARCH_ROOTS = ("/sys/fs/bpf/cnf",)
_PIN_SEARCH_LIMIT = 20000
_U32 = struct.Struct("=I")


def map_lock(map_id: int, timeout: float) -> AbstractContextManager[None]:
    """Serialise reconciles of one map (keyed by kernel map id, so two pins of one map share the lock)."""
    return file_lock(f"map-{map_id}", timeout)


def read_entries(bpf_map: BpfMap) -> dict[bytes, bytes]:
    """Every entry as raw bytes (batched reads)."""
    return bpf_map.read_all()


def read_queue(bpf_map: BpfMap, stack: bool) -> list[bytes]:
    """Queue/stack contents in pop order. The kernel offers no way to look past the head, so this pops every value
    and pushes them back; programs using the map at the same moment can see it shorter for that time."""
    values = []
    while True:
        value = bpf_map.pop()
        if value is None:
            break
        values.append(value)
    restore = list(reversed(values)) if stack else values
    for value in restore:
        bpf_map.update(None, value)
    return values


class ApplyError(Exception):
    """A kernel failure in the middle of applying a plan, with how far it got."""

    def __init__(
        self, cause: BpfError, written: int, total_writes: int, deletes_done: bool, total_deletes: int
    ) -> None:
        self.cause = cause
        self.written = written
        deletes = f"all {total_deletes} deletes" if deletes_done else f"none or part of {total_deletes} deletes"
        super().__init__(
            f"{cause}; applied {written} of {total_writes} writes and {deletes} before the failure; "
            "fix the cause and rerun: the module converges"
        )


# Upserts go to the kernel in slices of this many entries (each slice is batched further below): the crash points
# between slices are where a killed run leaves a map half-written.
WRITE_CHUNK = 65536


def apply_changes(
    bpf_map: BpfMap,
    upserts: list[tuple[bytes, bytes]],
    deletes: list[bytes],
    write_value: dict[bytes, bytes] | None = None,
    deletes_first: bool = False,
) -> None:
    """Upserts first (so a rule is never missing while it is replaced), then deletes, in batched chunks; deletes
    first when the caller knows the upserts would not fit beside the entries they replace (a full map).

    `write_value` translates planned values for maps of maps, whose values are compared as inner map ids but
    written as inner map fds."""
    if write_value:
        upserts = [(k, write_value.get(v, v)) for k, v in upserts]
    written = 0
    deletes_done = False
    try:
        if deletes_first:
            bpf_map.delete_many(deletes)
            deletes_done = True
        for start in range(0, len(upserts), WRITE_CHUNK):
            kill_point("entries.write")
            written += bpf_map.update_many(upserts[start : start + WRITE_CHUNK])
        if not deletes_first:
            kill_point("entries.delete")
            bpf_map.delete_many(deletes)
    except BpfError as exc:
        if exc.op.startswith("update"):
            written += exc.applied or 0  # the slices before the failing one, and what it applied
        raise ApplyError(exc, written, len(upserts), deletes_done, len(deletes)) from exc


def refill_queue(bpf_map: BpfMap, drain: bool, push: list[bytes]) -> None:
    """Optionally drain a queue/stack, then push values in the given order."""
    try:
        if drain:
            while bpf_map.pop() is not None:
                pass
        bpf_map.update_many([(b"", value) for value in push])
    except BpfError as exc:
        raise ApplyError(exc, exc.applied or 0, len(push), True, 0) from exc


class InnerMaps:
    """Inner maps named by a playbook (pin path or id): opened once, compared by id, written by fd."""

    def __init__(self) -> None:
        self._maps: dict[str, BpfMap] = {}
        self.fd_for_id: dict[bytes, bytes] = {}

    def resolve(self, ref: str | int) -> bytes:
        """The u32 map id (as the kernel stores it) of an inner map given by pin path or id."""
        name = str(ref)
        if name not in self._maps:
            try:
                bpf_map = BpfMap(_libbpf.map_fd_by_id(ref)) if isinstance(ref, int) else _bpf_map.map_open(name)
            except BpfError as exc:
                raise _formats.CodecError("value", f"inner map {ref!r}: {exc}") from exc
            self._maps[name] = bpf_map
            self.fd_for_id[_U32.pack(bpf_map.info["id"])] = _U32.pack(bpf_map.fd.fd)
        return _U32.pack(self._maps[name].info["id"])

    def close(self) -> None:
        for bpf_map in self._maps.values():
            bpf_map.close()
        self._maps.clear()


def find_pins_by_map_id(map_ids: set[int], roots: list[str]) -> dict[int, str]:
    """Pin paths of the given map ids, searched (bounded) under the roots; maps pinned elsewhere are not found."""
    found: dict[int, str] = {}
    seen = 0
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in sorted(files):
                seen += 1
                if seen > _PIN_SEARCH_LIMIT or len(found) == len(map_ids):
                    return found
                path = os.path.join(dirpath, name)
                try:
                    with _libbpf.obj_get(path) as fd:
                        if _libbpf.obj_kind(fd) != "map":
                            continue
                        map_id = _libbpf.map_info(fd)["id"]
                except BpfError as exc:
                    if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOENT, errno.EINVAL):
                        continue
                    raise
                if map_id in map_ids:
                    found.setdefault(map_id, path)
    return found


# Map types whose contents the collection reconciles, by how their contents behave.
HASH_KINDS = frozenset({"hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "lpm_trie"})
ARRAY_KINDS = frozenset({"array", "percpu_array"})
MAP_IN_MAP_KINDS = frozenset({"hash_of_maps", "array_of_maps"})
QUEUE_KINDS = frozenset({"queue", "stack"})
# XDP redirect targets: sparse like a hash (a slot is set or not; deleting empties it), keyed by a u32 slot, with
# plain values: an ifindex (or struct bpf_devmap_val: ifindex and a program), a queue size (struct bpf_cpumap_val).
# The kernel resolves an ifindex in the writer's network namespace.
DEVICE_KINDS = frozenset({"devmap", "devmap_hash", "cpumap"})
EVENT_KINDS = frozenset({"ringbuf", "perf_event_array"})


def entry_encoders(spec: MapSpec, ncpus: int) -> tuple[_codec.Codec, _codec.Codec | _map_codecs.PerCpuCodec, bool]:
    """Encoders of the keys and values of a map to be written from decoded entries (a per-CPU value as one value per
    CPU), and whether its values are per-CPU. Raises `CodecError` for entries that do not fit the types."""
    key_codec = _codec.compile_codec(spec.key_type, root="key")
    value_codec: _codec.Codec | _map_codecs.PerCpuCodec = _codec.compile_codec(spec.value_type, root="value")
    per_cpu = spec.type in _abi.PERCPU_MAP_TYPES
    if per_cpu:
        value_codec = _map_codecs.PerCpuCodec(value_codec, ncpus)
    return key_codec, value_codec, per_cpu


class EntryMap:
    """A pinned map with the codecs for its keys and values, compiled once from its BTF (or declared schemas).

    Keys and values without any type information are hex strings of their exact size; array indexes default to u32.
    """

    def __init__(
        self,
        path: str,
        key_schema: object = None,
        value_schema: object = None,
        formats: dict[str, str] | None = None,
        bpf_map: BpfMap | None = None,
    ) -> None:
        # `bpf_map`: an already open map (one found by id or name, not pinned); `path` then only names it.
        self.path = path
        self.bpf_map = bpf_map if bpf_map is not None else _bpf_map.map_open(path)
        self.inner_maps = InnerMaps()
        try:
            self._setup(key_schema, value_schema, formats or {})
        except BaseException:
            self.bpf_map.close()
            raise

    def close(self) -> None:
        self.inner_maps.close()
        self.bpf_map.close()

    def __enter__(self) -> EntryMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self, key_schema: object, value_schema: object, formats: dict[str, str]) -> None:
        info = self.bpf_map.info
        self.type: str = info["type"]
        self.map_id: int = info["id"]
        self.max_entries: int = info["max_entries"]
        if self.type in EVENT_KINDS:
            raise ValueError(
                f"path: {self.path} is a {self.type} map: it carries events, not entries; capture them with "
                "cnf.ebpf.bpf_events"
            )
        if not (
            self.type in HASH_KINDS
            or self.type in ARRAY_KINDS
            or self.type in MAP_IN_MAP_KINDS
            or self.type in QUEUE_KINDS
            or self.type in DEVICE_KINDS
        ):
            raise ValueError(f"path: {self.path} is a {self.type} map, whose entries this module does not manage")
        key_btf, value_btf = _maps.read_btf_types(info["btf_id"], info["btf_key_type_id"], info["btf_value_type_id"])
        key_formats = {p: f for p, f in formats.items() if p == "key" or p.startswith(("key.", "key["))}
        value_formats = {p: f for p, f in formats.items() if p == "value" or p.startswith(("value.", "value["))}
        stray = sorted(set(formats) - set(key_formats) - set(value_formats))
        if stray:
            raise ValueError(f"formats.{stray[0]}: format paths start with 'key' or 'value'")
        self.key_type = self._declared("key", key_btf, key_schema, info["key_size"])
        self.value_type = self._declared("value", value_btf, value_schema, info["value_size"])
        if self.key_type is None and (
            self.type in ARRAY_KINDS or (self.type in MAP_IN_MAP_KINDS | DEVICE_KINDS and info["key_size"] == 4)
        ):
            # Array indexes are u32 for the kernel; maps of maps cannot carry BTF and are nearly always keyed by a u32,
            # device maps always.
            self.key_type = _schema.type_from_schema("u32", path="key")
        if self.value_type is None and self.type in DEVICE_KINDS and info["value_size"] == 4:
            self.value_type = _schema.type_from_schema("u32", path="value")  # an ifindex, or a cpumap queue size
        if self.type in QUEUE_KINDS:
            self.key_codec = None
        elif self.key_type is None:
            self.key_codec = _map_codecs.hexdump_codec(info["key_size"], root="key")
        elif self.type == "lpm_trie":
            self.key_codec = _map_codecs.compile_lpm_codec(self.key_type, key_formats, root="key")
        else:
            self.key_codec = _codec.compile_codec(self.key_type, key_formats, root="key")
        if key_formats and self.key_codec is not None and self.key_type is None:
            raise ValueError("formats: the map's key has no type; declare key_type to use formats on it")
        if self.type in MAP_IN_MAP_KINDS:
            if value_formats:
                raise ValueError(f"formats.{sorted(value_formats)[0]}: map-in-map values are inner maps")
            self.value_codec = None
        elif self.value_type is None:
            if value_formats:
                raise ValueError("formats: the map's value has no type; declare value_type to use formats on it")
            self.value_codec = _map_codecs.hexdump_codec(info["value_size"], root="value")
        else:
            self.value_codec = _codec.compile_codec(self.value_type, value_formats, root="value")
        self.per_cpu = self.bpf_map.ncpus if self.type in _abi.PERCPU_MAP_TYPES else 0
        if self.per_cpu and self.value_codec is not None:
            self.value_codec = _map_codecs.PerCpuCodec(self.value_codec, self.per_cpu)
        self.zero_value = bytes(self.bpf_map.value_bytes)
        # encode_key/encode_value: plain attributes bound once, since they run for every declared entry.
        if self.key_codec is not None:
            self._encode_key_raw = self.key_codec.encode
            self._indexed = self.type in ARRAY_KINDS or self.type == "array_of_maps"
            self.encode_key = self._encode_index if self._indexed else self.key_codec.encode
        self.encode_value = self._encode_inner_map if self.value_codec is None else self.value_codec.encode

    def _declared(self, side: str, from_btf: object, schema: object, size: int) -> object:
        """The map's own type, or the declared schema for maps without BTF; both must agree when both exist."""
        declared = None
        if schema is not None:
            declared = _schema.type_from_schema(schema, path=f"{side}_type")
            if declared.size != size:
                raise ValueError(
                    f"{side}_type: {_btf.type_name(declared)} is {declared.size} bytes, the map's {side} is {size}"
                )
        if from_btf is not None and declared is not None:
            differences = _layout_compare.compare_layout(from_btf, declared, path=side)
            if differences:
                raise ValueError(f"{side}_type: differs from the map's BTF: " + "; ".join(differences))
        return from_btf if from_btf is not None else declared

    # encoding, with errors prefixed by the entry they belong to

    def _encode_index(self, obj: object) -> bytes:
        raw = self._encode_key_raw(obj)
        index = int.from_bytes(raw, "little")
        if index >= self.max_entries:
            raise _formats.CodecError("key", f"index {index} is out of range for {self.max_entries} entries")
        return raw

    def _encode_inner_map(self, obj: object) -> bytes:
        if not isinstance(obj, (str, int)) or isinstance(obj, bool):
            raise _formats.CodecError("value", f"expected an inner map pin path or map id, got {obj!r}")
        return self.inner_maps.resolve(obj)

    def encode_keys(self, objs: list) -> list[bytes]:
        """encode_key() of each (CodecError without the entry's index: callers redo a failing batch one by one)."""
        if self._indexed:
            return list(map(self.encode_key, objs))
        return self.key_codec.encode_many(objs)

    def encode_values(self, objs: list) -> list[bytes]:
        if self.value_codec is None:
            return list(map(self.encode_value, objs))
        return self.value_codec.encode_many(objs)

    def encode_key_columns(self, columns: Mapping[tuple[str, ...], list]) -> list[bytes] | None:
        """Keys packed from whole columns of their fields (see Codec.encode_columns); None when they cannot be, and
        for arrays, whose indexes are checked one by one against max_entries."""
        if self._indexed:
            return None
        return self.key_codec.encode_columns(columns)

    def encode_value_columns(self, columns: Mapping[tuple[str, ...], list]) -> list[bytes] | None:
        if self.value_codec is None:
            return None
        return self.value_codec.encode_columns(columns)

    def decode_key(self, raw: bytes) -> object:
        return self.key_codec.decode(raw)

    def decode_value(self, raw: bytes) -> object:
        if self.value_codec is None:  # map-in-map: the inner map's id
            return _U32.unpack(raw)[0]
        return self.value_codec.decode(raw)

    # kernel I/O

    def lock(self, timeout: float) -> AbstractContextManager[None]:
        return map_lock(self.map_id, timeout)

    def read(self) -> dict[bytes, bytes]:
        return read_entries(self.bpf_map)

    def read_queue(self) -> list[bytes]:
        return read_queue(self.bpf_map, stack=self.type == "stack")

    def apply(
        self, upserts: list[tuple[bytes, bytes]], deletes: list[bytes], deletes_first: bool = False, what: str = ""
    ) -> None:
        """Write a plan, under a marker that outlives a run killed half-way (see interrupted_write()). Call it
        holding lock(): the marker is only ever looked at and removed by the lock's holder."""
        fds = self.inner_maps.fd_for_id if self.type in MAP_IN_MAP_KINDS else None
        record = {
            "pid": os.getpid(),
            "started": time.time(),
            "what": what,
            "writes": len(upserts),
            "deletes": len(deletes),
        }
        with atomic_file(self._marker_path()) as f:  # creates LOCK_DIR if need be
            json.dump(record, f)
        try:
            apply_changes(self.bpf_map, upserts, deletes, fds, deletes_first)
        finally:
            self.clear_interrupted()  # an error is reported by this run; only a killed run leaves the marker

    def interrupted_write(self) -> dict[str, Any] | None:
        """What an earlier run was writing into this map when it was killed (its marker), or None. Call it holding
        lock(): a live writer would hold the lock, so a marker seen then is a dead run's."""
        try:
            with open(self._marker_path(), encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def clear_interrupted(self) -> None:
        try:
            os.unlink(self._marker_path())
        except FileNotFoundError:
            pass

    def _marker_path(self) -> str:
        return os.path.join(LOCK_DIR, f"map-{self.map_id}.writing")

    def refill_queue(self, drain: bool, push: list[bytes]) -> None:
        refill_queue(self.bpf_map, drain, push)

    def inner_pin_paths(self, map_ids: set[int]) -> dict[int, str]:
        roots = [os.path.dirname(self.path), *PIN_SEARCH_ROOTS]
        return find_pins_by_map_id(map_ids, [r for r in dict.fromkeys(roots) if os.path.isdir(r)])
