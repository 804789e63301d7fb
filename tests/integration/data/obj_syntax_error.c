// Does not compile on purpose (tests/integration/test_objects.py): clang's error must reach the user.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_broken(struct xdp_md *ctx)
{
	return XDP_PASS  // missing semicolon
}

char _license[] SEC("license") = "GPL";
