#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_codegen
short_description: Generate C map definitions and Go (cilium/ebpf) bindings from map schemas, or schemas from BTF
version_added: 0.1.0
description:
  - One map schema, three sides. The map schemas that M(cnf.ebpf.bpf_map) and M(cnf.ebpf.bpf_map_entries) take
    become a C header (the key/value/event types and a C(SEC(".maps")) definition per map) and a Go file for
    C(github.com/cilium/ebpf) (types, typed map wrappers, per-CPU sums, ring buffer and perf readers).
  - Both sides come from the same layout model, checked against clang, so the C struct, the Go struct and the YAML
    cannot drift apart. Every Go struct has the C size and every field sits at its C offset (explicit padding where C
    has holes); a field Go cannot place at its C offset (in a packed struct, a bitfield, a union member) is reached
    through a getter and a setter. The Go file asserts its layout at compile time.
  - The generated Go types marshal to JSON exactly as M(cnf.ebpf.bpf_map_entries) returns the same entries with
    O(cnf.ebpf.bpf_map_entries#module:state=gathered).
  - The reverse direction reads the maps of a compiled object (its C(.maps) definitions and their BTF types) into
    schemas, so an existing C program gets Go bindings (and YAML) without writing schemas by hand.
  - Files are only written when their content changes (atomically); unchanged schemas leave them untouched.
  - Runs wherever it is delegated, typically on the controller (C(delegate_to) V(localhost)). The same generator runs
    outside Ansible as C(tools/cnf-ebpf-codegen) in the collection.
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - With O(object), libbpf 1.x (C(libbpf.so.1)) where the module runs.
  - To build the Go output, Go 1.18 or later and C(github.com/cilium/ebpf) 0.9 or later.
extends_documentation_fragment:
  - cnf.ebpf.encoding.type_schemas
attributes:
  check_mode:
    support: full
    description: Nothing is written; RV(files) tells which files would be created or updated.
  diff_mode:
    support: full
    description: Shows the old and new text of each file that would change.
options:
  maps:
    description:
      - The map schemas, each a map declaration as M(cnf.ebpf.bpf_map) takes it, plus O(maps[].name).
      - Types (O(maps[].key), O(maps[].value), O(maps[].event_type)) are type schemas (see the notes). Anonymous
        top-level structs are named C(<map>_key), C(<map>_value) and C(<map>_event); anonymous types of named fields
        C(<parent>_<field>).
    type: list
    elements: dict
    suboptions:
      name:
        description: The map's C name (the variable in the object, libbpf's map name); a C identifier.
        type: str
        required: true
      type:
        description: Map type, as in M(cnf.ebpf.bpf_map).
        type: str
        required: true
      key:
        description: Key type, as in M(cnf.ebpf.bpf_map).
        type: raw
      key_size:
        description: Key size in bytes, for maps declared without a key type.
        type: int
      value:
        description: Value type, as in M(cnf.ebpf.bpf_map).
        type: raw
      value_size:
        description: Value size in bytes, for maps declared without a value type.
        type: int
      max_entries:
        description: Maximum entries (ring buffer size in bytes for V(ringbuf)).
        type: int
      flags:
        description: Map creation flags by name, as in M(cnf.ebpf.bpf_map).
        type: list
        elements: str
      numa_node:
        description: NUMA node, as in M(cnf.ebpf.bpf_map).
        type: int
      inner_map:
        description:
          - For V(hash_of_maps) and V(array_of_maps), the inner map declaration (type, key, value, max_entries,
            flags). Its definition is emitted as C(struct <map>_inner_map_def) and given a typed Go wrapper.
        type: dict
      event_type:
        description:
          - For V(ringbuf) and V(perf_event_array), the type of the events the program writes; the Go readers decode
            records into it. Without it they hand over raw bytes.
        type: raw
      pinning:
        description: V(by_name) adds C(LIBBPF_PIN_BY_NAME) to the C definition.
        type: str
        choices: [none, by_name]
        default: none
      path:
        description: Where the map is pinned; the Go file gets a C(<Map>PinPath) constant.
        type: str
  src:
    description: A YAML or JSON file holding the map schemas (a list, or a mapping with a C(maps) list).
    type: path
  object:
    description:
      - A compiled BPF object (C(clang -g -target bpf)) whose map definitions and BTF types become the schemas.
      - Inner maps whose key or value is a struct come back as sizes (clang emits those types as forward
        declarations there).
    type: path
  names:
    description: With O(object), only these maps.
    type: list
    elements: str
  c_header:
    description: Path of the C header to write.
    type: path
  c_includes:
    description: Headers the C header includes (use V(vmlinux.h) and V(bpf/bpf_helpers.h) with a CO-RE vmlinux.h).
    type: list
    elements: str
    default: [linux/bpf.h, bpf/bpf_helpers.h]
  go:
    description: Path of the Go file to write.
    type: path
  go_package:
    description: Go package name of the Go file. Defaults to the name of its directory.
    type: str
  schemas:
    description: Path of a YAML file to write the normalised map schemas to (with O(object), the schemas read from it).
    type: path
  mode:
    description: Permissions of the written files.
    type: raw
    default: "0644"
notes:
  - Exactly one of O(maps), O(src) and O(object), and at least one of O(c_header), O(go) and O(schemas).
  - The Go bindings assume a little-endian host for bitfields and 128-bit integers (every other field is copied as
    the map's own bytes).
seealso:
  - module: cnf.ebpf.bpf_map
  - module: cnf.ebpf.bpf_map_entries
"""

EXAMPLES = r"""
- name: Generate the C header and the Go bindings of the flow tracker's maps
  cnf.ebpf.bpf_codegen:
    maps:
      - name: flows
        type: lru_hash
        max_entries: 65536
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
      - name: events
        type: ringbuf
        max_entries: 262144
        event_type:
          name: flow_event
          fields:
            - {name: ts, type: u64}
            - {name: packets, type: u64}
            - {name: protocol, type: u8}
    c_header: "{{ playbook_dir }}/bpf/flow_maps.h"
    go: "{{ playbook_dir }}/agent/flowmaps/maps.go"
  delegate_to: localhost

- name: Schemas and Go bindings from an existing program's object
  cnf.ebpf.bpf_codegen:
    object: build/xdp_filter.o
    names: [rules_v4, rule_hits]
    schemas: agent/filter/maps.yml
    go: agent/filter/maps.go
  delegate_to: localhost
"""

RETURN = r"""
files:
  description: Each file written (or, in check mode, to be written) and what happened to it.
  returned: always
  type: dict
  sample: {"/src/bpf/flow_maps.h": "created", "/src/agent/flowmaps/maps.go": "unchanged"}
maps:
  description: The map schemas, normalised (what O(schemas) writes).
  returned: success
  type: list
  elements: dict
go_types:
  description: C struct, union and enum names and the Go type generated for each.
  returned: when O(go) is set
  type: dict
  sample: {"flow_key": "FlowKey", "flow_stats": "FlowStats"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._codegen_module import (
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
    REQUIRED_ONE_OF,
    run,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_one_of=REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
