#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_map_entries
short_description: Reconcile the contents of a pinned eBPF map with declared entries
version_added: 0.1.0
description:
  - Makes a pinned map hold the declared entries, touching only what differs, with the states network engineers know
    from resource modules (V(merged), V(replaced), V(overridden), V(deleted), V(gathered)).
  - Keys and values are YAML/JSON dicts or scalars, encoded through the map's own BTF (or O(key_type)/O(value_type) for
    maps without BTF), so the C layout (packing, padding, bitfields, byte order) is never written by hand.
    See C(docs/schemas.md) for the value forms and O(formats).
  - Every entry is encoded before anything is written; one bad entry fails the task naming its index, field path and
    the problem, and the map is left untouched.
  - Writes use batch syscalls in bounded chunks (element by element where the kernel refuses batches), upserts before
    deletes. Runs against the same map are serialised with a lock keyed by the map id under C(/run/cnf-ebpf).
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - libbpf 1.x (C(libbpf.so.1); Debian/Ubuntu package C(libbpf1)) on the managed host.
  - Root (CAP_BPF) and bpffs mounted at C(/sys/fs/bpf).
  - PyYAML on the managed host only to read O(src) files in YAML.
extends_documentation_fragment:
  - cnf.ebpf.encoding.formats
  - cnf.ebpf.encoding.type_schemas
  - cnf.ebpf.application.lock_timeout
  - cnf.ebpf.application.state_dir
attributes:
  check_mode:
    support: full
    description: Nothing is written; C(changed), the counts and the diff are what a real run would do.
  diff_mode:
    support: full
    description: Decoded before/after of the changed keys only, at most O(diff_limit) keys.
options:
  path:
    description: Pin path of the map (created with M(cnf.ebpf.bpf_map), or pinned by a program loader).
    type: path
    required: true
  state:
    description:
      - V(merged) adds or updates the listed entries; for struct values only the given fields change, the rest keep
        their current values (bytes of other fields, union members and padding are kept as they are). Nothing else
        is touched.
      - V(replaced) gives the listed keys exactly the given values (fields not given become zero). Others are
        untouched.
      - V(overridden) makes the map hold exactly the listed entries; everything else is deleted.
      - V(deleted) deletes the listed keys (absent ones are not an error); with no entries it empties the map.
      - V(gathered) returns the entries, decoded, in the shape O(entries) accepts, sorted by key bytes. Feeding them
        back with V(overridden) changes nothing.
      - Arrays (V(array), V(percpu_array), V(array_of_maps)) always hold every index, so deleting an entry writes zeros
        and V(overridden) zeroes the undeclared indices.
      - Device maps (V(devmap), V(devmap_hash), V(cpumap)) hold XDP redirect targets; a slot is set or not, like a
        hash, keyed by a u32; values are an ifindex (or C(struct bpf_devmap_val)) or a CPU queue size. The kernel
        resolves an ifindex in the network namespace the module runs in.
      - Queues and stacks have no keys; each entry holds only a C(value), listed in pop order (the first listed is
        popped first). V(merged) pushes the listed values, V(overridden) makes the contents exactly the listed values,
        V(deleted) without entries drains the map, V(gathered) returns the contents (read by popping every value
        and pushing them back). V(replaced) is refused.
    type: str
    default: merged
    choices: [merged, replaced, overridden, deleted, gathered]
  entries:
    description:
      - The entries, each a mapping with a C(key) and a C(value) (C(value) is not needed with O(state=deleted)).
      - Per-CPU maps take one value, written to every CPU, or a mapping whose C(per_cpu) list holds one value per
        possible CPU.
      - LPM trie keys can be CIDR text (C(10.0.0.0/8), C(2001:db8::/32)) when the key data is 4 or 16 bytes.
      - Values of maps of maps are the pin path of an inner map, or its map id.
    type: list
    elements: raw
  src:
    description:
      - A file on the managed host holding the entries, for large rule sets. C(.json) or C(.yml)/C(.yaml) with a list
        of entries (or a saved gathered result with an C(entries) list), or C(.csv) with a header row whose columns
        are C(key) and C(value) for scalars or dotted field paths such as C(key.src_ip) and C(value.stats.packets).
        Empty CSV cells are left out.
      - The fastest and leanest source is a CSV whose columns are every field of the key (and, to write, of the value)
        with a non-negative decimal integer in every cell, for integer fields without O(formats). It is packed from
        its columns without building an entry per row. Any other file is read entry by entry, with the same results.
    type: path
  key_type:
    description:
      - Key type for maps without BTF, a type schema (see the notes) as M(cnf.ebpf.bpf_map) takes it. When the map has
        BTF and this is given, the two must have the same layout.
      - Without either, keys are hex strings of the key size (array indexes default to C(u32)).
    type: raw
  value_type:
    description:
      - Value type for maps without BTF (queues and stacks cannot carry BTF), as O(key_type).
      - Without either, values are hex strings of the value size.
    type: raw
  diff_limit:
    description: At most this many changed keys are shown in the diff; a last line tells how many more changed.
    type: int
    default: 20
  limit:
    description: With O(state=gathered), at most this many entries are returned (C(truncated) tells when more exist).
    type: int
    default: 10000
  dest:
    description:
      - With O(state=gathered), also write every entry (not limited) as JSON to this file on the managed host,
        atomically. Returning a million entries through Ansible is slow; writing them to a file is not.
    type: path
  persist:
    description:
      - Record the declared entries in the state of the application that owns the map (a map pinned by
        M(cnf.ebpf.bpf_program) under C(<pin_root>/<name>/maps/)), so that M(cnf.ebpf.bpf_boot) writes them again
        after a reboot, before the program is attached.
      - Only with O(state=merged), O(state=replaced) or O(state=overridden). The latest persisted task per map wins.
    type: bool
    default: false
notes:
  - LRU maps work, but the kernel may evict declared entries when the map is full; the module warns.
  - Ring buffers and perf event arrays carry events, not entries; capture them with M(cnf.ebpf.bpf_events).
  - A kernel failure midway (map full, out of memory) fails the task with what was applied; rerunning converges.
seealso:
  - module: cnf.ebpf.bpf_map
"""

EXAMPLES = r"""
- name: ACL rules keyed by the packed 5-tuple; only the listed rules are touched
  cnf.ebpf.bpf_map_entries:
    path: /sys/fs/bpf/cnf/acl/rules
    formats:
      key.src_ip: ipv4
      key.dst_ip: ipv4
    entries:
      - key: {src_ip: 10.0.0.1, dst_ip: 192.168.1.10, src_port: 0, dst_port: 443, protocol: 6}
        value: {action: DROP}

- name: Exactly these prefixes, nothing else (LPM trie with CIDR keys)
  cnf.ebpf.bpf_map_entries:
    path: /sys/fs/bpf/cnf/acl/prefixes
    state: overridden
    entries:
      - {key: 10.0.0.0/8, value: DROP}
      - {key: 192.168.0.0/16, value: PASS}

- name: Raise one field of a config struct, keep the others
  cnf.ebpf.bpf_map_entries:
    path: /sys/fs/bpf/cnf/app/cnf_config
    entries:
      - {key: 0, value: {rate_limit: 5000}}

- name: 100k rules from a CSV file on the host (columns key.src_ip, key.dst_port, value.action)
  cnf.ebpf.bpf_map_entries:
    path: /sys/fs/bpf/cnf/acl/rules
    state: overridden
    src: /etc/cnf/rules.csv
    formats: {key.src_ip: ipv4}

- name: Read the flow table; all of it goes to a file, the first 100 flows into the result
  cnf.ebpf.bpf_map_entries:
    path: /sys/fs/bpf/cnf/flows/flow_table
    state: gathered
    limit: 100
    dest: /var/tmp/flows.json
  register: flows

- name: A queue holding exactly these jobs, in pop order
  cnf.ebpf.bpf_map_entries:
    path: /sys/fs/bpf/cnf/app/jobs
    state: overridden
    value_type: u32
    entries: [{value: 1}, {value: 2}, {value: 3}]

- name: Empty a map
  cnf.ebpf.bpf_map_entries:
    path: /sys/fs/bpf/cnf/flows/flow_table
    state: deleted
"""

RETURN = r"""
counts:
  description: What changed (or would change in check mode). C(removed) counts deleted keys and zeroed array slots.
  returned: unless state is gathered
  type: dict
  sample: {added: 2, updated: 1, removed: 0, unchanged: 97}
repaired:
  description:
    - What this run found left half-done by an earlier run that was killed while writing the map (a marker under
      C(/run/cnf-ebpf) records every write in progress). The plan is made from the map's contents as they are, so
      the run finishes the job whatever state the killed run left; the counts say what it had left to do.
  returned: when an earlier run was killed while writing this map
  type: list
  elements: str
  sample: ["a run of state=overridden (pid 4242, started 2026-12-04T18:30:00Z) was killed while writing this map
    (200000 writes and 0 deletes planned); this run finished the job from the map's contents as they were"]
entries:
  description: The decoded entries, sorted by key bytes, at most O(limit). Maps of maps also give C(inner_map_id).
  returned: when state is gathered
  type: list
  elements: dict
  sample: [{key: 10.0.0.0/8, value: DROP}]
count:
  description: How many entries the map holds.
  returned: when state is gathered
  type: int
  sample: 2
truncated:
  description: Whether O(limit) cut the returned entries.
  returned: when state is gathered
  type: bool
  sample: false
dest:
  description: The file all gathered entries were written to.
  returned: when O(dest) is given
  type: str
  sample: /var/tmp/flows.json
map:
  description: The map that was reconciled.
  returned: always
  type: dict
  sample: {path: /sys/fs/bpf/cnf/acl/rules, id: 42, type: hash}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._entries_module import (
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
    run,
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    run(module)


if __name__ == "__main__":
    main()
