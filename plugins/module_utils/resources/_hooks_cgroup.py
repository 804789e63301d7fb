# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cgroup hooks: bpf_link attachments (BPF_PROG_QUERY to list them) and legacy BPF_PROG_ATTACH ones."""

from __future__ import annotations

import errno
import os

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf_link
from ansible_collections.cnf.ebpf.plugins.module_utils.kernel._libbpf import BpfError, Fd
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._hooks import (
    Attachment,
    AttachSpec,
    cgroup2_mounts,
    claim_links,
    live_links,
    new_link_attachment,
    pinned_link_id,
    prog_brief,
)


def cgroup_fd(spec: AttachSpec) -> Fd:
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


def cgroup_type(spec: AttachSpec) -> str:
    name = _libbpf_link.CGROUP_ATTACH_ALIASES.get(spec.cgroup_attach_type, spec.cgroup_attach_type)
    _libbpf_link.attach_type_number(name)  # refuse unknown names early
    return name


def cgroup_current(spec: AttachSpec) -> list[Attachment]:
    attach_type = cgroup_type(spec)
    with cgroup_fd(spec) as cg:
        ids, flags = _libbpf_link.prog_query(cg.fd, attach_type, label=spec.where())
        cgroup_id = os.fstat(cg.fd).st_ino
    mode = _libbpf_link.cgroup_flag_name(flags)
    atts = []
    for prog_id in ids:
        name, tag = prog_brief(prog_id)
        atts.append(Attachment(prog_id, name, tag, "legacy", mode, hook=spec.hook()))
    if atts:
        links = [
            info
            for info in live_links("cgroup")
            if info.get("cgroup_id") == cgroup_id and info.get("attach_type") == attach_type
        ]
        claim_links(atts, links, spec.link_pin, pinned_link_id(spec.link_pin))
    return atts


def cgroup_attach(spec: AttachSpec, prog_fd: Fd) -> Attachment:
    attach_type = cgroup_type(spec)
    with cgroup_fd(spec) as cg:
        link = _libbpf_link.link_create(prog_fd, cg.fd, attach_type, label=spec.where())
    return new_link_attachment(spec, link, "multi", None)
