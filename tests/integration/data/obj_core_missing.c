// Fails CO-RE relocation on purpose (tests/integration/test_objects.py): the field does not exist in the running
// kernel's `struct xdp_md`, so libbpf poisons the access and the verifier rejects the program.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct xdp_md___cnf_test {
	__u32 no_such_field_in_any_kernel;
} __attribute__((preserve_access_index));

SEC("xdp")
int xdp_core(struct xdp_md *ctx)
{
	struct xdp_md___cnf_test *md = (void *)ctx;

	return md->no_such_field_in_any_kernel ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
