#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_map
short_description: Create, verify and remove pinned eBPF maps with typed keys and values
version_added: 0.1.0
description:
  - Manages the lifecycle of one eBPF map pinned on bpffs, through libbpf.
  - Keys and values can be declared as C scalar names or struct schemas. The collection builds real BTF for them
    with libbpf's BTF writer and attaches it to the map, so C programs, C(bpftool) and this collection agree on the
    layout, and C(bpftool map dump) pretty-prints entries.
  - An existing pin is compared with the declaration field by field (type, sizes, max_entries, flags and the BTF
    layout of key and value, i.e. field names, offsets, sizes and kinds). A difference fails the task with the list
    of differences, unless O(on_mismatch=recreate).
  - Map contents are managed by M(cnf.ebpf.bpf_map_entries).
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - libbpf 1.x (C(libbpf.so.1); Debian/Ubuntu package C(libbpf1)) on the managed host.
  - Root (CAP_BPF and CAP_SYS_ADMIN) and bpffs mounted at C(/sys/fs/bpf).
extends_documentation_fragment:
  - ansible.builtin.files
  - cnf.ebpf.encoding.type_schemas
attributes:
  check_mode:
    support: full
    description: Nothing is created, pinned or removed; the result shows the map that would be created.
  diff_mode:
    support: full
    description: Before and after show the map's type, sizes, flags and key/value types.
options:
  path:
    description:
      - Pin path of the map. It must lie on a bpffs mount; missing parent directories are created.
      - The collection's convention is C(/sys/fs/bpf/cnf/<application>/<map>).
    type: path
    required: true
  state:
    description:
      - V(present) creates and pins the map if the pin does not exist, and verifies it if it does.
      - V(absent) removes the pin. Programs and other pins that still hold the map keep it alive.
    type: str
    default: present
    choices: [present, absent]
  type:
    description:
      - The map type. Required with O(state=present).
    type: str
    choices:
      - hash
      - lru_hash
      - percpu_hash
      - lru_percpu_hash
      - hash_of_maps
      - array
      - percpu_array
      - array_of_maps
      - ringbuf
      - perf_event_array
      - queue
      - stack
      - lpm_trie
  name:
    description:
      - Kernel name of the map (at most 15 characters of letters, digits, V(_) and V(.)).
      - Defaults to the pin's file name, with other characters replaced by V(_) and cut to 15 characters.
    type: str
  key:
    description:
      - Key type, a type schema (see the notes), so a C scalar name (V(u32), V(__be32), V(u8[6])...) or a struct,
        union or enum schema.
      - Array maps and array_of_maps default to V(u32). Queue, stack and ringbuf maps have no key.
      - For lpm_trie maps the key may be given as just its data (for example V(u8[4]) or V(u8[16])); it is then
        wrapped into C(struct { u32 prefixlen; <data> data; }) as the kernel requires.
    type: raw
  key_size:
    description:
      - Key size in bytes, for maps declared without a key type. Must agree with O(key) when both are given.
    type: int
  value:
    description:
      - Value type, in the same forms as O(key). Not used for ringbuf, perf_event_array and maps of maps.
    type: raw
  value_size:
    description:
      - Value size in bytes, for maps declared without a value type. Must agree with O(value) when both are given.
    type: int
  max_entries:
    description:
      - Maximum number of entries. For V(ringbuf) maps this is the buffer size in bytes, which must be a power-of-two
        multiple of the page size.
      - Required, except for V(perf_event_array) maps, which default to the number of possible CPUs.
    type: int
  flags:
    description:
      - Map creation flags by name. V(lpm_trie) maps always get V(no_prealloc), which the kernel requires.
    type: list
    elements: str
    default: []
    choices:
      - no_prealloc
      - no_common_lru
      - numa_node
      - rdonly
      - wronly
      - stack_build_id
      - zero_seed
      - rdonly_prog
      - wronly_prog
      - clone
      - mmapable
      - preserve_elems
      - inner_map
  numa_node:
    description:
      - NUMA node to allocate the map on (sets the V(numa_node) flag).
    type: int
  inner_map:
    description:
      - For V(hash_of_maps) and V(array_of_maps), the template every inner map must match.
      - Either O(inner_map.path) of an existing pinned map, or a map declaration (O(inner_map.type),
        O(inner_map.key), O(inner_map.value), O(inner_map.max_entries)...) from which a template is created only for
        the time it takes to create the outer map.
    type: dict
    suboptions:
      path:
        description: Pin path of an existing map used as the template.
        type: path
      type:
        description: Type of the inner map template.
        type: str
        choices:
          - hash
          - lru_hash
          - percpu_hash
          - lru_percpu_hash
          - hash_of_maps
          - array
          - percpu_array
          - array_of_maps
          - ringbuf
          - perf_event_array
          - queue
          - stack
          - lpm_trie
      name:
        description: Kernel name of the template.
        type: str
      key:
        description: Key type of the template, as in O(key).
        type: raw
      key_size:
        description: Key size of the template.
        type: int
      value:
        description: Value type of the template, as in O(value).
        type: raw
      value_size:
        description: Value size of the template.
        type: int
      max_entries:
        description: Maximum entries of the template.
        type: int
      flags:
        description: Creation flags of the template.
        type: list
        elements: str
        choices:
          - no_prealloc
          - no_common_lru
          - numa_node
          - rdonly
          - wronly
          - stack_build_id
          - zero_seed
          - rdonly_prog
          - wronly_prog
          - clone
          - mmapable
          - preserve_elems
          - inner_map
  on_mismatch:
    description:
      - What to do when a map is already pinned at O(path) but differs from the declaration.
      - V(fail) fails the task and lists every difference; nothing is changed.
      - V(recreate) creates a new map and replaces the pin. Programs that use the old map keep using it until they are
        reloaded, and the old map's contents are not copied.
    type: str
    default: fail
    choices: [fail, recreate]
notes:
  - The inner map template of maps of maps is not recorded by the kernel in a form that can be read back, so it is not
    part of the comparison with an existing pin.
  - LRU maps evict entries when full, including entries a playbook declared; the module warns when it creates one.
seealso:
  - module: cnf.ebpf.bpf_map_entries
"""

EXAMPLES = r"""
- name: A flow table keyed by the packed 13-byte 5-tuple, as a C program declares it
  cnf.ebpf.bpf_map:
    path: /sys/fs/bpf/cnf/flows/flow_table
    type: lru_hash
    max_entries: 10000
    key:
      name: flow_key
      packed: true
      fields:
        - {name: src_ip, type: __be32}
        - {name: dst_ip, type: __be32}
        - {name: src_port, type: __be16}
        - {name: dst_port, type: __be16}
        - {name: protocol, type: u8}
    value:
      name: flow_stats
      fields:
        - {name: packets, type: u64}
        - {name: bytes, type: u64}
        - {name: first_seen, type: u64}
        - {name: last_seen, type: u64}

- name: Per-CPU packet counters, one per interface index
  cnf.ebpf.bpf_map:
    path: /sys/fs/bpf/cnf/counters/per_ifindex
    type: percpu_array
    value: u64
    max_entries: 256
    mode: "0600"

- name: An LPM trie of IPv4 prefixes to an action enum
  cnf.ebpf.bpf_map:
    path: /sys/fs/bpf/cnf/acl/prefixes
    type: lpm_trie
    key: u8[4]
    value:
      kind: enum
      name: verdict
      values: {PASS: 0, DROP: 1}
    max_entries: 1024

- name: A 256 KiB ring buffer for events
  cnf.ebpf.bpf_map:
    path: /sys/fs/bpf/cnf/events/ring
    type: ringbuf
    max_entries: 262144

- name: A hash of per-tenant arrays
  cnf.ebpf.bpf_map:
    path: /sys/fs/bpf/cnf/tenants/by_id
    type: hash_of_maps
    key: u32
    max_entries: 64
    inner_map:
      type: array
      value: u64
      max_entries: 16

- name: Replace a map whose layout changed (its contents are not kept)
  cnf.ebpf.bpf_map:
    path: /sys/fs/bpf/cnf/flows/flow_table
    type: lru_hash
    key: u64
    value: u64
    max_entries: 20000
    on_mismatch: recreate

- name: Remove the pin
  cnf.ebpf.bpf_map:
    path: /sys/fs/bpf/cnf/flows/flow_table
    state: absent
"""

RETURN = r"""
action:
  description: What was done (or would be done in check mode).
  returned: always
  type: str
  sample: create
  choices: [create, recreate, none, remove, absent]
path:
  description: The pin path.
  returned: always
  type: str
  sample: /sys/fs/bpf/cnf/flows/flow_table
differences:
  description: Why an existing pin did not match the declaration, field by field.
  returned: always
  type: list
  elements: str
  sample: ["max_entries: existing 1024, declared 2048", "value.bytes: offset 8 != 16"]
map:
  description:
    - The map's kernel information after the task. In check mode, for a map that would be created, the declared
      properties (no C(id)).
  returned: when state is present
  type: dict
  contains:
    id:
      description: Kernel map id.
      type: int
      sample: 42
    name:
      description: Kernel map name.
      type: str
      sample: flow_table
    type:
      description: Map type.
      type: str
      sample: lru_hash
    key_size:
      description: Key size in bytes.
      type: int
      sample: 13
    value_size:
      description: Value size in bytes (per CPU for per-CPU maps).
      type: int
      sample: 32
    max_entries:
      description: Maximum number of entries (bytes for ringbuf maps).
      type: int
      sample: 10000
    flags:
      description: Creation flags by name.
      type: list
      elements: str
      sample: [no_prealloc]
    btf_id:
      description: Kernel id of the map's BTF, 0 when the map has none.
      type: int
      sample: 120
    key_type:
      description: C name of the key type, when the map carries BTF.
      type: str
      sample: struct flow_key
    value_type:
      description: C name of the value type, when the map carries BTF.
      type: str
      sample: struct flow_stats
    key_schema:
      description: The key type as a schema, in the form O(key) accepts.
      type: raw
    value_schema:
      description: The value type as a schema, in the form O(value) accepts.
      type: raw
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._map_module import ARGUMENT_SPEC, run


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        add_file_common_args=True,
        required_if=[("state", "present", ("type",))],
    )
    run(module)


if __name__ == "__main__":
    main()
