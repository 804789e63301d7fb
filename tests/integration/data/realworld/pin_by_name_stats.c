/* SPDX-License-Identifier: GPL-2.0 */
/* A stats map pinned by name, as xdp-tutorial's loaders share maps between their programs and tools:
 * libbpf would pin it at /sys/fs/bpf/xdp_stats_map by itself. Counts IPv4 UDP datagrams to STATS_PORT. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef STATS_PORT
#define STATS_PORT 9000
#endif

struct datarec {
	__u64 rx_packets;
	__u64 rx_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct datarec);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdp_stats_map SEC(".maps");

SEC("xdp")
int xdp_stats_by_name(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udph;
	struct datarec *rec;
	__u32 key = 0;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->ihl != 5 || iph->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udph = (void *)(iph + 1);
	if ((void *)(udph + 1) > data_end || udph->dest != bpf_htons(STATS_PORT))
		return XDP_PASS;
	rec = bpf_map_lookup_elem(&xdp_stats_map, &key);
	if (!rec)
		return XDP_ABORTED;
	__sync_fetch_and_add(&rec->rx_packets, 1);
	__sync_fetch_and_add(&rec->rx_bytes, data_end - data);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
