# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tracing hooks (tracepoint, raw_tracepoint, fentry/fexit/fmod_ret, kprobe/kretprobe): always bpf_links: raw
tracepoint links, tracing (trampoline) links, and perf_event links over a perf event opened here (a tracefs
tracepoint, or the kprobe PMU). `tracing_current` lists the live links of that link type on the same target, whoever
made them. Those link types have no BPF_LINK_UPDATE, so their replace is make-before-break: the new program's link is
created and pinned first, then the old link is detached; both programs run for a moment, never neither.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf, _libbpf_link
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError, Fd
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._hooks import (
    BTF_KINDS,
    TRACING_LINK_TYPES,
    TRACING_PROG_TYPES,
    Attachment,
    AttachSpec,
    live_links,
    open_link,
    pin_link,
    pinned_link_id,
    prog_brief,
    release_link,
    unpin_quietly,
)


def _tracepoint_parts(spec: AttachSpec) -> tuple[str, str]:
    category, _sep, name = (spec.target or "").replace("/", ":").partition(":")
    return category, name


def _kprobe_parts(spec: AttachSpec) -> tuple[str, int]:
    func, _sep, offset = (spec.target or "").partition("+")
    return func, int(offset, 0) if offset else 0


def _tracing_link_matches(spec: AttachSpec, info: dict[str, Any]) -> bool:
    """Whether a live link (details from `live_links`) sits on the spec's hook."""
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


def tracing_current(spec: AttachSpec) -> list[Attachment]:
    link_type = TRACING_LINK_TYPES[spec.kind]
    pin_id = pinned_link_id(spec.link_pin)
    links = [info for info in live_links(link_type) if _tracing_link_matches(spec, info)]
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
        name, tag = prog_brief(info["prog_id"])
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


def tracing_link(spec: AttachSpec, prog_fd: Fd) -> Fd:
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


def tracing_replace(spec: AttachSpec, old: Attachment, new_prog_fd: Fd) -> Attachment:
    """Make-before-break. raw_tracepoint, tracing (fentry/fexit/fmod_ret) and perf_event links have no
    BPF_LINK_UPDATE (the kernel refuses it for these link types), and several programs may share these hooks: so the
    new program gets its own link first, which takes over the pin (an atomic rename on bpffs), and only then is the
    old link detached. Both programs run for that moment; the hook never runs neither."""
    with open_link(old, spec) as old_link:  # holds the old link while its pin is taken over
        now = _libbpf.link_info(old_link)
        if now["prog_id"] != old.prog_id:
            raise BpfError(
                "replace",
                spec.where(),
                errno.ESTALE,
                f"link id {old.link_id} now runs program id {now['prog_id']}, not {old.prog_id}; read the state again",
            )
        new_link = tracing_link(spec, new_prog_fd)
        if spec.link_pin:
            staging = spec.link_pin + "~swap"  # bpffs refuses names with a dot; hook ids never contain '~'
            unpin_quietly(staging)
            try:
                pin_link(new_link, staging)
                os.rename(staging, spec.link_pin)
            except (BpfError, OSError) as exc:
                unpin_quietly(staging)
                new_link.close()  # its last reference: the new link detaches, the old one still runs
                if isinstance(exc, BpfError):
                    raise
                raise BpfError("pin", spec.link_pin, exc.errno or errno.EIO, "cannot move the new link's pin") from exc
        try:
            release_link(spec, old, old_link, "replace")
        except BpfError as exc:
            new_link.close()  # pinned (or not ours to keep): the new program stays attached either way
            raise BpfError(exc.op, exc.obj, exc.errno, f"{exc.detail}; the new program is attached too") from exc
    info = _libbpf.link_info(new_link)
    name, tag = prog_brief(info["prog_id"])
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


def tracing_detach(spec: AttachSpec, att: Attachment) -> None:
    try:
        link = open_link(att, spec)
    except BpfError as exc:
        if exc.errno != errno.ENOENT:
            raise
        return  # the link is gone already
    with link:
        if att.link_id is not None and _libbpf.link_info(link)["id"] != att.link_id:
            raise BpfError("detach", spec.where(), errno.ESTALE, f"link id {att.link_id} is not the pinned one")
        release_link(spec, att, link, "detach")
