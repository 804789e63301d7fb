// fmod_ret on getppid's body: counts the calls of target_pid and returns 0 (no override). Needs
// CONFIG_FUNCTION_ERROR_INJECTION (syscalls are error-injectable); the test skips when the kernel refuses to load it.
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

volatile const __u32 target_pid = 0;
volatile const __u32 version = VERSION;

SEC("fmod_ret/__do_sys_getppid")
int fmod_ppid(void *ctx)
{
	__u32 slot = 6;
	__u64 *value;

	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	value = bpf_map_lookup_elem(&hits, &slot);
	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

char _license[] SEC("license") = "GPL";
