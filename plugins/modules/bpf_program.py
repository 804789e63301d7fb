#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_program
short_description: Compile, load, pin and upgrade eBPF programs without losing the state in their maps
version_added: 0.1.0
description:
  - Deploys one application, a BPF object, on the managed host. BPF C given in O(src) is compiled there with clang
    into a CO-RE object (C(-target bpf -O2 -g)), cached by the hash of the source, its local headers and the flags;
    or a prebuilt O(object) is used.
  - The object is loaded with libbpf; programs are pinned under C(<pin_root>/<name>/progs/), maps under
    C(<pin_root>/<name>/maps/) (or C(<pin_root>/shared/) for O(shared_maps)), and bpf_links made by
    M(cnf.ebpf.bpf_attach) under C(<pin_root>/<name>/links/).
  - "Upgrades: a new object, new O(constants) or new O(map_sizes) load new programs that reuse every pinned map whose
    layout matches (type, sizes, flags and the BTF layout of key and value: field names, offsets, sizes, kinds), so
    counters and flow tables survive. Program pins are replaced atomically and every attachment recorded by
    M(cnf.ebpf.bpf_attach) is swapped to the new program (bpf_link update or netlink replace), with no moment
    without a program on the hook."
  - Maps whose layout changed follow O(map_policy).
  - What was deployed (object hash, constants, sizes, program and map ids, attachments) is recorded in a small JSON
    state file on the host, written atomically, and returned.
  - A second run with the same object, constants and sizes changes nothing. Pins removed behind the module's back are
    detected and repaired.
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - libbpf 1.x (C(libbpf.so.1); Debian/Ubuntu package C(libbpf1)) and, for O(src), clang on the managed host.
  - Root (CAP_BPF, CAP_SYS_ADMIN), bpffs mounted at C(/sys/fs/bpf).
extends_documentation_fragment:
  - cnf.ebpf.application.pin_root
  - cnf.ebpf.application.state_dir
  - cnf.ebpf.application.lock_timeout
attributes:
  check_mode:
    support: full
    description: Reports what would be compiled, loaded, migrated or swapped (compiling into a scratch directory that is
      removed); nothing on the host changes.
  diff_mode:
    support: none
    description: The result lists what was and is attached or deployed instead of a diff.
options:
  name:
    description: Application name; pins live under C(<pin_root>/<name>/). Letters, digits, C(_) and C(-).
    type: str
    required: true
  state:
    description:
      - V(present) deploys or upgrades the application.
      - V(absent) detaches its recorded attachments, removes its program, link and map pins (not O(shared_maps)) and
        its state file.
    type: str
    default: present
    choices: [present, absent]
  src:
    description:
      - BPF C source file on the managed host, compiled with clang (or, with O(loader=bcc), by bcc).
    type: path
  loader:
    description:
      - V(libbpf) compiles O(src) with clang into a CO-RE object (or takes O(object)) and loads it with libbpf.
      - V(bcc) takes a bcc-dialect O(src) (C(BPF_HASH), C(BPF_ARRAY), C(.increment())...), compiled and loaded by
        bcc's Python bindings on the managed host (python3-bpfcc and the running kernel's headers; the
        M(cnf.ebpf.bpf_host) role installs them with C(bpf_host_bcc=true)). Its O(functions) are loaded and pinned
        like the programs of an object and its tables pinned under the application's C(maps/), so
        M(cnf.ebpf.bpf_attach), M(cnf.ebpf.bpf_map_entries), M(cnf.ebpf.bpf_facts) and upgrades work unchanged;
        an upgrade reuses the pinned tables whose layout is compatible (their contents carry on), through bcc's
        pinned tables. A deployment is identified by the source, O(defines), O(cflags), O(include_dirs),
        O(functions) and the bcc version, so an unchanged task compiles nothing. bcc's compiler errors and the
        verifier's log are returned in C(stderr).
    type: str
    default: libbpf
    choices: [libbpf, bcc]
  functions:
    description:
      - With O(loader=bcc), the functions to load, each with its program type (bcc decides a program's type when
        it is loaded, not in the source).
      - Types whose hooks persist without the module's process are V(xdp), V(tc), V(cgroup_skb), V(cgroup_sock),
        V(tracepoint), V(raw_tracepoint) and V(kprobe) (attached by M(cnf.ebpf.bpf_attach) through netlink or pinned
        links). V(socket_filter), V(perf_event), V(uprobe), V(sk_skb) and V(sk_msg) are refused, because their hooks are
        file descriptors of the attaching process and would be gone when the module exits.
    type: dict
    default: {}
  program_types:
    description:
      - Program name to the libbpf 1.x section name to load it as (V(xdp), V(tc), V(kprobe/do_unlinkat)...), for
        sources whose C(SEC()) names only libbpf before 1.0 accepted (C(SEC("xdp_icmp_echo")), C(SEC("xdp_pass"))),
        so they deploy as written. Without it, such an object is refused before anything is loaded, with a message
        naming the section and the section to write instead.
    type: dict
    default: {}
  object:
    description: A prebuilt BPF object file on the managed host.
    type: path
  include_dirs:
    description: Extra include directories for O(src).
    type: list
    elements: path
    default: []
  defines:
    description: Preprocessor macros for O(src), name to value (null for a bare C(-DNAME)).
    type: dict
    default: {}
  cflags:
    description:
      - Extra clang flags for O(src). Sources that include glibc headers (C(<linux/if.h>), C(<linux/icmp.h>),
        C(<stdint.h>)) need none; the compile puts an empty C(<gnu/stubs.h>) first on the include path, as the
        kernel's BPF selftests do, so C(-target bpf) finds no missing C(gnu/stubs-32.h) on any architecture.
    type: list
    elements: str
    default: []
  constants:
    description:
      - Values of C(volatile const) globals (the object's C(.rodata)), set before load by name and type-checked
        through BTF. Changing them reloads the programs.
    type: dict
    default: {}
  map_sizes:
    description: C(max_entries) overrides per map name, applied before load.
    type: dict
    default: {}
  map_policy:
    description:
      - What to do when a pinned map's layout differs from the new object's map.
      - V(fail) stops with the field-by-field differences; nothing changes.
      - V(recreate) starts the map empty.
      - V(migrate) creates the new map and copies every entry into it field by field by name (new fields are zero,
        removed fields are dropped and reported), before the programs are swapped; if anything fails, the old
        deployment is left as it was. The map type must stay the same, except that a V(hash) map migrates into a
        V(percpu_hash) map and an V(lru_hash) map into an V(lru_percpu_hash) map (each old value into CPU 0's slot,
        zeros in the other CPUs' slots, so sums over CPUs are the old totals); any other change of type, per-CPU
        values back into one value among them, is refused before anything changes.
    type: str
    default: fail
    choices: [fail, recreate, migrate]
  shared_maps:
    description: Maps of the object pinned by name in C(<pin_root>/shared/), so several applications use one map.
    type: list
    elements: str
    default: []
notes:
  - Verifier rejections fail the task with the verifier's own message, the last lines of its log, the number of
    instructions processed and the kernel release; the full log is saved under O(state_dir)C(/logs) and its path
    returned. Nothing stays loaded.
  - Maps the source asks libbpf to pin by name (C(__uint(pinning, LIBBPF_PIN_BY_NAME))) are the application's maps like
    the others, pinned under C(<pin_root>/<name>/maps/) (or C(shared/) when listed in O(shared_maps)), reused on
    upgrade and removed with the application; libbpf does not pin them at C(/sys/fs/bpf/<map>).
  - Flags the kernel sets by itself (C(BPF_F_RDONLY_PROG) on devmaps) do not count as a layout difference.
  - Migration copies a snapshot; updates the old programs make to the old map between the copy and the swap are lost.
  - With O(loader=bcc), tables a source pins itself (C(BPF_TABLE_PINNED)) are pinned under the application like the
    others; O(constants) and O(map_sizes) are not available (bcc sizes tables in the source; use O(defines)).
seealso:
  - module: cnf.ebpf.bpf_attach
  - module: cnf.ebpf.bpf_map_entries
"""

EXAMPLES = r"""
- name: Deploy the XDP filter from source, dropping UDP to port 7777
  cnf.ebpf.bpf_program:
    name: xdp_filter
    src: /opt/cnf/bpf/xdp_filter.c
    constants:
      drop_port: 7777
    map_sizes:
      flows: 65536

- name: Upgrade to a build whose flow value struct gained a field, carrying the flows over
  cnf.ebpf.bpf_program:
    name: xdp_filter
    object: /opt/cnf/build/xdp_filter-v3.o
    map_policy: migrate

- name: Deploy a bcc-dialect XDP counter; bpf_attach, bpf_map_entries and bpf_facts then work on it as on any program
  cnf.ebpf.bpf_program:
    name: proto_counter
    loader: bcc
    src: /opt/cnf/bcc/proto_counter.c
    functions:
      xdp_count: xdp

- name: Remove the application
  cnf.ebpf.bpf_program:
    name: xdp_filter
    state: absent
"""

RETURN = r"""
repaired:
  description:
    - An upgrade an earlier run was killed in (recorded as C(pending) in the application's state before its first
      visible step). The hooks then run the old or the new program, never none; this run redoes the upgrade and
      takes the hooks and pins the killed run had moved as its own. It names the migrated or new maps whose contents
      counted by the killed run's programs are not carried over.
  returned: when an earlier run was killed during an upgrade
  type: list
  elements: str
libbpf_log:
  description: Everything libbpf printed while opening and loading the object, when the load failed.
  returned: on a load failure
  type: str
unreachable_hooks:
  description:
    - Recorded hooks an upgrade could not move to the new program because their interface or network namespace is
      gone; the program was upgraded for every other hook, and the records are kept.
  returned: when an upgrade met such hooks
  type: list
  elements: str
reasons:
  description: Why the application was (or would be) loaded; empty when nothing changed.
  returned: state is present
  type: list
  elements: str
  sample: ["constant drop_port: 53 -> 7777"]
maps:
  description: Per map of the object, what happened to its pin (V(reuse), V(create), V(recreate), V(migrate)).
  returned: state is present
  type: dict
  sample: {flows: {action: reuse, pin: /sys/fs/bpf/cnf/xdp_filter/maps/flows, differences: []}}
migrations:
  description:
    - Per migrated map, the entries copied and the fields dropped and added.
    - C(into_per_cpu) (only for a map migrated into its per-CPU kind) says that each old value is in CPU 0's slot.
  returned: when maps were migrated
  type: dict
  sample: {flows: {entries: 1200, dropped_fields: [value.old], added_fields: [value.drops]}}
swapped:
  description: Hooks moved to the new programs (in check mode, the hooks that would be moved).
  returned: when programs were upgraded
  type: list
  elements: str
  sample: [xdp-host-eth0]
source:
  description: Where the object came from; for O(src), whether the compile cache was hit and the cache key.
  returned: state is present
  type: dict
  sample: {src: /opt/cnf/bpf/xdp_filter.c, cached: true, source_digest: 3f2a...}
state:
  description:
    - The deployment record (object hash, constants, map sizes, programs with ids, tags and pins, maps and
      attachments).
  returned: state is present
  type: dict
state_path:
  description: The state file on the host.
  returned: always
  type: str
  sample: /var/lib/cnf-ebpf/apps/xdp_filter.json
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._program_module import (
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
    REQUIRED_IF,
    run,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_if=REQUIRED_IF,
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
