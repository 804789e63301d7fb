// fentry/fexit programs for the bpf_attach tests, counting like trace_hooks.c (hits[2] fentry, hits[3] fexit). Their
// target is fixed at load by the section name; the tests skip them on kernels that refuse trampolines.
//   hits[HOOK]     calls seen by the program of that hook, whatever its version
//   versions[V]    calls seen by version V (of any hook)
// The kernel function is getppid's body, __do_sys_getppid (in vmlinux BTF on x86_64 and arm64 alike).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef VERSION
#define VERSION 1
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} versions SEC(".maps");

volatile const __u32 target_pid = 0;
volatile const __u64 nr_getppid = 110;
volatile const __u32 version = VERSION;

static __always_inline int count(__u32 hook)
{
	__u32 slot = VERSION;
	__u64 *value;

	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	value = bpf_map_lookup_elem(&hits, &hook);
	if (value)
		__sync_fetch_and_add(value, 1);
	value = bpf_map_lookup_elem(&versions, &slot);
	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

SEC("fentry/__do_sys_getppid")
int fentry_ppid(void *ctx)
{
	return count(2);
}

SEC("fexit/__do_sys_getppid")
int fexit_ppid(void *ctx)
{
	return count(3);
}

char _license[] SEC("license") = "GPL";
