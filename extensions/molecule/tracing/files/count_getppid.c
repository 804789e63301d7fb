// SPDX-License-Identifier: GPL-2.0
// The molecule tracing scenario: each hook's program counts the getppid() calls of processes named "cnf-getppid"
// (the verify step names itself so with prctl) in its own slot of `hits`:
//   0 kprobe   1 kretprobe   2 fentry   3 fexit   4 tracepoint
// The kernel function is getppid's body, __do_sys_getppid: x86_64's syscall entry __x64_sys_getppid is an alias of
// it (so it is never inlined), and only the body has BTF for fentry/fexit.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

static __always_inline int count(__u32 hook)
{
	static const char want[] = "cnf-getppid";
	char comm[16] = {};
	__u64 *value;

	bpf_get_current_comm(comm, sizeof(comm));
	for (int i = 0; i < sizeof(want); i++)
		if (comm[i] != want[i])
			return 0;
	value = bpf_map_lookup_elem(&hits, &hook);
	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

SEC("kprobe/__do_sys_getppid")
int kprobe_ppid(void *ctx)
{
	return count(0);
}

SEC("kretprobe/__do_sys_getppid")
int kretprobe_ppid(void *ctx)
{
	return count(1);
}

SEC("fentry/__do_sys_getppid")
int BPF_PROG(fentry_ppid)
{
	return count(2);
}

SEC("fexit/__do_sys_getppid")
int BPF_PROG(fexit_ppid, long ret)
{
	return count(3);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int tp_getppid(void *ctx)
{
	return count(4);
}

char _license[] SEC("license") = "GPL";
