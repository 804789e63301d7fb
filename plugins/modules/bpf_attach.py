#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_attach
short_description: Attach a pinned eBPF program to XDP, tc, cgroup or tracing hooks, idempotently
version_added: 0.1.0
description:
  - Attaches a program pinned by M(cnf.ebpf.bpf_program) (or any pinned program) to a hook, through a bpf_link pinned
    on bpffs where the kernel has one, so the attachment outlives the module's process.
  - "XDP: native, generic, offload, or auto (native, falling back to generic when the driver refuses). tc: ingress or
    egress, through tcx links where the kernel has them (6.6+), else a clsact qdisc with a cls_bpf direct-action
    filter at the given priority and handle. cgroup: a cgroup v2 path and attach type."
  - "Tracing hooks, always through a pinned bpf_link: V(tracepoint) (a perf event on a tracefs tracepoint; tracefs is
    mounted at C(/sys/kernel/tracing) when it is not mounted anywhere), V(raw_tracepoint), V(fentry), V(fexit) and
    V(fmod_ret) (BPF trampolines), V(kprobe) and V(kretprobe) (perf events of the kernel's kprobe PMU, which needs
    C(CONFIG_KPROBES) and C(CONFIG_KPROBE_EVENTS))."
  - The program must be of the matching type (C(tracepoint), C(raw_tracepoint) or C(tp_btf), C(kprobe), or a
    C(tracing) program loaded from a C(fentry/<function>), C(fexit/<function>) or C(fmod_ret/<function>) section).
  - "Replacing on tracing hooks is make-before-break, not atomic: the kernel cannot swap the program of a raw
    tracepoint, tracing or perf_event link, so the new program is attached through a new link first, which takes over
    the link pin, and then the old link is detached. For that moment both programs run (an event may be seen by both),
    but the hook never runs neither. This applies to upgrades by M(cnf.ebpf.bpf_program)."
  - Other programs on tracing, cgroup and tc hooks (which the kernel runs side by side) are reported in
    RV(before) and RV(after) and left alone. Perf events given a program without a link
    (C(PERF_EVENT_IOC_SET_BPF)) and kprobe_multi links are not seen. Kernels before 6.6 do not report what a perf_event
    link is attached to, so there only the link pinned by this module is found on tracepoint and kprobe hooks.
  - Interfaces may live in a named network namespace; only the network namespace is switched (C(ip netns exec)
    would remount /sys and hide the bpffs pins).
  - Idempotent by comparing what is attached with the pinned program (by id). XDP holds one program per interface, so
    a program attached there by anybody else is a conflict, reported by name and by holder ("held by application X"
    for another application under O(pin_root), "not deployed by cnf.ebpf" otherwise); O(on_conflict=replace) takes
    the hook over atomically. A cls_bpf filter already at the same priority and handle is refused the same way.
  - "Taking a hook over from another application (under that application's lock, waited for at most
    O(lock_timeout)): its bpf_link is updated to this program and the link's pin moves to this task's link pin, and
    that application's state file forgets the hook (noted under C(taken_over)), so removing it later leaves this
    attachment alone. A link of somebody else is pinned at this task's link pin too, so the record names a real pin."
  - "A link whose interface went away (deleted, or its network namespace deleted; or a cgroup removed) is defunct: the
    kernel keeps it, pinned, on no hook. M(cnf.ebpf.bpf_facts) shows it with C(defunct: true). Once an interface of
    that name is back, the task replaces the defunct link with a new one (changed, with the reason in
    RV(reasons)); O(state=absent) removes it, also while the interface is still missing."
  - Attachments of bpf_program applications are recorded in the application's state file, so an upgrade swaps them to
    the new version and removing the application detaches them.
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - libbpf 1.x (C(libbpf.so.1)) and pyroute2 on the managed host.
  - Root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON for tracing hooks), bpffs mounted at C(/sys/fs/bpf).
  - pyroute2 is needed for XDP, tc and cgroup hooks only.
extends_documentation_fragment:
  - cnf.ebpf.application.pin_root
  - cnf.ebpf.application.state_dir
  - cnf.ebpf.application.lock_timeout
attributes:
  check_mode:
    support: full
    description: Reports whether it would attach, swap, replace or detach; nothing changes.
  diff_mode:
    support: none
    description: The result lists what was and is attached or deployed instead of a diff.
options:
  program:
    description: The program, as C(application/program) of a M(cnf.ebpf.bpf_program) deployment, or a pin path.
    type: str
    required: true
  kind:
    description: The hook family.
    type: str
    required: true
    choices: [xdp, tc, cgroup, tracepoint, raw_tracepoint, fentry, fexit, fmod_ret, kprobe, kretprobe]
  state:
    description: V(present) attaches; V(absent) detaches this program from the hook (a foreign program is left alone).
    type: str
    default: present
    choices: [present, absent]
  interface:
    description: Network interface, for O(kind=xdp) and O(kind=tc).
    type: str
  netns:
    description: Named network namespace (under C(/run/netns)) holding O(interface).
    type: str
  direction:
    description: tc direction.
    type: str
    default: ingress
    choices: [ingress, egress]
  xdp_mode:
    description: XDP mode; V(auto) is native with a fallback to generic.
    type: str
    default: auto
    choices: [auto, native, generic, offload]
  tc_backend:
    description: V(auto) uses tcx links when the kernel has them, else clsact + cls_bpf.
    type: str
    default: auto
    choices: [auto, tcx, cls_bpf]
  priority:
    description: cls_bpf filter priority.
    type: int
    default: 1
  handle:
    description: cls_bpf filter handle.
    type: int
    default: 1
  cgroup:
    description: cgroup v2 directory, for O(kind=cgroup).
    type: path
  attach_type:
    description: cgroup attach type (C(cgroup_inet_ingress), C(cgroup_inet_egress), C(cgroup_sock_create)...).
    type: str
    default: cgroup_inet_ingress
  target:
    description:
      - What a tracing hook attaches to. V(tracepoint) takes C(category:name) as listed under
        C(/sys/kernel/tracing/events) (for example C(syscalls:sys_enter_openat)); V(raw_tracepoint) a raw tracepoint
        name (C(sys_enter)); V(kprobe) a kernel function with an optional C(+offset) (C(do_unlinkat+0x10));
        V(kretprobe) a kernel function.
      - V(fentry), V(fexit) and V(fmod_ret) programs are loaded for one kernel function (their section name), so
        O(target) may be omitted for them; when given it must name that function.
      - Required for O(kind=tracepoint), O(kind=raw_tracepoint), O(kind=kprobe) and O(kind=kretprobe); ignored for the
        other hook families.
    type: str
  on_conflict:
    description:
      - What to do when another program holds an XDP hook; V(fail) names it (and the application holding it, when it
        is one of ours), V(replace) takes the hook over, from another application too (see the description).
      - Hooks that run several programs (tc, cgroup, tracing) attach beside the others instead.
    type: str
    default: fail
    choices: [fail, replace]
seealso:
  - module: cnf.ebpf.bpf_program
"""

EXAMPLES = r"""
- name: XDP filter on eth1, native mode with fallback
  cnf.ebpf.bpf_attach:
    program: xdp_filter/xdp_main
    kind: xdp
    interface: eth1

- name: Count egress packets of a veth inside a namespace
  cnf.ebpf.bpf_attach:
    program: flow_tracker/tc_egress
    kind: tc
    direction: egress
    interface: veth0
    netns: blue

- name: Count getpid() calls with a tracepoint program
  cnf.ebpf.bpf_attach:
    program: syscount/count_getpid
    kind: tracepoint
    target: syscalls:sys_enter_getpid

- name: Raw tracepoint on every syscall entry
  cnf.ebpf.bpf_attach:
    program: syscount/on_sys_enter
    kind: raw_tracepoint
    target: sys_enter

- name: fentry program (its section is fentry/do_unlinkat, so the target comes from the program)
  cnf.ebpf.bpf_attach:
    program: fsmon/unlink_entry
    kind: fentry

- name: kretprobe on a kernel function
  cnf.ebpf.bpf_attach:
    program: fsmon/unlink_ret
    kind: kretprobe
    target: do_unlinkat

- name: Take over a hook another tool attached to
  cnf.ebpf.bpf_attach:
    program: xdp_filter/xdp_main
    kind: xdp
    interface: eth1
    on_conflict: replace
"""

RETURN = r"""
repaired:
  description: An attachment made by an earlier run that was killed before it recorded it, recorded by this run.
  returned: when an earlier run was killed between attaching and recording
  type: list
  elements: str
hook:
  description: The hook's name, also the link pin's file name (under C(<pin_root>/<application>/links/)).
  returned: always
  type: str
  sample: tracepoint-syscalls_sys_enter_getpid
action:
  description:
    - What was done (V(none), V(attach), V(swap) to our newer program, V(replace) of a foreign program).
    - On tracing hooks V(swap) and V(replace) are make-before-break (see the description).
  returned: state is present
  type: str
  sample: attach
prog_id:
  description: Kernel id of the attached program.
  returned: state is present
  type: int
  sample: 812
before:
  description:
    - Programs on the hook before the task, each with C(hook), C(prog_id), C(prog_name), C(prog_tag), C(via), C(mode),
      C(link_id), C(link_pin) and C(ifindex).
    - On tracing hooks C(via) is C(link), C(mode) is the kind and C(hook) is C(<kind>/<target>).
  returned: always
  type: list
  elements: dict
after:
  description: Programs on the hook after the task.
  returned: always
  type: list
  elements: dict
reasons:
  description:
    - Why the task changed something beyond attaching, e.g. a defunct link (its interface went away) replaced or
      unpinned, the hook taken over from another application, or the interface gone at O(state=absent).
  returned: always
  type: list
  elements: str
  sample: ["link id 41 pinned at /sys/fs/bpf/cnf/fw/links/xdp-host-vbB is defunct: its interface went away (or it
    was detached), so the kernel keeps it on no hook; attached again to xdp on vbB"]
replaced:
  description:
    - The program the hook was taken from with O(on_conflict=replace) (C(prog_id), C(prog_name), C(via), C(link_id)),
      and who held it - C(application), the cnf.ebpf application (V(null) when not one of ours) and C(link_pin), its
      link's pin that was moved to this task's.
  returned: when RV(action) is V(replace)
  type: dict
  sample: {"prog_id": 812, "prog_name": "xdp_flow", "via": "link", "link_id": 41, "application": "fw_old",
           "link_pin": "/sys/fs/bpf/cnf/fw_old/links/xdp-host-eth1"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._attach_module import ARGUMENT_SPEC, REQUIRED_IF, run


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    run(module)


if __name__ == "__main__":
    main()
