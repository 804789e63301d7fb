# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attachments: bpf links, attachment queries and legacy BPF_PROG_ATTACH (libbpf 1.1 via ctypes),
and the tracing hooks' plumbing: raw tracepoint and fentry/fexit links, perf events (perf_event_open through libc's
`syscall`, since libbpf 1.1 has no public API for it) for tracepoints and kprobes, and kernel BTF names.

Only symbols present in libbpf 1.1 (Debian 12) are declared. tcx (kernel >= 6.6) has no libbpf 1.1 API, but
libbpf 1.1 passes attach types it does not know through `bpf_link_create` (with zeroed opts) and
`bpf_prog_query_opts`, so the raw uapi numbers are used and support is probed at runtime (`probe_tcx`).

Targets are ints: an ifindex (XDP, tcx: resolved in the calling thread's network namespace) or an open fd (a
cgroup directory). All failures are `BpfError(op, obj, errno, detail)` as in `_libbpf`.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import fcntl
import os
import platform
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import (
    ENOTSUPP,
    BpfError,
    BtfInfoStruct,
    Fd,
    LinkInfoStruct,
    ProgInfoStruct,
    btf_fd_by_id,
    check,
    declare,
    link_info,
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
# Tracing programs (BPF_PROG_TYPE_TRACING) attached through BPF_LINK_CREATE; the target comes from the program's
# attach_btf_id, fixed when it was loaded (libbpf takes it from the section name, e.g. fentry/do_unlinkat).
TRACING_ATTACH_TYPES: dict[str, int] = {"fentry": 24, "fexit": 25, "fmod_ret": 26}
TRACING_ATTACH_TYPE_NAMES: dict[int, str] = {v: k for k, v in TRACING_ATTACH_TYPES.items()}
BPF_PERF_EVENT = 41
# enum bpf_perf_event_type (uapi, kernel >= 6.6 fills it in perf_event link info; older kernels leave it 0).
PERF_EVENT_LINK_TYPES: dict[int, str] = {
    1: "uprobe",
    2: "uretprobe",
    3: "kprobe",
    4: "kretprobe",
    5: "tracepoint",
    6: "event",
}
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


class _PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to PERF_ATTR_SIZE_VER5 (112 bytes); the kernel zero-fills what it has beyond."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
        ("config2", ctypes.c_uint64),
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("reserved_2", ctypes.c_uint16),
    ]


_INT = ctypes.c_int
_VP = ctypes.c_void_p
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_raw_tracepoint_open": (_INT, [ctypes.c_char_p, _INT]),
    "btf__load_vmlinux_btf": (_VP, []),
    "btf__load_from_kernel_by_id_split": (_VP, [ctypes.c_uint32, _VP]),
    "btf__type_by_id": (_VP, [_VP, ctypes.c_uint32]),
    "btf__name_by_offset": (ctypes.c_char_p, [_VP, ctypes.c_uint32]),
    "btf__free": (None, [_VP]),
    "bpf_link_create": (_INT, [_INT, _INT, _INT, ctypes.POINTER(_LinkCreateOpts)]),
    "bpf_link_update": (_INT, [_INT, _INT, ctypes.POINTER(_LinkUpdateOpts)]),
    "bpf_link_detach": (_INT, [_INT]),
    "bpf_prog_query_opts": (_INT, [_INT, _INT, ctypes.POINTER(_ProgQueryOpts)]),
    "bpf_prog_attach_opts": (_INT, [_INT, _INT, _INT, ctypes.POINTER(_ProgAttachOpts)]),
    "bpf_prog_detach2": (_INT, [_INT, _INT, _INT]),
}


def _lib() -> ctypes.CDLL:
    return declare(_PROTOTYPES)


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
    return Fd(check(ret, "attach", label, detail), f"link {label}")


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
    check(ret, "replace", label, detail)


def link_detach(link_fd: Fd, *, label: str) -> None:
    """BPF_LINK_DETACH: detach the link from its hook now (pins and fds of the link stay valid, but defunct)."""
    check(_lib().bpf_link_detach(link_fd.fd), "detach", label)


def _named_link_words(fd: Fd, name_word: int) -> tuple[list[int], str]:
    """The link's info union, with a name buffer handed to the kernel at union word `name_word` (its length in the
    word after): raw tracepoint names, perf event function/tracepoint names."""
    buf = ctypes.create_string_buffer(512)
    info = LinkInfoStruct()
    address = ctypes.addressof(buf)
    info.union_words[name_word] = address & 0xFFFFFFFF
    info.union_words[name_word + 1] = address >> 32
    info.union_words[name_word + 2] = ctypes.sizeof(buf)
    length = ctypes.c_uint32(ctypes.sizeof(info))
    ret = _lib().bpf_obj_get_info_by_fd(fd.fd, ctypes.byref(info), ctypes.byref(length))
    check(ret, "info", fd.label)
    words = list(info.union_words)
    # Kernels that do not fill this link type's info hand the union back as written: no name then.
    written = words[name_word] == address & 0xFFFFFFFF and words[name_word + 1] == address >> 32
    return words, buf.value.decode(errors="replace") if written else ""


# The info field naming a link's target, by link type: 0 there means the link is defunct (on no hook).
DEFUNCT_TARGETS: dict[str, str] = {"xdp": "ifindex", "tcx": "ifindex", "netkit": "ifindex", "cgroup": "cgroup_id"}


def link_details(fd: Fd) -> dict[str, Any]:
    """`link_info` plus the per-type fields the attachment layer needs: ifindex (xdp, tcx), attach_type (tcx,
    cgroup, netns, tracing), cgroup_id (cgroup), tp_name (raw_tracepoint), target_obj_id and target_btf_id
    (tracing), perf_type, name and offset (perf_event; kernel >= 6.6, else perf_type is 'unknown'); and, for xdp,
    tcx, netkit and cgroup links, `defunct`: the link lost its target (see DEFUNCT_TARGETS)."""
    info = link_info(fd)
    words = info["raw"]
    kind = info["type"]
    if kind == "raw_tracepoint":
        info["tp_name"] = _named_link_words(fd, 0)[1]
    elif kind == "tracing":
        info["attach_type"] = TRACING_ATTACH_TYPE_NAMES.get(words[0], str(words[0]))
        info["target_obj_id"] = words[1]
        info["target_btf_id"] = words[2]
    elif kind == "perf_event":
        words, name = _named_link_words(fd, 2)
        info["perf_type"] = PERF_EVENT_LINK_TYPES.get(words[0], "unknown")
        info["name"] = name
        info["offset"] = words[5] if info["perf_type"] in ("kprobe", "kretprobe") else 0
    if kind == "xdp":
        info["ifindex"] = words[0]
    elif kind in ("tcx", "netkit"):
        info["ifindex"] = words[0]
        info["attach_type"] = ATTACH_TYPE_NAMES.get(words[1], str(words[1]))
    elif kind == "cgroup":
        info["cgroup_id"] = words[0] | (words[1] << 32)
        info["attach_type"] = ATTACH_TYPE_NAMES.get(words[2], str(words[2]))
    # A link whose target went away (interface unregistered, its namespace deleted, cgroup removed) or that was
    # BPF_LINK_DETACHed stays alive while pinned, but on no hook: the kernel reports target 0 then.
    if kind in DEFUNCT_TARGETS:
        info["defunct"] = not info[DEFUNCT_TARGETS[kind]]
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
        check(ret, "query", label)
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
    check(ret, "attach", label, detail)


def prog_detach(prog_fd: Fd, target: int, attach_type: str | int, *, label: str) -> None:
    """Legacy BPF_PROG_DETACH of one program (bpf_prog_detach2)."""
    check(_lib().bpf_prog_detach2(prog_fd.fd, target, attach_type_number(attach_type)), "detach", label)


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


# --- tracing hooks: raw tracepoints, fentry/fexit, perf events -----------------------------------------------------


def raw_tracepoint_open(prog_fd: Fd, name: str | None, *, label: str) -> Fd:
    """BPF_RAW_TRACEPOINT_OPEN: a raw_tracepoint link for `name`; None for programs whose target was fixed at load
    (tp_btf, fentry/fexit: the kernel refuses a name for those)."""
    ret = _lib().bpf_raw_tracepoint_open(name.encode() if name is not None else None, prog_fd.fd)
    detail = None
    if ret == -errno_mod.ENOENT:
        detail = "no such raw tracepoint in the kernel"
    elif ret == -errno_mod.EINVAL:
        detail = "the program's type does not fit a raw tracepoint (it must be raw_tp, raw_tracepoint or tp_btf)"
    return Fd(check(ret, "attach", label, detail), f"link {label}")


def tracing_link_create(prog_fd: Fd, kind: str, *, label: str) -> Fd:
    """BPF_LINK_CREATE for fentry/fexit/fmod_ret: the target is the program's attach_btf_id (set at load)."""
    opts = _LinkCreateOpts(sz=ctypes.sizeof(_LinkCreateOpts))
    ret = _lib().bpf_link_create(prog_fd.fd, 0, TRACING_ATTACH_TYPES[kind], ctypes.byref(opts))
    detail = None
    if ret == -errno_mod.EINVAL:
        detail = f"the program was not loaded as {kind} (its section must be {kind}/<function>)"
    elif ret == -errno_mod.EBUSY:
        detail = "the function's trampoline is full or held exclusively"
    elif ret in (-errno_mod.EOPNOTSUPP, -ENOTSUPP):
        detail = "the kernel cannot attach trampolines here (needs BTF and ftrace direct calls)"
    return Fd(check(ret, "attach", label, detail), f"link {label}")


def perf_link_create(prog_fd: Fd, perf_fd: Fd, *, label: str) -> Fd:
    """BPF_LINK_CREATE with BPF_PERF_EVENT: a perf_event link holding the event (the caller may close its fd)."""
    opts = _LinkCreateOpts(sz=ctypes.sizeof(_LinkCreateOpts))
    ret = _lib().bpf_link_create(prog_fd.fd, perf_fd.fd, BPF_PERF_EVENT, ctypes.byref(opts))
    detail = None
    if ret == -errno_mod.EINVAL:
        detail = (
            "the program's type does not fit this perf event (tracepoint programs for tracepoints, kprobe for kprobes)"
        )
    elif ret == -errno_mod.EEXIST:
        detail = "the perf event already has a program"
    link = Fd(check(ret, "attach", label, detail), f"link {label}")
    try:
        fcntl.ioctl(perf_fd.fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError as exc:
        link.close()
        raise BpfError("enable", label, exc.errno or errno_mod.EIO, "PERF_EVENT_IOC_ENABLE failed") from exc
    return link


PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400  # _IO('$', 0)
# __NR_perf_event_open per architecture (platform.machine()).
_NR_PERF_EVENT_OPEN: dict[str, int] = {
    "x86_64": 298,
    "aarch64": 241,
    "arm64": 241,
    "riscv64": 241,
    "loongarch64": 241,
    "ppc64le": 319,
    "ppc64": 319,
    "s390x": 331,
    "i386": 336,
    "i686": 336,
    "armv7l": 364,
    "armv6l": 364,
}
TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
KPROBE_PMU_DIR = "/sys/bus/event_source/devices/kprobe"
_libc: ctypes.CDLL | None = None


def _libc_lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.syscall.restype = ctypes.c_long
        lib.mount.restype = ctypes.c_int
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
        _libc = lib
    return _libc


def _perf_event_open(attr: _PerfEventAttr, *, label: str, detail: str | None = None) -> Fd:
    """perf_event_open(attr, pid=-1, cpu=0): a tracepoint/kprobe event runs its BPF program on every CPU."""
    machine = platform.machine()
    if machine not in _NR_PERF_EVENT_OPEN:
        raise BpfError("perf_event_open", label, errno_mod.ENOSYS, f"unknown syscall number on {machine}")
    attr.size = ctypes.sizeof(_PerfEventAttr)
    libc = _libc_lib()
    ret = libc.syscall(
        ctypes.c_long(_NR_PERF_EVENT_OPEN[machine]),
        ctypes.byref(attr),
        ctypes.c_int(-1),
        ctypes.c_int(0),
        ctypes.c_int(-1),
        ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC),
    )
    if ret < 0:
        code = ctypes.get_errno() or errno_mod.EINVAL
        raise BpfError("perf_event_open", label, code, detail if code in (errno_mod.ENOENT, errno_mod.EINVAL) else None)
    return Fd(ret, f"perf event {label}")


def tracefs_events_dir() -> str:
    """The tracefs events directory; tracefs is mounted at /sys/kernel/tracing when no tracefs is reachable."""
    for base in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(base, "events")):
            return os.path.join(base, "events")
    base = TRACEFS_DIRS[0]
    ret = _libc_lib().mount(b"tracefs", base.encode(), b"tracefs", 0, None)
    if ret != 0:
        code = ctypes.get_errno() or errno_mod.EIO
        raise BpfError("mount", base, code, "tracefs is not mounted and mounting it failed")
    return os.path.join(base, "events")


def tracepoint_id(category: str, name: str) -> int:
    """A tracepoint's perf id, from tracefs events/<category>/<name>/id."""
    path = os.path.join(tracefs_events_dir(), category, name, "id")
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except FileNotFoundError as exc:
        raise BpfError("resolve", f"tracepoint {category}:{name}", errno_mod.ENOENT, f"no {path}") from exc
    except (OSError, ValueError) as exc:
        raise BpfError(
            "resolve", f"tracepoint {category}:{name}", getattr(exc, "errno", None) or errno_mod.EIO
        ) from exc


def tracepoint_perf_event(category: str, name: str) -> Fd:
    attr = _PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tracepoint_id(category, name))
    return _perf_event_open(attr, label=f"tracepoint {category}:{name}")


def kprobe_pmu() -> tuple[int, int]:
    """(perf type of the kprobe PMU, retprobe config bit); EOPNOTSUPP when the kernel has no kprobe PMU."""
    try:
        with open(os.path.join(KPROBE_PMU_DIR, "type"), encoding="ascii") as f:
            pmu_type = int(f.read().strip())
        with open(os.path.join(KPROBE_PMU_DIR, "format", "retprobe"), encoding="ascii") as f:
            spec = f.read().strip()  # "config:0"
        bit = int(spec.partition(":")[2].split("-")[0])
    except (OSError, ValueError) as exc:
        raise BpfError(
            "resolve",
            "kprobe PMU",
            errno_mod.EOPNOTSUPP,
            f"the kernel has no kprobe PMU ({KPROBE_PMU_DIR}; needs CONFIG_KPROBES and CONFIG_KPROBE_EVENTS)",
        ) from exc
    return pmu_type, bit


def kprobe_perf_event(func: str, offset: int = 0, retprobe: bool = False) -> Fd:
    """A kprobe (or kretprobe) perf event on kernel function `func` (+offset) through the kprobe PMU."""
    pmu_type, bit = kprobe_pmu()
    name = ctypes.create_string_buffer(func.encode())  # stays alive across the syscall
    attr = _PerfEventAttr(type=pmu_type, config=(1 << bit) if retprobe else 0)
    attr.config1 = ctypes.addressof(name)
    attr.config2 = offset
    kind = "kretprobe" if retprobe else "kprobe"
    return _perf_event_open(
        attr,
        label=f"{kind} {func}",
        detail="no such probe-able kernel function (see /proc/kallsyms and kprobe blacklist)",
    )


# --- BTF names of tracing targets ----------------------------------------------------------------------------------

_btf_names: dict[tuple[int, int], str] = {}


def _btf_obj_name(obj_id: int) -> str:
    buf = ctypes.create_string_buffer(64)
    info = BtfInfoStruct(name=ctypes.addressof(buf), name_len=ctypes.sizeof(buf))
    length = ctypes.c_uint32(ctypes.sizeof(info))
    with btf_fd_by_id(obj_id) as fd:
        check(_lib().bpf_obj_get_info_by_fd(fd.fd, ctypes.byref(info), ctypes.byref(length)), "info", fd.label)
    return buf.value.decode(errors="replace")


def btf_type_name(obj_id: int, type_id: int) -> str:
    """The name of type `type_id` in kernel BTF object `obj_id` (vmlinux, or a module's split BTF); cached."""
    key = (obj_id, type_id)
    if key in _btf_names:
        return _btf_names[key]
    lib = _lib()
    base = None
    if _btf_obj_name(obj_id) != "vmlinux":
        base = lib.btf__load_vmlinux_btf()
        if not base:
            raise BpfError("load btf", "vmlinux", ctypes.get_errno() or errno_mod.ENOENT)
    try:
        btf = lib.btf__load_from_kernel_by_id_split(obj_id, base)
        if not btf:
            raise BpfError("load btf", f"btf id {obj_id}", ctypes.get_errno() or errno_mod.ENOENT)
        try:
            t = lib.btf__type_by_id(btf, type_id)
            if not t:
                raise BpfError("resolve", f"btf id {obj_id} type {type_id}", errno_mod.ENOENT)
            name = lib.btf__name_by_offset(btf, ctypes.c_uint32.from_address(t).value) or b""
        finally:
            lib.btf__free(btf)
    finally:
        if base:
            lib.btf__free(base)
    _btf_names[key] = name.decode(errors="replace")
    return _btf_names[key]


def prog_attach_btf(prog_fd: Fd) -> tuple[int, int]:
    """(attach_btf_obj_id, attach_btf_id) of a loaded program: the function a fentry/fexit/fmod_ret (or tp_btf)
    program was loaded for; (0, 0) for programs without one."""
    info = ProgInfoStruct()
    length = ctypes.c_uint32(ctypes.sizeof(info))
    ret = _lib().bpf_obj_get_info_by_fd(prog_fd.fd, ctypes.byref(info), ctypes.byref(length))
    check(ret, "info", prog_fd.label)
    return info.attach_btf_obj_id, info.attach_btf_id


def prog_target_name(prog_fd: Fd) -> str | None:
    """The kernel function a tracing program was loaded for (from its attach BTF), None when it has none."""
    obj_id, type_id = prog_attach_btf(prog_fd)
    if not type_id:
        return None
    return btf_type_name(obj_id, type_id)
