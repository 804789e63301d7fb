# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hooks on network devices: XDP (bpf_link, or netlink with XDP_FLAGS_REPLACE) and tc (tcx links, or clsact +
cls_bpf filters through pyroute2), read, attached, replaced in place and detached.
"""

from __future__ import annotations

import errno
from typing import Any

try:
    from pyroute2 import IPRoute
except ImportError:  # need_pyroute2() fails every call that would reach it, naming the missing library
    IPRoute = None

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf, _libbpf_link
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError, Fd
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._hooks import (
    DIRECTIONS,
    HAS_PYROUTE2,
    Attachment,
    AttachSpec,
    NetlinkError,
    claim_links,
    ifindex_of,
    in_netns,
    live_links,
    need_pyroute2,
    netlink_error,
    new_link_attachment,
    old_prog_fd,
    pinned_link_id,
    prog_brief,
)

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


# Errors after which native XDP is retried in generic mode (driver refuses), as opposed to conflicts.
_XDP_CONFLICT_ERRNOS = frozenset({errno.EBUSY, errno.EEXIST, errno.EPERM, errno.EACCES, errno.ENODEV, errno.EBADF})


def _xdp_netlink(spec: AttachSpec, ifindex: int) -> list[tuple[str, int]]:
    """(mode, prog id) pairs from IFLA_XDP (covers programs attached through links too)."""
    need_pyroute2(spec)
    try:
        with IPRoute() as ipr:
            links = ipr.get_links(ifindex)
    except NetlinkError as exc:
        raise netlink_error(exc, "query", spec) from exc
    xdp = links[0].get_attr("IFLA_XDP") if links else None
    if not xdp:
        return []
    found = [(mode, xdp.get_attr(name)) for name, mode in _XDP_MODE_ATTRS.items() if xdp.get_attr(name)]
    if not found and xdp.get_attr("IFLA_XDP_PROG_ID"):
        mode = _XDP_ATTACHED_MODES.get(xdp.get_attr("IFLA_XDP_ATTACHED"), "native")
        found = [(mode, xdp.get_attr("IFLA_XDP_PROG_ID"))]
    return found


def xdp_current(spec: AttachSpec) -> list[Attachment]:
    with in_netns(spec.netns):
        ifindex = ifindex_of(spec)
        found = _xdp_netlink(spec, ifindex)
    atts = []
    for mode, prog_id in found:
        name, tag = prog_brief(prog_id)
        atts.append(Attachment(prog_id, name, tag, "netlink", mode, ifindex=ifindex, hook="xdp"))
    if atts:
        links = [info for info in live_links("xdp") if info.get("ifindex") == ifindex]
        claim_links(atts, links, spec.link_pin, pinned_link_id(spec.link_pin))
    return atts


def xdp_attach(spec: AttachSpec, prog_fd: Fd) -> Attachment:
    existing = xdp_current(spec)
    if existing:
        raise BpfError(
            "attach",
            spec.where(),
            errno.EEXIST,
            f"{existing[0].label()} is already attached; replace it or detach it first",
        )
    modes = ["native", "generic"] if spec.xdp_mode == "auto" else [spec.xdp_mode]
    with in_netns(spec.netns):
        ifindex = ifindex_of(spec)
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
            return new_link_attachment(spec, link, mode, ifindex)
    raise BpfError("attach", spec.where(), errno.EINVAL, "no XDP mode to try")  # unreachable: modes is never empty


def xdp_set_netlink(spec: AttachSpec, new_fd: int, old: Attachment, op: str) -> None:
    need_pyroute2(spec)
    flags = _libbpf_link.XDP_FLAGS_REPLACE | _libbpf_link.XDP_MODE_FLAGS.get(old.mode, 0)
    with old_prog_fd(spec, old) as old_fd, in_netns(spec.netns):
        ifindex = ifindex_of(spec)
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
            raise netlink_error(exc, op, spec, detail) from exc


def probe_tcx() -> bool:
    """True when the kernel has tcx (6.6+)."""
    return _libbpf_link.probe_tcx()


def tcx_type(spec: AttachSpec) -> str:
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
        raise netlink_error(exc, "query", spec) from exc
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
        name, cur_tag = prog_brief(prog_id)
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


def tc_current(spec: AttachSpec) -> list[Attachment]:
    tcx = probe_tcx()
    atts: list[Attachment] = []
    with in_netns(spec.netns):
        ifindex = ifindex_of(spec)
        tcx_ids = _libbpf_link.prog_query(ifindex, tcx_type(spec), label=spec.where())[0] if tcx else []
        if HAS_PYROUTE2:
            with IPRoute() as ipr:
                filters = _cls_bpf_filters(spec, ipr, ifindex, spec.direction)
        else:
            filters = []
    for prog_id in tcx_ids:
        name, tag = prog_brief(prog_id)
        atts.append(Attachment(prog_id, name, tag, "legacy", "tcx", ifindex=ifindex, hook=spec.hook()))
    if atts:
        links = [
            info
            for info in live_links("tcx")
            if info.get("ifindex") == ifindex and info.get("attach_type") == tcx_type(spec)
        ]
        claim_links(atts, links, spec.link_pin, pinned_link_id(spec.link_pin))
    return atts + filters


def use_tcx(spec: AttachSpec) -> bool:
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
            raise netlink_error(exc, "attach", spec, "cannot add the clsact qdisc") from exc


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


def cls_bpf_attach(spec: AttachSpec, prog_fd: Fd) -> Attachment:
    need_pyroute2(spec)
    info = _libbpf.prog_info(prog_fd)
    with in_netns(spec.netns):
        ifindex = ifindex_of(spec)
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
                raise netlink_error(exc, "attach", spec) from exc
    return _cls_bpf_attachment(spec, info, ifindex, spec.priority, spec.handle)


def cls_bpf_replace(spec: AttachSpec, old: Attachment, new_prog_fd: Fd) -> Attachment:
    need_pyroute2(spec)
    info = _libbpf.prog_info(new_prog_fd)
    with in_netns(spec.netns):
        ifindex = ifindex_of(spec)
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
                raise netlink_error(exc, "replace", spec) from exc
    return _cls_bpf_attachment(spec, info, ifindex, old.priority, old.handle)


def cls_bpf_detach(spec: AttachSpec, att: Attachment) -> None:
    need_pyroute2(spec)
    with in_netns(spec.netns):
        ifindex = ifindex_of(spec)
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
                    raise netlink_error(exc, "detach", spec) from exc
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
