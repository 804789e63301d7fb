// Rejected by the verifier on purpose (tests/integration/test_objects.py): reads the Ethernet header without
// checking it against data_end. The object also has a valid program and a map, loaded before the bad one, so the
// test can check that a failed load leaves no program or map behind.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("xdp")
int xdp_ok(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&seen, &key);

	if (v)
		*v += 1;
	return XDP_PASS;
}

SEC("xdp")
int xdp_unchecked(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;

	// No `if ((void *)(eth + 1) > data_end)` check: the verifier must refuse the packet read.
	return eth->h_proto == 0x0008 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
