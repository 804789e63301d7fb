// A small XDP CNF used by the bpf_program/bpf_attach tests: counts UDP packets and bytes per destination port and
// drops one configurable port. VERSION (a -D define) makes compatible and incompatible upgrades of it:
//   1, 2: the same maps; 2 is another object (its `version` constant differs), so deploying it is an upgrade
//   3:    struct port_stats gains a field in front, so pinned `stats` maps no longer match its layout
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef VERSION
#define VERSION 1
#endif

struct port_stats {
#if VERSION >= 3
	__u64 first_seen;
#endif
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct port_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

volatile const __u16 drop_port = 0;
volatile const __u32 version = VERSION;

SEC("xdp")
int xdp_flow(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	struct port_stats *st, fresh = {};
	__u32 port, slot;
	__u64 *verdict;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	port = bpf_ntohs(udp->dest);
	st = bpf_map_lookup_elem(&stats, &port);
	if (!st) {
		bpf_map_update_elem(&stats, &port, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&stats, &port);
		if (!st)
			return XDP_PASS;
	}
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, data_end - data);
	slot = (drop_port && port == drop_port) ? 1 : 0;
	verdict = bpf_map_lookup_elem(&verdicts, &slot);
	if (verdict)
		*verdict += 1;
	return slot ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
