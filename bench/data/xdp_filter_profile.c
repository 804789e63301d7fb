// SPDX-License-Identifier: GPL-2.0
// Component profile of bpf/xdp_filter.c for bench/cnf_programs.py: the filter plus variants with parts removed,
// each its own XDP program in this one object (same maps, so the same rules), timed in the same run as the floor.
#include "../../bpf/xdp_filter.c"

/* the source address of an IPv4 packet without VLAN tag as an LPM key, 0 when there is none */
static __always_inline int v4_key(struct xdp_md *ctx, struct lpm_v4_key *key)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	__builtin_memcpy(key->addr, &ip->saddr, sizeof(key->addr));
	return 1;
}

/* the rules_v4 lookup alone: no hit counter, no default action */
SEC("xdp")
int p_lpm_lookup(struct xdp_md *ctx)
{
	struct lpm_v4_key key = {.prefixlen = 32};

	if (!v4_key(ctx, &key))
		return XDP_PASS;
	return bpf_map_lookup_elem(&rules_v4, &key) ? XDP_PASS : XDP_DROP;
}

/* the hit counter alone (PERCPU_HASH lookup and add) */
SEC("xdp")
int p_count_hit(struct xdp_md *ctx)
{
	count_hit(1);
	return XDP_PASS;
}
