// XDP program for the bpf_events tests: one event per IPv4 UDP packet, sent both to a ring buffer (counting failed
// reservations in `ringbuf_drops`) and to a perf event array (BPF_F_CURRENT_CPU; without a reader the kernel refuses
// it with -ENOENT, which is ignored). The sequence number is the first 4 payload bytes (big endian) when present.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct pkt_event {
	__be32 src;
	__be32 dst;
	__be16 src_port;
	__be16 dst_port;
	__u32 seq;
	__u32 len;
	__u32 cpu;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ringbuf_drops SEC(".maps");

// A subprogram taking struct pkt_event: clang emits BTF only for types reachable from globals and function
// signatures, not for the types of local variables, and bpf_events finds the event type in that BTF.
static __noinline int emit(struct xdp_md *ctx, struct pkt_event *ev)
{
	struct pkt_event *slot;
	__u32 zero = 0;
	__u64 *drops;

	slot = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (slot) {
		*slot = *ev;
		bpf_ringbuf_submit(slot, 0);
	} else {
		drops = bpf_map_lookup_elem(&ringbuf_drops, &zero);
		if (drops)
			*drops += 1;
	}
	bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, ev, sizeof(*ev));
	return 0;
}

SEC("xdp")
int xdp_events(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	struct pkt_event ev = {};
	__u8 *payload;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	ev.src = ip->saddr;
	ev.dst = ip->daddr;
	ev.src_port = udp->source;
	ev.dst_port = udp->dest;
	payload = (void *)(udp + 1);
	if ((void *)(payload + 4) <= data_end)
		ev.seq = ((__u32)payload[0] << 24) | ((__u32)payload[1] << 16) | ((__u32)payload[2] << 8) | payload[3];
	ev.len = data_end - data;
	ev.cpu = bpf_get_smp_processor_id();
	emit(ctx, &ev);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
