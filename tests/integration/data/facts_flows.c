// Counts UDP packets per destination port in a per-CPU hash, and per (source address, port) flow in an LRU hash,
// for the bpf_facts tests. Everything passes.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct counters {
	__u64 packets;
	__u64 bytes;
};

struct flow {
	__be32 src;
	__u16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct counters);
} port_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow);
	__type(value, struct counters);
} flows SEC(".maps");

SEC("xdp")
int xdp_facts(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	struct counters *c, fresh = {};
	struct flow key = {};
	__u32 port;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	port = bpf_ntohs(udp->dest);
	c = bpf_map_lookup_elem(&port_counts, &port);
	if (!c) {
		bpf_map_update_elem(&port_counts, &port, &fresh, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&port_counts, &port);
	}
	if (c) {
		c->packets += 1;  /* per-CPU: no atomics needed */
		c->bytes += data_end - data;
	}
	key.src = ip->saddr;
	key.port = port;
	c = bpf_map_lookup_elem(&flows, &key);
	if (!c) {
		bpf_map_update_elem(&flows, &key, &fresh, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&flows, &key);
	}
	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, data_end - data);
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
