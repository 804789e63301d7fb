# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libbpf.so.1 itself: loading it once, declaring prototypes, the one error type, file descriptors, object ids and
object info. The other kernel files (maps, BTF, objects, links, event buffers) declare their own prototypes on the
same library through `declare()`.

Every failure is a `BpfError` carrying the operation, the object (a pin path or "map id N") and the errno name, so a
task failure reads like `update /sys/fs/bpf/cnf/acl/rules: E2BIG (map is full, max_entries=1024)`.

libbpf >= 1.0 returns negative errno codes from its fd/int APIs and sets errno for pointer APIs (the 1.0 "strict"
behaviour is the only one), which is what the wrappers rely on. Only symbols present in libbpf 1.1 (Debian 12)
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
    PROG_TYPE_NAMES,
    flag_names,
)

LIBBPF_SONAME = "libbpf.so.1"
# What to tell an operator to install; used with Ansible's missing_required_lib().
LIBBPF_PACKAGE_HINT = "libbpf (Debian/Ubuntu: libbpf1, Fedora/RHEL: libbpf)"

BPF_OBJ_NAME_LEN = 16


# Kernel-internal "operation not supported" (ENOTSUPP, 524) leaks to userspace from some map ops.
ENOTSUPP = 524


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
    "libbpf_probe_bpf_prog_type": (_INT, [_INT, _VP]),
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


def check_ptr(ptr: int | None, op: str, obj: str) -> int:
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


PROG_TYPE_NUMBERS: dict[str, int] = {name: number for number, name in PROG_TYPE_NAMES.items()}

# Program types libbpf 1.1 probes by loading a program that needs an attach target it does not give (or that
# lockdown refuses): its "no" is not the kernel's, so they are never refused on a probe.
_UNPROBEABLE_PROG_TYPES = frozenset({"unspec", "tracing", "ext", "lsm", "struct_ops"})


def probe_prog_type(prog_type: str) -> bool | None:
    """True/False when libbpf's probe (loading a minimal program of the type) says whether the running kernel has
    this program type; None when it cannot tell (an error, a type it cannot probe reliably, an unknown name)."""
    number = PROG_TYPE_NUMBERS.get(prog_type)
    if number is None or prog_type in _UNPROBEABLE_PROG_TYPES:
        return None
    ret = load_libbpf().libbpf_probe_bpf_prog_type(number, None)
    return None if ret < 0 else ret == 1


def probe_map_type(map_type: str) -> bool | None:
    """True when the running kernel supports creating maps of this type (libbpf's own feature probe); None when this
    libbpf cannot probe the type (EOPNOTSUPP: a type newer than the library, e.g. arena for libbpf 1.1)."""
    ret = load_libbpf().libbpf_probe_bpf_map_type(MAP_TYPES[map_type], None)
    if ret == -errno_mod.EOPNOTSUPP:
        return None
    return ret == 1
