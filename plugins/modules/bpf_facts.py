#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_facts
short_description: Gather what eBPF is doing on a host, with decoded map contents, as facts
version_added: 0.1.0
description:
  - Sets C(ansible_facts.bpf) with the subsets chosen by O(gather_subset), read-only.
  - "V(kernel): release, BTF, bpffs mounts, JIT and stats switches, and feature probes (map types, batch map
    operations, tcx, XDP links)."
  - "V(programs), V(maps), V(links): every loaded object with its kernel info, its pins, and the bpf_program
    application it belongs to (told by its pins under O(pin_root); null for objects this collection did not deploy).
    Maps of every type are listed with their type (and C(type_id)), sizes, C(max_entries), flags, C(map_extra), BTF
    ids, pins and memlock, and their entry count where that is cheap (arrays, hash maps up to 65536 entries, device,
    program and socket maps up to 4096 slots when the kernel answers user-space lookups on them; null otherwise)."
  - "V(attachments): XDP and tc (tcx and cls_bpf) programs per interface of the host and of the namespaces in
    O(netns), with the mode, and whether a bpf_program application deployed the program (C(managed))."
  - V(pins) lists what is pinned under C(/sys/fs/bpf) (bounded walk).
  - "V(contents), for the maps in O(maps): decoded entries, per-CPU values aggregated (O(aggregate)), filtered by a
    JMESPath O(query) evaluated on the host, sorted by a value field and cut to the O(top) entries, so only what a
    report needs crosses the wire. With O(rates), each entry also gets C(delta) and per-second C(rate) of its
    numeric fields against the previous gathering on that host."
  - Works for maps loaded by other tools (bcc, bpftool, cilium) as long as they carry BTF; maps without BTF need
    C(key_type)/C(value_type), or come back as hex.
  - "Values whose layout the kernel defines are decoded without BTF: devmap and devmap_hash slots as
    C({ifindex, interface}) (the name looked up in O(maps[].netns)), plus C(prog_id) and C(prog_name) of the
    program run on redirected frames with 8-byte values (C(struct bpf_devmap_val)); cpumap slots as C({qsize}) (plus
    the program with 8-byte values); prog_array slots as C({prog_id, prog_name}); stack traces as lists of
    addresses; cgroup storage by its BTF, keyed by C({cgroup_inode_id, attach_type})."
  - "No map type fails the task. Socket maps (sockmap, sockhash, reuseport_sockarray, xskmap) hold sockets the
    kernel does not show to user space: their result has the C(count) of occupied slots (null for xskmap, and for
    sockmaps with 4-byte values, whose lookups the kernel refuses) and a C(note). Maps whose contents are not data to
    read (queue and stack, which reading would pop; ringbuf, perf_event_array and user_ringbuf events; socket, inode,
    task and cgroup local storage; bloom filters, struct_ops, arenas, cgroup arrays) get an C(error) naming the map
    and why, and the other maps are still gathered."
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - libbpf 1.x (C(libbpf.so.1)) on the managed host; pyroute2 for V(attachments); jmespath for O(query).
  - Root (CAP_BPF, CAP_SYS_ADMIN).
extends_documentation_fragment:
  - cnf.ebpf.encoding.type_schemas
  - cnf.ebpf.application.pin_root
  - cnf.ebpf.application.state_dir
attributes:
  check_mode:
    support: full
    description: Gathering changes nothing; in check mode not even the rates state file is written.
  diff_mode:
    support: none
    description: Facts have no diff.
  facts:
    support: full
    description: Sets C(ansible_facts.bpf).
options:
  gather_subset:
    description: Which facts to gather; V(all) is everything but V(contents), which O(maps) selects.
    type: list
    elements: str
    default: [all]
    choices: [all, kernel, programs, maps, links, attachments, pins, contents]
  maps:
    description: Maps whose contents to return, each with its own options (defaulting to the module-level ones).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Pin path of the map. One of O(maps[].path), O(maps[].id) and O(maps[].map_name) is required.
        type: path
      id:
        description:
          - Kernel id of the map (C(bpftool map list)), for maps nobody pinned, such as the tables of a running bcc
            tool (bcc gives them BTF, so they are decoded like the collection's maps).
        type: int
      map_name:
        description:
          - Kernel name of the map (at most 15 characters; bcc names maps after their tables). Exactly one map may
            have it.
        type: str
      name:
        description:
          - The key of this map's result under C(contents) (default the path, the map name, or C(id:<id>)), to read
            one map several ways.
        type: str
      key_type:
        description: Key type for maps without BTF, a type schema (see the notes), as in M(cnf.ebpf.bpf_map_entries).
        type: raw
      value_type:
        description: Value type for maps without BTF, a type schema like O(maps[].key_type).
        type: raw
      formats:
        description: Text formats by field path (C(key.src_ip) -> C(ipv4)), as in M(cnf.ebpf.bpf_map_entries).
        type: dict
      top:
        description: Return only this many entries (the largest by O(maps[].sort_by) when given).
        type: int
      sort_by:
        description: Value field to sort by, largest first (C(packets) or C(value.packets); dotted for nested fields).
        type: str
      query:
        description: JMESPath expression over the list of C({key, value}) entries, evaluated on the host.
        type: str
      aggregate:
        description: How per-CPU values are combined.
        type: str
        choices: [sum, max, min, none]
      aggregate_fields:
        description:
          - "How named fields of per-CPU struct values are combined instead: field name to V(sum), V(max), V(min) or
            V(min_nonzero) (the smallest non-zero value, 0 when all are zero), for values that mix counters and
            timestamps, such as C({first_seen: min_nonzero, last_seen: max}) for flows that each CPU counts in its
            own slot (a CPU that never saw the flow has zeros). Ignored with O(maps[].aggregate=none)."
        type: dict
      netns:
        description:
          - Named network namespace in which the interface indexes of a devmap or devmap_hash are turned into names
            (the kernel resolved them in the namespace of the process that wrote them). Default the host's.
        type: str
  top:
    description: Default of O(maps[].top).
    type: int
  sort_by:
    description: Default of O(maps[].sort_by).
    type: str
  query:
    description: Default of O(maps[].query).
    type: str
  aggregate:
    description: Default of O(maps[].aggregate); V(none) returns the per-CPU list.
    type: str
    default: sum
    choices: [sum, max, min, none]
  rates:
    description:
      - Add C(delta) and C(rate) (per second) of numeric value fields for the returned entries, against the previous
        gathering of the same map on this host (kept in O(state_dir)C(/facts/)). Entries not returned last time have
        no rate yet.
    type: bool
    default: false
  netns:
    description: Named network namespaces whose interfaces are also scanned for attachments.
    type: list
    elements: str
    default: []
seealso:
  - module: cnf.ebpf.bpf_map_entries
"""

EXAMPLES = r"""
- name: What runs where, fleet-wide
  cnf.ebpf.bpf_facts:
    gather_subset: [kernel, programs, attachments]

- name: Top 10 flows by bytes, with rates since the last run
  cnf.ebpf.bpf_facts:
    gather_subset: [contents]
    rates: true
    maps:
      - path: /sys/fs/bpf/cnf/flow_tracker/maps/flows
        top: 10
        sort_by: bytes
        formats: {key.src: ip, key.dst: ip}
        # per-CPU flow values: counters summed, the earliest first_seen and the latest last_seen
        aggregate_fields: {first_seen: min_nonzero, last_seen: max}

- name: Only the drops of one port, summed over CPUs
  cnf.ebpf.bpf_facts:
    gather_subset: [contents]
    maps:
      - path: /sys/fs/bpf/cnf/xdp_filter/maps/stats
        query: "[?key == `7777`].value.packets | [0]"
"""

RETURN = r"""
ansible_facts:
  description: Facts under C(bpf).
  returned: always
  type: dict
  contains:
    bpf:
      description:
        - C(kernel), C(programs), C(maps), C(links), C(attachments), C(pins) and C(contents), as selected.
        - C(contents) maps each map's O(maps[].name) (or path) to C(path), C(id), C(type), C(count) (entries in the
          map), and C(entries) (or C(result) when the query does not return a list), plus C(rates_since) with
          O(rates).
        - A map whose contents are not data has C(error) (why, naming the map) and no C(entries); a socket map has
          C(count) and a C(note); a map shown as hex for want of BTF has a C(note) too.
        - C(links) and C(attachments) entries have C(defunct), true for a link whose interface (or cgroup) went
          away (the kernel keeps such a pinned link on no hook); defunct XDP and tcx links are listed in
          C(attachments) with no interface. C(attachments[].link_pin) is where the link holding the attachment is
          pinned.
        - C(kernel.features.map_types) has every map type the collection knows, true or false by libbpf's probe
          (or a creation of our own), null when neither can tell.
      type: dict
      returned: always
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._facts_module import ARGUMENT_SPEC, run


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run(module)


if __name__ == "__main__":
    main()
