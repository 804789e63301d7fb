# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel layer for attachments: bpf links, attachment queries and legacy BPF_PROG_ATTACH (libbpf 1.1 via ctypes).

Only symbols present in libbpf 1.1 (Debian 12) are declared. tcx (kernel >= 6.6) has no libbpf 1.1 API, but
libbpf 1.1 passes attach types it does not know through `bpf_link_create` (with zeroed opts) and
`bpf_prog_query_opts`, so the raw uapi numbers are used and support is probed at runtime (`probe_tcx`).

Targets are ints: an ifindex (XDP, tcx: resolved in the calling thread's network namespace) or an open fd (a
cgroup directory). All failures are `BpfError(op, obj, errno, detail)` as in `_libbpf`.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils._libbpf import (
    ENOTSUPP,
    BpfError,
    Fd,
    link_info,
    load_libbpf,
)

# enum bpf_attach_type (uapi linux/bpf.h). tcx_* exist from kernel 6.6 on; libbpf 1.1's header stops at 43.
ATTACH_TYPES: dict[str, int] = {
    "cgroup_inet_ingress": 0,
    "cgroup_inet_egress": 1,
    "cgroup_inet_sock_create": 2,
    "cgroup_sock_ops": 3,
    "cgroup_device": 6,
    "cgroup_inet4_bind": 8,
    "cgroup_inet6_bind": 9,
    "cgroup_inet4_connect": 10,
    "cgroup_inet6_connect": 11,
    "cgroup_inet4_post_bind": 12,
    "cgroup_inet6_post_bind": 13,
    "cgroup_udp4_sendmsg": 14,
    "cgroup_udp6_sendmsg": 15,
    "cgroup_sysctl": 18,
    "cgroup_udp4_recvmsg": 19,
    "cgroup_udp6_recvmsg": 20,
    "cgroup_getsockopt": 21,
    "cgroup_setsockopt": 22,
    "cgroup_inet4_getpeername": 29,
    "cgroup_inet6_getpeername": 30,
    "cgroup_inet4_getsockname": 31,
    "cgroup_inet6_getsockname": 32,
    "cgroup_inet_sock_release": 34,
    "xdp": 37,
    "tcx_ingress": 46,
    "tcx_egress": 47,
}
ATTACH_TYPE_NAMES: dict[int, str] = {v: k for k, v in ATTACH_TYPES.items()}
# The spelling bpftool and the kernel docs use (cgroup_inet_sock_create is "sock_create", etc.).
CGROUP_ATTACH_ALIASES: dict[str, str] = {
    "cgroup_sock_create": "cgroup_inet_sock_create",
    "cgroup_sock_release": "cgroup_inet_sock_release",
    "ingress": "cgroup_inet_ingress",
    "egress": "cgroup_inet_egress",
    "sock_create": "cgroup_inet_sock_create",
    "sock_release": "cgroup_inet_sock_release",
    "sock_ops": "cgroup_sock_ops",
    "device": "cgroup_device",
}

# XDP flags (uapi linux/if_link.h), used for XDP links and IFLA_XDP_FLAGS alike.
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
XDP_MODE_FLAGS: dict[str, int] = {
    "native": XDP_FLAGS_DRV_MODE,
    "generic": XDP_FLAGS_SKB_MODE,
    "offload": XDP_FLAGS_HW_MODE,
}

# BPF_PROG_ATTACH / BPF_LINK_UPDATE flags.
BPF_F_ALLOW_OVERRIDE = 1 << 0
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2
# BPF_PROG_QUERY flags.
BPF_F_QUERY_EFFECTIVE = 1 << 0


def cgroup_flag_name(flags: int) -> str:
    """How a cgroup hook is shared: 'multi', 'override' or 'exclusive' (BPF_PROG_ATTACH without flags)."""
    if flags & BPF_F_ALLOW_MULTI:
        return "multi"
    if flags & BPF_F_ALLOW_OVERRIDE:
        return "override"
    return "exclusive"


def attach_type_number(attach_type: str | int) -> int:
    if isinstance(attach_type, int):
        return attach_type
    name = CGROUP_ATTACH_ALIASES.get(attach_type, attach_type)
    if name not in ATTACH_TYPES:
        raise BpfError(
            "attach",
            attach_type,
            errno_mod.EINVAL,
            "unknown attach type; use one of %s" % ", ".join(sorted(ATTACH_TYPES)),
        )
    return ATTACH_TYPES[name]


# --- ctypes structures (libbpf 1.1 bpf.h; sizes checked against the C header: 64, 16, 40, 16) ----------------------


class _LinkCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("flags", ctypes.c_uint32),
        ("iter_info", ctypes.c_void_p),
        ("iter_info_len", ctypes.c_uint32),
        ("target_btf_id", ctypes.c_uint32),
        # union { perf_event; kprobe_multi {u32 flags, cnt; syms, addrs, cookies}; tracing }: kept zero.
        ("union_words", ctypes.c_uint64 * 4),
    ]


class _LinkUpdateOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint32), ("old_prog_fd", ctypes.c_uint32)]


class _ProgQueryOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("query_flags", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("prog_ids", ctypes.POINTER(ctypes.c_uint32)),
        ("prog_cnt", ctypes.c_uint32),
        ("prog_attach_flags", ctypes.POINTER(ctypes.c_uint32)),
    ]


class _ProgAttachOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint), ("replace_prog_fd", ctypes.c_int)]


_INT = ctypes.c_int
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_link_create": (_INT, [_INT, _INT, _INT, ctypes.POINTER(_LinkCreateOpts)]),
    "bpf_link_update": (_INT, [_INT, _INT, ctypes.POINTER(_LinkUpdateOpts)]),
    "bpf_link_detach": (_INT, [_INT]),
    "bpf_prog_query_opts": (_INT, [_INT, _INT, ctypes.POINTER(_ProgQueryOpts)]),
    "bpf_prog_attach_opts": (_INT, [_INT, _INT, _INT, ctypes.POINTER(_ProgAttachOpts)]),
    "bpf_prog_detach2": (_INT, [_INT, _INT, _INT]),
}

_declared: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """The CDLL from `load_libbpf()`, with this file's prototypes declared on it (once)."""
    global _declared
    lib = load_libbpf()
    if _declared is not lib:
        for name, (restype, argtypes) in _PROTOTYPES.items():
            func = getattr(lib, name)
            func.restype = restype
            func.argtypes = argtypes
        _declared = lib
    return lib


def _check(ret: int, op: str, obj: str, detail: str | None = None) -> int:
    if ret < 0:
        raise BpfError(op, obj, -ret, detail)
    return ret


# --- links -------------------------------------------------------------------------------------------------------


def link_create(prog_fd: Fd, target: int, attach_type: str | int, *, label: str, flags: int = 0) -> Fd:
    """BPF_LINK_CREATE: attach `prog_fd` to `target` (ifindex or cgroup fd) and return the owned link fd.

    `flags` are the XDP mode flags for XDP links; 0 elsewhere. The attachment lives as long as the link has a
    reference (this fd, or a pin made with `Fd.pin`)."""
    opts = _LinkCreateOpts(sz=ctypes.sizeof(_LinkCreateOpts), flags=flags)
    ret = _lib().bpf_link_create(prog_fd.fd, target, attach_type_number(attach_type), ctypes.byref(opts))
    detail = None
    if ret == -errno_mod.EBUSY:
        detail = "the hook is held by another program or link"
    elif ret == -errno_mod.EEXIST:
        detail = "another program is attached in a different mode (native and generic XDP cannot coexist)"
    elif ret == -errno_mod.EPERM:
        detail = "the hook refuses links here (e.g. a cgroup with an exclusive BPF_PROG_ATTACH program) or no CAP_BPF"
    return Fd(_check(ret, "attach", label, detail), f"link {label}")


def link_update(link_fd: Fd, new_prog_fd: Fd, old_prog_fd: Fd | None, *, label: str) -> None:
    """BPF_LINK_UPDATE: swap the link's program atomically. With `old_prog_fd` (BPF_F_REPLACE) the kernel refuses
    with EPERM when the link no longer runs that program, so a concurrent change is not clobbered."""
    opts = _LinkUpdateOpts(sz=ctypes.sizeof(_LinkUpdateOpts))
    if old_prog_fd is not None:
        opts.flags = BPF_F_REPLACE
        opts.old_prog_fd = old_prog_fd.fd
    ret = _lib().bpf_link_update(link_fd.fd, new_prog_fd.fd, ctypes.byref(opts))
    detail = None
    if ret == -errno_mod.EPERM and old_prog_fd is not None:
        detail = "the link no longer runs the expected program (changed concurrently); read the state again"
    elif ret == -errno_mod.ENOLINK:
        detail = "the link is detached (its hook or interface is gone)"
    elif ret == -errno_mod.EINVAL:
        detail = "the new program's type or expected attach type does not fit this link"
    _check(ret, "replace", label, detail)


def link_detach(link_fd: Fd, *, label: str) -> None:
    """BPF_LINK_DETACH: detach the link from its hook now (pins and fds of the link stay valid, but defunct)."""
    _check(_lib().bpf_link_detach(link_fd.fd), "detach", label)


def link_details(fd: Fd) -> dict[str, Any]:
    """`link_info` plus the per-type fields the attachment layer needs: ifindex (xdp, tcx), attach_type (tcx,
    cgroup, netns), cgroup_id (cgroup)."""
    info = link_info(fd)
    words = info["raw"]
    kind = info["type"]
    if kind == "xdp":
        info["ifindex"] = words[0]
    elif kind in ("tcx", "netkit"):
        info["ifindex"] = words[0]
        info["attach_type"] = ATTACH_TYPE_NAMES.get(words[1], str(words[1]))
    elif kind == "cgroup":
        info["cgroup_id"] = words[0] | (words[1] << 32)
        info["attach_type"] = ATTACH_TYPE_NAMES.get(words[2], str(words[2]))
    return info


# --- queries and legacy attach -----------------------------------------------------------------------------------


def prog_query(target: int, attach_type: str | int, *, label: str, effective: bool = False) -> tuple[list[int], int]:
    """BPF_PROG_QUERY: (program ids attached on `target` for this attach type, in run order; the hook's attach
    flags). `target` is a cgroup fd or, for tcx, an ifindex."""
    lib = _lib()
    capacity = 64
    while True:
        ids = (ctypes.c_uint32 * capacity)()
        opts = _ProgQueryOpts(
            sz=ctypes.sizeof(_ProgQueryOpts),
            query_flags=BPF_F_QUERY_EFFECTIVE if effective else 0,
            prog_ids=ids,
            prog_cnt=capacity,
        )
        ret = lib.bpf_prog_query_opts(target, attach_type_number(attach_type), ctypes.byref(opts))
        if ret == -errno_mod.ENOSPC and capacity < 1 << 16:
            capacity = max(capacity * 4, opts.prog_cnt)
            continue
        _check(ret, "query", label)
        return list(ids[: min(opts.prog_cnt, capacity)]), opts.attach_flags


def prog_attach(
    prog_fd: Fd, target: int, attach_type: str | int, *, label: str, flags: int = 0, replace_prog_fd: Fd | None = None
) -> None:
    """Legacy BPF_PROG_ATTACH (cgroups): with `replace_prog_fd` (needs BPF_F_ALLOW_MULTI) the swap is atomic and
    refused when that program is no longer attached."""
    opts = _ProgAttachOpts(sz=ctypes.sizeof(_ProgAttachOpts), flags=flags)
    if replace_prog_fd is not None:
        opts.flags |= BPF_F_REPLACE
        opts.replace_prog_fd = replace_prog_fd.fd
    ret = _lib().bpf_prog_attach_opts(prog_fd.fd, target, attach_type_number(attach_type), ctypes.byref(opts))
    detail = None
    if ret == -errno_mod.EPERM:
        detail = "the hook's attach flags do not allow this (exclusive/override/multi mismatch)"
    elif ret == -errno_mod.ENOENT and replace_prog_fd is not None:
        detail = "the program to replace is no longer attached (changed concurrently)"
    _check(ret, "attach", label, detail)


def prog_detach(prog_fd: Fd, target: int, attach_type: str | int, *, label: str) -> None:
    """Legacy BPF_PROG_DETACH of one program (bpf_prog_detach2)."""
    _check(_lib().bpf_prog_detach2(prog_fd.fd, target, attach_type_number(attach_type)), "detach", label)


# --- feature probes ----------------------------------------------------------------------------------------------

_UNSUPPORTED = frozenset({errno_mod.EINVAL, errno_mod.EOPNOTSUPP, ENOTSUPP})


def probe_tcx() -> bool:
    """True when the kernel has tcx (6.6+): querying tcx_ingress on the loopback device (ifindex 1 in every
    network namespace) works; kernels without tcx refuse the unknown attach type with EINVAL."""
    try:
        prog_query(1, "tcx_ingress", label="tcx probe")
    except BpfError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    return True
