// A CO-RE program: it reads task_struct->pid through a relocation that libbpf resolves against the kernel's BTF, so
// it cannot load on a kernel without BTF (the refusal test hides /sys/kernel/btf/vmlinux to get one).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int core_pid(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u64 pid = BPF_CORE_READ(task, pid);
	__u32 key = 0;

	bpf_map_update_elem(&seen, &key, &pid, BPF_ANY);
	return 0;
}

char _license[] SEC("license") = "GPL";
