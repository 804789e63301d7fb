// SPDX-License-Identifier: GPL-2.0
// cnf.ebpf XDP filter: per-source-prefix rules (LPM tries for IPv4 and IPv6) with ALLOW / DENY / RATE_LIMIT,
// per-rule hit counters, a per-source token bucket for RATE_LIMIT and a configurable default action.
//
// Maps (all with BTF, so cnf.ebpf.bpf_map_entries encodes keys and values by field name):
//   rules_v4   LPM_TRIE     struct lpm_v4_key  -> struct rule   (keys may be given as CIDR text)
//   rules_v6   LPM_TRIE     struct lpm_v6_key  -> struct rule
//   rule_hits  PERCPU_HASH  __u32 (rule id)    -> __u64 packets matched
//   buckets    LRU_HASH     struct bucket_key  -> struct bucket  (RATE_LIMIT state per source address)
//   config     ARRAY[1]     __u32 0            -> struct filter_config (default_action when no rule matches)
// Non-IP traffic (ARP, ...) always passes. One 802.1Q/802.1ad tag is skipped.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define NSEC_PER_SEC 1000000000ULL
#define FAMILY_V4 4
#define FAMILY_V6 6

enum filter_action {
	ALLOW = 0,
	DENY = 1,
	RATE_LIMIT = 2,
};

struct rule {
	__u32 id;
	enum filter_action action;
	__u32 rate_pps;
	__u32 burst;
};

struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct bucket_key {
	__u8 addr[16];
	__u32 family;
};

struct bucket {
	__u64 tokens;	/* in nano-tokens: one packet costs NSEC_PER_SEC */
	__u64 last_ns;	/* bpf_ktime_get_ns() of the last refill */
};

struct filter_config {
	enum filter_action default_action;
};

/* uapi has no VLAN header struct (struct vlan_hdr is kernel-internal) */
struct vlan_tag {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, struct rule);
} rules_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6_key);
	__type(value, struct rule);
} rules_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} rule_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct bucket_key);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_config);
} config SEC(".maps");

static __always_inline void count_hit(__u32 id)
{
	__u64 one = 1, *hits;

	hits = bpf_map_lookup_elem(&rule_hits, &id);
	if (hits) {
		*hits += 1; /* per-CPU slot: no other CPU writes it */
		return;
	}
	if (bpf_map_update_elem(&rule_hits, &id, &one, BPF_NOEXIST)) {
		/* lost a race with ourselves (another program run on this CPU cannot interleave, but be safe) */
		hits = bpf_map_lookup_elem(&rule_hits, &id);
		if (hits)
			*hits += 1;
	}
}

/* Token bucket per source: starts full (burst), refills rate_pps per second up to burst. Returns 1 to pass. */
static __always_inline int bucket_take(struct bucket_key *key, const struct rule *r)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 cap = (__u64)r->burst * NSEC_PER_SEC;
	__u64 rate = r->rate_pps;
	struct bucket *b, fresh = {};
	__u64 elapsed, need;

	b = bpf_map_lookup_elem(&buckets, key);
	if (!b) {
		if (cap < NSEC_PER_SEC)
			return 0;
		fresh.tokens = cap - NSEC_PER_SEC; /* this packet takes one token */
		fresh.last_ns = now;
		bpf_map_update_elem(&buckets, key, &fresh, BPF_ANY);
		return 1;
	}
	elapsed = now > b->last_ns ? now - b->last_ns : 0;
	b->last_ns = now;
	if (b->tokens < cap && rate) {
		need = cap - b->tokens;
		/* elapsed * rate cannot overflow below need / rate + 1 */
		if (elapsed > need / rate)
			b->tokens = cap;
		else
			b->tokens += elapsed * rate;
	}
	if (b->tokens > cap)
		b->tokens = cap; /* burst lowered since the last packet */
	if (b->tokens < NSEC_PER_SEC)
		return 0;
	b->tokens -= NSEC_PER_SEC;
	return 1;
}

static __always_inline int apply(const struct rule *r, struct bucket_key *src)
{
	enum filter_action action;
	__u32 zero = 0;

	if (r) {
		count_hit(r->id);
		action = r->action;
	} else {
		struct filter_config *cfg = bpf_map_lookup_elem(&config, &zero);

		action = cfg ? cfg->default_action : ALLOW;
	}
	switch (action) {
	case DENY:
		return XDP_DROP;
	case RATE_LIMIT:
		if (!r)
			return XDP_PASS; /* a default of RATE_LIMIT has no rate: treated as ALLOW */
		return bucket_take(src, r) ? XDP_PASS : XDP_DROP;
	default:
		return XDP_PASS;
	}
}

SEC("xdp")
int xdp_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct bucket_key src = {};
	void *l3;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_tag *vlan = l3;

		if ((void *)(vlan + 1) > data_end)
			return XDP_PASS;
		proto = vlan->encapsulated_proto;
		l3 = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		struct lpm_v4_key key = {.prefixlen = 32};

		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		__builtin_memcpy(key.addr, &ip->saddr, sizeof(key.addr));
		__builtin_memcpy(src.addr, &ip->saddr, 4);
		src.family = FAMILY_V4;
		return apply(bpf_map_lookup_elem(&rules_v4, &key), &src);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		struct lpm_v6_key key = {.prefixlen = 128};

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		__builtin_memcpy(key.addr, &ip6->saddr, sizeof(key.addr));
		__builtin_memcpy(src.addr, &ip6->saddr, sizeof(src.addr));
		src.family = FAMILY_V6;
		return apply(bpf_map_lookup_elem(&rules_v6, &key), &src);
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
