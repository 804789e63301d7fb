# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attachments of programs to XDP, tc (tcx or clsact + cls_bpf), cgroup and tracing hooks: the one interface the
surface uses, dispatching to the hook kinds (`_hooks_netdev`, `_hooks_cgroup`, `_hooks_tracing`).

`current(spec)` reads what is attached at a hook now, whoever attached it (netlink for XDP and cls_bpf,
BPF_PROG_QUERY for tcx and cgroups, the kernel's link list to tell links from the rest); `attach`, `replace` and
`detach` change it. Replacing is always an in-place, atomic swap (link update with the expected old program,
XDP_FLAGS_REPLACE with the expected fd, a cls_bpf filter change at the same prio/handle, BPF_F_REPLACE for legacy
cgroup attachments), so the hook is never without a program; tracing hooks are make-before-break instead.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf, _libbpf_link
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError, Fd
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._hooks import (
    TRACING_KINDS,
    Attachment,
    AttachSpec,
    ifindex_of,
    in_netns,
    new_link_attachment,
    old_prog_fd,
    open_link,
    pin_link,
    pinned_link,
    pinned_link_id,
    unpin_quietly,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._hooks_cgroup import (
    cgroup_attach,
    cgroup_current,
    cgroup_fd,
    cgroup_type,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._hooks_netdev import (
    cls_bpf_attach,
    cls_bpf_detach,
    cls_bpf_replace,
    tc_current,
    tcx_type,
    use_tcx,
    xdp_attach,
    xdp_current,
    xdp_set_netlink,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._hooks_tracing import (
    tracing_current,
    tracing_detach,
    tracing_link,
    tracing_replace,
)


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
        unpin_quietly(spec.link_pin)
    return info


def current(spec: AttachSpec) -> list[Attachment]:
    """Everything attached on the hook now, by anybody: XDP in every mode; for tc, tcx programs (in run order) then
    cls_bpf filters on that clsact side; for cgroups, the programs attached directly to that cgroup; for tracing hooks,
    every bpf_link of that kind on that target (the pinned one first; perf events attached without a link, e.g. by
    PERF_EVENT_IOC_SET_BPF, and kprobe_multi links are not seen)."""
    spec.validate()
    if spec.kind == "xdp":
        return xdp_current(spec)
    if spec.kind == "tc":
        return tc_current(spec)
    if spec.kind in TRACING_KINDS:
        return tracing_current(spec)
    return cgroup_current(spec)


def attach(spec: AttachSpec, prog_fd: Fd) -> Attachment:
    """Attach the program: XDP, tcx, cgroups and tracing hooks through a bpf_link pinned at spec.link_pin, cls_bpf
    through a clsact filter. Refuses (EEXIST, naming the holder) when the exclusive XDP hook or the cls_bpf
    prio/handle is taken; deciding to replace is the caller's business."""
    spec.validate()
    if spec.kind == "tc" and not use_tcx(spec):
        return cls_bpf_attach(spec, prog_fd)
    _check_pin_free(spec)
    if spec.kind in TRACING_KINDS:
        return new_link_attachment(spec, tracing_link(spec, prog_fd), spec.kind, None)
    if spec.kind == "xdp":
        return xdp_attach(spec, prog_fd)
    if spec.kind == "tc":
        with in_netns(spec.netns):
            ifindex = ifindex_of(spec)
            link = _libbpf_link.link_create(prog_fd, ifindex, tcx_type(spec), label=spec.where())
        return new_link_attachment(spec, link, "tcx", ifindex)
    return cgroup_attach(spec, prog_fd)


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
    pin_link(link, spec.link_pin)


def replace(spec: AttachSpec, old: Attachment, new_prog_fd: Fd, *, take_pin: str | None = None) -> Attachment:
    """Swap `old`'s program for the new one atomically, in place (same link, filter or netlink slot), failing
    instead of clobbering when the hook no longer runs `old`'s program. Tracing hooks cannot swap a link's program:
    they are make-before-break (see `tracing_replace`), so both programs run for a moment.

    A link that is not pinned at spec.link_pin (somebody else's) ends up pinned there, so that the caller's record
    names a pin that exists: `take_pin` (that link's pin elsewhere, e.g. another application's) is moved there,
    otherwise the link is pinned once more. A defunct link at spec.link_pin is dropped first; anything else pinned
    there refuses the replacement before the hook is touched."""
    spec.validate()
    if spec.kind in TRACING_KINDS:
        return tracing_replace(spec, old, new_prog_fd)
    if old.via == "link":
        with open_link(old, spec) as link, old_prog_fd(spec, old) as old_fd:
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
        xdp_set_netlink(spec, new_prog_fd.fd, old, "replace")
    elif old.mode == "cls_bpf":
        return cls_bpf_replace(spec, old, new_prog_fd)
    else:
        _legacy_replace(spec, old, new_prog_fd)
    info = _libbpf.prog_info(new_prog_fd)
    return Attachment(
        info["id"], info["name"], info["tag"], old.via, old.mode, ifindex=old.ifindex, hook=old.hook or spec.hook()
    )


def _legacy_replace(spec: AttachSpec, old: Attachment, new_prog_fd: Fd) -> None:
    """BPF_PROG_ATTACH attachments (cgroups, tcx): BPF_F_REPLACE where the hook is multi-program; an exclusive or
    override cgroup hook swaps its single program by attaching over it."""
    with old_prog_fd(spec, old) as old_fd:
        if spec.kind == "cgroup":
            with cgroup_fd(spec) as cg:
                if old.mode == "multi":
                    _libbpf_link.prog_attach(
                        new_prog_fd,
                        cg.fd,
                        cgroup_type(spec),
                        label=spec.where(),
                        flags=_libbpf_link.BPF_F_ALLOW_MULTI,
                        replace_prog_fd=old_fd,
                    )
                else:
                    flags = _libbpf_link.BPF_F_ALLOW_OVERRIDE if old.mode == "override" else 0
                    _libbpf_link.prog_attach(new_prog_fd, cg.fd, cgroup_type(spec), label=spec.where(), flags=flags)
            return
        with in_netns(spec.netns):
            _libbpf_link.prog_attach(
                new_prog_fd, ifindex_of(spec), tcx_type(spec), label=spec.where(), replace_prog_fd=old_fd
            )


def detach(spec: AttachSpec, att: Attachment) -> None:
    """Remove the attachment: detach and unpin its link; clear netlink XDP (only if it still runs att's program);
    delete the cls_bpf filter (and clsact when it was the last filter); BPF_PROG_DETACH legacy attachments. Tracing
    links are released by dropping their pin and fds (see `release_link`)."""
    spec.validate()
    if spec.kind in TRACING_KINDS:
        tracing_detach(spec, att)
        return
    if att.via == "link":
        try:
            link = open_link(att, spec)
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
                unpin_quietly(path)
        if att.link_fd is not None:
            att.link_fd.close()
        return
    if spec.kind == "xdp":
        xdp_set_netlink(spec, -1, att, "detach")
    elif att.mode == "cls_bpf":
        cls_bpf_detach(spec, att)
    else:
        with old_prog_fd(spec, att) as prog_fd:
            if spec.kind == "cgroup":
                with cgroup_fd(spec) as cg:
                    _libbpf_link.prog_detach(prog_fd, cg.fd, cgroup_type(spec), label=spec.where())
            else:
                with in_netns(spec.netns):
                    _libbpf_link.prog_detach(prog_fd, ifindex_of(spec), tcx_type(spec), label=spec.where())
