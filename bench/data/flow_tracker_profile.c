// SPDX-License-Identifier: GPL-2.0
// Component profile of bpf/flow_tracker.c for bench/cnf_programs.py: the tracker itself plus variants with parts
// removed or swapped, each its own XDP program in this one object (same maps), timed in the same run as the floor.
#include "../../bpf/flow_tracker.c"

/* the same key and value in the other hash map types, to time their lookups alone */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows_lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows_percpu SEC(".maps");

static __always_inline struct flow_stats *get_or_create(void *map, struct flow_key *key)
{
	struct flow_stats *st = bpf_map_lookup_elem(map, key), fresh = {};

	if (st)
		return st;
	bpf_map_update_elem(map, key, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

static __always_inline void count(struct flow_stats *st, __u32 len, __u64 now)
{
	if (!st->packets)
		st->first_seen = now;
	st->packets += 1;
	st->bytes += len;
	st->last_seen = now;
}

#define PKT_LEN(ctx) ((__u32)((ctx)->data_end - (ctx)->data))

SEC("xdp")
int p_parse(struct xdp_md *ctx)
{
	struct flow_key key = {};

	if (parse_packet(ctx, &key) < 0)
		return XDP_PASS;
	/* use the key, or the compiler drops the parse */
	return key.src_port == key.dst_port && key.src[15] == key.dst[15] ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int p_config(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct tracker_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (cfg && cfg->enabled == 2)
		return XDP_DROP;
	return XDP_PASS;
}

SEC("xdp")
int p_if_counters(struct xdp_md *ctx)
{
	__u32 slot = ctx->ingress_ifindex % IF_SLOTS;
	struct if_counter *ifc = bpf_map_lookup_elem(&if_counters, &slot);

	if (ifc) {
		ifc->packets += 1;
		ifc->bytes += PKT_LEN(ctx);
	}
	return XDP_PASS;
}

SEC("xdp")
int p_ktime(struct xdp_md *ctx)
{
	return bpf_ktime_get_ns() == 1 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int p_coarse(struct xdp_md *ctx)
{
	return bpf_ktime_get_coarse_ns() == 1 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int p_jiffies(struct xdp_md *ctx)
{
	return bpf_jiffies64() == 1 ? XDP_DROP : XDP_PASS;
}

#define LOOKUP_ONLY(name, map)                                        \
	SEC("xdp")                                                     \
	int name(struct xdp_md *ctx)                                   \
	{                                                              \
		struct flow_key key = {};                              \
                                                                       \
		if (parse_packet(ctx, &key) < 0)                       \
			return XDP_PASS;                               \
		return get_or_create(&map, &key) ? XDP_PASS : XDP_DROP; \
	}

LOOKUP_ONLY(p_parse_lookup_lru_percpu, flows)
LOOKUP_ONLY(p_parse_lookup_lru, flows_lru)
LOOKUP_ONLY(p_parse_lookup_hash, flows_hash)
LOOKUP_ONLY(p_parse_lookup_percpu, flows_percpu)

/* parse + per-CPU lookup + plain adds, with each clock */
SEC("xdp")
int p_count_no_clock(struct xdp_md *ctx)
{
	struct flow_key key = {};
	struct flow_stats *st;

	if (parse_packet(ctx, &key) < 0)
		return XDP_PASS;
	st = get_or_create(&flows, &key);
	if (st)
		count(st, PKT_LEN(ctx), 1);
	return XDP_PASS;
}

SEC("xdp")
int p_count_ktime(struct xdp_md *ctx)
{
	struct flow_key key = {};
	struct flow_stats *st;

	if (parse_packet(ctx, &key) < 0)
		return XDP_PASS;
	st = get_or_create(&flows, &key);
	if (st)
		count(st, PKT_LEN(ctx), bpf_ktime_get_ns());
	return XDP_PASS;
}

SEC("xdp")
int p_count_coarse(struct xdp_md *ctx)
{
	struct flow_key key = {};
	struct flow_stats *st;

	if (parse_packet(ctx, &key) < 0)
		return XDP_PASS;
	st = get_or_create(&flows, &key);
	if (st)
		count(st, PKT_LEN(ctx), bpf_ktime_get_coarse_ns());
	return XDP_PASS;
}

/* shared LRU value with the two atomic adds (the baseline's update), no clock, no config, no interface counter */
SEC("xdp")
int p_count_atomics(struct xdp_md *ctx)
{
	struct flow_key key = {};
	struct flow_stats *st;

	if (parse_packet(ctx, &key) < 0)
		return XDP_PASS;
	st = get_or_create(&flows_lru, &key);
	if (st) {
		__sync_fetch_and_add(&st->packets, 1);
		__sync_fetch_and_add(&st->bytes, PKT_LEN(ctx));
	}
	return XDP_PASS;
}

/* the tracker's clock: bpf_ktime_get_ns() once per jiffy per CPU */
SEC("xdp")
int p_count_tick_clock(struct xdp_md *ctx)
{
	struct flow_key key = {};
	struct flow_stats *st;

	if (parse_packet(ctx, &key) < 0)
		return XDP_PASS;
	st = get_or_create(&flows, &key);
	if (st)
		count(st, PKT_LEN(ctx), tick_ns());
	return XDP_PASS;
}

SEC("xdp")
int p_tick_clock(struct xdp_md *ctx)
{
	return tick_ns() == 1 ? XDP_DROP : XDP_PASS;
}
