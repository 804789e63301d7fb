// cgroup_skb egress test program: counts UDP packets to ports 7000-7999 sent by processes of the cgroup (slot [0]
// of `cg_stats`) and allows everything. Egress skbs start at the IP header.
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} cg_stats SEC(".maps");

static __always_inline int count_udp(struct __sk_buff *skb, __u32 slot)
{
	struct iphdr iph;
	struct udphdr udp;
	__u64 *value;

	if (skb->protocol != bpf_htons(0x0800))
		return 1;
	if (bpf_skb_load_bytes(skb, 0, &iph, sizeof(iph)) || iph.protocol != IPPROTO_UDP || iph.ihl != 5)
		return 1;
	if (bpf_skb_load_bytes(skb, sizeof(iph), &udp, sizeof(udp)))
		return 1;
	if (bpf_ntohs(udp.dest) < 7000 || bpf_ntohs(udp.dest) > 7999)
		return 1;
	value = bpf_map_lookup_elem(&cg_stats, &slot);
	if (value)
		__sync_fetch_and_add(value, 1);
	return 1;
}

SEC("cgroup_skb/egress")
int cg_count_a(struct __sk_buff *skb)
{
	return count_udp(skb, 0);
}

SEC("cgroup_skb/egress")
int cg_count_b(struct __sk_buff *skb)
{
	return count_udp(skb, 1);
}

char _license[] SEC("license") = "GPL";
