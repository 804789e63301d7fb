// A program of a type this kernel is built without (CONFIG_BPF_LIRC_MODE2 is off on the test host): bpf_program
// must refuse it by probing the type, before loading anything.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("lirc_mode2")
int lirc_decoder(unsigned int *sample)
{
	return 0;
}

char _license[] SEC("license") = "GPL";
