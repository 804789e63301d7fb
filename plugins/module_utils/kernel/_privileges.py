# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The capabilities this process holds, read from /proc/self/status, and which of those the kernel asks for BPF work.

Checked before a module touches anything, so that a task run without root (or in a container without the
capabilities) is refused with the capabilities it lacks instead of the first syscall's bare EPERM.
"""

from __future__ import annotations

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_BPF = 39

# What each kind of BPF work needs; any one capability of a group will do. CAP_BPF (Linux 5.8) is not enough for
# the modules: they look maps, programs, links and BTF up by id (to compare layouts, read facts, find attachments),
# which the kernel allows only with CAP_SYS_ADMIN; it also grants what CAP_BPF and CAP_PERFMON do.
NEEDS: dict[str, tuple[tuple[int, ...], str]] = {
    "bpf": (
        (CAP_SYS_ADMIN,),
        "CAP_SYS_ADMIN (BPF objects and their BTF are looked up by id; CAP_BPF alone is not enough)",
    ),
    "net_admin": ((CAP_NET_ADMIN,), "CAP_NET_ADMIN (to attach to interfaces and cgroups)"),
}


def effective_capabilities(status_path: str = "/proc/self/status") -> int | None:
    """The CapEff bit mask, or None when it cannot be read (then nothing is refused up front)."""
    try:
        with open(status_path, encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def missing_capabilities(needs: tuple[str, ...], effective: int | None) -> list[str]:
    """The descriptions of the groups in `needs` of which `effective` holds no capability."""
    if effective is None:
        return []
    missing = []
    for need in needs:
        caps, description = NEEDS[need]
        if not any(effective >> cap & 1 for cap in caps):
            missing.append(description)
    return missing
