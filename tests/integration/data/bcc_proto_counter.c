// A bcc-dialect XDP counter (BPF_HASH, BPF_ARRAY, .lookup_or_try_init(), .increment()): packets and bytes per IP
// protocol, and all frames, as bcc-based tools write them. Deployed by bpf_program with loader: bcc.
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>

struct proto_count {
	u64 packets;
	u64 bytes;
};

BPF_HASH(by_proto, u32, struct proto_count, 256);
BPF_ARRAY(frames, u64, 1);

int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct proto_count zero = {};
	struct proto_count *c;
	u32 proto = 0;

	if ((void *)(eth + 1) <= data_end && eth->h_proto == htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) <= data_end)
			proto = iph->protocol;
	}
	c = by_proto.lookup_or_try_init(&proto, &zero);
	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, data_end - data);
	}
	frames.increment(0);
	return XDP_PASS;
}
