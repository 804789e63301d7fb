// One map of (nearly) every type the kernel has, for the bpf_facts tests: XDP redirect targets (DEVMAP with plain
// ifindex values, DEVMAP_HASH with struct bpf_devmap_val, CPUMAP with struct bpf_cpumap_val), a PROG_ARRAY of tail
// calls, socket maps (XSKMAP, SOCKMAP, SOCKHASH), local storages, a bloom filter, a user ringbuf, an arena...
// cgrp_storage, newer than libbpf 1.1's headers, is given by number. The tests create the few types a C object
// cannot declare for libbpf 1.1 (cgroup storages without a cgroup program, reuseport and cgroup arrays) themselves.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 8);
} tx_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(max_entries, 8);
} tx_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
	__uint(max_entries, 2);
} cpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 4);
} jumps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 4);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 4);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 4);
} sockh SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} sk_store SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} task_store SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} inode_store SEC(".maps");

struct {
	__uint(type, 32); /* BPF_MAP_TYPE_CGRP_STORAGE */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} cgrp_store SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__type(value, __u32);
	__uint(max_entries, 16);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} from_user SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 8 * sizeof(__u64));
	__uint(max_entries, 4);
} stacks SEC(".maps");

SEC("xdp")
int xdp_redirect_all(struct xdp_md *ctx)
{
	__u32 zero = 0;

	bpf_tail_call(ctx, &jumps, 0);
	if (bpf_map_lookup_elem(&xsks, &zero))
		return bpf_redirect_map(&xsks, 0, XDP_PASS);
	if (bpf_map_peek_elem(&seen, &zero) == 0)
		return bpf_redirect_map(&cpus, 0, XDP_PASS);
	if (bpf_redirect_map(&tx_hash, 1, 0) == XDP_REDIRECT)
		return XDP_REDIRECT;
	return bpf_redirect_map(&tx_port, ctx->ingress_ifindex & 7, XDP_PASS);
}

SEC("xdp")
int xdp_tail(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp/devmap")
int xdp_on_egress(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp/cpumap")
int xdp_on_cpu(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
