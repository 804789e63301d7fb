// sched_cls test programs: count UDP packets to ports 7000-7999 and let everything pass. `tc_count_a` counts in
// slot [0] of `tc_stats`, `tc_count_b` in slot [1], so a swap between them shows in the counters.
// TC_ACT_OK (0) is also TCX_PASS, so the same programs work under cls_bpf direct-action and tcx.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} tc_stats SEC(".maps");

static __always_inline int count_udp(struct __sk_buff *skb, __u32 slot)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udp;
	__u64 *value;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->protocol != IPPROTO_UDP || iph->ihl != 5)
		return TC_ACT_OK;
	udp = (void *)(iph + 1);
	if ((void *)(udp + 1) > data_end)
		return TC_ACT_OK;
	if (bpf_ntohs(udp->dest) < 7000 || bpf_ntohs(udp->dest) > 7999)
		return TC_ACT_OK;
	value = bpf_map_lookup_elem(&tc_stats, &slot);
	if (value)
		__sync_fetch_and_add(value, 1);
	return TC_ACT_OK;
}

SEC("tc")
int tc_count_a(struct __sk_buff *skb)
{
	return count_udp(skb, 0);
}

SEC("tc")
int tc_count_b(struct __sk_buff *skb)
{
	return count_udp(skb, 1);
}

char _license[] SEC("license") = "GPL";
