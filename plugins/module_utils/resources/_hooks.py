# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a hook is and what is attached to it: `AttachSpec` (a hook, validated), `Attachment` (one program on it),
the kinds, and what every kind shares: reading the kernel's links, pinning and releasing them, opening programs.

Interface names and ifindexes belong to a network namespace: everything touching them runs inside
`in_netns(spec.netns)`, which switches only the calling thread's network namespace (pins on bpffs stay visible,
unlike `ip netns exec`, which remounts /sys) and always switches back.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf, _libbpf_link
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError, Fd

try:
    from pyroute2 import netns as pyroute2_netns
    from pyroute2.netlink.exceptions import NetlinkError

    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR: str | None = None
except ImportError as import_exc:  # modules call missing_required_lib('pyroute2') with this
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = str(import_exc)

    class NetlinkError(Exception):  # type: ignore[no-redef]
        code = errno.EINVAL


NETNS_RUN_DIR = "/run/netns"


CGROUP_ROOT = "/sys/fs/cgroup"


XDP_MODES = ("auto", "native", "generic", "offload")


TC_BACKENDS = ("auto", "tcx", "cls_bpf")


DIRECTIONS = ("ingress", "egress")


# Tracing hooks. The link type each uses, and which program types fit it.
TRACING_KINDS = ("tracepoint", "raw_tracepoint", "fentry", "fexit", "fmod_ret", "kprobe", "kretprobe")


# Kinds whose target comes from the program's attach BTF (fixed at load), not from the attach call.
BTF_KINDS = ("fentry", "fexit", "fmod_ret")


KINDS = ("xdp", "tc", "cgroup", *TRACING_KINDS)


TRACING_LINK_TYPES = {
    "tracepoint": "perf_event",
    "kprobe": "perf_event",
    "kretprobe": "perf_event",
    "raw_tracepoint": "raw_tracepoint",
    "fentry": "tracing",
    "fexit": "tracing",
    "fmod_ret": "tracing",
}


TRACING_PROG_TYPES = {
    "tracepoint": ("tracepoint",),
    "kprobe": ("kprobe",),
    "kretprobe": ("kprobe",),
    "raw_tracepoint": ("raw_tracepoint", "raw_tracepoint_writable", "tracing"),
    "fentry": ("tracing",),
    "fexit": ("tracing",),
    "fmod_ret": ("tracing",),
}


_TARGET_RE = {
    "tracepoint": re.compile(r"^[A-Za-z0-9_.-]+[:/][A-Za-z0-9_.-]+$"),
    "raw_tracepoint": re.compile(r"^[A-Za-z0-9_.-]+$"),
    "fentry": re.compile(r"^[A-Za-z0-9_.]+$"),
    "fexit": re.compile(r"^[A-Za-z0-9_.]+$"),
    "fmod_ret": re.compile(r"^[A-Za-z0-9_.]+$"),
    "kprobe": re.compile(r"^[A-Za-z0-9_.]+(\+(0x[0-9a-fA-F]+|[0-9]+))?$"),
    "kretprobe": re.compile(r"^[A-Za-z0-9_.]+$"),
}


_TARGET_FORMS = {
    "tracepoint": "'category:name' (e.g. syscalls:sys_enter_openat)",
    "raw_tracepoint": "a raw tracepoint name (e.g. sys_enter)",
    "fentry": "a kernel function name",
    "fexit": "a kernel function name",
    "fmod_ret": "a kernel function name",
    "kprobe": "a kernel function name with an optional +offset",
    "kretprobe": "a kernel function name",
}


@dataclass
class AttachSpec:
    """One hook: where a program should be attached, and how."""

    kind: str  # 'xdp' | 'tc' | 'cgroup' | one of TRACING_KINDS
    interface: str | None = None
    netns: str | None = None  # a named netns under /run/netns; None = the caller's
    direction: str = "ingress"  # tc
    xdp_mode: str = "auto"  # auto = native, generic when the driver refuses
    tc_backend: str = "auto"  # auto = tcx when the kernel has it, else clsact + cls_bpf
    priority: int = 1  # cls_bpf
    handle: int = 1  # cls_bpf
    cgroup: str | None = None  # cgroup v2 directory (absolute, or relative to /sys/fs/cgroup)
    cgroup_attach_type: str = "cgroup_inet_ingress"
    link_pin: str | None = None  # where the bpf_link is pinned so the attachment outlives the process
    # Tracing hooks: 'category:name' (tracepoint), a raw tracepoint name, or a kernel function (fentry/fexit/fmod_ret,
    # kprobe with an optional '+offset', kretprobe).
    target: str | None = None

    def hook(self) -> str:
        """'xdp', 'tc_ingress', 'tc_egress', the cgroup attach type, or `kind/target` for tracing hooks."""
        if self.kind == "tc":
            return f"tc_{self.direction}"
        if self.kind == "cgroup":
            return self.cgroup_attach_type
        if self.kind in TRACING_KINDS:
            return f"{self.kind}/{self.target}"
        return self.kind

    def where(self) -> str:
        """The hook as errors name it: `xdp on veth0 (netns blue)`, `cgroup_inet_egress on /sys/fs/cgroup/x`,
        `kprobe do_unlinkat`."""
        if self.kind == "cgroup":
            return f"{self.cgroup_attach_type} on {self.cgroup_path()}"
        if self.kind in TRACING_KINDS:
            return f"{self.kind} {self.target}"
        text = f"{self.hook()} on {self.interface}"
        return f"{text} (netns {self.netns})" if self.netns else text

    def cgroup_path(self) -> str:
        path = self.cgroup or ""
        return path if path.startswith("/") else os.path.join(cgroup2_root(), path)

    def validate(self) -> None:
        """Refuse incoherent specs before touching the host (the planner's argument checks run earlier)."""
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind in TRACING_KINDS and not self.target:
            problems.append(f"{self.kind} needs a target")
        elif self.kind in TRACING_KINDS and not _TARGET_RE[self.kind].match(self.target or ""):
            problems.append(f"{self.kind}: target {self.target!r} is not {_TARGET_FORMS[self.kind]}")
        if self.kind in ("xdp", "tc") and not self.interface:
            problems.append(f"{self.kind} needs an interface")
        if self.kind == "cgroup" and not self.cgroup:
            problems.append("cgroup needs a cgroup path")
        if self.direction not in DIRECTIONS:
            problems.append(f"direction must be ingress or egress, not {self.direction!r}")
        if self.xdp_mode not in XDP_MODES:
            problems.append(f"xdp_mode must be one of {', '.join(XDP_MODES)}")
        if self.tc_backend not in TC_BACKENDS:
            problems.append(f"tc_backend must be one of {', '.join(TC_BACKENDS)}")
        if not 0 < self.priority < 0x10000 or not 0 < self.handle <= 0xFFFFFFFF:
            problems.append("priority must be 1-65535 and handle 1-0xffffffff")
        if problems:
            raise BpfError("check", self.where(), errno.EINVAL, "; ".join(problems))


@dataclass
class Attachment:
    """One program attached on a hook, as the kernel reports it."""

    prog_id: int
    prog_name: str
    prog_tag: str
    via: str  # 'link' | 'netlink' (XDP, cls_bpf) | 'legacy' (BPF_PROG_ATTACH: cgroup, tcx)
    mode: str  # xdp: native|generic|offload; tc: tcx|cls_bpf; cgroup: multi|override|exclusive; tracing: the kind
    link_id: int | None = None
    link_pin: str | None = None
    ifindex: int | None = None
    hook: str = ""
    priority: int | None = None  # cls_bpf
    handle: int | None = None  # cls_bpf
    # The link's fd when it was created without a pin: the attachment lasts as long as this object holds it.
    link_fd: Fd | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hook": self.hook,
            "prog_id": self.prog_id,
            "prog_name": self.prog_name,
            "prog_tag": self.prog_tag,
            "via": self.via,
            "mode": self.mode,
            "link_id": self.link_id,
            "link_pin": self.link_pin,
            "ifindex": self.ifindex,
        }
        if self.mode == "cls_bpf":
            out["priority"] = self.priority
            out["handle"] = self.handle
        return out

    def label(self) -> str:
        """`program xdp_drop (id 42, tag 0123..., via netlink, native)` for error messages."""
        name, tag = self.prog_name or "?", self.prog_tag or "?"
        return f"program {name} (id {self.prog_id}, tag {tag}, via {self.via}, {self.mode})"


def need_pyroute2(spec: AttachSpec) -> None:
    if not HAS_PYROUTE2:
        raise BpfError("netlink", spec.where(), errno.ENOSYS, f"pyroute2 is required: {PYROUTE2_IMPORT_ERROR}")


@contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block in the named network namespace (/run/netns/NAME); None = stay where we are.

    Only the calling thread's network namespace changes (setns CLONE_NEWNET), so bpffs pins remain reachable; the
    original namespace is restored even when the block raises. Sockets and netlink handles opened inside stay bound
    to the namespace they were opened in."""
    if not name:
        yield
        return
    if not HAS_PYROUTE2:
        raise BpfError("enter", f"netns {name}", errno.ENOSYS, f"pyroute2 is required: {PYROUTE2_IMPORT_ERROR}")
    path = name if "/" in name else os.path.join(NETNS_RUN_DIR, name)
    try:
        target = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise BpfError("enter", f"netns {name}", exc.errno or errno.ENOENT, f"no network namespace at {path}") from exc
    saved = -1
    try:
        saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        # An int fd: pyroute2 neither creates nor closes it.
        pyroute2_netns.setns(target, flags=0)
    except OSError as exc:
        os.close(target)
        if saved >= 0:
            os.close(saved)
        raise BpfError("enter", f"netns {name}", exc.errno or errno.EPERM) from exc
    os.close(target)
    try:
        yield
    finally:
        try:
            pyroute2_netns.setns(saved, flags=0)
        finally:
            os.close(saved)


def ifindex_of(spec: AttachSpec) -> int:
    """The interface's index in the current namespace (call inside in_netns)."""
    try:
        return socket.if_nametoindex(spec.interface or "")
    except OSError as exc:
        where = f"netns {spec.netns}" if spec.netns else "this network namespace"
        raise BpfError("resolve", spec.where(), errno.ENODEV, f"no interface {spec.interface!r} in {where}") from exc


def netlink_error(exc: Exception, op: str, spec: AttachSpec, detail: str | None = None) -> BpfError:
    code = getattr(exc, "code", None) or errno.EIO
    return BpfError(op, spec.where(), code, detail or (str(exc) if not isinstance(exc, NetlinkError) else None))


def prog_brief(prog_id: int) -> tuple[str, str]:
    """(name, tag) of a program id; empty strings when it vanished meanwhile."""
    try:
        with _libbpf.prog_fd_by_id(prog_id) as fd:
            info = _libbpf.prog_info(fd)
    except BpfError:
        return "", ""
    return info["name"], info["tag"]


def live_links(kind: str) -> list[dict[str, Any]]:
    """Details of every live link of this type (xdp, tcx, cgroup)."""
    out = []
    for link_id in _libbpf.link_ids():
        try:
            with _libbpf.link_fd_by_id(link_id) as fd:
                info = _libbpf_link.link_details(fd)
        except BpfError:
            continue  # gone meanwhile
        if info["type"] == kind:
            out.append(info)
    return out


def pinned_link_id(path: str | None) -> int | None:
    """Kernel id of the link pinned at `path`; None when nothing, or no link, is pinned there."""
    if not path or not os.path.exists(path):
        return None
    try:
        with _libbpf.obj_get(path) as fd:
            if _libbpf.obj_kind(fd) != "link":
                return None
            return _libbpf.link_info(fd)["id"]
    except BpfError:
        return None


def pinned_link(path: str | None) -> dict[str, Any] | None:
    """Details of the link pinned at `path` (`_libbpf_link.link_details`, with `defunct`); None when nothing, or no
    link, is pinned there."""
    if not path or not os.path.lexists(path):
        return None
    try:
        with _libbpf.obj_get(path) as fd:
            if _libbpf.obj_kind(fd) != "link":
                return None
            info = _libbpf_link.link_details(fd)
    except BpfError:
        return None
    info.pop("raw", None)
    return info


def claim_links(atts: list[Attachment], links: list[dict[str, Any]], pin: str | None, pin_id: int | None) -> None:
    """Mark attachments that are held by one of `links` (same program; each link used once)."""
    free = list(links)
    # The pinned link first, so it is the one reported when one program is attached through several links.
    free.sort(key=lambda info: info["id"] != pin_id)
    for att in atts:
        for info in free:
            if info["prog_id"] == att.prog_id:
                att.via = "link"
                att.link_id = info["id"]
                att.link_pin = pin if info["id"] == pin_id else None
                free.remove(info)
                break


def open_link(att: Attachment, spec: AttachSpec) -> Fd:
    for path in (att.link_pin, spec.link_pin):
        if path and os.path.exists(path) and att.link_id is not None and pinned_link_id(path) == att.link_id:
            return _libbpf.obj_get(path)
    if att.link_fd is not None and att.link_fd.fd >= 0:
        return Fd(os.dup(att.link_fd.fd), f"link id {att.link_id}")
    if att.link_id is None:
        raise BpfError("open", spec.where(), errno.EINVAL, "the attachment has no link")
    return _libbpf.link_fd_by_id(att.link_id)


def old_prog_fd(spec: AttachSpec, old: Attachment) -> Fd:
    try:
        return _libbpf.prog_fd_by_id(old.prog_id)
    except BpfError as exc:
        raise BpfError(
            "replace",
            spec.where(),
            exc.errno,
            f"the attached program (id {old.prog_id}) is gone: the hook changed concurrently; read the state again",
        ) from exc


def pin_link(link: Fd, path: str) -> None:
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise BpfError("pin", path, exc.errno or errno.EIO, "cannot create the pin directory") from exc
    link.pin(path)


def new_link_attachment(spec: AttachSpec, link: Fd, mode: str, ifindex: int | None) -> Attachment:
    """Pin the fresh link (or keep its fd) and describe it. On a pin failure the link is closed: nothing stays."""
    try:
        if spec.link_pin:
            pin_link(link, spec.link_pin)
        info = _libbpf.link_info(link)
    except BpfError:
        link.close()
        raise
    name, tag = prog_brief(info["prog_id"])
    att = Attachment(
        prog_id=info["prog_id"],
        prog_name=name,
        prog_tag=tag,
        via="link",
        mode=mode,
        link_id=info["id"],
        link_pin=spec.link_pin,
        ifindex=ifindex,
        hook=spec.hook(),
    )
    if spec.link_pin:
        link.close()
    else:
        att.link_fd = link
    return att


def unpin_quietly(path: str | None) -> None:
    if path and os.path.lexists(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def cgroup2_mounts() -> list[str]:
    """Mount points of the cgroup v2 hierarchy (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts)."""
    mounts = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] == "cgroup2":
                    mounts.append(fields[4])
    except (OSError, ValueError, IndexError):
        pass
    return mounts


def cgroup2_root() -> str:
    mounts = cgroup2_mounts()
    return mounts[0] if mounts else CGROUP_ROOT


LINK_RELEASE_TIMEOUT = 5.0


def release_link(spec: AttachSpec, att: Attachment, link: Fd, op: str) -> None:
    """Take a tracing link off its hook. BPF_LINK_DETACH where the kernel has it for the link type; raw_tracepoint,
    tracing and perf_event links have none (EOPNOTSUPP), so they leave the hook when their last reference goes: our
    pins of that link and our fds are dropped, then the kernel's deferred free is awaited. A link someone else still
    holds (another pin, another process's fd) cannot be taken off: that is an EBUSY naming the link."""
    link_id = _libbpf.link_info(link)["id"]
    try:
        _libbpf_link.link_detach(link, label=spec.where())
        detached = True
    except BpfError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, _libbpf.ENOTSUPP):
            raise
        detached = False
    for path in sorted({att.link_pin or "", spec.link_pin or ""}):
        # Only a pin of this very link: never somebody else's object that happens to sit at spec.link_pin.
        if path and pinned_link_id(path) == link_id:
            unpin_quietly(path)
    link.close()
    if att.link_fd is not None:
        att.link_fd.close()
    if detached:
        return
    deadline = time.monotonic() + LINK_RELEASE_TIMEOUT
    while True:
        try:
            _libbpf.link_fd_by_id(link_id).close()
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise
        if time.monotonic() > deadline:
            raise BpfError(
                op,
                spec.where(),
                errno.EBUSY,
                f"link id {link_id} ({att.label()}) is still attached: the kernel cannot detach "
                f"{TRACING_LINK_TYPES[spec.kind]} links, they go with their last pin or fd, and another pin or "
                "process still holds this one; remove that pin or stop that process",
            )
        time.sleep(0.02)


def open_program(pin: str) -> tuple[Fd, dict[str, Any]]:
    """An fd and the kernel's info for the program pinned at `pin` (the caller closes the fd)."""
    fd = _libbpf.obj_get(pin)
    if _libbpf.obj_kind(fd) != "prog":
        fd.close()
        raise BpfError("open", pin, errno.EINVAL, "not a pinned BPF program")
    return fd, _libbpf.prog_info(fd)


def loaded_for(fd: Fd) -> str | None:
    """The kernel function a tracing (fentry/fexit/fmod_ret) program was loaded for, from its attach BTF id."""
    return _libbpf_link.prog_target_name(fd)
