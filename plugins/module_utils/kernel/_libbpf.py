# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel layer: the only code in the collection that talks to libbpf.so.1 (through ctypes).

Everything above this file works with Python values (bytes, ints, dicts) and `Fd`/`BpfMap` handles; nothing above
imports ctypes. Every failure is a `BpfError` carrying the operation, the object (a pin path or "map id N") and the
errno name, so a task failure reads like `update /sys/fs/bpf/cnf/acl/rules: E2BIG (map is full, max_entries=1024)`.

libbpf >= 1.0 returns negative errno codes from its fd/int APIs and sets errno for pointer APIs (the 1.0 "strict"
behaviour is the only one), which is what the wrappers below rely on. Only symbols present in libbpf 1.1 (Debian 12)
are used.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
from collections.abc import Iterator
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.types._abi import (
    LINK_TYPE_NAMES,
    MAP_TYPE_NAMES,
    MAP_TYPES,
    PERCPU_MAP_TYPES,
    PROG_TYPE_NAMES,
    flag_names,
)

LIBBPF_SONAME = "libbpf.so.1"
# What to tell an operator to install; used with Ansible's missing_required_lib().
LIBBPF_PACKAGE_HINT = "libbpf (Debian/Ubuntu: libbpf1, Fedora/RHEL: libbpf)"

BPF_OBJ_NAME_LEN = 16

# Element update flags (BPF_ANY, BPF_NOEXIST, BPF_EXIST).
UPDATE_ANY = 0
UPDATE_NOEXIST = 1
UPDATE_EXIST = 2

# Kernel-internal "operation not supported" (ENOTSUPP, 524) leaks to userspace from some map ops.
ENOTSUPP = 524
_UNSUPPORTED_ERRNOS = frozenset({errno_mod.EINVAL, errno_mod.EOPNOTSUPP, ENOTSUPP})


def errno_name(code: int) -> str:
    if code == ENOTSUPP:
        return "ENOTSUPP"
    return errno_mod.errorcode.get(code, "E%d" % code)


class LibbpfMissing(ImportError):
    """libbpf.so.1 is not installed on the managed host."""


class BpfError(Exception):
    """A failed kernel/libbpf operation on one object."""

    def __init__(self, op: str, obj: str, code: int, detail: str | None = None) -> None:
        self.op = op
        self.obj = obj
        self.errno = code
        self.detail = detail or os.strerror(code)
        # For multi-element writes: how many elements the kernel had applied when this failed (None: not counted).
        self.applied: int | None = None
        super().__init__(f"{op} {obj}: {errno_name(code)} ({self.detail})")

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno)


# --- ctypes structures (uapi linux/bpf.h and libbpf 1.1 bpf.h) -------------------------------------------------


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


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class ProgInfoStruct(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class LinkInfoStruct(ctypes.Structure):
    # The per-type union is kept as raw words; the resource layer interprets them per link type.
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("union_words", ctypes.c_uint32 * 16),
    ]


class BtfInfoStruct(ctypes.Structure):
    _fields_ = [
        ("btf", ctypes.c_uint64),
        ("btf_size", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("name", ctypes.c_uint64),
        ("name_len", ctypes.c_uint32),
        ("kernel_btf", ctypes.c_uint32),
    ]


# --- library loading ---------------------------------------------------------------------------------------------

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
    "bpf_obj_pin": (_INT, [_INT, ctypes.c_char_p]),
    "bpf_obj_get": (_INT, [ctypes.c_char_p]),
    "bpf_obj_get_info_by_fd": (_INT, [_INT, _VP, _PU32]),
    "bpf_map_get_fd_by_id": (_INT, [_U32]),
    "bpf_prog_get_fd_by_id": (_INT, [_U32]),
    "bpf_link_get_fd_by_id": (_INT, [_U32]),
    "bpf_btf_get_fd_by_id": (_INT, [_U32]),
    "bpf_map_get_next_id": (_INT, [_U32, _PU32]),
    "bpf_prog_get_next_id": (_INT, [_U32, _PU32]),
    "bpf_link_get_next_id": (_INT, [_U32, _PU32]),
    "libbpf_num_possible_cpus": (_INT, []),
    "libbpf_probe_bpf_map_type": (_INT, [_INT, _VP]),
    "btf__free": (None, [_VP]),
    "btf__new_empty": (_VP, []),
    "btf__load_from_kernel_by_id": (_VP, [_U32]),
    "btf__parse_elf": (_VP, [ctypes.c_char_p, _VP]),
    "btf__raw_data": (_VP, [_VP, _PU32]),
    "btf__load_into_kernel": (_INT, [_VP]),
    "btf__fd": (_INT, [_VP]),
    "btf__add_int": (_INT, [_VP, ctypes.c_char_p, ctypes.c_size_t, _INT]),
    "btf__add_float": (_INT, [_VP, ctypes.c_char_p, ctypes.c_size_t]),
    "btf__add_ptr": (_INT, [_VP, _INT]),
    "btf__add_array": (_INT, [_VP, _INT, _INT, _U32]),
    "btf__add_struct": (_INT, [_VP, ctypes.c_char_p, _U32]),
    "btf__add_union": (_INT, [_VP, ctypes.c_char_p, _U32]),
    "btf__add_field": (_INT, [_VP, ctypes.c_char_p, _INT, _U32, _U32]),
    "btf__add_enum": (_INT, [_VP, ctypes.c_char_p, _U32]),
    "btf__add_enum_value": (_INT, [_VP, ctypes.c_char_p, ctypes.c_int64]),
    "btf__add_enum64": (_INT, [_VP, ctypes.c_char_p, _U32, ctypes.c_bool]),
    "btf__add_enum64_value": (_INT, [_VP, ctypes.c_char_p, ctypes.c_uint64]),
    "btf__add_fwd": (_INT, [_VP, ctypes.c_char_p, _INT]),
    "btf__add_typedef": (_INT, [_VP, ctypes.c_char_p, _INT]),
    "btf__add_volatile": (_INT, [_VP, _INT]),
    "btf__add_const": (_INT, [_VP, _INT]),
    "btf__add_restrict": (_INT, [_VP, _INT]),
}

_lib: ctypes.CDLL | None = None
_DECLARED: dict[str, tuple[Any, list[Any]]] = {}


def load_libbpf() -> ctypes.CDLL:
    """Open libbpf.so.1 once and declare the prototypes we use; LibbpfMissing if it is not installed."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL(LIBBPF_SONAME, use_errno=True)
        except OSError as exc:
            raise LibbpfMissing(f"{LIBBPF_SONAME} could not be loaded: {exc}") from exc
        for name, (restype, argtypes) in _PROTOTYPES.items():
            func = getattr(lib, name)
            func.restype = restype
            func.argtypes = argtypes
            _DECLARED[name] = (restype, argtypes)
        _lib = lib
    return _lib


def declare(prototypes: dict[str, tuple[Any, list[Any]]]) -> ctypes.CDLL:
    """libbpf with more prototypes declared on it, for the other kernel-layer files (objects, links). One CDLL
    serves them all, so a function declared twice must be declared the same way (ctypes keeps only the last)."""
    lib = load_libbpf()
    for name, (restype, argtypes) in prototypes.items():
        declared = _DECLARED.get(name)
        if declared is not None:
            if declared != (restype, argtypes):
                raise LibbpfMissing(f"{name} is declared with two different prototypes")
            continue
        func = getattr(lib, name)
        func.restype = restype
        func.argtypes = argtypes
        _DECLARED[name] = (restype, argtypes)
    return lib


def libbpf_available() -> tuple[bool, str | None]:
    try:
        load_libbpf()
    except LibbpfMissing as exc:
        return False, str(exc)
    return True, None


def check(ret: int, op: str, obj: str, detail: str | None = None) -> int:
    """ret, or BpfError(op, obj, -ret) when libbpf returned a negative errno."""
    if ret < 0:
        raise BpfError(op, obj, -ret, detail)
    return ret


def _check_ptr(ptr: int | None, op: str, obj: str) -> int:
    if not ptr:
        raise BpfError(op, obj, ctypes.get_errno() or errno_mod.EINVAL)
    return ptr


# --- file descriptors --------------------------------------------------------------------------------------------


class Fd:
    """An owned BPF object file descriptor, closed deterministically (context manager or close())."""

    __slots__ = ("fd", "label")

    def __init__(self, fd: int, label: str) -> None:
        self.fd = fd
        self.label = label

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Fd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort only; callers close explicitly
        try:
            self.close()
        except OSError:
            pass

    def __int__(self) -> int:
        return self.fd

    def pin(self, path: str) -> None:
        check(load_libbpf().bpf_obj_pin(self.fd, path.encode()), "pin", path)


def obj_get(path: str) -> Fd:
    """Open a pinned BPF object (map, program, link) by its bpffs path."""
    ret = load_libbpf().bpf_obj_get(path.encode())
    return Fd(check(ret, "open", path), path)


def unpin(path: str) -> None:
    """Remove a pin; the object lives on while other references (fds, programs, links) hold it."""
    try:
        os.unlink(path)
    except OSError as exc:
        raise BpfError("unpin", path, exc.errno or errno_mod.EIO) from exc


def _get_fd_by_id(kind: str, obj_id: int) -> Fd:
    lib = load_libbpf()
    func = getattr(lib, f"bpf_{kind}_get_fd_by_id")
    label = f"{kind} id {obj_id}"
    return Fd(check(func(obj_id), "open", label), label)


def map_fd_by_id(map_id: int) -> Fd:
    return _get_fd_by_id("map", map_id)


def prog_fd_by_id(prog_id: int) -> Fd:
    return _get_fd_by_id("prog", prog_id)


def link_fd_by_id(link_id: int) -> Fd:
    return _get_fd_by_id("link", link_id)


def btf_fd_by_id(btf_id: int) -> Fd:
    return _get_fd_by_id("btf", btf_id)


def _ids(kind: str) -> Iterator[int]:
    func = getattr(load_libbpf(), f"bpf_{kind}_get_next_id")
    cur = ctypes.c_uint32(0)
    while True:
        nxt = ctypes.c_uint32(0)
        ret = func(cur.value, ctypes.byref(nxt))
        if ret == -errno_mod.ENOENT:
            return
        check(ret, "list", f"{kind} ids")
        yield nxt.value
        cur = nxt


def map_ids() -> Iterator[int]:
    return _ids("map")


def prog_ids() -> Iterator[int]:
    return _ids("prog")


def link_ids() -> Iterator[int]:
    return _ids("link")


# --- object info -------------------------------------------------------------------------------------------------


def _info(fd: Fd, struct_type: type[ctypes.Structure]) -> Any:
    info = struct_type()
    length = ctypes.c_uint32(ctypes.sizeof(info))
    check(load_libbpf().bpf_obj_get_info_by_fd(fd.fd, ctypes.byref(info), ctypes.byref(length)), "info", fd.label)
    return info


def map_info(fd: Fd) -> dict[str, Any]:
    i = _info(fd, _MapInfo)
    return {
        "id": i.id,
        "type": MAP_TYPE_NAMES.get(i.type, str(i.type)),
        "type_id": i.type,
        "name": i.name.decode(errors="replace"),
        "key_size": i.key_size,
        "value_size": i.value_size,
        "max_entries": i.max_entries,
        "flags": i.map_flags,
        "flag_names": flag_names(i.map_flags),
        "ifindex": i.ifindex,
        "btf_id": i.btf_id,
        "btf_key_type_id": i.btf_key_type_id,
        "btf_value_type_id": i.btf_value_type_id,
        "btf_vmlinux_value_type_id": i.btf_vmlinux_value_type_id,
        "map_extra": i.map_extra,
    }


def prog_info(fd: Fd) -> dict[str, Any]:
    i = _info(fd, ProgInfoStruct)
    return {
        "id": i.id,
        "type": PROG_TYPE_NAMES.get(i.type, str(i.type)),
        "name": i.name.decode(errors="replace"),
        "tag": bytes(i.tag).hex(),
        "load_time_ns": i.load_time,
        "created_by_uid": i.created_by_uid,
        "nr_map_ids": i.nr_map_ids,
        "btf_id": i.btf_id,
        "xlated_prog_len": i.xlated_prog_len,
        "jited_prog_len": i.jited_prog_len,
        "verified_insns": i.verified_insns,
        "run_time_ns": i.run_time_ns,
        "run_cnt": i.run_cnt,
    }


def link_info(fd: Fd) -> dict[str, Any]:
    i = _info(fd, LinkInfoStruct)
    return {
        "id": i.id,
        "type": LINK_TYPE_NAMES.get(i.type, str(i.type)),
        "prog_id": i.prog_id,
        "raw": list(i.union_words),
    }


def btf_info(fd: Fd) -> dict[str, Any]:
    i = _info(fd, BtfInfoStruct)
    return {"id": i.id, "btf_size": i.btf_size, "kernel_btf": bool(i.kernel_btf)}


def obj_kind(fd: Fd) -> str:
    """'map', 'prog', 'link' or 'btf': bpf_obj_get_info_by_fd fills any object's info without saying which kind it
    is, so ask /proc's fdinfo, which prints map_type/prog_type/link_type lines."""
    try:
        with open(f"/proc/self/fdinfo/{fd.fd}", encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise BpfError("inspect", fd.label, exc.errno or errno_mod.EIO) from exc
    for kind in ("map", "prog", "link"):
        if f"\n{kind}_type:" in text:
            return kind
    return "btf" if "btf_id:" in text else "unknown"


def num_possible_cpus() -> int:
    return check(load_libbpf().libbpf_num_possible_cpus(), "count", "possible CPUs")


def probe_map_type(map_type: str) -> bool | None:
    """True when the running kernel supports creating maps of this type (libbpf's own feature probe); None when this
    libbpf cannot probe the type (EOPNOTSUPP: a type newer than the library, e.g. arena for libbpf 1.1)."""
    ret = load_libbpf().libbpf_probe_bpf_map_type(MAP_TYPES[map_type], None)
    if ret == -errno_mod.EOPNOTSUPP:
        return None
    return ret == 1


# --- maps --------------------------------------------------------------------------------------------------------


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
    ret = load_libbpf().bpf_map_create(
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
        ret = load_libbpf().bpf_map_lookup_elem(self.fd.fd, self._key_arg(key), buf)
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
        ret = load_libbpf().bpf_map_update_elem(self.fd.fd, self._key_arg(key), value, flags)
        if ret < 0:
            raise self._fail("update", ret)

    def delete(self, key: bytes) -> bool:
        """Delete one element; False when it was not there."""
        ret = load_libbpf().bpf_map_delete_elem(self.fd.fd, self._key_arg(key))
        if ret == -errno_mod.ENOENT:
            return False
        if ret < 0:
            raise self._fail("delete", ret)
        return True

    def pop(self) -> bytes | None:
        """Queue/stack: remove and return the next element, None when empty."""
        buf = ctypes.create_string_buffer(self.value_bytes)
        ret = load_libbpf().bpf_map_lookup_and_delete_elem(self.fd.fd, None, buf)
        if ret == -errno_mod.ENOENT:
            return None
        if ret < 0:
            raise self._fail("pop", ret)
        return buf.raw

    def next_key(self, key: bytes | None) -> bytes | None:
        """The key after `key` (the first key for None); None at the end."""
        out = ctypes.create_string_buffer(self.key_size)
        ret = load_libbpf().bpf_map_get_next_key(self.fd.fd, self._key_arg(key) if key is not None else None, out)
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
        check(load_libbpf().bpf_map_freeze(self.fd.fd), "freeze", self.label)

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
        lib = load_libbpf()
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
                kraw = ctypes.string_at(keys, n * ks)
                vraw = ctypes.string_at(values, n * vs)
                yield [kraw[i : i + ks] for i in range(0, n * ks, ks)], [vraw[i : i + vs] for i in range(0, n * vs, vs)]
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
        lib = load_libbpf()
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
        lib = load_libbpf()
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


# --- BTF ---------------------------------------------------------------------------------------------------------

BTF_INT_SIGNED = 1
BTF_INT_CHAR = 2
BTF_INT_BOOL = 4


def _btf_raw(btf_ptr: int) -> bytes:
    size = ctypes.c_uint32(0)
    data = load_libbpf().btf__raw_data(btf_ptr, ctypes.byref(size))
    return ctypes.string_at(data, size.value)


def btf_raw_from_kernel(btf_id: int) -> bytes:
    """Raw BTF of a kernel BTF object (e.g. a map's btf_id), as libbpf fetched it."""
    lib = load_libbpf()
    ptr = _check_ptr(lib.btf__load_from_kernel_by_id(btf_id), "load btf", f"btf id {btf_id}")
    try:
        return _btf_raw(ptr)
    finally:
        lib.btf__free(ptr)


def btf_raw_from_elf(path: str) -> bytes:
    """Raw BTF of an ELF object file (libbpf's parser: relocations and DATASEC sizes fixed up)."""
    lib = load_libbpf()
    ptr = _check_ptr(lib.btf__parse_elf(path.encode(), None), "parse btf", path)
    try:
        return _btf_raw(ptr)
    finally:
        lib.btf__free(ptr)


class BtfWriter:
    """libbpf's BTF writer (btf__new_empty + btf__add_*): builds a BTF blob and loads it into the kernel.

    Every add_* returns the new type id. The writer owns its libbpf `struct btf`; free it with close() (or use it as
    a context manager). `load()` returns an Fd that outlives the writer.
    """

    def __init__(self, label: str = "btf") -> None:
        self.label = label
        self._lib = load_libbpf()
        self._btf = _check_ptr(self._lib.btf__new_empty(), "create btf", label)

    def close(self) -> None:
        if self._btf:
            self._lib.btf__free(self._btf)
            self._btf = None

    def __enter__(self) -> BtfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add(self, what: str, ret: int) -> int:
        return check(ret, "build btf", self.label, f"btf__add_{what} failed")

    def add_int(self, name: str, size: int, signed: bool = False, char: bool = False, boolean: bool = False) -> int:
        # The kernel takes one encoding flag at most ("Unsupported encoding" for SIGNED|CHAR): a signed char is
        # written as clang writes it, SIGNED with the name "char".
        if boolean:
            encoding = BTF_INT_BOOL
        elif signed:
            encoding = BTF_INT_SIGNED
        else:
            encoding = BTF_INT_CHAR if char else 0
        return self._add("int", self._lib.btf__add_int(self._btf, name.encode(), size, encoding))

    def add_float(self, name: str, size: int) -> int:
        return self._add("float", self._lib.btf__add_float(self._btf, name.encode(), size))

    def add_ptr(self, target_id: int) -> int:
        return self._add("ptr", self._lib.btf__add_ptr(self._btf, target_id))

    def add_array(self, elem_id: int, index_id: int, count: int) -> int:
        return self._add("array", self._lib.btf__add_array(self._btf, index_id, elem_id, count))

    def add_struct(self, name: str, size: int, union: bool = False) -> int:
        func = self._lib.btf__add_union if union else self._lib.btf__add_struct
        return self._add("union" if union else "struct", func(self._btf, name.encode() if name else None, size))

    def add_field(self, name: str, type_id: int, bit_offset: int, bitfield_size: int = 0) -> int:
        ret = self._lib.btf__add_field(self._btf, name.encode() if name else None, type_id, bit_offset, bitfield_size)
        return self._add("field", ret)

    def add_enum(self, name: str, size: int, values: list[tuple[str, int]], signed: bool = False) -> int:
        wide = size == 8 or any(v > 0x7FFFFFFF or v < -0x80000000 for _name, v in values)
        enc_name = name.encode() if name else None
        if wide:
            type_id = self._add("enum64", self._lib.btf__add_enum64(self._btf, enc_name, size, signed))
            for vname, value in values:
                self._add(
                    "enum64_value", self._lib.btf__add_enum64_value(self._btf, vname.encode(), value & (2**64 - 1))
                )
        else:
            type_id = self._add("enum", self._lib.btf__add_enum(self._btf, enc_name, size))
            for vname, value in values:
                self._add("enum_value", self._lib.btf__add_enum_value(self._btf, vname.encode(), value))
        return type_id

    def add_typedef(self, name: str, type_id: int) -> int:
        return self._add("typedef", self._lib.btf__add_typedef(self._btf, name.encode(), type_id))

    def add_modifier(self, kind: str, type_id: int) -> int:
        func = {
            "const": self._lib.btf__add_const,
            "volatile": self._lib.btf__add_volatile,
            "restrict": self._lib.btf__add_restrict,
        }[kind]
        return self._add(kind, func(self._btf, type_id))

    def add_fwd(self, name: str, union: bool = False) -> int:
        return self._add("fwd", self._lib.btf__add_fwd(self._btf, name.encode(), 1 if union else 0))

    def raw(self) -> bytes:
        return _btf_raw(self._btf)

    def load(self) -> Fd:
        """Load the BTF into the kernel; the returned Fd is ours (dup'ed) and stays valid after close()."""
        check(self._lib.btf__load_into_kernel(self._btf), "load btf", self.label)
        return Fd(os.dup(self._lib.btf__fd(self._btf)), self.label)
