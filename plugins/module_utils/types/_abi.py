# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's names for what it numbers: map types, map flags, program and link types (uapi linux/bpf.h).

Plain data, so that planning can validate a declared map type or flag without the kernel layer, and the kernel layer
can name what it reads back with the same words.
"""

from __future__ import annotations

MAP_TYPES: dict[str, int] = {
    "hash": 1,
    "array": 2,
    "prog_array": 3,
    "perf_event_array": 4,
    "percpu_hash": 5,
    "percpu_array": 6,
    "stack_trace": 7,
    "cgroup_array": 8,
    "lru_hash": 9,
    "lru_percpu_hash": 10,
    "lpm_trie": 11,
    "array_of_maps": 12,
    "hash_of_maps": 13,
    "devmap": 14,
    "sockmap": 15,
    "cpumap": 16,
    "xskmap": 17,
    "sockhash": 18,
    "cgroup_storage": 19,
    "reuseport_sockarray": 20,
    "percpu_cgroup_storage": 21,
    "queue": 22,
    "stack": 23,
    "sk_storage": 24,
    "devmap_hash": 25,
    "struct_ops": 26,
    "ringbuf": 27,
    "inode_storage": 28,
    "task_storage": 29,
    "bloom_filter": 30,
    "user_ringbuf": 31,
    "cgrp_storage": 32,
    "arena": 33,
}
MAP_TYPE_NAMES: dict[int, str] = {v: k for k, v in MAP_TYPES.items()}

PERCPU_MAP_TYPES = frozenset({"percpu_hash", "percpu_array", "lru_percpu_hash", "percpu_cgroup_storage"})
MAP_IN_MAP_TYPES = frozenset({"array_of_maps", "hash_of_maps"})
# Maps whose elements are pushed/popped with a NULL key.
KEYLESS_MAP_TYPES = frozenset({"queue", "stack", "bloom_filter"})
ARRAY_MAP_TYPES = frozenset({"array", "percpu_array", "array_of_maps", "prog_array", "perf_event_array"})

MAP_FLAGS: dict[str, int] = {
    "no_prealloc": 1 << 0,
    "no_common_lru": 1 << 1,
    "numa_node": 1 << 2,
    "rdonly": 1 << 3,
    "wronly": 1 << 4,
    "stack_build_id": 1 << 5,
    "zero_seed": 1 << 6,
    "rdonly_prog": 1 << 7,
    "wronly_prog": 1 << 8,
    "clone": 1 << 9,
    "mmapable": 1 << 10,
    "preserve_elems": 1 << 11,
    "inner_map": 1 << 12,
}

# Flags the kernel sets on maps of some types whatever the creator asked for (devmap: "Lookup returns a pointer
# straight to dev->ifindex, so make sure the verifier prevents writes from the BPF side"). A pinned map that has
# them is still the map the object declares.
KERNEL_SET_MAP_FLAGS: dict[str, int] = {
    "devmap": MAP_FLAGS["rdonly_prog"],
    "devmap_hash": MAP_FLAGS["rdonly_prog"],
}


def declared_map_flags(map_type: str, flags: int) -> int:
    """`flags` without those the kernel sets by itself on a map of this type: what to compare two maps' flags on."""
    return flags & ~KERNEL_SET_MAP_FLAGS.get(map_type, 0)


PROG_TYPE_NAMES: dict[int, str] = dict(
    enumerate(
        [
            "unspec",
            "socket_filter",
            "kprobe",
            "sched_cls",
            "sched_act",
            "tracepoint",
            "xdp",
            "perf_event",
            "cgroup_skb",
            "cgroup_sock",
            "lwt_in",
            "lwt_out",
            "lwt_xmit",
            "sock_ops",
            "sk_skb",
            "cgroup_device",
            "sk_msg",
            "raw_tracepoint",
            "cgroup_sock_addr",
            "lwt_seg6local",
            "lirc_mode2",
            "sk_reuseport",
            "flow_dissector",
            "cgroup_sysctl",
            "raw_tracepoint_writable",
            "cgroup_sockopt",
            "tracing",
            "struct_ops",
            "ext",
            "lsm",
            "sk_lookup",
            "syscall",
            "netfilter",
        ]
    )
)
LINK_TYPE_NAMES: dict[int, str] = dict(
    enumerate(
        [
            "unspec",
            "raw_tracepoint",
            "tracing",
            "cgroup",
            "iter",
            "netns",
            "xdp",
            "perf_event",
            "kprobe_multi",
            "struct_ops",
            "netfilter",
            "tcx",
            "uprobe_multi",
            "netkit",
            "sockmap",
        ]
    )
)


def flag_names(flags: int) -> list[str]:
    return [name for name, bit in MAP_FLAGS.items() if flags & bit]


# Map types whose key/value BTF the kernel accepts at creation (others refuse with EINVAL/ENOTSUPP: queue, stack,
# ringbuf, perf_event_array and the map-in-map types, checked on 6.1 and 6.18).
BTF_MAP_TYPES = frozenset({"hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "array", "percpu_array", "lpm_trie"})
