// XDP test programs for the attachment tests: each drops UDP to one destination port and counts per CPU in the
// shared `xdp_stats` map ([0] = passed, [1] = dropped). Two programs so that a swap can be seen in the traffic.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} xdp_stats SEC(".maps");

static __always_inline int count(__u32 slot, int verdict)
{
	__u64 *value = bpf_map_lookup_elem(&xdp_stats, &slot);

	if (value)
		*value += 1;
	return verdict;
}

static __always_inline int drop_udp_port(struct xdp_md *ctx, __u16 port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udp;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return count(0, XDP_PASS);
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->protocol != IPPROTO_UDP || iph->ihl != 5)
		return count(0, XDP_PASS);
	udp = (void *)(iph + 1);
	if ((void *)(udp + 1) > data_end)
		return count(0, XDP_PASS);
	if (udp->dest == bpf_htons(port))
		return count(1, XDP_DROP);
	return count(0, XDP_PASS);
}

SEC("xdp")
int xdp_drop_7777(struct xdp_md *ctx)
{
	return drop_udp_port(ctx, 7777);
}

SEC("xdp")
int xdp_drop_7778(struct xdp_md *ctx)
{
	return drop_udp_port(ctx, 7778);
}

char _license[] SEC("license") = "GPL";
