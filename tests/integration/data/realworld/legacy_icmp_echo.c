/* SPDX-License-Identifier: GPL-2.0 */
/* An ICMP echo responder in the style of xdp-tutorial's packet03 (libbpf < 1.0 days): section names libbpf 1.x no
 * longer reads as XDP programs (SEC("xdp_icmp_echo"), SEC("xdp_pass")). Echo requests are turned into replies in
 * place (MACs and addresses swapped, type 0, checksum updated incrementally) and sent back out with XDP_TX. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/icmp.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} echo_replies SEC(".maps");

static __always_inline __u16 csum_fold_helper(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)~csum;
}

SEC("xdp_icmp_echo")
int xdp_icmp_echo_func(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct icmphdr *icmph;
	unsigned char h_tmp[ETH_ALEN];
	__be32 addr_tmp;
	__u32 key = 0;
	__u64 *replies;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->ihl != 5 || iph->protocol != IPPROTO_ICMP)
		return XDP_PASS;
	icmph = (void *)(iph + 1);
	if ((void *)(icmph + 1) > data_end || icmph->type != ICMP_ECHO)
		return XDP_PASS;

	__builtin_memcpy(h_tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, h_tmp, ETH_ALEN);
	addr_tmp = iph->saddr;
	iph->saddr = iph->daddr;
	iph->daddr = addr_tmp;

	/* RFC 1624: type 8 -> 0 changes the first 16-bit word by -0x0800 */
	icmph->type = ICMP_ECHOREPLY;
	icmph->checksum = csum_fold_helper((__u16)~icmph->checksum + (__u32)bpf_htons(0xf7ff));

	replies = bpf_map_lookup_elem(&echo_replies, &key);
	if (replies)
		__sync_fetch_and_add(replies, 1);
	return XDP_TX;
}

SEC("xdp_pass")
int xdp_pass_func(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
