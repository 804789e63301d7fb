// SPDX-License-Identifier: GPL-2.0
// Uses every map of the bpf_codegen corpus (tests/data/codegen/corpus.yml) through the generated header, so the
// header is proven where it matters: clang compiles it, libbpf creates every map from it and the verifier accepts
// the accesses. On each run it writes one event to the ring buffer and one to the perf event array.
#include "maps.h"

SEC("xdp")
int codegen_all(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct flow_key fk = {.protocol = 6};
	struct holey_key hk = {.a = 1};
	struct recent_key rk = {.port = 53};
	struct prefixes_lpm_key pk = {.prefixlen = 32};
	struct lpm6_key p6 = {.prefixlen = 128};
	struct flow_stats *fs;
	struct nested_value *nv;
	struct bit_value *bv;
	struct counter *c;
	struct cnf_config *cfg;
	struct route *rt;
	__u64 *u;
	__u32 *u32p;
	struct recent_value *rv;
	void *inner;
	struct job job = {.id = 1, .weight = 2};
	__u64 undo_val = 3;
	struct event ev = {.pid = 42, .kind = EVENT_CLOSE};
	struct sample_event se = {.cpu = 7, .value = -5};

	fs = bpf_map_lookup_elem(&flows, &fk);
	if (fs)
		__sync_fetch_and_add(&fs->packets, 1);
	nv = bpf_map_lookup_elem(&holes, &hk);
	if (nv && nv->kind == VERDICT_DROP)
		return XDP_DROP;
	bv = bpf_map_lookup_elem(&bits, &zero);
	if (bv && bv->version == 6)
		return XDP_DROP;
	c = bpf_map_lookup_elem(&counters, &zero);
	if (c)
		c->packets++;
	u = bpf_map_lookup_elem(&conns, &zero);
	if (u)
		(*u)++;
	rv = bpf_map_lookup_elem(&recent, &rk);
	if (rv)
		rv->hits++;
	rt = bpf_map_lookup_elem(&prefixes, &pk);
	if (rt && rt->action == 9)
		return XDP_DROP;
	u32p = bpf_map_lookup_elem(&prefixes6, &p6);
	if (u32p && *u32p == 9)
		return XDP_DROP;
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && cfg->mode == MODE_OFF && cfg->enabled)
		return XDP_DROP;
	inner = bpf_map_lookup_elem(&tenants, &zero);
	if (inner && bpf_map_lookup_elem(inner, &zero))
		return XDP_DROP;
	inner = bpf_map_lookup_elem(&slots, &zero);
	if (inner && bpf_map_lookup_elem(inner, &zero))
		return XDP_DROP;
	if (bpf_map_peek_elem(&work, &job) == 0 && job.weight == 9)
		return XDP_DROP;
	if (bpf_map_peek_elem(&undo, &undo_val) == 0 && undo_val == 9)
		return XDP_DROP;

	ev.ts = bpf_ktime_get_ns();
	__builtin_memcpy(ev.comm, "codegen", 8);
	bpf_ringbuf_output(&events, &ev, sizeof(ev), 0);
	bpf_perf_event_output(ctx, &samples, BPF_F_CURRENT_CPU, &se, sizeof(se));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
