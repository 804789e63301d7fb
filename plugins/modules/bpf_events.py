#!/usr/bin/python
# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_events
short_description: Capture a bounded number of events from a pinned ring buffer or perf event array
version_added: 0.1.0
description:
  - Reads events that BPF programs emit with C(bpf_ringbuf_output)/C(bpf_ringbuf_submit) (V(ringbuf) maps) or
    C(bpf_perf_event_output) (V(perf_event_array) maps), through libbpf's consumers, and stops after O(count) events
    or O(timeout) seconds, whichever comes first.
  - Reading consumes. Events read by this module are gone for every other reader of the map, and two readers of one
    map at the same time each see part of the events.
  - Events are decoded through BTF when O(event_type) names their type, found in an object file (O(object)) or in the
    BTF a pinned program was loaded with (O(program)); otherwise each event is a hex string.
  - Samples are only copied while the buffer is drained and decoded afterwards in one pass, so decoding does not slow
    the capture down.
author:
  - cnf.ebpf contributors (@cnf-ebpf)
requirements:
  - libbpf 1.x (C(libbpf.so.1); Debian/Ubuntu package C(libbpf1)) on the managed host.
  - Root (CAP_BPF) and bpffs mounted at C(/sys/fs/bpf).
  - jmespath on the managed host, only for O(query).
extends_documentation_fragment:
  - cnf.ebpf.encoding.formats
  - cnf.ebpf.application.pin_root
attributes:
  check_mode:
    support: full
    description:
      - Every option is validated and every object opened (map, event type, drop counter, query), but no event is
        read, because reading consumes events. The result has no events and says so in C(msg).
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to diff.
options:
  path:
    description:
      - The event map; a pin path, or C(application/map) for a map of a M(cnf.ebpf.bpf_program) deployment.
    type: str
    required: true
  count:
    description:
      - Stop after this many events.
      - A ring buffer is read exactly up to O(count); later events stay in it for the next reader.
      - libbpf reads a perf buffer one whole CPU buffer at a time, so a capture from a V(perf_event_array) can receive
        a few more than O(count); those are returned too (they are consumed and would be lost otherwise).
    type: int
    default: 1000
  timeout:
    description:
      - Stop after this many seconds (fractions allowed), even when fewer than O(count) events came.
      - V(0) takes what is in the buffer now, without waiting.
    type: float
    default: 5.0
  event_type:
    description:
      - The C type of one event, C(struct NAME) or a bare C(NAME) (a struct first, then any type of that name), looked
        up in the BTF of O(object) or O(program). One of them is required with this option.
      - clang writes BTF only for types reachable from global variables and function signatures, not for the types
        of local variables; a type used only for a stack variable needs, for example, a C(static __noinline) helper
        taking a pointer to it.
      - Samples shorter than the type are returned as hex strings, with a warning; perf samples are padded to 8 bytes
        and the extra bytes are ignored.
    type: str
  object:
    description: A BPF object file (ELF with BTF, as C(clang -g -target bpf) writes it) that defines O(event_type).
    type: path
  program:
    description:
      - A pinned program whose BTF (the BTF it was loaded with) defines O(event_type); a pin path, or
        C(application/program) for a program of a M(cnf.ebpf.bpf_program) deployment.
    type: str
  query:
    description:
      - A JMESPath expression evaluated on the managed host over the list of decoded events, for example
        C([?dst_port == `7001`]) or C(length(@)). RV(events) is its result. O(dest) still gets every event.
    type: str
  max_events:
    description: At most this many events are returned in RV(events) (RV(truncated) tells when more matched).
    type: int
    default: 1000
  dest:
    description:
      - Also write every received event (decoded, not filtered by O(query), not limited) to this file on the managed
        host as JSON lines, atomically.
    type: path
  drops_map:
    description:
      - For ring buffers, which do not report losses themselves, a counter map the program increments when
        C(bpf_ringbuf_reserve) or C(bpf_ringbuf_output) fails (a V(array) or V(percpu_array) of C(__u64), element 0;
        per-CPU values are summed). RV(lost) is how much it grew during the capture.
      - A pin path or C(application/map). Ignored, with a warning, for perf event arrays.
    type: str
  perf_pages:
    description:
      - Pages of each per-CPU perf buffer libbpf maps for the capture (a power of two). Perf event arrays only carry
        events while a reader has its buffers installed; events a program emits with no reader are dropped by the
        kernel (C(bpf_perf_event_output) returns C(-ENOENT)).
    type: int
    default: 64
notes:
  - C(changed) is always false.
  - The C(application/map) and C(application/program) forms of O(path), O(program) and O(drops_map) name the pins of
    that M(cnf.ebpf.bpf_program) deployment under O(pin_root).
  - A ring buffer keeps events while nobody reads them (and the program's reservations fail once it is full); a perf
    event array keeps nothing without a reader. Start the capture before the events are emitted for perf event arrays.
seealso:
  - module: cnf.ebpf.bpf_program
  - module: cnf.ebpf.bpf_map_entries
"""

EXAMPLES = r"""
- name: The next 100 packet events of an application, decoded with the BTF its program was loaded with
  cnf.ebpf.bpf_events:
    path: cnf_fw/events
    program: cnf_fw/xdp_fw
    event_type: struct pkt_event
    formats:
      event.src: ipv4
      event.dst: ipv4
    drops_map: cnf_fw/ringbuf_drops
    count: 100
    timeout: 10
  register: capture

- name: Only the DNS events, all events to a file
  cnf.ebpf.bpf_events:
    path: /sys/fs/bpf/cnf/cnf_fw/maps/events
    object: /var/lib/cnf-ebpf/cache/cnf_fw.o
    event_type: pkt_event
    query: "[?dst_port == `53`]"
    dest: /var/tmp/events.jsonl

- name: Whatever is queued right now, as hex
  cnf.ebpf.bpf_events:
    path: /sys/fs/bpf/cnf/cnf_fw/maps/events
    timeout: 0
"""

RETURN = r"""
events:
  description:
    - The decoded events (hex strings without O(event_type)), in the order they were read, at most O(max_events).
    - With O(query), the query's result (a list for filters and projections, or any other value, for example a
      number for C(length(@))).
  returned: always
  type: raw
  sample: [{src: 10.0.0.1, dst: 10.0.0.2, src_port: 40000, dst_port: 7001, seq: 1, len: 46}]
received:
  description: How many events were read (and consumed) from the map.
  returned: always
  type: int
  sample: 1
lost:
  description:
    - Events lost during the capture. Perf event arrays - the lost samples the kernel reported. Ring buffers - the
      growth of O(drops_map) during the capture, null without O(drops_map) (the kernel does not count them).
  returned: always
  type: int
  sample: 0
truncated:
  description: Whether O(max_events) cut RV(events).
  returned: always
  type: bool
  sample: false
elapsed:
  description: Seconds the capture took.
  returned: always
  type: float
  sample: 0.102
stopped:
  description: Why the capture ended, V(count) or V(timeout).
  returned: unless check mode
  type: str
  sample: count
dest:
  description: The file every received event was written to.
  returned: when O(dest) is given and not in check mode
  type: str
  sample: /var/tmp/events.jsonl
map:
  description: The event map.
  returned: always
  type: dict
  sample: {path: /sys/fs/bpf/cnf/cnf_fw/maps/events, id: 42, type: ringbuf}
msg:
  description: In check mode, that nothing was read and why.
  returned: in check mode
  type: str
  sample: "check mode: nothing was read, because reading a ring or perf buffer consumes its events"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cnf.ebpf.plugins.module_utils.surface._events_module import (
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
    run,
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    run(module)


if __name__ == "__main__":
    main()
