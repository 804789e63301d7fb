# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resources layer: attachments of programs to XDP, tc (tcx or clsact + cls_bpf), cgroup and tracing hooks.

`AttachSpec` names a hook; `current(spec)` reads what is attached there now, whoever attached it (netlink for XDP
and cls_bpf, BPF_PROG_QUERY for tcx and cgroups, the kernel's link list to tell links from the rest);
`attach`, `replace` and `detach` change it. Replacing is always an in-place, atomic swap (link update with the
expected old program, XDP_FLAGS_REPLACE with the expected fd, a cls_bpf filter change at the same prio/handle,
BPF_F_REPLACE for legacy cgroup attachments), so the hook is never without a program.

Interface names and ifindexes belong to a network namespace: everything touching them runs inside
`in_netns(spec.netns)`, which switches only the calling thread's network namespace (pins on bpffs stay visible,
unlike `ip netns exec`, which remounts /sys) and always switches back.

Tracing hooks (tracepoint, raw_tracepoint, fentry/fexit/fmod_ret, kprobe/kretprobe) are always bpf_links: raw
tracepoint links, tracing (trampoline) links, and perf_event links over a perf event opened here (a tracefs
tracepoint, or the kprobe PMU). `current` lists the live links of that link type on the same target, whoever made
them. Those link types have no BPF_LINK_UPDATE, so their `replace` is make-before-break: the new program's link is
created and pinned first, then the old link is detached; both programs run for a moment, never neither.
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
    from pyroute2 import IPRoute
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

# clsact's pseudo-parents (TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS/EGRESS)).
TC_PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
TC_CLSACT_HANDLE = 0xFFFF0000
ETH_P_ALL = 0x0003
# cls_bpf attributes pyroute2 0.9 does not name (uapi pkt_cls.h).
TCA_BPF_TAG = 10
TCA_BPF_ID = 11

# IFLA_XDP_*_PROG_ID attribute name -> mode.
_XDP_MODE_ATTRS = {
    "IFLA_XDP_DRV_PROG_ID": "native",
    "IFLA_XDP_SKB_PROG_ID": "generic",
    "IFLA_XDP_HW_PROG_ID": "offload",
}
_XDP_ATTACHED_MODES = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload"}
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

# Errors after which native XDP is retried in generic mode (driver refuses), as opposed to conflicts.
_XDP_CONFLICT_ERRNOS = frozenset({errno.EBUSY, errno.EEXIST, errno.EPERM, errno.EACCES, errno.ENODEV, errno.EBADF})


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


# --- network namespaces and interfaces -----------------------------------------------------------------------------


def _need_pyroute2(spec: AttachSpec) -> None:
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


def _ifindex(spec: AttachSpec) -> int:
    """The interface's index in the current namespace (call inside in_netns)."""
    try:
        return socket.if_nametoindex(spec.interface or "")
    except OSError as exc:
        where = f"netns {spec.netns}" if spec.netns else "this network namespace"
        raise BpfError("resolve", spec.where(), errno.ENODEV, f"no interface {spec.interface!r} in {where}") from exc


def _netlink_error(exc: Exception, op: str, spec: AttachSpec, detail: str | None = None) -> BpfError:
    code = getattr(exc, "code", None) or errno.EIO
    return BpfError(op, spec.where(), code, detail or (str(exc) if not isinstance(exc, NetlinkError) else None))


# --- programs and links --------------------------------------------------------------------------------------------


def _prog_brief(prog_id: int) -> tuple[str, str]:
    """(name, tag) of a program id; empty strings when it vanished meanwhile."""
    try:
        with _libbpf.prog_fd_by_id(prog_id) as fd:
            info = _libbpf.prog_info(fd)
    except BpfError:
        return "", ""
    return info["name"], info["tag"]


def _links(kind: str) -> list[dict[str, Any]]:
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


def defunct_link(spec: AttachSpec) -> dict[str, Any] | None:
    """The link pinned at spec.link_pin when the kernel has taken it off its hook: its interface was unregistered
    (deleted, or its network namespace was), its cgroup removed, or it was BPF_LINK_DETACHed. Such a link stays alive
    as long as it is pinned, but on no hook (ifindex or cgroup id 0); a new interface of the same name is another
    hook. None when the pin holds a live link, no link, or nothing."""
    info = pinned_link(spec.link_pin)
    return info if info is not None and info.get("defunct") else None


def drop_defunct(spec: AttachSpec) -> dict[str, Any] | None:
    """Unpin the defunct link at spec.link_pin (see `defunct_link`), so the hook can be attached again; its details
    when there was one. A live link is never touched."""
    info = defunct_link(spec)
    if info is not None:
        _unpin_quietly(spec.link_pin)
    return info


def _claim_links(atts: list[Attachment], links: list[dict[str, Any]], pin: str | None, pin_id: int | None) -> None:
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


def _open_link(att: Attachment, spec: AttachSpec) -> Fd:
    for path in (att.link_pin, spec.link_pin):
        if path and os.path.exists(path) and att.link_id is not None and pinned_link_id(path) == att.link_id:
            return _libbpf.obj_get(path)
    if att.link_fd is not None and att.link_fd.fd >= 0:
        return Fd(os.dup(att.link_fd.fd), f"link id {att.link_id}")
    if att.link_id is None:
        raise BpfError("open", spec.where(), errno.EINVAL, "the attachment has no link")
    return _libbpf.link_fd_by_id(att.link_id)


def _old_prog_fd(spec: AttachSpec, old: Attachment) -> Fd:
    try:
        return _libbpf.prog_fd_by_id(old.prog_id)
    except BpfError as exc:
        raise BpfError(
            "replace",
            spec.where(),
            exc.errno,
            f"the attached program (id {old.prog_id}) is gone: the hook changed concurrently; read the state again",
        ) from exc


def _pin_link(link: Fd, path: str) -> None:
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise BpfError("pin", path, exc.errno or errno.EIO, "cannot create the pin directory") from exc
    link.pin(path)


def _new_link_attachment(spec: AttachSpec, link: Fd, mode: str, ifindex: int | None) -> Attachment:
    """Pin the fresh link (or keep its fd) and describe it. On a pin failure the link is closed: nothing stays."""
    try:
        if spec.link_pin:
            _pin_link(link, spec.link_pin)
        info = _libbpf.link_info(link)
    except BpfError:
        link.close()
        raise
    name, tag = _prog_brief(info["prog_id"])
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


def _unpin_quietly(path: str | None) -> None:
    if path and os.path.lexists(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# --- XDP ---------------------------------------------------------------------------------------------------------


def _xdp_netlink(spec: AttachSpec, ifindex: int) -> list[tuple[str, int]]:
    """(mode, prog id) pairs from IFLA_XDP (covers programs attached through links too)."""
    _need_pyroute2(spec)
    try:
        with IPRoute() as ipr:
            links = ipr.get_links(ifindex)
    except NetlinkError as exc:
        raise _netlink_error(exc, "query", spec) from exc
    xdp = links[0].get_attr("IFLA_XDP") if links else None
    if not xdp:
        return []
    found = [(mode, xdp.get_attr(name)) for name, mode in _XDP_MODE_ATTRS.items() if xdp.get_attr(name)]
    if not found and xdp.get_attr("IFLA_XDP_PROG_ID"):
        mode = _XDP_ATTACHED_MODES.get(xdp.get_attr("IFLA_XDP_ATTACHED"), "native")
        found = [(mode, xdp.get_attr("IFLA_XDP_PROG_ID"))]
    return found


def _xdp_current(spec: AttachSpec) -> list[Attachment]:
    with in_netns(spec.netns):
        ifindex = _ifindex(spec)
        found = _xdp_netlink(spec, ifindex)
    atts = []
    for mode, prog_id in found:
        name, tag = _prog_brief(prog_id)
        atts.append(Attachment(prog_id, name, tag, "netlink", mode, ifindex=ifindex, hook="xdp"))
    if atts:
        links = [info for info in _links("xdp") if info.get("ifindex") == ifindex]
        _claim_links(atts, links, spec.link_pin, pinned_link_id(spec.link_pin))
    return atts


def _xdp_attach(spec: AttachSpec, prog_fd: Fd) -> Attachment:
    existing = _xdp_current(spec)
    if existing:
        raise BpfError(
            "attach",
            spec.where(),
            errno.EEXIST,
            f"{existing[0].label()} is already attached; replace it or detach it first",
        )
    modes = ["native", "generic"] if spec.xdp_mode == "auto" else [spec.xdp_mode]
    with in_netns(spec.netns):
        ifindex = _ifindex(spec)
        first_error: BpfError | None = None
        for mode in modes:
            try:
                link = _libbpf_link.link_create(
                    prog_fd, ifindex, "xdp", label=spec.where(), flags=_libbpf_link.XDP_MODE_FLAGS[mode]
                )
            except BpfError as exc:
                if exc.errno in _XDP_CONFLICT_ERRNOS or mode == modes[-1]:
                    if first_error is None:
                        raise
                    detail = f"{exc.detail}; native mode failed first: {first_error.errno_name} ({first_error.detail})"
                    raise BpfError(exc.op, exc.obj, exc.errno, detail) from exc
                first_error = exc
                continue
            return _new_link_attachment(spec, link, mode, ifindex)
    raise BpfError("attach", spec.where(), errno.EINVAL, "no XDP mode to try")  # unreachable: modes is never empty


def _xdp_set_netlink(spec: AttachSpec, new_fd: int, old: Attachment, op: str) -> None:
    _need_pyroute2(spec)
    flags = _libbpf_link.XDP_FLAGS_REPLACE | _libbpf_link.XDP_MODE_FLAGS.get(old.mode, 0)
    with _old_prog_fd(spec, old) as old_fd, in_netns(spec.netns):
        ifindex = _ifindex(spec)
        attrs = [("IFLA_XDP_FD", new_fd), ("IFLA_XDP_FLAGS", flags), ("IFLA_XDP_EXPECTED_FD", old_fd.fd)]
        try:
            with IPRoute() as ipr:
                ipr.link("set", index=ifindex, xdp={"attrs": attrs})
        except NetlinkError as exc:
            detail = None
            if exc.code == errno.EEXIST:
                detail = f"the attached program is no longer id {old.prog_id} (changed concurrently)"
            elif exc.code == errno.EBUSY:
                detail = "the program is attached through a bpf link; update or detach the link instead"
            raise _netlink_error(exc, op, spec, detail) from exc


# --- tc: tcx and clsact/cls_bpf --------------------------------------------------------------------------------------


def probe_tcx() -> bool:
    """True when the kernel has tcx (6.6+)."""
    return _libbpf_link.probe_tcx()


def _tcx_type(spec: AttachSpec) -> str:
    return f"tcx_{spec.direction}"


def _nla_raw(slot: Any) -> tuple[int, bytes]:
    """(type, payload) of an attribute pyroute2 could not name."""
    nla = slot.nla
    length = nla["header"]["length"]
    return nla["header"]["type"] & 0x3FFF, bytes(nla.data[nla.offset + 4 : nla.offset + length])


def _cls_bpf_filters(spec: AttachSpec, ipr: Any, ifindex: int, direction: str) -> list[Attachment]:
    try:
        msgs = ipr.get_filters(ifindex, parent=TC_PARENTS[direction])
    except NetlinkError as exc:
        if exc.code in (errno.EINVAL, errno.ENOENT):  # no clsact qdisc
            return []
        raise _netlink_error(exc, "query", spec) from exc
    out = []
    for msg in msgs:
        opts = msg.get_attr("TCA_OPTIONS")
        if msg.get_attr("TCA_KIND") != "bpf" or not opts:
            continue
        prog_id, tag = 0, ""
        for slot in opts["attrs"]:
            if slot.name != "UNKNOWN":
                continue
            nla_type, payload = _nla_raw(slot)
            if nla_type == TCA_BPF_ID and len(payload) >= 4:
                prog_id = int.from_bytes(payload[:4], "little")
            elif nla_type == TCA_BPF_TAG:
                tag = payload.hex()
        if not prog_id:
            continue
        name, cur_tag = _prog_brief(prog_id)
        out.append(
            Attachment(
                prog_id,
                name or (opts.get_attr("TCA_BPF_NAME") or ""),
                cur_tag or tag,
                "netlink",
                "cls_bpf",
                ifindex=ifindex,
                hook=f"tc_{direction}",
                priority=msg["info"] >> 16,
                handle=msg["handle"],
            )
        )
    return out


def _tc_current(spec: AttachSpec) -> list[Attachment]:
    tcx = probe_tcx()
    atts: list[Attachment] = []
    with in_netns(spec.netns):
        ifindex = _ifindex(spec)
        tcx_ids = _libbpf_link.prog_query(ifindex, _tcx_type(spec), label=spec.where())[0] if tcx else []
        if HAS_PYROUTE2:
            with IPRoute() as ipr:
                filters = _cls_bpf_filters(spec, ipr, ifindex, spec.direction)
        else:
            filters = []
    for prog_id in tcx_ids:
        name, tag = _prog_brief(prog_id)
        atts.append(Attachment(prog_id, name, tag, "legacy", "tcx", ifindex=ifindex, hook=spec.hook()))
    if atts:
        links = [
            info
            for info in _links("tcx")
            if info.get("ifindex") == ifindex and info.get("attach_type") == _tcx_type(spec)
        ]
        _claim_links(atts, links, spec.link_pin, pinned_link_id(spec.link_pin))
    return atts + filters


def _use_tcx(spec: AttachSpec) -> bool:
    if spec.tc_backend == "cls_bpf":
        return False
    if probe_tcx():
        return True
    if spec.tc_backend == "tcx":
        raise BpfError(
            "attach", spec.where(), errno.EOPNOTSUPP, "tcx needs kernel 6.6 or later; use tc_backend=cls_bpf"
        )
    return False


def _ensure_clsact(spec: AttachSpec, ipr: Any, ifindex: int) -> None:
    for qdisc in ipr.get_qdiscs(ifindex):
        if qdisc["handle"] == TC_CLSACT_HANDLE or qdisc["parent"] == 0xFFFFFFF1:
            kind = qdisc.get_attr("TCA_KIND")
            if kind == "clsact":
                return
            raise BpfError(
                "attach",
                spec.where(),
                errno.EEXIST,
                f"the interface has an '{kind}' qdisc where clsact goes; remove it (tc qdisc del dev ... {kind})",
            )
    try:
        ipr.tc("add", "clsact", ifindex)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise _netlink_error(exc, "attach", spec, "cannot add the clsact qdisc") from exc


def _cls_bpf_request(spec: AttachSpec, prog_fd: Fd, name: str) -> dict[str, Any]:
    return {
        "fd": prog_fd.fd,
        "name": name or "cnf",
        "parent": TC_PARENTS[spec.direction],
        "classid": 1,
        "direct_action": True,
        "prio": spec.priority,
        "protocol": ETH_P_ALL,
    }


def _cls_bpf_attachment(spec: AttachSpec, info: dict[str, Any], ifindex: int, priority: int, handle: int) -> Attachment:
    """The Attachment a cls_bpf filter of program `info` at priority/handle on ifindex is."""
    return Attachment(
        info["id"],
        info["name"],
        info["tag"],
        "netlink",
        "cls_bpf",
        ifindex=ifindex,
        hook=spec.hook(),
        priority=priority,
        handle=handle,
    )


def _cls_bpf_attach(spec: AttachSpec, prog_fd: Fd) -> Attachment:
    _need_pyroute2(spec)
    info = _libbpf.prog_info(prog_fd)
    with in_netns(spec.netns):
        ifindex = _ifindex(spec)
        with IPRoute() as ipr:
            for att in _cls_bpf_filters(spec, ipr, ifindex, spec.direction):
                if att.priority == spec.priority and att.handle == spec.handle:
                    raise BpfError(
                        "attach",
                        spec.where(),
                        errno.EEXIST,
                        f"{att.label()} already holds prio {spec.priority} handle {spec.handle}; replace it or "
                        "detach it first",
                    )
            _ensure_clsact(spec, ipr, ifindex)
            try:
                ipr.tc("add-filter", "bpf", ifindex, spec.handle, **_cls_bpf_request(spec, prog_fd, info["name"]))
            except NetlinkError as exc:
                raise _netlink_error(exc, "attach", spec) from exc
    return _cls_bpf_attachment(spec, info, ifindex, spec.priority, spec.handle)


def _cls_bpf_replace(spec: AttachSpec, old: Attachment, new_prog_fd: Fd) -> Attachment:
    _need_pyroute2(spec)
    info = _libbpf.prog_info(new_prog_fd)
    with in_netns(spec.netns):
        ifindex = _ifindex(spec)
        with IPRoute() as ipr:
            now = [
                att
                for att in _cls_bpf_filters(spec, ipr, ifindex, spec.direction)
                if (att.priority, att.handle) == (old.priority, old.handle)
            ]
            if not now or now[0].prog_id != old.prog_id:
                held = now[0].label() if now else "nothing"
                raise BpfError(
                    "replace",
                    spec.where(),
                    errno.ESTALE,
                    f"prio {old.priority} handle {old.handle} now holds {held}, not program id {old.prog_id}; read "
                    "the state again",
                )
            request = dict(_cls_bpf_request(spec, new_prog_fd, info["name"]), prio=old.priority)
            try:
                # 'change' swaps the program of the existing filter in place and fails if the filter is gone.
                ipr.tc("change-filter", "bpf", ifindex, old.handle, **request)
            except NetlinkError as exc:
                raise _netlink_error(exc, "replace", spec) from exc
    return _cls_bpf_attachment(spec, info, ifindex, old.priority, old.handle)


def _cls_bpf_detach(spec: AttachSpec, att: Attachment) -> None:
    _need_pyroute2(spec)
    with in_netns(spec.netns):
        ifindex = _ifindex(spec)
        with IPRoute() as ipr:
            try:
                ipr.tc(
                    "del-filter",
                    "bpf",
                    ifindex,
                    att.handle,
                    parent=TC_PARENTS[spec.direction],
                    prio=att.priority,
                    protocol=ETH_P_ALL,
                )
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.EINVAL):
                    raise _netlink_error(exc, "detach", spec) from exc
            # The clsact qdisc goes with the last filter (ours or anybody's) on either side.
            remaining = []
            for direction in DIRECTIONS:
                try:
                    remaining += ipr.get_filters(ifindex, parent=TC_PARENTS[direction])
                except NetlinkError:
                    pass
            if not remaining:
                try:
                    ipr.tc("del", "clsact", ifindex)
                except NetlinkError:
                    pass


# --- cgroups -------------------------------------------------------------------------------------------------------


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


def _cgroup_fd(spec: AttachSpec) -> Fd:
    path = os.path.realpath(spec.cgroup_path())
    if not any(path == mnt or path.startswith(mnt.rstrip("/") + "/") for mnt in cgroup2_mounts()):
        raise BpfError(
            "open",
            path,
            errno.EBADF,
            "not on the cgroup v2 hierarchy (mounted at %s)" % (", ".join(cgroup2_mounts()) or "nowhere"),
        )
    try:
        return Fd(os.open(path, os.O_RDONLY | os.O_DIRECTORY), path)
    except OSError as exc:
        raise BpfError("open", path, exc.errno or errno.ENOENT, "not a cgroup v2 directory") from exc


def _cgroup_type(spec: AttachSpec) -> str:
    name = _libbpf_link.CGROUP_ATTACH_ALIASES.get(spec.cgroup_attach_type, spec.cgroup_attach_type)
    _libbpf_link.attach_type_number(name)  # refuse unknown names early
    return name


def _cgroup_current(spec: AttachSpec) -> list[Attachment]:
    attach_type = _cgroup_type(spec)
    with _cgroup_fd(spec) as cg:
        ids, flags = _libbpf_link.prog_query(cg.fd, attach_type, label=spec.where())
        cgroup_id = os.fstat(cg.fd).st_ino
    mode = _libbpf_link.cgroup_flag_name(flags)
    atts = []
    for prog_id in ids:
        name, tag = _prog_brief(prog_id)
        atts.append(Attachment(prog_id, name, tag, "legacy", mode, hook=spec.hook()))
    if atts:
        links = [
            info
            for info in _links("cgroup")
            if info.get("cgroup_id") == cgroup_id and info.get("attach_type") == attach_type
        ]
        _claim_links(atts, links, spec.link_pin, pinned_link_id(spec.link_pin))
    return atts


def _cgroup_attach(spec: AttachSpec, prog_fd: Fd) -> Attachment:
    attach_type = _cgroup_type(spec)
    with _cgroup_fd(spec) as cg:
        link = _libbpf_link.link_create(prog_fd, cg.fd, attach_type, label=spec.where())
    return _new_link_attachment(spec, link, "multi", None)


# --- tracing hooks -------------------------------------------------------------------------------------------------


def _tracepoint_parts(spec: AttachSpec) -> tuple[str, str]:
    category, _sep, name = (spec.target or "").replace("/", ":").partition(":")
    return category, name


def _kprobe_parts(spec: AttachSpec) -> tuple[str, int]:
    func, _sep, offset = (spec.target or "").partition("+")
    return func, int(offset, 0) if offset else 0


def _tracing_link_matches(spec: AttachSpec, info: dict[str, Any]) -> bool:
    """Whether a live link (details from `_links`) sits on the spec's hook."""
    if spec.kind == "raw_tracepoint":
        return info.get("tp_name") == spec.target
    if spec.kind in BTF_KINDS:
        if info.get("attach_type") != spec.kind or not info.get("target_btf_id"):
            return False
        try:
            return _libbpf_link.btf_type_name(info["target_obj_id"], info["target_btf_id"]) == spec.target
        except BpfError:
            return False  # a target we cannot name (e.g. a BPF program, not kernel BTF): not this hook
    if spec.kind == "tracepoint":
        # The kernel names a tracepoint event without its category.
        return info.get("perf_type") == "tracepoint" and info.get("name") == _tracepoint_parts(spec)[1]
    func, offset = _kprobe_parts(spec)
    return info.get("perf_type") == spec.kind and info.get("name") == func and info.get("offset", 0) == offset


def _tracing_current(spec: AttachSpec) -> list[Attachment]:
    link_type = TRACING_LINK_TYPES[spec.kind]
    pin_id = pinned_link_id(spec.link_pin)
    links = [info for info in _links(link_type) if _tracing_link_matches(spec, info)]
    if pin_id is not None and all(info["id"] != pin_id for info in links):
        # Kernels before 6.6 do not say what a perf_event link is attached to: trust our own pin for that hook.
        try:
            with _libbpf.obj_get(spec.link_pin or "") as fd:
                info = _libbpf_link.link_details(fd)
            if info["type"] == "perf_event" == link_type and info.get("perf_type") == "unknown":
                links.append(info)
        except BpfError:
            pass
    links.sort(key=lambda info: (info["id"] != pin_id, info["id"]))
    atts = []
    for info in links:
        name, tag = _prog_brief(info["prog_id"])
        atts.append(
            Attachment(
                info["prog_id"],
                name,
                tag,
                "link",
                spec.kind,
                link_id=info["id"],
                link_pin=spec.link_pin if info["id"] == pin_id else None,
                hook=spec.hook(),
            )
        )
    return atts


def _check_tracing_program(spec: AttachSpec, prog_fd: Fd) -> dict[str, Any]:
    """Refuse a program of the wrong type, or a fentry/fexit/fmod_ret program loaded for another function."""
    info = _libbpf.prog_info(prog_fd)
    allowed = TRACING_PROG_TYPES[spec.kind]
    if info["type"] not in allowed:
        raise BpfError(
            "attach",
            spec.where(),
            errno.EINVAL,
            f"program {info['name']} is a {info['type']} program; {spec.kind} needs {' or '.join(allowed)}",
        )
    if spec.kind in BTF_KINDS:
        loaded_for = _libbpf_link.prog_target_name(prog_fd)
        if loaded_for != spec.target:
            raise BpfError(
                "attach",
                spec.where(),
                errno.EINVAL,
                f"program {info['name']} was loaded for {loaded_for or 'no function'}, not {spec.target} (the "
                f"target of {spec.kind} programs is fixed at load by the section name, {spec.kind}/<function>)",
            )
    return info


def _tracing_link(spec: AttachSpec, prog_fd: Fd) -> Fd:
    """A new, unpinned link of prog_fd on the spec's tracing hook."""
    info = _check_tracing_program(spec, prog_fd)
    label = spec.where()
    if spec.kind == "raw_tracepoint":
        # tp_btf programs (type tracing) carry their tracepoint in their attach BTF; the kernel refuses a name then.
        name = None if info["type"] == "tracing" else spec.target
        return _libbpf_link.raw_tracepoint_open(prog_fd, name, label=label)
    if spec.kind in BTF_KINDS:
        return _libbpf_link.tracing_link_create(prog_fd, spec.kind, label=label)
    if spec.kind == "tracepoint":
        perf = _libbpf_link.tracepoint_perf_event(*_tracepoint_parts(spec))
    else:
        func, offset = _kprobe_parts(spec)
        perf = _libbpf_link.kprobe_perf_event(func, offset, retprobe=spec.kind == "kretprobe")
    with perf:  # the link holds the perf event from now on
        return _libbpf_link.perf_link_create(prog_fd, perf, label=label)


def _tracing_replace(spec: AttachSpec, old: Attachment, new_prog_fd: Fd) -> Attachment:
    """Make-before-break. raw_tracepoint, tracing (fentry/fexit/fmod_ret) and perf_event links have no
    BPF_LINK_UPDATE (the kernel refuses it for these link types), and several programs may share these hooks: so the
    new program gets its own link first, which takes over the pin (an atomic rename on bpffs), and only then is the
    old link detached. Both programs run for that moment; the hook never runs neither."""
    with _open_link(old, spec) as old_link:  # holds the old link while its pin is taken over
        now = _libbpf.link_info(old_link)
        if now["prog_id"] != old.prog_id:
            raise BpfError(
                "replace",
                spec.where(),
                errno.ESTALE,
                f"link id {old.link_id} now runs program id {now['prog_id']}, not {old.prog_id}; read the state again",
            )
        new_link = _tracing_link(spec, new_prog_fd)
        if spec.link_pin:
            staging = spec.link_pin + "~swap"  # bpffs refuses names with a dot; hook ids never contain '~'
            _unpin_quietly(staging)
            try:
                _pin_link(new_link, staging)
                os.rename(staging, spec.link_pin)
            except (BpfError, OSError) as exc:
                _unpin_quietly(staging)
                new_link.close()  # its last reference: the new link detaches, the old one still runs
                if isinstance(exc, BpfError):
                    raise
                raise BpfError("pin", spec.link_pin, exc.errno or errno.EIO, "cannot move the new link's pin") from exc
        try:
            _release_link(spec, old, old_link, "replace")
        except BpfError as exc:
            new_link.close()  # pinned (or not ours to keep): the new program stays attached either way
            raise BpfError(exc.op, exc.obj, exc.errno, f"{exc.detail}; the new program is attached too") from exc
    info = _libbpf.link_info(new_link)
    name, tag = _prog_brief(info["prog_id"])
    att = Attachment(
        info["prog_id"],
        name,
        tag,
        "link",
        spec.kind,
        link_id=info["id"],
        link_pin=spec.link_pin,
        hook=spec.hook(),
    )
    if spec.link_pin:
        new_link.close()
    else:
        att.link_fd = new_link
    return att


LINK_RELEASE_TIMEOUT = 5.0


def _release_link(spec: AttachSpec, att: Attachment, link: Fd, op: str) -> None:
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
            _unpin_quietly(path)
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


def _tracing_detach(spec: AttachSpec, att: Attachment) -> None:
    try:
        link = _open_link(att, spec)
    except BpfError as exc:
        if exc.errno != errno.ENOENT:
            raise
        return  # the link is gone already
    with link:
        if att.link_id is not None and _libbpf.link_info(link)["id"] != att.link_id:
            raise BpfError("detach", spec.where(), errno.ESTALE, f"link id {att.link_id} is not the pinned one")
        _release_link(spec, att, link, "detach")


# --- the interface -------------------------------------------------------------------------------------------------


def current(spec: AttachSpec) -> list[Attachment]:
    """Everything attached on the hook now, by anybody: XDP in every mode; for tc, tcx programs (in run order) then
    cls_bpf filters on that clsact side; for cgroups, the programs attached directly to that cgroup; for tracing hooks,
    every bpf_link of that kind on that target (the pinned one first; perf events attached without a link, e.g. by
    PERF_EVENT_IOC_SET_BPF, and kprobe_multi links are not seen)."""
    spec.validate()
    if spec.kind == "xdp":
        return _xdp_current(spec)
    if spec.kind == "tc":
        return _tc_current(spec)
    if spec.kind in TRACING_KINDS:
        return _tracing_current(spec)
    return _cgroup_current(spec)


def attach(spec: AttachSpec, prog_fd: Fd) -> Attachment:
    """Attach the program: XDP, tcx, cgroups and tracing hooks through a bpf_link pinned at spec.link_pin, cls_bpf
    through a clsact filter. Refuses (EEXIST, naming the holder) when the exclusive XDP hook or the cls_bpf
    prio/handle is taken; deciding to replace is the caller's business."""
    spec.validate()
    if spec.kind == "tc" and not _use_tcx(spec):
        return _cls_bpf_attach(spec, prog_fd)
    _check_pin_free(spec)
    if spec.kind in TRACING_KINDS:
        return _new_link_attachment(spec, _tracing_link(spec, prog_fd), spec.kind, None)
    if spec.kind == "xdp":
        return _xdp_attach(spec, prog_fd)
    if spec.kind == "tc":
        with in_netns(spec.netns):
            ifindex = _ifindex(spec)
            link = _libbpf_link.link_create(prog_fd, ifindex, _tcx_type(spec), label=spec.where())
        return _new_link_attachment(spec, link, "tcx", ifindex)
    return _cgroup_attach(spec, prog_fd)


def _check_pin_free(spec: AttachSpec, link_id: int | None = None) -> None:
    """Make spec.link_pin usable for a new link (or for link `link_id`): a defunct link there is unpinned (see
    `defunct_link`); anything else pinned there (a live link, a map, a program) is an EEXIST naming it."""
    if not spec.link_pin or not os.path.lexists(spec.link_pin):
        return
    if drop_defunct(spec) is not None:
        return
    info = pinned_link(spec.link_pin)
    if info is not None and link_id is not None and info["id"] == link_id:
        return
    what = "something"
    if info is not None:
        where = f", ifindex {info['ifindex']}" if "ifindex" in info else ""
        what = f"a live {info['type']} link (id {info['id']}, program id {info['prog_id']}{where})"
    raise BpfError("pin", spec.link_pin, errno.EEXIST, f"{what} is already pinned there; detach or unpin it")


def _adopt_link(spec: AttachSpec, link: Fd, link_id: int, move_from: str | None) -> None:
    """Pin `link` at spec.link_pin: by moving its pin at `move_from` there (rename(2) on bpffs, so the link is never
    unpinned), or by pinning it once more when it has no pin of ours to move."""
    if not spec.link_pin or pinned_link_id(spec.link_pin) == link_id:
        return
    if move_from and pinned_link_id(move_from) == link_id:
        parent = os.path.dirname(spec.link_pin)
        try:
            os.makedirs(parent, exist_ok=True)
            os.rename(move_from, spec.link_pin)
        except OSError as exc:
            raise BpfError(
                "pin", spec.link_pin, exc.errno or errno.EIO, f"cannot move the link pin {move_from}"
            ) from exc
        return
    _pin_link(link, spec.link_pin)


def replace(spec: AttachSpec, old: Attachment, new_prog_fd: Fd, *, take_pin: str | None = None) -> Attachment:
    """Swap `old`'s program for the new one atomically, in place (same link, filter or netlink slot), failing
    instead of clobbering when the hook no longer runs `old`'s program. Tracing hooks cannot swap a link's program:
    they are make-before-break (see `_tracing_replace`), so both programs run for a moment.

    A link that is not pinned at spec.link_pin (somebody else's) ends up pinned there, so that the caller's record
    names a pin that exists: `take_pin` (that link's pin elsewhere, e.g. another application's) is moved there,
    otherwise the link is pinned once more. A defunct link at spec.link_pin is dropped first; anything else pinned
    there refuses the replacement before the hook is touched."""
    spec.validate()
    if spec.kind in TRACING_KINDS:
        return _tracing_replace(spec, old, new_prog_fd)
    if old.via == "link":
        with _open_link(old, spec) as link, _old_prog_fd(spec, old) as old_fd:
            link_id = _libbpf.link_info(link)["id"]
            adopt = bool(spec.link_pin) and pinned_link_id(spec.link_pin) != link_id
            if adopt:
                _check_pin_free(spec, link_id)
            _libbpf_link.link_update(link, new_prog_fd, old_fd, label=spec.where())
            if adopt:
                try:
                    _adopt_link(spec, link, link_id, take_pin)
                except BpfError:
                    try:  # put the holder's program back: nothing of ours names this link
                        _libbpf_link.link_update(link, old_fd, new_prog_fd, label=spec.where())
                    except BpfError:
                        pass
                    raise
        info = _libbpf.prog_info(new_prog_fd)
        return Attachment(
            info["id"],
            info["name"],
            info["tag"],
            "link",
            old.mode,
            link_id=old.link_id,
            link_pin=spec.link_pin or old.link_pin,
            ifindex=old.ifindex,
            hook=old.hook or spec.hook(),
            link_fd=old.link_fd,
        )
    if spec.kind == "xdp":
        _xdp_set_netlink(spec, new_prog_fd.fd, old, "replace")
    elif old.mode == "cls_bpf":
        return _cls_bpf_replace(spec, old, new_prog_fd)
    else:
        _legacy_replace(spec, old, new_prog_fd)
    info = _libbpf.prog_info(new_prog_fd)
    return Attachment(
        info["id"], info["name"], info["tag"], old.via, old.mode, ifindex=old.ifindex, hook=old.hook or spec.hook()
    )


def _legacy_replace(spec: AttachSpec, old: Attachment, new_prog_fd: Fd) -> None:
    """BPF_PROG_ATTACH attachments (cgroups, tcx): BPF_F_REPLACE where the hook is multi-program; an exclusive or
    override cgroup hook swaps its single program by attaching over it."""
    with _old_prog_fd(spec, old) as old_fd:
        if spec.kind == "cgroup":
            with _cgroup_fd(spec) as cg:
                if old.mode == "multi":
                    _libbpf_link.prog_attach(
                        new_prog_fd,
                        cg.fd,
                        _cgroup_type(spec),
                        label=spec.where(),
                        flags=_libbpf_link.BPF_F_ALLOW_MULTI,
                        replace_prog_fd=old_fd,
                    )
                else:
                    flags = _libbpf_link.BPF_F_ALLOW_OVERRIDE if old.mode == "override" else 0
                    _libbpf_link.prog_attach(new_prog_fd, cg.fd, _cgroup_type(spec), label=spec.where(), flags=flags)
            return
        with in_netns(spec.netns):
            _libbpf_link.prog_attach(
                new_prog_fd, _ifindex(spec), _tcx_type(spec), label=spec.where(), replace_prog_fd=old_fd
            )


def detach(spec: AttachSpec, att: Attachment) -> None:
    """Remove the attachment: detach and unpin its link; clear netlink XDP (only if it still runs att's program);
    delete the cls_bpf filter (and clsact when it was the last filter); BPF_PROG_DETACH legacy attachments. Tracing
    links are released by dropping their pin and fds (see `_release_link`)."""
    spec.validate()
    if spec.kind in TRACING_KINDS:
        _tracing_detach(spec, att)
        return
    if att.via == "link":
        try:
            link = _open_link(att, spec)
        except BpfError as exc:
            if exc.errno != errno.ENOENT:
                raise
            link = None  # already gone; clear a stale pin below
        if link is not None:
            with link:
                if _libbpf.link_info(link)["id"] != att.link_id and att.link_id is not None:
                    raise BpfError("detach", spec.where(), errno.ESTALE, f"link id {att.link_id} is not the pinned one")
                _libbpf_link.link_detach(link, label=spec.where())
        for path in sorted({att.link_pin or "", spec.link_pin or ""}):
            # Only a pin of this very link: never somebody else's object that happens to sit at spec.link_pin.
            if path and att.link_id is not None and pinned_link_id(path) == att.link_id:
                _unpin_quietly(path)
        if att.link_fd is not None:
            att.link_fd.close()
        return
    if spec.kind == "xdp":
        _xdp_set_netlink(spec, -1, att, "detach")
    elif att.mode == "cls_bpf":
        _cls_bpf_detach(spec, att)
    else:
        with _old_prog_fd(spec, att) as prog_fd:
            if spec.kind == "cgroup":
                with _cgroup_fd(spec) as cg:
                    _libbpf_link.prog_detach(prog_fd, cg.fd, _cgroup_type(spec), label=spec.where())
            else:
                with in_netns(spec.netns):
                    _libbpf_link.prog_detach(prog_fd, _ifindex(spec), _tcx_type(spec), label=spec.where())


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
