// Tracing programs for the bpf_attach tests: each counts the getppid() calls of one process (target_pid, set with
// bpf_program's `constants`) from a different hook. VERSION (a -D define) makes upgrades of it. fentry/fexit are in
// trace_fentry.c: kernels that refuse trampolines (EPERM) must still load these.
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

SEC("tracepoint/syscalls/sys_enter_getppid")
int tp_getppid(void *ctx)
{
	return count(0);
}

SEC("raw_tp/sys_enter")
int raw_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] != nr_getppid)
		return 0;
	return count(1);
}

SEC("tp_btf/sys_enter")
int btf_enter(__u64 *ctx)
{
	/* tp_btf: the raw tracepoint's own arguments (struct pt_regs *regs, long id) */
	if (ctx[1] != nr_getppid)
		return 0;
	return count(2);
}

SEC("kprobe/__do_sys_getppid")
int kprobe_ppid(void *ctx)
{
	return count(4);
}

SEC("kretprobe/__do_sys_getppid")
int kretprobe_ppid(void *ctx)
{
	return count(5);
}

char _license[] SEC("license") = "GPL";
