// Rejected by the verifier: reads packet data without checking data_end first.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_bad(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[20] == 17 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
