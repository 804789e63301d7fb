# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How typed data is declared and shown, documented once for the modules that encode or decode it.

FORMATS (`cnf.ebpf.encoding.formats`) is the O(formats) option, whose argument spec comes from
plugins/module_utils/surface/_options.py. TYPE_SCHEMAS (`cnf.ebpf.encoding.type_schemas`) is a note on the type
schema language, for the modules whose options take type schemas (their spec is `_options.type_schema()`).
tests/unit/test_shared_options.py fails when a fragment and the specs disagree."""

from __future__ import annotations


class ModuleDocFragment:
    FORMATS = r"""
options:
  formats:
    description:
      - Text forms of fields, by field path. Paths start at what is decoded, C(key) or C(value) for map entries
        (C(key.src_ip), C(value.addr)) and C(event) for events (C(event.saddr), C(event.flow.dst)), and are dotted
        for nested fields.
      - One of C(ipv4), C(ipv6), C(ip) (16 bytes of either family, IPv4 as IPv4-mapped C(::ffff:a.b.c.d)), C(mac),
        C(hex), C(be) (network byte order, the number given and returned in host order).
      - C(__be16)/C(__be32)/C(__be64) fields default to C(be), C(struct in_addr) to C(ipv4) and C(struct in6_addr)
        to C(ipv6). See C(docs/schemas.md).
    type: dict
    default: {}
"""

    # A note, not an option: the options that take type schemas differ from module to module (key, value,
    # key_type, maps[].event_type...), the language they are written in does not.
    TYPE_SCHEMAS = r"""
options: {}
notes:
  - "Type schemas (the key, value and event types of maps) are either a C scalar name (V(u32), V(__u64), V(s16),
    V(u128), V(bool), V(char[16]), V(u8[6]), V(__be32)...) or a struct, union or enum schema: a mapping with the
    C(fields) of a struct, with C(kind: union) and the fields of a union, or with C(kind: enum) and the C(values) of
    an enum. They are laid out as clang lays out C for C(-target bpf). See the P(cnf.ebpf.bpf_map#module) examples
    and C(docs/schemas.md)."
"""
