// SPDX-License-Identifier: GPL-2.0
// flow_tracker_atomics: the bench baseline, bpf/flow_tracker.c as it was before issue 16 (one LRU hash of shared
// flow values updated with atomic adds, config from a map). Kept unchanged for bench/cnf_programs.py.
//
// flow_tracker: an XDP flow accountant that never drops a packet.
//
// Parses Ethernet (up to two 802.1Q/802.1ad tags), IPv4 (ihl-aware, non-first fragments have no ports) and IPv6
// (the next header is taken as the L4 protocol, no extension header walk), then TCP/UDP ports or ICMP/ICMPv6
// identifiers into a struct flow_key, and counts packets and bytes per flow in the LRU hash `flows`.
//   ICMP/ICMPv6 keys: src_port = echo identifier (0 for non-echo messages), dst_port = htons(type << 8 | code).
//   bytes are frame bytes as XDP sees them (data_end - data: Ethernet header included, no FCS).
// `if_counters` counts every packet per ingress ifindex % 256. `config` (entry 0) can disable tracking, turn on
// new-flow events on the `new_flows` ring buffer and sample flow accounting (every Nth packet, on average, when
// sample_rate N > 1); an all-zero or absent entry means enabled, no events, sample_rate 1. Failed ring buffer
// reservations are counted in `event_drops`.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_VLAN_TAGS 2
#define IF_SLOTS 256
#define IP_OFFSET_MASK 0x1fff

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

struct flow_key {
	__u8 src[16];	/* IPv6, or IPv4-mapped IPv6 (::ffff:a.b.c.d) for IPv4 */
	__u8 dst[16];
	__be16 src_port;
	__be16 dst_port;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
	__u64 first_seen;
	__u64 last_seen;
};

struct if_counter {
	__u64 packets;
	__u64 bytes;
};

struct tracker_config {
	__u8 enabled;
	__u8 events_on_new_flow;
	__u16 pad;
	__u32 sample_rate;
};

struct flow_event {
	struct flow_key key;
	__u64 timestamp;
	__u32 ifindex;
	__u32 pkt_len;
};

/* linux/icmp.h pulls in libc headers (through linux/if.h): the echo part of struct icmphdr is all that is needed */
struct icmp_echo_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

/* linux/if_vlan.h is not uapi */
struct vlan_hdr {
	__be16 h_vlan_TCI;
	__be16 h_vlan_encapsulated_proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IF_SLOTS);
	__type(key, __u32);
	__type(value, struct if_counter);
} if_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tracker_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} new_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} event_drops SEC(".maps");

/* Not inlined so that struct flow_event is in the BTF (a function signature), for decoding the events. */
static __noinline int fill_event(struct flow_event *ev, const struct flow_key *key, __u64 now, __u32 ifindex,
				 __u32 pkt_len)
{
	__builtin_memcpy(&ev->key, key, sizeof(ev->key));
	ev->timestamp = now;
	ev->ifindex = ifindex;
	ev->pkt_len = pkt_len;
	return 0;
}

static __always_inline void emit_new_flow(const struct flow_key *key, __u64 now, __u32 ifindex, __u32 pkt_len)
{
	struct flow_event *ev;
	__u32 zero = 0;
	__u64 *drops;

	ev = bpf_ringbuf_reserve(&new_flows, sizeof(*ev), 0);
	if (!ev) {
		drops = bpf_map_lookup_elem(&event_drops, &zero);
		if (drops)
			*drops += 1; /* per-CPU slot: no atomic needed */
		return;
	}
	fill_event(ev, key, now, ifindex, pkt_len);
	bpf_ringbuf_submit(ev, 0);
}

/* Fills ports for TCP/UDP/ICMP/ICMPv6 at l4; other protocols (or a truncated header) keep ports 0. */
static __always_inline void parse_l4(struct flow_key *key, void *l4, void *data_end)
{
	switch (key->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return;
		key->src_port = tcp->source;
		key->dst_port = tcp->dest;
		return;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return;
		key->src_port = udp->source;
		key->dst_port = udp->dest;
		return;
	}
	case IPPROTO_ICMP: {
		struct icmp_echo_hdr *icmp = l4;

		if ((void *)(icmp + 1) > data_end)
			return;
		if (icmp->type == ICMP_ECHO || icmp->type == ICMP_ECHOREPLY)
			key->src_port = icmp->id;
		key->dst_port = bpf_htons(((__u16)icmp->type << 8) | icmp->code);
		return;
	}
	case IPPROTO_ICMPV6: {
		struct icmp6hdr *icmp6 = l4;

		if ((void *)(icmp6 + 1) > data_end)
			return;
		if (icmp6->icmp6_type == ICMPV6_ECHO_REQUEST || icmp6->icmp6_type == ICMPV6_ECHO_REPLY)
			key->src_port = icmp6->icmp6_identifier;
		key->dst_port = bpf_htons(((__u16)icmp6->icmp6_type << 8) | icmp6->icmp6_code);
		return;
	}
	default:
		return;
	}
}

/* Returns 0 when key was filled from an IPv4/IPv6 packet, -1 otherwise. */
static __always_inline int parse_packet(struct xdp_md *ctx, struct flow_key *key)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cursor;
	__u16 proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return -1;
	proto = eth->h_proto;
	cursor = eth + 1;

#pragma unroll
	for (i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vlan = cursor;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > data_end)
			return -1;
		proto = vlan->h_vlan_encapsulated_proto;
		cursor = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = cursor;
		__u32 hdr_len;

		if ((void *)(iph + 1) > data_end)
			return -1;
		hdr_len = iph->ihl * 4;
		if (hdr_len < sizeof(*iph))
			return -1;
		if ((void *)iph + hdr_len > data_end)
			return -1;
		key->family = AF_INET;
		key->proto = iph->protocol;
		/* IPv4-mapped (::ffff:a.b.c.d): one 16-byte address field for both families, which userspace reads
		 * with the "ip" format as dotted IPv4 */
		key->src[10] = 0xff;
		key->src[11] = 0xff;
		key->dst[10] = 0xff;
		key->dst[11] = 0xff;
		__builtin_memcpy(key->src + 12, &iph->saddr, 4);
		__builtin_memcpy(key->dst + 12, &iph->daddr, 4);
		if (iph->frag_off & bpf_htons(IP_OFFSET_MASK))
			return 0; /* a later fragment: no L4 header in it */
		parse_l4(key, (void *)iph + hdr_len, data_end);
		return 0;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		key->family = AF_INET6;
		key->proto = ip6->nexthdr;
		__builtin_memcpy(key->src, &ip6->saddr, 16);
		__builtin_memcpy(key->dst, &ip6->daddr, 16);
		parse_l4(key, ip6 + 1, data_end);
		return 0;
	}
	return -1;
}

SEC("xdp")
int flow_tracker(struct xdp_md *ctx)
{
	__u32 pkt_len = (__u32)(ctx->data_end - ctx->data);
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 slot = ifindex % IF_SLOTS;
	__u32 zero = 0;
	__u32 sample_rate = 1;
	__u8 events = 0;
	struct tracker_config *cfg;
	struct if_counter *ifc;
	struct flow_stats *st;
	struct flow_key key = {};
	__u64 now;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && (cfg->enabled || cfg->events_on_new_flow || cfg->sample_rate)) {
		if (!cfg->enabled)
			return XDP_PASS;
		events = cfg->events_on_new_flow;
		sample_rate = cfg->sample_rate;
	}

	ifc = bpf_map_lookup_elem(&if_counters, &slot);
	if (ifc) {
		ifc->packets += 1; /* per-CPU slot */
		ifc->bytes += pkt_len;
	}

	if (sample_rate > 1 && bpf_get_prandom_u32() % sample_rate != 0)
		return XDP_PASS;

	if (parse_packet(ctx, &key) < 0)
		return XDP_PASS;

	now = bpf_ktime_get_ns();
	st = bpf_map_lookup_elem(&flows, &key);
	if (!st) {
		struct flow_stats fresh = {
			.packets = 1,
			.bytes = pkt_len,
			.first_seen = now,
			.last_seen = now,
		};

		if (bpf_map_update_elem(&flows, &key, &fresh, BPF_NOEXIST) == 0) {
			if (events)
				emit_new_flow(&key, now, ifindex, pkt_len);
			return XDP_PASS;
		}
		/* another CPU created it in between */
		st = bpf_map_lookup_elem(&flows, &key);
		if (!st)
			return XDP_PASS;
	}
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, pkt_len);
	st->last_seen = now;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
