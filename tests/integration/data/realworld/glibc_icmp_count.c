/* SPDX-License-Identifier: GPL-2.0 */
/* Counts ICMP echo requests, written as many tutorials do: the uapi headers that pull in glibc (<linux/if.h> and
 * <linux/icmp.h> include <sys/socket.h>), <stdint.h> types, and a per-CPU array of records keyed by XDP action. */
#include <stdint.h>
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/icmp.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct datarec {
	uint64_t rx_packets;
	uint64_t rx_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, uint32_t);
	__type(value, struct datarec);
	__uint(max_entries, XDP_REDIRECT + 1);
} xdp_stats_map SEC(".maps");

SEC("xdp")
int xdp_icmp_count(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct icmphdr *icmph;
	uint32_t key = XDP_PASS;
	struct datarec *rec;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->protocol != IPPROTO_ICMP)
		return XDP_PASS;
	icmph = (void *)iph + iph->ihl * 4;
	if ((void *)(icmph + 1) > data_end || icmph->type != ICMP_ECHO)
		return XDP_PASS;

	rec = bpf_map_lookup_elem(&xdp_stats_map, &key);
	if (!rec)
		return XDP_ABORTED;
	rec->rx_packets++;
	rec->rx_bytes += (data_end - data);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
