#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_attach
short_description: Attach a pinned eBPF program to XDP, tc or cgroup hooks, idempotently
version_added: 0.1.0
description:
  - Attaches a program pinned by M(cnf.ebpf.bpf_program) (or any pinned program) to a hook, through a bpf_link pinned
    on bpffs where the kernel has one, so the attachment outlives the module's process.
  - "XDP: native, generic, offload, or auto (native, falling back to generic when the driver refuses). tc: ingress or
    egress, through tcx links where the kernel has them (6.6+), else a clsact qdisc with a cls_bpf direct-action
    filter at the given priority and handle. cgroup: a cgroup v2 path and attach type."
  - Interfaces may live in a named network namespace; only the network namespace is switched (C(ip netns exec)
    would remount /sys and hide the bpffs pins).
  - Idempotent by comparing what is attached with the pinned program (by id). A program attached by anybody else on
    the same hook is a conflict, reported by name; O(on_conflict=replace) takes the hook over atomically.
  - Attachments of bpf_program applications are recorded in the application's state file, so an upgrade swaps them to
    the new version and removing the application detaches them.
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - libbpf 1.x (C(libbpf.so.1)) and pyroute2 on the managed host.
  - Root (CAP_BPF, CAP_NET_ADMIN), bpffs mounted at C(/sys/fs/bpf).
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
    choices: [xdp, tc, cgroup]
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
  on_conflict:
    description: What to do when another program holds the hook; V(fail) names it, V(replace) takes the hook over.
    type: str
    default: fail
    choices: [fail, replace]
  pin_root:
    description: bpffs directory holding the applications.
    type: path
    default: /sys/fs/bpf/cnf
  state_dir:
    description: Directory of the applications' state files.
    type: path
    default: /var/lib/cnf-ebpf
  lock_timeout:
    description: Seconds to wait for another run on the same application.
    type: int
    default: 60
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

- name: Take over a hook another tool attached to
  cnf.ebpf.bpf_attach:
    program: xdp_filter/xdp_main
    kind: xdp
    interface: eth1
    on_conflict: replace
"""

RETURN = r"""
hook:
  description: The hook's name, also the link pin's file name.
  returned: always
  type: str
  sample: xdp-host-eth1
action:
  description: What was done (V(none), V(attach), V(swap) to our newer program, V(replace) of a foreign program).
  returned: state is present
  type: str
  sample: attach
prog_id:
  description: Kernel id of the attached program.
  returned: state is present
  type: int
  sample: 812
before:
  description: Programs on the hook before the task.
  returned: always
  type: list
  elements: dict
after:
  description: Programs on the hook after the task.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils._attach_module import ARGUMENT_SPEC, REQUIRED_IF, run


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    run(module)


if __name__ == "__main__":
    main()
