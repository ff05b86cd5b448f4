// SPDX-License-Identifier: GPL-2.0
/*
 * A verdict decided in a bpf-to-bpf subprogram. bcc cannot load subprograms, so
 * the tests compile this with clang and load it with bpftool (libbpf resolves the
 * call); the kernel then reports the subprogram's start in func_info.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#define SEC(name) __attribute__((section(name), used))

static __attribute__((noinline)) int decide(struct __sk_buff *skb)
{
	/* the answer flows back into the caller's r0 */
	return skb->mark == 1 ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

SEC("tc")
int subprog(struct __sk_buff *skb)
{
	return decide(skb);
}

char _license[] SEC("license") = "GPL";
