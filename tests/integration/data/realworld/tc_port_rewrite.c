/* SPDX-License-Identifier: GPL-2.0 */
/* iproute2-style tc classifier (SEC("classifier"), direct action): rewrites the destination port of UDP datagrams
 * to FROM_PORT into TO_PORT with bpf_skb_store_bytes and fixes the UDP checksum with bpf_l4_csum_replace, counting
 * what it rewrote. */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define UDP_DPORT_OFF (ETH_HLEN + sizeof(struct iphdr) + offsetof(struct udphdr, dest))
#define UDP_CSUM_OFF (ETH_HLEN + sizeof(struct iphdr) + offsetof(struct udphdr, check))

volatile const __u16 from_port = 7000;
volatile const __u16 to_port = 7001;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} rewritten SEC(".maps");

SEC("classifier")
int tc_rewrite_port(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	void *data = (void *)(long)skb->data;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udph;
	__be16 old_port, new_port;
	__u32 key = 0;
	__u64 *count;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->ihl != 5 || iph->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	udph = (void *)(iph + 1);
	if ((void *)(udph + 1) > data_end || udph->dest != bpf_htons(from_port))
		return TC_ACT_OK;

	old_port = udph->dest;
	new_port = bpf_htons(to_port);
	if (udph->check)
		bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_port, new_port, sizeof(new_port));
	bpf_skb_store_bytes(skb, UDP_DPORT_OFF, &new_port, sizeof(new_port), 0);

	count = bpf_map_lookup_elem(&rewritten, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
