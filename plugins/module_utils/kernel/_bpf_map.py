# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Map syscalls on raw bytes: create a map, open a pinned one, and `BpfMap`'s element and batch operations.

Batches run in bounded chunks and fall back to element calls the first time the kernel refuses a batch for that map
(remembered per map). Per-CPU values use the kernel's layout: each CPU's copy rounded up to 8 bytes, times the
number of possible CPUs. Everything here is bytes in, bytes out; the codecs of the types layer give them meaning.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import struct
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import (
    BPF_OBJ_NAME_LEN,
    ENOTSUPP,
    BpfError,
    Fd,
    check,
    declare,
    map_info,
    num_possible_cpus,
    obj_get,
    obj_kind,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._abi import MAP_TYPES, PERCPU_MAP_TYPES, flag_names

# Element update flags (BPF_ANY, BPF_NOEXIST, BPF_EXIST).
UPDATE_ANY = 0
UPDATE_NOEXIST = 1
UPDATE_EXIST = 2

_UNSUPPORTED_ERRNOS = frozenset({errno_mod.EINVAL, errno_mod.EOPNOTSUPP, ENOTSUPP})


class _MapCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


class _MapBatchOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


_VP = ctypes.c_void_p
_U32 = ctypes.c_uint32
_INT = ctypes.c_int
_PU32 = ctypes.POINTER(ctypes.c_uint32)

_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_map_create": (_INT, [_INT, ctypes.c_char_p, _U32, _U32, _U32, ctypes.POINTER(_MapCreateOpts)]),
    "bpf_map_update_elem": (_INT, [_INT, _VP, _VP, ctypes.c_uint64]),
    "bpf_map_lookup_elem": (_INT, [_INT, _VP, _VP]),
    "bpf_map_lookup_and_delete_elem": (_INT, [_INT, _VP, _VP]),
    "bpf_map_delete_elem": (_INT, [_INT, _VP]),
    "bpf_map_get_next_key": (_INT, [_INT, _VP, _VP]),
    "bpf_map_freeze": (_INT, [_INT]),
    "bpf_map_lookup_batch": (_INT, [_INT, _VP, _VP, _VP, _VP, _PU32, ctypes.POINTER(_MapBatchOpts)]),
    "bpf_map_update_batch": (_INT, [_INT, _VP, _VP, _PU32, ctypes.POINTER(_MapBatchOpts)]),
    "bpf_map_delete_batch": (_INT, [_INT, _VP, _PU32, ctypes.POINTER(_MapBatchOpts)]),
}
_declared: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    # Declared once: the element calls are the hot path of every entries run.
    global _declared
    if _declared is None:
        _declared = declare(_PROTOTYPES)
    return _declared


def map_create(
    map_type: str,
    name: str,
    key_size: int,
    value_size: int,
    max_entries: int,
    *,
    label: str,
    flags: int = 0,
    btf_fd: Fd | None = None,
    btf_key_type_id: int = 0,
    btf_value_type_id: int = 0,
    inner_map_fd: Fd | None = None,
    numa_node: int = 0,
    map_extra: int = 0,
) -> BpfMap:
    """Create a map; `label` (normally the pin path it is meant for) names it in errors."""
    opts = _MapCreateOpts(
        sz=ctypes.sizeof(_MapCreateOpts),
        btf_fd=btf_fd.fd if btf_fd else 0,
        btf_key_type_id=btf_key_type_id,
        btf_value_type_id=btf_value_type_id,
        inner_map_fd=inner_map_fd.fd if inner_map_fd else 0,
        map_flags=flags,
        map_extra=map_extra,
        numa_node=numa_node,
    )
    ret = _lib().bpf_map_create(
        MAP_TYPES[map_type],
        name.encode()[: BPF_OBJ_NAME_LEN - 1],
        key_size,
        value_size,
        max_entries,
        ctypes.byref(opts),
    )
    detail = None
    if ret == -errno_mod.EINVAL:
        detail = (
            f"the kernel refused type={map_type} key_size={key_size} value_size={value_size} "
            f"max_entries={max_entries} flags={flag_names(flags) or 0}"
        )
    elif ret == -errno_mod.EPERM:
        detail = "creating BPF maps needs CAP_BPF (run as root)"
    return BpfMap(Fd(check(ret, "create", label, detail), label))


def map_open(path: str) -> BpfMap:
    """Open a pinned map; fails with ENOTSUP-style detail when the pin is not a map."""
    fd = obj_get(path)
    try:
        return BpfMap(fd)
    except BpfError:
        fd.close()
        raise


class BpfMap:
    """A map file descriptor plus its kernel info; element operations work on raw bytes.

    Values of per-CPU maps are `value_stride * ncpus` bytes (the kernel's layout: each CPU's copy rounded up to 8
    bytes). Map-in-map values are written as inner map fds (u32) and read back as inner map ids.
    """

    def __init__(self, fd: Fd) -> None:
        self.fd = fd
        kind = obj_kind(fd)
        if kind != "map":
            raise BpfError("open", fd.label, errno_mod.EINVAL, f"the pinned object is a {kind}, not a BPF map")
        self.info = map_info(fd)
        self.type: str = self.info["type"]
        self.key_size: int = self.info["key_size"]
        self.value_size: int = self.info["value_size"]
        if self.type in PERCPU_MAP_TYPES:
            self.ncpus = num_possible_cpus()
            self.value_stride = (self.value_size + 7) & ~7
            self.value_bytes = self.value_stride * self.ncpus
        else:
            self.ncpus = 1
            self.value_stride = self.value_size
            self.value_bytes = self.value_size
        # Per map type, whether the kernel accepted batch ops; None = not tried yet.
        self._batch_ok: dict[str, bool] = {}

    @property
    def label(self) -> str:
        return self.fd.label

    def close(self) -> None:
        self.fd.close()

    def __enter__(self) -> BpfMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pin(self, path: str) -> None:
        self.fd.pin(path)

    def _err_detail(self, op: str, code: int) -> str | None:
        if code == errno_mod.E2BIG:
            return f"map is full, max_entries={self.info['max_entries']}"
        if code == errno_mod.EEXIST:
            return "key already exists"
        if code == errno_mod.ENOENT and op == "update":
            return "key does not exist"
        if code == errno_mod.EPERM:
            return "permission denied: needs CAP_BPF (root) or the map is read-only for user space"
        if code in (errno_mod.EINVAL, ENOTSUPP, errno_mod.EOPNOTSUPP):
            return f"operation not supported by {self.type} maps or invalid argument"
        return None

    def _fail(self, op: str, ret: int) -> BpfError:
        return BpfError(op, self.label, -ret, self._err_detail(op, -ret))

    def _key_arg(self, key: bytes | None) -> bytes | None:
        if key is not None and len(key) != self.key_size:
            raise BpfError(
                "encode", self.label, errno_mod.EINVAL, f"key is {len(key)} bytes, map wants {self.key_size}"
            )
        return key if self.key_size else None

    # single-element operations

    def lookup(self, key: bytes | None) -> bytes | None:
        """The value for key, or None when absent (ENOENT). Keyless maps (queue/stack): peek."""
        buf = ctypes.create_string_buffer(self.value_bytes)
        ret = _lib().bpf_map_lookup_elem(self.fd.fd, self._key_arg(key), buf)
        if ret == -errno_mod.ENOENT:
            return None
        if ret < 0:
            raise self._fail("lookup", ret)
        return buf.raw

    def update(self, key: bytes | None, value: bytes, flags: int = UPDATE_ANY) -> None:
        """Write one element; for queue/stack maps (key None) this pushes."""
        if len(value) != self.value_bytes:
            raise BpfError(
                "encode", self.label, errno_mod.EINVAL, f"value is {len(value)} bytes, map wants {self.value_bytes}"
            )
        ret = _lib().bpf_map_update_elem(self.fd.fd, self._key_arg(key), value, flags)
        if ret < 0:
            raise self._fail("update", ret)

    def delete(self, key: bytes) -> bool:
        """Delete one element; False when it was not there."""
        ret = _lib().bpf_map_delete_elem(self.fd.fd, self._key_arg(key))
        if ret == -errno_mod.ENOENT:
            return False
        if ret < 0:
            raise self._fail("delete", ret)
        return True

    def pop(self) -> bytes | None:
        """Queue/stack: remove and return the next element, None when empty."""
        buf = ctypes.create_string_buffer(self.value_bytes)
        ret = _lib().bpf_map_lookup_and_delete_elem(self.fd.fd, None, buf)
        if ret == -errno_mod.ENOENT:
            return None
        if ret < 0:
            raise self._fail("pop", ret)
        return buf.raw

    def next_key(self, key: bytes | None) -> bytes | None:
        """The key after `key` (the first key for None); None at the end."""
        out = ctypes.create_string_buffer(self.key_size)
        ret = _lib().bpf_map_get_next_key(self.fd.fd, self._key_arg(key) if key is not None else None, out)
        if ret == -errno_mod.ENOENT:
            return None
        if ret < 0:
            raise self._fail("iterate", ret)
        return out.raw

    def iter_keys(self) -> Iterator[bytes]:
        key = self.next_key(None)
        while key is not None:
            yield key
            key = self.next_key(key)

    def freeze(self) -> None:
        check(_lib().bpf_map_freeze(self.fd.fd), "freeze", self.label)

    # batch operations with single-element fallback

    def batch_works(self, op: str) -> bool | None:
        """Whether batch `op` ('lookup', 'update', 'delete') worked on this map; None when not tried yet."""
        return self._batch_ok.get(op)

    def _batch_refused(self, op: str, ret: int) -> bool:
        """True when this is the first batch `op` on this map and the kernel refused it as unsupported: remember
        that, so we fall back to single-element calls once instead of failing per chunk. A batch that worked before
        and fails now is a real error."""
        if ret < 0 and -ret in _UNSUPPORTED_ERRNOS and op not in self._batch_ok:
            self._batch_ok[op] = False
            return True
        return False

    def items(self, chunk: int = 4096) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) pair, read with BPF_MAP_LOOKUP_BATCH in chunks; get_next_key + lookup otherwise."""
        for keys, values in self.item_chunks(chunk):
            yield from zip(keys, values)

    def read_all(self, chunk: int = 65536) -> dict[bytes, bytes]:
        """The whole map as {key: value}, built chunk by chunk (no per-entry Python work beyond slicing)."""
        contents: dict[bytes, bytes] = {}
        for keys, values in self.item_chunks(chunk):
            contents.update(zip(keys, values))
        return contents

    def item_chunks(self, chunk: int = 4096) -> Iterator[tuple[list[bytes], list[bytes]]]:
        """(keys, values) lists of up to `chunk` entries each: batched reads, or element reads where refused."""
        if self.key_size == 0:
            raise BpfError("iterate", self.label, errno_mod.EINVAL, f"{self.type} maps cannot be iterated; pop them")
        if self._batch_ok.get("lookup", True):
            try:
                yield from self._chunks_batch(chunk)
                return
            except _BatchUnsupported:
                pass
        keys: list[bytes] = []
        values: list[bytes] = []
        for key in self.iter_keys():
            value = self.lookup(key)
            if value is not None:  # deleted concurrently
                keys.append(key)
                values.append(value)
            if len(keys) == chunk:
                yield keys, values
                keys, values = [], []
        if keys:
            yield keys, values

    def _chunks_batch(self, chunk: int) -> Iterator[tuple[list[bytes], list[bytes]]]:
        lib = _lib()
        # The batch cursor is opaque; hash maps use a u32 bucket index, arrays a key. Size it generously.
        token_size = max(self.key_size, 8)
        in_batch = ctypes.create_string_buffer(token_size)
        out_batch = ctypes.create_string_buffer(token_size)
        opts = _MapBatchOpts(sz=ctypes.sizeof(_MapBatchOpts))
        ks, vs = self.key_size, self.value_bytes
        first = True
        while True:
            keys = ctypes.create_string_buffer(ks * chunk)
            values = ctypes.create_string_buffer(vs * chunk)
            count = ctypes.c_uint32(chunk)
            ret = lib.bpf_map_lookup_batch(
                self.fd.fd,
                None if first else in_batch,
                out_batch,
                keys,
                values,
                ctypes.byref(count),
                ctypes.byref(opts),
            )
            if ret == -errno_mod.ENOSPC and count.value == 0:
                # One hash bucket holds more elements than the chunk: retry the same cursor with a bigger chunk.
                chunk *= 2
                continue
            if ret < 0 and ret != -errno_mod.ENOENT:
                if first and self._batch_refused("lookup", ret):
                    raise _BatchUnsupported
                raise self._fail("lookup batch", ret)
            self._batch_ok["lookup"] = True
            n = count.value
            if n:
                yield _split(keys, ks, n), _split(values, vs, n)
            if ret == -errno_mod.ENOENT:
                return
            first = False
            ctypes.memmove(in_batch, out_batch, token_size)

    def update_many(self, pairs: list[tuple[bytes, bytes]], flags: int = UPDATE_ANY, chunk: int = 4096) -> int:
        """Write all pairs (BPF_MAP_UPDATE_BATCH in chunks, element by element where the kernel refuses batches)."""
        if not pairs:
            return 0
        if self.key_size and self._batch_ok.get("update", True):
            done = self._update_batch(pairs, flags, chunk)
            if done is not None:
                return done
        for done, (key, value) in enumerate(pairs):
            try:
                self.update(key if self.key_size else None, value, flags)
            except BpfError as exc:
                exc.applied = done
                raise
        return len(pairs)

    def _update_batch(self, pairs: list[tuple[bytes, bytes]], flags: int, chunk: int) -> int | None:
        lib = _lib()
        opts = _MapBatchOpts(sz=ctypes.sizeof(_MapBatchOpts), elem_flags=flags)
        done = 0
        for start in range(0, len(pairs), chunk):
            part = pairs[start : start + chunk]
            keys = b"".join([pair[0] for pair in part])
            values = b"".join([pair[1] for pair in part])
            if len(keys) != self.key_size * len(part) or len(values) != self.value_bytes * len(part):
                # Wrong sizes would shift every later element: find the culprit before the kernel sees anything.
                for key, value in part:
                    if len(key) != self.key_size or len(value) != self.value_bytes:
                        raise BpfError(
                            "encode",
                            self.label,
                            errno_mod.EINVAL,
                            f"entry is {len(key)}+{len(value)} bytes, map wants {self.key_size}+{self.value_bytes}",
                        )
            count = ctypes.c_uint32(len(part))
            ret = lib.bpf_map_update_batch(self.fd.fd, keys, values, ctypes.byref(count), ctypes.byref(opts))
            if ret < 0:
                if done == 0 and self._batch_refused("update", ret):
                    return None
                err = self._fail("update batch", ret)
                # On errors other than EFAULT the kernel reports how many of this chunk it wrote.
                err.applied = done + (count.value if -ret != errno_mod.EFAULT else 0)
                raise err
            self._batch_ok["update"] = True
            done += count.value
        return done

    def delete_many(self, keys: list[bytes], chunk: int = 4096) -> int:
        """Delete keys; returns how many existed. Batch delete needs every key present, so on ENOENT the chunk is
        redone element by element (which skips the missing ones)."""
        if not keys:
            return 0
        lib = _lib()
        opts = _MapBatchOpts(sz=ctypes.sizeof(_MapBatchOpts))
        deleted = 0
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            if self._batch_ok.get("delete", True):
                count = ctypes.c_uint32(len(part))
                ret = lib.bpf_map_delete_batch(self.fd.fd, b"".join(part), ctypes.byref(count), ctypes.byref(opts))
                if ret == 0:
                    self._batch_ok["delete"] = True
                    deleted += count.value
                    continue
                if not self._batch_refused("delete", ret):
                    if ret != -errno_mod.ENOENT:
                        raise self._fail("delete batch", ret)
                    # The kernel stops at the first missing key; the ones before it are gone already.
                    deleted += count.value
                    part = part[count.value :]
            deleted += sum(1 for key in part if self.delete(key))
        return deleted


class _BatchUnsupported(Exception):
    pass


@lru_cache(maxsize=16)
def _splitter(size: int, count: int) -> struct.Struct:
    return struct.Struct(f"{size}s" * count)


def _split(buffer: Any, size: int, count: int) -> list[bytes]:
    """`count` consecutive `size`-byte elements of a ctypes buffer as bytes objects, cut in one C call: a slice per
    element in Python costs five times as much, which a full read of a million entries would notice."""
    return list(_splitter(size, count).unpack_from(buffer))
